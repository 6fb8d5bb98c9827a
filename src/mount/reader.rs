//! File reads of a mounted image: a byte range of a file → the eStargz chunks that cover it →
//! each chunk's compressed range of the layer blob → the UnixFS leaves that hold it (from the
//! local store, else bitswap) → inflate → check `chunkDigest` (once per chunk and node: see
//! [`super::verified`]) → the bytes asked for.
//!
//! Inflated chunks go through the shared [`ChunkCache`], so readers of one chunk share one fetch.
//! A read that ends in the second half of a chunk starts fetching the file's next chunks, 8 MiB
//! of them, in the background (sequential readahead). Every chunk fetch is bounded by
//! `read_timeout`; a chunk whose bytes do not match its digest is an error, and those of the
//! blocks it came from that no longer match their CIDs (rot on disk) are dropped so that a later
//! read fetches them again.

use bytes::Bytes;
use cid::Cid;
use sha2::Digest as _;
use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cache::{ChunkCache, Key};
use super::inode::File;
use super::layer::{Blob, Layer};
use crate::blockservice::{BlockService, SessionGetter};
use crate::blockstore::DAG_PB;
use crate::image::estargz::index::MAX_CHUNK_SIZE;
use crate::image::estargz::Chunk;
use crate::metrics::MountStats;
use crate::sync::lock;
use crate::unixfs::io::{read_range_with, RangeError};
use crate::unixfs::BlockGet;
use std::sync::atomic::Ordering::SeqCst;

/// Inflated bytes fetched ahead of a sequential reader, in whole chunks: two chunks of 4 MiB
/// (ctr-remote's size) keep both cores inflating, and smaller chunks keep as many bytes coming.
const READAHEAD_BYTES: u64 = 8 << 20;
/// ... but never more chunks than this at once (a layer of tiny chunks).
const READAHEAD_MAX_CHUNKS: usize = 16;
/// Fetched pieces of a chunk waiting for its inflater (each at most a block).
const INFLATE_QUEUE: usize = 16;
/// A chunk of a blob in the swarm with at most this many compressed bytes, and at most
/// [`SMALL_INFLATED`] inflated ones up to its end, is fetched whole and then inflated on the
/// async worker (tens of µs): a blocking inflater's two thread hand-offs cost more. Most files
/// of an image are such chunks, and a lazy start misses about a hundred of them in a row.
const SMALL_COMPRESSED: u64 = 16 << 10;
/// See [`SMALL_COMPRESSED`].
const SMALL_INFLATED: u64 = 128 << 10;
/// A chunk whose fetch failed this recently fails again at once: the kernel retries a failed
/// readahead page by page, and each retry must not wait out another `read_timeout`.
const FAILURE_MEMORY: Duration = Duration::from_secs(2);

/// Why a read failed. Each maps to an errno in [`ReadError::errno`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("no peer delivered the blocks of layer {cid} (bytes {start}..{end}) within {secs}s")]
    Timeout {
        cid: String,
        start: u64,
        end: u64,
        secs: u64,
    },
    #[error("fetching layer {cid} (bytes {start}..{end}): {reason}")]
    Fetch {
        cid: String,
        start: u64,
        end: u64,
        reason: String,
    },
    #[error("layer {cid}: chunk at {chunk_offset} of {name:?} {reason}")]
    Corrupt {
        cid: String,
        name: String,
        chunk_offset: u64,
        reason: ChunkError,
    },
    #[error("{0:?} is not in its layer's chunk index")]
    NotIndexed(String),
}

/// What is wrong with a chunk's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("does not inflate: {0}")]
    Inflate(String),
    #[error("inflates to {got} bytes, but the TOC says {want}")]
    Length { got: u64, want: u64 },
    #[error("hashes to {got}, but the TOC says {want}")]
    Digest { got: String, want: String },
    #[error("could not be inflated: the inflating task failed: {0}")]
    Task(String),
}

impl ReadError {
    /// The errno a FUSE reply carries.
    /// A read that no peer answered in time is `ETIMEDOUT` (it may work when retried); bytes
    /// that are wrong, or a read that failed otherwise, are `EIO`.
    pub fn errno(&self) -> i32 {
        match self {
            ReadError::Timeout { .. } => libc::ETIMEDOUT,
            ReadError::Fetch { .. } | ReadError::Corrupt { .. } | ReadError::NotIndexed(_) => {
                libc::EIO
            }
        }
    }
}

/// Reads file contents of one mounted image. Cheap to clone.
#[derive(Clone)]
pub struct Reader {
    blocks: BlockService,
    /// One bitswap session for the whole mount: peers that served it are asked first.
    session: SessionGetter,
    layers: Arc<Vec<Layer>>,
    cache: Arc<ChunkCache>,
    read_timeout: Duration,
    /// Chunks whose last fetch failed: when, and why.
    failed: Arc<Mutex<HashMap<Key, (Instant, ReadError)>>>,
    /// The counters of the mount this reader serves, if it has its own.
    stats: Option<Arc<MountStats>>,
    /// The layers' DAG nodes above the leaves, kept once read: every chunk's read walks down
    /// from a layer's root, and these few small blocks would otherwise be read from the store
    /// (a blocking-thread hand-off each) for every chunk.
    nodes: Arc<Nodes>,
}

