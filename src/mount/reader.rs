//! File reads of a mounted image: a byte range of a file → the eStargz chunks that cover it →
//! each chunk's compressed range of the layer blob → the UnixFS leaves that hold it (from the
//! local store, else bitswap) → inflate → check `chunkDigest` (once per chunk and node: see
//! [`super::verified`]) → the bytes asked for.
//!
//! Inflated chunks go through the shared [`ChunkCache`], so readers of one chunk share one fetch.
//! A read that ends in the second half of a chunk starts fetching the file's next chunk in the
//! background (sequential readahead). Every chunk fetch is bounded by `read_timeout`; a chunk
//! whose bytes do not match its digest is an error, and those of the blocks it came from that
//! no longer match their CIDs (rot on disk) are dropped so that a later read fetches them again.

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
use crate::image::estargz::Chunk;
use crate::sync::lock;
use crate::unixfs::io::{read_range, RangeError};
use crate::unixfs::BlockGet;

/// Chunks fetched ahead of a sequential reader: two keep both cores inflating.
const READAHEAD_CHUNKS: usize = 2;
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
        }
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
                for next in chunks.iter().skip(last + 1).take(READAHEAD_CHUNKS) {
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
        let result = self
            .cache
            .get_or_fetch(&key, self.fetch_chunk(layer, name, c))
            .await;
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
        // the last chunk's nextOffset is the blob size: stop at the TOC instead
        let start = c.offset;
        let end = c.next_offset.min(layer.toc_offset).max(start + 1);
        let (compressed, fetched) = match &layer.blob {
            Blob::Remote => self.fetch_remote(layer, name, start, end).await?,
            Blob::Local(f) => {
                let f = f.clone();
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
                (buf, Vec::new())
            }
        };
        let (skip, len, want) = (c.inner_offset, c.chunk_size, c.chunk_digest.clone());
        // a chunk of a blob named by its CID that was checked once needs no second check
        let memo = matches!(layer.blob, Blob::Remote).then(|| (self.cache.clone(), key(layer, c)));
        let inflated = tokio::task::spawn_blocking(move || {
            let verified = memo
                .as_ref()
                .and_then(|(cache, k)| Some((cache.verified()?, k)));
            let checked = verified.is_some_and(|(v, k)| v.contains(k));
            let data = inflate_and_check(&compressed, skip, len, want.filter(|_| !checked))?;
            if let Some((v, k)) = verified.filter(|_| !checked) {
                v.insert(k);
            }
            Ok(data)
        })
        .await
        .unwrap_or_else(|e| Err(ChunkError::Task(e.to_string())));
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

    /// The compressed bytes `start..end` of a layer in the swarm, and the blocks they came from.
    async fn fetch_remote(
        &self,
        layer: &Layer,
        name: &str,
        start: u64,
        end: u64,
    ) -> Result<(Vec<u8>, Vec<Cid>), ReadError> {
        let getter = Recording {
            inner: self.session.clone(),
            seen: Arc::default(),
        };
        let read = read_range(
            &self.blocks,
            getter.clone(),
            layer.cid,
            start,
            Some(end - start),
            Some(self.read_timeout),
        )
        .await;
        let err = match read {
            Ok(buf) if buf.len() as u64 == end - start => {
                return Ok((buf, getter.cids()));
            }
            Ok(buf) => ReadError::Fetch {
                cid: layer.cid.to_string(),
                start,
                end,
                reason: format!("the blob ends after {} of {} bytes", buf.len(), end - start),
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

/// Inflates a chunk from the start of its gzip member: skips `skip` bytes, keeps `len`, and
/// checks them against `want` (`sha256:…`) when the TOC has a digest.
pub fn inflate_and_check(
    compressed: &[u8],
    skip: u64,
    len: u64,
    want: Option<Arc<str>>,
) -> Result<Bytes, ChunkError> {
    let inflate = |e: std::io::Error| ChunkError::Inflate(e.to_string());
    let mut gz = flate2::read::MultiGzDecoder::new(compressed);
    std::io::copy(&mut (&mut gz).take(skip), &mut std::io::sink()).map_err(inflate)?;
    let mut data = Vec::with_capacity(len.min(64 << 20) as usize);
    gz.take(len).read_to_end(&mut data).map_err(inflate)?;
    if data.len() as u64 != len {
        return Err(ChunkError::Length {
            got: data.len() as u64,
            want: len,
        });
    }
    if let Some(want) = want {
        let got = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)));
        if *got != *want {
            return Err(ChunkError::Digest {
                got,
                want: want.to_string(),
            });
        }
    }
    Ok(Bytes::from(data))
}

/// A getter that remembers which blocks it returned.
#[derive(Clone)]
struct Recording {
    inner: SessionGetter,
    seen: Arc<Mutex<Vec<Cid>>>,
}

impl Recording {
    fn cids(&self) -> Vec<Cid> {
        lock(&self.seen).clone()
    }
}

impl BlockGet for Recording {
    async fn get(&self, cid: Cid) -> Result<Bytes, crate::blockservice::FetchError> {
        let data = self.inner.get(cid).await?;
        lock(&self.seen).push(cid);
        Ok(data)
    }
}
