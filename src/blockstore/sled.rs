//! [`SledStore`]: the on-disk [`Blocks`] implementation.
//!
//! sled is the store of record, with three trees:
//! - `index`: CID bytes → where the block is ([`Entry`]): small blocks inline, larger ones as a
//!   range of a pack file (`packs.rs`) with their length and CRC32;
//! - `pins`: CID bytes → empty (recursive pin roots);
//! - `meta`: `stat` → 16 bytes (block count, total bytes; both u64 big-endian).
//!
//! A read checks a packed block's CRC32 (≈ 30 GB/s) against its index entry, so bytes that
//! changed on disk are never handed out; re-hashing against the CID is `repo verify`'s job.
//! Repositories written before pack files existed kept every block inline in a `blocks` tree:
//! [`SledStore::open`] moves them over once.
//!
//! `put` inserts with a compare-and-swap (so concurrent puts of one block count it once) and then
//! bumps the counters with sled's atomic `update_and_fetch`: no transaction, so concurrent puts
//! of different blocks never conflict. `meta/clean` is 1 only after a [`Blocks::flush`] with no
//! write since; a store opened after a crash (or without counters) is recounted once.

use std::path::Path;

use ::sled::{Db, IVec, Tree};
use bytes::Bytes;
use cid::Cid;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::packs::{Location, Packs};
use super::space::{SpaceGuard, RECORD_COST};
use super::{verify, Blocks, Cached, Error, StoreStat};

const INDEX_TREE: &str = "index";
/// The tree that held every block's bytes before pack files existed (migrated on open).
const LEGACY_BLOCKS_TREE: &str = "blocks";
const PINS_TREE: &str = "pins";
const META_TREE: &str = "meta";
const STAT_KEY: &[u8] = b"stat";
const CLEAN_KEY: &[u8] = b"clean";
/// The directory of pack files, inside the store's directory.
const PACKS_DIR: &str = "packs";
/// Blocks up to this size stay inline in the index: in a pack each would take a whole filesystem
/// block, and most such blocks are dag-pb nodes read on every walk.
const INLINE_MAX: usize = 4096;
/// sled refuses to open a database with another segment size than it was created with: repos of
/// before pack files used 8 MiB (to keep 2 MiB values inside the log), so this stays.
const SEGMENT_SIZE: usize = 8 << 20;

/// Where a block's bytes are, as its index entry says.
#[derive(Debug)]
enum Entry {
    /// The bytes themselves (tag 0).
    Inline(Bytes),
    /// `len` bytes at `at` in a pack, whose CRC32 is `crc` (tag 2; tag 1 is unused).
    Packed { at: Location, len: u64, crc: u32 },
}

const TAG_INLINE: u8 = 0;
const TAG_PACKED: u8 = 2;
/// Bytes of a packed entry: tag, pack, offset, length, CRC32.
const PACKED_LEN: usize = 1 + 4 + 8 + 8 + 4;

impl Entry {
    fn inline(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 1);
        out.push(TAG_INLINE);
        out.extend_from_slice(data);
        out
    }

    fn packed(at: Location, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKED_LEN);
        out.push(TAG_PACKED);
        out.extend_from_slice(&at.pack.to_be_bytes());
        out.extend_from_slice(&at.offset.to_be_bytes());
        out.extend_from_slice(&(data.len() as u64).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
        out
    }

    fn decode(raw: IVec) -> Result<Self, Error> {
        match raw.first() {
            Some(&TAG_INLINE) => Ok(Entry::Inline(Bytes::from_owner(raw).slice(1..))),
            Some(&TAG_PACKED) if raw.len() == PACKED_LEN => {
                let be8 = |at: usize| u64::from_be_bytes(raw[at..at + 8].try_into().expect("8"));
                let be4 = |at: usize| u32::from_be_bytes(raw[at..at + 4].try_into().expect("4"));
                Ok(Entry::Packed {
                    at: Location {
                        pack: be4(1),
                        offset: be8(5),
                    },
                    len: be8(13),
                    crc: be4(21),
                })
            }
            _ => Err(Error::Corrupt(format!(
                "index entry of {} bytes has no known tag",
                raw.len()
            ))),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Entry::Inline(data) => data.len() as u64,
            Entry::Packed { len, .. } => *len,
        }
    }
}

