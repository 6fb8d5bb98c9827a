//! Lazy rootfs mounts of images (issue 6). Level 5 of the crate: it uses `image` and below.
//!
//! - [`inode`]: the merged rootfs as an immutable inode table, built from the layers' eStargz
//!   TOCs with overlay semantics (pure).
//!
//! Planned (STYLE.md): `reader.rs` (file range → chunks → node range reads → inflate →
//! chunkDigest), `prefetch.rs`, `fs.rs` (a thin fuser adapter).

pub mod inode;
