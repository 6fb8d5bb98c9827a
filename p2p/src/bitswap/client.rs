//! The want side of bitswap, as a state machine with no I/O: every method takes the event and
//! returns the wants to send. [`super::Bitswap`] does the sending, so this file is tested alone.
//!
//! Strategy for one CID:
//! 1. a peer that said HAVE gets a want-block;
//! 2. else a peer of the read's [`Session`] (it delivered or has related blocks) gets a
//!    want-block, round-robin, so a read is spread over every peer that has it;
//! 3. else every connected peer gets a want-have; the first HAVE leads to 1.
//!
//! In a divided session (a fan-out, see [`Session::divide`]) a CID that another member owns is
//! asked of that member alone, with a want-have, and fetched from it once it says HAVE (its
//! server tells us when the block lands there). The wait lasts while the owner keeps coming
//! forward: an owner that has sent no HAVE and no block for its patience (or has not delivered
//! this CID within [`OWNER_WAIT_ROUNDS`] patiences), times out or goes away is *stalled*: its
//! CIDs fall back to 1–3. The patience is [`Timing::owner_patience`], or twice what blocks take
//! to come here lately (or the oldest want-block in flight has waited) if that is longer: on a
//! slow link a member waits for its part in the same queue at the seed as we do, and while its
//! HAVEs keep coming, the others wait for it instead of asking the seed for the same blocks.
//!
//! A want-block whose peer sends nothing at all for [`Timing::silent_patience`] moves to a peer
//! that said HAVE, and the silent peer is struck: a frozen peer, or one whose link went dark
//! without closing, costs a read about a second, not a block timeout.
//!
//! A DONT_HAVE, a timeout or a disconnect moves the want to the next candidate; when nobody is
//! left, [`Wants::tick`] rebroadcasts and names the CIDs whose providers should be looked up in
//! the DHT. A block whose bytes hash to no wanted CID is corrupt or unsolicited: its sender is
//! banned for a while and everything outstanding with it is asked of someone else.

use bytes::Bytes;
use cid::Cid;
use libp2p::PeerId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use super::message::{Block, Presence, Want};
use super::session::Session;

/// Wants to send: (peer, entry).
pub(crate) type Sends = Vec<(PeerId, Want)>;

/// Recently received CIDs remembered to tell duplicates from corrupt blocks.
const RECENT_CAPACITY: usize = 4096;
/// How long a peer that sent a corrupt block is not asked for blocks.
const BAN_DURATION: Duration = Duration::from_secs(60);
/// How long a peer whose want-block timed out is asked last (after every other holder).
const STRIKE_MEMORY: Duration = Duration::from_secs(60);
/// How often one CID may trigger a DHT provider search.
const PROVIDER_SEARCH_INTERVAL: Duration = Duration::from_secs(10);
/// Want-blocks in flight to one peer. More wait here, not in the peer's queue, so that when
/// another peer turns out to hold the block (its HAVE arrives) it can serve it instead: a seed
/// that everybody asks does not end up with everybody's whole backlog.
pub(crate) const MAX_BLOCKS_IN_FLIGHT: usize = 16;
/// The fewest want-blocks in flight to a peer whose blocks come slowly (see [`Window`]).
const MIN_WINDOW: usize = 2;
/// Most peers remembered as answering DONT_HAVE (at most the connected ones are), and as having
/// sent something lately.
const MAX_ANSWERING: usize = 4096;
/// The longest a want waits for the member of a divided session that owns it, in
/// [`Timing::owner_patience`]s, however steadily the owner delivers the rest of its part: a
/// member that serves everything but this CID holds it up for this long at most.
const OWNER_WAIT_ROUNDS: u32 = 6;

/// Timing knobs of the want side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// A want-block unanswered for this long moves to another peer.
    pub block_timeout: Duration,
    /// Interval between want-have rebroadcasts for a want nobody has answered.
    pub rebroadcast: Duration,
    /// How long a want waits for the member of a divided session that owns it since that
    /// member last sent a HAVE or a block, at least (longer when blocks come slowly: see
    /// [`Wants::advance`] and [`OWNER_WAIT_ROUNDS`]).
    pub owner_patience: Duration,
    /// A block that takes longer than this from its want-block to its arrival narrows its
    /// peer's [`Window`]; one that takes less than half of it widens the window again.
    pub window_delay: Duration,
    /// A want-block moves to a peer that said HAVE once its peer has sent nothing at all for
    /// this long since it was asked: a peer that froze, or whose link went dark without
    /// closing, holds a read up for this long instead of a whole [`Timing::block_timeout`].
    pub silent_patience: Duration,
}

struct WantState {
    waiters: Vec<oneshot::Sender<Bytes>>,
    session: Session,
    block_at: Option<(PeerId, Instant)>,
    haves: Vec<PeerId>,
    asked: HashSet<PeerId>,
    failed: HashSet<PeerId>,
    /// Peers whose want-block for this CID timed out: their HAVEs no longer count for it, and a
    /// rebroadcast does not forgive them (M5: a peer that said HAVE and never delivered was
    /// asked again after every rebroadcast, a block timeout each time).
    timed_out: HashSet<PeerId>,
    /// Rebroadcasts since the last HAVE from a peer that did not time out: after two, nobody
    /// else holds the block, and the timed-out peers are forgiven (a slow seed is still a seed).
    quiet_rebroadcasts: u8,
    last_broadcast: Instant,
    last_search: Option<Instant>,
    /// Held back because every peer that may hold it has [`MAX_BLOCKS_IN_FLIGHT`] already;
    /// the number orders the waiting wants, oldest first, so none starves.
    waiting: Option<u64>,
    /// The member of a divided session that owns this CID, while we wait for it.
    owner: Option<PeerId>,
    since: Instant,
}

/// What a received block turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BlockOutcome {
    /// Delivered to its waiters.
    Wanted,
    /// Already received from someone else.
    Duplicate,
    /// Hashes to nothing we asked for: the peer is banned.
    Unsolicited,
}

/// Holds a want back until a holder has a free slot, numbered so that waiting wants go oldest
/// first (a want already waiting keeps its number).
fn hold(st: &mut WantState, waits: &mut u64) {
    if st.waiting.is_none() {
        st.waiting = Some(*waits);
        *waits += 1;
    }
}

/// Sends the want-block for `cid` to `peer`: the want's one block request in flight, counted
/// against the peer's slots (its `outstanding` entry and the want's `block_at` move together).
fn ask_block(
    block_at: &mut Option<(PeerId, Instant)>,
    outstanding: &mut HashMap<PeerId, HashSet<Cid>>,
    peer: PeerId,
    cid: Cid,
    now: Instant,
) -> (PeerId, Want) {
    *block_at = Some((peer, now));
    outstanding.entry(peer).or_default().insert(cid);
    (peer, Want::block(cid))
}

