//! A session groups the wants of one read (one `cat`, one file) so that peers that already
//! delivered blocks of it are asked first, with want-block straight away, and the load is spread
//! across them round-robin. Peers that misbehave are dropped from the session.
//!
//! A session may also be *divided* among the peers that fetch the same data at the same time
//! (a fan-out): each CID gets one owner among them by its place on a ring, each member takes
//! what it owns from whoever holds it, and everything else from its owner, once the owner has
//! it. Every block then crosses the first holder's uplink about once.

use cid::Cid;
use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};
use std::time::{Duration, Instant};

/// Most peers remembered per session.
const MAX_SESSION_PEERS: usize = 16;
/// How long the part of a member that stalled goes to any holder, before it is asked again.
pub const STALL_FOR: Duration = Duration::from_secs(10);

/// A handle to a session; cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Default, Debug)]
struct Inner {
    peers: Mutex<Vec<PeerId>>,
    next: AtomicUsize,
    ring: Mutex<Option<Ring>>,
}

/// The members of a divided session, sorted by peer id, so that every member that knows the
/// same set computes the same owners.
#[derive(Debug)]
struct Ring {
    members: Vec<PeerId>,
    /// Index of this node in `members`.
    me: usize,
    /// Members that did not deliver what they own in time, and until when their CIDs go to
    /// anyone.
    stalled: HashMap<PeerId, Instant>,
}

impl Ring {
    /// The sector (index into `members`) of a CID and its offset inside the sector.
    fn sector(&self, cid: &Cid) -> (usize, u64) {
        let width = u64::MAX / self.members.len() as u64 + 1;
        let p = place(cid);
        ((p / width) as usize, p % width)
    }
}

