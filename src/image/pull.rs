//! `image pull` and `image inspect`: resolve an image CID to its index, manifests and configs
//! (each fetched by the CID in its `ipfs://` URL and checked against its digest and size), then
//! write it out as an OCI layout or a docker-archive. Nothing is left half-written: blobs are
//! verified in temporary files before they are moved into place.

use anyhow::{anyhow, bail, Context};
use cid::Cid;
use std::path::{Path, PathBuf};

use super::archive;
use super::blob_store::BlobStore;
use super::layout::{self, LayoutWriter, MAX_JSON};
use super::location::Dest;
use super::oci::{self, Descriptor, Index, Kind, Manifest, Platform};
use super::progress::{short, Reporter};
use crate::blockservice::FetchError;

/// Largest root descriptor accepted.
const MAX_ROOT: u64 = 64 << 10;
/// Manifests an image index may list (multi-platform indexes with attestations list about 20;
/// 80k entries naming one 16 MiB manifest once meant 80k copies of it: H1).
pub const MAX_INDEX_ENTRIES: usize = 256;

/// An image as found from its CID.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub root: Cid,
    /// The root descriptor (of the index, or of a lone manifest).
    pub root_desc: Descriptor,
    /// The index (synthesized around a lone manifest) and its bytes (None when synthesized).
    pub index: Index,
    pub index_bytes: Option<Vec<u8>>,
    pub images: Vec<Image>,
}

/// One platform's manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    pub desc: Descriptor,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub config: Vec<u8>,
}

/// A blob of a resolved image found by its digest.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub desc: &'a Descriptor,
    /// The verified bytes when resolving already fetched them (index, manifests, configs).
    pub bytes: Option<&'a [u8]>,
    pub kind: Kind,
}

impl Resolved {
    /// The index (or the lone manifest) the image CID names, with its bytes.
    pub fn top(&self) -> Found<'_> {
        match &self.index_bytes {
            Some(b) => Found {
                desc: &self.root_desc,
                bytes: Some(b),
                kind: Kind::Index,
            },
            None => {
                let i = &self.images[0];
                Found {
                    desc: &i.desc,
                    bytes: Some(&i.manifest_bytes),
                    kind: Kind::Manifest,
                }
            }
        }
    }

    /// The index, a manifest, a config or a layer of this image with the digest `digest`.
    pub fn find(&self, digest: &str) -> Option<Found<'_>> {
        if self.index_bytes.is_some() && self.root_desc.digest == digest {
            return Some(self.top());
        }
        self.images.iter().find_map(|i| {
            if i.desc.digest == digest {
                return Some(Found {
                    desc: &i.desc,
                    bytes: Some(&i.manifest_bytes),
                    kind: Kind::Manifest,
                });
            }
            if i.manifest.config.digest == digest {
                return Some(Found {
                    desc: &i.manifest.config,
                    bytes: Some(&i.config),
                    kind: Kind::Config,
                });
            }
            let l = i.manifest.layers.iter().find(|l| l.digest == digest)?;
            let kind = oci::classify(&l.media_type)
                .map(|(_, k)| k)
                .unwrap_or(Kind::Layer { gzip: false });
            Some(Found {
                desc: l,
                bytes: None,
                kind,
            })
        })
    }

    /// The CIDs of the image's blobs: the root, the index, each manifest and config, and with
    /// `layers` each layer; each once.
    pub fn blob_cids(&self, layers: bool) -> anyhow::Result<Vec<Cid>> {
        self.blob_cids_of(&self.images, layers)
    }

    /// [`Self::blob_cids`] of `images` (of this image's) alone.
    pub fn blob_cids_of<'a>(
        &'a self,
        images: impl IntoIterator<Item = &'a Image>,
        layers: bool,
    ) -> anyhow::Result<Vec<Cid>> {
        Ok(self
            .sized_blobs_of(images, layers)?
            .into_iter()
            .map(|(c, _)| c)
            .collect())
    }

    /// [`Self::blob_cids`] with each blob's size in bytes, as its descriptor says.
    pub fn sized_blobs(&self, layers: bool) -> anyhow::Result<Vec<(Cid, u64)>> {
        self.sized_blobs_of(&self.images, layers)
    }

    fn sized_blobs_of<'a>(
        &'a self,
        images: impl IntoIterator<Item = &'a Image>,
        layers: bool,
    ) -> anyhow::Result<Vec<(Cid, u64)>> {
        let size = |d: &Descriptor| d.size.max(0) as u64;
        let mut out = vec![(self.root, size(&self.root_desc))];
        for d in self.blobs_of(images, layers) {
            let cid = d.cid().map_err(|e| anyhow!(e))?;
            if !out.iter().any(|(c, _)| *c == cid) {
                out.push((cid, size(d)));
            }
        }
        Ok(out)
    }

    /// Bytes of every blob [`Self::blob_cids`] names with its layers (each once).
    pub fn size(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.blobs_of(&self.images, true)
            .filter(|d| seen.insert(&d.digest))
            .map(|d| d.size.max(0) as u64)
            .sum()
    }

    /// The descriptors of the index (when there is one) and of each of `images`' manifest,
    /// config and, with `layers`, layers; a blob two images share comes twice.
    fn blobs_of<'a>(
        &'a self,
        images: impl IntoIterator<Item = &'a Image>,
        layers: bool,
    ) -> impl Iterator<Item = &'a Descriptor> {
        let index = std::iter::once(&self.root_desc).filter(|_| self.index_bytes.is_some());
        let images = images.into_iter().flat_map(move |i| {
            let l: &[Descriptor] = if layers { &i.manifest.layers } else { &[] };
            [&i.desc, &i.manifest.config].into_iter().chain(l)
        });
        index.chain(images)
    }

    /// The one image to unpack: the only one, or the host's platform of several.
    pub fn one_image(&self) -> anyhow::Result<&Image> {
        match self.images.as_slice() {
            [one] => Ok(one),
            many => {
                let host = Platform::host();
                many.iter()
                    .find(|i| i.desc.platform.as_ref().is_some_and(|p| host.matches(p)))
                    .ok_or_else(|| {
                        anyhow!(
                            "the image has {} platforms and none is this host's ({host}); choose one with --platform",
                            many.len()
                        )
                    })
            }
        }
    }
}

