//! A deterministic generator of a two-layer linux/amd64 test image, written as an OCI image layout,
//! plus helpers that turn a layout into the other source kinds with the real `skopeo`.
//!
//! The same [`GenSpec`] always gives the same bytes, so the same digests. [`GeneratedImage::expected`]
//! is the merged tree worked out from the generator's own entry list (not by reading the tar back),
//! so it checks [`super::tree::tree_of_layers`] as much as the tools under test.
//!
//! Layer 1 has nested dirs, files from empty to `big_file_size` (xorshift bytes), a file of exactly
//! 4 MiB, relative and absolute symlinks, a hardlink, PAX xattrs (text and binary), modes 0600, 0755,
//! 04755, a 01777 dir, owners 0, 1000 and 65534 with names, fixed non-zero mtimes, a path of more than
//! 100 bytes and a fifo. Layer 2 deletes a file and a dir with `.wh.` whiteouts, makes a dir opaque
//! (`.wh..wh..opq`), overwrites a file and adds files. With `busybox`, layer 1 also holds
//! `bin/busybox`, `bin/sh` and `bin/cat` (symlinks to it) and `etc/hello` (= [`HELLO_LINE`]), and the
//! config's `Cmd` is `cat /etc/hello`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::runtimes::skopeo_ok;
use super::tree::{Kind, Node, Tree};

/// The line (without newline) in `etc/hello` of a busybox image.
pub const HELLO_LINE: &str = "hello from the cidfs test image";
/// Exactly 4 MiB: the size of `a/exact-4mib.bin` (a chunk-boundary case).
pub const FOUR_MIB: usize = 4 << 20;
/// Where the busybox binary comes from (Debian `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";
/// `created` of the config and of each history entry.
pub const CREATED: &str = "2024-01-02T03:04:05Z";
/// Base of the fixed mtimes (2023-11-14); each entry adds a small offset.
pub const MTIME: u64 = 1_700_000_000;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Annotation of an `index.json` entry that carries the tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenSpec {
    /// The tag in `index.json` (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// Size of `big.bin` (make it > 10 MiB to cross several 4 MiB chunks).
    pub big_file_size: usize,
    /// Add busybox, `bin/sh`, `bin/cat`, `etc/hello` and `Cmd = cat /etc/hello`.
    pub busybox: bool,
    /// Add this host program (a dynamically linked one, such as `/usr/bin/true`), its loader
    /// and the libraries `ldd` lists, at their host paths with the host's symlinks along them,
    /// so a `chroot` of the image runs it as the host does. Not with `busybox` (whose `bin`
    /// is a directory where the host's may be a symlink).
    pub host_program: Option<&'static str>,
    /// With `host_program`: the program goes in the upper layer and what it loads in the lower,
    /// as an application layer on a base image.
    pub program_above: bool,
    /// Docker schema2 media types for manifest, config and layers instead of OCI ones. Such a
    /// layout is for readers that accept it (cidfs); skopeo 1.9 does not (it only looks at
    /// `index.json` entries of OCI media types: "no descriptor found"), so the skopeo helpers
    /// below need an OCI layout — use [`push_to_registry_v2s2`] to get schema2 into a registry.
    pub docker_media_types: bool,
    /// Seed of the pseudo-random file contents; another seed gives other digests.
    pub seed: u64,
    /// Seed of the upper layer's new file alone (else derived from `seed`): images that share
    /// their lower layer and differ above it.
    pub upper_seed: Option<u64>,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            tag: "latest".into(),
            big_file_size: 12 << 20,
            busybox: false,
            host_program: None,
            program_above: false,
            docker_media_types: false,
            seed: 1,
            upper_seed: None,
        }
    }
}

/// What [`build_oci_layout`] wrote.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    /// The OCI layout directory.
    pub layout: PathBuf,
    pub tag: String,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    pub config_digest: String,
    /// Compressed (gzip) layer digests, bottom first.
    pub layer_digests: Vec<String>,
    /// Uncompressed digests (`rootfs.diff_ids`), bottom first.
    pub diff_ids: Vec<String>,
    /// The layer blob files inside the layout, bottom first.
    pub layer_paths: Vec<PathBuf>,
    pub manifest: Value,
    pub config: Value,
    /// The merged filesystem the two layers describe.
    pub expected: Tree,
}

impl GeneratedImage {
    /// `oci:DIR:TAG`, the skopeo reference of the layout.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }
}

