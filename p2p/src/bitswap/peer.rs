//! Stream I/O with one peer: reading its inbound streams, serving its wantlist, and writing our
//! wants and answers on streams of our own. The engine (`mod.rs`) starts these per peer and
//! owns them; the state machines they feed (`client::Wants`, `server::Ledger`) do no I/O.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use libp2p::PeerId;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::codec::{read_message, write_parts, ReadError, MAX_MESSAGE_SIZE};
use super::message::{Message, WantType};
use super::server::{Ledger, FIRST_MESSAGE_SIZE, TARGET_MESSAGE_SIZE};
use super::{inbound, Bitswap, ANSWER_STREAMS, PROTOCOL_1_1_0, PROTOCOL_1_2_0};

/// Answers queued for a peer's answer writers, with the byte budget each holds.
type Answers = Arc<tokio::sync::Mutex<mpsc::Receiver<(Message, OwnedSemaphorePermit)>>>;

impl Bitswap {
    pub(super) async fn read_stream(
        self,
        peer: PeerId,
        stream: libp2p::Stream,
        _slot: inbound::Slot,
    ) {
        let mut stream = Noting {
            stream,
            bitswap: &self,
            peer,
            last: None,
        };
        loop {
            // no complete message for a while: close (the peer reopens when it needs to)
            let Ok(read) = tokio::time::timeout(inbound::IDLE, read_message(&mut stream)).await
            else {
                debug!(%peer, "closing an idle bitswap stream");
                break;
            };
            match read {
                Ok(msg) => self.handle_message(peer, msg),
                Err(ReadError::Closed) => break,
                Err(ReadError::Io(e)) => {
                    debug!(%peer, "bitswap stream ended: {e}");
                    break;
                }
                Err(e) => {
                    warn!(%peer, "closing bitswap stream: peer sent a bad message: {e}");
                    break;
                }
            }
        }
    }

    async fn serve_loop(
        self,
        peer: PeerId,
        ledger: Arc<Ledger>,
        answers: mpsc::Sender<(Message, OwnedSemaphorePermit)>,
        closed: Arc<AtomicBool>,
    ) {
        let budget = Arc::new(Semaphore::new(
            self.inner.config.max_outstanding_bytes_per_peer,
        ));
        let cap = self.inner.config.max_outstanding_bytes_per_peer;
        // whether the queue ran dry since the last answer: the next one is kept small
        let mut fresh = true;
        loop {
            if closed.load(Ordering::Relaxed) {
                break;
            }
            if ledger.is_empty() {
                ledger.notify.notified().await;
                fresh = true;
                continue;
            }
            let limit = match std::mem::replace(&mut fresh, false) {
                true => FIRST_MESSAGE_SIZE,
                false => TARGET_MESSAGE_SIZE,
            };
            let source = self.inner.source.clone();
            let l = ledger.clone();
            let corrupt = self.inner.config.corrupt_blocks;
            // small blocks (most of a lazy start's misses) are read here; bigger reads may
            // take a while on disk: off the async workers
            let msg = match ledger.next_small_answer(&*source, corrupt) {
                Some(msg) => msg,
                None => match tokio::task::spawn_blocking(move || {
                    l.next_answer(&*source, corrupt, limit)
                })
                .await
                {
                    Ok(Some(msg)) => msg,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(%peer, "bitswap serve task failed: {e}");
                        break;
                    }
                },
            };
            let size = msg.approx_size().clamp(1, cap) as u32;
            let Ok(permit) = budget.clone().acquire_many_owned(size).await else {
                break;
            };
            if answers.send((msg, permit)).await.is_err() {
                break;
            }
        }
    }

    /// Starts the tasks that talk to `peer`: the serve loop, the writer of our wants, and
    /// [`ANSWER_STREAMS`] writers of our answers (so one stream's flow-control window never
    /// stalls the blocks behind it). They stop when the returned set is dropped.
    pub(super) fn start(
        &self,
        peer: PeerId,
        control: libp2p_stream::Control,
        wants: mpsc::Receiver<Message>,
        ledger: Arc<Ledger>,
        closed: Arc<AtomicBool>,
    ) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let (answers_tx, answers_rx) = mpsc::channel(4);
        let answers = Arc::new(tokio::sync::Mutex::new(answers_rx));
        for _ in 0..ANSWER_STREAMS {
            let out = Outbound::new(peer, control.clone());
            tasks.spawn(self.clone().answer_loop(peer, out, answers.clone()));
        }
        tasks.spawn(
            self.clone()
                .want_loop(peer, Outbound::new(peer, control), wants),
        );
        tasks.spawn(self.clone().serve_loop(peer, ledger, answers_tx, closed));
        tasks
    }

    /// Writes answers the serve loop queued, sharing the queue with the other answer writers.
    async fn answer_loop(self, peer: PeerId, mut out: Outbound, answers: Answers) {
        loop {
            let next = answers.lock().await.recv().await;
            let Some((msg, permit)) = next else { break };
            let sent = out.send(&msg).await;
            drop(permit);
            if !self.sent(peer, &msg, sent) {
                break;
            }
        }
    }

    /// Writes our wants, coalescing what is queued into one message.
    async fn want_loop(self, peer: PeerId, mut out: Outbound, mut wants: mpsc::Receiver<Message>) {
        while let Some(mut msg) = wants.recv().await {
            while msg.approx_size() < MAX_MESSAGE_SIZE / 2 {
                match wants.try_recv() {
                    Ok(m) => msg.merge(m),
                    Err(_) => break,
                }
            }
            let sent = out.send(&msg).await;
            if !self.sent(peer, &msg, sent) {
                break;
            }
        }
    }
}

