//! The Podman / CRI-O additional layer store (REFERENCE §3, issue 7): a FUSE tree
//! `<mnt>/<base64(ref)>/<digest>/{diff,info,blob}` from which containers/storage takes layers
//! lazily instead of pulling them. Level 6 of the crate.
//!
//! - [`layout`]: the tree's names ↔ keys (image reference, layer digest) and the `info` JSON;
//!   pure. Both keyings are understood: by compressed layer digest (containers/storage 1.43, the
//!   Podman 4.3 of Debian bookworm) and by TOC digest (containers/storage ≥ 1.54).
//!
//! Each layer's `diff` is that layer alone in overlayfs lower-dir form
//! ([`crate::mount::inode::overlay_form`]), read through the mount reader. The FUSE adapter
//! (`fs.rs`) and the daemon's `[store]` section are still to come.

pub mod layout;
