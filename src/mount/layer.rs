//! One layer of a mounted image: where its eStargz blob is, its TOC and its chunk index.
//!
//! An eStargz layer stays in the swarm: its footer and TOC are read by range at mount time (two
//! small UnixFS range reads), the TOC is checked against the manifest's `toc.digest` annotation,
//! and file contents are fetched chunk by chunk later ([`super::reader`]). A layer that is not
//! eStargz cannot be read piecewise, so it is fetched whole at mount time, checked against its
//! digest and the config's DiffID, and converted here into a local eStargz spool file (gzip level
//! 1), which is then read like any other eStargz blob.
//!
//! A layer whose descriptor says where its prefetched files end (`image push --prefetch`,
//! `image optimize`: [`ANNOTATION_PREFETCH_END`]) starts fetching their blocks into the local
//! store as soon as its TOC has arrived, while the TOC is parsed and indexed: the files a
//! start reads first are then on their way before the mount is answered.

use anyhow::{anyhow, bail, Context as _};
use cid::Cid;
use std::path::Path;
use std::sync::Arc;
use tokio_util::task::AbortOnDropHandle;

use crate::blockservice::BlockService;
use crate::image::blob_store::BlobStore;
use crate::image::estargz::build::BuildOptions;
use crate::image::estargz::build::PREFETCH_LANDMARK;
use crate::image::estargz::reader::{self, TocInfo};
use crate::image::estargz::{index, Index, Toc};
use crate::image::oci::{Descriptor, ANNOTATION_PREFETCH_END, ANNOTATION_TOC_DIGEST};
use crate::image::{convert, layout};
use crate::unixfs::io::{read_range_with, RangeError};

/// Pieces of a TOC member in flight between its fetch and its inflater.
const TOC_QUEUE: usize = 16;

/// Where a layer's eStargz bytes are.
#[derive(Debug, Clone)]
pub enum Blob {
    /// In the swarm (and the local store as far as fetched): UnixFS range reads of `cid`.
    Remote,
    /// A local eStargz file converted at mount time from a layer that was not eStargz.
    Local(Arc<std::fs::File>),
}

/// A layer ready to serve reads.
#[derive(Debug)]
pub struct Layer {
    /// The layer's digest in the manifest, as claimed (its identity in logs). A remote blob is
    /// never checked against it, so nothing is keyed by it: see [`Layer::source`].
    pub digest: Arc<str>,
    /// What the chunk cache keys this layer's chunks by: the blob's CID, with `+spool` for a
    /// local spool (whose offsets are those of the converted file, not of the blob).
    pub source: Arc<str>,
    /// The layer blob's CID (its `ipfs://` URL).
    pub cid: Cid,
    pub blob: Blob,
    /// Size of the eStargz blob (the local one for converted layers).
    pub size: u64,
    /// Compressed offset of the TOC member: no chunk's range goes past it.
    pub toc_offset: u64,
    pub index: Index,
    /// Compressed offset of `.prefetch.landmark`: the bytes before it are worth fetching at once.
    pub prefetch_end: Option<u64>,
    /// The early fetch of the blocks before the landmark ([`warm`]), stopped with the layer.
    warming: Option<Arc<AbortOnDropHandle<()>>>,
}

impl Layer {
    /// Whether the blocks before the landmark are being fetched early ([`warm`]): its
    /// prefetch then mostly inflates blocks that are here or on their way, CPU work.
    pub fn warming(&self) -> bool {
        self.warming.is_some()
    }
}

/// Opens layer `desc` (with `diff_id` from the config): [`read`], then [`Read::index`].
/// Returns the layer and its TOC (for the inode table).
pub async fn open(
    blocks: &BlockService,
    desc: &Descriptor,
    diff_id: &str,
    spool: &Path,
    warm: bool,
) -> anyhow::Result<(Layer, Toc)> {
    let read = read(blocks, desc, diff_id, spool, warm).await?;
    // indexing a hostile TOC is CPU work: off the async workers
    tokio::task::spawn_blocking(move || Ok((read.index()?, read.toc)))
        .await
        .context("TOC indexing task failed")?
}

/// A layer whose TOC is read and checked, not yet indexed.
pub struct Read {
    pub toc: Toc,
    digest: Arc<str>,
    cid: Cid,
    blob: Blob,
    size: u64,
    toc_offset: u64,
    what: String,
    warming: Option<Arc<AbortOnDropHandle<()>>>,
}

