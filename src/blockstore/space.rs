//! [`SpaceGuard`]: the store's free-space reserve (`store.min_free_mb`). Writes are refused with
//! [`Error::DiskFull`] before they would leave less than the reserve free, counting what sled
//! buffers but has not written yet.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Error;

/// Keeps `min_free` bytes free on the store's filesystem: free space is read (statvfs) at most
/// once per [`SPACE_CHECK_BYTES`] written, and on every write while it is low.
#[derive(Debug)]
pub(super) struct SpaceGuard {
    pub(super) path: std::path::PathBuf,
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
    pub(super) fn new(path: &Path, min_free: u64) -> Arc<Self> {
        Arc::new(SpaceGuard {
            path: path.to_owned(),
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

    /// Free bytes on the store's filesystem now.
    pub(super) fn free(&self) -> Result<u64, Error> {
        fs4::available_space(&self.path).map_err(|source| Error::FreeSpace {
            path: self.path.clone(),
            source,
        })
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
