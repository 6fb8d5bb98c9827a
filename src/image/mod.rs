//! Container images in the swarm: the IPFS-enabled OCI format and eStargz layers.
//!
//! Level 4 of the crate (see `lib.rs`): it may use `unixfs` and below, never `mount` or higher.
//! A push flows source → convert → store; a pull flows store → verify → destination.
//!
//! - [`oci`]: manifest, index and config types, media types, digests (pure).
//! - [`gojson`]: JSON laid out byte for byte like Go's `encoding/json`.
//! - [`estargz`]: the eStargz blob format: footer, TOC JSON, TOC reader and the builder.
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

pub mod archive;
pub mod blob_file;
pub mod blob_store;
pub mod convert;
pub mod diff_id;
pub mod estargz;
pub mod gojson;
pub mod inspect;
pub mod layout;
pub mod location;
pub mod oci;
pub mod progress;
pub mod pull;
pub mod push;
pub mod registry_client;
pub mod source;
#[cfg(test)]
pub(crate) mod tests;
