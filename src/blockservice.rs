//! Blocks from anywhere: the local store first, else a bitswap want through the p2p node; a
//! fetched block is verified against its CID and cached (unpinned) in the store. This is the only
//! module that knows both the blockstore and the network.

use anyhow::Context;
use bytes::Bytes;
use cid::Cid;
use cidfs_p2p::{BlockSource, Session};
use std::sync::Arc;

use crate::blockstore::{self, Blocks};
use crate::unixfs::BlockGet;

/// Local store plus (optionally) the swarm.
#[derive(Clone)]
pub struct BlockService {
    store: Arc<dyn Blocks>,
    net: Option<cidfs_p2p::Client>,
}

impl BlockService {
    pub fn new(store: Arc<dyn Blocks>, net: Option<cidfs_p2p::Client>) -> Self {
        BlockService { store, net }
    }

    pub fn store(&self) -> &Arc<dyn Blocks> {
        &self.store
    }

    pub fn net(&self) -> Option<&cidfs_p2p::Client> {
        self.net.as_ref()
    }

    /// The block's bytes, fetched from peers when not stored locally. Cancel-safe.
    pub async fn get(&self, cid: Cid, session: &Session) -> anyhow::Result<Bytes> {
        let store = self.store.clone();
        let local = tokio::task::spawn_blocking(move || Blocks::get(&*store, &cid))
            .await
            .context("block store task failed")?
            .with_context(|| format!("reading block {cid}"))?;
        if let Some(data) = local {
            return Ok(data);
        }
        let Some(net) = &self.net else {
            anyhow::bail!("block {cid} not found locally (offline)");
        };
        let data = net.get_block(cid, session).await?;
        let store = self.store.clone();
        let stored = data.clone();
        // bitswap computed `cid` from these bytes, and get_block returns only the CID asked for
        tokio::task::spawn_blocking(move || store.put_hashed(&cid, &stored))
            .await
            .context("block store task failed")?
            .with_context(|| format!("storing fetched block {cid}"))?;
        net.stored(&cid);
        Ok(data)
    }

    /// A block getter bound to one session, for one read.
    pub fn session(&self) -> SessionGetter {
        SessionGetter {
            service: self.clone(),
            session: Session::new(),
        }
    }

    /// Puts blocks produced locally (by `add`) in one blocking batch.
    pub async fn put_many(&self, blocks: Vec<(Cid, Vec<u8>)>) -> anyhow::Result<()> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            for (cid, data) in &blocks {
                store
                    .put(cid, data)
                    .with_context(|| format!("storing block {cid}"))?;
            }
            anyhow::Ok(())
        })
        .await
        .context("block store task failed")?
    }

    /// Runs a blocking store operation off the async workers.
    pub async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Blocks) -> Result<T, blockstore::Error> + Send + 'static,
    ) -> anyhow::Result<T> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(&*store))
            .await
            .context("block store task failed")??)
    }
}

/// [`BlockGet`] for one read: its wants share one bitswap session.
#[derive(Clone)]
pub struct SessionGetter {
    service: BlockService,
    session: Session,
}

impl SessionGetter {
    /// Peers that delivered blocks of this session so far (for logs).
    pub fn peers(&self) -> Vec<libp2p::PeerId> {
        self.session.peers()
    }
}

impl BlockGet for SessionGetter {
    async fn get(&self, cid: Cid) -> anyhow::Result<Bytes> {
        self.service.get(cid, &self.session).await
    }
}

/// Serves the local store to bitswap.
pub struct StoreSource(pub Arc<dyn Blocks>);

impl BlockSource for StoreSource {
    fn size(&self, cid: &Cid) -> Option<usize> {
        match Blocks::get(&*self.0, cid) {
            Ok(data) => data.map(|d| d.len()),
            Err(e) => {
                tracing::warn!(%cid, "cannot read block to answer a want-have: {e}");
                None
            }
        }
    }

    fn get(&self, cid: &Cid) -> Option<Bytes> {
        match Blocks::get(&*self.0, cid) {
            Ok(Some(data)) => match blockstore::verify(cid, &data) {
                Ok(()) => Some(data),
                Err(e) => {
                    tracing::error!(%cid, "stored block is corrupt; not serving it: {e}");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(%cid, "cannot read block to serve it: {e}");
                None
            }
        }
    }
}

impl BlockService {
    /// Fetches every block of the DAG under `root` (breadth first, `parallel` at a time) so it
    /// can be pinned. Returns the number of blocks walked.
    ///
    /// Each level is walked around a ring, starting at this node's own place: a block's place
    /// is the first 8 bytes of its digest, and the nodes of the swarm (this one and its peers,
    /// by peer id) divide the ring evenly. Nodes that fetch the same DAG at once thus start on
    /// different blocks and meet each other's blocks later, when they can take them from each
    /// other instead of all asking the first holder for the same ones; and by the time each is
    /// a few `1/n` of the way round, every block is held by one of them.
    pub async fn fetch_dag(&self, root: Cid, parallel: usize) -> anyhow::Result<u64> {
        use futures::{stream, StreamExt, TryStreamExt};
        let start = self.ring_start().await;
        let session = Session::new();
        let mut frontier = vec![root];
        let mut seen = std::collections::HashSet::from([root]);
        let mut walked = 0u64;
        while !frontier.is_empty() {
            frontier.sort_by_cached_key(|c| ring_place(c).wrapping_sub(start));
            let level: Vec<(Cid, Bytes)> = stream::iter(frontier.drain(..))
                .map(|cid| {
                    let session = session.clone();
                    async move { Ok::<_, anyhow::Error>((cid, self.get(cid, &session).await?)) }
                })
                .buffer_unordered(parallel.max(1))
                .try_collect()
                .await?;
            for (cid, data) in level {
                walked += 1;
                for link in blockstore::links(&cid, &data)? {
                    if seen.insert(link) {
                        frontier.push(link);
                    }
                }
            }
        }
        Ok(walked)
    }

    /// This node's place on the ring of [`Self::fetch_dag`].
    async fn ring_start(&self) -> u64 {
        let Some(net) = &self.net else { return 0 };
        let me = net.peer_id();
        let mut ids: Vec<libp2p::PeerId> = net
            .peers()
            .await
            .map(|v| v.into_iter().map(|p| p.peer).collect())
            .unwrap_or_default();
        ids.push(me);
        ids.sort();
        ids.dedup();
        let j = ids.iter().position(|p| *p == me).unwrap_or(0) as u64;
        tracing::debug!("fetching a DAG from place {j} of {} on the ring", ids.len());
        (u64::MAX / ids.len() as u64).wrapping_mul(j)
    }
}

/// A block's place on the ring: the first 8 bytes of its digest (uniform for sha2-256).
fn ring_place(cid: &Cid) -> u64 {
    let d = cid.hash().digest();
    let mut b = [0u8; 8];
    let n = d.len().min(8);
    b[..n].copy_from_slice(&d[..n]);
    u64::from_be_bytes(b)
}
