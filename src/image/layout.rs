//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): reading one
//! as a push source, and writing one as a pull destination without ever leaving a half-written
//! layout behind.

use anyhow::{anyhow, bail, Context};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::oci::{self, Descriptor, Index, ANNOTATION_REF_NAME};

/// Largest JSON blob (manifest, index, config) read into memory.
pub const MAX_JSON: u64 = 16 << 20;

/// An OCI layout on disk, read-only.
#[derive(Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn open(dir: &Path) -> anyhow::Result<Layout> {
        let marker = dir.join("oci-layout");
        let text = fs::read_to_string(&marker).with_context(|| {
            format!(
                "{} is not an OCI image layout (no readable oci-layout file)",
                dir.display()
            )
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: bad JSON", marker.display()))?;
        if v["imageLayoutVersion"].as_str().is_none() {
            bail!("{}: no imageLayoutVersion", marker.display());
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn index(&self) -> anyhow::Result<Index> {
        let p = self.dir.join("index.json");
        let bytes = read_limited(&p, MAX_JSON)?;
        serde_json::from_slice(&bytes).with_context(|| format!("{}: bad index JSON", p.display()))
    }

    /// The image named `tag` (`org.opencontainers.image.ref.name`), or the only one.
    pub fn select(&self, tag: Option<&str>) -> anyhow::Result<Descriptor> {
        let index = self.index()?;
        let name = |d: &Descriptor| d.annotations.get(ANNOTATION_REF_NAME).cloned();
        match tag {
            Some(t) => {
                let mut hits = index
                    .manifests
                    .iter()
                    .filter(|d| name(d).as_deref() == Some(t));
                let hit = hits.next().ok_or_else(|| {
                    let tags: Vec<String> = index.manifests.iter().filter_map(name).collect();
                    anyhow!(
                        "no image tagged {t:?} in {} (tags: {})",
                        self.dir.display(),
                        if tags.is_empty() {
                            "none".into()
                        } else {
                            tags.join(", ")
                        }
                    )
                })?;
                Ok(hit.clone())
            }
            None => match index.manifests.as_slice() {
                [one] => Ok(one.clone()),
                [] => bail!("{}: index.json lists no image", self.dir.display()),
                many => bail!(
                    "{} holds {} images; name one with oci:{}:TAG",
                    self.dir.display(),
                    many.len(),
                    self.dir.display()
                ),
            },
        }
    }

    pub fn blob_path(&self, digest: &str) -> anyhow::Result<PathBuf> {
        let hex = oci::digest_hex(digest).map_err(|e| anyhow!(e))?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    /// A JSON blob, size and digest checked.
    pub fn read_blob(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        let p = self.existing_blob(desc)?;
        let bytes = read_limited(&p, MAX_JSON)?;
        verify_bytes(desc, &bytes)?;
        Ok(bytes)
    }

    /// The path of a blob after hashing it: the size and digest must match `desc`.
    pub fn verified_blob(
        &self,
        desc: &Descriptor,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<PathBuf> {
        let p = self.existing_blob(desc)?;
        let f = fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        let (digest, size) =
            hash_reader(f, progress).with_context(|| format!("reading {}", p.display()))?;
        check(desc, &digest, size)?;
        Ok(p)
    }

    fn existing_blob(&self, desc: &Descriptor) -> anyhow::Result<PathBuf> {
        let p = self.blob_path(&desc.digest)?;
        if !p.is_file() {
            bail!(
                "blob {} ({}) is missing from the layout {}",
                desc.digest,
                desc.media_type,
                self.dir.display()
            );
        }
        Ok(p)
    }
}

/// Read a whole file, refusing ones larger than `limit`.
pub fn read_limited(p: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let f = fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let mut bytes = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", p.display()))?;
    if bytes.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", p.display());
    }
    Ok(bytes)
}

/// sha256 digest and length of a stream.
pub fn hash_reader(mut r: impl Read, progress: &dyn Fn(u64)) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
        progress(k as u64);
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

/// Size and digest of fetched bytes against their descriptor.
pub fn verify_bytes(desc: &Descriptor, bytes: &[u8]) -> anyhow::Result<()> {
    check(desc, &oci::sha256_digest(bytes), bytes.len() as u64)
}

/// A blob's measured digest and size against its descriptor.
pub fn check(desc: &Descriptor, digest: &str, size: u64) -> anyhow::Result<()> {
    if size != desc.size as u64 {
        bail!(
            "blob {} ({}): size is {size} bytes, the descriptor says {}",
            desc.digest,
            desc.media_type,
            desc.size
        );
    }
    if digest != desc.digest {
        bail!(
            "blob {} ({}): digest mismatch: the content hashes to {digest}",
            desc.digest,
            desc.media_type
        );
    }
    Ok(())
}

/// Writes an OCI layout. A new directory is built next to its final path and renamed into place
/// by [`LayoutWriter::finish`]; dropping the writer before that removes it. Into an existing
/// layout, blobs are added by atomic renames and `index.json` is replaced atomically at the end.
pub struct LayoutWriter {
    dir: PathBuf,
    work: Option<tempfile::TempDir>,
}

impl LayoutWriter {
    pub fn create(dir: &Path) -> anyhow::Result<LayoutWriter> {
        if dir.exists() {
            let empty = fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .next()
                .is_none();
            if !empty {
                Layout::open(dir).with_context(|| {
                    format!(
                        "{} exists and is not an OCI layout; refusing to write into it",
                        dir.display()
                    )
                })?;
            }
            fs::create_dir_all(dir.join("blobs/sha256"))?;
            if empty {
                write_marker(dir)?;
            }
            return Ok(LayoutWriter {
                dir: dir.to_path_buf(),
                work: None,
            });
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        let work = tempfile::Builder::new()
            .prefix(".cidfs-pull-")
            .tempdir_in(&parent)
            .with_context(|| format!("creating a work directory in {}", parent.display()))?;
        fs::create_dir_all(work.path().join("blobs/sha256"))?;
        write_marker(work.path())?;
        Ok(LayoutWriter {
            dir: dir.to_path_buf(),
            work: Some(work),
        })
    }

    fn root(&self) -> &Path {
        self.work.as_ref().map_or(&self.dir, |w| w.path())
    }

    /// A fresh temporary path inside the layout for a blob being downloaded.
    pub fn temp_blob(&self) -> anyhow::Result<tempfile::TempPath> {
        Ok(tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(self.root().join("blobs/sha256"))?
            .into_temp_path())
    }

    /// Whether the layout already has this blob (checked by size; blobs are content-addressed).
    pub fn has_blob(&self, desc: &Descriptor) -> bool {
        oci::digest_hex(&desc.digest)
            .ok()
            .and_then(|h| fs::metadata(self.root().join("blobs/sha256").join(h)).ok())
            .is_some_and(|m| m.len() == desc.size as u64)
    }

    /// Move a verified temporary file into place as blob `digest`.
    pub fn commit_blob(&self, tmp: tempfile::TempPath, digest: &str) -> anyhow::Result<()> {
        let hex = oci::digest_hex(digest).map_err(|e| anyhow!(e))?;
        tmp.persist(self.root().join("blobs/sha256").join(hex))
            .map_err(|e| anyhow!("storing blob {digest}: {e}"))
    }

    pub fn write_blob(&self, desc: &Descriptor, bytes: &[u8]) -> anyhow::Result<()> {
        verify_bytes(desc, bytes)?;
        let tmp = self.temp_blob()?;
        fs::write(&tmp, bytes)?;
        self.commit_blob(tmp, &desc.digest)
    }

    /// Write `index.json` listing `manifests` (tagged with `tag`; an older entry with the same
    /// tag is replaced) and move the layout into place.
    pub fn finish(self, mut manifests: Vec<Descriptor>, tag: Option<&str>) -> anyhow::Result<()> {
        let mut index = match &self.work {
            None if self.dir.join("index.json").exists() => Layout::open(&self.dir)?.index()?,
            _ => Index::new(Vec::new()),
        };
        index.media_type = oci::OCI_INDEX.to_string();
        if let Some(t) = tag {
            index
                .manifests
                .retain(|d| d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) != Some(t));
            for m in &mut manifests {
                m.annotations
                    .insert(ANNOTATION_REF_NAME.into(), t.to_string());
            }
        }
        index.manifests.extend(manifests);
        let tmp = tempfile::NamedTempFile::new_in(self.root())?;
        fs::write(tmp.path(), oci::to_json(&index))?;
        tmp.persist(self.root().join("index.json"))
            .map_err(|e| anyhow!("writing index.json: {e}"))?;
        if let Some(work) = self.work {
            let path = work.keep();
            fs::rename(&path, &self.dir).with_context(|| {
                let _ = fs::remove_dir_all(&path);
                format!("moving the layout into {}", self.dir.display())
            })?;
        }
        Ok(())
    }
}

fn write_marker(dir: &Path) -> anyhow::Result<()> {
    fs::write(
        dir.join("oci-layout"),
        format!(r#"{{"imageLayoutVersion":"{}"}}"#, oci::OCI_LAYOUT_VERSION),
    )
    .with_context(|| format!("writing {}/oci-layout", dir.display()))
}
