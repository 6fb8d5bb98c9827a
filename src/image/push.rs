//! `image push`: read an image from a [`Source`], convert its layers to eStargz, add every blob
//! to the node, and write the IPFS-enabled OCI format (REFERENCE §2): each descriptor gets
//! `urls: ["ipfs://<CID>"]`, Docker media types become OCI ones, and the image is named by the
//! CID of its index descriptor's JSON.
//!
//! Blobs are added unpinned and pinned together at the end, so a push that fails half-way
//! leaves nothing pinned (garbage collection takes what it added).

use anyhow::{anyhow, bail, Context};
use cid::Cid;
use std::collections::HashMap;
use std::path::Path;

use super::blob_store::BlobStore;
use super::convert;
use super::estargz::build::BuildOptions;
use super::oci::{self, ConfigSummary, Descriptor, Index, Kind, Manifest, Platform};
use super::progress::{short, Reporter};
use super::source::Source;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// eStargz conversion options; `None` keeps layers as they are.
    pub estargz: Option<BuildOptions>,
    /// Keep only these platforms (empty: all).
    pub platforms: Vec<Platform>,
    /// How eStargz layer blobs are cut into blocks.
    pub dag: DagLayout,
    /// Convert layers that already are eStargz again (with `estargz`'s options) instead of
    /// keeping them byte for byte.
    pub reconvert: bool,
    /// Files to put first (and mark for prefetching) in particular layers, by the source layer's
    /// digest; they replace `estargz.prefetch` for that layer (`image optimize`).
    pub layer_prefetch: HashMap<String, Vec<String>>,
}

/// How a layer blob is cut into UnixFS leaves. Either way the blob's bytes and digest are the
/// same, and any UnixFS reader (kubo, Helia, stargz-snapshotter, nerdctl) reads it by its CID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DagLayout {
    /// eStargz layers end their leaves where their gzip members end (grouping small ones,
    /// splitting big ones every 256 KiB), so a file's member has the same blocks in every image
    /// and version that holds it: a rebuilt image moves only its new files. Other layers are
    /// cut as `fixed`.
    #[default]
    Members,
    /// Every 256 KiB, the CIDs of `ipfs add --cid-version=1` (and of `nerdctl push ipfs://`).
    Fixed,
}

/// What a push produced.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The image CID: the CID of the index descriptor's JSON.
    pub root: Cid,
    /// Every CID added (layers, configs, manifests, index, root), all pinned.
    pub cids: Vec<Cid>,
}

struct Selected {
    desc: Descriptor,
    manifest: Manifest,
    config: Vec<u8>,
    summary: ConfigSummary,
}

pub async fn push<S: BlobStore>(
    source: &Source,
    store: &S,
    opts: &PushOptions,
    work: &Path,
    rep: &dyn Reporter,
) -> anyhow::Result<Pushed> {
    let (top_type, top) = source.top().await?;
    let (_, kind) = oci::classify(&top_type).map_err(|e| anyhow!("image: {e}"))?;
    let (candidates, index_annotations) = match kind {
        Kind::Index => {
            let index: Index = serde_json::from_slice(&top).context("bad image index JSON")?;
            (index.manifests, index.annotations)
        }
        Kind::Manifest => {
            let mut d = Descriptor::of(&top_type, &top);
            d.media_type = top_type.clone();
            (vec![d], Default::default())
        }
        _ => bail!("the image's top object has media type {top_type}, not an index or manifest"),
    };
    let selected = select(source, &top_type, &top, candidates, &opts.platforms).await?;

    let mut cids = Vec::new();
    let mut done: HashMap<String, (convert::Layer, Cid)> = HashMap::new();
    let mut manifests = Vec::new();
    let total_layers: usize = selected.iter().map(|s| s.manifest.layers.len()).sum();
    let mut n = 0;
    for s in selected {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, l) in s.manifest.layers.iter().enumerate() {
            n += 1;
            if let Some((layer, cid)) = done.get(&l.digest) {
                let mut d = layer.desc.clone();
                d.set_cid(cid);
                layers.push(d);
                diff_ids.push(layer.diff_id.clone());
                continue;
            }
            let label = format!("layer {n}/{total_layers} {}", short(&l.digest));
            let (layer, cid) = push_layer(
                source,
                store,
                l,
                &s.summary.rootfs.diff_ids[i],
                opts,
                work,
                rep,
                &label,
            )
            .await
            .with_context(|| format!("layer {} of {}", i + 1, short(&s.desc.digest)))?;
            let mut d = layer.desc.clone();
            d.set_cid(&cid);
            layers.push(d);
            diff_ids.push(layer.diff_id.clone());
            cids.push(cid);
            done.insert(l.digest.clone(), (layer, cid));
        }
        // config: new DiffIDs when layers changed, otherwise the bytes as they were
        let config_bytes = if diff_ids != s.summary.rootfs.diff_ids {
            oci::set_diff_ids(&s.config, &diff_ids).map_err(|e| anyhow!(e))?
        } else {
            s.config.clone()
        };
        let mut config = Descriptor::of(oci::OCI_CONFIG, &config_bytes);
        config.annotations = s.manifest.config.annotations.clone();
        let cid = store
            .add_bytes(config_bytes)
            .await
            .context("adding the config")?;
        config.set_cid(&cid);
        cids.push(cid);

        let manifest = Manifest {
            schema_version: 2,
            media_type: oci::OCI_MANIFEST.into(),
            artifact_type: s.manifest.artifact_type.clone(),
            config,
            layers,
            subject: None,
            annotations: s.manifest.annotations.clone(),
        };
        let bytes = oci::to_json(&manifest);
        let mut desc = Descriptor::of(oci::OCI_MANIFEST, &bytes);
        desc.annotations = s.desc.annotations.clone();
        desc.annotations.remove(oci::ANNOTATION_REF_NAME);
        desc.platform = Some(
            s.desc
                .platform
                .clone()
                .unwrap_or_else(|| s.summary.platform()),
        );
        let cid = store.add_bytes(bytes).await.context("adding a manifest")?;
        desc.set_cid(&cid);
        cids.push(cid);
        manifests.push(desc);
    }

    let mut index = Index::new(manifests);
    index.annotations = index_annotations;
    let bytes = oci::to_json(&index);
    let mut index_desc = Descriptor::of(oci::OCI_INDEX, &bytes);
    let cid = store.add_bytes(bytes).await.context("adding the index")?;
    index_desc.set_cid(&cid);
    cids.push(cid);
    let root = store
        .add_bytes(oci::to_json(&index_desc))
        .await
        .context("adding the root descriptor")?;
    cids.push(root);
    // one pin of everything: a failure or a crash half-way pins nothing (L2)
    store
        .pin_all(&cids)
        .await
        .with_context(|| format!("pinning the image's {} CIDs", cids.len()))?;
    Ok(Pushed { root, cids })
}

