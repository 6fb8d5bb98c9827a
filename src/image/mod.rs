//! Container images in the swarm: the IPFS-enabled OCI format and eStargz layers.
//!
//! Level 4 of the crate (see `lib.rs`): it may use `unixfs` and below, never `mount` or higher.
//!
//! - [`oci`]: manifest, index and config types, media types, digests (pure).
//! - [`gojson`]: JSON laid out byte for byte like Go's `encoding/json`.
//! - [`estargz`]: the eStargz blob format: footer, TOC JSON and the builder.
//! - [`registry`]: a pull-only client of the OCI distribution API, with auth.

pub mod estargz;
pub mod gojson;
pub mod oci;
pub mod registry;
