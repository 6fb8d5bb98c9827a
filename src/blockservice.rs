//! Blocks from anywhere: the local store first, else a bitswap want through the p2p node; a
//! fetched block is verified against its CID and cached (unpinned) in the store. This is the only
//! module that knows both the blockstore and the network.

use anyhow::Context;
use bytes::Bytes;
use cid::Cid;
use cidfs_p2p::{BlockSource, Session};
use std::sync::Arc;

use crate::blockstore::{self, Blocks};

/// Why a block could not be had. The edges map each cause on purpose: a block no peer
/// delivered in time is worth asking for again (HTTP 504 / 503, `ETIMEDOUT`, gRPC
/// `Unavailable`); one missing from an offline node, or whose hash this node cannot check, is
/// not.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not in the local store, and no node to ask (offline, or a local-only read).
    #[error("block {0} not found locally (offline)")]
    Missing(Cid),
    /// No peer delivered it within the fetch timeout.
    #[error("block {cid} not found: no peer provided it within {secs}s ({peers} peers connected)")]
    Timeout { cid: Cid, secs: u64, peers: usize },
    /// Its CID uses a hash this node cannot verify, so no peer's bytes could be accepted.
    #[error("CID {0} uses a hash function this node cannot verify (only sha2-256 and identity)")]
    Unverifiable(Cid),
    /// The local store failed to read it.
    #[error("reading block {cid}: {source}")]
    Store {
        cid: Cid,
        #[source]
        source: Box<blockstore::Error>,
    },
    /// The node is shutting down, or a task of it failed.
    #[error("block {cid}: {reason}")]
    Node { cid: Cid, reason: String },
}

impl FetchError {
    /// Whether asking again later may succeed (no peer had it in time).
    pub fn is_timeout(&self) -> bool {
        matches!(self, FetchError::Timeout { .. })
    }

    /// The fetch error somewhere in `e`'s chain of causes, if there is one.
    pub fn find(e: &anyhow::Error) -> Option<&FetchError> {
        e.chain().find_map(|c| c.downcast_ref::<FetchError>())
    }

    fn from_net(cid: Cid, e: cidfs_p2p::Error) -> Self {
        match e {
            cidfs_p2p::Error::NotFound { cid, secs, peers } => {
                FetchError::Timeout { cid, secs, peers }
            }
            cidfs_p2p::Error::UnsupportedHash(cid) => FetchError::Unverifiable(cid),
            other => FetchError::Node {
                cid,
                reason: other.to_string(),
            },
        }
    }
}

/// Something that returns a block's bytes by CID: the local store, or the block service (one
/// read's [`SessionGetter`]). UnixFS reads go through it.
pub trait BlockGet: Clone + Send + Sync + 'static {
    /// The bytes of `cid`, or why they could not be had.
    fn get(&self, cid: Cid) -> impl std::future::Future<Output = Result<Bytes, FetchError>> + Send;
}

/// The local store alone: a missing block is [`FetchError::Missing`].
impl<B: Blocks + ?Sized> BlockGet for Arc<B> {
    fn get(&self, cid: Cid) -> impl std::future::Future<Output = Result<Bytes, FetchError>> + Send {
        let store = Arc::clone(self);
        async move {
            Blocks::get(&*store, &cid)
                .map_err(|source| FetchError::Store {
                    cid,
                    source: Box::new(source),
                })?
                .ok_or(FetchError::Missing(cid))
        }
    }
}

/// Local store plus (optionally) the swarm.
#[derive(Clone)]
pub struct BlockService {
    store: Arc<dyn Blocks>,
    net: Option<cidfs_p2p::Client>,
    /// kubo's GC lock: work that writes blocks and then pins them holds it shared from the
    /// first block to the pin, and garbage collection holds it alone, so it never sweeps the
    /// blocks of an `add` or `pin add` that is not pinned yet (M1).
    gc: Arc<tokio::sync::RwLock<()>>,
    /// Woken whenever a block fetched from a peer is stored (readers waiting on a shared fetch).
    stored: Arc<tokio::sync::Notify>,
    /// Blocks a read keeps in flight (`bitswap.readahead_blocks`).
    readahead: usize,
    /// Shared fetches running now, by root (see [`Self::session_for`]).
    shared: Arc<std::sync::Mutex<std::collections::HashMap<Cid, Arc<SharedFetch>>>>,
}

/// A [`BlockService::fetch_dag`] run in the background for the readers of one root.
struct SharedFetch {
    done: std::sync::atomic::AtomicBool,
}

/// Blocks a read keeps in flight unless [`BlockService::with_readahead`] says otherwise.
pub const DEFAULT_READAHEAD: usize = 32;
/// Blocks fetched at once by a shared fetch (each of its two queues).
const SHARED_PARALLEL: usize = 16;

/// Held by an add or a pin until its root is pinned: garbage collection waits for it.
pub type PinGuard = tokio::sync::OwnedRwLockReadGuard<()>;

