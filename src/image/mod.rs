//! Container images in the swarm: the IPFS-enabled OCI format and eStargz layers.
//!
//! Level 4 of the crate (see `lib.rs`): it may use `unixfs` and below, never `mount` or higher.
//!
//! Planned submodules (REFERENCE §1-§2); only [`estargz`] exists so far:
//! - `oci`: manifest, index and config types and media types (pure).
//! - [`estargz`]: the eStargz blob format: footer, TOC JSON and, later, the builder.
//! - `resolve`: image references (`CID`, `ipfs://CID`, `/ipfs/CID`) to root CIDs.
//! - `push`: convert an image source to the IPFS-enabled format and add it to the store.
//! - `pull`: fetch an image by CID, verify every blob and write it out.

pub mod estargz;
