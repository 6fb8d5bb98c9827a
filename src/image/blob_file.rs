//! A blob's file: read as a stream for an add ([`read_stream`]: `cidfs add`, `image push`'s
//! blobs through the API or the block service), and written from a stream of pieces as they
//! arrive, on a blocking thread, hashing on the way ([`write_hashed`]: `image pull`'s layers, a
//! spooled layer).

use std::path::Path;

/// Pieces an add reads a file in.
const READ_PIECE: usize = 1 << 20;

/// The file at `path` as a stream of pieces of up to 1 MiB, and its length. A directory is an
/// error.
pub async fn read_stream(
    path: &Path,
) -> anyhow::Result<(tokio_util::io::ReaderStream<tokio::fs::File>, u64)> {
    use anyhow::Context as _;
    let f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let meta = f
        .metadata()
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        anyhow::bail!("{} is a directory, not a file", path.display());
    }
    Ok((
        tokio_util::io::ReaderStream::with_capacity(f, READ_PIECE),
        meta.len(),
    ))
}

/// Writes a stream of pieces to `path` (created or truncated) and syncs it, hashing on the way:
/// returns the `sha256:` digest and the length written.
pub async fn write_hashed<E: Into<anyhow::Error>>(
    pieces: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
    path: &Path,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> anyhow::Result<(String, u64)> {
    use anyhow::Context as _;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let shown = path.display().to_string();
    let (digest, n, file) = write_pieces(pieces, WriteBehind::new(file), &shown, progress).await?;
    tokio::task::spawn_blocking(move || file.file.sync_all())
        .await
        .context("blob writer task failed")?
        .with_context(|| format!("syncing {shown}"))?;
    Ok((digest, n))
}

/// Writes a stream of pieces to `out` (named `shown` in errors) on a blocking thread, while the
/// next pieces arrive, without copying them, and hashes them on the way. Returns their `sha256:`
/// digest, the length written and `out`. A failed piece is the error, once what came before it
/// is written.
async fn write_pieces<E: Into<anyhow::Error>>(
    pieces: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
    out: WriteBehind,
    shown: &str,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> anyhow::Result<(String, u64, WriteBehind)> {
    use anyhow::Context as _;
    use futures::StreamExt as _;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITE_AHEAD);
    let shown = shown.to_string();
    let writer = tokio::task::spawn_blocking(move || {
        use sha2::Digest as _;
        use std::io::Write as _;
        let (mut n, mut hasher, mut out) = (0u64, sha2::Sha256::new(), out);
        while let Some(piece) = rx.blocking_recv() {
            hasher.update(&piece);
            out.write_all(&piece)
                .with_context(|| format!("writing {shown}"))?;
            n += piece.len() as u64;
        }
        out.flush().with_context(|| format!("writing {shown}"))?;
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
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
                fetched = Err(e.into());
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.context("writer task failed")?;
    fetched?;
    written
}

/// A file written front to back whose pages go to the disk behind the writer, a window at a time
/// (`sync_file_range`, which starts the writeback and does not wait for it), so that the final
/// `fsync` finds little left to write: it took about 0.1 s of a 256 MiB pull, with both cores
/// idle, when the kernel started writing only then.
struct WriteBehind {
    file: std::fs::File,
    /// Bytes written, and those whose writeback has been started.
    written: u64,
    started: u64,
}

/// Bytes written before their writeback is started.
const WRITE_BEHIND: u64 = 8 << 20;

impl WriteBehind {
    fn new(file: std::fs::File) -> Self {
        Self {
            file,
            written: 0,
            started: 0,
        }
    }
}

impl std::io::Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITE_BEHIND {
            let (from, len) = (self.started, self.written - self.started);
            // a hint: a file system without it still gets the final fsync
            let _ = crate::blockstore::start_writeback(&self.file, from, len);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Pieces queued between a blob's fetch and the thread that hashes and writes it.
const WRITE_AHEAD: usize = 16;

#[cfg(test)]
mod tests {
    /// A blob written in pieces comes out whole, with its digest, whether its writeback was
    /// started behind the writer (past 8 MiB) or left to the final sync.
    #[tokio::test]
    async fn a_blob_written_behind_is_whole_and_hashed() {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        for len in [1000usize, (super::WRITE_BEHIND as usize) * 3 + 12345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = data
                .chunks(1 << 20)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            let path = dir.path().join(format!("blob-{len}"));
            let seen = std::sync::atomic::AtomicU64::new(0);
            let (digest, n) = super::write_hashed(futures::stream::iter(pieces), &path, &|k| {
                seen.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
            })
            .await
            .unwrap();
            assert_eq!(n, len as u64);
            assert_eq!(seen.into_inner(), len as u64);
            assert_eq!(
                digest,
                format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)))
            );
            assert_eq!(std::fs::read(&path).unwrap(), data);
        }
    }

    #[test]
    fn write_behind_starts_the_writeback_of_each_window() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("w")).unwrap();
        let mut w = super::WriteBehind::new(f);
        let piece = vec![1u8; 3 << 20];
        for _ in 0..5 {
            w.write_all(&piece).unwrap();
        }
        assert_eq!(w.written, 15 << 20);
        // windows of at least 8 MiB: started after the third piece (9 MiB), not yet again
        assert_eq!(w.started, 9 << 20);
        w.flush().unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("w")).unwrap().len(),
            15 << 20
        );
    }
}
