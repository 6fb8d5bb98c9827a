//! Blocks from anywhere: the local store first, else a bitswap want through the p2p node; a
//! fetched block is verified against its CID and cached (unpinned) in the store. This is the only
//! module that knows both the blockstore and the network.

use anyhow::Context;
use bytes::Bytes;
use cid::Cid;
use cidfs_p2p::{BlockSource, Session};
use std::sync::Arc;
use tokio_util::task::TaskTracker;

use crate::blockstore::{self, Blocks, Cached};

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

    /// Returns once the blocks this getter fetched are in the local store (a read's fetched
    /// blocks are stored behind it: see [`Landing`]).
    fn settle(&self) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
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
    /// Blocks a read fetched that are still on their way to the store (see [`Landing`]).
    landing: Arc<Landing>,
}

/// Blocks a read fetched whose store write is still running. A read ([`SessionGetter`]) hands
/// a fetched block to its caller at once and stores it behind (a block's remote fetch was a
/// fifth slower waiting for the disk, and each 256 KiB of a pull paid two more thread
/// hand-offs); readers find the block here until it is stored, so it is never fetched twice
/// while it lands. The bytes held are bounded ([`LANDING_BYTES`]): past it, a read waits for
/// earlier writes to finish, as before. A whole read (`unixfs::io::cat`) ends once its
/// blocks are stored ([`BlockGet::settle`]); a range read of a mount does not wait. Work that
/// pins what it fetched (`pin add`, the background fetch of a mount) and `block get` wait for
/// each write, so their "fetched" still means "stored". One thread writes them, in the order
/// they came: a thread hand-off per block and writers contending for the pack file cost the
/// receiving node about a tenth of its CPU in a pull.
struct Landing {
    blocks: Arc<std::sync::Mutex<std::collections::HashMap<Cid, Bytes>>>,
    room: Arc<tokio::sync::Semaphore>,
    /// The writer thread's queue, once the first block lands (`None`: it could not start, and
    /// blocking tasks of the runtime write instead).
    writer: std::sync::OnceLock<Option<std::sync::mpsc::Sender<Landed>>>,
}

/// A block on its way to the store.
struct Landed {
    cid: Cid,
    data: Bytes,
    /// Its share of [`Landing::room`]; `None` for a second write of a block already landing
    /// (a read that found it there settles on its own write).
    room: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Counts as a task of the read that fetched it until it is stored ([`BlockGet::settle`]).
    _read: tokio_util::task::task_tracker::TaskTrackerToken,
}

/// Bytes of fetched blocks that may wait for their store write at once.
const LANDING_BYTES: usize = 16 << 20;

impl Default for Landing {
    fn default() -> Self {
        Landing {
            blocks: Default::default(),
            room: Arc::new(tokio::sync::Semaphore::new(LANDING_BYTES)),
            writer: Default::default(),
        }
    }
}

impl Landing {
    fn get(&self, cid: &Cid) -> Option<Bytes> {
        crate::sync::lock(&self.blocks).get(cid).cloned()
    }
}

/// What storing a fetched block takes, apart from the service: the writer thread holds this,
/// not a clone of the service, so it ends when the service goes.
struct Keeper {
    store: Arc<dyn Blocks>,
    net: Option<cidfs_p2p::Client>,
    stored: Arc<tokio::sync::Notify>,
    landing: Arc<std::sync::Mutex<std::collections::HashMap<Cid, Bytes>>>,
}

impl Keeper {
    /// Stores a block fetched from peers and tells who waits for it. The reader gets the bytes
    /// even when the store cannot keep them (full disk, `store.min_free_mb`): they are
    /// verified, and one full disk should not fail every read.
    fn keep(&self, cid: Cid, data: &[u8]) {
        // bitswap computed `cid` from these bytes, and get_block returns only the CID asked for
        match self.store.put_hashed(&cid, data) {
            Ok(()) => {
                if let Some(net) = &self.net {
                    net.stored(&cid);
                }
                self.stored.notify_waiters();
            }
            Err(e) => tracing::warn!(%cid, "serving a fetched block without storing it: {e}"),
        }
    }

