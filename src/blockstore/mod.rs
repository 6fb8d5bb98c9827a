//! Level 1: block storage. Every block is checked against its CID before it is stored.
//!
//! - [`Blocks`] is the storage trait (get/has/put/delete, recursive pins, counters). Two
//!   implementations: [`SledStore`] (on disk: sled's index in `sled.rs`, large blocks in the pack
//!   files of `packs.rs`, the free-space reserve in `space.rs`) and [`MemStore`] (tests, `mem.rs`).
//! - [`verify`] checks that bytes hash to a CID (sha2-256, or identity); `put` always calls it and
//!   the network layer uses it for blocks that arrive from peers.
//! - [`links`] lists the children of a dag-pb (0x70) block; raw (0x55) blocks have none.
//! - [`gc`] deletes every block that cannot be reached from a pin, then gives back what a crash
//!   left unnamed ([`Blocks::sweep`]).
//!
//! This module knows CIDs and bytes only: no UnixFS, no bitswap.

mod mem;
mod packs;
mod sled;
mod space;

use std::collections::HashSet;
use std::path::PathBuf;

use bytes::Bytes;
use cid::multihash::Multihash;
use cid::Cid;
use sha2::{Digest, Sha256};

pub use self::mem::MemStore;
pub(crate) use self::packs::start_writeback;
pub use self::sled::SledStore;
pub use cidfs_formats::dag_pb::PbLink;

pub use cidfs_p2p::codes::{DAG_PB, IDENTITY, RAW, SHA2_256};

/// Errors of the block store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data does not hash to the CID it was offered under (`actual` is boxed to keep the
    /// error small).
    #[error("block data does not match {cid}: it hashes to {actual}")]
    CidMismatch { cid: Cid, actual: Box<Cid> },
    /// Only sha2-256 and identity multihashes are accepted.
    #[error(
        "unsupported multihash 0x{0:x}: only sha2-256 (0x12) and identity (0x00) are accepted"
    )]
    UnsupportedHash(u64),
    /// Links of this codec cannot be listed.
    #[error(
        "block {cid} has codec 0x{codec:x}: only dag-pb (0x70) and raw (0x55) links are known"
    )]
    UnsupportedCodec { cid: Cid, codec: u64 },
    /// A dag-pb block that does not decode.
    #[error("block {cid} is not valid dag-pb: {reason}")]
    InvalidDagPb { cid: Cid, reason: &'static str },
    /// A required block is not stored.
    #[error("block {0} not found")]
    NotFound(Cid),
    /// A CID could not be built or read.
    #[error("invalid CID: {0}")]
    Cid(#[from] cid::Error),
    /// On-disk data that this code did not write (bad key, bad counter).
    #[error("block store is corrupt: {0}")]
    Corrupt(String),
    /// The sled database could not be opened.
    #[error("opening block store at {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: ::sled::Error,
    },
    /// Writing would leave less free space than the configured reserve.
    #[error("disk full: {free_mb} MiB free on the filesystem of {}, and the store keeps {min_free_mb} MiB free (store.min_free_mb)", path.display())]
    DiskFull {
        path: PathBuf,
        free_mb: u64,
        min_free_mb: u64,
    },
    /// Free space could not be read.
    #[error("reading free space of {}: {source}", path.display())]
    FreeSpace {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A block's bytes changed on disk since they were stored (they are gone from their pack, or
    /// their CRC32 differs from their index entry): `repo verify --remove` drops it, and the swarm
    /// then supplies a good copy.
    #[error("block {cid} is corrupt on disk: {reason}")]
    Rotten { cid: Cid, reason: String },
    /// A pack file could not be read or written.
    #[error("block pack files in {}: {source}", path.display())]
    Pack {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Any other sled failure.
    #[error("block store I/O: {0}")]
    Io(#[from] ::sled::Error),
}

/// What [`Blocks::get_cached`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// The block's bytes, had without waiting for the disk.
    Bytes(Bytes),
    /// The block is stored, and reading it may wait for the disk (or its cached read failed):
    /// call [`Blocks::get`] off the async workers, which reports what is wrong.
    Stored,
    /// The block is not stored.
    Absent,
}

/// Number of stored blocks and the sum of their lengths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStat {
    pub blocks: u64,
    pub bytes: u64,
}

/// What [`gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_blocks: u64,
    pub removed_bytes: u64,
    /// The removed blocks, in the order they were removed.
    pub removed: Vec<Cid>,
    /// Bytes of blocks left in the store.
    pub left_bytes: u64,
}

