//! The have side of bitswap: one ledger per peer holding its queued wants, drained by one task
//! per peer that answers from the [`BlockSource`]. Bounded twice: a peer may queue at most
//! `max_wants` entries (the rest are dropped), and at most `max_outstanding_bytes` of answers may
//! wait for its stream before the task stops serving it.

use bytes::Bytes;
use cid::Cid;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;

use super::message::{Block, Message, Presence, Want, WantType};
use super::session::lock;
use crate::BlockSource;

/// A want-have for a block this small is answered with the block itself (boxo's default).
pub const WANT_HAVE_REPLACE_SIZE: usize = 1024;
/// Answers are batched up to this many bytes per message.
pub const TARGET_MESSAGE_SIZE: usize = 1 << 20;
/// The first answer to wants that found the queue empty carries at most this many bytes (one
/// block of kubo's chunk size): a reader of a new range (a lazy mount's chunk) gets its first
/// block, and starts inflating it, while the rest is read and sent, not after a whole message
/// of four. The answers after it are batched up to [`TARGET_MESSAGE_SIZE`] again.
pub const FIRST_MESSAGE_SIZE: usize = 256 << 10;
/// A block of at most this many bytes is read for an answer on the async worker
/// ([`Ledger::next_small_answer`]): as quick as the hand-off to a blocking thread and back, which
/// a small block's fetch paid on each side.
pub const INLINE_BLOCK_SIZE: usize = 64 << 10;
/// Most bytes of blocks one answer reads on the async worker.
const INLINE_MESSAGE_SIZE: usize = 256 << 10;

/// Wants of one peer that we could not answer, kept (up to this many) so that the peer hears
/// HAVE as soon as the block lands here: a node that is still downloading serves what it has.
pub const MAX_MISSED_PER_PEER: usize = 4096;
/// CIDs remembered per peer as wanted lately, whatever we answered.
pub const RECENT_WANTS_PER_PEER: usize = 4096;

/// A set of CIDs that forgets the oldest beyond its capacity. Every operation is O(1)
/// (amortised): a removed CID stays in `order` until it is evicted or the list is compacted.
#[derive(Default)]
struct Recent {
    order: VecDeque<Cid>,
    set: HashSet<Cid>,
}

impl Recent {
    fn insert(&mut self, cid: Cid, cap: usize) {
        if self.set.insert(cid) {
            self.order.push_back(cid);
            while self.set.len() > cap {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                self.set.remove(&old);
            }
            self.compact(cap);
        }
    }

    fn remove(&mut self, cid: &Cid) -> bool {
        let had = self.set.remove(cid);
        if had {
            self.compact(0);
        }
        had
    }

    /// Drops removed CIDs (and repeats) from `order` once it is twice what it must hold.
    fn compact(&mut self, cap: usize) {
        if self.order.len() > 2 * self.set.len().max(cap) + 64 {
            let Recent { order, set } = self;
            let mut seen = HashSet::with_capacity(set.len());
            order.retain(|c| set.contains(c) && seen.insert(*c));
        }
    }
}

/// The wants a peer queued, in arrival order. Queueing, the duplicate check and a cancel are
/// O(1) (a message of 100k entries costs 100k steps, not 100k × the queue): `live` holds the
/// queued wants by CID and type, `order` their keys; a cancelled key stays in `order` until it
/// is popped (and skipped) or the list is compacted.
#[derive(Default)]
struct Queue {
    live: HashMap<(Cid, WantType), Want>,
    order: VecDeque<(Cid, WantType)>,
}

impl Queue {
    fn clear(&mut self) {
        self.live.clear();
        self.order.clear();
    }

    /// Queues `w` unless the same want (CID and type) is queued; false when `cap` wants are.
    fn push(&mut self, w: Want, cap: usize) -> bool {
        let key = (w.cid, w.want_type);
        if self.live.contains_key(&key) {
            return true;
        }
        if self.live.len() >= cap {
            return false;
        }
        self.live.insert(key, w);
        self.order.push_back(key);
        true
    }