/// See [`Reader::nodes`]. Bounded in bytes: a hostile DAG may have many interior nodes.
#[derive(Default)]
struct Nodes {
    held: Mutex<(HashMap<Cid, Bytes>, usize)>,
}

/// Bytes of interior nodes a reader keeps (a 1 GB layer's DAG has about 20 KiB of them).
/// Only dag-pb nodes (UnixFS nodes with links) are kept; leaves are raw blocks.
const NODES_BYTES: usize = 4 << 20;

impl Nodes {
    fn get(&self, cid: &Cid) -> Option<Bytes> {
        lock(&self.held).0.get(cid).cloned()
    }

    fn keep(&self, cid: Cid, data: &Bytes) {
        let mut held = lock(&self.held);
        if held.1 + data.len() <= NODES_BYTES && !held.0.contains_key(&cid) {
            held.1 += data.len();
            held.0.insert(cid, data.clone());
        }
    }
}

impl Reader {
    pub fn new(
        blocks: BlockService,
        layers: Arc<Vec<Layer>>,
        cache: Arc<ChunkCache>,
        read_timeout: Duration,
    ) -> Self {
        Reader {
            session: blocks.session(),
            blocks,
            layers,
            cache,
            read_timeout,
            failed: Arc::default(),
            stats: None,
            nodes: Arc::default(),
        }
    }

