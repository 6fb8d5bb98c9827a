//! Bitswap 1.2.0 (and 1.1.0), client and server, over `libp2p-stream`.
//!
//! ```text
//!  inbound stream ──read_message──▶ handle() ─┬─ blocks/presences ─▶ client::Wants ─▶ sends
//!                                             └─ wantlist ─────────▶ server::Ledger ─▶ serve task
//!  sends / answers ─▶ PeerHandle (wants channel, answers channel) ─▶ writer task ─▶ outbound stream
//! ```
//! As the spec says, a peer only ever reads its inbound streams and writes on its own outbound
//! stream. One writer task and one serve task run per peer that we talk to; inbound reader tasks
//! are capped by a semaphore. `Wants` and `Ledger` hold no I/O and are unit-tested alone.

pub mod client;
pub mod codec;
mod inbound;
pub mod message;
pub mod server;
pub mod session;

use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, trace, warn};

use crate::{BlockSource, Error};
use client::{BlockOutcome, Sends, Timing, Wants};
use codec::{read_message, write_frame, ReadError, MAX_MESSAGE_SIZE};
use message::{Message, WantType};
use server::Ledger;
use session::lock;
pub use session::Session;

/// Streams per peer that carry our answers (blocks), besides the one for our wants.
const ANSWER_STREAMS: usize = 4;

/// The protocol we prefer.
pub const PROTOCOL_1_2_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// The older protocol (no HAVE / DONT_HAVE) still spoken by some peers.
pub const PROTOCOL_1_1_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.1.0");

/// Bitswap settings; every cap has a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// A `get` that nobody answers fails after this long.
    pub fetch_timeout: Duration,
    /// A want-block unanswered this long is asked of another peer.
    pub block_timeout: Duration,
    /// Rebroadcast interval for wants nobody has answered.
    pub rebroadcast: Duration,
    /// Wantlist entries queued per peer; more are dropped.
    pub max_wants_per_peer: usize,
    /// Answer bytes queued per peer before serving it pauses.
    pub max_outstanding_bytes_per_peer: usize,
    /// Concurrent inbound streams (all peers together).
    pub max_inbound_streams: usize,
    /// Concurrent inbound streams of one peer (cidfs uses up to 5: its wants and
    /// [`ANSWER_STREAMS`] answer streams; js peers open a stream per message).
    pub max_inbound_streams_per_peer: usize,
    /// Test-only fault switch: corrupt every block served.
    pub corrupt_blocks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fetch_timeout: Duration::from_secs(60),
            block_timeout: Duration::from_secs(10),
            rebroadcast: Duration::from_secs(1),
            max_wants_per_peer: 1024,
            max_outstanding_bytes_per_peer: 8 << 20,
            max_inbound_streams: 4096,
            max_inbound_streams_per_peer: 32,
            corrupt_blocks: false,
        }
    }
}

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
}

/// Peers whose [`PeerStats`] are kept. Past it, a new peer replaces one that is no longer
/// connected, or goes uncounted (the totals in [`Stats`] still count it).
pub const MAX_PEER_STATS: usize = 1024;

#[derive(Default)]
struct Counters {
    blocks_received: AtomicU64,
    bytes_received: AtomicU64,
    blocks_sent: AtomicU64,
    bytes_sent: AtomicU64,
    duplicate_blocks: AtomicU64,
    rejected_blocks: AtomicU64,
}

struct PeerHandle {
    wants_tx: mpsc::Sender<Message>,
    ledger: Arc<Ledger>,
    closed: Arc<AtomicBool>,
}

struct Inner {
    config: Config,
    control: Mutex<libp2p_stream::Control>,
    source: Arc<dyn BlockSource>,
    wants: Mutex<Wants>,
    connected: Mutex<HashSet<PeerId>>,
    peers: Mutex<HashMap<PeerId, PeerHandle>>,
    counters: Counters,
    per_peer: Mutex<HashMap<PeerId, PeerStats>>,
    inbound: inbound::Slots,
    provider_search: mpsc::Sender<Cid>,
}

/// Handle to the bitswap engine; cheap to clone.
#[derive(Clone)]
pub struct Bitswap {
    inner: Arc<Inner>,
}