/// Writes the image of `spec` as an OCI image layout into `dir` (created if missing).
pub fn build_oci_layout(dir: &Path, spec: &GenSpec) -> GeneratedImage {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("create blobs dir");
    let (lower, upper) = layer_entries(spec);

    let mut expected = Tree::new();
    for e in &lower {
        e.apply(&mut expected);
    }
    apply_upper(&mut expected, &upper);

    let mut layer_digests = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_paths = Vec::new();
    let mut layer_descs = Vec::new();
    let layer_mt = if spec.docker_media_types {
        DOCKER_LAYER_GZIP
    } else {
        OCI_LAYER_GZIP
    };
    for entries in [&lower, &upper] {
        let tar = tar_of(entries);
        diff_ids.push(digest(&tar));
        let gz = gzip(&tar);
        let (d, path) = write_blob(dir, &gz);
        layer_descs.push(json!({"mediaType": layer_mt, "digest": d, "size": gz.len()}));
        layer_digests.push(d);
        layer_paths.push(path);
    }

    let mut cfg = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": "/",
        "Labels": {"org.cidfs.test": "generated"},
    });
    if spec.busybox {
        cfg["Cmd"] = json!(["cat", "/etc/hello"]);
    }
    let config = json!({
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": CREATED, "created_by": "cidfs test generator: layer 1", "comment": "lower"},
            {"created": CREATED, "created_by": "cidfs test generator: layer 2", "comment": "upper"},
        ],
    });
    let config_bytes = serde_json::to_vec(&config).expect("config json");
    let (config_digest, _) = write_blob(dir, &config_bytes);
    let (manifest_mt, config_mt) = if spec.docker_media_types {
        (DOCKER_MANIFEST, DOCKER_CONFIG)
    } else {
        (OCI_MANIFEST, OCI_CONFIG)
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_mt,
        "config": {"mediaType": config_mt, "digest": config_digest, "size": config_bytes.len()},
        "layers": layer_descs,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest json");
    let (manifest_digest, _) = write_blob(dir, &manifest_bytes);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": manifest_mt,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": {REF_NAME: spec.tag},
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index json"),
    )
    .expect("write index.json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");

    GeneratedImage {
        layout: dir.to_path_buf(),
        tag: spec.tag.clone(),
        manifest_digest,
        config_digest,
        layer_digests,
        diff_ids,
        layer_paths,
        manifest,
        config,
        expected,
    }
}

/// `skopeo copy oci:LAYOUT:TAG oci-archive:FILE:TAG`.
pub fn to_oci_archive(layout: &Path, tag: &str, file: &Path) {
    skopeo_ok(&[
        "copy",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("oci-archive:{}:{tag}", file.display()),
    ]);
}

/// `skopeo copy oci:LAYOUT:TAG docker-archive:FILE:NAME_TAG` (`name_tag` like `cidfs/test:latest`).
/// Skopeo stores the layers uncompressed in a docker-archive.
pub fn to_docker_archive(layout: &Path, tag: &str, file: &Path, name_tag: &str) {
    skopeo_ok(&[
        "copy",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker-archive:{}:{name_tag}", file.display()),
    ]);
}

/// Pushes the layout's `tag` to `docker://ADDR/NAME_TAG` over plain HTTP; `creds` is `user:pass`.
/// Returns the pushed reference (`ADDR/NAME_TAG`). The manifest keeps the layout's (OCI) media types;
/// see [`push_to_registry_v2s2`] for a Docker schema2 manifest.
pub fn push_to_registry(
    layout: &Path,
    tag: &str,
    addr: &str,
    name_tag: &str,
    creds: Option<&str>,
) -> String {
    push(layout, tag, addr, name_tag, creds, None)
}

/// [`push_to_registry`] with `skopeo copy --format v2s2`: the registry gets a Docker schema2 manifest
/// (the blobs, config included, stay byte for byte the same).
pub fn push_to_registry_v2s2(
    layout: &Path,
    tag: &str,
    addr: &str,
    name_tag: &str,
    creds: Option<&str>,
) -> String {
    push(layout, tag, addr, name_tag, creds, Some("v2s2"))
}

fn push(
    layout: &Path,
    tag: &str,
    addr: &str,
    name_tag: &str,
    creds: Option<&str>,
    format: Option<&str>,
) -> String {
    let dest = format!("{addr}/{name_tag}");
    let src = format!("oci:{}:{tag}", layout.display());
    let dst = format!("docker://{dest}");
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--dest-creds", c]);
    }
    if let Some(f) = format {
        args.extend(["--format", f]);
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo_ok(&args);
    dest
}