    /// This reader, counting its chunks into `stats` (its mount's).
    pub fn with_stats(mut self, stats: Arc<MountStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    pub fn layers(&self) -> &Arc<Vec<Layer>> {
        &self.layers
    }

    /// Up to `size` bytes of `file` (whose length is `file_size`) from `offset`. Cancel-safe.
    pub async fn read(
        &self,
        file: &File,
        file_size: u64,
        offset: u64,
        size: u64,
    ) -> Result<Bytes, ReadError> {
        let end = offset.saturating_add(size).min(file_size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let (layer, chunks) = self.chunks_of(file)?;
        let first = chunks.partition_point(|c| c.chunk_offset + c.chunk_size <= offset);
        let mut pieces = Vec::new();
        let mut last = first;
        for (i, c) in chunks.iter().enumerate().skip(first) {
            if c.chunk_offset >= end {
                break;
            }
            last = i;
            let data = self.chunk(layer, &file.name, c).await?;
            let from = (offset.max(c.chunk_offset) - c.chunk_offset) as usize;
            let to = (end.min(c.chunk_offset + c.chunk_size) - c.chunk_offset) as usize;
            pieces.push(data.slice(from.min(data.len())..to.min(data.len())));
        }
        // sequential readahead: a read into the second half of a chunk wants the next ones soon
        if let Some(c) = chunks.get(last) {
            if end >= c.chunk_offset + c.chunk_size / 2 {
                for next in readahead(&chunks[last + 1..]) {
                    self.spawn_readahead(file.layer, file.name.clone(), next.clone());
                }
            }
        }
        Ok(match pieces.len() {
            1 => pieces.swap_remove(0),
            _ => pieces.concat().into(),
        })
    }

    fn chunks_of<'a>(&'a self, file: &File) -> Result<(&'a Layer, &'a [Chunk]), ReadError> {
        let layer = self
            .layers
            .get(file.layer)
            .ok_or_else(|| ReadError::NotIndexed(file.name.clone()))?;
        let chunks = layer
            .index
            .files
            .get(&file.name)
            .ok_or_else(|| ReadError::NotIndexed(file.name.clone()))?;
        Ok((layer, chunks))
    }

    fn spawn_readahead(&self, layer: usize, name: String, chunk: Chunk) {
        let Some(l) = self.layers.get(layer) else {
            return;
        };
        if self.cache.contains(&key(l, &chunk)) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Some(l) = me.layers.get(layer) {
                if let Err(e) = me.chunk(l, &name, &chunk).await {
                    tracing::debug!("readahead of {name:?}: {e}");
                }
            }
        });
    }

    /// The inflated, verified bytes of chunk `c` of file `name` in `layer`.
    pub async fn chunk(&self, layer: &Layer, name: &str, c: &Chunk) -> Result<Bytes, ReadError> {
        let key = key(layer, c);
        if let Some((at, e)) = lock(&self.failed).get(&key) {
            if at.elapsed() < FAILURE_MEMORY {
                return Err(e.clone());
            }
        }
        // whether this call ran the fetch (not another reader's, not the cache)
        let fetched = std::sync::atomic::AtomicBool::new(false);
        let began = Instant::now();
        let result = self
            .cache
            .get_or_fetch(&key, async {
                fetched.store(true, SeqCst);
                self.fetch_chunk(layer, name, c).await
            })
            .await;
        let range = compressed_range(layer, c);
        let fetched = fetched.load(SeqCst).then_some(range.end - range.start);
        if let (Some(s), Ok(_)) = (&self.stats, &result) {
            s.chunk(fetched);
        }
        if let Some(bytes) = fetched {
            tracing::debug!(
                "chunk {name:?}@{} ({bytes} bytes compressed) took {:?}",
                c.chunk_offset,
                began.elapsed()
            );
        }
        let mut failed = lock(&self.failed);
        match &result {
            Ok(_) => {
                failed.remove(&key);
            }
            Err(e) => {
                failed.retain(|_, (at, _)| at.elapsed() < FAILURE_MEMORY);
                failed.insert(key, (Instant::now(), e.clone()));
            }
        }
        result
    }

    async fn fetch_chunk(&self, layer: &Layer, name: &str, c: &Chunk) -> Result<Bytes, ReadError> {
        let std::ops::Range { start, end } = compressed_range(layer, c);
        let (skip, len, want) = (c.inner_offset, c.chunk_size, c.chunk_digest.clone());
        // a chunk of a blob named by its CID that was checked once needs no second check
        let memo = matches!(layer.blob, Blob::Remote).then(|| (self.cache.clone(), key(layer, c)));
        let inflate = move |compressed: Compressed<'_>| {
            let verified = memo
                .as_ref()
                .and_then(|(cache, k)| Some((cache.verified()?, k)));
            let checked = verified.is_some_and(|(v, k)| v.contains(k));
            let want = want.filter(|_| !checked);
            let data = match compressed {
                Compressed::Whole(whole) => inflate_whole_and_check(whole, skip, len, want),
                Compressed::Stream(s) => inflate_and_check(s, skip, len, want),
            }?;
            if let Some((v, k)) = verified.filter(|_| !checked) {
                v.insert(k);
            }
            Ok(data)
        };
        let began = Instant::now();
        let small = end - start <= SMALL_COMPRESSED && skip.saturating_add(len) <= SMALL_INFLATED;
        // before the landmark of a layer fetched early, the blocks are here or on their way:
        // gathering them first costs little, and a whole member inflates faster (libdeflate)
        let warm = layer.warming()
            && layer.prefetch_end.is_some_and(|e| start < e)
            && end - start <= WHOLE_COMPRESSED;
        let (fetched, got, inflated) = match &layer.blob {
            Blob::Remote if small || warm => {
                let mut whole = Vec::with_capacity((end - start) as usize);
                let fetched = self
                    .fetch_remote(layer, name, start, end, |piece| {
                        whole.extend_from_slice(&piece);
                        std::future::ready(true)
                    })
                    .await;
                let got = began.elapsed();
                // a short fetch's error is the cause, not the inflater's
                let inflated = match &fetched {
                    Ok(_) if small => inflate(Compressed::Whole(&whole)),
                    Ok(_) => {
                        tokio::task::spawn_blocking(move || inflate(Compressed::Whole(&whole)))
                            .await
                            .unwrap_or_else(|e| Err(ChunkError::Task(e.to_string())))
                    }
                    Err(_) => Err(ChunkError::Task("not fetched".into())),
                };
                (fetched, got, inflated)
            }
            blob => {
                // the chunk inflates while its blocks arrive: a big chunk costs about the longer
                // of the two, not their sum
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(INFLATE_QUEUE);
                let inflating = tokio::task::spawn_blocking(move || {
                    inflate(Compressed::Stream(&mut Pieces::new(rx)))
                });
                let fetched = match blob {
                    Blob::Remote => {
                        let tx = &tx;
                        let sent = |piece| async move { tx.send(piece).await.is_ok() };
                        self.fetch_remote(layer, name, start, end, sent).await
                    }
                    Blob::Local(f) => read_local(f.clone(), layer, start, end, tx.clone()).await,
                };
                drop(tx);
                let got = began.elapsed();
                let inflated = inflating
                    .await
                    .unwrap_or_else(|e| Err(ChunkError::Task(e.to_string())));
                (fetched, got, inflated)
            }
        };
        tracing::trace!(
            "chunk {name:?}@{}: compressed bytes in {got:?}, inflated and checked at {:?}",
            c.chunk_offset,
            began.elapsed()
        );
        // a fetch that failed leaves the inflater short of bytes: the fetch's error is the cause
        let fetched = fetched?;
        match inflated {
            Ok(data) => Ok(data),
            Err(reason) => {
                self.drop_blocks(layer, &fetched).await;
                let e = ReadError::Corrupt {
                    cid: layer.cid.to_string(),
                    name: name.to_string(),
                    chunk_offset: c.chunk_offset,
                    reason,
                };
                tracing::warn!(
                    "read failed: {e}; the blocks came from [{}] (or this node's store)",
                    peer_list(&self.session.peers())
                );
                Err(e)
            }
        }
    }

    /// Hands the compressed bytes `start..end` of a layer in the swarm to `sink` as they
    /// arrive; returns the blocks they came from. Stops early, and well, when `sink` says no
    /// (its receiver went).
    async fn fetch_remote<F: std::future::Future<Output = bool>>(
        &self,
        layer: &Layer,
        name: &str,
        start: u64,
        end: u64,
        mut sink: impl FnMut(Bytes) -> F,
    ) -> Result<Vec<Cid>, ReadError> {
        let getter = Recording {
            inner: self.session.clone(),
            seen: Arc::default(),
            nodes: self.nodes.clone(),
        };
        let mut sent = 0u64;
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let read = read_range_with(
            &self.blocks,
            getter.clone(),
            layer.cid,
            start,
            Some(end - start),
            Some(self.read_timeout),
            |piece| {
                sent += piece.len() as u64;
                let (taken, stopped) = (sink(piece), &stopped);
                async move {
                    let more = taken.await;
                    stopped.fetch_or(!more, SeqCst);
                    more
                }
            },
        )
        .await;
        let err = match read {
            Ok(()) if sent == end - start || stopped.load(SeqCst) => {
                return Ok(getter.cids());
            }
            Ok(()) => ReadError::Fetch {
                cid: layer.cid.to_string(),
                start,
                end,
                reason: format!("the blob ends after {sent} of {} bytes", end - start),
            },
            Err(e) if e.is_timeout() => ReadError::Timeout {
                cid: layer.cid.to_string(),
                start,
                end,
                secs: self.read_timeout.as_secs(),
            },
            Err(RangeError::Read(e)) => ReadError::Fetch {
                cid: layer.cid.to_string(),
                start,
                end,
                reason: format!("{e:#}"),
            },
            Err(RangeError::Timeout(_)) => ReadError::Timeout {
                cid: layer.cid.to_string(),
                start,
                end,
                secs: self.read_timeout.as_secs(),
            },
        };
        let peers = self.session.peers();
        let connected = match self.blocks.net() {
            Some(n) => n.peers().await.map(|p| p.len()).unwrap_or(0),
            None => 0,
        };
        tracing::warn!(
            "read failed: {name:?} in layer {}: {err}; peers that served this mount: [{}], {connected} peers connected",
            layer.digest,
            peer_list(&peers)
        );
        Err(err)
    }

    /// After a bad chunk: re-hashes the blocks it came from and drops only those whose bytes do
    /// not match their CID (rotten on disk), so that peers resupply them. A block that matches
    /// its CID is not corrupt, whoever links it: the layer's TOC is wrong, and the block may
    /// belong to another image (a hostile DAG can link any public leaf), so it stays.
    async fn drop_blocks(&self, layer: &Layer, cids: &[Cid]) {
        let cids = cids.to_vec();
        let dropped = self
            .blocks
            .with_store(move |s| {
                let mut n = 0;
                for c in &cids {
                    let Some(data) = s.get(c)? else { continue };
                    if crate::blockstore::verify(c, &data).is_err() {
                        s.delete(c)?;
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await;
        match dropped {
            Ok(0) => tracing::warn!(
                "layer {}: its blocks are intact, so its TOC does not describe it (a bad image)",
                layer.cid
            ),
            Ok(n) => tracing::warn!(
                "dropped {n} corrupt blocks (bytes that do not match their CID) of layer {}",
                layer.cid
            ),
            Err(e) => tracing::warn!("checking the blocks of layer {}: {e:#}", layer.cid),
        }
    }
}

/// The chunks after a sequential reader's to fetch ahead: whole chunks from the first, until
/// they hold [`READAHEAD_BYTES`] (at least one, at most [`READAHEAD_MAX_CHUNKS`]).
fn readahead(after: &[Chunk]) -> &[Chunk] {
    let mut bytes = 0u64;
    let n = after
        .iter()
        .take(READAHEAD_MAX_CHUNKS)
        .take_while(|c| {
            let more = bytes < READAHEAD_BYTES;
            bytes = bytes.saturating_add(c.chunk_size);
            more
        })
        .count();
    &after[..n]
}

fn peer_list(peers: &[libp2p::PeerId]) -> String {
    peers
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cache key of chunk `c` of `layer`: see [`Key`] (nothing in it is a claim).
pub fn key(layer: &Layer, c: &Chunk) -> Key {
    Key {
        blob: layer.source.clone(),
        offset: c.offset,
        inner_offset: c.inner_offset,
        len: c.chunk_size,
        digest: c.chunk_digest.clone(),
    }
}

/// The compressed bytes of chunk `c` in its layer's blob (at least one): the last chunk's
/// nextOffset is the blob size, so it stops at the TOC instead.
fn compressed_range(layer: &Layer, c: &Chunk) -> std::ops::Range<u64> {
    c.offset..c.next_offset.min(layer.toc_offset).max(c.offset + 1)
}

/// Sends the bytes `start..end` of a spooled layer to `tx`.
async fn read_local(
    f: Arc<std::fs::File>,
    layer: &Layer,
    start: u64,
    end: u64,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) -> Result<Vec<Cid>, ReadError> {
    let read = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0u8; (end - start) as usize];
        f.read_exact_at(&mut buf, start).map(|()| buf)
    })
    .await;
    let buf = read
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| ReadError::Fetch {
            cid: layer.cid.to_string(),
            start,
            end,
            reason: format!("reading the spooled layer: {e}"),
        })?;
    let _ = tx.send(Bytes::from(buf)).await;
    Ok(Vec::new())
}