impl Image {
    /// The config's summary, and the layers bottom first, each with the DiffID the config gives
    /// it (an error when the counts differ).
    pub fn layers_with_diff_ids(
        &self,
    ) -> anyhow::Result<(oci::ConfigSummary, Vec<(Descriptor, String)>)> {
        let config = oci::ConfigSummary::parse(&self.config).map_err(|e| anyhow!(e))?;
        let (diff_ids, layers) = (&config.rootfs.diff_ids, &self.manifest.layers);
        if diff_ids.len() != layers.len() {
            bail!(
                "the image config lists {} diff_ids for {} layers",
                diff_ids.len(),
                layers.len()
            );
        }
        let pairs = layers
            .iter()
            .cloned()
            .zip(diff_ids.iter().cloned())
            .collect();
        Ok((config, pairs))
    }
}

/// Fetch a JSON blob by its descriptor's CID, verified.
async fn fetch_json<S: BlobStore>(store: &S, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
    if desc.size < 0 || desc.size as u64 > MAX_JSON {
        bail!(
            "{} {} claims {} bytes; refusing",
            desc.media_type,
            desc.digest,
            desc.size
        );
    }
    let cid = desc.cid().map_err(|e| anyhow!(e))?;
    let bytes = store
        .cat_bytes(&cid, 0, Some(desc.size as u64 + 1))
        .await
        .with_context(|| {
            format!(
                "fetching {} {} ({cid})",
                desc.media_type,
                short(&desc.digest)
            )
        })?;
    layout::verify_bytes(desc, &bytes)?;
    Ok(bytes)
}

/// Why an image could not be resolved. The edges tell them apart: the registry endpoint answers
/// 503 `UNAVAILABLE` for the first (ask again) and 404 `NAME_UNKNOWN` for the second.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Blocks of the image could not be had: no peer delivered them in time, or the node failed.
    #[error("{0:#}")]
    Unreachable(anyhow::Error),
    /// What the CID names is not an image this node can serve (not found on an offline node,
    /// not an OCI descriptor, a bound broken, a platform missing, …).
    #[error("{0:#}")]
    NotAnImage(anyhow::Error),
}

/// Resolve `root` to the images it names, keeping the `platforms` asked for (all if empty).
pub async fn resolve<S: BlobStore>(
    store: &S,
    root: Cid,
    platforms: &[Platform],
) -> Result<Resolved, ResolveError> {
    resolve_any(store, root, platforms)
        .await
        .map_err(|e| match FetchError::find(&e) {
            Some(f) if f.is_timeout() || matches!(f, FetchError::Node { .. }) => {
                ResolveError::Unreachable(e)
            }
            _ => ResolveError::NotAnImage(e),
        })
}

