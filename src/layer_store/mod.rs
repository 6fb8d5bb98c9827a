//! The Podman / CRI-O additional layer store (REFERENCE §3, issue 7): a FUSE tree
//! `<mnt>/<base64(ref)>/<digest>/{diff,info,blob}` from which containers/storage takes layers
//! lazily instead of pulling them. Level 6 of the crate.
//!
//! - [`layout`]: the tree's names ↔ keys (image reference, layer digest) and the `info` JSON;
//!   pure. Both keyings are understood: by compressed layer digest (containers/storage 1.43, the
//!   Podman 4.3 of Debian bookworm) and by TOC digest (containers/storage ≥ 1.54).
//!
//! - [`nodes`]: the store's own inodes (images, layers, `info`, `blob`) and its opened layer
//!   trees, bounded; pure.
//! - [`store`]: the store's answers to FUSE requests ([`crate::mount::fs::Requests`], put in
//!   fuser's replies by the mount's adapter [`crate::mount::fs::Fs`]). Each layer's `diff` is that
//!   layer alone in overlayfs lower-dir form ([`crate::mount::inode::overlay_form`]), read chunk
//!   by chunk through the mount reader; `blob` is the compressed layer, read by range.
//!
//! [`mount`] puts the store at a directory (the daemon does so for `layer_store.mountpoint`);
//! containers/storage then finds it through `additionallayerstores = ["DIR:ref"]`.

pub mod layout;
mod nodes;
pub mod store;

use anyhow::Context as _;
use std::path::Path;
use tokio_util::task::AbortOnDropHandle;

use crate::image::oci::Platform;
use crate::mount::{MountInfo, Mounts};

/// Mounts the layer store at `dir` (created when missing), registered with the daemon's mounts.
pub async fn mount(
    mounts: &Mounts,
    dir: &Path,
    trust: crate::config::Trust,
    names: crate::image::names::Names,
) -> anyhow::Result<MountInfo> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir =
        std::fs::canonicalize(dir).with_context(|| format!("layer store {}", dir.display()))?;
    let parts = mounts.reader_parts();
    let stats = std::sync::Arc::new(crate::metrics::MountStats::default());
    let reads = parts.metrics.fuse("layer_store").for_mount(stats.clone());
    let fs = crate::mount::fs::Fs::new(
        store::Store::new(parts, trust, names),
        tokio::runtime::Handle::current(),
        reads,
    );
    let info = MountInfo {
        dir,
        image: "additional-layer-store".into(),
        platform: Platform::host().to_string(),
        layers: 0,
        inodes: 0,
        stats: None,
    };
    // other users (rootless podman) may read it: it only shows what the swarm serves anyway
    mounts
        .attach(
            fs,
            info,
            true,
            false,
            AbortOnDropHandle::new(tokio::spawn(async {})),
            stats,
        )
        .await
}
