//! Level 3: UnixFS files, a thin layer over the `rust-unixfs` crate.
//!
//! - [`add`]: [`Adder`] turns a byte stream into the same blocks and root CID as kubo's
//!   `ipfs add` (balanced layout, fixed-size chunks, raw leaves for CIDv1); [`add_bytes`] stores
//!   them in a [`Blocks`](crate::blockstore::Blocks) store.
//! - [`cat`]: [`stat()`] and the range reader [`cat()`] over any [`BlockGet`] (the local store, or
//!   the block service that asks peers). A range read fetches only the blocks covering the range,
//!   several at a time.
//! - [`io`]: the one add path and the one range read over the block service, with its readahead.
//!
//! Imports [`crate::blockservice`] (level 2) and [`crate::blockstore`] (level 1).

pub mod add;
pub mod cat;
pub mod io;

pub use crate::blockservice::BlockGet;
pub use add::{add_bytes, AddOptions, AddResult, Adder};
pub use cat::{cat, stat, FileInfo, FileKind, ReadError};

use crate::blockstore;

/// Errors of [`Adder`] and [`add_bytes`]. Reading uses `anyhow` (see [`cat()`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Chunks must hold at least one byte and fit kubo's limit.
    #[error("chunk size {0} is out of range: it must be 1..={max} bytes", max = add::MAX_CHUNK_SIZE)]
    ChunkSize(usize),
    /// A file node must have room for at least two links.
    #[error("max links {0} is out of range: it must be 2..={max}", max = add::MAX_LINKS)]
    MaxLinks(usize),
    /// Only CIDv0 and CIDv1 exist.
    #[error("unsupported CID version {0}: use 0 or 1")]
    CidVersion(u8),
    /// Storing a block failed.
    #[error(transparent)]
    Store(#[from] blockstore::Error),
}
