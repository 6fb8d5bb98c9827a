//! Peers that mDNS reports on the LAN, kept for redialling until mDNS expires them (so one
//! failed dial of a peer that is still starting does not lose it). mDNS needs no swarm key, so
//! anyone on the LAN can announce anything (finding M6): the book holds at most [`MAX_PEERS`]
//! peers with [`MAX_ADDRS`] addresses each, and a redial tick dials at most [`DIALS_PER_TICK`]
//! of them, so announcements cannot grow memory or start dial storms.

use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;

/// Peers kept from mDNS (a LAN of cidfs nodes larger than this still finds the rest through
/// the DHT and their identify addresses).
pub const MAX_PEERS: usize = 256;
/// Addresses kept per mDNS peer.
pub const MAX_ADDRS: usize = 8;
/// mDNS peers dialled per redial tick, at most.
pub const DIALS_PER_TICK: usize = 32;

#[derive(Default)]
pub struct LanPeers {
    peers: HashMap<PeerId, Vec<Multiaddr>>,
    /// Where the next redial tick starts, so every peer gets its turn.
    cursor: usize,
}

impl LanPeers {
    /// Records an announcement; returns the peer's addresses to dial, or `None` when the book
    /// is full and the peer is new.
    pub fn discovered(&mut self, peer: PeerId, addr: Multiaddr) -> Option<Vec<Multiaddr>> {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            return None;
        }
        let known = self.peers.entry(peer).or_default();
        if !known.contains(&addr) && known.len() < MAX_ADDRS {
            known.push(addr);
        }
        Some(known.clone())
    }

    pub fn expired(&mut self, peer: &PeerId, addr: &Multiaddr) {
        if let Some(known) = self.peers.get_mut(peer) {
            known.retain(|a| a != addr);
            if known.is_empty() {
                self.peers.remove(peer);
            }
        }
    }

    /// Whether mDNS announced `peer` (and has not expired it).
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// The next [`DIALS_PER_TICK`] peers (round robin) that `connected` says are not connected.
    pub fn next_redials(
        &mut self,
        connected: impl Fn(&PeerId) -> bool,
    ) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut waiting: Vec<(&PeerId, &Vec<Multiaddr>)> =
            self.peers.iter().filter(|(p, _)| !connected(p)).collect();
        if waiting.is_empty() {
            return Vec::new();
        }
        waiting.sort_by_key(|(p, _)| **p);
        let start = self.cursor % waiting.len();
        let n = waiting.len().min(DIALS_PER_TICK);
        self.cursor = start + n;
        waiting
            .iter()
            .cycle()
            .skip(start)
            .take(n)
            .map(|(p, a)| (**p, (*a).clone()))
            .collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> Multiaddr {
        format!("/ip4/10.0.{}.{}/tcp/4001", i / 250, i % 250)
            .parse()
            .unwrap()
    }

    /// 10k announced peers and 100 addresses for one: the book keeps its caps, and every redial
    /// tick dials a bounded round-robin share of the peers that are not connected.
    #[test]
    fn announcements_cannot_grow_the_book_or_the_dials() {
        let mut lan = LanPeers::default();
        let peers: Vec<PeerId> = (0..10_000).map(|_| PeerId::random()).collect();
        let dialled = peers
            .iter()
            .enumerate()
            .filter(|(i, p)| lan.discovered(**p, addr(*i as u32)).is_some())
            .count();
        assert_eq!((dialled, lan.len()), (MAX_PEERS, MAX_PEERS));
        let first = peers[0];
        for i in 0..100 {
            lan.discovered(first, addr(i));
        }
        assert_eq!(lan.discovered(first, addr(0)).unwrap().len(), MAX_ADDRS);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PEERS / DIALS_PER_TICK {
            let tick = lan.next_redials(|_| false);
            assert_eq!(tick.len(), DIALS_PER_TICK);
            seen.extend(tick.into_iter().map(|(p, _)| p));
        }
        assert_eq!(seen.len(), MAX_PEERS, "every kept peer gets its turn");
        assert!(
            lan.next_redials(|_| true).is_empty(),
            "connected peers are not dialled"
        );
        for i in 0..100 {
            lan.expired(&first, &addr(i));
        }
        assert!(!lan.contains(&first));
    }
}
