//! What image operations need from a node: add blobs, read them back, pin; and how they report
//! progress. The CLI implements [`BlobStore`] over the daemon's API; tests may use any node.

use cid::Cid;
use std::future::Future;
use std::path::Path;

/// The node an image is pushed to or pulled from. Adds use kubo's `--cid-version=1` layout
/// (256 KiB chunks, raw leaves, balanced DAG), so the CIDs match `ipfs add --cid-version=1`.
pub trait BlobStore: Sync {
    /// Add a file's bytes, unpinned; returns its CID.
    fn add_file(
        &self,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> impl Future<Output = anyhow::Result<Cid>> + Send;
    /// Add bytes, unpinned; returns their CID.
    fn add_bytes(&self, bytes: Vec<u8>) -> impl Future<Output = anyhow::Result<Cid>> + Send;
    /// Pin `cid` recursively.
    fn pin(&self, cid: &Cid) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The bytes of `cid` from `offset`, at most `len`; fails if the content is larger than
    /// `limit` (protects against a hostile root pointing at a huge file).
    fn cat_bytes(
        &self,
        cid: &Cid,
        offset: u64,
        len: Option<u64>,
    ) -> impl Future<Output = anyhow::Result<Vec<u8>>> + Send;
    /// Stream the content of `cid` into `path` (created or truncated); `progress(n)` per piece.
    /// Returns the `sha256:` digest and the length of what was written, hashed on the way, so
    /// the caller can verify the blob without reading the file back.
    fn cat_to_file(
        &self,
        cid: &Cid,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> impl Future<Output = anyhow::Result<(String, u64)>> + Send;
}

/// Progress of the blobs of one push or pull (a bar each on a terminal, nothing otherwise).
pub trait Reporter: Send + Sync {
    /// A blob of `total` bytes starts; `label` names it (e.g. "layer 2/5 sha256:ab12…").
    fn start(&self, label: &str, total: u64) -> Box<dyn Bar>;
}

pub trait Bar: Send + Sync {
    fn inc(&self, n: u64);
    fn set_message(&self, msg: &str);
    fn finish(&self);
}

/// Reports nothing.
pub struct Silent;

struct NoBar;

impl Bar for NoBar {
    fn inc(&self, _: u64) {}
    fn set_message(&self, _: &str) {}
    fn finish(&self) {}
}

impl Reporter for Silent {
    fn start(&self, _: &str, _: u64) -> Box<dyn Bar> {
        Box::new(NoBar)
    }
}

/// `sha256:0123456789ab` — a digest shortened for labels.
pub fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(0, |i| i + 13).min(digest.len());
    &digest[..end]
}
