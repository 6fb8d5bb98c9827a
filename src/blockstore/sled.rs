//! [`SledStore`]: the on-disk [`Blocks`] implementation.
//!
//! One sled database with three trees:
//! - `blocks`: CID bytes → block bytes;
//! - `pins`: CID bytes → empty (recursive pin roots);
//! - `meta`: `stat` → 16 bytes (block count, total bytes; both u64 big-endian).
//!
//! `put` inserts with a compare-and-swap (so concurrent puts of one block count it once) and then
//! bumps the counters with sled's atomic `update_and_fetch`: no transaction, so concurrent puts
//! of different blocks never conflict. `meta/clean` is 1 only after a [`Blocks::flush`] with no
//! write since; a store opened after a crash (or without counters) is recounted once.

use std::path::Path;

use ::sled::{Db, Tree};
use bytes::Bytes;
use cid::Cid;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{verify, Blocks, Error, StoreStat};

const BLOCKS_TREE: &str = "blocks";
const PINS_TREE: &str = "pins";
const META_TREE: &str = "meta";
const STAT_KEY: &[u8] = b"stat";
const CLEAN_KEY: &[u8] = b"clean";
/// sled stores values over segment_size / 4 as separate files; 8 MiB segments keep every block
/// (at most 2 MiB) inside the log, which halves the bytes written per block.
const SEGMENT_SIZE: usize = 8 << 20;

/// A sled-backed block store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: Db,
    blocks: Tree,
    pins: Tree,
    meta: Tree,
    /// Whether `meta/clean` has been cleared since the last flush.
    dirty: Arc<AtomicBool>,
    space: Arc<SpaceGuard>,
}