    /// Stores a landing block, then lets it go from [`Landing`] (its first write only) and
    /// frees its room; dropping it ends its task in the read's tracker.
    fn store_landed(&self, block: Landed) {
        self.keep(block.cid, &block.data);
        if block.room.is_some() {
            crate::sync::lock(&self.landing).remove(&block.cid);
        }
    }
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
            landing: Arc::default(),
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
        BlockService {
            // blocks a read fetched that are still landing are held here all the same
            landing: self.landing.clone(),
            ..BlockService::new(self.store.clone(), None)
        }
    }

    pub fn net(&self) -> Option<&cidfs_p2p::Client> {
        self.net.as_ref()
    }

    /// The block's bytes, fetched from peers (and stored) when not stored locally. Cancel-safe.
    pub async fn get(&self, cid: Cid, session: &Session) -> Result<Bytes, FetchError> {
        self.get_in(cid, session, None, None).await
    }

    /// The block from the local store alone. Whether it is there is a point lookup in the
    /// store's index, which the store keeps in memory: asked here, not through a blocking
    /// thread, as that hand-off cost a remote fetch more than the lookup. Its bytes are read
    /// here too when they are in the page cache (no wait for the disk), else off the async
    /// workers: the two thread hand-offs per block were a quarter of a `cat` from the store.
    async fn local(&self, cid: Cid) -> Result<Option<Bytes>, FetchError> {
        let store_error = |source| FetchError::Store {
            cid,
            source: Box::new(source),
        };
        match self.store.get_cached(&cid).map_err(store_error)? {
            Cached::Bytes(data) => return Ok(Some(data)),
            Cached::Absent => return Ok(None),
            Cached::Stored => {}
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || Blocks::get(&*store, &cid))
            .await
            .map_err(|e| FetchError::Node {
                cid,
                reason: format!("block store task failed: {e}"),
            })?
            .map_err(store_error)
    }

    /// [`Self::get`] for a read of the DAG under `shared` (see [`Self::session_for`]); with
    /// `behind`, a fetched block is stored behind the caller, as a task of `behind`.
    async fn get_in(
        &self,
        cid: Cid,
        session: &Session,
        shared: Option<Cid>,
        behind: Option<&TaskTracker>,
    ) -> Result<Bytes, FetchError> {
        if let Some(data) = self.landing.get(&cid) {
            // its write is under way for another read; this one waits for (or settles on) its
            // own, which finds the block stored or stores it
            match behind {
                None => self.keep(cid, data.clone()).await,
                Some(behind) => self.land(Landed {
                    cid,
                    data: data.clone(),
                    room: None,
                    _read: behind.token(),
                }),
            }
            return Ok(data);
        }
        if let Some(data) = self.local(cid).await? {
            return Ok(data);
        }
        if let Some(fetch) = shared
            .filter(|root| *root != cid)
            .and_then(|r| self.shared_fetch(r))
        {
            return self.get_shared(cid, &fetch, session, behind).await;
        }
        self.fetch(cid, session, behind).await
    }

    /// Fetches the block from peers and stores it (unpinned): before returning, or with
    /// `behind` after, as a task of `behind` ([`Landing`]).
    async fn fetch(
        &self,
        cid: Cid,
        session: &Session,
        behind: Option<&TaskTracker>,
    ) -> Result<Bytes, FetchError> {
        let Some(net) = &self.net else {
            return Err(FetchError::Missing(cid));
        };
        let data = net
            .get_block(cid, session)
            .await
            .map_err(|e| FetchError::from_net(cid, e))?;
        let Some(behind) = behind else {
            self.keep(cid, data.clone()).await;
            return Ok(data);
        };
        // a block is at most 2 MiB (bitswap's limit), far below the room
        let len = u32::try_from(data.len().clamp(1, LANDING_BYTES)).unwrap_or(u32::MAX);
        let Ok(room) = self.landing.room.clone().acquire_many_owned(len).await else {
            self.keep(cid, data.clone()).await;
            return Ok(data);
        };
        crate::sync::lock(&self.landing.blocks).insert(cid, data.clone());
        self.land(Landed {
            cid,
            data: data.clone(),
            room: Some(room),
            _read: behind.token(),
        });
        Ok(data)
    }

    /// Queues a fetched block for the writer thread (started by the first).
    fn land(&self, block: Landed) {
        let writer = self.landing.writer.get_or_init(|| self.start_writer());
        let block = match writer {
            Some(w) => match w.send(block) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(block)) => block,
            },
            None => block,
        };
        let keeper = self.keeper();
        tokio::task::spawn_blocking(move || keeper.store_landed(block));
    }

    /// The thread that stores landing blocks; it ends when the last clone of this service
    /// goes (it holds none itself).
    fn start_writer(&self) -> Option<std::sync::mpsc::Sender<Landed>> {
        let (tx, rx) = std::sync::mpsc::channel::<Landed>();
        let keeper = self.keeper();
        let started = std::thread::Builder::new()
            .name("cidfs-store-writer".into())
            .spawn(move || {
                for block in rx {
                    keeper.store_landed(block);
                }
            });
        match started {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!("cannot start the store writer thread ({e}); blocking tasks write");
                None
            }
        }
    }

    /// Returns once every block a read fetched so far is stored (before the store's last
    /// flush at shutdown).
    pub async fn landed(&self) {
        let all = u32::try_from(LANDING_BYTES).unwrap_or(u32::MAX);
        let _all = self.landing.room.acquire_many(all).await;
    }

    /// Stores a block fetched from peers ([`Keeper::keep`]) off the async workers.
    async fn keep(&self, cid: Cid, data: Bytes) {
        let keeper = self.keeper();
        if let Err(e) = tokio::task::spawn_blocking(move || keeper.keep(cid, &data)).await {
            tracing::warn!(%cid, "serving a fetched block without storing it: {e}");
        }
    }

    fn keeper(&self) -> Keeper {
        Keeper {
            store: self.store.clone(),
            net: self.net.clone(),
            stored: self.stored.clone(),
            landing: self.landing.blocks.clone(),
        }
    }

    /// A block getter bound to one session, for one read.
    pub fn session(&self) -> SessionGetter {
        SessionGetter {
            service: self.clone(),
            session: Session::new(),
            share: None,
            behind: TaskTracker::new(),
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
            behind: TaskTracker::new(),
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
        behind: Option<&TaskTracker>,
    ) -> Result<Bytes, FetchError> {
        loop {
            let stored = self.stored.notified();
            futures::pin_mut!(stored);
            stored.as_mut().enable();
            if let Some(data) = self.landing.get(&cid) {
                return Ok(data);
            }
            if let Some(data) = self.local(cid).await? {
                return Ok(data);
            }
            if fetch.done.load(std::sync::atomic::Ordering::Acquire) {
                return self.fetch(cid, session, behind).await;
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
    /// The store writes of the blocks this read fetched ([`Landing`]).
    behind: TaskTracker,
}

impl SessionGetter {
    /// Peers that delivered blocks of this session so far (for logs).
    pub fn peers(&self) -> Vec<libp2p::PeerId> {
        self.session.peers()
    }
}

impl BlockGet for SessionGetter {
    async fn get(&self, cid: Cid) -> Result<Bytes, FetchError> {
        self.service
            .get_in(cid, &self.session, self.share, Some(&self.behind))
            .await
    }

    async fn settle(&self) {
        // closed only to wait: tasks spawned meanwhile (by a clone still reading) count too
        self.behind.close();
        self.behind.wait().await;
        self.behind.reopen();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockstore::{MemStore, StoreStat};
    use std::sync::{Condvar, Mutex};

    /// A memory store whose writes wait until the test opens its gate.
    #[derive(Default)]
    struct Gated {
        inner: MemStore,
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl Gated {
        fn open(&self) {
            *crate::sync::lock(&self.open) = true;
            self.opened.notify_all();
        }
    }

    impl Blocks for Gated {
        fn get(&self, cid: &Cid) -> Result<Option<Bytes>, blockstore::Error> {
            self.inner.get(cid)
        }
        fn has(&self, cid: &Cid) -> Result<bool, blockstore::Error> {
            self.inner.has(cid)
        }
        fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), blockstore::Error> {
            let open = crate::sync::lock(&self.open);
            drop(self.opened.wait_while(open, |open| !*open).unwrap());
            self.inner.put(cid, data)
        }
        fn delete(&self, cid: &Cid) -> Result<(), blockstore::Error> {
            self.inner.delete(cid)
        }
        fn cids(&self) -> Result<Vec<Cid>, blockstore::Error> {
            self.inner.cids()
        }
        fn stat(&self) -> Result<StoreStat, blockstore::Error> {
            self.inner.stat()
        }
        fn pin_all(&self, roots: &[Cid]) -> Result<(), blockstore::Error> {
            self.inner.pin_all(roots)
        }
        fn unpin(&self, root: &Cid) -> Result<bool, blockstore::Error> {
            self.inner.unpin(root)
        }
        fn pins(&self) -> Result<Vec<Cid>, blockstore::Error> {
            self.inner.pins()
        }
        fn flush(&self) -> Result<(), blockstore::Error> {
            Ok(())
        }
    }

    /// A read hands fetched blocks over before they are stored, finds them while they land
    /// (no second fetch), and a whole read (`io::cat`) ends only once they are stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_stores_behind_and_a_whole_read_ends_stored() {
        use futures::StreamExt as _;
        let timeout = std::time::Duration::from_secs(10);
        let a_store = Arc::new(MemStore::default());
        let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let opts = crate::unixfs::AddOptions {
            cid_version: 1,
            ..Default::default()
        };
        let root = crate::unixfs::add_bytes(&*a_store, &data, &opts)
            .unwrap()
            .root;
        let (_a, a_task, a_addr) = crate::test_utils::node_with(a_store.clone(), timeout);
        let gated = Arc::new(Gated::default());
        let (b, b_task, _) = crate::test_utils::node_with(gated.clone(), timeout);
        let net = b.net().unwrap().clone();
        net.dial(a_addr).await.unwrap();
        let received = || net.stats().blocks_received;

        // the store takes no write yet: the read still returns, and nothing is stored
        let read = crate::unixfs::io::read_range(&b, b.session(), root, 0, None, Some(timeout));
        assert_eq!(read.await.unwrap(), data);
        let fetched = received();
        assert!(fetched >= 4, "root and three leaves came from A: {fetched}");
        assert_eq!(gated.inner.stat().unwrap().blocks, 0);

        // a second read finds every block where it lands
        let again = crate::unixfs::io::read_range(&b, b.session(), root, 0, None, Some(timeout));
        assert_eq!(again.await.unwrap(), data);
        assert_eq!(received(), fetched, "nothing fetched twice");

        // a whole read ends once its blocks are stored: not before the gate opens
        let getter = b.session();
        let whole = crate::unixfs::io::cat(&b, getter, root, 0, None).collect::<Vec<_>>();
        let mut whole = tokio::spawn(whole);
        let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut whole);
        assert!(
            early.await.is_err(),
            "the whole read waits for its blocks' writes"
        );
        assert_eq!(received(), fetched, "nothing fetched twice");
        let short = std::time::Duration::from_millis(100);
        assert!(
            tokio::time::timeout(short, b.landed()).await.is_err(),
            "the shutdown's wait for landing blocks waits too"
        );
        gated.open();
        let pieces = tokio::time::timeout(timeout, whole).await.unwrap().unwrap();
        let got: Vec<u8> = pieces.into_iter().flat_map(|p| p.unwrap()).collect();
        assert_eq!(got, data);
        assert!(
            gated.inner.stat().unwrap().blocks >= 4,
            "stored once the read ended"
        );
        tokio::time::timeout(timeout, b.landed()).await.unwrap();
        assert!(b.landing.blocks.lock().unwrap().is_empty());
        a_task.abort();
        b_task.abort();
    }
}
