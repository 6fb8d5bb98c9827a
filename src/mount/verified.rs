//! Which chunks this node has already checked against their `chunkDigest`, kept across restarts
//! (a tree of the block store's sled database).
//!
//! A chunk's [`Key`] names only what determines its bytes: the layer blob's CID (every block of
//! it is checked against its CID when it arrives and by CRC32 when it is read back), where its
//! gzip member starts, the inner offset and length, and the digest. So "the chunk under this key
//! inflates to bytes with this digest" is a fact about immutable content: once a read has
//! checked it, later reads of the same chunk (after a restart, or once the in-memory
//! [`super::cache::ChunkCache`] dropped it) only inflate. This is what stargz-snapshotter's
//! on-disk chunk cache does with chunks it verified once. A chunk whose check failed is never
//! recorded. Keys of local spools (offsets of a file this daemon converted) are not recorded.
//!
//! Bounded: past [`Verified::MAX`] records the tree is cleared and chunks are checked again.

use std::sync::atomic::{AtomicU64, Ordering};

use super::cache::Key;

/// The sled tree of the block store's database that holds the records.
pub const TREE: &str = "mount_verified_chunks";

/// Records checked for the bound every this many inserts (counting a tree is a scan).
const CHECK_EVERY: u64 = 4096;

pub struct Verified {
    tree: sled::Tree,
    inserts: AtomicU64,
    max: usize,
}

impl Verified {
    /// Most records kept: ~150 bytes each, so ~150 MB of sled at worst, for at least that many
    /// chunks read (a chunk is at least one file's data).
    pub const MAX: usize = 1_000_000;

    pub fn new(tree: sled::Tree) -> Self {
        Verified {
            tree,
            inserts: AtomicU64::new(0),
            max: Self::MAX,
        }
    }

    /// Whether chunk `key` was checked against its digest on this node. Keys without a digest
    /// are never recorded.
    pub fn contains(&self, key: &Key) -> bool {
        encode(key).is_some_and(|k| self.tree.contains_key(k).unwrap_or(false))
    }

    /// Records kept.
    pub fn records(&self) -> usize {
        self.tree.len()
    }

    /// Records that chunk `key`'s bytes matched its digest. Blocking (sled may write); errors
    /// only cost a later check, so they are logged, not returned.
    pub fn insert(&self, key: &Key) {
        let Some(k) = encode(key) else { return };
        if self.inserts.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY == CHECK_EVERY - 1
            && self.tree.len() >= self.max
        {
            tracing::info!(
                "{} chunks recorded as checked: forgetting them (they are checked again when read)",
                self.max
            );
            if let Err(e) = self.tree.clear() {
                tracing::warn!("clearing the checked-chunk records: {e}");
            }
        }
        if let Err(e) = self.tree.insert(k, &[]) {
            tracing::warn!("recording a checked chunk: {e}");
        }
    }
}

/// The record of `key`: the digest, the offsets and then the blob's CID; `None` without a
/// digest.
fn encode(key: &Key) -> Option<Vec<u8>> {
    let digest = key.digest.as_deref()?;
    let mut k = Vec::with_capacity(digest.len() + key.blob.len() + 26);
    for n in [digest.len(), key.blob.len()] {
        k.extend_from_slice(&(n as u16).to_be_bytes());
    }
    k.extend_from_slice(digest.as_bytes());
    k.extend_from_slice(&key.offset.to_be_bytes());
    k.extend_from_slice(&key.inner_offset.to_be_bytes());
    k.extend_from_slice(&key.len.to_be_bytes());
    k.extend_from_slice(key.blob.as_bytes());
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(blob: &str, offset: u64, digest: Option<&str>) -> Key {
        Key {
            blob: Arc::from(blob),
            offset,
            inner_offset: 0,
            len: 10,
            digest: digest.map(Arc::from),
        }
    }

    #[test]
    fn a_record_names_exactly_its_chunk_and_outlives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = key("bafya", 0, Some("sha256:aa"));
        {
            let db = sled::open(dir.path()).unwrap();
            let v = Verified::new(db.open_tree(TREE).unwrap());
            assert!(!v.contains(&a));
            v.insert(&a);
            assert!(v.contains(&a));
            // any part that differs is another chunk
            for other in [
                key("bafyb", 0, Some("sha256:aa")),
                key("bafya", 1, Some("sha256:aa")),
                key("bafya", 0, Some("sha256:ab")),
                Key {
                    inner_offset: 1,
                    ..a.clone()
                },
                Key {
                    len: 11,
                    ..a.clone()
                },
            ] {
                assert!(!v.contains(&other), "{other:?}");
            }
            // no digest: nothing was checked, nothing is recorded
            let bare = key("bafya", 0, None);
            v.insert(&bare);
            assert!(!v.contains(&bare));
            db.flush().unwrap();
        }
        let db = crate::test_utils::reopen(|| sled::open(dir.path()));
        assert!(Verified::new(db.open_tree(TREE).unwrap()).contains(&a));
    }

    #[test]
    fn the_records_are_bounded() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let v = Verified {
            max: 100,
            ..Verified::new(db.open_tree(TREE).unwrap())
        };
        for i in 0..CHECK_EVERY {
            v.insert(&key("bafyb", i, Some("d")));
        }
        assert!(v.tree.len() < 100);
        assert!(v.contains(&key("bafyb", CHECK_EVERY - 1, Some("d"))));
    }
}
