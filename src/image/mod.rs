//! Container images in the swarm: the IPFS-enabled OCI format and eStargz layers.
//!
//! Level 4 of the crate (see `lib.rs`): it may use `unixfs` and below, never `mount` or higher.
//! A push flows source → convert → store; a pull flows store → verify → destination.
//!
//! - [`oci`], [`gojson`], [`estargz`]: the pure formats, from the `cidfs_formats` crate (OCI
//!   types and digests; JSON laid out like Go's; the eStargz footer, TOC, index and builder).
//! - [`location`]: `oci:DIR:TAG`, `docker-archive:FILE`, `docker://…` as users write them.
//! - [`layout`]: OCI layout directories, read and (atomically) written.
//! - [`archive`]: `oci-archive` / `docker-archive` files, extracted safely and written.
//! - [`registry_client`]: a pull-only client of the OCI distribution API, with auth.
//! - [`source`]: any of those opened as one verified image source.
//! - [`convert`]: one layer checked and converted to eStargz.
//! - [`diff_id`]: a gzip blob's digest and DiffID, fed in pieces (pure).
//! - [`blob_store`]: what push and pull need from a node ([`blob_store::BlobStore`]).
//! - [`progress`]: a bar per blob on a terminal; [`blob_file`]: blobs written as they arrive.
//! - [`push`], [`pull`] (with resolve) and [`inspect`]: the three commands.
//! - [`names`] and [`names_sync`]: the swarm-wide name table; [`copies`]: who holds which
//!   image; [`placement`]: who should (pure); [`preload`]: the worker that fetches what the
//!   `[[preload]]` rules give this node. [`frames`]: the framing of those small protocols.

pub use cidfs_formats::{estargz, gojson, oci};

pub mod archive;
pub mod blob_file;
pub mod blob_store;
pub mod convert;
pub mod copies;
pub mod diff_id;
pub mod frames;
pub mod inspect;
pub mod layout;
pub mod location;
pub mod names;
pub mod names_sync;
pub mod placement;
pub mod preload;
pub mod progress;
pub mod pull;
pub mod push;
pub mod registry_client;
pub mod source;
#[cfg(test)]
pub(crate) mod tests;