/// Keeps `min_free` bytes free on the store's filesystem: free space is read (statvfs) at most
/// once per [`SPACE_CHECK_BYTES`] written, and on every write while it is low.
#[derive(Debug)]
struct SpaceGuard {
    path: std::path::PathBuf,
    min_free: u64,
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
const RECORD_COST: u64 = 512;

impl SpaceGuard {
    fn new(path: &Path, min_free: u64) -> Arc<Self> {
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
    fn check(&self, incoming: u64, flush: impl Fn() -> Result<(), Error>) -> Result<(), Error> {
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
    fn free(&self) -> Result<u64, Error> {
        fs4::available_space(&self.path).map_err(|source| Error::FreeSpace {
            path: self.path.clone(),
            source,
        })
    }

    /// The error for `free` bytes left, under the reserve.
    fn full(&self, free: u64) -> Error {
        Error::DiskFull {
            path: self.path.clone(),
            free_mb: free >> 20,
            min_free_mb: self.min_free >> 20,
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`, with a page cache of at most
    /// `cache_capacity_bytes`.
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<Self, Error> {
        let db = ::sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .mode(::sled::Mode::HighThroughput)
            .segment_size(SEGMENT_SIZE)
            .open()
            .map_err(|source| Error::Open {
                path: path.to_owned(),
                source,
            })?;
        let store = SledStore {
            blocks: db.open_tree(BLOCKS_TREE)?,
            pins: db.open_tree(PINS_TREE)?,
            meta: db.open_tree(META_TREE)?,
            db,
            dirty: Arc::new(AtomicBool::new(false)),
            space: SpaceGuard::new(path, 0),
        };
        let clean = store
            .meta
            .get(CLEAN_KEY)?
            .is_some_and(|v| v.as_ref() == [1]);
        if !clean || store.meta.get(STAT_KEY)?.is_none() {
            store.recount()?;
        }
        Ok(store)
    }

    /// Keeps `bytes` free on the store's filesystem (0 = no reserve); see [`Error::DiskFull`].
    pub fn with_min_free(mut self, bytes: u64) -> Self {
        self.space = SpaceGuard::new(&self.space.path, bytes);
        self
    }

    /// The free-space guard for `bytes` more, flushing sled when the guard asks.
    fn check_space(&self, bytes: u64) -> Result<(), Error> {
        self.space.check(bytes, || {
            self.db.flush()?;
            Ok(())
        })
    }

    /// Recomputes the counters by reading every block (only needed when they are missing).
    fn recount(&self) -> Result<(), Error> {
        let mut stat = StoreStat::default();
        for entry in self.blocks.iter() {
            let (_, value) = entry?;
            stat.blocks += 1;
            stat.bytes += value.len() as u64;
        }
        self.meta.insert(STAT_KEY, &encode_stat(stat)[..])?;
        self.meta.insert(CLEAN_KEY, &[1u8][..])?;
        tracing::info!(
            blocks = stat.blocks,
            bytes = stat.bytes,
            "counted block store"
        );
        Ok(())
    }

    /// Adds `(blocks, bytes)` to the counters atomically (negative to remove).
    fn add_stat(&self, blocks: i64, bytes: i64) -> Result<(), Error> {
        self.mark_dirty()?;
        let mut bad = None;
        self.meta.update_and_fetch(STAT_KEY, |old| {
            let mut stat = match old.map(decode_stat) {
                Some(Ok(stat)) => stat,
                Some(Err(e)) => {
                    bad = Some(e);
                    StoreStat::default()
                }
                None => StoreStat::default(),
            };
            stat.blocks = stat.blocks.saturating_add_signed(blocks);
            stat.bytes = stat.bytes.saturating_add_signed(bytes);
            Some(encode_stat(stat).to_vec())
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Clears `meta/clean` before the first write after a flush.
    fn mark_dirty(&self) -> Result<(), Error> {
        if !self.dirty.swap(true, Ordering::AcqRel) {
            self.meta.insert(CLEAN_KEY, &[0u8][..])?;
        }
        Ok(())
    }
}

fn encode_stat(stat: StoreStat) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&stat.blocks.to_be_bytes());
    out[8..].copy_from_slice(&stat.bytes.to_be_bytes());
    out
}

fn decode_stat(raw: &[u8]) -> Result<StoreStat, Error> {
    let bad = || Error::Corrupt(format!("meta/stat has {} bytes, expected 16", raw.len()));
    let raw: &[u8; 16] = raw.try_into().map_err(|_| bad())?;
    let (blocks, bytes) = raw.split_at(8);
    Ok(StoreStat {
        blocks: u64::from_be_bytes(blocks.try_into().map_err(|_| bad())?),
        bytes: u64::from_be_bytes(bytes.try_into().map_err(|_| bad())?),
    })
}

fn decode_cid(tree: &str, key: &[u8]) -> Result<Cid, Error> {
    Cid::try_from(key).map_err(|e| Error::Corrupt(format!("{tree} key is not a CID: {e}")))
}

impl Blocks for SledStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, Error> {
        Ok(self.blocks.get(cid.to_bytes())?.map(Bytes::from_owner))
    }

    fn has(&self, cid: &Cid) -> Result<bool, Error> {
        Ok(self.blocks.contains_key(cid.to_bytes())?)
    }

    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        verify(cid, data)?;
        self.put_hashed(cid, data)
    }

    fn put_hashed(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        let key = cid.to_bytes();
        if self.blocks.contains_key(&key)? {
            return Ok(());
        }
        self.check_space(data.len() as u64 + RECORD_COST)?;
        self.mark_dirty()?;
        match self
            .blocks
            .compare_and_swap(key, None::<&[u8]>, Some(data))?
        {
            Ok(()) => self.add_stat(1, data.len() as i64),
            Err(_) => Ok(()), // stored by a concurrent put
        }
    }

    fn delete(&self, cid: &Cid) -> Result<(), Error> {
        let key = cid.to_bytes();
        if !self.blocks.contains_key(&key)? {
            return Ok(());
        }
        self.mark_dirty()?;
        match self.blocks.remove(key.as_slice())? {
            Some(old) => self.add_stat(-1, -(old.len() as i64)),
            None => Ok(()),
        }
    }

    fn cids(&self) -> Result<Vec<Cid>, Error> {
        self.blocks
            .iter()
            .keys()
            .map(|key| decode_cid(BLOCKS_TREE, &key?))
            .collect()
    }

    fn stat(&self) -> Result<StoreStat, Error> {
        match self.meta.get(STAT_KEY)? {
            Some(raw) => decode_stat(&raw),
            None => Ok(StoreStat::default()),
        }
    }

    /// Durable when it returns (L1: a pin was acknowledged up to sled's flush interval before it
    /// was on disk, and a kill in between lost it, so the next gc took the data): the flush
    /// also makes every block written before it durable.
    ///
    /// One batch, so a crash pins all of them or none (L2: an image's CIDs were pinned one by
    /// one).
    fn pin_all(&self, roots: &[Cid]) -> Result<(), Error> {
        self.check_space(roots.len() as u64 * RECORD_COST)?;
        let mut batch = ::sled::Batch::default();
        for root in roots {
            batch.insert(root.to_bytes(), &[]);
        }
        self.pins.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn unpin(&self, root: &Cid) -> Result<bool, Error> {
        Ok(self.pins.remove(root.to_bytes())?.is_some())
    }

    fn pins(&self) -> Result<Vec<Cid>, Error> {
        self.pins
            .iter()
            .keys()
            .map(|key| decode_cid(PINS_TREE, &key?))
            .collect()
    }

    fn health(&self) -> Result<(), Error> {
        self.meta.get(CLEAN_KEY)?;
        let s = &self.space;
        if s.min_free > 0 {
            let free = s.free()?;
            if free < s.min_free {
                return Err(s.full(free));
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), Error> {
        self.db.flush()?;
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.meta.insert(CLEAN_KEY, &[1u8][..])?;
            self.db.flush()?;
        }
        Ok(())
    }
}