/// Copies `docker://ADDR/NAME_TAG` into an OCI layout `dir` under `tag` (plain HTTP).
pub fn pull_from_registry(reference: &str, dir: &Path, tag: &str, creds: Option<&str>) {
    let src = format!("docker://{reference}");
    let dst = format!("oci:{}:{tag}", dir.display());
    let mut args = vec!["copy", "--src-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--src-creds", c]);
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo_ok(&args);
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A static x86-64 ELF of 136 bytes that exits with its effective user ID (mod 256):
/// `geteuid(); exit(that)`. Setuid root and run by uid 1000, it exits 0 when the kernel honours
/// the setuid bit and 232 when it does not (a `nosuid` mount, `no_new_privs`).
pub fn euid_elf() -> Vec<u8> {
    // mov eax, 107 (geteuid); syscall; mov edi, eax; mov eax, 60 (exit); syscall
    elf(&[
        0xb8, 0x6b, 0, 0, 0, 0x0f, 0x05, 0x89, 0xc7, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05,
    ])
}

/// A static x86-64 ELF that becomes uid 1000 (`setresuid`) and executes `/a/setuid` (exit 99
/// if it cannot): runs the [`euid_elf`] probe as an ordinary user where the runtime has no
/// `--user` (ctr 1.6).
pub fn drop_elf() -> Vec<u8> {
    let mut code = vec![
        0xbf, 0xe8, 0x03, 0, 0, // mov edi, 1000
        0xbe, 0xe8, 0x03, 0, 0, // mov esi, 1000
        0xba, 0xe8, 0x03, 0, 0, // mov edx, 1000
        0xb8, 0x75, 0, 0, 0, // mov eax, 117 (setresuid)
        0x0f, 0x05, // syscall
        0x48, 0x8d, 0x3d, 0x17, 0, 0, 0, // lea rdi, [rip + 23] (the path)
        0x31, 0xf6, // xor esi, esi (argv NULL)
        0x31, 0xd2, // xor edx, edx
        0xb8, 0x3b, 0, 0, 0, // mov eax, 59 (execve)
        0x0f, 0x05, // syscall
        0xbf, 0x63, 0, 0, 0, // mov edi, 99
        0xb8, 0x3c, 0, 0, 0, // mov eax, 60 (exit)
        0x0f, 0x05, // syscall
    ];
    assert_eq!(code.len(), 52);
    code.extend_from_slice(b"/a/setuid\0");
    elf(&code)
}

