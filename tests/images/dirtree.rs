//! A [`Tree`] read from a real directory (a lazy mount, an unpacked rootfs): `lstat`, `readlink`,
//! xattrs (`llistxattr`/`lgetxattr` through `libc`) and the sha256 of every file's content, in the
//! form [`super::tree`] builds from layers, so the two compare with
//! [`super::tree::assert_same_tree`]. The inode facts a [`Tree`] leaves out (hardlinks as one inode,
//! `st_nlink`, `st_blocks`) are checked by [`assert_inodes_match`].
//!
//! Nothing here is bounded in time: callers that read a FUSE mount run it on a bounded thread
//! ([`crate::util::call_bounded`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::tree::{Kind, Node, Tree};

/// `path` as a C string.
pub fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("path without NUL")
}

/// The extended attributes of `path` itself (`llistxattr` + `lgetxattr`); none when the file
/// system does not support them.
pub fn xattrs_of(path: &Path) -> BTreeMap<String, Vec<u8>> {
    fn fail(what: &str, path: &Path) -> ! {
        panic!("{what} {}: {}", path.display(), io::Error::last_os_error())
    }
    let p = c_path(path);
    let unsupported = || {
        matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOTSUP) | Some(libc::ENODATA)
        )
    };
    let mut out = BTreeMap::new();
    // SAFETY: size query; no buffer is written.
    let n = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        if unsupported() {
            return out;
        }
        fail("llistxattr", path);
    }
    let mut names = vec![0u8; n as usize];
    // SAFETY: `names` has `names.len()` writable bytes.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        fail("llistxattr", path);
    }
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
    {
        let c_name = CString::new(name).expect("xattr name");
        // SAFETY: size query; no buffer is written.
        let len = unsafe { libc::lgetxattr(p.as_ptr(), c_name.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            fail("lgetxattr", path);
        }
        let mut value = vec![0u8; len as usize];
        // SAFETY: `value` has `value.len()` writable bytes.
        let len = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            fail("lgetxattr", path);
        }
        value.truncate(len as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), value);
    }
    out
}

/// Hex sha256 of a file's content.
pub fn sha256_of_file(path: &Path) -> String {
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            return hex::encode(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// One path as the directory shows it, in the form [`super::tree`] builds from layers
/// (`hardlink` is `None`: the inode numbers tell hardlinks apart, see [`DirTree::meta`]).
pub fn node_of(path: &Path, m: &std::fs::Metadata) -> Node {
    let t = m.file_type();
    let dev = || (libc::major(m.rdev()), libc::minor(m.rdev()));
    let kind = if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else if t.is_symlink() {
        Kind::Symlink
    } else if t.is_fifo() {
        Kind::Fifo
    } else if t.is_char_device() {
        let (major, minor) = dev();
        Kind::CharDev { major, minor }
    } else if t.is_block_device() {
        let (major, minor) = dev();
        Kind::BlockDev { major, minor }
    } else {
        panic!("{}: unexpected file type {t:?}", path.display())
    };
    let link = (kind == Kind::Symlink).then(|| {
        std::fs::read_link(path)
            .unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()))
            .into_os_string()
            .into_string()
            .expect("utf-8 link target")
    });
    Node {
        size: if kind == Kind::File { m.len() } else { 0 },
        sha256: (kind == Kind::File).then(|| sha256_of_file(path)),
        link,
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid().into(),
        gid: m.gid().into(),
        xattrs: xattrs_of(path),
        mtime: m.mtime() as u64,
        hardlink: None,
    }
}

/// What a walk of a directory found.
pub struct DirTree {
    pub tree: Tree,
    /// `lstat` of each path of `tree`.
    pub meta: BTreeMap<String, std::fs::Metadata>,
}

/// Walks everything under `root` (not `root` itself), reading every file.
pub fn tree_of_dir(root: &Path) -> DirTree {
    let mut w = DirTree {
        tree: Tree::new(),
        meta: BTreeMap::new(),
    };
    let mut dirs = vec![String::new()];
    while let Some(rel) = dirs.pop() {
        let dir = root.join(&rel);
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()));
            let name = entry.file_name().into_string().expect("utf-8 name");
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let full = root.join(&path);
            let m = std::fs::symlink_metadata(&full)
                .unwrap_or_else(|e| panic!("lstat {}: {e}", full.display()));
            let node = node_of(&full, &m);
            if node.kind == Kind::Dir {
                dirs.push(path.clone());
            }
            w.tree.insert(path.clone(), node);
            w.meta.insert(path, m);
        }
    }
    w
}

/// The inode facts the tree comparison leaves out: a hardlink shares its target's `st_ino`, no
/// other two paths share one, `st_nlink` of a file counts its names, `st_blocks` is
/// `ceil(size / 512)` and a symlink's `st_size` is its target's length.
#[track_caller]
pub fn assert_inodes_match(expected: &Tree, walk: &DirTree) {
    let target = |p: &str| -> String {
        expected[p]
            .hardlink
            .clone()
            .unwrap_or_else(|| p.to_string())
    };
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    for (p, n) in expected {
        if n.kind == Kind::File {
            *names.entry(target(p)).or_default() += 1;
        }
    }
    assert!(
        names.values().any(|&n| n > 1),
        "the generated image has no hardlink to check"
    );
    for (p, n) in expected {
        let m = &walk.meta[p];
        match n.kind {
            Kind::File => {
                let t = target(p);
                assert_eq!(m.ino(), walk.meta[&t].ino(), "{p} and {t} are one inode");
                assert_eq!(m.nlink(), names[&t], "st_nlink of {p}");
                assert_eq!(m.blocks(), m.len().div_ceil(512), "st_blocks of {p}");
            }
            Kind::Symlink => {
                let len = n.link.as_ref().map_or(0, |l| l.len()) as u64;
                assert_eq!(m.len(), len, "st_size of symlink {p}");
            }
            _ => {}
        }
    }
    let aliases = expected.values().filter(|n| n.hardlink.is_some()).count();
    let inos: BTreeSet<u64> = walk.meta.values().map(|m| m.ino()).collect();
    assert_eq!(
        inos.len(),
        walk.meta.len() - aliases,
        "paths that are not hardlinks must have inodes of their own"
    );
}
