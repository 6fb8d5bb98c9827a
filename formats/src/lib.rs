//! The formats cidfs reads and writes, as pure code: bytes or a `Read` in, values or bytes
//! out. No async runtime, no block store, no FUSE, no network: the `cidfs` crate does the I/O
//! around them (see `ARCHITECTURE.md`).
//!
//! - [`dag_pb`]: the links of a dag-pb node.
//! - [`elf`]: what an ELF program makes the dynamic loader read (interpreter, libraries).
//! - [`oci`]: OCI image types (descriptor, manifest, index, config), media types, digests.
//! - [`gojson`]: JSON serialized as Go's `encoding/json` does, so digests match Go tools.
//! - [`estargz`]: seekable gzip layers: footer, TOC, chunk index, tar reader and builder.
//! - [`unixfs`]: UnixFS files as kubo's `ipfs add` encodes them (the blocks and the root CID).

pub mod dag_pb;
pub mod elf;
pub mod estargz;
pub mod gojson;
pub mod oci;
pub mod unixfs;