/// `code` as a static x86-64 executable: one loadable segment at 0x400000, entry at the code.
fn elf(code: &[u8]) -> Vec<u8> {
    let (base, header, program): (u64, u64, u64) = (0x40_0000, 64, 56);
    let total = header + program + code.len() as u64;
    let mut b = b"\x7fELF".to_vec();
    b.extend_from_slice(&[2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // 64-bit, LE, v1, SysV
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(base + header + program).to_le_bytes()); // entry
    b.extend_from_slice(&header.to_le_bytes()); // program headers at 64
    b.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    b.extend_from_slice(&0u32.to_le_bytes());
    for v in [header as u16, program as u16, 1, 0, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    b.extend_from_slice(&5u32.to_le_bytes()); // R + X
    for v in [0, base, base, total, total, 0x1000] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(code);
    assert_eq!(b.len() as u64, total);
    b
}

/// Deterministic pseudo-random bytes (xorshift64*); `seed` 0 is mapped to a non-zero state.
pub fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    if x == 0 {
        x = 1;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_blob(dir: &Path, data: &[u8]) -> (String, PathBuf) {
    let d = digest(data);
    let path = dir.join("blobs/sha256").join(&d["sha256:".len()..]);
    std::fs::write(&path, data).expect("write blob");
    (d, path)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    // No file name and mtime 0 in the gzip header, so the bytes depend on the input only.
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip finish")
}

/// One tar entry of the generator, and the node it leaves in the merged tree.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: EKind,
    mode: u32,
    uid: u64,
    gid: u64,
    uname: &'static str,
    gname: &'static str,
    mtime: u64,
    xattrs: Vec<(&'static str, Vec<u8>)>,
    data: Vec<u8>,
    /// Symlink or hardlink target.
    link: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum EKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
}

/// The host paths of what `program` loads (its loader and libraries), as `ldd` lists them.
pub fn host_loads(program: &str) -> Vec<String> {
    let ldd = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .expect("run ldd");
    assert!(ldd.status.success(), "ldd {program}: {ldd:?}");
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)"
    String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(str::to_string)
        .collect()
}

/// `program` and what it loads, as [`GenSpec::host_program`] says: the entries of the
/// program, and those of what it loads (after the program's, in the same layer, unless
/// `apart`, when both lists start afresh).
fn host_program(program: &str, apart: bool) -> (Vec<Entry>, Vec<Entry>) {
    let mut seen = std::collections::HashSet::new();
    let mut prog = Vec::new();
    host_path(program, &mut prog, &mut seen);
    if apart {
        seen.clear();
    }
    let mut loads = Vec::new();
    for p in host_loads(program) {
        host_path(&p, &mut loads, &mut seen);
    }
    (prog, loads)
}

/// The host's `path` as entries: each directory, symlink and the file met while resolving it.
fn host_path(path: &str, out: &mut Vec<Entry>, seen: &mut std::collections::HashSet<String>) {
    let parts = |p: &str| {
        p.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut todo: std::collections::VecDeque<String> = parts(path).into();
    let mut at = std::path::PathBuf::from("/");
    for _ in 0..256 {
        let Some(c) = todo.pop_front() else { return };
        if c == ".." {
            at.pop();
            continue;
        }
        let p = at.join(&c);
        let rel = p.strip_prefix("/").unwrap().to_str().unwrap().to_string();
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let new = seen.insert(rel.clone());
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).unwrap();
            let target = target.to_str().unwrap();
            if new {
                out.push(Entry::symlink(&rel, target));
            }
            if target.starts_with('/') {
                at = "/".into();
            }
            for t in parts(target).into_iter().rev() {
                todo.push_front(t);
            }
        } else if meta.is_dir() {
            if new {
                out.push(Entry::dir(&rel, 0o755));
            }
            at = p;
        } else {
            if new {
                out.push(Entry::file(&rel, 0o755, std::fs::read(&p).unwrap()));
            }
            return;
        }
    }
    panic!("{path}: too many symlinks");
}

impl Entry {
    fn new(path: &str, kind: EKind, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            uname: "root",
            gname: "root",
            mtime: MTIME,
            xattrs: Vec::new(),
            data: Vec::new(),
            link: String::new(),
        }
    }
    fn dir(path: &str, mode: u32) -> Entry {
        Entry::new(path, EKind::Dir, mode)
    }
    fn file(path: &str, mode: u32, data: Vec<u8>) -> Entry {
        let mut e = Entry::new(path, EKind::File, mode);
        e.data = data;
        e
    }
    fn symlink(path: &str, target: &str) -> Entry {
        let mut e = Entry::new(path, EKind::Symlink, 0o777);
        e.link = target.to_string();
        e
    }
    fn hardlink(path: &str, target: &str) -> Entry {
        let mut e = Entry::new(path, EKind::Hardlink, 0o644);
        e.link = target.to_string();
        e
    }
    fn owner(mut self, id: u64, user: &'static str, group: &'static str) -> Entry {
        self.uid = id;
        self.gid = id;
        self.uname = user;
        self.gname = group;
        self
    }
    fn mtime(mut self, offset: u64) -> Entry {
        self.mtime = MTIME + offset;
        self
    }

    /// Puts the node this entry leaves into `tree` (no whiteout handling: see [`apply_upper`]).
    fn apply(&self, tree: &mut Tree) {
        let node = match self.kind {
            EKind::Hardlink => {
                let mut n = tree.get(&self.link).expect("hardlink target").clone();
                n.hardlink = Some(self.link.clone());
                n
            }
            k => Node {
                kind: match k {
                    EKind::File => Kind::File,
                    EKind::Dir => Kind::Dir,
                    EKind::Symlink => Kind::Symlink,
                    EKind::Fifo => Kind::Fifo,
                    EKind::Hardlink => unreachable!(),
                },
                mode: self.mode,
                uid: self.uid,
                gid: self.gid,
                size: self.data.len() as u64,
                sha256: (k == EKind::File).then(|| hex::encode(Sha256::digest(&self.data))),
                link: (k == EKind::Symlink).then(|| self.link.clone()),
                xattrs: self
                    .xattrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                mtime: self.mtime,
                hardlink: None,
            },
        };
        tree.insert(self.path.clone(), node);
    }
}

