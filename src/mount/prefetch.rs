//! Background work of a fresh mount (and of a layer the additional layer store opens). First
//! the prefetch: every chunk that a layer puts before its `.prefetch.landmark` (the files `image
//! push --prefetch` chose) is fetched into the chunk cache, a few at a time. Then, with
//! `mount.background_fetch`, the whole image: every blob's DAG is fetched and pinned, so this
//! node ends up holding the image and can serve it to its peers. The task is aborted when the
//! mount goes.

use cid::Cid;
use futures::{stream, StreamExt as _};
use tokio_util::task::AbortOnDropHandle;

use super::reader::Reader;
use crate::blockservice::BlockService;
use crate::image::blob_store::BlobStore as _;

/// Chunks prefetched at once, fetched from peers.
pub(super) const PREFETCH_PARALLEL: usize = 16;

/// Chunks prefetched at once: [`PREFETCH_PARALLEL`], or one per core when every layer to
/// prefetch has its blocks fetched early ([`super::layer::warm`]). Then the prefetch is inflating
/// and checking blocks that are here or on their way, and more chunks at once than cores only
/// finish them all later (the workload waits for the first ones, in the order it reads them)
/// and starve the rest of the mount (its inode table, its attach): the Debian image's optimized
/// start took a median 0.24 s with 16 at once and 0.22 s with 2 (five alternating starts each).
pub(super) fn parallel(reader: &Reader) -> usize {
    let warm = reader
        .layers()
        .iter()
        .filter(|l| l.prefetch_end.is_some())
        .all(|l| l.warming());
    match warm {
        true => std::thread::available_parallelism().map_or(2, |n| n.get().min(PREFETCH_PARALLEL)),
        false => PREFETCH_PARALLEL,
    }
}

/// What to do in the background.
pub struct Plan {
    pub prefetch: bool,
    /// Fetch and pin these CIDs (the image's root, index, manifests, configs and layers).
    pub pin: Option<Vec<Cid>>,
}

/// Spawns [`run`]: its handle (dropping it stops the work) and a receiver that hears when its
/// prefetch is over (done, or nothing to do).
pub fn start(
    reader: Reader,
    blocks: BlockService,
    plan: Plan,
) -> (AbortOnDropHandle<()>, tokio::sync::oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(reader, blocks, plan, tx));
    (AbortOnDropHandle::new(task), rx)
}

async fn run(
    reader: Reader,
    blocks: BlockService,
    plan: Plan,
    prefetched: tokio::sync::oneshot::Sender<()>,
) {
    if plan.prefetch {
        let mut wanted = Vec::new();
        for (i, l) in reader.layers().iter().enumerate() {
            let Some(end) = l.prefetch_end else { continue };
            for (name, chunks) in &l.index.files {
                for c in chunks.iter().filter(|c| c.offset < end) {
                    wanted.push((i, name.clone(), c.clone()));
                }
            }
        }
        // in layer order, which is the order the files were first read in (`image optimize`)
        wanted.sort_by_key(|(i, _, c)| (*i, c.offset));
        let n = wanted.len();
        let parallel = parallel(&reader);
        let failed = stream::iter(wanted)
            .map(|(i, name, c)| {
                let reader = reader.clone();
                async move {
                    let layer = &reader.layers()[i];
                    reader.chunk(layer, &name, &c).await
                }
            })
            .buffer_unordered(parallel)
            .filter(|r| std::future::ready(r.is_err()))
            .count()
            .await;
        if n > 0 {
            tracing::info!("prefetched {} of {n} chunks", n - failed);
        }
    }
    let _ = prefetched.send(());
    if let Some(cids) = plan.pin {
        // the whole image or nothing (a failure half-way leaves its blocks to gc)
        if let Err(e) = blocks.pin_all(&cids).await {
            tracing::warn!("background fetch of the image failed: {e:#}");
            return;
        }
        tracing::info!(
            "background fetch done: {} blobs fetched and pinned",
            cids.len()
        );
    }
}