/// A sled-backed block store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: Db,
    index: Tree,
    packs: Arc<Packs>,
    pins: Tree,
    meta: Tree,
    /// Whether `meta/clean` has been cleared since the last flush.
    dirty: Arc<AtomicBool>,
    space: Arc<SpaceGuard>,
    /// Ranges of deleted blocks, punched only once their removal from the index is on disk: a
    /// crash before that must not leave the index naming a hole.
    unfreed: Arc<std::sync::Mutex<Vec<(Location, u64)>>>,
}

/// A block's index entry, and for a packed block where it went and the guard that keeps gc's
/// sweep off that range until the entry is in the index.
struct Staged<'a> {
    entry: Vec<u8>,
    packed: Option<(Location, super::packs::Written<'a>)>,
}

/// Deleted ranges held before the index is flushed and they are punched.
const MAX_UNFREED: usize = 4096;

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
        let packs = Packs::open(path.join(PACKS_DIR)).map_err(|source| Error::Pack {
            path: path.join(PACKS_DIR),
            source,
        })?;
        let store = SledStore {
            index: db.open_tree(INDEX_TREE)?,
            packs: Arc::new(packs),
            pins: db.open_tree(PINS_TREE)?,
            meta: db.open_tree(META_TREE)?,
            db,
            dirty: Arc::new(AtomicBool::new(false)),
            space: SpaceGuard::open(path)?,
            unfreed: Default::default(),
        };
        store.migrate()?;
        let clean = store
            .meta
            .get(CLEAN_KEY)?
            .is_some_and(|v| v.as_ref() == [1]);
        if !clean || store.meta.get(STAT_KEY)?.is_none() {
            store.recount()?;
        }
        Ok(store)
    }

    /// Tree `name` of the store's database, for records a caller keeps beside the blocks
    /// (e.g. the mount's record of checked chunks): they share the store's flushes and crash
    /// safety.
    /// Their names live apart from the store's own trees (`ext/` + `name`).
    pub fn tree(&self, name: &str) -> Result<Tree, Error> {
        Ok(self.db.open_tree(format!("ext/{name}"))?)
    }

    /// Keeps `bytes` free on the store's filesystem (0 = no reserve); see [`Error::DiskFull`].
    pub fn with_min_free(mut self, bytes: u64) -> Self {
        self.space = self.space.with_min_free(bytes);
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
        for entry in self.index.iter() {
            let (_, value) = entry?;
            stat.blocks += 1;
            stat.bytes += Entry::decode(value)?.len();
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

    /// Moves the blocks of a repository written before pack files existed (every block inline
    /// in the `blocks` tree) into the index and packs. Each block is written, then indexed, then
    /// dropped from the old tree, so a crash part-way loses nothing and the next open goes on.
    fn migrate(&self) -> Result<(), Error> {
        if !self
            .db
            .tree_names()
            .iter()
            .any(|name| name.as_ref() == LEGACY_BLOCKS_TREE.as_bytes())
        {
            return Ok(());
        }
        let legacy = self.db.open_tree(LEGACY_BLOCKS_TREE)?;
        let mut moved = 0u64;
        for entry in legacy.iter() {
            let (key, value) = entry?;
            decode_cid(LEGACY_BLOCKS_TREE, &key)?;
            if !self.index.contains_key(&key)? {
                self.index.insert(&key, self.stage(&value)?.entry)?;
            }
            legacy.remove(&key)?;
            moved += 1;
        }
        self.sync_packs()?;
        self.db.flush()?;
        self.db.drop_tree(LEGACY_BLOCKS_TREE)?;
        if moved > 0 {
            tracing::info!(
                blocks = moved,
                "moved the store's blocks out of sled into pack files"
            );
        }
        Ok(())
    }

    /// Stores a block's bytes where its size says and returns its index entry (and, for a
    /// packed block, where it went and the guard to hold until the entry is in the index).
    fn stage(&self, data: &[u8]) -> Result<Staged<'_>, Error> {
        if data.len() <= INLINE_MAX {
            return Ok(Staged {
                entry: Entry::inline(data),
                packed: None,
            });
        }
        let (at, written) = self.packs.write(data).map_err(|e| self.pack_error(e))?;
        Ok(Staged {
            entry: Entry::packed(at, data),
            packed: Some((at, written)),
        })
    }

    fn pack_error(&self, source: std::io::Error) -> Error {
        Error::Pack {
            path: self.packs.root().to_owned(),
            source,
        }
    }

    /// Makes every packed block durable (before an index that names them is flushed).
    fn sync_packs(&self) -> Result<(), Error> {
        self.packs.sync().map_err(|e| self.pack_error(e))
    }

    /// Gives back the space of a range that no index entry names.
    fn punch(&self, at: Location, len: u64) -> Result<(), Error> {
        self.packs.free(at, len).map_err(|e| self.pack_error(e))
    }

    /// Flushes the index, then punches the ranges of the blocks deleted before the flush. The
    /// ranges are taken first: one deleted while the flush runs waits for the next, since its
    /// removal may not be on disk yet.
    fn flush_and_punch(&self) -> Result<(), Error> {
        let ranges = std::mem::take(&mut *crate::sync::lock(&self.unfreed));
        self.db.flush()?;
        for (at, len) in ranges {
            self.punch(at, len)?;
        }
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

impl SledStore {
    /// The block's index entry; `None` when it is not stored.
    fn entry(&self, cid: &Cid) -> Result<Option<Entry>, Error> {
        self.index
            .get(cid.to_bytes())?
            .map(Entry::decode)
            .transpose()
    }
}

impl Blocks for SledStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, Error> {
        let (at, len, crc) = match self.entry(cid)? {
            None => return Ok(None),
            Some(Entry::Inline(data)) => return Ok(Some(data)),
            Some(Entry::Packed { at, len, crc }) => (at, len, crc),
        };
        let rotten = |reason: String| Error::Rotten { cid: *cid, reason };
        let data = self
            .packs
            .read(at, len)
            .map_err(|e| self.pack_error(e))?
            .ok_or_else(|| rotten(format!("its {len} bytes are missing from pack {}", at.pack)))?;
        if crc32fast::hash(&data) != crc {
            return Err(rotten(format!("its CRC32 changed in pack {}", at.pack)));
        }
        Ok(Some(Bytes::from(data)))
    }

    fn get_cached(&self, cid: &Cid) -> Result<Cached, Error> {
        Ok(match self.entry(cid)? {
            None => Cached::Absent,
            Some(Entry::Inline(data)) => Cached::Bytes(data),
            // a rotten block (or a failed read) is left to `get`, which reports it
            Some(Entry::Packed { at, len, crc }) => match self.packs.read_cached(at, len) {
                Some(data) if crc32fast::hash(&data) == crc => Cached::Bytes(Bytes::from(data)),
                _ => Cached::Stored,
            },
        })
    }

    fn size(&self, cid: &Cid) -> Result<Option<u64>, Error> {
        Ok(self.entry(cid)?.map(|e| e.len()))
    }

    fn has(&self, cid: &Cid) -> Result<bool, Error> {
        Ok(self.index.contains_key(cid.to_bytes())?)
    }

    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        verify(cid, data)?;
        self.put_hashed(cid, data)
    }

    fn put_hashed(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        let key = cid.to_bytes();
        if self.index.contains_key(&key)? {
            return Ok(());
        }
        let len = data.len() as u64;
        self.check_space(len.next_multiple_of(super::packs::ALIGN) + RECORD_COST)?;
        let staged = self.stage(data)?;
        self.mark_dirty()?;
        let named =
            self.index
                .compare_and_swap(key, None::<&[u8]>, Some(staged.entry.as_slice()))?;
        match (named, &staged.packed) {
            (Ok(()), _) => self.add_stat(1, len as i64),
            // stored by a concurrent put: give back the space this one took
            (Err(_), Some((at, _))) => self.punch(*at, len),
            (Err(_), None) => Ok(()),
        }
    }

    fn delete(&self, cid: &Cid) -> Result<(), Error> {
        let key = cid.to_bytes();
        if !self.index.contains_key(&key)? {
            return Ok(());
        }
        self.mark_dirty()?;
        let Some(old) = self.index.remove(key.as_slice())? else {
            return Ok(());
        };
        let old = Entry::decode(old)?;
        let len = old.len();
        self.add_stat(-1, -(len as i64))?;
        if let Entry::Packed { at, len, .. } = old {
            let full = {
                let mut unfreed = crate::sync::lock(&self.unfreed);
                unfreed.push((at, len));
                unfreed.len() >= MAX_UNFREED
            };
            if full {
                self.flush_and_punch()?;
            }
        }
        Ok(())
    }

    fn cids(&self) -> Result<Vec<Cid>, Error> {
        self.index
            .iter()
            .keys()
            .map(|key| decode_cid(INDEX_TREE, &key?))
            .collect()
    }

    fn sweep(&self) -> Result<u64, Error> {
        let used = self
            .index
            .iter()
            .values()
            .filter_map(|raw| match raw.map(Entry::decode) {
                Ok(Ok(Entry::Packed { at, len, .. })) => Some((at, len)),
                _ => None,
            });
        self.packs.sweep(used).map_err(|e| self.pack_error(e))
    }

    fn stat(&self) -> Result<StoreStat, Error> {
        match self.meta.get(STAT_KEY)? {
            Some(raw) => decode_stat(&raw),
            None => Ok(StoreStat::default()),
        }
    }

    /// Durable when it returns, with every block packed before it (L1: a pin was acknowledged up
    /// to sled's flush interval before it was on disk, and a kill in between lost it, so the
    /// next gc took the data): the flush also makes every block written before it durable.
    ///
    /// One batch, so a crash pins all of them or none (L2: an image's CIDs were pinned one by
    /// one).
    fn pin_all(&self, roots: &[Cid]) -> Result<(), Error> {
        self.check_space(roots.len() as u64 * RECORD_COST)?;
        let mut batch = ::sled::Batch::default();
        for root in roots {
            batch.insert(root.to_bytes(), &[]);
        }
        self.sync_packs()?;
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

    fn start_writeback(&self) {
        if let Err(e) = self.packs.start_writeback() {
            tracing::debug!("starting the packs' writeback: {e}");
        }
    }

    fn flush(&self) -> Result<(), Error> {
        self.sync_packs()?;
        self.flush_and_punch()?;
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.meta.insert(CLEAN_KEY, &[1u8][..])?;
            self.db.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cid::multihash::Multihash;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::blockstore::{gc, verify_all, RAW, SHA2_256};

    fn block(seed: u32, len: usize) -> (Cid, Vec<u8>) {
        let mut data = Vec::with_capacity(len + 32);
        let mut n = 0u32;
        while data.len() < len {
            data.extend_from_slice(&Sha256::digest(
                [seed.to_be_bytes(), n.to_be_bytes()].concat(),
            ));
            n += 1;
        }
        data.truncate(len);
        let cid = Cid::new_v1(
            RAW,
            Multihash::wrap(SHA2_256, &Sha256::digest(&data)).unwrap(),
        );
        (cid, data)
    }

    /// Disk use of a directory as `du` counts it (allocated blocks, not lengths).
    fn du(path: &Path) -> u64 {
        let out = std::process::Command::new("du")
            .arg("-sk")
            .arg(path)
            .output()
            .unwrap();
        let kib: u64 = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        kib * 1024
    }

    /// Where the store put a packed block.
    fn location(store: &SledStore, cid: &Cid) -> (Location, u64) {
        match Entry::decode(store.index.get(cid.to_bytes()).unwrap().unwrap()).unwrap() {
            Entry::Packed { at, len, .. } => (at, len),
            Entry::Inline(_) => panic!("{cid} is inline"),
        }
    }

    fn pack_path(store: &SledStore, at: Location) -> std::path::PathBuf {
        store.packs.root().join(format!("{}.pack", at.pack))
    }

    #[test]
    fn large_blocks_are_packed_small_ones_inline_and_the_store_costs_little_more_than_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let (small, small_data) = block(0, 300);
        store.put(&small, &small_data).unwrap();
        assert!(matches!(
            Entry::decode(store.index.get(small.to_bytes()).unwrap().unwrap()).unwrap(),
            Entry::Inline(_)
        ));
        let mut total = 0;
        for seed in 1..=256 {
            let (cid, data) = block(seed, 256 << 10);
            store.put(&cid, &data).unwrap();
            total += data.len() as u64;
        }
        store.flush().unwrap();
        let used = du(dir.path());
        assert!(
            used as f64 <= total as f64 * 1.2,
            "{used} bytes on disk for {total} bytes of blocks"
        );
        // deleting gives the space back at once
        for seed in 1..=128 {
            store.delete(&block(seed, 256 << 10).0).unwrap();
        }
        store.flush().unwrap();
        let after = du(dir.path());
        assert!(
            (after as f64) < used as f64 * 0.6,
            "{after} bytes on disk after deleting half of {used}"
        );
        drop(store);
        let store = crate::test_utils::reopen(|| SledStore::open(dir.path(), 1 << 20));
        assert_eq!(store.stat().unwrap().blocks, 129);
        let (cid, data) = block(200, 256 << 10);
        assert_eq!(store.get(&cid).unwrap().as_deref(), Some(&data[..]));
        assert_eq!(store.get(&small).unwrap().as_deref(), Some(&small_data[..]));
        let (cid, data) = block(300, 256 << 10);
        store.put(&cid, &data).unwrap();
        assert_eq!(store.get(&cid).unwrap().as_deref(), Some(&data[..]));
    }

    #[test]
    fn a_packed_block_that_changed_on_disk_is_never_handed_out() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let (flipped, data) = block(1, 100_000);
        store.put(&flipped, &data).unwrap();
        let (cut, other) = block(2, 100_000);
        store.put(&cut, &other).unwrap();
        let (at, _) = location(&store, &flipped);
        let pack = std::fs::File::options()
            .write(true)
            .open(pack_path(&store, at))
            .unwrap();
        pack.write_all_at(&[data[50_000] ^ 1], at.offset + 50_000)
            .unwrap();
        // the pack was cut short under the second block
        let (cut_at, _) = location(&store, &cut);
        pack.set_len(cut_at.offset + 10).unwrap();
        for (cid, says) in [(flipped, "CRC32"), (cut, "missing")] {
            // the read that must not wait hands nothing out either; `get` says why
            assert_eq!(store.get_cached(&cid).unwrap(), Cached::Stored);
            let err = store.get(&cid).unwrap_err();
            assert!(matches!(err, Error::Rotten { .. }), "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        let report = verify_all(&store, true, |_| {}).unwrap();
        assert_eq!(report.corrupt.len(), 2, "{report:?}");
        assert_eq!(store.stat().unwrap(), StoreStat::default());
        store.put(&flipped, &data).unwrap();
        assert_eq!(store.get(&flipped).unwrap().as_deref(), Some(&data[..]));
    }

    /// `get_cached` reads a packed block only when it is in the page cache, and an inline one
    /// always; `get` reads it from the disk.
    #[test]
    fn a_cached_read_never_waits_for_the_disk() {
        use std::os::fd::AsRawFd as _;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let (big, data) = block(1, 256 << 10);
        let (small, small_data) = block(2, 100);
        store.put(&big, &data).unwrap();
        store.put(&small, &small_data).unwrap();
        let cached = |cid| store.get_cached(cid).unwrap();
        // tmpfs takes no reads that must not wait: there every packed block goes to `get`
        let (at, _) = location(&store, &big);
        let pack = std::fs::File::open(pack_path(&store, at)).unwrap();
        let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: a valid descriptor and a buffer of the right type
        assert_eq!(
            unsafe { libc::fstatfs(pack.as_raw_fd(), fs.as_mut_ptr()) },
            0
        );
        // SAFETY: fstatfs filled it
        let on_tmpfs = unsafe { fs.assume_init() }.f_type == libc::TMPFS_MAGIC;
        let packed = match on_tmpfs {
            true => Cached::Stored,
            false => Cached::Bytes(Bytes::from(data.clone())),
        };
        assert_eq!(cached(&big), packed);
        assert_eq!(
            cached(&small),
            Cached::Bytes(Bytes::from(small_data.clone()))
        );
        let (unknown, _) = block(3, 100);
        assert_eq!(cached(&unknown), Cached::Absent);

        // the pack's pages on disk and out of the page cache
        store.flush().unwrap();
        pack.sync_all().unwrap();
        // SAFETY: a valid descriptor; the advice only drops clean cached pages
        let r = unsafe { libc::posix_fadvise(pack.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0);
        assert_eq!(cached(&big), Cached::Stored, "not in the page cache");
        assert_eq!(
            cached(&small),
            Cached::Bytes(Bytes::from(small_data.clone()))
        );
        assert_eq!(store.get(&big).unwrap().as_deref(), Some(&data[..]));
        // read once, it is in the page cache again
        assert_eq!(cached(&big), packed);
    }

    /// A rotten index entry that claims a length past its pack's end is a missing block, found
    /// before anything is allocated for it (an exabyte here).
    #[test]
    fn an_index_entry_longer_than_its_pack_is_rotten_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let (cid, data) = block(1, 100_000);
        store.put(&cid, &data).unwrap();
        let (at, _) = location(&store, &cid);
        let mut entry = Entry::packed(at, &data);
        entry[13..21].copy_from_slice(&(1u64 << 60).to_be_bytes());
        store.index.insert(cid.to_bytes(), entry).unwrap();
        let err = store.get(&cid).unwrap_err();
        assert!(matches!(err, Error::Rotten { .. }), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn a_repository_from_before_pack_files_is_moved_over_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (big, big_data) = block(1, 300_000);
        let (small, small_data) = block(2, 100);
        {
            let db = ::sled::Config::new()
                .path(dir.path())
                .segment_size(SEGMENT_SIZE)
                .open()
                .unwrap();
            let legacy = db.open_tree(LEGACY_BLOCKS_TREE).unwrap();
            legacy.insert(big.to_bytes(), &big_data[..]).unwrap();
            legacy.insert(small.to_bytes(), &small_data[..]).unwrap();
            db.open_tree(PINS_TREE)
                .unwrap()
                .insert(big.to_bytes(), &[])
                .unwrap();
            db.flush().unwrap();
        }
        let store = crate::test_utils::reopen(|| SledStore::open(dir.path(), 1 << 20));
        location(&store, &big);
        assert_eq!(store.get(&big).unwrap().as_deref(), Some(&big_data[..]));
        assert_eq!(store.get(&small).unwrap().as_deref(), Some(&small_data[..]));
        assert_eq!(store.pins().unwrap(), vec![big]);
        assert_eq!(
            store.stat().unwrap(),
            StoreStat {
                blocks: 2,
                bytes: 300_100
            }
        );
        assert!(!store
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == LEGACY_BLOCKS_TREE.as_bytes()));
    }

    /// A crash between a block's write and its index entry leaves an unnamed range: gc punches
    /// it out of sealed packs, and removes sealed packs that hold nothing.
    #[test]
    fn gc_gives_back_what_no_entry_names_in_sealed_packs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let (kept, data) = block(1, 50_000);
        store.put(&kept, &data).unwrap();
        store.pin(&kept).unwrap();
        let orphan = store.packs.write(&[7u8; 200_000]).unwrap().0;
        // seal pack 0 by starting pack 1 as a full pack would
        let empty = store.packs.root().join("1.pack");
        std::fs::File::create(&empty).unwrap();
        let lonely = store.packs.root().join("2.pack");
        std::fs::File::create(&lonely).unwrap();
        drop(store);
        let store = crate::test_utils::reopen(|| SledStore::open(dir.path(), 1 << 20));
        let before = du(&pack_path(&store, orphan));
        gc(&store).unwrap();
        let after = du(&pack_path(&store, orphan));
        assert!(after + 190_000 <= before, "{before} -> {after} bytes");
        assert!(!empty.exists(), "a sealed pack with nothing in it stays");
        assert!(lonely.exists(), "the pack being appended to was removed");
        assert_eq!(store.get(&kept).unwrap().as_deref(), Some(&data[..]));
    }
}