/// What [`verify_all`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks re-hashed.
    pub checked: u64,
    pub corrupt: Vec<Corrupt>,
}

/// One stored block that does not hash to its CID (see [`verify_all`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    pub cid: Cid,
    /// What is wrong, e.g. "block data does not match bafk…: it hashes to bafk…".
    pub reason: String,
    /// Whether it was removed (`remove`), so that the next read fetches a good copy.
    pub removed: bool,
}

/// A block store. Methods are blocking but short (one key); call them from `spawn_blocking` when
/// a batch is large.
pub trait Blocks: Send + Sync + 'static {
    /// The block's bytes, or `None` when it is not stored.
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, Error>;
    /// [`Blocks::get`] as far as it needs no wait for the disk (the bytes are in memory or in
    /// the page cache, and whether the block is stored is an index lookup), so it may be called
    /// on an async worker.
    fn get_cached(&self, cid: &Cid) -> Result<Cached, Error> {
        Ok(match self.has(cid)? {
            true => Cached::Stored,
            false => Cached::Absent,
        })
    }
    /// The block's length, or `None` when it is not stored (cheaper than `get` where the store
    /// keeps lengths apart from bytes).
    fn size(&self, cid: &Cid) -> Result<Option<u64>, Error> {
        Ok(self.get(cid)?.map(|data| data.len() as u64))
    }
    /// Whether the block is stored.
    fn has(&self, cid: &Cid) -> Result<bool, Error>;
    /// Verifies that `data` hashes to `cid` (see [`verify`]) before storing it; storing a block
    /// twice is a no-op.
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error>;
    /// Stores a block whose CID the caller has just computed from these very bytes (bitswap
    /// rebuilds every received block's CID by hashing it), so hashing it again is skipped.
    /// Anything else must call [`Blocks::put`].
    fn put_hashed(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        self.put(cid, data)
    }
    /// Removes what a crash or a delete left behind and no entry names (packed ranges); returns
    /// how many. [`gc`] calls it.
    fn sweep(&self) -> Result<u64, Error> {
        Ok(0)
    }
    /// Removes the block; removing a missing block is a no-op.
    fn delete(&self, cid: &Cid) -> Result<(), Error>;
    /// Every stored CID.
    fn cids(&self) -> Result<Vec<Cid>, Error>;
    /// Block count and total bytes; correct after a restart.
    fn stat(&self) -> Result<StoreStat, Error>;
    /// Records recursive pins of all `roots` at once (all or none, durable when it returns):
    /// [`gc`] keeps each root and every block reachable from it.
    fn pin_all(&self, roots: &[Cid]) -> Result<(), Error>;
    /// [`Blocks::pin_all`] of one root.
    fn pin(&self, root: &Cid) -> Result<(), Error> {
        self.pin_all(std::slice::from_ref(root))
    }
    /// Removes a pin; `false` when `root` was not pinned.
    fn unpin(&self, root: &Cid) -> Result<bool, Error>;
    /// Whether the store can take writes now: `Err` when its disk is below the reserve
    /// (`store.min_free_mb`) or the database does not answer (for `/healthz`).
    fn health(&self) -> Result<(), Error> {
        Ok(())
    }
    /// Every pinned root.
    fn pins(&self) -> Result<Vec<Cid>, Error>;
    /// Makes every earlier write durable.
    fn flush(&self) -> Result<(), Error>;
    /// Starts writing recent writes to disk without waiting, for a writer that will ask for a
    /// [`Blocks::flush`] (or a pin) soon: the disk works meanwhile. A hint; errors are logged.
    fn start_writeback(&self) {}
}

