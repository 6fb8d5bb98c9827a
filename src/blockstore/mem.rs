//! [`MemStore`]: an in-memory [`Blocks`] implementation for tests and throwaway nodes.
//!
//! One `RwLock` over a map of blocks, a set of pins and a byte counter. A poisoned lock is
//! recovered: every update leaves the maps consistent before it can panic.

use std::collections::{HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use cid::Cid;

use super::{verify, Blocks, Cached, Error, StoreStat};

/// In-memory block store. Nothing survives a drop; `flush` does nothing.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    blocks: HashMap<Cid, Bytes>,
    pins: HashSet<Cid>,
    bytes: u64,
}

impl MemStore {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        crate::sync::read(&self.inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        crate::sync::write(&self.inner)
    }
}

#[cfg(test)]
impl MemStore {
    /// Replaces a stored block's bytes unchecked, as rot on disk would (tests only).
    pub fn rot(&self, cid: &Cid, data: &[u8]) {
        self.write()
            .blocks
            .insert(*cid, Bytes::copy_from_slice(data));
    }
}

impl Blocks for MemStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, Error> {
        Ok(self.read().blocks.get(cid).cloned())
    }

    fn get_cached(&self, cid: &Cid) -> Result<Cached, Error> {
        Ok(match self.get(cid)? {
            Some(data) => Cached::Bytes(data),
            None => Cached::Absent,
        })
    }

    fn has(&self, cid: &Cid) -> Result<bool, Error> {
        Ok(self.read().blocks.contains_key(cid))
    }

    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        verify(cid, data)?;
        let mut inner = self.write();
        if !inner.blocks.contains_key(cid) {
            inner.blocks.insert(*cid, Bytes::copy_from_slice(data));
            inner.bytes += data.len() as u64;
        }
        Ok(())
    }

    fn delete(&self, cid: &Cid) -> Result<(), Error> {
        let mut inner = self.write();
        if let Some(old) = inner.blocks.remove(cid) {
            inner.bytes = inner.bytes.saturating_sub(old.len() as u64);
        }
        Ok(())
    }

    fn cids(&self) -> Result<Vec<Cid>, Error> {
        Ok(self.read().blocks.keys().copied().collect())
    }

    fn stat(&self) -> Result<StoreStat, Error> {
        let inner = self.read();
        Ok(StoreStat {
            blocks: inner.blocks.len() as u64,
            bytes: inner.bytes,
        })
    }

    fn pin_all(&self, roots: &[Cid]) -> Result<(), Error> {
        self.write().pins.extend(roots.iter().copied());
        Ok(())
    }

    fn unpin(&self, root: &Cid) -> Result<bool, Error> {
        Ok(self.write().pins.remove(root))
    }

    fn pins(&self) -> Result<Vec<Cid>, Error> {
        Ok(self.read().pins.iter().copied().collect())
    }

    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}
