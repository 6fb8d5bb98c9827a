//! Unpacking image layers into a comparable [`Tree`] (in memory: nothing is written to disk) and
//! readers that find the layers of an OCI layout, an oci-archive or a docker-archive.
//!
//! [`tree_of_layers`] applies OCI whiteouts: `.wh.X` removes `X` (and everything under it) from the
//! lower layers, `DIR/.wh..wh..opq` removes everything under `DIR` from the lower layers. Files that
//! eStargz adds at the root (`stargz.index.json`, `.prefetch.landmark`, `.no.prefetch.landmark`) are
//! left out, so a converted image compares equal to its source.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Root entries that eStargz adds; never part of a [`Tree`].
pub const ESTARGZ_FILES: [&str; 3] = [
    "stargz.index.json",
    ".prefetch.landmark",
    ".no.prefetch.landmark",
];

/// Merged filesystem: clean relative path (`a/b`, no leading `/` or `./`, no root entry) → node.
pub type Tree = BTreeMap<String, Node>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDev { major: u32, minor: u32 },
    BlockDev { major: u32, minor: u32 },
}

/// One path of a [`Tree`]. A hardlink carries its target's kind, mode, owner, content and xattrs
/// (as the file system would) plus `hardlink = Some(target path)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Content length of a file; 0 for everything else.
    pub size: u64,
    /// Hex sha256 of a file's content.
    pub sha256: Option<String>,
    /// Symlink target, as stored.
    pub link: Option<String>,
    /// From PAX `SCHILY.xattr.*` records.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// Clean path of the hardlink's target.
    pub hardlink: Option<String>,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} mode={:o} uid={} gid={} size={} mtime={}",
            self.kind, self.mode, self.uid, self.gid, self.size, self.mtime
        )?;
        if let Some(s) = &self.sha256 {
            write!(f, " sha256={}", &s[..12.min(s.len())])?;
        }
        if let Some(l) = &self.link {
            write!(f, " -> {l}")?;
        }
        if let Some(h) = &self.hardlink {
            write!(f, " hardlink={h}")?;
        }
        for (k, v) in &self.xattrs {
            write!(f, " {k}={}", String::from_utf8_lossy(v).escape_debug())?;
        }
        Ok(())
    }
}

/// Merges layer blobs (bottom first; gzip or plain tar, told by magic) into one tree.
pub fn tree_of_layers(layers: &[PathBuf]) -> Tree {
    let mut tree = Tree::new();
    for l in layers {
        apply_layer(&mut tree, l);
    }
    tree
}

/// The entry paths of one layer blob in tar order, as stored (cleaned), whiteouts and eStargz
/// files included.
pub fn entries_of_layer(layer: &Path) -> Vec<String> {
    let mut ar = tar::Archive::new(open_layer(layer));
    let mut out = Vec::new();
    for e in ar.entries().expect("tar entries") {
        let e = e.unwrap_or_else(|err| panic!("tar entry in {}: {err}", layer.display()));
        out.push(clean(&e.path_bytes()));
    }
    out
}

/// Opens a layer blob: gzip (magic `1f 8b`) is inflated, anything else is read as a plain tar.
pub fn open_layer(path: &Path) -> Box<dyn Read> {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open layer {}: {e}", path.display()));
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).expect("read layer magic");
    assert!(
        n < 4 || magic != [0x28, 0xb5, 0x2f, 0xfd],
        "zstd layers are not supported: {}",
        path.display()
    );
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let r = BufReader::new(head.chain(f));
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    }
}