    /// Forgets every want of `cid`.
    fn cancel(&mut self, cid: &Cid) {
        self.live.remove(&(*cid, WantType::Block));
        self.live.remove(&(*cid, WantType::Have));
    }

    fn pop(&mut self) -> Option<Want> {
        self.pop_if(|_| true)
    }

    /// The first want, if `take` says so; else it stays first.
    fn pop_if(&mut self, take: impl Fn(&Want) -> bool) -> Option<Want> {
        while let Some(key) = self.order.front() {
            match self.live.get(key) {
                None => {
                    self.order.pop_front();
                }
                Some(w) if take(w) => {
                    let key = self.order.pop_front()?;
                    return self.live.remove(&key);
                }
                Some(_) => return None,
            }
        }
        None
    }

    /// Drops cancelled keys (and repeats) from `order` once it is twice what is queued.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.live.len() + 64 {
            let Queue { live, order } = self;
            let mut seen = HashSet::with_capacity(live.len());
            order.retain(|k| live.contains_key(k) && seen.insert(*k));
        }
    }

    fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// Wants one peer has queued with us.
#[derive(Default)]
pub(crate) struct Ledger {
    queue: Mutex<Queue>,
    /// CIDs the peer wanted and we lacked.
    missed: Mutex<Recent>,
    /// CIDs the peer wanted lately.
    wanted: Mutex<Recent>,
    pub notify: Notify,
}

impl Ledger {
    /// Applies a received wantlist; returns how many entries were dropped for the cap.
    pub fn apply(&self, full: bool, wants: Vec<Want>, max_wants: usize) -> usize {
        let mut q = lock(&self.queue);
        if full {
            q.clear();
        }
        let mut dropped = 0;
        let mut missed = lock(&self.missed);
        if full {
            *missed = Default::default();
        }
        let mut wanted = lock(&self.wanted);
        for w in wants {
            if w.cancel {
                q.cancel(&w.cid);
                missed.remove(&w.cid);
                continue;
            }
            wanted.insert(w.cid, RECENT_WANTS_PER_PEER);
            if !q.push(w, max_wants) {
                dropped += 1;
            }
        }
        q.compact();
        drop((wanted, missed, q));
        self.notify.notify_one();
        dropped
    }

    /// We now hold `cid`: if this peer wanted it and heard that we lacked it, queue a HAVE for it
    /// (a want-have, so a block no longer needed is not pushed). Returns whether one was queued.
    pub fn stored(&self, cid: &Cid) -> bool {
        if !lock(&self.missed).remove(cid) {
            return false;
        }
        let mut w = Want::have(*cid);
        w.send_dont_have = false;
        lock(&self.queue).push(w, usize::MAX);
        self.notify.notify_one();
        true
    }

    fn miss(&self, cid: Cid) {
        lock(&self.missed).insert(cid, MAX_MISSED_PER_PEER);
    }

    /// Whether the peer asked for `cid` lately.
    pub fn wanted(&self, cid: &Cid) -> bool {
        lock(&self.wanted).set.contains(cid)
    }

    /// Takes queued wants and builds one answer of at most about `limit` bytes (one block
    /// at least). Returns `None` when the queue is empty.
    pub fn next_answer(
        &self,
        source: &dyn BlockSource,
        corrupt: bool,
        limit: usize,
    ) -> Option<Message> {
        let mut msg = Message::default();
        let mut size = 0;
        loop {
            let Some(want) = lock(&self.queue).pop() else {
                break;
            };
            if !answer(&want, source, corrupt, &mut msg, &mut size) {
                self.miss(want.cid);
            }
            if size >= limit {
                break;
            }
        }
        (!msg.is_empty()).then_some(msg)
    }