impl Read {
    /// Indexes the TOC's chunks: the layer ready to serve reads. CPU work proportional to the
    /// TOC: call it off the async workers.
    pub fn index(&self) -> anyhow::Result<Layer> {
        let index = index::index(&self.toc, self.size).context(self.what.clone())?;
        let prefetch_end = index
            .files
            .get(PREFETCH_LANDMARK)
            .and_then(|c| c.first())
            .map(|c| c.offset);
        let source = match self.blob {
            Blob::Remote => Arc::from(self.cid.to_string()),
            Blob::Local(_) => Arc::from(format!("{}+spool", self.cid)),
        };
        Ok(Layer {
            digest: self.digest.clone(),
            source,
            cid: self.cid,
            blob: self.blob.clone(),
            size: self.size,
            toc_offset: self.toc_offset,
            index,
            prefetch_end,
            warming: self.warming.clone(),
        })
    }
}

/// Reads layer `desc`'s TOC (with `diff_id` from the config) and checks it against the
/// manifest; spools a non-eStargz layer in `spool`. With `warm`, starts [`warm`] once the TOC
/// has arrived.
pub async fn read(
    blocks: &BlockService,
    desc: &Descriptor,
    diff_id: &str,
    spool: &Path,
    warm: bool,
) -> anyhow::Result<Read> {
    let cid = desc
        .cid()
        .map_err(|e| anyhow!("layer {}: {e}", desc.digest))?;
    let size =
        u64::try_from(desc.size).map_err(|_| anyhow!("layer {}: negative size", desc.digest))?;
    let what = || format!("layer {} ({cid})", desc.digest);
    let began = std::time::Instant::now();
    let mut warming = None;
    let tail = reader::tail_range(size);
    let tail = blocks
        .cat_bytes(&cid, tail.start, Some(tail.end - tail.start))
        .await
        .with_context(|| format!("fetching the footer of {}", what()))?;
    let (info, blob, size) = match reader::toc_member(size, &tail) {
        Ok(range) => {
            let (start, len) = (range.start, range.end - range.start);
            // inflating and parsing a hostile TOC is CPU work: off the async workers, and
            // inflated while its blocks arrive
            let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(TOC_QUEUE);
            let parsing = tokio::task::spawn_blocking(move || {
                reader::parse_member(start, super::reader::Pieces::new(rx))
            });
            let getter = blocks.getter_for(cid, start, Some(len), None);
            let tx_ref = &tx;
            let sent = |piece| async move { tx_ref.send(piece).await.is_ok() };
            let got = read_range_with(blocks, getter, cid, start, Some(len), None, sent).await;
            drop(tx);
            let got = got
                .map_err(RangeError::into_cause)
                .with_context(|| format!("fetching the TOC of {}", what()));
            // after the TOC, not beside it: bitswap peers answer in the order asked
            if warm && got.is_ok() {
                warming = warm_start(blocks, desc, cid, size);
            }
            let fetched = began.elapsed();
            let parsed = parsing.await.context("TOC parsing task failed")?;
            got?;
            let info = parsed.with_context(what)?;
            tracing::debug!(
                "TOC of {} ({len} bytes): fetched in {fetched:?}, parsed at {:?}",
                what(),
                began.elapsed()
            );
            (info, Blob::Remote, size)
        }
        // a footer that parses but points outside the blob is hostile, not "plain gzip"
        Err(e @ (reader::ReadError::Offset { .. } | reader::ReadError::TooBig(_))) => {
            return Err(anyhow!(e)).with_context(what)
        }
        Err(_) => {
            let (info, file) = spool_layer(blocks, desc, &cid, diff_id, spool)
                .await
                .with_context(|| {
                    format!("{} is not eStargz; fetching and indexing it whole", what())
                })?;
            let size = file.metadata()?.len();
            (info, Blob::Local(Arc::new(file)), size)
        }
    };
    if matches!(blob, Blob::Remote) {
        match desc.annotations.get(ANNOTATION_TOC_DIGEST) {
            Some(want) if *want != info.digest => bail!(
                "{}: its TOC hashes to {}, but the manifest's {ANNOTATION_TOC_DIGEST} says {want}",
                what(),
                info.digest
            ),
            Some(_) => {}
            None => tracing::warn!(
                "{}: no {ANNOTATION_TOC_DIGEST} annotation; the TOC is trusted as found (chunk digests are still checked)",
                what()
            ),
        }
    }
    Ok(Read {
        toc: info.toc,
        digest: Arc::from(desc.digest.as_str()),
        cid,
        blob,
        size,
        toc_offset: info.toc_offset,
        what: what(),
        warming,
    })
}