/// `a//b/./c/` → `a/b/c`; `..` pops; the root is `""`.
pub fn clean(path: &[u8]) -> String {
    let s = String::from_utf8_lossy(path);
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn remove_under(tree: &mut Tree, dir: &str) {
    let prefix = format!("{dir}/");
    tree.retain(|k, _| !k.starts_with(&prefix));
}

fn apply_layer(tree: &mut Tree, layer: &Path) {
    let mut ar = tar::Archive::new(open_layer(layer));
    let mut whiteouts = Vec::new();
    let mut opaques = Vec::new();
    let mut adds: Vec<(String, Node)> = Vec::new();
    for e in ar.entries().expect("tar entries") {
        let mut e = e.unwrap_or_else(|err| panic!("tar entry in {}: {err}", layer.display()));
        let path = clean(&e.path_bytes());
        if path.is_empty() || ESTARGZ_FILES.contains(&path.as_str()) {
            continue;
        }
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            opaques.push(dir);
            continue;
        }
        if let Some(x) = name.strip_prefix(".wh.") {
            whiteouts.push(if dir.is_empty() {
                x.to_string()
            } else {
                format!("{dir}/{x}")
            });
            continue;
        }
        let node = node_of(&mut e, &path);
        adds.push((path, node));
    }
    // Whiteouts act on the lower layers only, so they go first.
    for w in &whiteouts {
        tree.remove(w);
        remove_under(tree, w);
    }
    for d in &opaques {
        if d.is_empty() {
            tree.clear();
        } else {
            remove_under(tree, d);
        }
    }
    for (path, mut node) in adds {
        if let Some(target) = node.hardlink.take() {
            let t = tree.get(&target).unwrap_or_else(|| {
                panic!(
                    "hardlink {path} -> {target}: no such target in {}",
                    layer.display()
                )
            });
            node = t.clone();
            node.hardlink = Some(target);
        }
        if node.kind != Kind::Dir {
            remove_under(tree, &path);
        }
        tree.insert(path, node);
    }
}

fn node_of<R: Read>(e: &mut tar::Entry<'_, R>, path: &str) -> Node {
    let h = e.header().clone();
    let mut uid = h.uid().unwrap_or(0);
    let mut gid = h.gid().unwrap_or(0);
    let mut mtime = h.mtime().unwrap_or(0);
    let mut xattrs = BTreeMap::new();
    if let Some(exts) = e.pax_extensions().expect("pax extensions") {
        for ext in exts {
            let ext = ext.expect("pax record");
            let Ok(key) = ext.key() else { continue };
            let val = ext.value_bytes();
            let num = || {
                String::from_utf8_lossy(val)
                    .split('.')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
            };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.insert(name.to_string(), val.to_vec());
            } else if key == "uid" {
                uid = num().unwrap_or(uid);
            } else if key == "gid" {
                gid = num().unwrap_or(gid);
            } else if key == "mtime" {
                mtime = num().unwrap_or(mtime);
            }
        }
    }
    let link = e
        .link_name_bytes()
        .map(|l| String::from_utf8_lossy(&l).into_owned());
    let link = || link.unwrap_or_else(|| panic!("link entry {path} without a target"));
    let dev = || {
        (
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        )
    };
    let mut node = Node {
        kind: Kind::File,
        mode: h.mode().unwrap_or(0) & 0o7777,
        uid,
        gid,
        size: 0,
        sha256: None,
        link: None,
        xattrs,
        mtime,
        hardlink: None,
    };
    use tar::EntryType as T;
    match h.entry_type() {
        T::Regular | T::Continuous | T::GNUSparse => {
            let mut hasher = Sha256::new();
            node.size = std::io::copy(e, &mut hasher).expect("read file entry");
            node.sha256 = Some(hex::encode(hasher.finalize()));
        }
        T::Directory => node.kind = Kind::Dir,
        T::Symlink => {
            node.kind = Kind::Symlink;
            node.link = Some(link());
        }
        T::Link => node.hardlink = Some(clean(link().as_bytes())),
        T::Fifo => node.kind = Kind::Fifo,
        T::Char => {
            let (major, minor) = dev();
            node.kind = Kind::CharDev { major, minor };
        }
        T::Block => {
            let (major, minor) = dev();
            node.kind = Kind::BlockDev { major, minor };
        }
        other => panic!("{path}: unsupported tar entry type {other:?}"),
    }
    node
}

/// The differences between two trees, one line each (empty when they are equal).
pub fn diff_trees(a: &Tree, b: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (p, na) in a {
        match b.get(p) {
            None => out.push(format!("only in a: {p}: {na}")),
            Some(nb) if nb != na => out.push(format!("differs: {p}\n    a: {na}\n    b: {nb}")),
            Some(_) => {}
        }
    }
    for (p, nb) in b {
        if !a.contains_key(p) {
            out.push(format!("only in b: {p}: {nb}"));
        }
    }
    out
}

/// Panics with the first 20 differences when the trees differ.
#[track_caller]
pub fn assert_same_tree(a: &Tree, b: &Tree) {
    let d = diff_trees(a, b);
    if !d.is_empty() {
        let shown = d.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ");
        panic!(
            "trees differ ({} vs {} paths, {} differences):\n  {shown}{}",
            a.len(),
            b.len(),
            d.len(),
            if d.len() > 20 { "\n  …" } else { "" }
        );
    }
}