/// One outbound stream to a peer, opened on first use and reopened once after a failure.
struct Outbound {
    peer: PeerId,
    control: libp2p_stream::Control,
    /// The stream and whether it speaks 1.2.0.
    stream: Option<(libp2p::Stream, bool)>,
}

impl Outbound {
    fn new(peer: PeerId, control: libp2p_stream::Control) -> Self {
        Outbound {
            peer,
            control,
            stream: None,
        }
    }

    /// Writes `msg`; `false` when the peer cannot be reached twice in a row.
    async fn send(&mut self, msg: &Message) -> bool {
        for attempt in 0..2 {
            if self.stream.is_none() {
                self.stream = open_stream(&mut self.control, self.peer).await;
            }
            let Some((s, v12)) = self.stream.as_mut() else {
                return false;
            };
            match write_parts(s, &encode_for(msg, *v12)).await {
                Ok(()) => return true,
                Err(e) => {
                    debug!(peer = %self.peer, attempt, "bitswap write failed: {e}");
                    self.stream = None;
                }
            }
        }
        false
    }
}

/// Opens our outbound stream to `peer`, preferring 1.2.0. Returns the stream and whether it is 1.2.0.
async fn open_stream(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
) -> Option<(libp2p::Stream, bool)> {
    for (proto, v12) in [(PROTOCOL_1_2_0, true), (PROTOCOL_1_1_0, false)] {
        match control.open_stream(peer, proto).await {
            Ok(s) => return Some((s, v12)),
            Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => continue,
            Err(e) => {
                debug!(%peer, "cannot open bitswap stream: {e}");
                return None;
            }
        }
    }
    debug!(%peer, "peer speaks no bitswap version we know");
    None
}

/// 1.1.0 has no HAVE/DONT_HAVE: drop presences and ask for blocks instead of haves.
fn encode_for(msg: &Message, v12: bool) -> Vec<Bytes> {
    if v12 {
        return msg.encode_parts();
    }
    let mut m = msg.clone();
    m.presences.clear();
    for w in &mut m.wants {
        w.want_type = WantType::Block;
        w.send_dont_have = false;
    }
    m.encode_parts()
}

/// How often an inbound stream tells the want side that its peer is sending.
const NOTE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// An inbound stream that tells the want side ([`super::client::Wants::heard`]) when its peer
/// last sent bytes, at most every [`NOTE_EVERY`]: a peer in the middle of a long message on a
/// slow link is not taken for a silent one.
struct Noting<'a> {
    stream: libp2p::Stream,
    bitswap: &'a Bitswap,
    peer: PeerId,
    last: Option<std::time::Instant>,
}

impl futures::AsyncRead for Noting<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let read = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(1..)) = read {
            let now = std::time::Instant::now();
            if self
                .last
                .is_none_or(|t| now.duration_since(t) >= NOTE_EVERY)
            {
                self.last = Some(now);
                super::session::lock(&self.bitswap.inner.wants).heard(self.peer, now);
            }
        }
        read
    }
}