impl Bitswap {
    /// Starts accepting bitswap streams and the rebroadcast timer. Must run inside tokio.
    /// CIDs whose providers should be searched in the DHT are sent on `provider_search`.
    pub fn spawn(
        config: Config,
        control: libp2p_stream::Control,
        mut incoming: crate::accept::Incoming,
        source: Arc<dyn BlockSource>,
        provider_search: mpsc::Sender<Cid>,
    ) -> Bitswap {
        let timing = Timing {
            block_timeout: config.block_timeout,
            rebroadcast: config.rebroadcast,
            // an owner that has not delivered within one block timeout is not keeping up
            owner_patience: config.block_timeout,
        };
        let inner = Arc::new(Inner {
            inbound: inbound::Slots::new(
                config.max_inbound_streams_per_peer,
                config.max_inbound_streams,
            ),
            config,
            control: Mutex::new(control),
            source,
            wants: Mutex::new(Wants::new(timing)),
            connected: Mutex::new(HashSet::new()),
            peers: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            per_peer: Mutex::new(HashMap::new()),
            provider_search,
        });
        let bitswap = Bitswap { inner };
        let bs = bitswap.clone();
        tokio::spawn(async move {
            // (streams wait in a queue of their own: crate::accept)
            while let Some((peer, stream, _protocol)) = incoming.next().await {
                match bs.inner.inbound.take(peer) {
                    Ok(slot) => {
                        let bs = bs.clone();
                        tokio::spawn(async move { bs.read_stream(peer, stream, slot).await });
                    }
                    Err(why) => {
                        warn!(%peer, "too many inbound bitswap streams ({why:?}); refusing one")
                    }
                }
            }
        });
        let weak = Arc::downgrade(&bitswap.inner);
        let period = (bitswap.inner.config.rebroadcast / 2).max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(period);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                Bitswap { inner }.tick();
            }
        });
        bitswap
    }

    /// Fetches one block from the swarm. The bytes returned hash to `cid`.
    /// Cancel-safe: dropping the future withdraws the want once no one else waits for it.
    pub async fn get(&self, cid: Cid, session: &Session) -> Result<Bytes, Error> {
        if !server::servable(&cid) {
            return Err(Error::UnsupportedHash(cid));
        }
        let connected = self.connected();
        let (rx, sends) = lock(&self.inner.wants).want(cid, session, &connected, Instant::now());
        self.dispatch(sends);
        let guard = AbandonGuard { bitswap: self, cid };
        let res = tokio::time::timeout(self.inner.config.fetch_timeout, rx).await;
        drop(guard);
        match res {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(_)) => Err(Error::Shutdown),
            Err(_) => Err(Error::NotFound {
                cid,
                secs: self.inner.config.fetch_timeout.as_secs(),
                peers: connected.len(),
            }),
        }
    }

    /// `cid` is now in the local store: peers that wanted it from us and heard DONT_HAVE are
    /// told HAVE, so they can fetch it here instead of from its first holder.
    pub fn stored(&self, cid: &Cid) {
        let ledgers: Vec<Arc<Ledger>> = lock(&self.inner.peers)
            .values()
            .map(|h| h.ledger.clone())
            .collect();
        for l in ledgers {
            l.stored(cid);
        }
    }

    /// Peers that asked us for `cid` lately (its want is among their last
    /// [`server::RECENT_WANTS_PER_PEER`]): for a DAG's root, the peers fetching it too.
    pub fn wanted_by(&self, cid: &Cid) -> Vec<PeerId> {
        lock(&self.inner.peers)
            .iter()
            .filter(|(_, h)| h.ledger.wanted(cid))
            .map(|(p, _)| *p)
            .collect()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
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
        let mut v: Vec<_> = lock(&self.inner.per_peer)
            .iter()
            .map(|(p, s)| (*p, *s))
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// Adds to `peer`'s counters.
    fn count(&self, peer: PeerId, f: impl FnOnce(&mut PeerStats)) {
        let mut map = lock(&self.inner.per_peer);
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

    /// Called by the event loop when the first connection to `peer` is up.
    pub fn peer_connected(&self, peer: PeerId) {
        lock(&self.inner.connected).insert(peer);
        let sends = lock(&self.inner.wants).on_connect(peer);
        self.dispatch(sends);
    }

    /// Called by the event loop when the last connection to `peer` is gone.
    pub fn peer_disconnected(&self, peer: PeerId) {
        lock(&self.inner.connected).remove(&peer);
        self.peer_unreachable(peer);
    }

    fn connected(&self) -> HashSet<PeerId> {
        lock(&self.inner.connected).clone()
    }

    fn tick(&self) {
        let connected = self.connected();
        let (sends, searches) = lock(&self.inner.wants).tick(&connected, Instant::now());
        self.dispatch(sends);
        for cid in searches {
            // full channel: a search is already under way; the next tick tries again
            let _ = self.inner.provider_search.try_send(cid);
        }
    }

    /// Groups wants by peer and queues one message per peer.
    fn dispatch(&self, sends: Sends) {
        if sends.is_empty() {
            return;
        }
        let mut by_peer: HashMap<PeerId, Message> = HashMap::new();
        for (peer, want) in sends {
            by_peer.entry(peer).or_default().wants.push(want);
        }
        for (peer, msg) in by_peer {
            let tx = self.handle(peer).0;
            if tx.try_send(msg).is_err() {
                debug!(%peer, "want queue full; the rebroadcast will retry");
            }
        }
    }

    /// The peer's handle, creating it (and its writer and serve tasks) on first use.
    fn handle(&self, peer: PeerId) -> (mpsc::Sender<Message>, Arc<Ledger>) {
        let mut peers = lock(&self.inner.peers);
        if let Some(h) = peers.get(&peer) {
            return (h.wants_tx.clone(), h.ledger.clone());
        }
        let (wants_tx, wants_rx) = mpsc::channel(1024);
        let (answers_tx, answers_rx) = mpsc::channel(4);
        let ledger = Arc::new(Ledger::default());
        let closed = Arc::new(AtomicBool::new(false));
        let control = lock(&self.inner.control).clone();
        tokio::spawn(self.clone().write_loop(peer, control, wants_rx, answers_rx));
        tokio::spawn(
            self.clone()
                .serve_loop(peer, ledger.clone(), answers_tx, closed.clone()),
        );
        peers.insert(
            peer,
            PeerHandle {
                wants_tx: wants_tx.clone(),
                ledger: ledger.clone(),
                closed,
            },
        );
        (wants_tx, ledger)
    }

    async fn read_stream(self, peer: PeerId, mut stream: libp2p::Stream, _slot: inbound::Slot) {
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

    fn handle_message(&self, peer: PeerId, msg: Message) {
        let now = Instant::now();
        let connected = self.connected();
        let mut sends = Vec::new();
        let mut traded = PeerStats {
            wants_received: msg.wants.len() as u64,
            ..PeerStats::default()
        };
        {
            let mut wants = lock(&self.inner.wants);
            for (cid, presence) in msg.presences {
                sends.extend(wants.on_presence(peer, cid, presence, &connected, now));
            }
            let c = &self.inner.counters;
            for block in &msg.blocks {
                let (outcome, s) = wants.on_block(peer, block, &connected, now);
                sends.extend(s);
                match outcome {
                    BlockOutcome::Wanted => {
                        c.blocks_received.fetch_add(1, Ordering::Relaxed);
                        c.bytes_received
                            .fetch_add(block.data.len() as u64, Ordering::Relaxed);
                        traded.blocks_received += 1;
                        traded.bytes_received += block.data.len() as u64;
                    }
                    BlockOutcome::Duplicate => {
                        c.duplicate_blocks.fetch_add(1, Ordering::Relaxed);
                        traded.duplicate_blocks += 1;
                    }
                    BlockOutcome::Unsolicited => {
                        c.rejected_blocks.fetch_add(1, Ordering::Relaxed);
                        warn!(%peer, cid = %block.cid, "dropped a block that hashes to no wanted CID (corrupt or unsolicited); asking other peers");
                    }
                }
            }
        }
        self.count(peer, |p| {
            p.wants_received += traded.wants_received;
            p.blocks_received += traded.blocks_received;
            p.bytes_received += traded.bytes_received;
            p.duplicate_blocks += traded.duplicate_blocks;
        });
        self.dispatch(sends);
        if msg.full || !msg.wants.is_empty() {
            let (_, ledger) = self.handle(peer);
            let dropped = ledger.apply(msg.full, msg.wants, self.inner.config.max_wants_per_peer);
            if dropped > 0 {
                warn!(%peer, dropped, "peer's wantlist is over the cap; entries dropped");
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
        loop {
            if closed.load(Ordering::Relaxed) {
                break;
            }
            if ledger.is_empty() {
                ledger.notify.notified().await;
                continue;
            }
            let source = self.inner.source.clone();
            let l = ledger.clone();
            let corrupt = self.inner.config.corrupt_blocks;
            // store reads may touch disk: keep them off the async workers
            let msg =
                match tokio::task::spawn_blocking(move || l.next_answer(&*source, corrupt)).await {
                    Ok(Some(msg)) => msg,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(%peer, "bitswap serve task failed: {e}");
                        break;
                    }
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

    /// Writes our wants on one stream and our answers on [`ANSWER_STREAMS`] more, so one
    /// stream's flow-control window never stalls the blocks behind it.
    async fn write_loop(
        self,
        peer: PeerId,
        control: libp2p_stream::Control,
        mut wants: mpsc::Receiver<Message>,
        answers: mpsc::Receiver<(Message, OwnedSemaphorePermit)>,
    ) {
        let answers = Arc::new(tokio::sync::Mutex::new(answers));
        for _ in 0..ANSWER_STREAMS {
            let (bs, answers) = (self.clone(), answers.clone());
            let mut out = Outbound {
                peer,
                control: control.clone(),
                stream: None,
            };
            tokio::spawn(async move {
                loop {
                    let next = answers.lock().await.recv().await;
                    let Some((msg, permit)) = next else { break };
                    let sent = out.send(&msg).await;
                    drop(permit);
                    if !bs.sent(peer, &msg, sent) {
                        break;
                    }
                }
            });
        }
        let mut out = Outbound {
            peer,
            control,
            stream: None,
        };
        while let Some(mut msg) = wants.recv().await {
            // coalesce queued wants into this message
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

    /// Counts a sent message, or gives up on an unreachable peer. Returns whether to go on.
    fn sent(&self, peer: PeerId, msg: &Message, sent: bool) -> bool {
        if !sent {
            debug!(%peer, "cannot reach peer over bitswap; moving its wants elsewhere");
            self.peer_unreachable(peer);
            return false;
        }
        let c = &self.inner.counters;
        c.blocks_sent
            .fetch_add(msg.blocks.len() as u64, Ordering::Relaxed);
        let bytes: usize = msg.blocks.iter().map(|b| b.data.len()).sum();
        c.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        self.count(peer, |p| {
            p.wants_sent += msg.wants.len() as u64;
            p.blocks_sent += msg.blocks.len() as u64;
            p.bytes_sent += bytes as u64;
        });
        trace!(%peer, blocks = msg.blocks.len(), wants = msg.wants.len(), "bitswap message sent");
        true
    }

    /// Stops serving `peer` and moves its wants to other peers (it may still be connected, e.g.
    /// when it speaks no bitswap).
    fn peer_unreachable(&self, peer: PeerId) {
        if let Some(h) = lock(&self.inner.peers).remove(&peer) {
            h.closed.store(true, Ordering::Relaxed);
            h.ledger.notify.notify_one();
        }
        let connected: HashSet<PeerId> = self
            .connected()
            .into_iter()
            .filter(|p| *p != peer)
            .collect();
        let sends = lock(&self.inner.wants).on_disconnect(peer, &connected, Instant::now());
        self.dispatch(sends);
    }
}

/// Withdraws a want when `get` returns or is dropped.
struct AbandonGuard<'a> {
    bitswap: &'a Bitswap,
    cid: Cid,
}

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        let sends = lock(&self.bitswap.inner.wants).abandon(&self.cid);
        self.bitswap.dispatch(sends);
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
    /// Writes `msg`; `false` when the peer cannot be reached twice in a row.
    async fn send(&mut self, msg: &Message) -> bool {
        for attempt in 0..2 {
            if self.stream.is_none() {
                self.stream = open_stream(&mut self.control, self.peer).await;
            }
            let Some((s, v12)) = self.stream.as_mut() else {
                return false;
            };
            match write_frame(s, &encode_for(msg, *v12)).await {
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
fn encode_for(msg: &Message, v12: bool) -> Vec<u8> {
    if v12 {
        return msg.encode();
    }
    let mut m = msg.clone();
    m.presences.clear();
    for w in &mut m.wants {
        w.want_type = WantType::Block;
        w.send_dont_have = false;
    }
    m.encode()
}
