//! Bitswap 1.2.0 (and 1.1.0), client and server, over `libp2p-stream`.
//!
//! ```text
//!  inbound stream ──read_message──▶ handle() ─┬─ blocks/presences ─▶ client::Wants ─▶ sends
//!                                             └─ wantlist ─────────▶ server::Ledger ─▶ serve task
//!  sends / answers ─▶ PeerHandle (wants channel, answers channel) ─▶ writer task ─▶ outbound stream
//! ```
//! As the spec says, a peer only ever reads its inbound streams and writes on its own outbound
//! streams. This file is the engine: the [`Bitswap`] handle, wants in and blocks out, and the
//! table of peers. Per peer, `peer.rs` runs a serve task and the writers of our wants and answers,
//! owned by the peer's entry and stopped when it goes; inbound reader tasks are capped by
//! `inbound.rs`. `stats.rs` keeps the counters. `Wants` and `Ledger` hold no I/O and are
//! unit-tested alone; `crate::tests` runs whole nodes over the memory transport.

pub mod client;
pub mod codec;
mod inbound;
pub mod message;
mod peer;
pub mod server;
pub mod session;
mod stats;

use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, trace, warn};

use crate::{BlockSource, Error};
use client::{BlockOutcome, Sends, Timing, Wants};
use message::Message;
use server::Ledger;
use session::lock;
pub use session::Session;
pub use stats::{PeerStats, Stats, MAX_PEER_STATS};

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

/// What the engine holds for a peer it talks to. Dropping it (the peer went, or the engine
/// did) stops the peer's tasks.
struct PeerHandle {
    wants_tx: mpsc::Sender<Message>,
    ledger: Arc<Ledger>,
    closed: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

struct Inner {
    config: Config,
    control: Mutex<libp2p_stream::Control>,
    source: Arc<dyn BlockSource>,
    wants: Mutex<Wants>,
    connected: Mutex<HashSet<PeerId>>,
    peers: Mutex<HashMap<PeerId, PeerHandle>>,
    stats: stats::Book,
    inbound: inbound::Slots,
    provider_search: mpsc::Sender<Cid>,
    /// The engine's own tasks: the stream acceptor (owning the readers) and the timer.
    engine: Mutex<Option<JoinSet<()>>>,
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
        incoming: crate::accept::Incoming,
        source: Arc<dyn BlockSource>,
        provider_search: mpsc::Sender<Cid>,
    ) -> Bitswap {
        let timing = Timing {
            block_timeout: config.block_timeout,
            rebroadcast: config.rebroadcast,
            // an owner that has not delivered within one block timeout is not keeping up
            owner_patience: config.block_timeout,
            // a tenth of it: still hundreds of round trips on a LAN or across a continent
            silent_patience: config.block_timeout / 10,
            // half of it: a queue that deep is near timing out (a quarter narrowed the windows
            // of a 100 Mbit/s fan-out, which its queues of 2-3 s did not need, and slowed it)
            window_delay: config.block_timeout / 2,
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
            stats: stats::Book::default(),
            provider_search,
            engine: Mutex::new(None),
        });
        let bitswap = Bitswap { inner };
        let mut engine = JoinSet::new();
        engine.spawn(bitswap.clone().accept_loop(incoming));
        let weak = Arc::downgrade(&bitswap.inner);
        let period = (bitswap.inner.config.rebroadcast / 2).max(Duration::from_millis(50));
        engine.spawn(async move {
            let mut timer = tokio::time::interval(period);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                Bitswap { inner }.tick();
            }
        });
        *lock(&bitswap.inner.engine) = Some(engine);
        bitswap
    }

    /// Hands each inbound stream to a reader task (the streams wait in a queue of their own:
    /// `crate::accept`). The readers belong to this loop and stop with it.
    async fn accept_loop(self, mut incoming: crate::accept::Incoming) {
        let mut readers = JoinSet::new();
        loop {
            tokio::select! {
                next = incoming.next() => {
                    let Some((peer, stream, _protocol)) = next else { break };
                    match self.inner.inbound.take(peer) {
                        Ok(slot) => {
                            readers.spawn(self.clone().read_stream(peer, stream, slot));
                        }
                        Err(why) => {
                            warn!(%peer, "too many inbound bitswap streams ({why:?}); refusing one")
                        }
                    }
                }
                Some(_) = readers.join_next(), if !readers.is_empty() => {}
            }
        }
    }

    /// Stops every task of the engine (the stream acceptor and its readers, the rebroadcast
    /// timer) and of every peer (serve loops and writers), and waits until they have ended.
    /// Wants still waiting fail with [`Error::Shutdown`].
    pub async fn shutdown(&self) {
        let engine = lock(&self.inner.engine).take();
        let peers: Vec<PeerHandle> = lock(&self.inner.peers).drain().map(|(_, h)| h).collect();
        let mut sets: Vec<JoinSet<()>> = engine.into_iter().collect();
        sets.extend(peers.into_iter().map(|h| h.tasks));
        for set in &mut sets {
            set.abort_all();
        }
        for mut set in sets {
            while set.join_next().await.is_some() {}
        }
        lock(&self.inner.wants).clear();
        debug!("bitswap stopped");
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

    /// The peer's handle, creating it (and its writer and serve tasks: `peer.rs`) on first use.
    fn handle(&self, peer: PeerId) -> (mpsc::Sender<Message>, Arc<Ledger>) {
        let mut peers = lock(&self.inner.peers);
        if let Some(h) = peers.get(&peer) {
            return (h.wants_tx.clone(), h.ledger.clone());
        }
        let (wants_tx, wants_rx) = mpsc::channel(1024);
        let ledger = Arc::new(Ledger::default());
        let closed = Arc::new(AtomicBool::new(false));
        let control = lock(&self.inner.control).clone();
        let tasks = self.start(peer, control, wants_rx, ledger.clone(), closed.clone());
        peers.insert(
            peer,
            PeerHandle {
                wants_tx: wants_tx.clone(),
                ledger: ledger.clone(),
                closed,
                tasks,
            },
        );
        (wants_tx, ledger)
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
            wants.heard(peer, now);
            for (cid, presence) in msg.presences {
                sends.extend(wants.on_presence(peer, cid, presence, &connected, now));
            }
            let c = &self.inner.stats.totals;
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
                        traded.rejected_blocks += 1;
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
            p.rejected_blocks += traded.rejected_blocks;
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

    /// Counts a sent message, or gives up on an unreachable peer. Returns whether to go on.
    fn sent(&self, peer: PeerId, msg: &Message, sent: bool) -> bool {
        if !sent {
            debug!(%peer, "cannot reach peer over bitswap; moving its wants elsewhere");
            self.peer_unreachable(peer);
            return false;
        }
        let c = &self.inner.stats.totals;
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
