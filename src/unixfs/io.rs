//! UnixFS files over the block service: the one add path ([`add_stream`], for `add`, `image
//! push` and `add --only-hash`) and the one read of a file range ([`cat`] as a stream,
//! [`read_range`] into a buffer), with the configured readahead. The format work is [`Adder`]
//! and [`super::cat()`]; this module moves their bytes between blocking threads, the store and
//! the swarm.

use anyhow::Context as _;
use bytes::Bytes;
use cid::Cid;

use super::{Adder, ReadError};
use crate::blockservice::{BlockGet, BlockService};
use crate::blockstore::Blocks;

/// Most bytes [`read_range`] reserves before they arrive.
const MAX_PREALLOC: u64 = 8 << 20;

/// Why [`read_range`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error("timed out after {} s", .0.as_secs())]
    Timeout(std::time::Duration),
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl RangeError {
    /// Whether the read ran out of time, its own or a block's (no peer delivered in time).
    pub fn is_timeout(&self) -> bool {
        match self {
            RangeError::Timeout(_) => true,
            RangeError::Read(e) => e.fetch().is_some_and(|f| f.is_timeout()),
        }
    }

    /// As an `anyhow` error whose chain starts with the read's own cause (a `FetchError`
    /// stays first, for callers that look for it), not with this wrapper.
    pub fn into_cause(self) -> anyhow::Error {
        match self {
            RangeError::Read(e) => e.into(),
            timeout => timeout.into(),
        }
    }
}

/// Bytes [`add_stream`] hashes and stores at a time.
pub const ADD_BATCH: usize = 4 << 20;

/// What [`add_stream`] added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub root: Cid,
    /// File bytes.
    pub size: u64,
    /// Sum of the lengths of the file's blocks (kubo's `Size`).
    pub cumulative_size: u64,
}

/// Why [`add_stream`] failed: the caller's input or this node.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("reading the input: {0:#}")]
    Input(anyhow::Error),
    #[error("storing the blocks: {0:#}")]
    Store(anyhow::Error),
}

/// Stores blocks an adder just hashed (`None`: only hashing).
fn put_all(store: Option<&dyn Blocks>, blocks: &[(Cid, Vec<u8>)]) -> anyhow::Result<()> {
    if let Some(store) = store {
        for (cid, data) in blocks {
            store
                .put_hashed(cid, data)
                .with_context(|| format!("storing block {cid}"))?;
        }
    }
    Ok(())
}

/// An add's adder: in hand, or inside the blocking task that hashes and stores a batch.
enum Held {
    Here(Box<Adder>),
    Busy(tokio::task::JoinHandle<anyhow::Result<Adder>>),
}

impl Held {
    /// The adder, once its batch is done.
    async fn take(self) -> Result<Adder, AddError> {
        match self {
            Held::Here(adder) => Ok(*adder),
            Held::Busy(task) => task
                .await
                .map_err(|e| AddError::Store(e.into()))?
                .map_err(AddError::Store),
        }
    }
}

/// Bytes `offset..offset + len` (to the end without `len`) of the file under `root`, read
/// through `getter` as a stream, with the configured readahead.
pub fn cat<G: BlockGet>(
    blocks: &BlockService,
    getter: G,
    root: Cid,
    offset: u64,
    len: Option<u64>,
) -> impl futures::Stream<Item = Result<Bytes, ReadError>> + Send + 'static {
    use futures::StreamExt as _;
    // the stream ends once the blocks it fetched are stored, not only handed over
    let settled = futures::stream::once({
        let getter = getter.clone();
        async move { getter.settle().await }
    })
    .filter_map(|()| std::future::ready(None));
    super::cat(getter, root, offset, len, blocks.readahead()).chain(settled)
}

/// [`cat`] into one buffer, within `timeout` when given. The buffer grows as bytes
/// arrive: `len` comes from an index, not trusted to size it.
pub async fn read_range<G: BlockGet>(
    blocks: &BlockService,
    getter: G,
    root: Cid,
    offset: u64,
    len: Option<u64>,
    timeout: Option<std::time::Duration>,
) -> Result<Vec<u8>, RangeError> {
    let mut out = Vec::with_capacity(len.unwrap_or(0).min(MAX_PREALLOC) as usize);
    read_range_with(blocks, getter, root, offset, len, timeout, |piece| {
        out.extend_from_slice(&piece);
        std::future::ready(true)
    })
    .await?;
    Ok(out)
}

/// [`cat`] piece by piece into `sink`, in order, within `timeout` when given; stops early (and
/// well) when `sink` returns false. For a consumer that works while the rest arrives.
pub async fn read_range_with<G: BlockGet, F: std::future::Future<Output = bool>>(
    blocks: &BlockService,
    getter: G,
    root: Cid,
    offset: u64,
    len: Option<u64>,
    timeout: Option<std::time::Duration>,
    mut sink: impl FnMut(Bytes) -> F,
) -> Result<(), RangeError> {
    use futures::StreamExt as _;
    let read = async {
        // a range read does not wait for its fetched blocks to be stored (see `cat`)
        let s = super::cat(getter, root, offset, len, blocks.readahead());
        futures::pin_mut!(s);
        while let Some(piece) = s.next().await {
            if !sink(piece?).await {
                break;
            }
        }
        Ok(())
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, read)
            .await
            .map_err(|_| RangeError::Timeout(t))?,
        None => read.await,
    }
}