/// Pieces still to inflate still arriving, read as one stream on a blocking thread (it ends
/// when the sender goes).
pub(super) struct Pieces {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    piece: Bytes,
}

impl Pieces {
    pub(super) fn new(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Pieces {
        Pieces {
            rx,
            piece: Bytes::new(),
        }
    }
}

impl std::io::Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.piece.is_empty() {
            match self.rx.blocking_recv() {
                Some(p) => self.piece = p,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len());
        buf[..n].copy_from_slice(&self.piece.split_to(n));
        Ok(n)
    }
}

/// The compressed bytes of a chunk, from the start of its gzip member: all of them, or as they
/// arrive.
enum Compressed<'a> {
    Whole(&'a [u8]),
    Stream(&'a mut dyn std::io::Read),
}

/// Largest chunk (compressed) of a layer fetched early that is gathered whole before it is
/// inflated; a bigger one (4 MiB chunks compress to at most about 4 MiB) inflates as it arrives.
const WHOLE_COMPRESSED: u64 = 16 << 20;

/// [`inflate_and_check`] of bytes that are all here: libdeflate (1.4× zlib-rs here) inflates
/// the first gzip member into a buffer of the size its trailer states, when that covers `skip +
/// len` and is at most twice that plus 1 MiB (and [`MAX_CHUNK_SIZE`], the index's bound on a
/// chunk), and checks its CRC32 and length. Where the streaming inflater gives bytes, these
/// are the same (its first bytes); a bigger, smaller or multi-member stream, or data libdeflate
/// refuses, takes the streaming inflater, whose outcome and error stand. libdeflate accepts a
/// few encodings that zlib refuses (an incomplete literal/length code): those bytes passed the
/// member's CRC32 and the chunk's digest like any others.
pub fn inflate_whole_and_check(
    compressed: &[u8],
    skip: u64,
    len: u64,
    want: Option<Arc<str>>,
) -> Result<Bytes, ChunkError> {
    match inflate_whole(compressed, skip, len) {
        Some(data) => check(data, len, want),
        None => inflate_and_check(compressed, skip, len, want),
    }
}

/// The `len` bytes after `skip` of the first gzip member of `compressed`, if libdeflate can
/// give them under [`inflate_whole_and_check`]'s bounds.
fn inflate_whole(compressed: &[u8], skip: u64, len: u64) -> Option<Bytes> {
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<libdeflater::Decompressor> =
            std::cell::RefCell::new(libdeflater::Decompressor::new());
    }
    let need = skip.checked_add(len)?;
    let trailer = compressed
        .len()
        .checked_sub(4)
        .map(|at| &compressed[at..])?;
    let stated = u64::from(u32::from_le_bytes(trailer.try_into().ok()?));
    let bound = need
        .saturating_mul(2)
        .saturating_add(1 << 20)
        .min(MAX_CHUNK_SIZE);
    if stated < need || stated > bound {
        return None;
    }
    let mut out = vec![0u8; stated as usize];
    let n = DECOMPRESSOR
        .with(|d| d.borrow_mut().gzip_decompress(compressed, &mut out))
        .ok()?;
    if (n as u64) < need {
        return None;
    }
    // a member holds its chunk and often more: the tar padding and the headers of the entries
    // after it, or chunks before it. The chunk's bytes stay where they were inflated when the
    // rest is small (the cache then holds up to an eighth more than it counts); else only they
    // are kept, copied
    let (skip, need) = (skip as usize, need as usize);
    if n - len as usize <= len as usize / 8 {
        out.truncate(need);
        Some(Bytes::from(out).slice(skip..))
    } else {
        Some(Bytes::copy_from_slice(&out[skip..need]))
    }
}

