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
/// Most bytes [`BlockService::read_range`] reserves before they arrive.
const MAX_PREALLOC: u64 = 8 << 20;

/// Why [`BlockService::read_range`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error("timed out after {} s", .0.as_secs())]
    Timeout(std::time::Duration),
    #[error("{0:#}")]
    Fetch(anyhow::Error),
}

/// Bytes [`BlockService::add_stream`] hashes and stores at a time.
pub const ADD_BATCH: usize = 4 << 20;

/// What [`BlockService::add_stream`] added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub root: Cid,
    /// File bytes.
    pub size: u64,
    /// Sum of the lengths of the file's blocks (kubo's `Size`).
    pub cumulative_size: u64,
}

/// Why [`BlockService::add_stream`] failed: the caller's input, its options, or this node.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("reading the input: {0:#}")]
    Input(anyhow::Error),
    #[error("add options: {0:#}")]
    Options(anyhow::Error),
    #[error("storing the blocks: {0:#}")]
    Store(anyhow::Error),
}

/// Stores blocks an adder just hashed (`None`: only hashing).
fn put_all(store: Option<&dyn Blocks>, blocks: &[(Cid, Vec<u8>)]) -> anyhow::Result<()> {
    if let Some(store) = store {
        for (cid, data) in blocks {
            store
                .put_hashed(cid, data)
                .with_context(|| format!("storing block {cid}"))?;
        }
    }
    Ok(())
}

/// An add's adder: in hand, or inside the blocking task that hashes and stores a batch.
enum Held {
    Here(Box<crate::unixfs::Adder>),
    Busy(tokio::task::JoinHandle<anyhow::Result<crate::unixfs::Adder>>),
}

