//! One length-prefixed JSON frame per libp2p stream, as the swarm-wide tables (`names_sync`,
//! `copies`) exchange them: a 4-byte big-endian length, then that many bytes of JSON. Sizes are
//! bounded before anything is read or sent, and JSON is (de)serialized off the async workers.

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;

/// Inbound streams of one peer handled at once: one peer cannot take every place (a burst of
/// changes sends one stream each; one dropped is sent again with the next whole table).
pub const PER_PEER: usize = 4;

/// Reads one frame of at most `max` bytes from `stream`. Memory grows with the bytes that
/// arrive, not with the length the peer announced.
pub async fn read<T: DeserializeOwned + Send + 'static>(
    mut stream: impl futures::AsyncRead + Unpin,
    max: usize,
) -> anyhow::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    anyhow::ensure!(len <= max, "a frame of {len} bytes (at most {max})");
    let mut buf = Vec::with_capacity(len.min(64 << 10));
    stream.take(len as u64).read_to_end(&mut buf).await?;
    anyhow::ensure!(
        buf.len() == len,
        "the frame ends after {} of its {len} bytes",
        buf.len()
    );
    Ok(tokio::task::spawn_blocking(move || serde_json::from_slice(&buf)).await??)
}

/// Opens a `protocol` stream to `peer` and sends `value` in one frame of at most `max` bytes.
pub async fn send<T: Serialize + Send + 'static>(
    net: &cidfs_p2p::Client,
    peer: libp2p::PeerId,
    protocol: &'static str,
    value: T,
    max: usize,
) -> anyhow::Result<()> {
    let bytes = tokio::task::spawn_blocking(move || serde_json::to_vec(&value)).await??;
    anyhow::ensure!(bytes.len() <= max, "a frame over {max} bytes");
    let mut stream = net.open_stream(peer, protocol).await?;
    stream
        .write_all(&(bytes.len() as u32).to_be_bytes())
        .await?;
    stream.write_all(&bytes).await?;
    stream.close().await?;
    Ok(())
}

/// Runs `handle` on each inbound stream of `incoming` in a task of its own, at most `at_once` at
/// a time and at most [`PER_PEER`] of one peer ([`cidfs_p2p::slots`]): a stream past either is
/// dropped (its sender sees the stream fail and sends again later; `what` names the protocol in
/// the log).
pub async fn each_inbound<S, F, Fut>(
    incoming: impl futures::Stream<Item = (libp2p::PeerId, S)>,
    at_once: usize,
    what: &'static str,
    handle: F,
) where
    F: Fn(libp2p::PeerId, S) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    use cidfs_p2p::slots::{Refused, Slots};
    let slots = Slots::new(PER_PEER, at_once);
    futures::pin_mut!(incoming);
    while let Some((peer, stream)) = incoming.next().await {
        let slot = match slots.take(peer) {
            Ok(slot) => slot,
            Err(Refused::Peer(n)) => {
                tracing::debug!(%peer, "{what}: {n} streams of this peer at once; dropped one");
                continue;
            }
            Err(Refused::Total(n)) => {
                tracing::debug!(%peer, "{what}: {n} streams at once; dropped one");
                continue;
            }
        };
        let work = handle(peer, stream);
        tokio::spawn(async move {
            let _slot = slot;
            work.await
        });
    }
}

/// What waits for one peer while a frame is on its way to it: the changes made meanwhile,
/// merged as they come ([`Outboxes`]).
pub trait Pending: Default {
    /// One change.
    type Change;
    /// What one frame carries.
    type Frame;
    /// Takes in `change`, in place of what it makes out of date.
    fn merge(&mut self, change: Self::Change);
    /// Everything waiting, as the next frame; `None` when nothing waits.
    fn take(&mut self) -> Option<Self::Frame>;
}

/// Per peer, what waits to be sent, so one frame at a time goes to a peer (a peer takes only
/// [`PER_PEER`] streams at once, and two streams may be read in either order): a peer is here
/// while a sender runs for it.
pub struct Outboxes<P> {
    queued: std::collections::HashMap<libp2p::PeerId, P>,
}

impl<P> Default for Outboxes<P> {
    fn default() -> Self {
        Outboxes {
            queued: Default::default(),
        }
    }
}

impl<P: Pending> Outboxes<P> {
    /// Queues `change` for `peer`; true when no sender runs for the peer yet, and the caller
    /// must start one.
    pub fn push(&mut self, peer: libp2p::PeerId, change: P::Change) -> bool {
        let idle = !self.queued.contains_key(&peer);
        self.queued.entry(peer).or_default().merge(change);
        idle
    }

    /// The next frame for `peer`'s sender, or `None`: nothing is queued, and the sender stops.
    pub fn next(&mut self, peer: libp2p::PeerId) -> Option<P::Frame> {
        let frame = self.queued.get_mut(&peer)?.take();
        if frame.is_none() {
            self.queued.remove(&peer);
        }
        frame
    }

    /// A send to `peer` failed: what is queued goes (the caller sends it again later), and its
    /// sender stops.
    pub fn give_up(&mut self, peer: libp2p::PeerId) {
        self.queued.remove(&peer);
    }
}

/// Sends what `outboxes` holds for `peer` with `send` (true: sent), a frame at a time, until
/// nothing is left or a send fails; a failure drops what waits ([`Outboxes::give_up`]).
pub async fn drain<P, F, Fut>(
    outboxes: &std::sync::Mutex<Outboxes<P>>,
    peer: libp2p::PeerId,
    mut send: F,
) where
    P: Pending,
    F: FnMut(P::Frame) -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        let next = crate::sync::lock(outboxes).next(peer);
        let Some(frame) = next else { return };
        if !send(frame).await {
            crate::sync::lock(outboxes).give_up(peer);
            return;
        }
    }
}

