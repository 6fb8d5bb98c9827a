//! Image archives: `oci-archive` (a tar of an OCI layout) and `docker-archive` (what
//! `docker save` / `podman save` write: `manifest.json`, a config file, layer tars).
//!
//! Reading extracts into a private directory, refusing entries that would land outside it
//! (`..`, absolute names, symlinks pointing out); a `docker-archive` is then rewritten as an
//! OCI layout with Docker media types, so every local source is read the same way. Writing a
//! `docker-archive` goes to a temporary file renamed into place at the end.

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use super::layout::{self, read_limited, MAX_JSON};
use super::oci::{self, Descriptor, Index, Manifest, ANNOTATION_REF_NAME};

/// Why a name in an archive is refused: it would leave the extraction root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Unsafe {
    #[error("contains a `..` component")]
    Parent,
    #[error("is an absolute path")]
    Absolute,
}

/// The path `name` would take inside the extraction root, or why it is refused.
fn safe_relative(name: &Path) -> Result<PathBuf, Unsafe> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(Unsafe::Parent),
            Component::RootDir | Component::Prefix(_) => return Err(Unsafe::Absolute),
        }
    }
    Ok(out)
}

/// Extract the tar `file` into the empty directory `into`: regular files, directories, and
/// links that stay inside. Anything else is an error naming the entry.
pub fn extract(file: &Path, into: &Path) -> anyhow::Result<()> {
    let f = fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut ar = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
    let what = || format!("{} (truncated or not a tar archive?)", file.display());
    let mut count = 0;
    for entry in ar.entries().with_context(what)? {
        let mut entry = entry.with_context(what)?;
        let name = entry.path().with_context(what)?.into_owned();
        let rel = safe_relative(&name)
            .map_err(|why| anyhow!("{}: entry {:?} {why}", file.display(), name))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let dest = into.join(&rel);
        if let Some(p) = dest.parent() {
            fs::create_dir_all(p)?;
        }
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => fs::create_dir_all(&dest)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut out = fs::File::create(&dest)?;
                let n = std::io::copy(&mut entry, &mut out).with_context(what)?;
                if n != entry.header().size().unwrap_or(0) {
                    bail!("{}: entry {:?} is truncated", file.display(), name);
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .with_context(what)?
                    .ok_or_else(|| anyhow!("{}: link {:?} has no target", file.display(), name))?
                    .into_owned();
                let base = if kind == tar::EntryType::Symlink {
                    rel.parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.clone()
                };
                let inside = lexical_inside(&base).ok_or_else(|| {
                    anyhow!(
                        "{}: link {:?} -> {:?} points outside the archive",
                        file.display(),
                        name,
                        target
                    )
                })?;
                // Links become copies: only content is read from archives.
                let src = into.join(inside);
                if !src.is_file() {
                    bail!(
                        "{}: link {:?} -> {:?}: the target is not an earlier file",
                        file.display(),
                        name,
                        target
                    );
                }
                fs::copy(&src, &dest)?;
            }
            other => bail!(
                "{}: entry {:?} has unsupported type {other:?}",
                file.display(),
                name
            ),
        }
        count += 1;
    }
    if count == 0 {
        bail!("{} is empty or not a tar archive", file.display());
    }
    Ok(())
}