/// Checks that `data` hashes to `cid`: sha2-256 (0x12) digests are recomputed, identity (0x00)
/// digests must equal the data; any other multihash is [`Error::UnsupportedHash`].
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), Error> {
    let mh = cid.hash();
    let ok = match mh.code() {
        SHA2_256 => mh.digest() == Sha256::digest(data).as_slice(),
        IDENTITY => mh.digest() == data,
        code => return Err(Error::UnsupportedHash(code)),
    };
    if ok {
        return Ok(());
    }
    let actual = if mh.code() == IDENTITY && data.len() <= 64 {
        Cid::new_v1(
            cid.codec(),
            Multihash::wrap(IDENTITY, data).map_err(cid::Error::from)?,
        )
    } else {
        sha256_cid(cid, data)?
    };
    Err(Error::CidMismatch {
        cid: *cid,
        actual: Box::new(actual),
    })
}

/// The sha2-256 CID of `data` with the version and codec of `like`.
fn sha256_cid(like: &Cid, data: &[u8]) -> Result<Cid, Error> {
    let mh =
        Multihash::wrap(SHA2_256, Sha256::digest(data).as_slice()).map_err(cid::Error::from)?;
    Ok(match like.version() {
        cid::Version::V0 => Cid::new_v0(mh)?,
        cid::Version::V1 => Cid::new_v1(like.codec(), mh),
    })
}

/// The CIDs a block links to: the dag-pb links in order for 0x70, none for raw 0x55.
/// Other codecs are [`Error::UnsupportedCodec`], so that [`gc`] never drops the children of a
/// block it cannot read.
pub fn links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, Error> {
    match cid.codec() {
        RAW => Ok(Vec::new()),
        DAG_PB => Ok(dag_pb_links(cid, data)?
            .into_iter()
            .map(|l| l.cid)
            .collect()),
        codec => Err(Error::UnsupportedCodec { cid: *cid, codec }),
    }
}

/// Decodes the links of a dag-pb block ([`cidfs_formats::dag_pb`]; `cid` names it in the
/// error).
pub fn dag_pb_links(cid: &Cid, data: &[u8]) -> Result<Vec<PbLink>, Error> {
    cidfs_formats::dag_pb::links(data).map_err(|reason| Error::InvalidDagPb { cid: *cid, reason })
}

/// Removes every block not reachable from a pin and reports what it removed.
///
/// Marks by walking links from each pinned root through the blocks that are stored locally (a
/// missing block ends its branch), then deletes every unmarked block. Blocks put while gc runs
/// may be removed unless they are pinned first.
pub fn gc(store: &dyn Blocks) -> Result<GcReport, Error> {
    gc_to(store, None)
}

/// Like [`gc`], but with a `target` it stops once the store holds at most `target` bytes of
/// blocks (removing unpinned blocks in CID order). Pinned blocks are never removed, so the
/// store may stay above the target: [`GcReport::left_bytes`] says where it ended.
pub fn gc_to(store: &dyn Blocks, target: Option<u64>) -> Result<GcReport, Error> {
    let mut report = GcReport {
        left_bytes: store.stat()?.bytes,
        ..GcReport::default()
    };
    if target.is_some_and(|t| report.left_bytes <= t) {
        return Ok(report);
    }
    let mut live = HashSet::new();
    let mut stack = store.pins()?;
    while let Some(cid) = stack.pop() {
        if !live.insert(cid) {
            continue;
        }
        let data = match store.get(&cid)? {
            Some(data) => data,
            None if cid.hash().code() == IDENTITY => Bytes::copy_from_slice(cid.hash().digest()),
            None => continue,
        };
        stack.extend(links(&cid, &data)?);
    }

    for cid in store.cids()? {
        if target.is_some_and(|t| report.left_bytes <= t) {
            break;
        }
        if live.contains(&cid) {
            continue;
        }
        if let Some(data) = store.get(&cid)? {
            store.delete(&cid)?;
            report.removed_blocks += 1;
            report.removed_bytes += data.len() as u64;
            report.left_bytes = report.left_bytes.saturating_sub(data.len() as u64);
            report.removed.push(cid);
        }
    }
    // the removals reach the disk before their space is given back (a crash in between must not
    // leave the index naming holes)
    store.flush()?;
    let swept = store.sweep()?;
    tracing::debug!(?report, swept, "gc finished");
    Ok(report)
}

