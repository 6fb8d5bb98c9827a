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
    /// can be pinned. Returns the number of blocks walked. Each level is walked in an order of
    /// this call's own (a keyed hash of the CIDs): nodes that fetch the same DAG at once ask for
    /// different blocks, and then trade them, instead of all asking its first holder for the
    /// same ones.
    pub async fn fetch_dag(&self, root: Cid, parallel: usize) -> anyhow::Result<u64> {
        use futures::{stream, StreamExt, TryStreamExt};
        use std::hash::BuildHasher as _;
        let order = std::hash::RandomState::new();
        let session = Session::new();
        let mut frontier = vec![root];
        let mut seen = std::collections::HashSet::from([root]);
        let mut walked = 0u64;
        while !frontier.is_empty() {
            frontier.sort_by_cached_key(|c| order.hash_one(c));
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
}
