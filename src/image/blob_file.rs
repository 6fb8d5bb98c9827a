//! A blob's file: read as a stream for an add ([`read_stream`]: `cidfs add`, `image push`'s
//! blobs through the API or the block service), and written from a stream of pieces as they
//! arrive, on a blocking thread, hashing on the way ([`write_hashed`], [`write_pieces`]:
//! `image pull`'s layers, a spooled layer, `cidfs cat`'s standard output).

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
pub async fn write_pieces<W: std::io::Write + Send + 'static, E: Into<anyhow::Error>>(
    pieces: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
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

/// Pieces queued between a blob's fetch and the thread that hashes and writes it.
const WRITE_AHEAD: usize = 16;