/// Applies the upper layer to `tree` by hand: its whiteouts are fixed names, so this does not reuse
/// the generic code in `tree.rs` that it is meant to check.
fn apply_upper(tree: &mut Tree, upper: &[Entry]) {
    for gone in ["a/deleteme.txt", "gone-dir", "gone-dir/inner.txt"] {
        assert!(tree.remove(gone).is_some(), "{gone} is in layer 1");
    }
    let cleared: Vec<String> = tree
        .keys()
        .filter(|k| k.starts_with("opq/"))
        .cloned()
        .collect();
    assert!(cleared.len() >= 3, "opq/ has lower contents");
    for k in cleared {
        tree.remove(&k);
    }
    for e in upper {
        let name = e.path.rsplit('/').next().unwrap_or_default();
        if !name.starts_with(".wh.") {
            e.apply(tree);
        }
    }
}

/// The entries of both layers, in tar order.
fn layer_entries(spec: &GenSpec) -> (Vec<Entry>, Vec<Entry>) {
    use EKind::Fifo;
    let long_dir = format!("long/{}", "d".repeat(60));
    let long_file = format!("{long_dir}/{}.txt", "f".repeat(60));
    assert!(long_file.len() > 100);
    let mut xattr_file = Entry::file("a/xattr.txt", 0o644, b"has xattrs\n".to_vec()).mtime(7);
    xattr_file.xattrs = vec![
        ("user.bin", vec![0u8, 1, 2, 0xff, 0xfe, b'=', b' ', 0]),
        ("user.foo", b"bar baz".to_vec()),
    ];
    let mut lower = vec![
        Entry::dir("a", 0o755).mtime(1),
        Entry::dir("a/b", 0o755).mtime(2),
        Entry::dir("a/b/c", 0o750).mtime(3),
        Entry::file("a/empty", 0o644, Vec::new()).mtime(4),
        Entry::file("a/small.txt", 0o644, b"hello world\n".to_vec()).mtime(5),
        Entry::file("a/b/c/deep.bin", 0o644, xorshift_bytes(spec.seed + 1, 4097)).mtime(6),
        xattr_file,
        Entry::file(
            "a/exact-4mib.bin",
            0o644,
            xorshift_bytes(spec.seed + 2, FOUR_MIB),
        )
        .mtime(8),
        Entry::file(
            "big.bin",
            0o644,
            xorshift_bytes(spec.seed + 3, spec.big_file_size),
        )
        .mtime(9),
        Entry::file("a/secret", 0o600, b"secret\n".to_vec())
            .owner(1000, "user", "user")
            .mtime(10),
        Entry::file("a/tool", 0o755, b"#!/bin/sh\necho tool\n".to_vec()).mtime(11),
        Entry::file("a/setuid", 0o4755, euid_elf()).mtime(12),
        Entry::file("a/drop", 0o755, drop_elf()).mtime(12),
        Entry::file("nobody.txt", 0o640, b"owned by nobody\n".to_vec())
            .owner(65534, "nobody", "nogroup")
            .mtime(13),
        Entry::dir("tmp", 0o1777).mtime(14),
        Entry::dir("home", 0o755).mtime(15),
        Entry::dir("home/user", 0o700)
            .owner(1000, "user", "user")
            .mtime(16),
        Entry::symlink("a/rel-link", "small.txt").mtime(17),
        Entry::symlink("a/b/up-link", "../small.txt").mtime(18),
        Entry::symlink("abs-link", "/a/small.txt").mtime(19),
        Entry::symlink("dangling", "/does/not/exist").mtime(20),
        Entry::hardlink("a/hardlink", "a/small.txt").mtime(21),
        Entry::new("a/fifo", Fifo, 0o644).mtime(22),
        Entry::dir("long", 0o755).mtime(23),
        Entry::dir(&long_dir, 0o755).mtime(24),
        Entry::file(&long_file, 0o644, b"long path\n".to_vec()).mtime(25),
        // Targets of layer 2.
        Entry::file("a/deleteme.txt", 0o644, b"deleted by layer 2\n".to_vec()).mtime(26),
        Entry::file("a/overwrite.txt", 0o644, b"version one\n".to_vec()).mtime(27),
        Entry::dir("gone-dir", 0o755).mtime(28),
        Entry::file("gone-dir/inner.txt", 0o644, b"inner\n".to_vec()).mtime(29),
        Entry::dir("opq", 0o755).mtime(30),
        Entry::file("opq/old1", 0o644, b"old 1\n".to_vec()).mtime(31),
        Entry::dir("opq/sub", 0o755).mtime(32),
        Entry::file("opq/sub/old2", 0o644, b"old 2\n".to_vec()).mtime(33),
    ];
    if spec.busybox {
        let bb = std::fs::read(BUSYBOX)
            .unwrap_or_else(|e| panic!("read {BUSYBOX} (Debian package busybox-static): {e}"));
        lower.extend([
            Entry::dir("bin", 0o755).mtime(40),
            Entry::file("bin/busybox", 0o755, bb).mtime(41),
            Entry::symlink("bin/sh", "busybox").mtime(42),
            Entry::symlink("bin/cat", "busybox").mtime(43),
            Entry::dir("etc", 0o755).mtime(44),
            Entry::file("etc/hello", 0o644, format!("{HELLO_LINE}\n").into_bytes()).mtime(45),
        ]);
    }
    let mut above = Vec::new();
    if let Some(program) = spec.host_program {
        let (prog, loads) = host_program(program, spec.program_above);
        match spec.program_above {
            true => above = prog,
            false => lower.extend(prog),
        }
        lower.extend(loads);
    }
    let wh = |p: &str| Entry::file(p, 0o644, Vec::new()).mtime(50);
    let mut upper = vec![
        wh("a/.wh.deleteme.txt"),
        wh(".wh.gone-dir"),
        Entry::dir("opq", 0o775).mtime(51),
        wh("opq/.wh..wh..opq"),
        Entry::file("opq/new-in-opq", 0o644, b"new in opaque dir\n".to_vec()).mtime(52),
        Entry::file("a/overwrite.txt", 0o600, b"version two, longer\n".to_vec())
            .owner(1000, "user", "user")
            .mtime(53),
        Entry::file(
            "layer2-new.bin",
            0o644,
            xorshift_bytes(spec.upper_seed.unwrap_or(spec.seed + 4), 100_000),
        )
        .mtime(54),
    ];
    upper.extend(above);
    (lower, upper)
}

