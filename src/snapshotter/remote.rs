//! Layers served lazily: which `Prepare` calls name a layer of an image in the swarm, and the
//! FUSE mount that serves it.
//!
//! `ctr-remote image rpull` (stargz-snapshotter's `source.AppendDefaultLabelsHandlerWrapper`)
//! puts labels on each layer descriptor, and containerd's unpacker passes them to `Prepare`
//! with the chain ID it wants in `containerd.io/snapshot.ref`:
//! - `containerd.io/snapshot/remote/stargz.reference`: the image reference pulled, here
//!   `HOST:PORT/ipfs/<CID>:latest` or `HOST:PORT/NAME:TAG` (a name of the swarm's table) on a
//!   cidfs registry endpoint;
//! - `containerd.io/snapshot/remote/stargz.digest`: the layer's digest in the manifest;
//! - `…/stargz.layers` and `…/urls.N`: the image's other layers (not needed: the CID names the
//!   whole image).
//!
//! The CRI plugin's `containerd.io/snapshot/cri.image-ref` and `…/cri.layer-digest` (Kubernetes
//! with `disable_snapshot_annotations = false`) are read the same way.
//!
//! The CID is resolved through the node (index, manifest, config: small blocks the registry
//! endpoint fetched a moment before), the layer found by digest in any of the image's
//! manifests, and mounted alone in overlayfs lower-dir form. Only eStargz layers (a
//! `toc.digest` annotation) are served so; containerd unpacks the others.

use anyhow::{anyhow, bail, Context as _};
use cid::Cid;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::image::oci::ANNOTATION_TOC_DIGEST;
use crate::image::pull::{self, ResolveError};
use crate::mount::loads::ImageLayers;
use crate::mount::{MountInfo, Mounts};

/// The chain ID containerd's unpacker wants the layer committed as.
pub const TARGET_LABEL: &str = "containerd.io/snapshot.ref";
/// Marks a snapshot served lazily (stargz-snapshotter's label and value).
pub const REMOTE_LABEL: &str = "containerd.io/snapshot/remote";
pub const REMOTE_VALUE: &str = "remote snapshot";
pub const REFERENCE_LABEL: &str = "containerd.io/snapshot/remote/stargz.reference";
pub const DIGEST_LABEL: &str = "containerd.io/snapshot/remote/stargz.digest";
/// The same from the CRI plugin (Kubernetes) with `disable_snapshot_annotations = false`.
pub const CRI_REFERENCE_LABEL: &str = "containerd.io/snapshot/cri.image-ref";
pub const CRI_DIGEST_LABEL: &str = "containerd.io/snapshot/cri.layer-digest";

/// A layer to serve lazily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub reference: String,
    /// The image by CID (`ipfs/<CID>`), or by a name that the swarm's table may hold (another
    /// registry's image is not found there and is unpacked as usual).
    pub image: crate::cidref::ImageRef,
    pub layer: String,
}

/// Why a snapshot's labels name no layer that can be served.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error(transparent)]
    Reference(#[from] crate::cidref::CidRefError),
    #[error("{reference:?} is labelled but {label} is not")]
    NoDigest {
        reference: String,
        label: &'static str,
    },
}