/// Inflates a chunk from the start of its gzip member: skips `skip` bytes, keeps `len`, and
/// checks them against `want` (`sha256:…`) when the TOC has a digest.
pub fn inflate_and_check(
    compressed: impl std::io::Read,
    skip: u64,
    len: u64,
    want: Option<Arc<str>>,
) -> Result<Bytes, ChunkError> {
    let inflate = |e: std::io::Error| ChunkError::Inflate(e.to_string());
    let mut gz = flate2::read::MultiGzDecoder::new(compressed);
    std::io::copy(&mut (&mut gz).take(skip), &mut std::io::sink()).map_err(inflate)?;
    let mut gz = gz.take(len);
    if let Some(want) = want
        .as_deref()
        .filter(|_| (HASH_BESIDE..=MAX_CHUNK_SIZE).contains(&len))
    {
        if let Some(checked) = inflate_hashing_beside(&mut gz, len, want) {
            return checked;
        }
    }
    let mut data = Vec::with_capacity(len.min(MAX_CHUNK_SIZE) as usize);
    gz.read_to_end(&mut data).map_err(inflate)?;
    check(data, len, want)
}

/// A chunk at least this big is hashed beside its inflater ([`inflate_hashing_beside`]).
const HASH_BESIDE: u64 = 1 << 20;
/// Inflated bytes handed to the hashing thread at a time.
const HASH_PIECE: usize = 256 << 10;

