//! A bounded in-memory cache of inflated eStargz chunks, shared by every mount of the daemon.
//!
//! Concurrent readers of one chunk share one fetch: the first caller runs it, the others wait
//! for its result (a failed fetch is not cached, so the next reader tries again). Finished chunks
//! are kept until their bytes pass the capacity, then dropped oldest first. The kernel's page
//! cache (`FOPEN_KEEP_CACHE`) sits above this one; this cache mainly spares re-inflating a chunk
//! that several small reads (or files sharing one gzip member) touch.

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// A chunk, named only by what was verified, never by what a manifest claims: the bytes the
/// cache holds under a key are those that the key itself determines. `blob` is the layer
/// blob's CID (its bytes are checked against it block by block), marked when the chunk comes
/// from a local spool instead; then the compressed offset of the chunk's gzip member, the inner
/// offset and length, and the `chunkDigest` the bytes were checked against. So two images that
/// claim one layer digest for different blobs never share a chunk, and a hit is always a chunk
/// that matched the digest of the reader's own TOC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub blob: Arc<str>,
    pub offset: u64,
    pub inner_offset: u64,
    pub len: u64,
    pub digest: Option<Arc<str>>,
}

type Cell = Arc<OnceCell<Bytes>>;

#[derive(Default)]
struct Inner {
    cells: HashMap<Key, Cell>,
    /// Finished chunks, oldest first, with their sizes.
    order: VecDeque<(Key, u64)>,
    bytes: u64,
}

pub struct ChunkCache {
    capacity: u64,
    verified: Option<super::verified::Verified>,
    inner: Mutex<Inner>,
    hits: Counter,
    misses: Counter,
}

impl ChunkCache {
    pub fn new(capacity: u64) -> Self {
        ChunkCache {
            capacity,
            verified: None,
            inner: Mutex::new(Inner::default()),
            hits: Counter::default(),
            misses: Counter::default(),
        }
    }

    /// Counts lookups that found their chunk (`hits`) and lookups that fetched it (`misses`).
    pub fn with_counters(mut self, hits: Counter, misses: Counter) -> Self {
        self.hits = hits;
        self.misses = misses;
        self
    }

    /// Remembers across restarts which chunks were checked against their digest (see
    /// [`super::verified`]).
    pub fn with_verified(mut self, verified: super::verified::Verified) -> Self {
        self.verified = Some(verified);
        self
    }

    /// The record of chunks checked on this node, if one is kept.
    pub fn verified(&self) -> Option<&super::verified::Verified> {
        self.verified.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    /// Whether the chunk is cached (finished).
    pub fn contains(&self, key: &Key) -> bool {
        self.lock().cells.get(key).is_some_and(|c| c.initialized())
    }

    /// The chunk's bytes: cached, or from `fetch` (run once however many callers wait).
    /// Cancel-safe: a cancelled fetch leaves the chunk uncached.
    pub async fn get_or_fetch<E, F>(&self, key: &Key, fetch: F) -> Result<Bytes, E>
    where
        F: Future<Output = Result<Bytes, E>>,
    {
        let cell = self.lock().cells.entry(key.clone()).or_default().clone();
        let mut fetched = false;
        let result = cell
            .get_or_try_init(|| {
                fetched = true;
                fetch
            })
            .await
            .cloned();
        let mut inner = self.lock();
        if result.is_ok() {
            if fetched { &self.misses } else { &self.hits }.inc();
        }
        match &result {
            Ok(bytes) if fetched => {
                inner.order.push_back((key.clone(), bytes.len() as u64));
                inner.bytes += bytes.len() as u64;
                while inner.bytes > self.capacity {
                    let Some((old, len)) = inner.order.pop_front() else {
                        break;
                    };
                    inner.cells.remove(&old);
                    inner.bytes -= len;
                }
            }
            Ok(_) => {}
            Err(_) => {
                // forget the empty cell so it does not linger (unless a retry already refilled it)
                if inner
                    .cells
                    .get(key)
                    .is_some_and(|c| Arc::ptr_eq(c, &cell) && !c.initialized())
                {
                    inner.cells.remove(key);
                }
            }
        }
        result
    }

    /// Bytes of finished chunks held.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(offset: u64) -> Key {
        Key {
            blob: Arc::from("bafyx"),
            offset,
            inner_offset: 0,
            len: 6,
            digest: None,
        }
    }

    #[tokio::test]
    async fn one_fetch_for_concurrent_readers_and_bounded_bytes() {
        let cache = Arc::new(ChunkCache::new(10));
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
        let mut waiters = Vec::new();
        for _ in 0..4 {
            let (cache, runs, rx) = (cache.clone(), runs.clone(), rx.clone());
            waiters.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&key(0), async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        if let Some(rx) = rx.lock().await.take() {
                            let _ = rx.await;
                        }
                        Ok::<_, ()>(Bytes::from_static(b"abcdef"))
                    })
                    .await
            }));
        }
        tokio::task::yield_now().await;
        let _ = tx.send(());
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap(), Bytes::from_static(b"abcdef"));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one fetch for all readers");
        assert!(cache.contains(&key(0)));
        // a second 6-byte chunk pushes the total past 10: the oldest goes
        cache
            .get_or_fetch(&key(1), async {
                Ok::<_, ()>(Bytes::from_static(b"ghijkl"))
            })
            .await
            .unwrap();
        assert!(!cache.contains(&key(0)));
        assert!(cache.contains(&key(1)));
        assert_eq!(cache.bytes(), 6);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = ChunkCache::new(100);
        let err = cache
            .get_or_fetch(&key(5), async { Err::<Bytes, _>("boom") })
            .await;
        assert_eq!(err, Err("boom"));
        assert!(!cache.contains(&key(5)));
        let ok = cache
            .get_or_fetch(&key(5), async { Ok::<_, &str>(Bytes::from_static(b"x")) })
            .await;
        assert_eq!(ok, Ok(Bytes::from_static(b"x")));
    }
}
