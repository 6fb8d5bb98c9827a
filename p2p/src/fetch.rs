//! Fetching a whole DAG with the peers that fetch it at the same time (a fan-out): the planning
//! half of `pin add` and of every shared whole read. The node supplies blocks (its store first,
//! else bitswap) and their links through [`DagSource`]; this module decides what to want from
//! whom and in which order. It knows CIDs and sessions, not stores or formats.

use std::collections::HashSet;
use std::future::Future;

use bytes::Bytes;
use cid::Cid;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;

use crate::{Client, Session};

/// Blocks and links for [`fetch_dag`].
pub trait DagSource: Sync {
    type Error;
    /// The block's bytes: from the local store, else fetched through `session` (and stored).
    fn get(
        &self,
        cid: Cid,
        session: &Session,
    ) -> impl Future<Output = Result<Bytes, Self::Error>> + Send;
    /// The CIDs `data` (the bytes of `cid`) links to.
    fn links(&self, cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, Self::Error>;
}

/// Fetches every block of the DAG under `root` (breadth first) through `source`. Returns the
/// number of blocks walked.
///
/// Nodes that fetch the same DAG at once share the work: the session is divided among this node
/// and the peers that asked it for the root (every fetcher broadcasts that want when it starts),
/// by [`Session::divide`], and divided again when more such peers show up. Each level is walked
/// in two queues at once, `parallel` blocks at a time each: this node's own part, from whoever
/// holds it, and the other members' parts side by side, each block from its owner as soon as the
/// owner has it. So the first holder sends each block about once, and every member uses its
/// whole downlink from the start. Alone (or without `net`), the whole level is this node's part.
pub async fn fetch_dag<S: DagSource>(
    source: &S,
    net: Option<&Client>,
    root: Cid,
    parallel: usize,
) -> Result<u64, S::Error> {
    let parallel = parallel.max(1);
    let session = Session::new();
    let mut members = HashSet::new();
    let mut frontier = vec![root];
    let mut seen = HashSet::from([root]);
    let mut walked = 0u64;
    while !frontier.is_empty() {
        let mut queues = Queues::new(std::mem::take(&mut frontier), &session);
        let mut running = FuturesUnordered::new();
        let mut busy = [0usize; 2];
        loop {
            if walked > 0 && divide(net, &session, &root, &mut members) {
                queues.sort(&session);
            }
            let own = own_in_flight(parallel, members.len());
            for (q, n) in busy.iter_mut().enumerate() {
                let limit = if q == 0 { own } else { parallel };
                while *n < limit {
                    let Some(cid) = queues.0[q].pop() else { break };
                    *n += 1;
                    let session = &session;
                    running.push(async move { (q, cid, source.get(cid, session).await) });
                }
            }
            let Some((q, cid, data)) = running.next().await else {
                break;
            };
            busy[q] -= 1;
            walked += 1;
            for link in source.links(&cid, &data?)? {
                if seen.insert(link) {
                    frontier.push(link);
                }
            }
        }
    }
    Ok(walked)
}

/// Blocks of this node's own part asked for at once, when `others` co-fetchers share the
/// session (the other members' parts take `parallel`): every member asks the first holder for
/// its own part at the same time, so together they keep about `parallel` blocks in its queue,
/// at least two each. Sixteen each made a 10 Mbit/s seed's queue 7 × 16 blocks deep (23 s):
/// members got nothing for 10-15 s, were taken for stalled and their parts fetched from the
/// seed by everyone.
fn own_in_flight(parallel: usize, others: usize) -> usize {
    (parallel / (others + 1)).clamp(parallel.min(2), parallel)
}

/// Divides `session` among this node and the peers that asked it for `root` lately, when there
/// are new ones among them. Returns whether it did.
fn divide(
    net: Option<&Client>,
    session: &Session,
    root: &Cid,
    members: &mut HashSet<PeerId>,
) -> bool {
    let Some(net) = net else { return false };
    let before = members.len();
    members.extend(net.wanted_by(root));
    if members.len() == before {
        return false;
    }
    tracing::debug!(%root, "fetching a DAG with {} other peers", members.len());
    session.divide(net.peer_id(), members.iter().copied());
    true
}

/// The blocks of one level still to fetch: this node's own part, and the other members' parts,
/// each popped from the back in fetch order.
struct Queues([Vec<Cid>; 2]);

impl Queues {
    fn new(cids: Vec<Cid>, session: &Session) -> Queues {
        let mut q = Queues([cids, Vec::new()]);
        q.sort(session);
        q
    }

