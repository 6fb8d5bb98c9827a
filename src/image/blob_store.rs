//! What image operations need from a node: add blobs, read them back, pin ([`BlobStore`]).
//! The CLI implements it over the daemon's API, the daemon over its block service.

use cid::Cid;
use std::future::Future;
use std::path::Path;

use super::blob_file::{read_stream, write_hashed, WriterCpu};
use crate::unixfs::io::{add_stream, cat, read_range, RangeError};
use crate::unixfs::{AddOptions, Adder};

/// The node an image is pushed to or pulled from. Adds use kubo's `--cid-version=1` layout
/// (256 KiB chunks, raw leaves, balanced DAG), so the CIDs match `ipfs add --cid-version=1`,
/// unless the leaves are planned ([`Adder::with_leaf_ends`]).
pub trait BlobStore: Sync {
    /// Add a file's bytes, unpinned, its leaves ending at `leaf_ends` when given; returns its
    /// CID.
    fn add_file(
        &self,
        path: &Path,
        leaf_ends: Option<Vec<u64>>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> impl Future<Output = anyhow::Result<Cid>> + Send;
    /// Add bytes, unpinned; returns their CID.
    fn add_bytes(&self, bytes: Vec<u8>) -> impl Future<Output = anyhow::Result<Cid>> + Send;
    /// Pin every one of `cids` recursively, all or none (each DAG is fetched first).
    fn pin_all(&self, cids: &[Cid]) -> impl Future<Output = anyhow::Result<()>> + Send;
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

/// The daemon's own node (local store, then the swarm): what mounts resolve images through.
/// Adds use kubo's `--cid-version=1` layout; a pin first fetches the whole DAG.
impl BlobStore for crate::blockservice::BlockService {
    async fn add_file(
        &self,
        path: &Path,
        leaf_ends: Option<Vec<u64>>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<Cid> {
        use anyhow::Context as _;
        let adder = match leaf_ends {
            Some(ends) => Adder::with_leaf_ends(ends)?,
            None => Adder::new(&AddOptions::default())?,
        };
        let (input, _) = read_stream(path).await?;
        let added = add_stream(self, adder, input, true, progress)
            .await
            .with_context(|| format!("adding {}", path.display()))?;
        Ok(added.root)
    }

    async fn add_bytes(&self, bytes: Vec<u8>) -> anyhow::Result<Cid> {
        let input = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
        let adder = Adder::new(&AddOptions::default())?;
        let added = add_stream(self, adder, input, true, &|_| {}).await?;
        Ok(added.root)
    }

    async fn pin_all(&self, cids: &[Cid]) -> anyhow::Result<()> {
        self.fetch_and_pin(cids, 8).await
    }

    async fn cat_bytes(&self, cid: &Cid, offset: u64, len: Option<u64>) -> anyhow::Result<Vec<u8>> {
        let getter = self.getter_for(*cid, offset, len, None);
        read_range(self, getter, *cid, offset, len, None)
            .await
            .map_err(RangeError::into_cause)
    }

    async fn cat_to_file(
        &self,
        cid: &Cid,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<(String, u64)> {
        let s = cat(self, self.session_for(*cid), *cid, 0, None);
        write_hashed(s, path, WriterCpu::Fair, progress).await
    }
}