/// Adds a file, read from `input` in pieces of any size, as a UnixFS DAG (`adder` cuts it:
/// kubo's layout or planned leaf ends) and returns its root, size and cumulative size;
/// `store = false` only computes them. The one add path of `add`, `image push` and `add
/// --only-hash`.
///
/// Input is taken in [`ADD_BATCH`] batches; each is hashed and stored on a blocking thread
/// while the next one is read, and its blocks go to the store as they were hashed
/// ([`Blocks::put_hashed`]). `progress` is called with the bytes of each piece read.
pub async fn add_stream<E: Into<anyhow::Error>>(
    service: &BlockService,
    adder: Adder,
    input: impl futures::Stream<Item = Result<Bytes, E>>,
    store: bool,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Added, AddError> {
    use futures::StreamExt as _;
    let blocks = store.then(|| service.store().clone());
    let step = |mut adder: Adder, buf: Vec<u8>| {
        let blocks = blocks.clone();
        tokio::task::spawn_blocking(move || {
            let made = adder.push(&buf);
            put_all(blocks.as_deref(), &made)?;
            // a pinned add ends by making its blocks durable: let the disk start on them now
            if let Some(b) = &blocks {
                b.start_writeback();
            }
            anyhow::Ok(adder)
        })
    };
    futures::pin_mut!(input);
    let mut held = Held::Here(Box::new(adder));
    let mut buf = Vec::with_capacity(ADD_BATCH);
    loop {
        let piece = input
            .next()
            .await
            .transpose()
            .map_err(|e| AddError::Input(e.into()))?;
        if let Some(piece) = &piece {
            progress(piece.len() as u64);
            buf.extend_from_slice(piece);
        }
        if buf.len() >= ADD_BATCH || (piece.is_none() && !buf.is_empty()) {
            let full = std::mem::replace(&mut buf, Vec::with_capacity(ADD_BATCH));
            held = Held::Busy(step(held.take().await?, full));
        }
        if piece.is_none() {
            break;
        }
    }
    let adder = held.take().await?;
    let finish = tokio::task::spawn_blocking(move || {
        let size = adder.bytes_in();
        let mut cumulative_size = adder.cumulative_size();
        let (root, rest) = adder.finish();
        cumulative_size += rest.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        put_all(blocks.as_deref(), &rest)?;
        anyhow::Ok(Added {
            root,
            size,
            cumulative_size,
        })
    });
    finish
        .await
        .map_err(|e| AddError::Store(e.into()))?
        .map_err(AddError::Store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockservice::FetchError;
    use crate::blockstore::{Blocks, MemStore};
    use crate::unixfs::{add_bytes, AddOptions};
    use std::sync::Arc;

    /// The one add path gives the CIDs of the reference adder however its input is cut, stores
    /// every block with `store` and none without.
    #[tokio::test]
    async fn add_stream_matches_the_reference_adder_in_any_pieces() {
        let data: Vec<u8> = (0..(ADD_BATCH * 2 + 12_345) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let opts = AddOptions::default();
        let reference = add_bytes(&MemStore::default(), &data, &opts).unwrap();
        for piece in [1 << 20, 65_537, data.len()] {
            let store = Arc::new(MemStore::default());
            let service = BlockService::new(store.clone(), None);
            let input = futures::stream::iter(
                data.chunks(piece)
                    .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            );
            let seen = std::sync::atomic::AtomicU64::new(0);
            let added = add_stream(&service, Adder::new(&opts).unwrap(), input, true, &|n| {
                seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            })
            .await
            .unwrap();
            assert_eq!(added.root, reference.root, "pieces of {piece}");
            assert_eq!(added.size, data.len() as u64);
            assert_eq!(added.cumulative_size, reference.cumulative_size);
            assert_eq!(seen.into_inner(), data.len() as u64);
            assert_eq!(store.stat().unwrap().blocks as usize, reference.blocks);
        }
        let store = Arc::new(MemStore::default());
        let service = BlockService::new(store.clone(), None);
        let input = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(data))]);
        let added = add_stream(&service, Adder::new(&opts).unwrap(), input, false, &|_| {})
            .await
            .unwrap();
        assert_eq!(added.root, reference.root);
        assert_eq!(
            store.stat().unwrap().blocks,
            0,
            "only hashing stored blocks"
        );
        let failing = futures::stream::iter([Err::<Bytes, _>(std::io::Error::other("cut"))]);
        let err = add_stream(&service, Adder::new(&opts).unwrap(), failing, true, &|_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, AddError::Input(_)), "{err}");
    }

    /// A range no peer delivers in time is a timeout (worth retrying); the same range on an
    /// offline node is not: the edges tell the two apart by [`RangeError::is_timeout`].
    #[tokio::test]
    async fn a_read_nobody_answers_times_out_and_an_offline_one_does_not() {
        let cid = crate::test_utils::absent_cid();
        let (online, task) = crate::test_utils::lone_node(std::time::Duration::from_secs(1));
        let e = read_range(&online, online.session(), cid, 0, None, None)
            .await
            .unwrap_err();
        assert!(e.is_timeout(), "{e}");
        let RangeError::Read(read) = &e else {
            panic!("{e}")
        };
        assert!(
            matches!(read.fetch(), Some(FetchError::Timeout { .. })),
            "{e}"
        );
        task.abort();
        let offline = BlockService::new(Arc::new(MemStore::default()), None);
        let e = read_range(&offline, offline.session(), cid, 0, None, None)
            .await
            .unwrap_err();
        assert!(!e.is_timeout(), "{e}");
        let RangeError::Read(read) = &e else {
            panic!("{e}")
        };
        assert!(matches!(read.fetch(), Some(FetchError::Missing(_))), "{e}");
    }
}