/// [`check`] of the `len` bytes `inflated` gives, each piece hashed on a thread of its own as
/// soon as it is inflated: the check ends with the inflate, not a SHA-256 pass after it (about
/// 3.4 ms of a 4 MiB chunk here, while the reader waits). The same errors as [`check`]; None,
/// with nothing read, when no thread can be started.
fn inflate_hashing_beside(
    inflated: &mut impl std::io::Read,
    len: u64,
    want: &str,
) -> Option<Result<Bytes, ChunkError>> {
    let mut data = vec![0u8; len as usize];
    let (filled, digest) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel::<&[u8]>();
        let hasher = std::thread::Builder::new()
            .name("cidfs-chunk-hash".into())
            .spawn_scoped(s, move || {
                let mut h = sha2::Sha256::new();
                for piece in rx {
                    h.update(piece);
                }
                h.finalize()
            })
            .ok()?;
        let mut filled = 0usize;
        let mut read = Ok(());
        for piece in data.chunks_mut(HASH_PIECE) {
            let n = match fill(inflated, piece) {
                Ok(n) => n,
                Err(e) => {
                    read = Err(ChunkError::Inflate(e.to_string()));
                    break;
                }
            };
            filled += n;
            let piece: &[u8] = piece;
            // the hasher only stops when this sender is dropped
            let _ = tx.send(&piece[..n]);
            if n < piece.len() {
                break;
            }
        }
        drop(tx);
        let digest = hasher.join();
        Some((read.map(|()| filled), digest))
    })?;
    Some((|| {
        data.truncate(filled?);
        check_len(&data, len)?;
        let digest = digest.map_err(|_| ChunkError::Task("the hashing thread panicked".into()))?;
        check_digest(&digest, want)?;
        Ok(Bytes::from(data))
    })())
}

