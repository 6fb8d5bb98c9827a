//! Level 3: UnixFS files, a thin layer over the `rust-unixfs` crate.
//!
//! - [`add`]: [`Adder`] (pure, in `cidfs_formats::unixfs`) turns a byte stream into the same
//!   blocks and root CID as kubo's `ipfs add` (balanced layout, fixed-size chunks, raw leaves for
//!   CIDv1); [`add_bytes`] stores them in a [`Blocks`](crate::blockstore::Blocks) store.
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

/// Errors of [`add_bytes`]. Reading answers a [`ReadError`] (see [`cat()`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options are out of range.
    #[error(transparent)]
    Options(#[from] add::OptionsError),
    /// Storing a block failed.
    #[error(transparent)]
    Store(#[from] blockstore::Error),
}