/// `p` with `.` and `..` resolved lexically, or None if it climbs out or is absolute.
fn lexical_inside(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

/// One image of a `docker save` archive's `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerManifestEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// Turn an extracted docker-archive in `dir` into an OCI layout in `dir` (Docker media types,
/// one image). `name` picks an image by `REPO:TAG` when the archive holds several.
pub fn docker_to_layout(dir: &Path, name: Option<&str>) -> anyhow::Result<()> {
    let mpath = dir.join("manifest.json");
    let list: Vec<DockerManifestEntry> = serde_json::from_slice(
        &read_limited(&mpath, MAX_JSON).context("not a docker-archive: no manifest.json")?,
    )
    .context("docker-archive: bad manifest.json")?;
    let entry = match (name, list.as_slice()) {
        (Some(n), _) => list
            .iter()
            .find(|e| e.repo_tags.iter().flatten().any(|t| t == n))
            .ok_or_else(|| anyhow!("docker-archive has no image named {n:?}"))?,
        (None, [one]) => one,
        (None, []) => bail!("docker-archive: manifest.json lists no image"),
        (None, many) => bail!(
            "docker-archive holds {} images; name one with docker-archive:FILE:NAME:TAG",
            many.len()
        ),
    };
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let inside = |p: &str| -> anyhow::Result<PathBuf> {
        let rel = safe_relative(Path::new(p))
            .map_err(|why| anyhow!("docker-archive: manifest.json path {p:?} {why}"))?;
        let full = dir.join(rel);
        if !full.is_file() {
            bail!("docker-archive: {p:?} named in manifest.json is missing");
        }
        Ok(full)
    };
    // config
    let cfg_path = inside(&entry.config)?;
    let cfg = read_limited(&cfg_path, MAX_JSON)?;
    let config = store(&blobs, &cfg_path, oci::DOCKER_CONFIG)?;
    let summary = oci::ConfigSummary::parse(&cfg).map_err(|e| anyhow!("docker-archive: {e}"))?;
    let mut layers = Vec::new();
    for l in &entry.layers {
        let p = inside(l)?;
        let mut magic = [0u8; 2];
        let gz = fs::File::open(&p)?.read(&mut magic)? == 2 && magic == [0x1f, 0x8b];
        let mt = if gz {
            oci::DOCKER_LAYER_GZIP
        } else {
            oci::DOCKER_LAYER
        };
        layers.push(store(&blobs, &p, mt)?);
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: oci::DOCKER_MANIFEST.into(),
        artifact_type: String::new(),
        config,
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let mbytes = oci::to_json(&manifest);
    let mut mdesc = Descriptor::of(oci::DOCKER_MANIFEST, &mbytes);
    fs::write(
        blobs.join(oci::digest_hex(&mdesc.digest).map_err(|e| anyhow!(e))?),
        &mbytes,
    )?;
    mdesc.platform = Some(summary.platform());
    if let Some(t) = entry.repo_tags.iter().flatten().next() {
        mdesc
            .annotations
            .insert(ANNOTATION_REF_NAME.into(), t.clone());
    }
    fs::write(
        dir.join("index.json"),
        oci::to_json(&Index::new(vec![mdesc])),
    )?;
    fs::write(
        dir.join("oci-layout"),
        format!(r#"{{"imageLayoutVersion":"{}"}}"#, oci::OCI_LAYOUT_VERSION),
    )?;
    Ok(())
}

/// Hash `path` and move it into `blobs` under its digest.
fn store(blobs: &Path, path: &Path, media_type: &str) -> anyhow::Result<Descriptor> {
    let (digest, size) = layout::hash_reader(fs::File::open(path)?, &|_| {})?;
    let dest = blobs.join(oci::digest_hex(&digest).map_err(|e| anyhow!(e))?);
    if !dest.exists() {
        fs::rename(path, &dest).or_else(|_| fs::copy(path, &dest).map(|_| ()))?;
    }
    Ok(Descriptor {
        media_type: media_type.into(),
        digest,
        size: size as i64,
        ..Descriptor::of(media_type, b"")
    })
}

/// Write a docker-archive to `file` (via a temporary file in the same directory): config,
/// layer blobs (kept compressed; `docker load`, `podman load` and `ctr import` inflate them),
/// and `manifest.json` naming `repo_tag`.
pub fn write_docker_archive(
    file: &Path,
    config: (&str, &Path),
    layers: &[(String, PathBuf)],
    repo_tag: &str,
) -> anyhow::Result<()> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".cidfs-pull-")
        .tempfile_in(&parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, tmp.as_file()));
    b.mode(tar::HeaderMode::Deterministic);
    let hex = |d: &str| {
        oci::digest_hex(d)
            .map(str::to_string)
            .map_err(|e| anyhow!(e))
    };
    let cfg_name = format!("{}.json", hex(config.0)?);
    b.append_path_with_name(config.1, &cfg_name)?;
    let mut names = Vec::new();
    for (digest, path) in layers {
        let name = format!("{}.tar", hex(digest)?);
        if !names.contains(&name) {
            b.append_path_with_name(path, &name)?;
        }
        names.push(name);
    }
    let manifest = vec![DockerManifestEntry {
        config: cfg_name,
        repo_tags: Some(vec![repo_tag.to_string()]),
        layers: names,
    }];
    let json = serde_json::to_vec(&manifest)?;
    let mut h = tar::Header::new_gnu();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "manifest.json", json.as_slice())?;
    b.into_inner()?
        .into_inner()
        .map_err(|e| anyhow!("writing {}: {e}", file.display()))?;
    tmp.as_file().sync_all()?;
    tmp.persist(file)
        .map_err(|e| anyhow!("moving the archive into {}: {e}", file.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // write the raw name so `..` and absolute names get through
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
        f
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in ["../escape", "/etc/passwd", "a/../../b"] {
            let t = tar_with(&[("ok", b"1"), (bad, b"x")]);
            let dir = tempfile::tempdir().unwrap();
            let e = format!("{:#}", extract(t.path(), dir.path()).unwrap_err());
            assert!(
                e.contains(bad) || e.contains("absolute") || e.contains(".."),
                "{bad}: {e}"
            );
            assert!(!dir.path().parent().unwrap().join("escape").exists());
        }
    }

    #[test]
    fn truncated_archives_fail() {
        let t = tar_with(&[("index.json", &[7u8; 5000])]);
        let len = fs::metadata(t.path()).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(t.path()).unwrap();
        f.set_len(len / 4).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", extract(t.path(), dir.path()).unwrap_err());
        assert!(e.contains("truncated"), "{e}");
    }
}