impl Held {
    /// The adder, once its batch is done.
    async fn take(self) -> Result<crate::unixfs::Adder, AddError> {
        match self {
            Held::Here(adder) => Ok(*adder),
            Held::Busy(task) => task
                .await
                .map_err(|e| AddError::Store(e.into()))?
                .map_err(AddError::Store),
        }
    }
}

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

    /// Keeps `blocks` (at least 1) in flight in every read ([`Self::cat`], [`Self::read_range`]).
    pub fn with_readahead(mut self, blocks: usize) -> Self {
        self.readahead = blocks.max(1);
        self
    }

    /// Blocks a read keeps in flight.
    pub fn readahead(&self) -> usize {
        self.readahead
    }

    /// Bytes `offset..offset + len` (to the end without `len`) of the file under `root`, read
    /// through `getter` as a stream, with the configured readahead.
    pub fn cat<G: BlockGet>(
        &self,
        getter: G,
        root: Cid,
        offset: u64,
        len: Option<u64>,
    ) -> impl futures::Stream<Item = anyhow::Result<Bytes>> + Send + 'static {
        crate::unixfs::cat(getter, root, offset, len, self.readahead)
    }

    /// [`Self::cat`] into one buffer, within `timeout` when given. The buffer grows as bytes
    /// arrive: `len` comes from an index, not trusted to size it.
    pub async fn read_range<G: BlockGet>(
        &self,
        getter: G,
        root: Cid,
        offset: u64,
        len: Option<u64>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Vec<u8>, RangeError> {
        use futures::StreamExt as _;
        let read = async {
            let s = self.cat(getter, root, offset, len);
            futures::pin_mut!(s);
            let mut out = Vec::with_capacity(len.unwrap_or(0).min(MAX_PREALLOC) as usize);
            while let Some(piece) = s.next().await {
                out.extend_from_slice(&piece.map_err(RangeError::Fetch)?);
            }
            Ok(out)
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .map_err(|_| RangeError::Timeout(t))?,
            None => read.await,
        }
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

    pub fn net(&self) -> Option<&cidfs_p2p::Client> {
        self.net.as_ref()
    }

    /// The block's bytes, fetched from peers when not stored locally. Cancel-safe.
    pub async fn get(&self, cid: Cid, session: &Session) -> anyhow::Result<Bytes> {
        self.get_in(cid, session, None).await
    }

    /// The block from the local store alone (read off the async workers).
    async fn local(&self, cid: Cid) -> anyhow::Result<Option<Bytes>> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || Blocks::get(&*store, &cid))
            .await
            .context("block store task failed")?
            .with_context(|| format!("reading block {cid}"))
    }

    /// [`Self::get`] for a read of the DAG under `shared` (see [`Self::session_for`]).
    async fn get_in(
        &self,
        cid: Cid,
        session: &Session,
        shared: Option<Cid>,
    ) -> anyhow::Result<Bytes> {
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
    async fn fetch(&self, cid: Cid, session: &Session) -> anyhow::Result<Bytes> {
        let Some(net) = &self.net else {
            anyhow::bail!("block {cid} not found locally (offline)");
        };
        let data = net.get_block(cid, session).await?;
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
    ) -> anyhow::Result<Bytes> {
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

    /// Adds a file, read from `input` in pieces of any size, as a UnixFS DAG (`opts` give the
    /// layout) and returns its root, size and cumulative size; `store = false` only computes
    /// them. The one add path of `add`, `image push` and `add --only-hash`.
    ///
    /// Input is taken in [`ADD_BATCH`] batches; each is hashed and stored on a blocking thread
    /// while the next one is read, and its blocks go to the store as they were hashed
    /// ([`Blocks::put_hashed`]). `progress` is called with the bytes of each piece read.
    pub async fn add_stream<E: Into<anyhow::Error>>(
        &self,
        opts: &crate::unixfs::AddOptions,
        input: impl futures::Stream<Item = Result<Bytes, E>>,
        store: bool,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Added, AddError> {
        use futures::StreamExt as _;
        let adder = crate::unixfs::Adder::new(opts).map_err(|e| AddError::Options(e.into()))?;
        let blocks = store.then(|| self.store.clone());
        let step = |mut adder: crate::unixfs::Adder, buf: Vec<u8>| {
            let blocks = blocks.clone();
            tokio::task::spawn_blocking(move || {
                let made = adder.push(&buf);
                put_all(blocks.as_deref(), &made)?;
                anyhow::Ok(adder)
            })
        };
        futures::pin_mut!(input);
        let mut held = Held::Here(Box::new(adder));
        let mut buf = Vec::with_capacity(ADD_BATCH);
        loop {
            let piece = input
                .next()
                .await
                .transpose()
                .map_err(|e| AddError::Input(e.into()))?;
            if let Some(piece) = &piece {
                progress(piece.len() as u64);
                buf.extend_from_slice(piece);
            }
            if buf.len() >= ADD_BATCH || (piece.is_none() && !buf.is_empty()) {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(ADD_BATCH));
                held = Held::Busy(step(held.take().await?, full));
            }
            if piece.is_none() {
                break;
            }
        }
        let adder = held.take().await?;
        let finish = tokio::task::spawn_blocking(move || {
            let size = adder.bytes_in();
            let mut cumulative_size = adder.cumulative_size();
            let (root, rest) = adder.finish();
            cumulative_size += rest.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
            put_all(blocks.as_deref(), &rest)?;
            anyhow::Ok(Added {
                root,
                size,
                cumulative_size,
            })
        });
        finish
            .await
            .map_err(|e| AddError::Store(e.into()))?
            .map_err(AddError::Store)
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
    async fn get(&self, cid: Cid) -> anyhow::Result<Bytes> {
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
        BlockService::get(self, cid, session).await
    }

    fn links(&self, cid: &Cid, data: &[u8]) -> anyhow::Result<Vec<Cid>> {
        Ok(blockstore::links(cid, data)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockstore::MemStore;
    use crate::unixfs::{add_bytes, AddOptions};

    /// The one add path gives the CIDs of the reference adder however its input is cut, stores
    /// every block with `store` and none without.
    #[tokio::test]
    async fn add_stream_matches_the_reference_adder_in_any_pieces() {
        let data: Vec<u8> = (0..(ADD_BATCH * 2 + 12_345) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let opts = AddOptions::default();
        let reference = add_bytes(&MemStore::default(), &data, &opts).unwrap();
        for piece in [1 << 20, 65_537, data.len()] {
            let store = Arc::new(MemStore::default());
            let service = BlockService::new(store.clone(), None);
            let input = futures::stream::iter(
                data.chunks(piece)
                    .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            );
            let seen = std::sync::atomic::AtomicU64::new(0);
            let added = service
                .add_stream(&opts, input, true, &|n| {
                    seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                })
                .await
                .unwrap();
            assert_eq!(added.root, reference.root, "pieces of {piece}");
            assert_eq!(added.size, data.len() as u64);
            assert_eq!(added.cumulative_size, reference.cumulative_size);
            assert_eq!(seen.into_inner(), data.len() as u64);
            assert_eq!(store.stat().unwrap().blocks as usize, reference.blocks);
        }
        let store = Arc::new(MemStore::default());
        let service = BlockService::new(store.clone(), None);
        let input = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(data))]);
        let added = service
            .add_stream(&opts, input, false, &|_| {})
            .await
            .unwrap();
        assert_eq!(added.root, reference.root);
        assert_eq!(
            store.stat().unwrap().blocks,
            0,
            "only hashing stored blocks"
        );
        let failing = futures::stream::iter([Err::<Bytes, _>(std::io::Error::other("cut"))]);
        let err = service
            .add_stream(&opts, failing, true, &|_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, AddError::Input(_)), "{err}");
    }
}