/// The manifests to push, with their configs, narrowed to `platforms`.
async fn select(
    source: &Source,
    top_type: &str,
    top: &[u8],
    candidates: Vec<Descriptor>,
    platforms: &[Platform],
) -> anyhow::Result<Vec<Selected>> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for desc in candidates {
        let (_, kind) = oci::classify(&desc.media_type)
            .map_err(|e| anyhow!("index entry {}: {e}", desc.digest))?;
        if kind != Kind::Manifest {
            bail!(
                "index entry {} is a {}; nested indexes are not supported",
                desc.digest,
                desc.media_type
            );
        }
        let bytes = if desc.digest == oci::sha256_digest(top) && desc.media_type == top_type {
            top.to_vec()
        } else {
            source
                .json(&desc)
                .await
                .with_context(|| format!("reading manifest {}", desc.digest))?
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("manifest {}: bad JSON", desc.digest))?;
        if manifest.schema_version != 2 {
            bail!(
                "manifest {}: schemaVersion {} is not supported",
                desc.digest,
                manifest.schema_version
            );
        }
        let (_, ckind) = oci::classify(&manifest.config.media_type)
            .map_err(|e| anyhow!("manifest {} config: {e}", desc.digest))?;
        if ckind != Kind::Config {
            bail!(
                "manifest {}: config has media type {}",
                desc.digest,
                manifest.config.media_type
            );
        }
        for l in &manifest.layers {
            oci::classify(&l.media_type)
                .map_err(|e| anyhow!("manifest {} layer {}: {e}", desc.digest, l.digest))?;
        }
        let config = source
            .json(&manifest.config)
            .await
            .context("reading the image config")?;
        let summary = ConfigSummary::parse(&config).map_err(|e| anyhow!(e))?;
        let platform = desc.platform.clone().unwrap_or_else(|| summary.platform());
        seen.push(platform.to_string());
        if !platforms.is_empty() && !platforms.iter().any(|p| p.matches(&platform)) {
            continue;
        }
        if summary.rootfs.diff_ids.len() != manifest.layers.len() {
            bail!(
                "manifest {}: {} layers but the config lists {} diff_ids",
                desc.digest,
                manifest.layers.len(),
                summary.rootfs.diff_ids.len()
            );
        }
        out.push(Selected {
            desc,
            manifest,
            config,
            summary,
        });
    }
    if out.is_empty() {
        bail!(
            "no image matches the platform(s) asked for; the image has: {}",
            seen.join(", ")
        );
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn push_layer<S: BlobStore>(
    source: &Source,
    store: &S,
    l: &Descriptor,
    diff_id: &str,
    opts: &PushOptions,
    work: &Path,
    rep: &dyn Reporter,
    label: &str,
) -> anyhow::Result<(convert::Layer, Cid)> {
    let bar = rep.start(label, l.size.max(0) as u64);
    bar.set_message("reading");
    let file = source.file(l, &|n| bar.inc(n)).await?;
    bar.finish();
    let bar = rep.start(label, 0);
    bar.set_message(if opts.estargz.is_some() {
        "converting"
    } else {
        "checking"
    });
    let mut o = opts.estargz.clone();
    if let (Some(o), Some(files)) = (&mut o, opts.layer_prefetch.get(&l.digest)) {
        o.prefetch = files.clone();
    }
    let (f, d, id, w) = (
        file.clone(),
        l.clone(),
        diff_id.to_string(),
        work.to_path_buf(),
    );
    let (dag, reconvert) = (opts.dag, opts.reconvert);
    let (layer, leaf_ends) = tokio::task::spawn_blocking(move || {
        let layer = convert::prepare(&f, &d, &id, o.as_ref(), reconvert, &w)?;
        let ends = match (dag, &layer.toc_digest) {
            (DagLayout::Members, Some(_)) => Some(convert::member_leaf_ends(&layer.path)?),
            _ => None,
        };
        anyhow::Ok((layer, ends))
    })
    .await??;
    if source.is_download(&file) && layer.converted {
        let _ = std::fs::remove_file(&file);
    }
    bar.finish();
    let bar = rep.start(label, layer.desc.size as u64);
    bar.set_message("adding");
    let cid = store
        .add_file(&layer.path, leaf_ends, &|n| bar.inc(n))
        .await?;
    bar.finish();
    if layer.converted || source.is_download(&layer.path) {
        let _ = std::fs::remove_file(&layer.path);
    }
    Ok((layer, cid))
}