/// An image found in an OCI layout (or an extracted oci-archive).
#[derive(Debug)]
pub struct OciImage {
    pub manifest: Value,
    pub manifest_digest: String,
    pub config: Value,
    /// Layer blob files, bottom first.
    pub layers: Vec<PathBuf>,
    /// Keeps an extracted archive alive.
    _dir: Option<tempfile::TempDir>,
}

/// Path of blob `sha256:…` in an OCI layout.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("bad digest {digest}"));
    dir.join("blobs").join(alg).join(hex)
}

fn read_json(path: &Path) -> Value {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("json {}: {e}", path.display()))
}

fn is_index(mt: &str) -> bool {
    mt == "application/vnd.oci.image.index.v1+json"
        || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// Reads the image tagged `tag` (`org.opencontainers.image.ref.name`; `None`: the first entry) of an
/// OCI layout; an image index is resolved to its linux/amd64 manifest.
pub fn layers_of_oci_layout(dir: &Path, tag: Option<&str>) -> OciImage {
    let index = read_json(&dir.join("index.json"));
    let entries = index["manifests"].as_array().expect("index.json manifests");
    let mut desc = entries
        .iter()
        .find(|d| match tag {
            None => true,
            Some(t) => d["annotations"][super::gen::REF_NAME].as_str() == Some(t),
        })
        .unwrap_or_else(|| panic!("no manifest tagged {tag:?} in {}", dir.display()))
        .clone();
    let mut manifest = read_json(&blob_path(dir, desc["digest"].as_str().expect("digest")));
    let mt = |m: &Value, d: &Value| {
        m["mediaType"]
            .as_str()
            .or(d["mediaType"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    while is_index(&mt(&manifest, &desc)) {
        desc = manifest["manifests"]
            .as_array()
            .expect("index manifests")
            .iter()
            .find(|d| d["platform"]["os"] == "linux" && d["platform"]["architecture"] == "amd64")
            .expect("a linux/amd64 manifest")
            .clone();
        manifest = read_json(&blob_path(dir, desc["digest"].as_str().expect("digest")));
    }
    let config = read_json(&blob_path(
        dir,
        manifest["config"]["digest"].as_str().expect("config"),
    ));
    let layers = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| blob_path(dir, l["digest"].as_str().expect("layer digest")))
        .collect();
    OciImage {
        manifest_digest: desc["digest"].as_str().expect("digest").to_string(),
        manifest,
        config,
        layers,
        _dir: None,
    }
}

/// Extracts an oci-archive (a tar of an OCI layout, as `skopeo` or `ctr images export` write) to
/// a temp dir kept by the result, and reads it like [`layers_of_oci_layout`].
pub fn layers_of_oci_archive(file: &Path, tag: Option<&str>) -> OciImage {
    let dir = extract(file);
    let mut img = layers_of_oci_layout(dir.path(), tag);
    img._dir = Some(dir);
    img
}

/// An image read from a docker-archive (`docker save` / `skopeo … docker-archive:` format).
#[derive(Debug)]
pub struct DockerArchive {
    pub config: Value,
    pub repo_tags: Vec<String>,
    /// Layer files (plain tar or gzip), bottom first.
    pub layers: Vec<PathBuf>,
    /// The extracted archive (removed on drop).
    pub dir: tempfile::TempDir,
}

/// Extracts a docker-archive to a temp dir and reads its first image from `manifest.json`.
pub fn layers_of_docker_archive(file: &Path) -> DockerArchive {
    let dir = extract(file);
    let m = read_json(&dir.path().join("manifest.json"));
    let m = &m[0];
    let config = read_json(&dir.path().join(m["Config"].as_str().expect("Config")));
    let layers = m["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| dir.path().join(l.as_str().expect("layer path")))
        .collect();
    let repo_tags = m["RepoTags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    DockerArchive {
        config,
        repo_tags,
        layers,
        dir,
    }
}

fn extract(file: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = std::fs::File::open(file).unwrap_or_else(|e| panic!("open {}: {e}", file.display()));
    tar::Archive::new(BufReader::new(f))
        .unpack(dir.path())
        .unwrap_or_else(|e| panic!("extract {}: {e}", file.display()));
    dir
}
