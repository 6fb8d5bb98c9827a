//! [`SpaceGuard`]: the store's free-space reserve (`store.min_free_mb`). Writes are refused with
//! [`Error::DiskFull`] before they would leave less than the reserve free, counting what sled
//! buffers but has not written yet.

use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Error;

/// Keeps `min_free` bytes free on the store's filesystem: free space is read (statvfs) at most
/// once per [`SPACE_CHECK_BYTES`] written, and on every write while it is low.
#[derive(Debug)]
pub(super) struct SpaceGuard {
    pub(super) path: std::path::PathBuf,
    /// The store's directory, held open: free space is read (fstatvfs) from the filesystem the
    /// store writes to, not from whatever its path names now (a mount lazily detached or covered
    /// while the daemon runs would otherwise report another filesystem's space).
    dir: Arc<std::fs::File>,
    pub(super) min_free: u64,
    written: std::sync::atomic::AtomicU64,
    /// Bytes put since this guard last flushed the database: sled keeps recent writes in
    /// memory, so the free space read lags behind them by up to this much (times sled's
    /// write amplification).
    unflushed: std::sync::atomic::AtomicU64,
    low: AtomicBool,
}

/// Bytes written between two free-space checks (sled writes about 3x this to disk).
const SPACE_CHECK_BYTES: u64 = 4 << 20;
/// What one record costs on disk besides its value, as the guard counts it. Measured here
/// (sled 0.34, 8 MiB segments, flushed, `du`): 300,000 one-byte values took 503 bytes each,
/// 1 KiB values 2,956, 16 KiB 46,347 (2.8×), 256 KiB 393,767 (1.5×). Counting the value alone
/// let a stream of tiny blocks write about 500 times what the guard saw (L3); with this added
/// and the guard's 3–4× margin, every size is counted at or above its measured cost.
pub(super) const RECORD_COST: u64 = 512;

impl SpaceGuard {
    /// A guard with no reserve over the store directory `path`.
    pub(super) fn open(path: &Path) -> Result<Arc<Self>, Error> {
        let dir = std::fs::File::open(path).map_err(|source| Error::FreeSpace {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::new(path, Arc::new(dir), 0))
    }

    /// This guard's directory, keeping `min_free` bytes free.
    pub(super) fn with_min_free(&self, min_free: u64) -> Arc<Self> {
        Self::new(&self.path, self.dir.clone(), min_free)
    }

    fn new(path: &Path, dir: Arc<std::fs::File>, min_free: u64) -> Arc<Self> {
        Arc::new(SpaceGuard {
            path: path.to_owned(),
            dir,
            min_free,
            written: Default::default(),
            unflushed: Default::default(),
            low: AtomicBool::new(false),
        })
    }

    /// `flush` writes sled's buffered data out: called when what is buffered could bring the
    /// disk under the reserve, so that the free space read afterwards is the real one (without
    /// it, a fast `add` could finish in sled's cache before the disk showed it, and its pin's
    /// flush then ran past the reserve).
    pub(super) fn check(
        &self,
        incoming: u64,
        flush: impl Fn() -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.min_free == 0 {
            return Ok(());
        }
        let pending = self.unflushed.fetch_add(incoming, Ordering::Relaxed) + incoming;
        let written = self.written.fetch_add(incoming, Ordering::Relaxed) + incoming;
        if written < SPACE_CHECK_BYTES && !self.low.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.written.store(0, Ordering::Relaxed);
        let mut free = self.free()?;
        let worst = self
            .min_free
            .saturating_add(incoming.saturating_mul(4))
            .saturating_add(pending.saturating_mul(3));
        if free < worst {
            flush()?;
            self.unflushed.store(0, Ordering::Relaxed);
            free = self.free()?;
        }
        // sled may write a block several times over (log, then segment cleaning)
        let low = free < self.min_free.saturating_add(incoming.saturating_mul(4));
        self.low.store(low, Ordering::Relaxed);
        if low {
            return Err(self.full(free));
        }
        Ok(())
    }

    /// Free bytes on the store's filesystem now (for unprivileged writers, as `df` shows).
    pub(super) fn free(&self) -> Result<u64, Error> {
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `st` is valid for writing one statvfs; the descriptor is open for `self`'s life
        let rc = unsafe { libc::fstatvfs(self.dir.as_raw_fd(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(Error::FreeSpace {
                path: self.path.clone(),
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: fstatvfs returned 0, so it filled `st`
        let st = unsafe { st.assume_init() };
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// The error for `free` bytes left, under the reserve.
    pub(super) fn full(&self, free: u64) -> Error {
        Error::DiskFull {
            path: self.path.clone(),
            free_mb: free >> 20,
            min_free_mb: self.min_free >> 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn mount_tmpfs(size: &str, at: &Path) {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs needs root");
    }

    /// Unmounts (lazily) every mount stacked at a path when dropped, also when a test fails.
    struct Unmount<'a>(&'a Path, usize);

    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            for _ in 0..self.1 {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(self.0)
                    .status();
            }
        }
    }

    /// The reserve is kept on the filesystem the store writes to, even once its path names
    /// another one (a mount covered, or lazily detached, while the daemon runs): the free space
    /// read by path would be the other filesystem's, and the store would fill its own.
    #[test]
    fn the_reserve_follows_the_store_not_its_path() {
        let root = tempfile::tempdir().unwrap();
        let mnt = root.path().join("m");
        std::fs::create_dir(&mnt).unwrap();
        mount_tmpfs("32m", &mnt);
        let mut unmount = Unmount(&mnt, 1);
        let dir = mnt.join("blocks");
        std::fs::create_dir(&dir).unwrap();
        let guard = SpaceGuard::open(&dir).unwrap().with_min_free(16 << 20);
        let mut writer = std::fs::File::create(dir.join("pack")).unwrap();
        // cover the store's tmpfs with a large one where the same path exists
        mount_tmpfs("1g", &mnt);
        unmount.1 = 2;
        std::fs::create_dir(&dir).unwrap();
        assert!(fs4::available_space(&dir).unwrap() > 512 << 20);
        // the store goes on writing to its own tmpfs, through its open files
        writer.write_all(&vec![1u8; 20 << 20]).unwrap();
        let free = guard.free().unwrap();
        assert!(
            free < 16 << 20,
            "{free} bytes free: not the store's filesystem"
        );
        let refused = guard.check(SPACE_CHECK_BYTES, || Ok(()));
        assert!(
            matches!(refused, Err(Error::DiskFull { .. })),
            "{refused:?}"
        );
    }
}
