//! An image source opened for reading: a local OCI layout (given directly, or extracted from an
//! `oci-archive` or a `docker-archive`), or a registry. Every blob handed out is verified
//! against its descriptor (size and sha256) first.

use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};

use super::layout::{self, Layout, MAX_JSON};
use super::location;
use super::oci::{self, Descriptor};
use super::registry_client;

/// How to reach a registry source.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// `USER:PASS`.
    pub creds: Option<String>,
    /// An auth file (containers `auth.json` or docker `config.json`).
    pub authfile: Option<PathBuf>,
}

enum Inner {
    Layout {
        layout: Layout,
        tag: Option<String>,
    },
    Registry {
        client: registry_client::Client,
        reference: String,
    },
}

pub struct Source {
    inner: Inner,
    work: PathBuf,
    /// Extracted archives live here and go away with the source.
    _extracted: Option<tempfile::TempDir>,
}

impl Source {
    /// Open `src`; `work` is a directory for downloads and extracted archives.
    pub async fn open(
        src: &location::Source,
        reg: &RegistryOptions,
        work: &Path,
    ) -> anyhow::Result<Source> {
        let work = work.to_path_buf();
        let blocking_open = |src: location::Source, work: PathBuf| -> anyhow::Result<Source> {
            let (dir, tag, tmp) = match src {
                location::Source::Oci { dir, tag } => (dir, tag, None),
                location::Source::OciArchive { file, tag } => {
                    let tmp = tempfile::tempdir_in(&work)?;
                    super::archive::extract(&file, tmp.path())
                        .with_context(|| format!("reading oci-archive {}", file.display()))?;
                    (tmp.path().to_path_buf(), tag, Some(tmp))
                }
                location::Source::DockerArchive { file, name } => {
                    let tmp = tempfile::tempdir_in(&work)?;
                    super::archive::extract(&file, tmp.path())
                        .with_context(|| format!("reading docker-archive {}", file.display()))?;
                    super::archive::docker_to_layout(tmp.path(), name.as_deref())
                        .with_context(|| format!("reading docker-archive {}", file.display()))?;
                    (tmp.path().to_path_buf(), None, Some(tmp))
                }
                location::Source::Registry(_) => unreachable!(),
            };
            Ok(Source {
                inner: Inner::Layout {
                    layout: Layout::open(&dir)?,
                    tag,
                },
                work,
                _extracted: tmp,
            })
        };
        match src {
            location::Source::Registry(text) => {
                let r: registry_client::Reference = text.parse()?;
                let creds = registry_client::credentials_for(
                    &r.host,
                    reg.creds.as_deref(),
                    reg.authfile.as_deref(),
                )?;
                let client = registry_client::Client::new(&r, reg.insecure, creds)?;
                let reference = r
                    .digest
                    .clone()
                    .or_else(|| r.tag.clone())
                    .unwrap_or_else(|| "latest".into());
                Ok(Source {
                    inner: Inner::Registry { client, reference },
                    work,
                    _extracted: None,
                })
            }
            other => {
                let other = other.clone();
                tokio::task::spawn_blocking(move || blocking_open(other, work)).await?
            }
        }
    }

    /// The image's top object: its media type and bytes (an index or a manifest).
    pub async fn top(&self) -> anyhow::Result<(String, Vec<u8>)> {
        match &self.inner {
            Inner::Layout { layout, tag } => {
                let desc = layout.select(tag.as_deref())?;
                let bytes = layout.read_blob(&desc)?;
                Ok((desc.media_type, bytes))
            }
            Inner::Registry { client, reference } => client.manifest(reference).await,
        }
    }

    /// A small JSON blob (manifest, config), verified.
    pub async fn json(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        if desc.size as u64 > MAX_JSON || desc.size < 0 {
            bail!(
                "blob {} ({}) claims {} bytes; refusing",
                desc.digest,
                desc.media_type,
                desc.size
            );
        }
        match &self.inner {
            Inner::Layout { layout, .. } => layout.read_blob(desc),
            Inner::Registry { client, .. } => {
                let is_manifest = matches!(
                    oci::classify(&desc.media_type),
                    Ok((_, oci::Kind::Manifest | oci::Kind::Index))
                );
                let bytes = if is_manifest {
                    client.manifest(&desc.digest).await?.1
                } else {
                    client.blob_bytes(desc).await?
                };
                layout::verify_bytes(desc, &bytes)?;
                Ok(bytes)
            }
        }
    }

    /// A layer blob as a verified local file (downloaded into the work directory for registries).
    pub async fn file(
        &self,
        desc: &Descriptor,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<PathBuf> {
        oci::digest_hex(&desc.digest).map_err(|e| anyhow!(e))?;
        match &self.inner {
            Inner::Layout { layout, .. } => {
                let layout = layout.clone();
                let desc = desc.clone();
                // progress is not 'static; hash here on a blocking-friendly section
                tokio::task::block_in_place(|| layout.verified_blob(&desc, progress))
            }
            Inner::Registry { client, .. } => {
                let path = self.work.join(format!("blob-{}", &desc.digest[7..]));
                client.blob_to_file(desc, &path, progress).await?;
                Ok(path)
            }
        }
    }

    /// Whether `file` came from [`Source::file`] as a download that may be deleted after use.
    pub fn is_download(&self, file: &Path) -> bool {
        matches!(self.inner, Inner::Registry { .. }) && file.starts_with(&self.work)
    }
}
