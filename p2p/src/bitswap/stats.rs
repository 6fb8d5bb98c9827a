//! Bitswap's transfer counters: totals for the node and per peer. Written by the engine as
//! messages come and go (`mod.rs`, `peer.rs`); read by `cidfs stats` and `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use libp2p::PeerId;

use super::session::lock;
use super::Bitswap;

/// Transfer counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub blocks_received: u64,
    pub bytes_received: u64,
    pub blocks_sent: u64,
    pub bytes_sent: u64,
    pub duplicate_blocks: u64,
    /// Blocks that hashed to nothing we wanted (corrupt or unsolicited) and were dropped.
    pub rejected_blocks: u64,
    /// CIDs currently wanted.
    pub wants: u64,
    /// Peers we have a bitswap connection with.
    pub peers: u64,
}

/// What one peer and this node traded over bitswap (see [`Bitswap::peer_stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    /// Wantlist entries the peer sent us.
    pub wants_received: u64,
    /// Wantlist entries we sent the peer.
    pub wants_sent: u64,
    pub blocks_received: u64,
    pub bytes_received: u64,
    pub blocks_sent: u64,
    pub bytes_sent: u64,
    /// Blocks the peer sent that another peer had delivered already.
    pub duplicate_blocks: u64,
    /// Blocks the peer sent that hashed to nothing we wanted (corrupt or unsolicited).
    pub rejected_blocks: u64,
}

/// Peers whose [`PeerStats`] are kept. Past it, a new peer replaces one that is no longer
/// connected, or goes uncounted (the totals in [`Stats`] still count it).
pub const MAX_PEER_STATS: usize = 1024;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) blocks_received: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) blocks_sent: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) duplicate_blocks: AtomicU64,
    pub(super) rejected_blocks: AtomicU64,
}

/// The counters of one engine.
#[derive(Default)]
pub(super) struct Book {
    pub(super) totals: Counters,
    pub(super) per_peer: Mutex<HashMap<PeerId, PeerStats>>,
}

impl Bitswap {
    pub fn stats(&self) -> Stats {
        let c = &self.inner.stats.totals;
        Stats {
            blocks_received: c.blocks_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            blocks_sent: c.blocks_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            duplicate_blocks: c.duplicate_blocks.load(Ordering::Relaxed),
            rejected_blocks: c.rejected_blocks.load(Ordering::Relaxed),
            wants: lock(&self.inner.wants).len() as u64,
            peers: lock(&self.inner.connected).len() as u64,
        }
    }

    /// Per-peer counters, for every peer seen (up to [`MAX_PEER_STATS`]), sorted by peer id.
    pub fn peer_stats(&self) -> Vec<(PeerId, PeerStats)> {
        let mut v: Vec<_> = lock(&self.inner.stats.per_peer)
            .iter()
            .map(|(p, s)| (*p, *s))
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// Adds to `peer`'s counters.
    pub(super) fn count(&self, peer: PeerId, f: impl FnOnce(&mut PeerStats)) {
        let mut map = lock(&self.inner.stats.per_peer);
        if map.len() >= MAX_PEER_STATS && !map.contains_key(&peer) {
            let connected = self.connected();
            if let Some(gone) = map.keys().find(|p| !connected.contains(*p)).copied() {
                map.remove(&gone);
            } else {
                return;
            }
        }
        f(map.entry(peer).or_default());
    }
}