    /// Splits and orders the level as `session` is divided now: by offset inside a part, then
    /// by distance round the ring, so the other members' parts are walked side by side.
    fn sort(&mut self, session: &Session) {
        let [a, b] = &mut self.0;
        let mut all: Vec<(u64, usize, Cid)> = a
            .drain(..)
            .chain(b.drain(..))
            .map(|c| {
                let (distance, offset) = session.place(&c);
                (offset, distance, c)
            })
            .collect();
        // popped from the back: reverse order
        all.sort_unstable_by(|x, y| y.cmp(x));
        for (_, distance, c) in all {
            self.0[usize::from(distance != 0)].push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cid::multihash::Multihash;
    use sha2::{Digest, Sha256};

    use super::*;

    /// A DAG in memory whose blocks are their children's CIDs, concatenated.
    struct Tree(HashMap<Cid, Vec<Cid>>);

    fn cid(n: u32) -> Cid {
        Cid::new_v1(
            0x55,
            Multihash::wrap(0x12, &Sha256::digest(n.to_be_bytes())).unwrap(),
        )
    }

    /// The block the tree does not have.
    #[derive(Debug, PartialEq, Eq)]
    struct Missing(Cid);

    impl DagSource for Tree {
        type Error = Missing;
        async fn get(&self, cid: Cid, _: &Session) -> Result<Bytes, Missing> {
            match self.0.get(&cid) {
                Some(_) => Ok(Bytes::from(cid.to_bytes())),
                None => Err(Missing(cid)),
            }
        }
        fn links(&self, cid: &Cid, _: &[u8]) -> Result<Vec<Cid>, Missing> {
            Ok(self.0.get(cid).cloned().unwrap_or_default())
        }
    }

    /// Alone, every block of the DAG is walked once, shared children included; a missing block
    /// ends the walk with its error.
    #[tokio::test]
    async fn walks_every_block_once_and_stops_at_a_missing_one() {
        let mut tree = HashMap::new();
        let leaves: Vec<Cid> = (10..300).map(cid).collect();
        for l in &leaves {
            tree.insert(*l, Vec::new());
        }
        // two inner nodes sharing half of their leaves
        tree.insert(cid(1), leaves[..200].to_vec());
        tree.insert(cid(2), leaves[100..].to_vec());
        tree.insert(cid(0), vec![cid(1), cid(2)]);
        let tree = Tree(tree);
        assert_eq!(fetch_dag(&tree, None, cid(0), 8).await, Ok(3 + 290));
        let mut broken = tree.0.clone();
        broken.remove(&leaves[150]);
        let err = fetch_dag(&Tree(broken), None, cid(0), 8).await.unwrap_err();
        assert_eq!(err, Missing(leaves[150]));
    }

    /// Alone, a fetch asks for `parallel` blocks at once; among co-fetchers, its own part
    /// takes its share of that at the first holder, at least two (and never more than alone).
    #[test]
    fn the_own_part_in_flight_is_a_share_of_the_holders_queue() {
        assert_eq!(own_in_flight(16, 0), 16);
        assert_eq!(own_in_flight(16, 1), 8);
        assert_eq!(own_in_flight(16, 3), 4);
        assert_eq!(own_in_flight(16, 6), 2);
        assert_eq!(own_in_flight(16, 1000), 2);
        assert_eq!(own_in_flight(1, 5), 1);
    }
}