/// A CID's place on the ring: the first 8 bytes of its digest (uniform for sha2-256).
pub fn place(cid: &Cid) -> u64 {
    let d = cid.hash().digest();
    let mut b = [0u8; 8];
    let n = d.len().min(8);
    b[..n].copy_from_slice(&d[..n]);
    u64::from_be_bytes(b)
}

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    /// Records that `peer` delivered a block of this session.
    pub fn add_peer(&self, peer: PeerId) {
        let mut peers = lock(&self.inner.peers);
        if !peers.contains(&peer) && peers.len() < MAX_SESSION_PEERS {
            peers.push(peer);
        }
    }

    /// Forgets `peer` (it sent a bad block or vanished).
    pub fn remove_peer(&self, peer: &PeerId) {
        lock(&self.inner.peers).retain(|p| p != peer);
    }

    /// The session peer that passes `usable` with the least `load` (want-blocks in flight to
    /// it); ties go round-robin, so equal peers share the work.
    pub fn pick(
        &self,
        usable: impl Fn(&PeerId) -> bool,
        load: impl Fn(&PeerId) -> usize,
    ) -> Option<PeerId> {
        let peers = lock(&self.inner.peers);
        let n = peers.len();
        if n == 0 {
            return None;
        }
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| peers[(start + i) % n])
            .filter(|p| usable(p))
            .min_by_key(|p| load(p))
    }

    pub fn peers(&self) -> Vec<PeerId> {
        lock(&self.inner.peers).clone()
    }

    /// Divides the session among `me` and `others`, the peers fetching the same data now.
    /// With no others the session stays whole.
    pub fn divide(&self, me: PeerId, others: impl IntoIterator<Item = PeerId>) {
        let mut members: Vec<PeerId> = others.into_iter().chain([me]).collect();
        members.sort();
        members.dedup();
        let ring = (members.len() > 1).then(|| Ring {
            me: members.iter().position(|p| *p == me).unwrap_or(0),
            members,
            stalled: HashMap::new(),
        });
        *lock(&self.inner.ring) = ring;
    }

    /// Where `cid` falls for this node: 0 for its own part (and in a whole session), else how
    /// many members further round the ring its owner is; and its offset inside that part. Sorting
    /// by (offset, distance) walks every member's part side by side.
    pub fn place(&self, cid: &Cid) -> (usize, u64) {
        match &*lock(&self.inner.ring) {
            Some(r) => {
                let (s, off) = r.sector(cid);
                ((s + r.members.len() - r.me) % r.members.len(), off)
            }
            None => (0, place(cid)),
        }
    }

    /// The member that owns `cid`, unless it is this node, the session is whole, or the owner
    /// stalled less than [`STALL_FOR`] ago.
    pub fn owner(&self, cid: &Cid) -> Option<PeerId> {
        let ring = lock(&self.inner.ring);
        let r = ring.as_ref()?;
        let (s, _) = r.sector(cid);
        let owner = r.members[s];
        let stalled = r.stalled.get(&owner).is_some_and(|t| *t > Instant::now());
        (s != r.me && !stalled).then_some(owner)
    }

    /// `peer` did not deliver what it owns in time (or is gone; `why` says which, for the
    /// log): for [`STALL_FOR`], its part goes to any holder.
    pub fn stall(&self, peer: &PeerId, why: &str) {
        if let Some(r) = lock(&self.inner.ring).as_mut() {
            let until = Instant::now() + STALL_FOR;
            if r.stalled
                .insert(*peer, until)
                .is_none_or(|t| t < Instant::now())
            {
                tracing::debug!(%peer, why, "a co-fetcher stalled; its part of the session goes to any holder for a while");
            }
        }
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_and_removal() {
        let s = Session::new();
        let (a, b) = (PeerId::random(), PeerId::random());
        s.add_peer(a);
        s.add_peer(b);
        s.add_peer(a);
        let picks: Vec<_> = (0..4).filter_map(|_| s.pick(|_| true, |_| 0)).collect();
        assert_eq!(picks.iter().filter(|p| **p == a).count(), 2);
        assert_eq!(s.pick(|p| *p != a, |_| 0), Some(b));
        // the less loaded peer wins whatever the turn
        for _ in 0..3 {
            assert_eq!(s.pick(|_| true, |p| usize::from(*p == a)), Some(b));
        }
        s.remove_peer(&b);
        assert_eq!(s.pick(|p| *p != a, |_| 0), None);
    }

    fn cid(i: u32) -> Cid {
        let mh = crate::bitswap::message::hash(0x12, &i.to_be_bytes()).unwrap();
        Cid::new_v1(0x55, mh)
    }

    #[test]
    fn a_divided_session_gives_every_cid_one_owner() {
        let mut peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        peers.sort();
        let sessions: Vec<Session> = peers
            .iter()
            .map(|me| {
                let s = Session::new();
                s.divide(*me, peers.iter().copied());
                s
            })
            .collect();
        let cids: Vec<Cid> = (0..400).map(cid).collect();
        let mut owned = [0usize; 4];
        for c in &cids {
            // exactly one member owns it (its owner() is None); the others name that member
            let own: Vec<usize> = (0..4).filter(|i| sessions[*i].owner(c).is_none()).collect();
            assert_eq!(own.len(), 1, "{c}");
            let o = own[0];
            owned[o] += 1;
            assert_eq!(sessions[o].place(c).0, 0);
            for (i, s) in sessions.iter().enumerate().filter(|(i, _)| *i != o) {
                assert_eq!(s.owner(c), Some(peers[o]));
                assert_eq!(s.place(c).0, (o + 4 - i) % 4);
            }
        }
        assert!(owned.iter().all(|n| *n > 60), "uneven parts: {owned:?}");
        // a stalled owner's CIDs go to anyone; a whole session has no owners
        let c = cids
            .iter()
            .find(|c| sessions[0].owner(c) == Some(peers[1]))
            .unwrap();
        sessions[0].stall(&peers[1], "test");
        assert_eq!(sessions[0].owner(c), None);
        let whole = Session::new();
        whole.divide(peers[0], []);
        assert_eq!(whole.owner(c), None);
        assert_eq!(whole.place(c), (0, place(c)));
    }
}