    /// [`Self::next_answer`] while the first queued wants ask for blocks of at most
    /// [`INLINE_BLOCK_SIZE`] bytes (the source's `size`, an index lookup, says), up to
    /// [`INLINE_MESSAGE_SIZE`] bytes of them: cheap enough to answer on the async worker.
    /// `None` when the first want is for a bigger (or missing) block: answer it with
    /// [`Self::next_answer`] on a blocking thread.
    pub fn next_small_answer(&self, source: &dyn BlockSource, corrupt: bool) -> Option<Message> {
        let small = |w: &Want| source.size(&w.cid).is_some_and(|n| n <= INLINE_BLOCK_SIZE);
        let mut msg = Message::default();
        let mut size = 0;
        while size < INLINE_MESSAGE_SIZE {
            let Some(want) = lock(&self.queue).pop_if(small) else {
                break;
            };
            if !answer(&want, source, corrupt, &mut msg, &mut size) {
                self.miss(want.cid);
            }
        }
        (!msg.is_empty()).then_some(msg)
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.queue).is_empty()
    }
}

/// Adds the answer to `want` to `msg`; false when we lack the block.
fn answer(
    want: &Want,
    source: &dyn BlockSource,
    corrupt: bool,
    msg: &mut Message,
    size: &mut usize,
) -> bool {
    let cid = want.cid;
    match want.want_type {
        WantType::Block => match source.get(&cid) {
            Some(data) => {
                *size += data.len();
                msg.blocks.push(Block {
                    cid,
                    data: maybe_corrupt(data, corrupt),
                });
            }
            None => {
                if want.send_dont_have {
                    msg.presences.push((cid, Presence::DontHave));
                }
                return false;
            }
        },
        WantType::Have => match source.size(&cid) {
            None => {
                if want.send_dont_have {
                    msg.presences.push((cid, Presence::DontHave));
                }
                return false;
            }
            Some(len) if len <= WANT_HAVE_REPLACE_SIZE => match source.get(&cid) {
                Some(data) => {
                    *size += data.len();
                    msg.blocks.push(Block {
                        cid,
                        data: maybe_corrupt(data, corrupt),
                    });
                }
                // stored but unservable (corrupt on disk): still say we have it, as before
                None => msg.presences.push((cid, Presence::Have)),
            },
            // only the length is needed: the block is neither read for the peer nor hashed
            Some(_) => msg.presences.push((cid, Presence::Have)),
        },
    }
    true
}

/// Test-only fault: flips a byte so the block no longer hashes to its CID.
fn maybe_corrupt(data: Bytes, corrupt: bool) -> Bytes {
    if !corrupt {
        return data;
    }
    let mut v = data.to_vec();
    match v.first_mut() {
        Some(b) => *b ^= 0xff,
        None => v.push(0),
    }
    Bytes::from(v)
}