/// Reads into `buf` until it is full or the input ends; how many bytes came.
fn fill(input: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `data`, if it is `len` bytes that hash to `want` (when there is one).
fn check(data: impl Into<Bytes>, len: u64, want: Option<Arc<str>>) -> Result<Bytes, ChunkError> {
    let data = data.into();
    check_len(&data, len)?;
    if let Some(want) = want {
        check_digest(&sha2::Sha256::digest(&data), &want)?;
    }
    Ok(data)
}

/// A chunk's inflated bytes are as many as its TOC entry says.
fn check_len(data: &[u8], len: u64) -> Result<(), ChunkError> {
    if data.len() as u64 != len {
        return Err(ChunkError::Length {
            got: data.len() as u64,
            want: len,
        });
    }
    Ok(())
}

/// A chunk's SHA-256 is its `chunkDigest`.
fn check_digest(sha256: &[u8], want: &str) -> Result<(), ChunkError> {
    let got = format!("sha256:{}", hex::encode(sha256));
    if got != want {
        return Err(ChunkError::Digest {
            got,
            want: want.to_string(),
        });
    }
    Ok(())
}

/// A getter that remembers which blocks it returned, and takes interior nodes from the
/// reader's [`Nodes`] (blocks it had from the store or the swarm, so checked against their CIDs).
#[derive(Clone)]
struct Recording {
    inner: SessionGetter,
    seen: Arc<Mutex<Vec<Cid>>>,
    nodes: Arc<Nodes>,
}

impl Recording {
    fn cids(&self) -> Vec<Cid> {
        lock(&self.seen).clone()
    }
}

impl BlockGet for Recording {
    async fn get(&self, cid: Cid) -> Result<Bytes, crate::blockservice::FetchError> {
        let node = cid.codec() == DAG_PB;
        let data = match node.then(|| self.nodes.get(&cid)).flatten() {
            Some(data) => data,
            None => {
                let data = self.inner.get(cid).await?;
                if node {
                    self.nodes.keep(cid, &data);
                }
                data
            }
        };
        lock(&self.seen).push(cid);
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write as _;

    /// A sequential reader is fetched ahead by bytes, in whole chunks: two of 4 MiB, eight of
    /// 1 MiB, one of 64 MiB, never more than the chunk cap, and nothing past the file's end.
    #[test]
    fn readahead_covers_the_same_bytes_at_any_chunk_size() {
        let chunks = |size: u64, n: u64| -> Vec<Chunk> {
            (0..n)
                .map(|i| Chunk {
                    offset: i * size,
                    inner_offset: 0,
                    chunk_offset: i * size,
                    chunk_size: size,
                    next_offset: (i + 1) * size,
                    chunk_digest: None,
                })
                .collect()
        };
        assert_eq!(readahead(&chunks(4 << 20, 10)).len(), 2);
        assert_eq!(readahead(&chunks(1 << 20, 10)).len(), 8);
        assert_eq!(
            readahead(&chunks(3 << 20, 10)).len(),
            3,
            "whole chunks, up to 8 MiB"
        );
        assert_eq!(readahead(&chunks(64 << 20, 10)).len(), 1);
        assert_eq!(readahead(&chunks(4 << 10, 100)).len(), READAHEAD_MAX_CHUNKS);
        assert_eq!(
            readahead(&chunks(1 << 20, 3)).len(),
            3,
            "the file ends first"
        );
        assert!(readahead(&[]).is_empty());
    }

    /// The interior-node memo keeps what fits in its byte bound and no more.
    #[test]
    fn interior_nodes_are_kept_within_their_bound() {
        let cid = |i: u8| {
            Cid::new_v1(
                DAG_PB,
                cid::multihash::Multihash::wrap(0x12, &[i; 32]).unwrap(),
            )
        };
        let n = Nodes::default();
        let half = Bytes::from(vec![7u8; NODES_BYTES / 2]);
        n.keep(cid(1), &half);
        n.keep(cid(1), &half);
        n.keep(cid(2), &half);
        n.keep(cid(3), &Bytes::from_static(b"x"));
        assert_eq!(n.get(&cid(1)), Some(half.clone()));
        assert_eq!(n.get(&cid(2)), Some(half));
        assert_eq!(n.get(&cid(3)), None, "over the bound");
    }

    /// A gzip member of `data`, as an eStargz chunk is.
    fn member(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    /// Inflates `compressed` fed in pieces of `piece` bytes from another thread; `cut` stops
    /// the feed after that many bytes, as a fetch that failed half-way.
    fn inflate_in_pieces(
        compressed: &[u8],
        piece: usize,
        cut: Option<usize>,
        skip: u64,
        len: u64,
        want: Option<Arc<str>>,
    ) -> Result<Bytes, ChunkError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(INFLATE_QUEUE);
        let feed = Bytes::copy_from_slice(&compressed[..cut.unwrap_or(compressed.len())]);
        let sender = std::thread::spawn(move || {
            for p in feed.chunks(piece) {
                if tx.blocking_send(Bytes::copy_from_slice(p)).is_err() {
                    break; // the inflater has what it needs
                }
            }
        });
        let out = inflate_and_check(Pieces::new(rx), skip, len, want);
        sender.join().unwrap();
        out
    }

    #[test]
    fn a_chunk_inflates_from_pieces_of_any_size_as_they_come() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = member(&data);
        let digest: Arc<str> = format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(&data[1000..201_000]))
        )
        .into();
        for piece in [1, 7, 4096, 65_536, z.len()] {
            let got =
                inflate_in_pieces(&z, piece, None, 1000, 200_000, Some(digest.clone())).unwrap();
            assert_eq!(&got[..], &data[1000..201_000], "pieces of {piece}");
        }
        // a feed that stops half-way is a short chunk, never a short success
        let short = inflate_in_pieces(&z, 4096, Some(z.len() / 2), 0, 300_000, None);
        assert!(
            matches!(
                short,
                Err(ChunkError::Length { .. } | ChunkError::Inflate(_))
            ),
            "{short:?}"
        );
        // and the digest is still checked
        let wrong: Arc<str> = format!("sha256:{}", "0".repeat(64)).into();
        let bad = inflate_in_pieces(&z, 4096, None, 0, 300_000, Some(wrong));
        assert!(matches!(bad, Err(ChunkError::Digest { .. })), "{bad:?}");
    }

    /// A chunk of 1 MiB or more is hashed beside its inflater: the same bytes and the same
    /// errors as the inline check of smaller chunks, at every piece boundary and past it.
    #[test]
    fn a_big_chunk_hashed_beside_its_inflater_checks_the_same() {
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let one = member(&data);
        let sha = |d: &[u8]| -> Arc<str> {
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(d))).into()
        };
        let piece = HASH_PIECE as u64;
        // (skip, len, digest of): the whole, a piece boundary on either side, an odd range
        for (skip, len) in [
            (0, 3_500_000),
            (0, 4 * piece),
            (100, 4 * piece + 1),
            (7, 1 << 20),
        ] {
            let (s, e) = (skip as usize, (skip + len) as usize);
            let got = inflate_and_check(one.as_slice(), skip, len, Some(sha(&data[s..e])));
            assert_eq!(got.unwrap(), &data[s..e], "skip {skip} len {len}");
        }
        let wrong = inflate_and_check(one.as_slice(), 0, 3_500_000, Some(sha(b"other")));
        assert!(matches!(wrong, Err(ChunkError::Digest { .. })), "{wrong:?}");
        let long = inflate_and_check(one.as_slice(), 0, 3_500_001, Some(sha(&data)));
        assert!(
            matches!(
                long,
                Err(ChunkError::Length {
                    got: 3_500_000,
                    want: 3_500_001
                })
            ),
            "{long:?}"
        );
        let cut = &one[..one.len() / 2];
        let short = inflate_and_check(cut, 0, 3_500_000, Some(sha(&data)));
        let inline = inflate_and_check(cut, 0, 3_500_000, None);
        assert!(short.is_err() && inline.is_err(), "{short:?}");
        assert_eq!(
            std::mem::discriminant(&short.unwrap_err()),
            std::mem::discriminant(&inline.unwrap_err()),
            "a cut member fails the same way"
        );
    }

    /// Whole members take libdeflate where its bounds allow, and every case gives what the
    /// streaming inflater gives.
    #[test]
    fn a_whole_member_inflates_as_the_stream_does() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let one = member(&data);
        let two = [member(&data[..1000]), member(&data[1000..])].concat();
        let mut bigger = one.clone(); // a trailer that states far more than the chunk needs
        let at = bigger.len() - 4;
        bigger[at..].copy_from_slice(&(40u32 << 20).to_le_bytes());
        let mut flipped = one.clone();
        flipped[100] ^= 0x55;
        let sha = |d: &[u8]| -> Arc<str> {
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(d))).into()
        };
        // (stream, skip, len, digest, libdeflate used)
        type Case<'a> = (&'a [u8], u64, u64, Option<Arc<str>>, bool);
        let cases: [Case; 11] = [
            (&one, 0, 300_000, Some(sha(&data)), true),
            // a chunk with a little more of its member around it (tar padding, the next
            // entries' headers): kept where it was inflated; with much more, copied out
            (&one, 0, 299_000, Some(sha(&data[..299_000])), true),
            (&one, 512, 299_000, Some(sha(&data[512..299_512])), true),
            // a file inside a member of several (a group of small files)
            (&one, 1000, 500, Some(sha(&data[1000..1500])), true),
            (&one, 0, 300_000, Some(sha(b"other")), true),
            // past the member's end: too short either way
            (&one, 0, 300_001, None, false),
            // two members: the first does not cover the chunk, the stream inflater reads on
            (&two, 500, 1000, Some(sha(&data[500..1500])), false),
            (&two, 0, 300_000, None, false),
            (&bigger, 0, 1000, None, false),
            (&flipped, 0, 300_000, None, false),
            (&one[..one.len() / 2], 0, 300_000, None, false),
        ];
        for (i, (z, skip, len, want, fast)) in cases.into_iter().enumerate() {
            assert_eq!(inflate_whole(z, skip, len).is_some(), fast, "case {i}");
            let whole = inflate_whole_and_check(z, skip, len, want.clone());
            let stream = inflate_and_check(z, skip, len, want);
            assert_eq!(whole, stream, "case {i}");
        }
        assert!(inflate_whole_and_check(&one, 0, 300_000, None).is_ok());
        // a flipped byte may still inflate (the stream stops before the CRC): the digest holds
        assert!(inflate_whole_and_check(&flipped, 0, 300_000, Some(sha(&data))).is_err());
    }

    /// libdeflate accepts a few encodings zlib refuses: this member (found by the
    /// `chunk_inflate` fuzzer) uses a literal/length code that zlib calls invalid. Its bytes
    /// still match the member's CRC32 and length, and the chunk digest when there is one.
    #[test]
    fn libdeflate_may_accept_what_the_stream_refuses_but_only_checked() {
        let z = hex::decode(concat!(
            "1f8b0800a94a156b00ff6360e7139551d632b4b077f30d894eca2c28af6bed993c6be18af5dbf61e397de9e6",
            "83e7efbe3272f08bc9aa681b593ab8fb85c624671556d4b7f54e99bd68e586edfb8e9eb97cebe18bf7df9838",
            "05c4e554758cad1c3dfcc36253b28b2a1bdafba6ce59bc6ae38efdc7ce5eb9fde8e587efcc5c8212f26aba26",
            "d64e9e01e171a939c5558d1dfdd3e62e59bd69e781e3e7aede79fceae30f166e214905753d531b67afc088f8",
            "b4dc92eaa6ce09d3e72d5db379d7c113e7afdd7df2fad34f561e6129450d7d335b17efa0c884f4bcd29ae6ae",
            "8933e62f5bbb65f7a19317aedf7bfae6f32f365e1169254d03733b579fe0a8c48cfcb2da96ee4933172c5fb7",
            "75cfe153176fdc7ff6f60bc3a8d747bd3eeef551af8f7a7dd4eba35e1ff5faa8d747bd3eeaf551af8f7a7dd4",
            "eba35e1ff5faa8d747bd4e2faf03003b07b25a88130000",
        ))
        .unwrap();
        let stream = inflate_and_check(z.as_slice(), 0, 5000, None);
        assert!(matches!(stream, Err(ChunkError::Inflate(_))), "{stream:?}");
        let whole = inflate_whole_and_check(&z, 0, 5000, None).unwrap();
        let crc = u32::from_le_bytes(z[z.len() - 8..z.len() - 4].try_into().unwrap());
        assert_eq!(libdeflater::crc32(&whole), crc);
        let want: Arc<str> = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&whole))).into();
        assert!(inflate_whole_and_check(&z, 0, 5000, Some(want)).is_ok());
        let wrong: Arc<str> = format!("sha256:{}", "0".repeat(64)).into();
        let bad = inflate_whole_and_check(&z, 0, 5000, Some(wrong));
        assert!(matches!(bad, Err(ChunkError::Digest { .. })), "{bad:?}");
    }
}