/// A [`Pending`] of whole values: the latest replaces what waits.
pub struct Latest<T>(Option<T>);

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest(None)
    }
}

impl<T> Pending for Latest<T> {
    type Change = T;
    type Frame = T;
    fn merge(&mut self, change: T) {
        self.0 = Some(change);
    }
    fn take(&mut self) -> Option<T> {
        self.0.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn framed(announced: u32, body: &[u8]) -> futures::io::Cursor<Vec<u8>> {
        let mut v = announced.to_be_bytes().to_vec();
        v.extend_from_slice(body);
        futures::io::Cursor::new(v)
    }

    #[tokio::test]
    async fn a_frame_is_read_whole_and_no_longer_than_announced() {
        let v: Vec<u32> = read(framed(7, b"[1,2,3]"), 100)
            .await
            .expect("a whole frame");
        assert_eq!(v, [1, 2, 3]);
        // bytes after the frame are not part of it
        let v: Vec<u32> = read(framed(3, b"[1]trailing"), 100).await.expect("a frame");
        assert_eq!(v, [1]);
    }

    /// One sender per peer: the values pushed while a frame is on its way collapse into the
    /// latest; the sender stops when nothing waits; a failed send drops what waited.
    #[test]
    fn a_peer_gets_the_latest_value_one_frame_at_a_time() {
        let (a, b) = (libp2p::PeerId::random(), libp2p::PeerId::random());
        let mut o = Outboxes::<Latest<u32>>::default();
        assert!(o.push(a, 1), "a's first value starts a sender");
        assert!(o.push(b, 1), "each peer has its own");
        assert_eq!(o.next(a), Some(1));
        assert!(!o.push(a, 2), "a's sender is still running");
        assert!(!o.push(a, 3));
        assert_eq!(o.next(a), Some(3), "the latest only");
        assert_eq!(o.next(a), None, "nothing left: the sender stops");
        assert!(o.push(a, 4), "the next value starts a sender again");
        o.give_up(a);
        assert_eq!(o.next(a), None, "a failed send drops what waited");
        assert_eq!(o.next(b), Some(1));
    }

    /// `drain` sends a peer's frames one at a time, the latest of what was queued while one
    /// was out, and stops at a failed send, dropping what waited.
    #[tokio::test]
    async fn drain_sends_until_nothing_waits_or_a_send_fails() {
        let a = libp2p::PeerId::random();
        let o = std::sync::Mutex::new(Outboxes::<Latest<u32>>::default());
        let sent = std::sync::Mutex::new(Vec::new());
        let send = |fail: Option<u32>| {
            let (o, sent) = (&o, &sent);
            move |v: u32| {
                crate::sync::lock(sent).push(v);
                if v == 1 || v == 4 {
                    // changes made while this frame is out
                    crate::sync::lock(o).push(a, v + 1);
                    crate::sync::lock(o).push(a, v + 2);
                }
                std::future::ready(fail != Some(v))
            }
        };
        assert!(crate::sync::lock(&o).push(a, 1));
        drain(&o, a, send(None)).await;
        assert_eq!(*crate::sync::lock(&sent), [1, 3]);
        assert!(crate::sync::lock(&o).push(a, 4), "the sender stopped");
        drain(&o, a, send(Some(4))).await;
        assert_eq!(*crate::sync::lock(&sent), [1, 3, 4]);
        assert_eq!(
            crate::sync::lock(&o).next(a),
            None,
            "a failed send drops 5 and 6"
        );
    }

    #[tokio::test]
    async fn a_frame_over_the_bound_or_cut_short_is_refused() {
        let e = read::<Vec<u32>>(framed(101, b"[]"), 100).await.unwrap_err();
        assert!(e.to_string().contains("at most 100"), "{e:#}");
        // a peer may announce the largest frame and send a few bytes: refused, with no buffer
        // of the announced size
        let e = read::<Vec<u32>>(framed(u32::MAX, b"[1]"), usize::MAX)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("ends after 3 of its"), "{e:#}");
    }

    /// A peer's stream past its [`PER_PEER`] being handled is dropped; another peer's is not;
    /// once they are done, the peer gets its places back.
    #[tokio::test]
    async fn one_peer_takes_at_most_its_share_of_the_places() {
        let (a, b) = (libp2p::PeerId::random(), libp2p::PeerId::random());
        let (tx, rx) = futures::channel::mpsc::unbounded::<(libp2p::PeerId, u32)>();
        let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let (h, r) = (handled.clone(), release.clone());
        tokio::spawn(each_inbound(rx, 8, "test", move |peer, n| {
            crate::sync::lock(&h).push((peer, n));
            let r = r.clone();
            async move { r.notified().await }
        }));
        let sent = |peer, n| tx.unbounded_send((peer, n)).expect("send");
        let handled_now = || async {
            // the loop takes each stream as it comes; let it run until idle
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            crate::sync::lock(&handled)
                .iter()
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
        };
        let share = PER_PEER as u32;
        for n in 1..=share + 1 {
            sent(a, n);
        }
        sent(b, 100);
        let mut want: Vec<u32> = (1..=share).chain([100]).collect();
        assert_eq!(
            handled_now().await,
            want,
            "a's stream past its share is dropped"
        );
        release.notify_waiters();
        handled_now().await;
        sent(a, 200);
        want.push(200);
        assert_eq!(handled_now().await, want, "a's places came back");
    }
}
