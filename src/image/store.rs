//! What image operations need from a node: add blobs, read them back, pin; and how they report
//! progress. The CLI implements [`BlobStore`] over the daemon's API; tests may use any node.

use cid::Cid;
use std::future::Future;
use std::path::Path;

use crate::unixfs::io::{add_stream, cat, read_range};
use crate::unixfs::AddOptions;

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
    let mut end = digest.find(':').map_or(0, |i| i + 13).min(digest.len());
    // a hostile digest may hold any characters: never cut one in two
    while !digest.is_char_boundary(end) {
        end -= 1;
    }
    &digest[..end]
}

/// The daemon's own node (local store, then the swarm): what mounts resolve images through.
/// Adds use kubo's `--cid-version=1` layout; a pin first fetches the whole DAG.
impl BlobStore for crate::blockservice::BlockService {
    async fn add_file(
        &self,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<Cid> {
        use anyhow::Context as _;
        let f = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let input = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20);
        let added = add_stream(self, &AddOptions::default(), input, true, progress)
            .await
            .with_context(|| format!("adding {}", path.display()))?;
        Ok(added.root)
    }

    async fn add_bytes(&self, bytes: Vec<u8>) -> anyhow::Result<Cid> {
        let input = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
        let added = add_stream(self, &AddOptions::default(), input, true, &|_| {}).await?;
        Ok(added.root)
    }

    async fn pin_all(&self, cids: &[Cid]) -> anyhow::Result<()> {
        self.fetch_and_pin(cids, 8).await
    }

    async fn cat_bytes(&self, cid: &Cid, offset: u64, len: Option<u64>) -> anyhow::Result<Vec<u8>> {
        let getter = self.getter_for(*cid, offset, len, None);
        Ok(read_range(self, getter, *cid, offset, len, None).await?)
    }

    async fn cat_to_file(
        &self,
        cid: &Cid,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<(String, u64)> {
        let s = cat(self, self.session_for(*cid), *cid, 0, None);
        write_hashed(s, path, progress).await
    }
}

/// Writes a stream of pieces to `path` (created or truncated) and syncs it, hashing on the way:
/// returns the `sha256:` digest and the length written.
pub async fn write_hashed(
    pieces: impl futures::Stream<Item = anyhow::Result<bytes::Bytes>>,
    path: &Path,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> anyhow::Result<(String, u64)> {
    use anyhow::Context as _;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let shown = path.display().to_string();
    let (digest, n, file) = write_pieces(pieces, file, true, &shown, progress).await?;
    tokio::task::spawn_blocking(move || file.sync_all())
        .await
        .context("blob writer task failed")?
        .with_context(|| format!("syncing {shown}"))?;
    Ok((digest.unwrap_or_default(), n))
}

/// Writes a stream of pieces to `out` (named `shown` in errors) on a blocking thread, while the
/// next pieces arrive, without copying them; with `hash`, also returns their `sha256:` digest.
/// Returns the length written and `out`. A failed piece is the error, once what came before it
/// is written.
pub async fn write_pieces<W: std::io::Write + Send + 'static>(
    pieces: impl futures::Stream<Item = anyhow::Result<bytes::Bytes>>,
    out: W,
    hash: bool,
    shown: &str,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> anyhow::Result<(Option<String>, u64, W)> {
    use anyhow::Context as _;
    use futures::StreamExt as _;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITE_AHEAD);
    let shown = shown.to_string();
    let writer = tokio::task::spawn_blocking(move || {
        use sha2::Digest as _;
        let (mut n, mut hasher, mut out) = (0u64, hash.then(sha2::Sha256::new), out);
        while let Some(piece) = rx.blocking_recv() {
            if let Some(h) = &mut hasher {
                h.update(&piece);
            }
            out.write_all(&piece)
                .with_context(|| format!("writing {shown}"))?;
            n += piece.len() as u64;
        }
        out.flush().with_context(|| format!("writing {shown}"))?;
        let digest = hasher.map(|h| format!("sha256:{}", hex::encode(h.finalize())));
        anyhow::Ok((digest, n, out))
    });
    futures::pin_mut!(pieces);
    let mut fetched = Ok(());
    while let Some(piece) = pieces.next().await {
        match piece {
            Ok(piece) => {
                progress(piece.len() as u64);
                if tx.send(piece).await.is_err() {
                    break; // the writer failed: its error is the one to report
                }
            }
            Err(e) => {
                fetched = Err(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.context("writer task failed")?;
    fetched?;
    written
}

/// Pieces queued between a blob's fetch and the thread that hashes and writes it.
const WRITE_AHEAD: usize = 16;

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn short_never_splits_a_character() {
        assert_eq!(short("sha256:0123456789abcdef"), "sha256:0123456789ab");
        assert_eq!(short("sha256:abc"), "sha256:abc");
        assert_eq!(short("nodigest"), "");
        // a hostile digest with a multi-byte character across the cut (a panic once)
        let hostile = format!("sha256:{}\u{20ac}x", "0".repeat(11));
        assert_eq!(short(&hostile), "sha256:00000000000");
    }
}