/// Re-hashes every stored block against its CID and returns the ones that do not match; with
/// `remove`, deletes them too (a pinned DAG then fetches a good copy from peers on its next
/// `pin add` or read). `progress` is called with the count of blocks checked so far.
pub fn verify_all(
    store: &dyn Blocks,
    remove: bool,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, Error> {
    let mut report = VerifyReport::default();
    for cid in store.cids()? {
        let checked = match store.get(&cid) {
            Ok(Some(data)) => verify(&cid, &data),
            Ok(None) => Ok(()),
            Err(e @ Error::Rotten { .. }) => Err(e),
            Err(e) => return Err(e),
        };
        if let Err(e) = checked {
            if remove {
                store.delete(&cid)?;
            }
            tracing::warn!(%cid, "corrupt block: {e}");
            report.corrupt.push(Corrupt {
                cid,
                reason: e.to_string(),
                removed: remove,
            });
        }
        report.checked += 1;
        progress(report.checked);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixfs::add::{add_bytes, AddOptions};

    /// Runs one test body against every store: `mem` and `sled` (in a temporary directory).
    macro_rules! store_test {
        ($name:ident) => {
            mod $name {
                #[test]
                fn mem() {
                    super::$name(&crate::blockstore::MemStore::default());
                }
                #[test]
                fn sled() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = crate::blockstore::SledStore::open(dir.path(), 1 << 22).unwrap();
                    super::$name(&store);
                }
            }
        };
    }

    fn raw_cid(data: &[u8]) -> Cid {
        Cid::new_v1(
            RAW,
            Multihash::wrap(SHA2_256, &Sha256::digest(data)).unwrap(),
        )
    }

    store_test!(put_get_has_delete);
    fn put_get_has_delete(store: &dyn Blocks) {
        let (a, b) = (b"hello world\n".as_slice(), b"other".as_slice());
        let (ca, cb) = (raw_cid(a), raw_cid(b));
        assert_eq!(
            ca.to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
        assert!(!store.has(&ca).unwrap());
        assert_eq!(store.get(&ca).unwrap(), None);
        store.put(&ca, a).unwrap();
        store.put(&ca, a).unwrap(); // idempotent
        store.put(&cb, b).unwrap();
        assert!(store.has(&ca).unwrap());
        assert_eq!(store.get(&ca).unwrap().as_deref(), Some(a));
        let stat = store.stat().unwrap();
        assert_eq!(
            stat,
            StoreStat {
                blocks: 2,
                bytes: (a.len() + b.len()) as u64
            }
        );
        let mut cids = store.cids().unwrap();
        cids.sort();
        let mut expected = vec![ca, cb];
        expected.sort();
        assert_eq!(cids, expected);

        store.delete(&ca).unwrap();
        store.delete(&ca).unwrap(); // idempotent
        assert!(!store.has(&ca).unwrap());
        assert_eq!(
            store.stat().unwrap(),
            StoreStat {
                blocks: 1,
                bytes: b.len() as u64
            }
        );
        store.flush().unwrap();
    }

    store_test!(cid_mismatch_rejected);
    fn cid_mismatch_rejected(store: &dyn Blocks) {
        let cid = raw_cid(b"expected");
        match store.put(&cid, b"something else") {
            Err(Error::CidMismatch { cid: c, actual }) => {
                assert_eq!(c, cid);
                assert_eq!(*actual, raw_cid(b"something else"));
            }
            other => panic!("expected CidMismatch, got {other:?}"),
        }
        assert!(!store.has(&cid).unwrap());
        assert_eq!(store.stat().unwrap(), StoreStat::default());

        let blake3 = Cid::new_v1(RAW, Multihash::wrap(0x1e, &[0; 32]).unwrap());
        assert!(matches!(
            store.put(&blake3, b"x"),
            Err(Error::UnsupportedHash(0x1e))
        ));

        let identity = Cid::new_v1(RAW, Multihash::wrap(IDENTITY, b"tiny").unwrap());
        store.put(&identity, b"tiny").unwrap();
        assert!(matches!(
            store.put(&identity, b"tinY"),
            Err(Error::CidMismatch { .. })
        ));
    }

    store_test!(pins_roundtrip);
    fn pins_roundtrip(store: &dyn Blocks) {
        let (a, b) = (raw_cid(b"a"), raw_cid(b"b"));
        store.pin(&a).unwrap();
        store.pin(&a).unwrap();
        store.pin(&b).unwrap();
        let mut pins = store.pins().unwrap();
        pins.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(pins, expected);
        assert!(store.unpin(&a).unwrap());
        assert!(!store.unpin(&a).unwrap());
        assert_eq!(store.pins().unwrap(), vec![b]);
    }

    store_test!(gc_removes_only_unpinned);
    fn gc_removes_only_unpinned(store: &dyn Blocks) {
        // chunks of 1 KiB and 4 links per node: 10 chunks give root -> 3 interior nodes -> leaves
        let opts = AddOptions {
            chunk_size: 1024,
            max_links: 4,
            ..AddOptions::default()
        };
        let kept: Vec<u8> = (0..10 * 1024u32).map(|i| (i % 251) as u8).collect();
        let dropped: Vec<u8> = (0..10 * 1024u32).map(|i| (i % 13) as u8).collect();
        let kept = add_bytes(store, &kept, &opts).unwrap();
        assert_eq!(kept.blocks, 14);
        let root_links = links(&kept.root, &store.get(&kept.root).unwrap().unwrap()).unwrap();
        assert_eq!(root_links.len(), 3, "root of a 2-level DAG");
        let dropped = add_bytes(store, &dropped, &opts).unwrap();
        store.pin(&kept.root).unwrap();
        // a pin whose blocks are not local is not an error
        store.pin(&raw_cid(b"not stored")).unwrap();

        let before = store.stat().unwrap();
        let report = gc(store).unwrap();
        let after = store.stat().unwrap();
        assert_eq!(report.removed_blocks, before.blocks - after.blocks);
        assert_eq!(report.removed_bytes, before.bytes - after.bytes);
        assert!(store.has(&kept.root).unwrap());
        assert!(!store.has(&dropped.root).unwrap());
        assert_eq!(after.blocks, 14);
        assert_eq!(after.bytes, kept.cumulative_size);
        assert_eq!(gc(store).unwrap().removed_blocks, 0);

        store.unpin(&kept.root).unwrap();
        gc(store).unwrap();
        assert_eq!(store.stat().unwrap(), StoreStat::default());
    }

    store_test!(gc_to_a_target_stops_there_and_keeps_pins);
    fn gc_to_a_target_stops_there_and_keeps_pins(store: &dyn Blocks) {
        let blocks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1000]).collect();
        for b in &blocks {
            store.put(&raw_cid(b), b).unwrap();
        }
        let pinned = raw_cid(&blocks[0]);
        store.pin(&pinned).unwrap();
        // under the target already: nothing to do
        assert_eq!(gc_to(store, Some(20_000)).unwrap().removed_blocks, 0);
        let r = gc_to(store, Some(5_500)).unwrap();
        assert_eq!(r.removed_blocks, 5, "stops as soon as the store fits");
        assert_eq!(r.left_bytes, 5_000);
        assert_eq!(store.stat().unwrap().bytes, 5_000);
        // a target below the pinned data removes every unpinned block and says where it ended
        let r = gc_to(store, Some(0)).unwrap();
        assert_eq!(r.left_bytes, 1_000);
        assert!(store.has(&pinned).unwrap());
        assert_eq!(store.stat().unwrap().blocks, 1);
    }

    /// L3: a stream of tiny blocks reaches the free-space check at what its records cost on
    /// disk (about 500 bytes each), not at its payload (4 bytes each: a million puts).
    #[test]
    fn tiny_blocks_reach_the_free_space_check_at_their_disk_cost() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20)
            .unwrap()
            .with_min_free(u64::MAX / 8);
        let mut refused = None;
        for i in 0..100_000u32 {
            let data = i.to_be_bytes();
            if let Err(e) = store.put(&raw_cid(&data), &data) {
                assert!(matches!(e, Error::DiskFull { .. }), "{e}");
                refused = Some(i);
                break;
            }
        }
        let at = refused.expect("the reserve was never checked");
        assert!(at <= (4 << 20) / 512 + 1, "checked after {at} puts");
    }

    #[test]
    fn verify_all_finds_and_removes_blocks_that_rotted_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::blockstore::SledStore::open(dir.path(), 1 << 22).unwrap();
        let good = raw_cid(b"good");
        store.put(&good, b"good").unwrap();
        // put_hashed trusts its caller: the way bytes that changed on disk look to a reader
        let rotten = raw_cid(b"rotten");
        store.put_hashed(&rotten, b"r0tten").unwrap();
        let mut seen = 0;
        let found = verify_all(&store, false, |n| seen = n).unwrap();
        assert_eq!((seen, found.checked), (2, 2));
        let found = found.corrupt;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].cid, rotten);
        assert!(
            found[0].reason.contains("does not match"),
            "{}",
            found[0].reason
        );
        assert!(
            store.has(&rotten).unwrap(),
            "reporting alone removes nothing"
        );
        let found = verify_all(&store, true, |_| {}).unwrap().corrupt;
        assert!(found[0].removed);
        assert!(!store.has(&rotten).unwrap());
        assert!(store.has(&good).unwrap());
        assert!(verify_all(&store, false, |_| {})
            .unwrap()
            .corrupt
            .is_empty());
    }

    #[test]
    fn sled_keeps_pins_and_stat_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cid = raw_cid(b"persist");
        {
            let store = SledStore::open(dir.path(), 1 << 20).unwrap();
            store.put(&cid, b"persist").unwrap();
            store.pin(&cid).unwrap();
            store.flush().unwrap();
        }
        let store = crate::test_utils::reopen(|| SledStore::open(dir.path(), 1 << 20));
        assert_eq!(store.pins().unwrap(), vec![cid]);
        assert_eq!(
            store.stat().unwrap(),
            StoreStat {
                blocks: 1,
                bytes: 7
            }
        );
        assert_eq!(
            store.get(&cid).unwrap().as_deref(),
            Some(b"persist".as_slice())
        );
    }

    #[test]
    fn links_of_raw_dag_pb_and_garbage() {
        assert!(links(&raw_cid(b"x"), b"x").unwrap().is_empty());
        let empty_file: Cid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
            .parse()
            .unwrap();
        assert!(links(&empty_file, &[0x0a, 0x04, 0x08, 0x02, 0x18, 0x00])
            .unwrap()
            .is_empty());
        for garbage in [
            &[0x12, 0x05, 0x0a][..],
            &[0xff; 12],
            &[0x12, 0x00],
            &[0x08, 0x01],
        ] {
            assert!(matches!(
                links(&empty_file, garbage),
                Err(Error::InvalidDagPb { .. })
            ));
        }
        let cbor = Cid::new_v1(0x71, *empty_file.hash());
        assert!(matches!(
            links(&cbor, b""),
            Err(Error::UnsupportedCodec { codec: 0x71, .. })
        ));
    }
}