/// The uncompressed tar of `entries` (GNU long names for paths over 100 bytes, PAX for xattrs).
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Complete);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_username(e.uname).expect("uname");
        h.set_groupname(e.gname).expect("gname");
        h.set_mtime(e.mtime);
        h.set_size(0);
        if !e.xattrs.is_empty() {
            let recs: Vec<(String, &[u8])> = e
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            b.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
                .expect("pax");
        }
        match e.kind {
            EKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(e.data.len() as u64);
                b.append_data(&mut h, &e.path, e.data.as_slice())
            }
            EKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, format!("{}/", e.path), std::io::empty())
            }
            EKind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                b.append_data(&mut h, &e.path, std::io::empty())
            }
            EKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, &e.path, &e.link)
            }
            EKind::Hardlink => {
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, &e.path, &e.link)
            }
        }
        .unwrap_or_else(|err| panic!("tar entry {}: {err}", e.path));
    }
    b.into_inner().expect("finish tar")
}

/// A multi-platform OCI layout in `dir`: an image index (tag `tag` in `index.json`) of the image
/// of `spec` for linux/amd64 and the image of seed `spec.seed + 1` for linux/arm64 (its config
/// saying arm64). Returns the two manifests' digests, amd64 first.
pub fn build_multi_platform_layout(dir: &Path, spec: &GenSpec) -> (String, String) {
    let amd64 = build_oci_layout(dir, spec);
    let other = tempfile::tempdir().expect("tempdir");
    let arm = build_oci_layout(
        other.path(),
        &GenSpec {
            seed: spec.seed + 1,
            ..spec.clone()
        },
    );
    for p in &arm.layer_paths {
        std::fs::copy(
            p,
            dir.join("blobs/sha256").join(p.file_name().expect("name")),
        )
        .expect("copy layer");
    }
    let mut config = arm.config.clone();
    config["architecture"] = json!("arm64");
    let config_bytes = serde_json::to_vec(&config).expect("config json");
    let (config_digest, _) = write_blob(dir, &config_bytes);
    let mut manifest = arm.manifest.clone();
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config_bytes.len());
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest json");
    let (arm_digest, _) = write_blob(dir, &manifest_bytes);
    let amd64_size = serde_json::to_vec(&amd64.manifest).expect("json").len();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd64.manifest_digest, "size": amd64_size,
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm_digest, "size": manifest_bytes.len(),
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    });
    let index_bytes = serde_json::to_vec(&index).expect("index json");
    let (index_digest, _) = write_blob(dir, &index_bytes);
    let top = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_INDEX,
            "digest": index_digest,
            "size": index_bytes.len(),
            "annotations": {REF_NAME: spec.tag},
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&top).expect("json"),
    )
    .expect("write index.json");
    (amd64.manifest_digest, arm_digest)
}
