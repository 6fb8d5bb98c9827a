//! What the bitswap server reads blocks from. The node never knows how blocks are stored.

use bytes::Bytes;
use cid::Cid;

/// A read-only view of the local blocks. Implementations must be cheap to call (one key): the
/// server calls `size`, and `get` of blocks of at most
/// [`crate::bitswap::server::INLINE_BLOCK_SIZE`] bytes, on the async worker, and `get` of
/// bigger ones from `spawn_blocking`.
pub trait BlockSource: Send + Sync + 'static {
    /// The block's length, without reading it for the client: answers want-haves.
    fn size(&self, cid: &Cid) -> Option<usize>;
    /// The block's bytes, checked against `cid`: answers want-blocks.
    fn get(&self, cid: &Cid) -> Option<Bytes>;
}

/// Blocks held in a map: the source of the unit tests and of `examples/stack_ceiling.rs`. It
/// hands out what it was given, unchecked: whoever fills it vouches for the CIDs.
#[derive(Default)]
pub struct MemSource(pub std::collections::HashMap<Cid, Bytes>);

impl BlockSource for MemSource {
    fn size(&self, cid: &Cid) -> Option<usize> {
        self.0.get(cid).map(Bytes::len)
    }
    fn get(&self, cid: &Cid) -> Option<Bytes> {
        self.0.get(cid).cloned()
    }
}
