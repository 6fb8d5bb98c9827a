//! Admission of inbound streams (bitswap's, and the protocols the daemon runs over
//! `Client::accept`): at most `per_peer` open streams from one peer and `total` from all peers
//! together. A peer that opens streams and sends nothing holds only its own slots (one global
//! pool once let a single peer lock every other peer out: finding H2).

use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::bitswap::session::lock;

/// Open inbound streams, per peer and in all.
#[derive(Clone)]
pub struct Slots(Arc<Inner>);

struct Inner {
    per_peer: usize,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    by_peer: HashMap<PeerId, usize>,
    total: usize,
}

/// One admitted stream; dropping it frees the slot.
pub struct Slot {
    slots: Slots,
    peer: PeerId,
}

/// Why a stream was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The peer already has `per_peer` streams open.
    Peer(usize),
    /// All peers together have `total` streams open.
    Total(usize),
}

impl Slots {
    pub fn new(per_peer: usize, total: usize) -> Self {
        Slots(Arc::new(Inner {
            per_peer,
            total,
            open: Mutex::default(),
        }))
    }

    /// A slot for one more stream of `peer`, if it and the node are under their caps.
    pub fn take(&self, peer: PeerId) -> Result<Slot, Refused> {
        let mut open = lock(&self.0.open);
        let mine = open.by_peer.get(&peer).copied().unwrap_or(0);
        if mine >= self.0.per_peer {
            return Err(Refused::Peer(mine));
        }
        if open.total >= self.0.total {
            return Err(Refused::Total(open.total));
        }
        open.total += 1;
        *open.by_peer.entry(peer).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            peer,
        })
    }

    /// Streams open now: `peer`'s, and all.
    #[cfg(test)]
    pub fn open(&self, peer: &PeerId) -> (usize, usize) {
        let open = lock(&self.0.open);
        (open.by_peer.get(peer).copied().unwrap_or(0), open.total)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.slots.0.open);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One peer holding silent streams takes only its own slots: another peer still gets in,
    /// and slots come back when streams end.
    #[test]
    fn one_peer_cannot_take_every_slot() {
        let slots = Slots::new(8, 20);
        let (greedy, honest) = (PeerId::random(), PeerId::random());
        let held: Vec<Slot> = (0..8).map(|_| slots.take(greedy).unwrap()).collect();
        assert_eq!(slots.take(greedy).err(), Some(Refused::Peer(8)));
        let mine = slots.take(honest).expect("another peer still gets a slot");
        assert_eq!(slots.open(&greedy), (8, 9));
        drop(held);
        assert_eq!(slots.open(&greedy), (0, 1));
        drop(mine);
        assert_eq!(slots.open(&honest), (0, 0));
        // the node-wide cap holds across peers
        let many: Vec<Slot> = (0..20)
            .map(|_| slots.take(PeerId::random()).unwrap())
            .collect();
        assert_eq!(slots.take(honest).err(), Some(Refused::Total(20)));
        drop(many);
        assert!(slots.take(honest).is_ok());
    }
}
