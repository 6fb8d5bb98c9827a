//! What the bitswap server reads blocks from. The node never knows how blocks are stored.

use bytes::Bytes;
use cid::Cid;

/// A read-only view of the local blocks. Implementations must be cheap to call from a
/// blocking thread; the server calls them from `spawn_blocking`.
pub trait BlockSource: Send + Sync + 'static {
    /// The block's length, without reading it for the client: answers want-haves.
    fn size(&self, cid: &Cid) -> Option<usize>;
    /// The block's bytes, checked against `cid`: answers want-blocks.
    fn get(&self, cid: &Cid) -> Option<Bytes>;
}
