//! [`SledStore`]: the on-disk [`Blocks`] implementation.
//!
//! One sled database with three trees:
//! - `blocks`: CID bytes → block bytes;
//! - `pins`: CID bytes → empty (recursive pin roots);
//! - `meta`: `stat` → 16 bytes (block count, total bytes; both u64 big-endian).
//!
//! `put` and `delete` change `blocks` and `meta` in one sled transaction, so the counters stay
//! exact across crashes and restarts. A database without counters (created before they existed)
//! is counted once on open.

use std::path::Path;

use ::sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use ::sled::{Db, Transactional, Tree};
use bytes::Bytes;
use cid::Cid;

use super::{verify, Blocks, Error, StoreStat};

const BLOCKS_TREE: &str = "blocks";
const PINS_TREE: &str = "pins";
const META_TREE: &str = "meta";
const STAT_KEY: &[u8] = b"stat";

/// A sled-backed block store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: Db,
    blocks: Tree,
    pins: Tree,
    meta: Tree,
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`, with a page cache of at most
    /// `cache_capacity_bytes`.
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<Self, Error> {
        let db = ::sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .mode(::sled::Mode::HighThroughput)
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
        };
        if store.meta.get(STAT_KEY)?.is_none() {
            store.recount()?;
        }
        Ok(store)
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
        tracing::info!(
            blocks = stat.blocks,
            bytes = stat.bytes,
            "counted block store"
        );
        Ok(())
    }

    /// Runs `f` in a transaction over `blocks` and `meta`, with the current counters.
    fn update<T>(
        &self,
        f: impl Fn(&TransactionalTree, &mut StoreStat) -> Result<T, TxError>,
    ) -> Result<T, Error> {
        (&self.blocks, &self.meta)
            .transaction(|(blocks, meta)| {
                let mut stat = match meta.get(STAT_KEY)? {
                    Some(raw) => decode_stat(&raw).map_err(ConflictableTransactionError::Abort)?,
                    None => StoreStat::default(),
                };
                let before = stat;
                let out = f(blocks, &mut stat)?;
                if stat != before {
                    meta.insert(STAT_KEY, &encode_stat(stat)[..])?;
                }
                Ok(out)
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => Error::Io(e),
            })
    }
}

type TxError = ConflictableTransactionError<Error>;

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
        let key = cid.to_bytes();
        if self.blocks.contains_key(&key)? {
            return Ok(());
        }
        self.update(|blocks, stat| {
            if blocks.get(&key)?.is_none() {
                blocks.insert(key.as_slice(), data)?;
                stat.blocks += 1;
                stat.bytes += data.len() as u64;
            }
            Ok(())
        })
    }

    fn delete(&self, cid: &Cid) -> Result<(), Error> {
        let key = cid.to_bytes();
        if !self.blocks.contains_key(&key)? {
            return Ok(());
        }
        self.update(|blocks, stat| {
            if let Some(old) = blocks.remove(key.as_slice())? {
                stat.blocks = stat.blocks.saturating_sub(1);
                stat.bytes = stat.bytes.saturating_sub(old.len() as u64);
            }
            Ok(())
        })
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

    fn pin(&self, root: &Cid) -> Result<(), Error> {
        self.pins.insert(root.to_bytes(), &[])?;
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

    fn flush(&self) -> Result<(), Error> {
        self.db.flush()?;
        Ok(())
    }
}