/// The bytes of a layer of `size` bytes to fetch early: `..end` from `desc`'s
/// [`ANNOTATION_PREFETCH_END`], when it names some within the layer.
pub fn warm_end(desc: &Descriptor, size: u64) -> Option<u64> {
    desc.annotations
        .get(ANNOTATION_PREFETCH_END)?
        .parse::<u64>()
        .ok()
        .filter(|e| (1..=size).contains(e))
}

/// Starts [`warm`] for [`warm_end`]'s bytes, if any.
fn warm_start(
    blocks: &BlockService,
    desc: &Descriptor,
    cid: Cid,
    size: u64,
) -> Option<Arc<AbortOnDropHandle<()>>> {
    let end = warm_end(desc, size)?;
    let task = tokio::spawn(warm(blocks.clone(), cid, end));
    Some(Arc::new(AbortOnDropHandle::new(task)))
}

/// Fetches the blocks holding bytes `..end` of layer `cid` into the local store, in order, a
/// few at a time (`bitswap.readahead_blocks`). Only the blocks move: the chunks are inflated
/// and checked when read, or by the mount's prefetch, which finds them here (or in flight: a
/// block asked for twice is fetched once). The bytes are what the layer's CID names, so a
/// wrong hint costs transfer, never trust.
pub async fn warm(blocks: BlockService, cid: Cid, end: u64) {
    use futures::StreamExt as _;
    let t0 = std::time::Instant::now();
    let s = crate::unixfs::io::cat(&blocks, blocks.session(), cid, 0, Some(end));
    futures::pin_mut!(s);
    while let Some(piece) = s.next().await {
        if let Err(e) = piece {
            tracing::debug!("early fetch of the prefetched files of layer {cid}: {e}");
            return;
        }
    }
    tracing::info!(
        "fetched the prefetched files of layer {cid} early: {end} bytes in {:.0?}",
        t0.elapsed()
    );
}

/// Free space a spooled layer leaves on its filesystem (its converted copy needs room too).
const SPOOL_MARGIN: u64 = 256 << 20;

/// Fetches a whole non-eStargz layer, verifies it and converts it into a local eStargz file.
async fn spool_layer(
    blocks: &BlockService,
    desc: &Descriptor,
    cid: &Cid,
    diff_id: &str,
    spool: &Path,
) -> anyhow::Result<(TocInfo, std::fs::File)> {
    let raw = tempfile::Builder::new()
        .prefix("fetched-")
        .tempfile_in(spool)
        .with_context(|| format!("creating a spool file in {}", spool.display()))?;
    // bounded by the size the manifest claims, which must fit on the spool's filesystem: a
    // DAG that repeats its children could otherwise fill the disk before the digest check (H1)
    let claimed = u64::try_from(desc.size).map_err(|_| anyhow!("negative layer size"))?;
    let free = fs4::available_space(spool)
        .with_context(|| format!("reading the free space of {}", spool.display()))?;
    if claimed.saturating_add(SPOOL_MARGIN) > free {
        bail!(
            "the layer claims {claimed} bytes; {} MiB are free for the spool in {}",
            free >> 20,
            spool.display()
        );
    }
    let s = crate::unixfs::io::cat(blocks, blocks.session_for(*cid), *cid, 0, Some(claimed + 1));
    let (digest, len) = crate::image::blob_file::write_hashed(
        s,
        raw.path(),
        crate::image::blob_file::WriterCpu::Fair,
        &|_| {},
    )
    .await?;
    layout::check(desc, &digest, len)?;
    let (desc, diff_id, spool) = (desc.clone(), diff_id.to_string(), spool.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let opts = BuildOptions {
            level: 1,
            ..BuildOptions::default()
        };
        let converted = convert::prepare(raw.path(), &desc, &diff_id, Some(&opts), false, &spool)?;
        let path = converted.path;
        let result = (|| {
            let info = crate::image::convert::read_toc_file(&path)?;
            let file = std::fs::File::open(&path)?;
            anyhow::Ok((info, file))
        })();
        // the open file keeps the data; nothing is left on disk once the mount goes
        let _ = std::fs::remove_file(&path);
        result
    })
    .await
    .context("layer conversion task failed")?
}