impl BlockService {
    pub fn new(store: Arc<dyn Blocks>, net: Option<cidfs_p2p::Client>) -> Self {
        BlockService {
            store,
            net,
            gc: Arc::default(),
            stored: Arc::default(),
            readahead: DEFAULT_READAHEAD,
            shared: Arc::default(),
        }
    }

    /// Keeps `blocks` (at least 1) in flight in every read of a file (UnixFS reads above ask
    /// [`Self::readahead`]).
    pub fn with_readahead(mut self, blocks: usize) -> Self {
        self.readahead = blocks.max(1);
        self
    }

    /// Blocks a read keeps in flight.
    pub fn readahead(&self) -> usize {
        self.readahead
    }

    /// Fetches every DAG under `roots` (`parallel` blocks at a time), then pins them all at
    /// once, all or none, holding off garbage collection from the first block to the pin.
    /// Do not call it while holding a [`PinGuard`].
    pub async fn fetch_and_pin(&self, roots: &[Cid], parallel: usize) -> anyhow::Result<()> {
        let _guard = self.pin_guard().await;
        for root in roots {
            self.fetch_dag(*root, parallel).await?;
        }
        let roots = roots.to_vec();
        self.with_store(move |s| s.pin_all(&roots)).await
    }

    /// Holds off garbage collection until the guard drops (see [`BlockService`]'s `gc`).
    pub async fn pin_guard(&self) -> PinGuard {
        self.gc.clone().read_owned().await
    }

    /// Runs garbage collection (`f`, blocking, off the async workers) once no add or pin is
    /// between its first block and its pin, and keeps them waiting while it runs.
    pub async fn collect<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Blocks) -> Result<T, blockstore::Error> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _alone = self.gc.write().await;
        self.with_store(f).await
    }

    pub fn store(&self) -> &Arc<dyn Blocks> {
        &self.store
    }

    /// The same store without the swarm: a read of a block that is not here fails at once
    /// (to learn what this node holds without fetching anything).
    pub fn local_only(&self) -> BlockService {
        BlockService::new(self.store.clone(), None)
    }

    pub fn net(&self) -> Option<&cidfs_p2p::Client> {
        self.net.as_ref()
    }

    /// The block's bytes, fetched from peers when not stored locally. Cancel-safe.
    pub async fn get(&self, cid: Cid, session: &Session) -> Result<Bytes, FetchError> {
        self.get_in(cid, session, None).await
    }

    /// The block from the local store alone (read off the async workers).
    async fn local(&self, cid: Cid) -> Result<Option<Bytes>, FetchError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || Blocks::get(&*store, &cid))
            .await
            .map_err(|e| FetchError::Node {
                cid,
                reason: format!("block store task failed: {e}"),
            })?
            .map_err(|source| FetchError::Store {
                cid,
                source: Box::new(source),
            })
    }

    /// [`Self::get`] for a read of the DAG under `shared` (see [`Self::session_for`]).
    async fn get_in(
        &self,
        cid: Cid,
        session: &Session,
        shared: Option<Cid>,
    ) -> Result<Bytes, FetchError> {
        if let Some(data) = self.local(cid).await? {
            return Ok(data);
        }
        if let Some(fetch) = shared
            .filter(|root| *root != cid)
            .and_then(|r| self.shared_fetch(r))
        {
            return self.get_shared(cid, &fetch, session).await;
        }
        self.fetch(cid, session).await
    }

    /// Fetches the block from peers and stores it (unpinned).
    async fn fetch(&self, cid: Cid, session: &Session) -> Result<Bytes, FetchError> {
        let Some(net) = &self.net else {
            return Err(FetchError::Missing(cid));
        };
        let data = net
            .get_block(cid, session)
            .await
            .map_err(|e| FetchError::from_net(cid, e))?;
        let store = self.store.clone();
        let stored = data.clone();
        // bitswap computed `cid` from these bytes, and get_block returns only the CID asked for
        let put = tokio::task::spawn_blocking(move || store.put_hashed(&cid, &stored)).await;
        match put {
            Ok(Ok(())) => {
                net.stored(&cid);
                self.stored.notify_waiters();
            }
            // the bytes are verified: the reader gets them even when the store cannot keep
            // them (full disk, store.min_free_mb), so one full disk does not fail every read
            Ok(Err(e)) => tracing::warn!(%cid, "serving a fetched block without storing it: {e}"),
            Err(e) => tracing::warn!(%cid, "serving a fetched block without storing it: {e}"),
        }
        Ok(data)
    }

    /// A block getter bound to one session, for one read.
    pub fn session(&self) -> SessionGetter {
        SessionGetter {
            service: self.clone(),
            session: Session::new(),
            share: None,
        }
    }

    /// A block getter for a whole read of the DAG under `root` that shares the work with the
    /// peers reading it at the same time (`cat`, `image pull`, a blob from the registry
    /// endpoint, a layer's proof; range reads, such as a lazy mount's chunks, fetch only what
    /// they cover and use [`Self::session`]). Alone, it fetches what the read asks for, in
    /// order. Once other peers are seen fetching `root` too, the whole DAG is fetched in the
    /// background by [`Self::fetch_dag`], which divides the work among them so that the first
    /// holder sends each block about once, and the read takes its blocks from the local store
    /// as they land (falling back to fetching them itself if that fetch ends without them).
    pub fn session_for(&self, root: Cid) -> SessionGetter {
        SessionGetter {
            service: self.clone(),
            session: Session::new(),
            share: Some(root),
        }
    }

    /// The getter for a read of `len` bytes from `offset` (to the end without `len`) of the file
    /// under `root`, whose size is `size` when the caller knows it: a whole read is shared
    /// ([`Self::session_for`]), a range fetches only what it covers ([`Self::session`]).
    pub fn getter_for(
        &self,
        root: Cid,
        offset: u64,
        len: Option<u64>,
        size: Option<u64>,
    ) -> SessionGetter {
        let whole = offset == 0
            && match (len, size) {
                (None, _) => true,
                (Some(len), Some(size)) => len >= size,
                (Some(_), None) => false,
            };
        if whole {
            self.session_for(root)
        } else {
            self.session()
        }
    }

    /// The shared fetch of `root`, started now if peers are fetching it too and none runs.
    fn shared_fetch(&self, root: Cid) -> Option<Arc<SharedFetch>> {
        let mut shared = crate::sync::lock(&self.shared);
        if let Some(f) = shared.get(&root) {
            return Some(f.clone());
        }
        if self.net.as_ref()?.wanted_by(&root).is_empty() {
            return None;
        }
        let fetch = Arc::new(SharedFetch {
            done: Default::default(),
        });
        shared.insert(root, fetch.clone());
        let (service, mine) = (self.clone(), fetch.clone());
        tokio::spawn(async move {
            tracing::debug!(%root, "peers are reading this DAG too: fetching it together");
            if let Err(e) = service.fetch_dag(root, SHARED_PARALLEL).await {
                tracing::debug!(%root, "shared fetch ended early: {e:#}");
            }
            mine.done.store(true, std::sync::atomic::Ordering::Release);
            crate::sync::lock(&service.shared).remove(&root);
            service.stored.notify_waiters();
        });
        Some(fetch)
    }

    /// `cid` from the local store once a shared fetch has stored it; fetched here if the shared
    /// fetch ends without it.
    async fn get_shared(
        &self,
        cid: Cid,
        fetch: &SharedFetch,
        session: &Session,
    ) -> Result<Bytes, FetchError> {
        loop {
            let stored = self.stored.notified();
            futures::pin_mut!(stored);
            stored.as_mut().enable();
            if let Some(data) = self.local(cid).await? {
                return Ok(data);
            }
            if fetch.done.load(std::sync::atomic::Ordering::Acquire) {
                return self.fetch(cid, session).await;
            }
            // a bound, not a pace: notifications wake it as blocks land
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stored).await;
        }
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
    /// The root of the DAG read, when the read is shared with peers reading it too.
    share: Option<Cid>,
}