pub(crate) struct Wants {
    pending: HashMap<Cid, WantState>,
    /// want-blocks sent to each peer and not yet answered
    outstanding: HashMap<PeerId, HashSet<Cid>>,
    recent: VecDeque<Cid>,
    /// the session each recent CID was wanted for, so a late HAVE still grows that session
    recent_set: HashMap<Cid, Session>,
    banned: HashMap<PeerId, Instant>,
    /// Peers whose want-block timed out lately, and when: asked last for every CID.
    strikes: HashMap<PeerId, Instant>,
    timing: Timing,
    /// Numbers the wants that start waiting.
    waits: u64,
    /// Connected peers that sent a HAVE or DONT_HAVE: they speak bitswap 1.2.0, so a
    /// want-block they cannot serve comes back as a DONT_HAVE instead of silence.
    answering: HashSet<PeerId>,
    /// The last of those that delivered a wanted block (never a peer outside `answering`:
    /// both forget a peer that goes): a fresh read guesses it holds the next one too (see
    /// [`Wants::advance`]).
    last_server: Option<PeerId>,
    /// When each peer last sent us bytes (of any message), for at most [`MAX_ANSWERING`] peers;
    /// a peer is forgotten when it goes.
    heard: HashMap<PeerId, Instant>,
    /// When each peer last sent a HAVE or a block, for at most [`MAX_ANSWERING`] peers: an
    /// owner in a divided session that keeps doing so is still fetching its part.
    progress: HashMap<PeerId, Instant>,
    /// How long each peer's blocks take from want-block to arrival, lately (the longest at
    /// once, then an average that falls slowly), for at most [`MAX_ANSWERING`] peers; and the
    /// longest of them.
    latency: HashMap<PeerId, Duration>,
    slowest: Duration,
    /// How long the oldest want-block in flight has waited, at the last [`Wants::tick`]: a
    /// lower bound on what blocks take now, before any has come (bounded by the block timeout).
    oldest_in_flight: Duration,
    /// Each connected peer's window of want-blocks in flight, where it is below the maximum.
    windows: HashMap<PeerId, Window>,
}

/// How many want-blocks may be in flight to one peer: [`MAX_BLOCKS_IN_FLIGHT`] while its blocks
/// come within [`Timing::window_delay`]; halved (at most once per that delay, down to
/// [`MIN_WINDOW`]) when one takes longer, and widened by one for each that comes within half of
/// it. A peer whose upload is shared by many (a seed on a slow link) then holds a short queue
/// of ours, and the rest of our wants wait for a slot with it or go to another holder, instead
/// of queueing there past the block timeout and being fetched twice.
#[derive(Debug, Clone, Copy)]
struct Window {
    size: usize,
    narrowed: Instant,
}

impl Wants {
    pub fn new(timing: Timing) -> Self {
        Wants {
            pending: HashMap::new(),
            outstanding: HashMap::new(),
            recent: VecDeque::new(),
            recent_set: HashMap::new(),
            banned: HashMap::new(),
            strikes: HashMap::new(),
            timing,
            waits: 0,
            answering: HashSet::new(),
            last_server: None,
            heard: HashMap::new(),
            progress: HashMap::new(),
            latency: HashMap::new(),
            slowest: Duration::ZERO,
            oldest_in_flight: Duration::ZERO,
            windows: HashMap::new(),
        }
    }

    /// A block wanted from `peer` took `took` from its want-block: updates its latency and
    /// narrows or widens its window.
    fn adapt(&mut self, peer: PeerId, took: Duration, now: Instant) {
        if self.latency.len() < MAX_ANSWERING || self.latency.contains_key(&peer) {
            // up at once, down slowly: a queue that just formed counts in full
            let l = self.latency.entry(peer).or_insert(took);
            *l = if took > *l { took } else { (*l * 7 + took) / 8 };
            self.slowest = self.latency.values().copied().max().unwrap_or_default();
        }
        let delay = self.timing.window_delay;
        if took > delay {
            let w = self.windows.entry(peer).or_insert(Window {
                size: MAX_BLOCKS_IN_FLIGHT,
                narrowed: now,
            });
            // the blocks queued before the last narrowing come late too: one cut per delay
            if w.size == MAX_BLOCKS_IN_FLIGHT || now.duration_since(w.narrowed) >= delay {
                w.size = (w.size / 2).max(MIN_WINDOW);
                w.narrowed = now;
                tracing::debug!(%peer, ?took, window = w.size, "a block came late; fewer want-blocks in flight to its peer");
            }
        } else if took < delay / 2 {
            if let Some(w) = self.windows.get_mut(&peer) {
                w.size += 1;
                if w.size >= MAX_BLOCKS_IN_FLIGHT {
                    self.windows.remove(&peer);
                }
            }
        }
    }

    /// `peer` sent something (bytes of any message).
    pub fn heard(&mut self, peer: PeerId, now: Instant) {
        if self.heard.len() < MAX_ANSWERING || self.heard.contains_key(&peer) {
            self.heard.insert(peer, now);
        }
    }

    /// `peer` sent a HAVE or a block.
    fn progressed(&mut self, peer: PeerId, now: Instant) {
        if self.progress.len() < MAX_ANSWERING || self.progress.contains_key(&peer) {
            self.progress.insert(peer, now);
        }
    }

    /// Number of CIDs currently wanted.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Drops every want: their waiters see the channel close (the engine is stopping).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Wants `cid` for `session`; the receiver gets the (verified) bytes.
    pub fn want(
        &mut self,
        cid: Cid,
        session: &Session,
        connected: &HashSet<PeerId>,
        now: Instant,
    ) -> (oneshot::Receiver<Bytes>, Sends) {
        let (tx, rx) = oneshot::channel();
        if let Some(st) = self.pending.get_mut(&cid) {
            st.waiters.push(tx);
            return (rx, Vec::new());
        }
        self.pending.insert(
            cid,
            WantState {
                waiters: vec![tx],
                session: session.clone(),
                block_at: None,
                haves: Vec::new(),
                asked: HashSet::new(),
                failed: HashSet::new(),
                timed_out: HashSet::new(),
                quiet_rebroadcasts: 0,
                last_broadcast: now,
                last_search: None,
                waiting: None,
                owner: session.owner(&cid),
                since: now,
            },
        );
        let sends = self.advance(cid, connected, now);
        (rx, sends)
    }

    /// Drops waiters whose receivers are gone; if none is left, forgets the want and cancels it.
    pub fn abandon(&mut self, cid: &Cid) -> Sends {
        let Some(st) = self.pending.get_mut(cid) else {
            return Vec::new();
        };
        st.waiters.retain(|w| !w.is_closed());
        if !st.waiters.is_empty() {
            return Vec::new();
        }
        let cid = *cid;
        match self.pending.remove(&cid) {
            Some(st) => self.cancels(cid, &st, None),
            None => Vec::new(),
        }
    }

    pub fn on_presence(
        &mut self,
        peer: PeerId,
        cid: Cid,
        presence: Presence,
        connected: &HashSet<PeerId>,
        now: Instant,
    ) -> Sends {
        if connected.contains(&peer) && self.answering.len() < MAX_ANSWERING {
            self.answering.insert(peer);
        }
        if presence == Presence::Have {
            self.progressed(peer, now);
        }
        let Some(st) = self.pending.get_mut(&cid) else {
            if let (Presence::Have, Some(session)) = (presence, self.recent_set.get(&cid)) {
                session.add_peer(peer);
            }
            return Vec::new();
        };
        match presence {
            Presence::Have if st.timed_out.contains(&peer) => {}
            Presence::Have => {
                st.quiet_rebroadcasts = 0;
                // a HAVE after a DONT_HAVE: the block has landed there since
                st.failed.remove(&peer);
                if !st.haves.contains(&peer) {
                    st.haves.push(peer);
                }
                // it holds blocks of this read: later wants of the session may go to it directly
                st.session.add_peer(peer);
            }
            Presence::DontHave => {
                st.failed.insert(peer);
                st.haves.retain(|p| *p != peer);
                if matches!(st.block_at, Some((p, _)) if p == peer) {
                    st.block_at = None;
                    if let Some(o) = self.outstanding.get_mut(&peer) {
                        o.remove(&cid);
                    }
                }
            }
        }
        self.advance(cid, connected, now)
    }