/// Whether a CID is one the server can ever answer (sha2-256 or identity multihash).
pub fn servable(cid: &Cid) -> bool {
    matches!(cid.hash().code(), 0x12 | 0x00)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitswap::message::hash;
    use std::collections::HashMap;

    use crate::block_source::MemSource as Map;

    fn cid(data: &[u8]) -> Cid {
        Cid::new_v1(0x55, hash(0x12, data).unwrap())
    }

    #[test]
    fn answers_haves_blocks_and_dont_haves() {
        let small = Bytes::from_static(b"small");
        let big = Bytes::from(vec![1u8; 4000]);
        let src = Map([(cid(&small), small.clone()), (cid(&big), big.clone())].into());
        let missing = cid(b"missing");
        let l = Ledger::default();
        let dropped = l.apply(
            false,
            vec![
                Want::have(cid(&small)),
                Want::have(cid(&big)),
                Want::block(cid(&big)),
                Want::have(missing),
            ],
            100,
        );
        assert_eq!(dropped, 0);
        let m = l.next_answer(&src, false, TARGET_MESSAGE_SIZE).unwrap();
        assert_eq!(
            m.blocks.len(),
            2,
            "small block replaces HAVE; big block sent"
        );
        assert_eq!(
            m.presences,
            vec![(cid(&big), Presence::Have), (missing, Presence::DontHave)]
        );
        assert!(l.next_answer(&src, false, TARGET_MESSAGE_SIZE).is_none());
    }

    /// An answer stops at its byte limit, in queue order: the first answer to a fresh burst of
    /// wants for 256 KiB blocks ([`FIRST_MESSAGE_SIZE`]) carries one block, the next ones four
    /// ([`TARGET_MESSAGE_SIZE`]); a block bigger than the limit still goes, alone.
    #[test]
    fn a_first_answer_carries_one_block_and_later_ones_are_batched() {
        let blocks: Vec<Bytes> = (0..7u8)
            .map(|i| Bytes::from(vec![i; FIRST_MESSAGE_SIZE]))
            .collect();
        let src = Map(blocks.iter().map(|d| (cid(d), d.clone())).collect());
        let l = Ledger::default();
        l.apply(
            false,
            blocks.iter().map(|d| Want::block(cid(d))).collect(),
            100,
        );
        let sizes = [
            FIRST_MESSAGE_SIZE,
            TARGET_MESSAGE_SIZE,
            1,
            TARGET_MESSAGE_SIZE,
            1,
        ];
        let got: Vec<Vec<Cid>> = sizes
            .iter()
            .map_while(|&limit| l.next_answer(&src, false, limit))
            .map(|m| m.blocks.iter().map(|b| b.cid).collect())
            .collect();
        let want: Vec<Cid> = blocks.iter().map(|d| cid(d)).collect();
        assert_eq!(
            got,
            [&want[..1], &want[1..5], &want[5..6], &want[6..7]].map(<[Cid]>::to_vec)
        );
    }

    /// The async worker answers the small blocks at the head of the queue and stops at the first
    /// big (or missing) one, which stays first for the blocking answer, in order.
    #[test]
    fn small_blocks_first_are_answered_inline_and_the_rest_stays_in_order() {
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        let big = Bytes::from(vec![7u8; INLINE_BLOCK_SIZE + 1]);
        let c = Bytes::from_static(b"c");
        let src = Map([&a, &b, &big, &c].map(|d| (cid(d), d.clone())).into());
        let missing = cid(b"missing");
        let l = Ledger::default();
        let wants = [&a, &b, &big, &c].map(|d| Want::block(cid(d)));
        l.apply(false, wants.into(), 100);
        let inline = l.next_small_answer(&src, false).unwrap();
        assert_eq!(
            inline.blocks.iter().map(|x| x.cid).collect::<Vec<_>>(),
            [cid(&a), cid(&b)]
        );
        assert!(
            l.next_small_answer(&src, false).is_none(),
            "a big block is next"
        );
        let rest = l.next_answer(&src, false, TARGET_MESSAGE_SIZE).unwrap();
        assert_eq!(
            rest.blocks.iter().map(|x| x.cid).collect::<Vec<_>>(),
            [cid(&big), cid(&c)]
        );
        // a block we lack is answered (DONT_HAVE) off the async worker too
        l.apply(false, vec![Want::block(missing), Want::block(cid(&a))], 100);
        assert!(l.next_small_answer(&src, false).is_none());
        assert!(l.next_answer(&src, false, TARGET_MESSAGE_SIZE).is_some());
        assert!(l.is_empty());
    }

    #[test]
    fn cancel_full_and_cap() {
        let l = Ledger::default();
        let (a, b, c) = (cid(b"a"), cid(b"b"), cid(b"c"));
        assert_eq!(
            l.apply(
                false,
                vec![Want::block(a), Want::block(b), Want::block(c)],
                2
            ),
            1
        );
        l.apply(false, vec![Want::cancel(a)], 2);
        let src = Map(HashMap::new());
        let m = l.next_answer(&src, false, TARGET_MESSAGE_SIZE).unwrap();
        assert_eq!(m.presences, vec![(b, Presence::DontHave)]);
        l.apply(false, vec![Want::block(a)], 2);
        l.apply(true, vec![Want::block(c)], 2);
        let m = l.next_answer(&src, false, TARGET_MESSAGE_SIZE).unwrap();
        assert_eq!(m.presences, vec![(c, Presence::DontHave)]);
    }

    /// A hostile message of 100k entries (finding H3: each entry once scanned the whole queue
    /// under the ledger lock, ~10^8 comparisons): the cap holds, order is kept, cancels and
    /// re-wants are exact, and the bookkeeping stays bounded however wants and cancels churn.
    #[test]
    fn huge_wantlists_and_churn_stay_exact_and_bounded() {
        let l = Ledger::default();
        let cids: Vec<Cid> = (0..100_000u32).map(|i| cid(&i.to_le_bytes())).collect();
        let wants: Vec<Want> = cids.iter().map(|c| Want::have(*c)).collect();
        assert_eq!(l.apply(false, wants, 1024), 100_000 - 1024);
        // cancel all but the first two, then want the first again (already queued: no repeat)
        let mut cancels: Vec<Want> = cids[2..].iter().map(|c| Want::cancel(*c)).collect();
        cancels.push(Want::have(cids[0]));
        assert_eq!(l.apply(false, cancels, 1024), 0);
        let src = Map(HashMap::new());
        let m = l.next_answer(&src, false, TARGET_MESSAGE_SIZE).unwrap();
        assert_eq!(
            m.presences,
            vec![(cids[0], Presence::DontHave), (cids[1], Presence::DontHave)]
        );
        assert!(l.next_answer(&src, false, TARGET_MESSAGE_SIZE).is_none());
        // churn: want, cancel, want again, 100k times over 3 CIDs
        for i in 0..100_000usize {
            let c = cids[i % 3];
            l.apply(
                false,
                vec![Want::block(c), Want::cancel(c), Want::block(c)],
                1024,
            );
        }
        {
            let q = lock(&l.queue);
            assert_eq!(q.live.len(), 3);
            assert!(q.order.len() <= 2 * 3 + 64, "{} keys kept", q.order.len());
            let missed = lock(&l.missed);
            assert!(missed.order.len() <= 2 * MAX_MISSED_PER_PEER + 64);
        }
        let m = l.next_answer(&src, false, TARGET_MESSAGE_SIZE).unwrap();
        let mut got: Vec<Cid> = m.presences.iter().map(|(c, _)| *c).collect();
        got.sort();
        let mut want = cids[..3].to_vec();
        want.sort();
        assert_eq!(got, want, "each queued want answered once");
        assert!(l.is_empty());
    }

    #[test]
    fn recent_forgets_the_oldest_and_removes_exactly() {
        let mut r = Recent::default();
        let cids: Vec<Cid> = (0..10u32).map(|i| cid(&i.to_le_bytes())).collect();
        for c in &cids {
            r.insert(*c, 4);
        }
        assert_eq!(r.set.len(), 4);
        assert!(cids[6..].iter().all(|c| r.set.contains(c)));
        assert!(r.remove(&cids[9]));
        assert!(!r.remove(&cids[9]));
        for _ in 0..10_000 {
            r.insert(cids[9], 4);
            r.remove(&cids[9]);
        }
        assert!(r.order.len() <= 2 * 4 + 64, "{}", r.order.len());
        assert_eq!(r.set.len(), 3);
    }

    #[test]
    fn corrupt_switch_breaks_the_hash() {
        let data = Bytes::from_static(b"payload that is long enough");
        let src = Map([(cid(&data), data.clone())].into());
        let l = Ledger::default();
        l.apply(false, vec![Want::block(cid(&data))], 10);
        let m = l.next_answer(&src, true, TARGET_MESSAGE_SIZE).unwrap();
        assert_ne!(m.blocks[0].data, data);
    }
}