/// The layer `labels` ask for (rpull's labels, else the CRI plugin's); `Ok(None)` when they
/// carry no reference or one that names no image by CID or name.
pub fn target(labels: &BTreeMap<String, String>) -> Result<Option<Target>, LabelError> {
    let (reference, digest_label) = match labels.get(REFERENCE_LABEL) {
        Some(r) => (r, DIGEST_LABEL),
        None => match labels.get(CRI_REFERENCE_LABEL) {
            Some(r) => (r, CRI_DIGEST_LABEL),
            None => return Ok(None),
        },
    };
    let image = match crate::cidref::parse_registry_image(reference) {
        Ok(c) => c,
        Err(crate::cidref::CidRefError::NotRegistryRef { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let layer = labels
        .get(digest_label)
        .ok_or_else(|| LabelError::NoDigest {
            reference: reference.clone(),
            label: digest_label,
        })?;
    Ok(Some(Target {
        reference: reference.clone(),
        image,
        layer: layer.clone(),
    }))
}

/// A layer of an image in the swarm, as the image describes it (claims, until proven).
#[derive(Debug, Clone)]
pub struct Layer {
    /// The image's CID (the target's name resolved).
    pub image: Cid,
    pub desc: crate::image::oci::Descriptor,
    /// The DiffID the image's config gives it.
    pub diff_id: String,
    /// The CIDs of the image's layers, the lowest first.
    pub image_layers: Arc<[String]>,
}

impl Layer {
    /// What a proof of this layer is recorded under: the blob's CID (its bytes) and the DiffID
    /// proven for them.
    pub fn proof_key(&self) -> String {
        crate::mount::proof::key(&self.desc, &self.diff_id)
    }
}

/// Mounts remote layers.
#[derive(Clone)]
pub struct Remote {
    pub mounts: Mounts,
    /// The swarm's image names (`HOST:PORT/NAME:TAG` references).
    pub names: crate::image::names::Names,
    /// Longest wait for resolving the image and reading the layer's TOC.
    pub timeout: Duration,
}

impl Remote {
    /// Finds layer `t` in its image: an eStargz layer (a TOC digest annotation) and its DiffID.
    /// [`ResolveError::Unreachable`] when the swarm did not deliver the image within the
    /// timeout (worth retrying); [`ResolveError::NotAnImage`] when what it names cannot be
    /// served lazily (not an image, no such layer, not eStargz).
    pub async fn resolve(&self, t: &Target) -> Result<Layer, ResolveError> {
        let what = || format!("layer {} of {}", t.layer, t.reference);
        let work = async {
            let blocks = self.mounts.reader_parts().blocks;
            let image = self.image_cid(&t.image).await?;
            let resolved = pull::resolve(&blocks, image, &[]).await?;
            let mut found = None;
            for image in &resolved.images {
                if image.manifest.layers.iter().any(|l| l.digest == t.layer) {
                    let (_, layers) = image.layers_with_diff_ids()?;
                    let cids = ImageLayers::cids(layers.iter().map(|(l, _)| l));
                    found = layers
                        .into_iter()
                        .find(|(l, _)| l.digest == t.layer)
                        .map(|l| (cids, l));
                    break;
                }
            }
            let (image_layers, (desc, diff_id)) =
                found.ok_or_else(|| anyhow!("image {image} has no layer {}", t.layer))?;
            if !desc.annotations.contains_key(ANNOTATION_TOC_DIGEST) {
                bail!("the layer is not eStargz (no {ANNOTATION_TOC_DIGEST} annotation)");
            }
            Ok(Layer {
                image,
                desc,
                diff_id,
                image_layers,
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Err(_) => Err(ResolveError::Unreachable(anyhow!(
                "{}: no answer within {:?}",
                what(),
                self.timeout
            ))),
            Ok(Ok(layer)) => Ok(layer),
            // the swarm's own verdict, if it gave one; anything else is about the image
            Ok(Err(e)) => Err(match e.downcast::<ResolveError>() {
                Ok(ResolveError::Unreachable(e)) => ResolveError::Unreachable(e.context(what())),
                Ok(ResolveError::NotAnImage(e)) => ResolveError::NotAnImage(e.context(what())),
                Err(e) => ResolveError::NotAnImage(e.context(what())),
            }),
        }
    }

    /// The CID of `image`: a name through the swarm's table (read off the async workers).
    async fn image_cid(&self, image: &crate::cidref::ImageRef) -> anyhow::Result<Cid> {
        let (names, i) = (self.names.clone(), image.clone());
        tokio::task::spawn_blocking(move || names.cid_of(&i))
            .await??
            .ok_or_else(|| anyhow!("no image is named {image} in the swarm"))
    }

    /// Mounts `layer` (of target `t`) at `dir`.
    pub async fn mount(&self, dir: &Path, t: &Target, layer: &Layer) -> anyhow::Result<MountInfo> {
        let image = layer.image.to_string();
        let work = self.mounts.mount_layer(
            dir,
            &image,
            &layer.image_layers,
            &layer.desc,
            &layer.diff_id,
        );
        self.bounded(work)
            .await
            .with_context(|| format!("layer {} of {}", t.layer, t.reference))
    }

    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| anyhow!("no answer within {:?}", self.timeout))
            .and_then(|r| r)
    }
}
