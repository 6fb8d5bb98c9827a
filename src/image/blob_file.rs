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

/// Which CPU time a blob's writer thread runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterCpu {
    /// Scheduled as the equal of every other thread.
    Fair,
    /// Only CPU time nothing else wants (`SCHED_IDLE`, where the thread can be raised back),
    /// while it keeps up: for a writer fed by work that runs on the same CPUs and costs more
    /// than it does (a pull, whose blob the local daemon fetches). Raised back to `Fair` once
    /// its feeder has waited [`STARVED`] for it (a loaded machine).
    Spare,
}

/// How long a feeder waits for room in a lowered writer's queue before it raises the writer
/// back: on an otherwise idle machine a pull's feeder waited at most 25 ms, usually under 2.
const STARVED: std::time::Duration = std::time::Duration::from_millis(50);

/// Writes a stream of pieces to `path` (created or truncated) and syncs it, hashing on the way
/// on a thread that runs on `cpu`: returns the `sha256:` digest and the length written.
pub async fn write_hashed<E: Into<anyhow::Error>>(
    pieces: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
    path: &Path,
    cpu: WriterCpu,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> anyhow::Result<(String, u64)> {
    use anyhow::Context as _;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let shown = path.display().to_string();
    let (digest, n, file) =
        write_pieces(pieces, WriteBehind::new(file), &shown, cpu, progress).await?;
    tokio::task::spawn_blocking(move || file.file.sync_all())
        .await
        .context("blob writer task failed")?
        .with_context(|| format!("syncing {shown}"))?;
    Ok((digest, n))
}

/// Writes a stream of pieces to `out` (named `shown` in errors) on a blocking thread that runs
/// on `cpu`, while the next pieces arrive, without copying them, and hashes them on the way.
/// Returns their `sha256:` digest, the length written and `out`. A failed piece is the error,
/// once what came before it is written.
async fn write_pieces<E: Into<anyhow::Error>, W: std::io::Write + Send + 'static>(
    pieces: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
    out: W,
    shown: &str,
    cpu: WriterCpu,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> anyhow::Result<(String, u64, W)> {
    use anyhow::Context as _;
    use futures::StreamExt as _;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITE_AHEAD);
    let shown = shown.to_string();
    // the writer's thread, once lowered: its feeder raises it when it starves
    let lowered = std::sync::Arc::new(std::sync::OnceLock::new());
    let writer_lowered = lowered.clone();
    let writer = tokio::task::spawn_blocking(move || {
        use sha2::Digest as _;
        let _lowering = (cpu == WriterCpu::Spare)
            .then(crate::sched::lower_this_thread)
            .flatten()
            .inspect(|l| {
                let _ = writer_lowered.set(l.thread());
            });
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
    let mut raised = false;
    while let Some(piece) = pieces.next().await {
        match piece {
            Ok(piece) => {
                progress(piece.len() as u64);
                match room(&tx, lowered.get(), &mut raised).await {
                    Some(room) => room.send(piece),
                    None => break, // the writer failed: its error is the one to report
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

/// Room for the next piece in the writer's queue. When the writer is `lowered` and not yet
/// `raised`, a wait for room past [`STARVED`] raises it first (for good: the machine is busy).
async fn room<'a>(
    tx: &'a tokio::sync::mpsc::Sender<bytes::Bytes>,
    lowered: Option<&crate::sched::Lowered>,
    raised: &mut bool,
) -> Option<tokio::sync::mpsc::Permit<'a, bytes::Bytes>> {
    use tokio::sync::mpsc::error::TrySendError;
    match (tx.try_reserve(), lowered) {
        (Ok(room), _) => Some(room),
        (Err(TrySendError::Closed(())), _) => None,
        (Err(TrySendError::Full(())), Some(l)) if !*raised => {
            if let Ok(room) = tokio::time::timeout(STARVED, tx.reserve()).await {
                return room.ok();
            }
            tracing::debug!("the blob's writer starves on spare CPU time: raised back");
            let _ = l.raise();
            *raised = true;
            tx.reserve().await.ok()
        }
        (Err(TrySendError::Full(())), _) => tx.reserve().await.ok(),
    }
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
    use super::WriterCpu;

    /// A blob written in pieces comes out whole, with its digest, whether its writeback was
    /// started behind the writer (past 8 MiB) or left to the final sync, by a writer on a fair
    /// share or on spare CPU time.
    #[tokio::test]
    async fn a_blob_written_behind_is_whole_and_hashed() {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        let lens = [1000usize, (super::WRITE_BEHIND as usize) * 3 + 12345];
        for (len, cpu) in lens
            .into_iter()
            .flat_map(|l| [(l, WriterCpu::Fair), (l, WriterCpu::Spare)])
        {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = data
                .chunks(1 << 20)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            let path = dir.path().join(format!("blob-{len}-{cpu:?}"));
            let seen = std::sync::atomic::AtomicU64::new(0);
            let (digest, n) =
                super::write_hashed(futures::stream::iter(pieces), &path, cpu, &|k| {
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

    /// A writer on spare CPU time that holds its feeder up past STARVED (here: its output
    /// blocks) is raised back to a fair share while it still writes; a writer on a fair share is
    /// never lowered; and the pool thread goes back as it came.
    #[tokio::test(flavor = "current_thread")]
    async fn a_starved_writer_is_raised_back() {
        /// Output whose first write waits until the writing thread is no longer SCHED_IDLE
        /// (bounded); records the policy it wrote under.
        struct Stalled {
            policies: std::sync::Arc<std::sync::Mutex<Vec<libc::c_int>>>,
        }
        impl std::io::Write for Stalled {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let first = self.policies.lock().unwrap().is_empty();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                // never sent: a bounded wait between looks at this thread's policy
                let _keep = tx;
                while first
                    && crate::sched::this_thread_policy() == libc::SCHED_IDLE
                    && std::time::Instant::now() < deadline
                {
                    let _ = rx.recv_timeout(std::time::Duration::from_millis(2));
                }
                self.policies
                    .lock()
                    .unwrap()
                    .push(crate::sched::this_thread_policy());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for cpu in [WriterCpu::Spare, WriterCpu::Fair] {
            let policies = std::sync::Arc::default();
            let out = Stalled {
                policies: std::sync::Arc::clone(&policies),
            };
            // more pieces than the queue holds: the feeder waits for the stalled writer
            let pieces = (0..super::WRITE_AHEAD * 2)
                .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"piece")));
            let t0 = std::time::Instant::now();
            let (_, n, _) =
                super::write_pieces(futures::stream::iter(pieces), out, "x", cpu, &|_| {})
                    .await
                    .unwrap();
            assert_eq!(n, 5 * 2 * super::WRITE_AHEAD as u64);
            let seen = policies.lock().unwrap().clone();
            assert_eq!(seen.len(), 2 * super::WRITE_AHEAD);
            // every piece was written under the default policy: the first once raised
            assert!(seen.iter().all(|p| *p == libc::SCHED_OTHER), "{seen:?}");
            if cpu == WriterCpu::Spare && crate::sched::may_raise() {
                assert!(t0.elapsed() >= super::STARVED, "raised before it starved");
            }
        }
        // the blocking pool's threads are all back under the default policy
        let back = tokio::task::spawn_blocking(crate::sched::this_thread_policy)
            .await
            .unwrap();
        assert_eq!(back, libc::SCHED_OTHER);
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
