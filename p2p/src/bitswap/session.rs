//! A session groups the wants of one read (one `cat`, one file) so that peers that already
//! delivered blocks of it are asked first, with want-block straight away, and the load is spread
//! across them round-robin. Peers that misbehave are dropped from the session.

use libp2p::PeerId;
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};

/// Most peers remembered per session.
const MAX_SESSION_PEERS: usize = 16;

/// A handle to a session; cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Default, Debug)]
struct Inner {
    peers: Mutex<Vec<PeerId>>,
    next: AtomicUsize,
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
}