    /// A block arrived from `peer`; its CID was computed from its bytes.
    pub fn on_block(
        &mut self,
        peer: PeerId,
        block: &Block,
        connected: &HashSet<PeerId>,
        now: Instant,
    ) -> (BlockOutcome, Sends) {
        if let Some(o) = self.outstanding.get_mut(&peer) {
            o.remove(&block.cid);
        }
        if self.pending.contains_key(&block.cid) || self.recent_set.contains_key(&block.cid) {
            self.progressed(peer, now);
        }
        if let Some(st) = self.pending.remove(&block.cid) {
            if let Some((p, since)) = st.block_at.filter(|(p, _)| *p == peer) {
                self.adapt(p, now.saturating_duration_since(since), now);
            }
            if self.answering.contains(&peer) {
                self.last_server = Some(peer);
            }
            let mut sends = self.cancels(block.cid, &st, Some(peer));
            st.session.add_peer(peer);
            for w in st.waiters {
                let _ = w.send(block.data.clone());
            }
            self.remember(block.cid, st.session);
            // a slot with `peer` is free: a want waiting for one may go now
            sends.extend(self.advance_waiting(connected, now));
            return (BlockOutcome::Wanted, sends);
        }
        if let Some(session) = self.recent_set.get(&block.cid) {
            // a second copy (small blocks answer want-haves): that peer has the data too
            session.add_peer(peer);
            return (BlockOutcome::Duplicate, Vec::new());
        }
        self.banned.insert(peer, now + BAN_DURATION);
        let sends = self.drop_peer(peer, connected, now, true);
        (BlockOutcome::Unsolicited, sends)
    }

    /// A peer is gone (or does not speak bitswap): move its wants elsewhere.
    pub fn on_disconnect(
        &mut self,
        peer: PeerId,
        connected: &HashSet<PeerId>,
        now: Instant,
    ) -> Sends {
        self.drop_peer(peer, connected, now, false)
    }

    /// A new peer: ask it whether it has what we want, even what is already in flight elsewhere,
    /// so that it can join the sessions it could serve.
    pub fn on_connect(&mut self, peer: PeerId) -> Sends {
        if self.is_banned(&peer, Instant::now()) {
            return Vec::new();
        }
        let mut sends = Vec::new();
        for (cid, st) in self.pending.iter_mut() {
            if st.asked.insert(peer) {
                sends.push((peer, Want::have(*cid)));
            }
        }
        sends
    }

    /// Periodic work: time out want-blocks, rebroadcast, and name the CIDs that need a DHT
    /// provider search.
    pub fn tick(&mut self, connected: &HashSet<PeerId>, now: Instant) -> (Sends, Vec<Cid>) {
        self.banned.retain(|_, until| *until > now);
        self.strikes
            .retain(|_, at| now.duration_since(*at) < STRIKE_MEMORY);
        let mut sends = Vec::new();
        let mut searches = Vec::new();
        self.oldest_in_flight = (self.pending.values())
            .filter_map(|st| Some(now.saturating_duration_since(st.block_at?.1)))
            .max()
            .unwrap_or_default();
        let cids: Vec<Cid> = self.pending.keys().copied().collect();
        for cid in cids {
            let Some(st) = self.pending.get_mut(&cid) else {
                continue;
            };
            // The division may have changed since the want began (co-fetchers showed up one by
            // one): wait for the CID's owner in the current division, or fetch it now if it
            // is this node's own. Two members that each waited on the other under different
            // divisions would otherwise both sit out the whole owner patience.
            if let (None, Some(o)) = (st.block_at, st.owner) {
                let current = st.session.owner(&cid);
                if current != Some(o) {
                    st.owner = current;
                    st.since = now;
                    sends.extend(self.advance(cid, connected, now));
                    continue;
                }
            }
            if let Some((p, since)) = st.block_at {
                // a peer that has sent nothing since it was asked, while another peer said
                // HAVE: that peer is asked instead, and the silent one struck
                let silent = now.duration_since(since) >= self.timing.silent_patience
                    && self.heard.get(&p).is_none_or(|t| *t <= since)
                    && st.haves.iter().any(|h| *h != p && connected.contains(h));
                if silent {
                    tracing::debug!(peer = %p, %cid, "a peer asked for a block is silent; asking one that said HAVE");
                    if self.last_server == Some(p) {
                        self.last_server = None;
                    }
                }
                if silent || now.duration_since(since) >= self.timing.block_timeout {
                    st.failed.insert(p);
                    st.timed_out.insert(p);
                    self.strikes.insert(p, now);
                    st.block_at = None;
                    if let Some(o) = self.outstanding.get_mut(&p) {
                        o.remove(&cid);
                    }
                    if st.owner.take() == Some(p) {
                        let why = if silent {
                            "silent"
                        } else {
                            "its block timed out"
                        };
                        st.session.stall(&p, why);
                    }
                } else {
                    continue;
                }
            }
            if !st.haves.is_empty() || st.owner.is_some() {
                sends.extend(self.advance(cid, connected, now));
                continue;
            }
            let Some(st) = self.pending.get_mut(&cid) else {
                continue;
            };
            if now.duration_since(st.last_broadcast) < self.timing.rebroadcast {
                continue;
            }
            // Rebroadcast to every usable peer, including ones asked before: answers get lost.
            st.last_broadcast = now;
            st.failed.clear();
            if !st.timed_out.is_empty() {
                st.quiet_rebroadcasts += 1;
                if st.quiet_rebroadcasts >= 2 {
                    st.timed_out.clear();
                    st.quiet_rebroadcasts = 0;
                }
            }
            let targets: Vec<PeerId> = connected
                .iter()
                .filter(|p| !self.banned.contains_key(p))
                .copied()
                .collect();
            for p in &targets {
                st.asked.insert(*p);
                sends.push((*p, Want::have(cid)));
            }
            if st
                .last_search
                .is_none_or(|t| now.duration_since(t) >= PROVIDER_SEARCH_INTERVAL)
            {
                st.last_search = Some(now);
                searches.push(cid);
            }
        }
        sends.extend(self.advance_waiting(connected, now));
        (sends, searches)
    }

    fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.banned.get(peer).is_some_and(|until| *until > now)
    }

    fn drop_peer(
        &mut self,
        peer: PeerId,
        connected: &HashSet<PeerId>,
        now: Instant,
        failed: bool,
    ) -> Sends {
        let mut cids = self.outstanding.remove(&peer).unwrap_or_default();
        self.answering.remove(&peer);
        self.heard.remove(&peer);
        self.progress.remove(&peer);
        if self.latency.remove(&peer).is_some() {
            self.slowest = self.latency.values().copied().max().unwrap_or_default();
        }
        self.windows.remove(&peer);
        if self.last_server == Some(peer) {
            self.last_server = None;
        }
        let mut sends = Vec::new();
        for (cid, st) in self.pending.iter_mut() {
            st.haves.retain(|p| *p != peer);
            st.session.remove_peer(&peer);
            if st.owner == Some(peer) {
                st.owner = None;
                st.session.stall(&peer, "gone");
                cids.insert(*cid);
            }
        }
        for cid in cids {
            if let Some(st) = self.pending.get_mut(&cid) {
                if failed {
                    st.failed.insert(peer);
                }
                if matches!(st.block_at, Some((p, _)) if p == peer) {
                    st.block_at = None;
                }
                sends.extend(self.advance(cid, connected, now));
            }
        }
        sends
    }

    /// Advances every want that has no want-block in flight (after a slot freed up).
    fn advance_waiting(&mut self, connected: &HashSet<PeerId>, now: Instant) -> Sends {
        let mut waiting: Vec<(u64, Cid)> = self
            .pending
            .iter()
            .filter(|(_, st)| st.block_at.is_none())
            .filter_map(|(c, st)| Some((st.waiting?, *c)))
            .collect();
        waiting.sort_unstable();
        let mut sends = Vec::new();
        for (_, cid) in waiting {
            sends.extend(self.advance(cid, connected, now));
        }
        sends
    }

    /// Sends the next want for `cid` if nothing is in flight for it.
    fn advance(&mut self, cid: Cid, connected: &HashSet<PeerId>, now: Instant) -> Sends {
        let banned = &self.banned;
        let outstanding = &self.outstanding;
        let strikes = &self.strikes;
        // want-blocks in flight to a peer: the least loaded holder serves next, so a seed that
        // everyone asks yields to peers that already hold the block; a peer that let a
        // want-block time out lately comes after every other holder
        let in_flight = |p: &PeerId| outstanding.get(p).map_or(0, HashSet::len);
        let load = |p: &PeerId| in_flight(p) + usize::from(strikes.contains_key(p)) * 1_000_000;
        let Some(st) = self.pending.get_mut(&cid) else {
            return Vec::new();
        };
        if st.block_at.is_some() {
            return Vec::new();
        }
        let usable = |p: &PeerId| {
            connected.contains(p)
                && !st.failed.contains(p)
                && !st.timed_out.contains(p)
                && banned.get(p).is_none_or(|u| *u <= now)
        };
        let windows = &self.windows;
        let window = |p: &PeerId| windows.get(p).map_or(MAX_BLOCKS_IN_FLIGHT, |w| w.size);
        let free = |p: &PeerId| in_flight(p) < window(p);
        if let Some(o) = st.owner {
            let alive = connected.contains(&o) && banned.get(&o).is_none_or(|u| *u <= now);
            // patience runs from the owner's last HAVE or block, not from this want: a member
            // on a slow link is still working through its part. And it is at least twice what
            // blocks take to come here lately (or the oldest want-block in flight has waited):
            // the owner waits for its part in the same queues (a seed shared by every member),
            // then says HAVE
            let lately = self.slowest.max(self.oldest_in_flight);
            let patience = self.timing.owner_patience.max(lately * 2);
            let last = self
                .progress
                .get(&o)
                .map_or(st.since, |t| (*t).max(st.since));
            let patient = now.duration_since(last) < patience
                && now.duration_since(st.since) < patience * OWNER_WAIT_ROUNDS;
            if alive && patient {
                // ask the owner alone: its HAVE comes when the block lands there
                if !st.haves.contains(&o) {
                    return match st.asked.insert(o) {
                        true => vec![(o, Want::have(cid))],
                        false => Vec::new(),
                    };
                }
                if !free(&o) {
                    hold(st, &mut self.waits);
                    return Vec::new();
                }
                st.waiting = None;
                st.haves.retain(|p| *p != o);
                return vec![ask_block(
                    &mut st.block_at,
                    &mut self.outstanding,
                    o,
                    cid,
                    now,
                )];
            }
            if alive {
                st.session.stall(&o, "no HAVE or block for its patience");
            }
            st.owner = None;
        }
        let have = (0..st.haves.len())
            .filter(|i| usable(&st.haves[*i]) && free(&st.haves[*i]))
            .min_by_key(|i| load(&st.haves[*i]));
        if have.is_none() && st.haves.iter().any(&usable) {
            // every known holder is busy: wait for a slot (or a HAVE from someone else)
            hold(st, &mut self.waits);
            return Vec::new();
        }
        let (target, from_session) = match have {
            Some(i) => (Some(st.haves.remove(i)), false),
            None => (st.session.pick(|p| usable(p) && free(p), load), true),
        };
        if target.is_none() && st.session.peers().iter().any(&usable) {
            // session peers that may hold it are all busy: wait, unless nobody was asked yet
            if !st.asked.is_empty() {
                hold(st, &mut self.waits);
                return Vec::new();
            }
        }
        st.waiting = None;
        if let Some(peer) = target {
            st.asked.insert(peer);
            let mut sends = vec![ask_block(
                &mut st.block_at,
                &mut self.outstanding,
                peer,
                cid,
                now,
            )];
            if from_session {
                // a guess: ask the rest of the session (and one peer outside it) whether they
                // hold the block, so that a DONT_HAVE finds the next holder at once
                let members = st.session.peers();
                for m in members.iter().filter(|m| **m != peer && usable(m)) {
                    if st.asked.insert(*m) {
                        sends.push((*m, Want::have(cid)));
                    }
                }
                let outside: Vec<PeerId> = connected
                    .iter()
                    .filter(|p| usable(p) && !members.contains(p) && !st.asked.contains(*p))
                    .copied()
                    .collect();
                let pick = cid.hash().digest().first().map_or(0, |b| *b as usize);
                if let Some(probe) = outside.get(pick % outside.len().max(1)) {
                    st.asked.insert(*probe);
                    sends.push((*probe, Want::have(cid)));
                }
            }
            return sends;
        }
        // A fresh read (nobody asked yet): its first want goes as a want-block to the peer that
        // served the last block (one that answers DONT_HAVE: 1.2.0), beside the want-haves to
        // everyone else. One round trip instead of two when it holds the block, as the seed of
        // a cluster does; when it does not, its DONT_HAVE and the others' HAVEs come back
        // together, as the want-haves alone would have.
        let guess = self
            .last_server
            .filter(|p| st.asked.is_empty() && usable(p) && free(p) && !strikes.contains_key(p));
        let mut sends = Vec::new();
        if let Some(g) = guess {
            st.asked.insert(g);
            sends.push(ask_block(
                &mut st.block_at,
                &mut self.outstanding,
                g,
                cid,
                now,
            ));
        }
        let targets: Vec<PeerId> = connected
            .iter()
            .filter(|p| usable(p) && !st.asked.contains(*p))
            .copied()
            .collect();
        sends.reserve(targets.len());
        for p in targets {
            st.asked.insert(p);
            sends.push((p, Want::have(cid)));
        }
        if !sends.is_empty() {
            st.last_broadcast = now;
        }
        sends
    }

    fn cancels(&mut self, cid: Cid, st: &WantState, except: Option<PeerId>) -> Sends {
        let mut peers: HashSet<PeerId> = st.asked.clone();
        if let Some((p, _)) = st.block_at {
            peers.insert(p);
        }
        let mut sends = Vec::new();
        for p in peers {
            if let Some(o) = self.outstanding.get_mut(&p) {
                o.remove(&cid);
            }
            if Some(p) != except {
                sends.push((p, Want::cancel(cid)));
            }
        }
        sends
    }

    fn remember(&mut self, cid: Cid, session: Session) {
        if self.recent_set.insert(cid, session).is_none() {
            self.recent.push_back(cid);
            if self.recent.len() > RECENT_CAPACITY {
                if let Some(old) = self.recent.pop_front() {
                    self.recent_set.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitswap::message::{hash, WantType};

    fn block(data: &'static [u8]) -> Block {
        Block {
            cid: Cid::new_v1(0x55, hash(0x12, data).unwrap()),
            data: Bytes::from_static(data),
        }
    }

    /// `n` raw blocks, the i-th holding the four bytes of `i`.
    fn numbered(n: u32) -> Vec<Block> {
        (0..n)
            .map(|i| {
                let data = Bytes::from(i.to_le_bytes().to_vec());
                Block {
                    cid: Cid::new_v1(0x55, hash(0x12, &data).unwrap()),
                    data,
                }
            })
            .collect()
    }

    fn wants() -> Wants {
        Wants::new(Timing {
            block_timeout: Duration::from_secs(5),
            rebroadcast: Duration::from_secs(1),
            owner_patience: Duration::from_secs(3),
            silent_patience: Duration::from_secs(1),
            window_delay: Duration::from_secs(60),
        })
    }

    /// A peer whose blocks come late gets fewer want-blocks in flight (the others wait for a
    /// slot, or go to another holder), down to [`MIN_WINDOW`], one cut per delay; blocks that
    /// come quickly widen its window back to [`MAX_BLOCKS_IN_FLIGHT`].
    #[test]
    fn a_slow_peer_gets_a_narrower_window() {
        let (slow, other) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [slow, other].into();
        let t0 = Instant::now();
        let mut w = Wants::new(Timing {
            window_delay: Duration::from_secs(2),
            ..wants().timing
        });
        let s = Session::new();
        s.add_peer(slow);
        let blocks = numbered(64);
        let to_slow = |sends: &Sends| {
            sends
                .iter()
                .filter(|(p, w)| *p == slow && w.want_type == WantType::Block)
                .count()
        };
        let mut asked = 0;
        for b in &blocks[..32] {
            asked += to_slow(&w.want(b.cid, &s, &connected, t0).1);
        }
        assert_eq!(asked, MAX_BLOCKS_IN_FLIGHT);
        // the first comes after 3 s: the window halves; the next ones, as late, cut no more
        // within the delay, and each frees no slot while more than the window is in flight
        let mut t = t0 + Duration::from_secs(3);
        for b in &blocks[..8] {
            let (outcome, sends) = w.on_block(slow, b, &connected, t);
            assert_eq!(outcome, BlockOutcome::Wanted);
            assert_eq!(to_slow(&sends), 0, "{sends:?}");
        }
        assert_eq!(w.windows[&slow].size, MAX_BLOCKS_IN_FLIGHT / 2);
        // a delay later, still late: halved again, and again, but never below the minimum
        for b in &blocks[8..14] {
            t += Duration::from_secs(3);
            w.on_block(slow, b, &connected, t);
        }
        assert_eq!(w.windows[&slow].size, MIN_WINDOW);
        // quick blocks widen it back, one slot each, to the maximum (and it is forgotten)
        let mut next = 32;
        for _ in 0..40 {
            let Some(b) = blocks[14..]
                .iter()
                .find(|b| w.outstanding.get(&slow).is_some_and(|o| o.contains(&b.cid)))
            else {
                break;
            };
            t += Duration::from_millis(10);
            w.on_block(slow, b, &connected, t);
            if next < blocks.len() {
                w.want(blocks[next].cid, &s, &connected, t);
                next += 1;
            }
        }
        assert!(!w.windows.contains_key(&slow), "{:?}", w.windows.get(&slow));
    }

    #[test]
    fn have_then_block_then_cancel_others() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [a, b].into();
        let now = Instant::now();
        let mut w = wants();
        let blk = block(b"x");
        let (mut rx, sends) = w.want(blk.cid, &Session::new(), &connected, now);
        assert_eq!(sends.len(), 2);
        assert!(sends.iter().all(|(_, w)| w.want_type == WantType::Have));
        let sends = w.on_presence(b, blk.cid, Presence::Have, &connected, now);
        assert_eq!(sends, vec![(b, Want::block(blk.cid))]);
        let (outcome, sends) = w.on_block(b, &blk, &connected, now);
        assert_eq!(outcome, BlockOutcome::Wanted);
        assert_eq!(sends, vec![(a, Want::cancel(blk.cid))]);
        assert_eq!(rx.try_recv().unwrap(), blk.data);
        assert_eq!(w.len(), 0);
        // a HAVE that arrives after the block still makes `a` a peer of the session
        let s = w.recent_set.get(&blk.cid).cloned().unwrap();
        assert_eq!(s.peers(), vec![b]);
        w.on_presence(a, blk.cid, Presence::Have, &connected, now);
        assert_eq!(s.peers(), vec![b, a]);
        // the same block again is a duplicate, not an offence; its sender joins the session
        let c = PeerId::random();
        assert_eq!(
            w.on_block(c, &blk, &connected, now).0,
            BlockOutcome::Duplicate
        );
        assert_eq!(s.peers(), vec![b, a, c]);
    }

    #[test]
    fn session_peer_gets_want_block_directly_and_dont_have_moves_on() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [a, b].into();
        let now = Instant::now();
        let mut w = wants();
        let s = Session::new();
        s.add_peer(a);
        let blk = block(b"y");
        let (_rx, sends) = w.want(blk.cid, &s, &connected, now);
        // want-block to the session peer, and a discovery want-have to the other
        assert_eq!(
            sends,
            vec![(a, Want::block(blk.cid)), (b, Want::have(blk.cid))]
        );
        let sends = w.on_presence(a, blk.cid, Presence::DontHave, &connected, now);
        assert!(sends.is_empty(), "b was asked already: {sends:?}");
        let sends = w.on_presence(b, blk.cid, Presence::Have, &connected, now);
        assert_eq!(sends, vec![(b, Want::block(blk.cid))]);
        assert_eq!(s.peers(), vec![a, b]);
    }

    /// A fresh read's first want goes as a want-block to the peer that served the last block
    /// (one round trip instead of two), beside want-haves to the rest; its DONT_HAVE moves the
    /// want to a peer that said HAVE.
    #[test]
    fn a_fresh_read_asks_the_last_server_for_the_block_at_once() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [a, b].into();
        let now = Instant::now();
        let mut w = wants();
        let (x, y, z) = (block(b"first"), block(b"second"), block(b"third"));
        let (_rx, sends) = w.want(x.cid, &Session::new(), &connected, now);
        assert!(sends.iter().all(|(_, w)| w.want_type == WantType::Have));
        w.on_presence(a, x.cid, Presence::Have, &connected, now);
        assert_eq!(w.on_block(a, &x, &connected, now).0, BlockOutcome::Wanted);
        // a new read: want-block to `a` straight away, want-have to `b`
        let (mut rx, sends) = w.want(y.cid, &Session::new(), &connected, now);
        assert_eq!(sends, vec![(a, Want::block(y.cid)), (b, Want::have(y.cid))]);
        assert!(w
            .on_presence(b, y.cid, Presence::Have, &connected, now)
            .is_empty());
        // `a` does not hold this one: `b`, which said HAVE, is asked for it
        let sends = w.on_presence(a, y.cid, Presence::DontHave, &connected, now);
        assert_eq!(sends, vec![(b, Want::block(y.cid))]);
        assert_eq!(w.on_block(b, &y, &connected, now).0, BlockOutcome::Wanted);
        assert_eq!(rx.try_recv().unwrap(), y.data);
        // `b` served last: the next read guesses `b`; once `b` is gone, nobody is guessed
        let (_rx, sends) = w.want(z.cid, &Session::new(), &connected, now);
        assert_eq!(sends, vec![(b, Want::block(z.cid)), (a, Want::have(z.cid))]);
        let only_a: HashSet<_> = [a].into();
        w.on_disconnect(b, &only_a, now);
        let c = block(b"fourth");
        let (_rx, sends) = w.want(c.cid, &Session::new(), &only_a, now);
        assert_eq!(sends, vec![(a, Want::have(c.cid))]);
    }

    /// A read's want-block that went to the last server on a guess, while another peer said
    /// HAVE, and the guessed peer says nothing: `g` (it served `x`, then froze).
    fn guessed_then_silent(w: &mut Wants, g: PeerId, h: PeerId, t0: Instant) -> Block {
        let connected: HashSet<_> = [g, h].into();
        let x = block(b"served by g");
        let (_rx, _) = w.want(x.cid, &Session::new(), &connected, t0);
        w.heard(g, t0);
        w.on_presence(g, x.cid, Presence::Have, &connected, t0);
        assert_eq!(w.on_block(g, &x, &connected, t0).0, BlockOutcome::Wanted);
        let y = block(b"held by both");
        let t1 = t0 + Duration::from_millis(1);
        let (_rx, sends) = w.want(y.cid, &Session::new(), &connected, t1);
        assert_eq!(sends, vec![(g, Want::block(y.cid)), (h, Want::have(y.cid))]);
        let t2 = t0 + Duration::from_millis(10);
        w.heard(h, t2);
        assert!(w
            .on_presence(h, y.cid, Presence::Have, &connected, t2)
            .is_empty());
        y
    }

    /// A guessed peer that has sent nothing since it was asked gives way to a peer that said
    /// HAVE after [`Timing::silent_patience`], not a whole block timeout, and is not guessed
    /// by the next read.
    #[test]
    fn a_silent_guess_gives_way_to_a_peer_that_said_have() {
        let (g, h) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [g, h].into();
        let t0 = Instant::now();
        let mut w = wants();
        let y = guessed_then_silent(&mut w, g, h, t0);
        let asked_y = |sends: &Sends| sends.iter().any(|(p, w)| *p == h && w.cid == y.cid);
        let (sends, _) = w.tick(&connected, t0 + Duration::from_millis(900));
        assert!(!asked_y(&sends), "before the patience: {sends:?}");
        let (sends, _) = w.tick(&connected, t0 + Duration::from_millis(1_100));
        assert!(
            sends.contains(&(h, Want::block(y.cid))),
            "the silent guess holds the want: {sends:?}"
        );
        let t3 = t0 + Duration::from_millis(1_200);
        assert_eq!(w.on_block(h, &y, &connected, t3).0, BlockOutcome::Wanted);
        // the next read guesses the peer that served, not the silent one
        let z = block(b"next read");
        let (_rx, sends) = w.want(z.cid, &Session::new(), &connected, t3);
        assert_eq!(sends, vec![(h, Want::block(z.cid)), (g, Want::have(z.cid))]);
    }

    /// A peer that said HAVE and then sends nothing gives way to another that said HAVE, as a
    /// silent guess does.
    #[test]
    fn a_silent_holder_gives_way_to_another() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [a, b].into();
        let t0 = Instant::now();
        let mut w = wants();
        let x = block(b"held by a and b");
        let (mut rx, _) = w.want(x.cid, &Session::new(), &connected, t0);
        w.heard(a, t0);
        let sends = w.on_presence(a, x.cid, Presence::Have, &connected, t0);
        assert_eq!(sends, vec![(a, Want::block(x.cid))]);
        w.heard(b, t0);
        assert!(w
            .on_presence(b, x.cid, Presence::Have, &connected, t0)
            .is_empty());
        let (sends, _) = w.tick(&connected, t0 + Duration::from_millis(1_100));
        assert!(sends.contains(&(b, Want::block(x.cid))), "{sends:?}");
        assert_eq!(w.on_block(b, &x, &connected, t0).0, BlockOutcome::Wanted);
        assert_eq!(rx.try_recv().unwrap(), x.data);
    }

    /// A guessed peer that keeps sending (busy serving others) is waited for up to the block
    /// timeout, and so is a silent one when nobody else said HAVE.
    #[test]
    fn a_guess_that_talks_or_has_no_rival_is_waited_for() {
        let (g, h) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [g, h].into();
        let t0 = Instant::now();
        let mut w = wants();
        let y = guessed_then_silent(&mut w, g, h, t0);
        w.heard(g, t0 + Duration::from_millis(500));
        let (sends, _) = w.tick(&connected, t0 + Duration::from_millis(1_100));
        assert!(sends.is_empty(), "{sends:?}");
        let (sends, _) = w.tick(&connected, t0 + Duration::from_millis(5_100));
        assert!(sends.contains(&(h, Want::block(y.cid))), "{sends:?}");

        // silent, but the peer that said HAVE is gone: nobody to give way to
        let mut w = wants();
        let y = guessed_then_silent(&mut w, g, h, t0);
        let only_g: HashSet<_> = [g].into();
        w.on_disconnect(h, &only_g, t0 + Duration::from_millis(20));
        let (sends, _) = w.tick(&only_g, t0 + Duration::from_millis(1_100));
        assert!(sends.is_empty(), "{sends:?}");
        assert!(w
            .pending
            .get(&y.cid)
            .is_some_and(|st| st.block_at.is_some()));
    }

    /// A peer that never sent a HAVE or DONT_HAVE (bitswap 1.1.0 answers a want with the block
    /// or not at all) is never guessed: a want-block it cannot serve would wait out the block
    /// timeout.
    #[test]
    fn a_peer_without_presences_is_not_guessed() {
        let (old, other) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [old, other].into();
        let now = Instant::now();
        let mut w = wants();
        let (x, y) = (block(b"one"), block(b"two"));
        let (_rx, _) = w.want(x.cid, &Session::new(), &connected, now);
        assert_eq!(w.on_block(old, &x, &connected, now).0, BlockOutcome::Wanted);
        let (_rx, sends) = w.want(y.cid, &Session::new(), &connected, now);
        assert_eq!(sends.len(), 2);
        assert!(
            sends.iter().all(|(_, w)| w.want_type == WantType::Have),
            "{sends:?}"
        );
    }

    /// Presences are peer input: only connected peers are remembered as answering, at most
    /// [`MAX_ANSWERING`] of them, and a peer that never connected is never guessed.
    #[test]
    fn answering_peers_are_bounded_and_connected() {
        let now = Instant::now();
        let mut w = wants();
        let x = block(b"asked");
        let stranger = PeerId::random();
        w.on_presence(stranger, x.cid, Presence::Have, &HashSet::new(), now);
        assert!(w.answering.is_empty());
        let many: Vec<PeerId> = (0..MAX_ANSWERING + 10).map(|_| PeerId::random()).collect();
        let connected: HashSet<_> = many.iter().copied().collect();
        for p in &many {
            w.on_presence(*p, x.cid, Presence::DontHave, &connected, now);
        }
        assert_eq!(w.answering.len(), MAX_ANSWERING);
        // a block from the stranger (a want it never answered) does not make it the guess
        let (_rx, _) = w.want(x.cid, &Session::new(), &connected, now);
        w.on_block(stranger, &x, &connected, now);
        assert_eq!(w.last_server, None);
    }

    #[test]
    fn corrupt_block_bans_sender_and_reroutes() {
        let (bad, good) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [bad, good].into();
        let now = Instant::now();
        let mut w = wants();
        let s = Session::new();
        s.add_peer(bad);
        let blk = block(b"z");
        // only the bad peer is known to the session and connected at first
        let only_bad: HashSet<_> = [bad].into();
        let (mut rx, sends) = w.want(blk.cid, &s, &only_bad, now);
        assert_eq!(sends, vec![(bad, Want::block(blk.cid))]);
        let forged = Block {
            cid: block(b"not z").cid,
            data: Bytes::from_static(b"not z"),
        };
        let (outcome, sends) = w.on_block(bad, &forged, &connected, now);
        assert_eq!(outcome, BlockOutcome::Unsolicited);
        assert_eq!(sends, vec![(good, Want::have(blk.cid))]);
        let sends = w.on_presence(bad, blk.cid, Presence::Have, &connected, now);
        assert!(
            sends.iter().all(|(p, _)| *p != bad),
            "banned peer asked again: {sends:?}"
        );
        let sends = w.on_presence(good, blk.cid, Presence::Have, &connected, now);
        assert_eq!(sends, vec![(good, Want::block(blk.cid))]);
        assert_eq!(
            w.on_block(good, &blk, &connected, now).0,
            BlockOutcome::Wanted
        );
        assert_eq!(rx.try_recv().unwrap(), blk.data);
    }

    /// A peer that says HAVE to everything and never delivers (M5) costs one block timeout at
    /// most over a whole read: once a want-block to it timed out, its HAVEs stop counting for
    /// that CID (rebroadcasts do not forgive it while another peer holds the block), and it is
    /// asked last for the read's next CIDs, though it stays a peer of the session. A read of
    /// 100 blocks, 10 wanted at a time as `cat`'s readahead does, ends within 2 × block_timeout
    /// (it took a timeout per window: 10 ×).
    #[test]
    fn a_peer_with_false_haves_slows_a_read_by_one_timeout_at_most() {
        let (liar, honest) = (PeerId::random(), PeerId::random());
        let connected: HashSet<_> = [liar, honest].into();
        let t0 = Instant::now();
        let mut w = wants();
        let session = Session::new();
        let blocks = numbered(100);
        let by_cid: HashMap<Cid, &Block> = blocks.iter().map(|b| (b.cid, b)).collect();
        let mut next_want = 0;
        let mut queue: Vec<(PeerId, Want)> = Vec::new();
        let mut now = t0;
        let step = Duration::from_millis(100);
        let mut delivered = 0;
        while delivered < blocks.len() {
            assert!(
                now.duration_since(t0) <= 2 * w.timing.block_timeout,
                "{delivered} of 100 blocks after {:?}",
                now.duration_since(t0)
            );
            // a readahead window of 10
            while next_want < blocks.len() && next_want < delivered + 10 {
                let (_rx, sends) = w.want(blocks[next_want].cid, &session, &connected, now);
                queue.extend(sends);
                next_want += 1;
            }
            // the network: the liar answers at once (HAVE to every want-have, nothing to a
            // want-block); the honest peer answers too, after it
            let mut next = Vec::new();
            queue.sort_by_key(|(p, _)| *p != liar);
            for (p, want) in queue.drain(..) {
                match (p == liar, want.cancel, want.want_type) {
                    (_, true, _) | (true, _, WantType::Block) => {}
                    (true, _, WantType::Have) => {
                        next.extend(w.on_presence(liar, want.cid, Presence::Have, &connected, now))
                    }
                    (false, _, WantType::Have) => next.extend(w.on_presence(
                        honest,
                        want.cid,
                        Presence::Have,
                        &connected,
                        now,
                    )),
                    (false, _, WantType::Block) => {
                        let (outcome, sends) =
                            w.on_block(honest, by_cid[&want.cid], &connected, now);
                        if outcome == BlockOutcome::Wanted {
                            delivered += 1;
                        }
                        next.extend(sends);
                    }
                }
            }
            now += step;
            let (sends, _) = w.tick(&connected, now);
            next.extend(sends);
            queue = next;
        }
    }

    #[test]
    fn timeout_disconnect_and_rebroadcast() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut connected: HashSet<_> = [a].into();
        let t0 = Instant::now();
        let mut w = wants();
        let blk = block(b"w");
        let (_rx, sends) = w.want(blk.cid, &Session::new(), &connected, t0);
        assert_eq!(sends, vec![(a, Want::have(blk.cid))]);
        w.on_presence(a, blk.cid, Presence::Have, &connected, t0);
        // want-block unanswered past the timeout: a fails; nobody else: rebroadcast + DHT search
        let (sends, searches) = w.tick(&connected, t0 + Duration::from_secs(6));
        assert_eq!(sends, vec![(a, Want::have(blk.cid))]);
        assert_eq!(searches, vec![blk.cid]);
        // a new peer is asked at once
        connected.insert(b);
        assert_eq!(w.on_connect(b), vec![(b, Want::have(blk.cid))]);
        w.on_presence(b, blk.cid, Presence::Have, &connected, t0);
        // b vanishes with our want-block outstanding
        connected.remove(&b);
        let sends = w.on_disconnect(b, &connected, t0);
        assert!(sends.iter().all(|(p, _)| *p != b));
    }

    /// This node, a seed, the members of a fan-out (three co-fetchers and this node), and the
    /// peers connected to this node: every one but itself.
    fn fan_out() -> (PeerId, PeerId, Vec<PeerId>, HashSet<PeerId>) {
        let me = PeerId::random();
        let seed = PeerId::random();
        let mut members: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        members.push(me);
        let connected = members.iter().copied().filter(|p| *p != me);
        let connected = connected.chain([seed]).collect();
        (me, seed, members, connected)
    }

    /// A session divided among `members` as `me` sees it, `seed` among its peers.
    fn divided(me: PeerId, members: &[PeerId], seed: PeerId) -> Session {
        let s = Session::new();
        s.divide(me, members.iter().copied());
        s.add_peer(seed);
        s
    }

    /// In a divided session, a CID another member owns is asked of that member alone; the
    /// first holder's HAVE is not used while the owner may still deliver. The owner's HAVE
    /// (after its DONT_HAVE) gets the want-block; patience or a disconnect falls back.
    #[test]
    fn a_want_owned_by_another_member_waits_for_that_member() {
        let (me, seed, members, connected) = fan_out();
        let s = divided(me, &members, seed);
        let t0 = Instant::now();
        let owned = |i: u32| -> Option<(Block, PeerId)> {
            let data: &'static [u8] =
                Box::leak(format!("block {i}").into_bytes().into_boxed_slice());
            let b = block(data);
            s.owner(&b.cid).map(|o| (b, o))
        };
        let mut found = (0..).filter_map(owned);
        let (blk, owner) = found.next().unwrap();
        let mut w = wants();
        let (mut rx, sends) = w.want(blk.cid, &s, &connected, t0);
        assert_eq!(
            sends,
            vec![(owner, Want::have(blk.cid))],
            "only the owner is asked"
        );
        // the seed's HAVE (from some earlier probe) does not draw a want-block
        assert!(w
            .on_presence(seed, blk.cid, Presence::Have, &connected, t0)
            .is_empty());
        assert!(w
            .on_presence(owner, blk.cid, Presence::DontHave, &connected, t0)
            .is_empty());
        let (sends, _) = w.tick(&connected, t0 + Duration::from_secs(2));
        assert!(sends.is_empty(), "still within patience: {sends:?}");
        // the block lands at the owner: its server says HAVE
        let sends = w.on_presence(owner, blk.cid, Presence::Have, &connected, t0);
        assert_eq!(sends, vec![(owner, Want::block(blk.cid))]);
        assert_eq!(
            w.on_block(owner, &blk, &connected, t0).0,
            BlockOutcome::Wanted
        );
        assert_eq!(rx.try_recv().unwrap(), blk.data);

        // an owner that says nothing for the whole patience is stalled: the holder serves
        let (blk2, owner2) = found.find(|(_, o)| *o == owner).unwrap();
        assert_eq!(owner2, owner);
        let (_rx2, _) = w.want(blk2.cid, &s, &connected, t0);
        w.on_presence(seed, blk2.cid, Presence::Have, &connected, t0);
        let (sends, _) = w.tick(&connected, t0 + Duration::from_secs(4));
        assert_eq!(sends, vec![(seed, Want::block(blk2.cid))]);
        assert_eq!(
            s.owner(&blk2.cid),
            None,
            "the owner is stalled for STALL_FOR"
        );

        // an owner that goes away: its wants fall back at once
        let (blk3, owner3) = found.find(|(_, o)| *o != owner).unwrap();
        let (_rx3, sends) = w.want(blk3.cid, &s, &connected, t0);
        assert_eq!(sends, vec![(owner3, Want::have(blk3.cid))]);
        let rest: HashSet<PeerId> = connected.iter().copied().filter(|p| *p != owner3).collect();
        let sends = w.on_disconnect(owner3, &rest, t0);
        assert!(
            sends
                .iter()
                .any(|(p, x)| *p != owner3 && *x == Want::block(blk3.cid)),
            "{sends:?}"
        );
    }

    /// A want waits for its owner as long as the owner keeps sending HAVEs or blocks (on a
    /// slow link its part takes longer than one patience to come from the seed), and falls
    /// back once the owner has been quiet for a patience, or after [`OWNER_WAIT_ROUNDS`]
    /// patiences however busy it is; the patience is at least twice what blocks take lately.
    #[test]
    fn an_owner_that_keeps_delivering_is_waited_for() {
        let (me, seed, members, connected) = fan_out();
        let s = divided(me, &members, seed);
        let t0 = Instant::now();
        let secs = |n: u64| t0 + Duration::from_secs(n);
        let owner = members[0];
        // owners by the same division, in a session that never stalls anyone
        let ring = Session::new();
        ring.divide(me, members.iter().copied());
        let mut of_owner = (0u32..)
            .map(|i| {
                block(Box::leak(
                    format!("block {i}").into_bytes().into_boxed_slice(),
                ))
            })
            .filter(|b| ring.owner(&b.cid) == Some(owner));
        let mut w = wants(); // patience 3 s
        let waiting = of_owner.next().unwrap();
        let (_rx, _) = w.want(waiting.cid, &s, &connected, t0);
        w.on_presence(seed, waiting.cid, Presence::Have, &connected, t0);
        // the owner delivers another block of its part every 2 s: the want keeps waiting
        for at in [2, 4, 6] {
            let other = of_owner.next().unwrap();
            let (_o, _) = w.want(other.cid, &s, &connected, secs(at));
            let sends = w.on_presence(owner, other.cid, Presence::Have, &connected, secs(at));
            assert_eq!(sends, vec![(owner, Want::block(other.cid))]);
            w.on_block(owner, &other, &connected, secs(at));
            let (sends, _) = w.tick(&connected, secs(at + 1));
            assert!(
                sends.iter().all(|(_, x)| x.cid != waiting.cid),
                "{at} s: still waiting for the owner: {sends:?}"
            );
        }
        // then it is quiet for a whole patience: the seed serves
        let (sends, _) = w.tick(&connected, secs(9));
        assert_eq!(sends, vec![(seed, Want::block(waiting.cid))]);

        // an owner that delivers everything but this CID holds it for OWNER_WAIT_ROUNDS
        // patiences at most
        let s = divided(me, &members, seed);
        let mut w = wants();
        let waiting = of_owner.next().unwrap();
        let (_rx, _) = w.want(waiting.cid, &s, &connected, t0);
        w.on_presence(seed, waiting.cid, Presence::Have, &connected, t0);
        let cap = 3 * u64::from(OWNER_WAIT_ROUNDS);
        for at in (1..).map(|i| 2 * i).take_while(|at| *at < cap + 2) {
            let other = of_owner.next().unwrap();
            let (_o, _) = w.want(other.cid, &s, &connected, secs(at));
            w.on_presence(owner, other.cid, Presence::Have, &connected, secs(at));
            w.on_block(owner, &other, &connected, secs(at));
            let (sends, _) = w.tick(&connected, secs(at));
            let asked_seed = sends.contains(&(seed, Want::block(waiting.cid)));
            assert_eq!(asked_seed, at >= cap, "{at} s: {sends:?}");
            if asked_seed {
                break;
            }
        }

        // blocks that come slowly lengthen the patience to twice their latency: the owner
        // waits in the same queue at the seed before it can say HAVE
        let mut w = wants();
        let plain = Session::new();
        plain.add_peer(seed);
        let slow = block(b"one of this node's blocks, 8 s from the seed");
        let (_rx, sends) = w.want(slow.cid, &plain, &connected, t0);
        assert!(sends.contains(&(seed, Want::block(slow.cid))), "{sends:?}");
        w.on_block(seed, &slow, &connected, secs(8));
        let s = divided(me, &members, seed);
        let waiting = of_owner.next().unwrap();
        let (_rx, _) = w.want(waiting.cid, &s, &connected, secs(8));
        w.on_presence(seed, waiting.cid, Presence::Have, &connected, secs(8));
        let (sends, _) = w.tick(&connected, secs(8 + 15));
        assert!(sends.is_empty(), "within 16 s: {sends:?}");
        let (sends, _) = w.tick(&connected, secs(8 + 16));
        assert_eq!(sends, vec![(seed, Want::block(waiting.cid))]);
    }

    /// A want waiting for its owner follows a new division: when more co-fetchers show up and
    /// the CID becomes this node's own, it is fetched at the next tick, not after the patience
    /// (two members that each thought the other owned it waited 10 s in a fan-out).
    #[test]
    fn a_waiting_want_follows_a_new_division() {
        // sorted d < me < c: c's half of the ring {me, c} overlaps this node's third of
        // {d, me, c}
        let mut ids: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        ids.sort();
        let (d, me, c, seed) = (ids[0], ids[1], ids[2], PeerId::random());
        let connected: HashSet<PeerId> = [c, d, seed].into();
        let (two, three) = (Session::new(), Session::new());
        two.divide(me, [c]);
        three.divide(me, [c, d]);
        let blk = (0u32..10_000)
            .map(|i| {
                let data: &'static [u8] =
                    Box::leak(format!("block {i}").into_bytes().into_boxed_slice());
                block(data)
            })
            .find(|b| two.owner(&b.cid) == Some(c) && three.owner(&b.cid).is_none())
            .expect("some CID moves from c to this node");
        let s = Session::new();
        s.divide(me, [c]);
        s.add_peer(seed);
        let t0 = Instant::now();
        let mut w = wants();
        let (_rx, sends) = w.want(blk.cid, &s, &connected, t0);
        assert_eq!(sends, vec![(c, Want::have(blk.cid))], "c owns it at first");
        let (sends, _) = w.tick(&connected, t0 + Duration::from_millis(500));
        assert!(sends.is_empty(), "still c's: {sends:?}");
        // d joins the fetch: the CID is now this node's own part
        s.divide(me, [c, d]);
        let (sends, _) = w.tick(&connected, t0 + Duration::from_secs(1));
        assert!(
            sends.contains(&(seed, Want::block(blk.cid))),
            "fetched at once from the holder: {sends:?}"
        );
    }

    #[test]
    fn abandon_cancels_when_last_waiter_leaves() {
        let a = PeerId::random();
        let connected: HashSet<_> = [a].into();
        let mut w = wants();
        let blk = block(b"v");
        let (rx, _) = w.want(blk.cid, &Session::new(), &connected, Instant::now());
        let (rx2, sends) = w.want(blk.cid, &Session::new(), &connected, Instant::now());
        assert!(sends.is_empty(), "second waiter shares the want");
        drop(rx);
        assert!(w.abandon(&blk.cid).is_empty());
        drop(rx2);
        assert_eq!(w.abandon(&blk.cid), vec![(a, Want::cancel(blk.cid))]);
        assert_eq!(w.len(), 0);
    }
}