async fn resolve_any<S: BlobStore>(
    store: &S,
    root: Cid,
    platforms: &[Platform],
) -> anyhow::Result<Resolved> {
    let raw = store
        .cat_bytes(&root, 0, Some(MAX_ROOT + 1))
        .await
        .with_context(|| format!("fetching the image root {root}"))?;
    if raw.len() as u64 > MAX_ROOT {
        bail!("{root} is not an image: its content is larger than a descriptor");
    }
    let root_desc: Descriptor = serde_json::from_slice(&raw).map_err(|e| {
        anyhow!("{root} is not an image: its content is not an OCI descriptor ({e})")
    })?;
    let (_, kind) =
        oci::classify(&root_desc.media_type).map_err(|e| anyhow!("image root {root}: {e}"))?;
    let (index, index_bytes) = match kind {
        Kind::Index => {
            let bytes = fetch_json(store, &root_desc).await?;
            let index: Index = serde_json::from_slice(&bytes).context("bad image index JSON")?;
            (index, Some(bytes))
        }
        Kind::Manifest => (Index::new(vec![root_desc.clone()]), None),
        _ => bail!(
            "image root {root} describes a {}, not an index or manifest",
            root_desc.media_type
        ),
    };
    if index.manifests.len() > MAX_INDEX_ENTRIES {
        bail!(
            "image index {} has {} entries, over the bound of {MAX_INDEX_ENTRIES}",
            short(&root_desc.digest),
            index.manifests.len()
        );
    }
    let mut images = Vec::new();
    let mut seen = Vec::new();
    let mut fetched = std::collections::HashSet::new();
    for desc in &index.manifests {
        // an entry repeated (under any platform) is one image: fetched and kept once
        if !fetched.insert(desc.digest.clone()) {
            continue;
        }
        let (_, k) = oci::classify(&desc.media_type)
            .map_err(|e| anyhow!("index entry {}: {e}", desc.digest))?;
        if k != Kind::Manifest {
            bail!(
                "index entry {} is a {}; nested indexes are not supported",
                desc.digest,
                desc.media_type
            );
        }
        if let Some(p) = &desc.platform {
            seen.push(p.to_string());
            if !platforms.is_empty() && !platforms.iter().any(|w| w.matches(p)) {
                continue;
            }
        }
        let manifest_bytes = fetch_json(store, desc).await?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("manifest {}: bad JSON", desc.digest))?;
        let config = fetch_json(store, &manifest.config).await?;
        for l in &manifest.layers {
            l.cid()
                .map_err(|e| anyhow!("manifest {}: {e}", short(&desc.digest)))?;
            oci::digest_hex(&l.digest).map_err(|e| anyhow!(e))?;
        }
        images.push(Image {
            desc: desc.clone(),
            manifest,
            manifest_bytes,
            config,
        });
    }
    if images.is_empty() {
        bail!(
            "no image in {root} matches the platform(s) asked for; it has: {}",
            seen.join(", ")
        );
    }
    Ok(Resolved {
        root,
        root_desc,
        index,
        index_bytes,
        images,
    })
}

/// Download a blob into `tmp`, then check its size and digest.
async fn download<S: BlobStore>(
    store: &S,
    desc: &Descriptor,
    tmp: &Path,
    rep: &dyn Reporter,
    label: &str,
) -> anyhow::Result<()> {
    let cid = desc.cid().map_err(|e| anyhow!(e))?;
    let bar = rep.start(label, desc.size.max(0) as u64);
    let (digest, size) = store
        .cat_to_file(&cid, tmp, &|n| bar.inc(n))
        .await
        .with_context(|| format!("fetching {} ({cid})", desc.digest))?;
    bar.finish();
    layout::check(desc, &digest, size)
}

/// Write `img` to `dest`.
pub async fn pull<S: BlobStore>(
    store: &S,
    img: &Resolved,
    dest: &Dest,
    rep: &dyn Reporter,
) -> anyhow::Result<()> {
    match dest {
        Dest::Oci { dir, tag } => {
            let w = LayoutWriter::create(dir)?;
            if let Some(b) = &img.index_bytes {
                w.write_blob(&img.root_desc, b)?;
            }
            let total: usize = img.images.iter().map(|i| i.manifest.layers.len()).sum();
            let mut n = 0;
            for i in &img.images {
                w.write_blob(&i.desc, &i.manifest_bytes)?;
                w.write_blob(&i.manifest.config, &i.config)?;
                for l in &i.manifest.layers {
                    n += 1;
                    if w.has_blob(l) {
                        continue;
                    }
                    let tmp = w.temp_blob()?;
                    download(
                        store,
                        l,
                        &tmp,
                        rep,
                        &format!("layer {n}/{total} {}", short(&l.digest)),
                    )
                    .await?;
                    w.commit_blob(tmp, &l.digest)?;
                }
            }
            let descs = img.images.iter().map(|i| i.desc.clone()).collect();
            w.finish(descs, tag.as_deref())
        }
        Dest::DockerArchive { file, name } => {
            let i = img.one_image()?;
            let parent = match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let tmp = tempfile::Builder::new()
                .prefix(".cidfs-pull-")
                .tempdir_in(&parent)
                .with_context(|| format!("creating a work directory in {}", parent.display()))?;
            let cfg = tmp.path().join("config.json");
            std::fs::write(&cfg, &i.config)?;
            let mut layers = Vec::new();
            let total = i.manifest.layers.len();
            for (n, l) in i.manifest.layers.iter().enumerate() {
                let p = tmp.path().join(format!("layer-{n}"));
                download(
                    store,
                    l,
                    &p,
                    rep,
                    &format!("layer {}/{total} {}", n + 1, short(&l.digest)),
                )
                .await?;
                layers.push((l.digest.clone(), p));
            }
            let tag = name
                .clone()
                .unwrap_or_else(|| format!("ipfs/{}:latest", img.root));
            let (file, cfgd) = (file.clone(), i.manifest.config.digest.clone());
            tokio::task::spawn_blocking(move || {
                archive::write_docker_archive(&file, (&cfgd, &cfg), &layers, &tag)
            })
            .await?
        }
    }
}