impl SessionGetter {
    /// Peers that delivered blocks of this session so far (for logs).
    pub fn peers(&self) -> Vec<libp2p::PeerId> {
        self.session.peers()
    }
}

impl BlockGet for SessionGetter {
    async fn get(&self, cid: Cid) -> Result<Bytes, FetchError> {
        self.service.get_in(cid, &self.session, self.share).await
    }
}

/// Serves the local store to bitswap.
pub struct StoreSource(pub Arc<dyn Blocks>);

impl BlockSource for StoreSource {
    fn size(&self, cid: &Cid) -> Option<usize> {
        match Blocks::size(&*self.0, cid) {
            Ok(size) => size.map(|s| s as usize),
            Err(e) => {
                tracing::warn!(%cid, "cannot read block to answer a want-have: {e}");
                None
            }
        }
    }

    fn get(&self, cid: &Cid) -> Option<Bytes> {
        // Not re-hashed: every block was checked against its CID when it was stored, and the
        // store refuses bytes that changed on disk since (CRC32); the receiver hashes it anyway.
        match Blocks::get(&*self.0, cid) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(%cid, "cannot read block to serve it: {e}");
                None
            }
        }
    }
}

impl BlockService {
    /// Fetches every block of the DAG under `root` so it can be pinned, sharing the work with
    /// the peers fetching it at the same time ([`cidfs_p2p::fetch::fetch_dag`] plans it; this
    /// node supplies blocks, local first, and their links). Returns the number of blocks walked.
    pub async fn fetch_dag(&self, root: Cid, parallel: usize) -> anyhow::Result<u64> {
        cidfs_p2p::fetch::fetch_dag(self, self.net.as_ref(), root, parallel).await
    }
}

impl cidfs_p2p::fetch::DagSource for BlockService {
    type Error = anyhow::Error;

    async fn get(&self, cid: Cid, session: &Session) -> anyhow::Result<Bytes> {
        Ok(BlockService::get(self, cid, session).await?)
    }

    fn links(&self, cid: &Cid, data: &[u8]) -> anyhow::Result<Vec<Cid>> {
        Ok(blockstore::links(cid, data)?)
    }
}
