//! The merged rootfs of an image as an immutable inode table, built once from the layers' eStargz
//! TOCs (bottom layer first) with OCI/overlay semantics:
//!
//! - a later layer's entry replaces the same path from lower layers (a directory over a
//!   directory merges; anything else replaces the whole subtree);
//! - `.wh.NAME` removes NAME (and everything under it) from the layers below;
//!   `.wh..wh..opq` hides everything the layers below put in its directory. Whiteouts act on the
//!   layers below only, never on entries of their own layer;
//! - hardlinks share one inode (`nlink` counts the names); directories missing from a TOC are
//!   made with mode 0755, owner 0:0;
//! - eStargz's own files at the root (`stargz.index.json`, landmarks) are not part of the rootfs.
//!
//! Inode 1 is the root. The table never changes after [`Table::build`], so lookups need no locks.
//! Pure: TOCs in, table out; file contents are found through [`File::layer`] and [`File::name`]
//! in that layer's chunk index.

use base64::Engine as _;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::image::estargz::index::{clean, clean_name};
use crate::image::estargz::{EntryType, Toc, TocEntry, TOC_TAR_NAME};

/// Inode number of the root directory.
pub const ROOT: u64 = 1;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const ESTARGZ_ROOT_FILES: [&str; 3] = [TOC_TAR_NAME, ".prefetch.landmark", ".no.prefetch.landmark"];

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir { children: BTreeMap<String, u64> },
    File(File),
    Symlink { target: String },
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
    Fifo,
}

/// Where a regular file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Index of the layer (bottom = 0) whose blob holds the content.
    pub layer: usize,
    /// The cleaned name under which that layer's chunk index lists it.
    pub name: String,
}

/// One inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub ino: u64,
    pub kind: Kind,
    /// Permission bits, including setuid/setgid/sticky (no type bits).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes for files, target length for symlinks, 0 otherwise.
    pub size: u64,
    /// Seconds since the Unix epoch (0 when the TOC has none).
    pub mtime: i64,
    pub nlink: u32,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Inode {
    /// 512-byte blocks, as `st_blocks`.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("layer {layer}: entry {name:?}: {reason}")]
    Entry {
        layer: usize,
        name: String,
        reason: String,
    },
}

/// The merged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// `inodes[ino - 1]`; removed inodes stay as unreachable slots.
    inodes: Vec<Inode>,
}

impl Table {
    /// Merge `layers` (bottom first).
    pub fn build<'a>(layers: impl IntoIterator<Item = &'a Toc>) -> Result<Table, Error> {
        let mut b = Builder { inodes: Vec::new() };
        b.inodes.push(dir_inode(ROOT, 0o755));
        for (layer, toc) in layers.into_iter().enumerate() {
            b.apply(layer, toc, false)?;
        }
        b.count_links();
        Ok(Table { inodes: b.inodes })
    }

    /// One layer on its own in overlayfs lower-dir form: [`Table::build`] of
    /// [`overlay_form`]`(toc)`, without copying the TOC.
    pub fn build_overlay(toc: &Toc) -> Result<Table, Error> {
        let mut b = Builder { inodes: Vec::new() };
        b.inodes.push(dir_inode(ROOT, 0o755));
        b.apply(0, toc, true)?;
        b.count_links();
        Ok(Table { inodes: b.inodes })
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        ino.checked_sub(1).and_then(|i| self.inodes.get(i as usize))
    }

    /// The child `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Option<&Inode> {
        match &self.get(parent)?.kind {
            Kind::Dir { children } => self.get(*children.get(name)?),
            _ => None,
        }
    }

    /// The inode at a cleaned path (`""` is the root).
    pub fn resolve(&self, path: &str) -> Option<&Inode> {
        let mut ino = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = self.lookup(ino, part)?.ino;
        }
        self.get(ino)
    }

    /// Inodes in use and the 512-byte blocks of all files (for `statfs`).
    pub fn totals(&self) -> (u64, u64) {
        let blocks = self
            .inodes
            .iter()
            .filter(|n| matches!(n.kind, Kind::File(_)))
            .map(Inode::blocks)
            .sum();
        (self.inodes.len() as u64, blocks)
    }

    /// The parent of every reachable directory (the root's is itself), for `..`: a walk that
    /// builds no paths.
    pub fn dir_parents(&self) -> HashMap<u64, u64> {
        let mut parents = HashMap::from([(ROOT, ROOT)]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            let Some(Inode {
                kind: Kind::Dir { children },
                ..
            }) = self.get(ino)
            else {
                continue;
            };
            for child in children.values() {
                if let Some(Inode {
                    kind: Kind::Dir { .. },
                    ..
                }) = self.get(*child)
                {
                    parents.insert(*child, ino);
                    stack.push(*child);
                }
            }
        }
        parents
    }

    /// Every reachable path (cleaned, `""` for the root) with its inode, depth first in name order.
    pub fn walk(&self) -> Vec<(String, &Inode)> {
        let mut out = Vec::new();
        let mut stack = vec![(String::new(), ROOT)];
        while let Some((path, ino)) = stack.pop() {
            let Some(node) = self.get(ino) else { continue };
            if let Kind::Dir { children } = &node.kind {
                for (name, child) in children.iter().rev() {
                    let p = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}/{name}")
                    };
                    stack.push((p, *child));
                }
            }
            out.push((path, node));
        }
        out
    }
}

/// `trusted.overlay.opaque`: the xattr that makes a directory opaque in an overlayfs lower dir.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// One layer's TOC in overlayfs lower-dir form, for a layer served on its own (the Podman
/// additional layer store): each `.wh.NAME` becomes a 0/0 character device `NAME`, and each
/// `DIR/.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y` on `DIR` (which is added to
/// the TOC when it has no entry of its own). [`Table::build`] of the result applies no whiteouts,
/// as overlayfs applies them when it stacks the layers.
pub fn overlay_form(toc: &Toc) -> Toc {
    use crate::image::estargz::TocEntry;
    let yes = base64::engine::general_purpose::STANDARD.encode(b"y");
    let mut opaque: Vec<String> = Vec::new();
    let mut entries: Vec<TocEntry> = Vec::with_capacity(toc.entries.len());
    for e in &toc.entries {
        let path = clean_name(&e.name);
        let (parent, base) = split(&path);
        if base == OPAQUE {
            opaque.push(parent.to_string());
        } else if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
            entries.push(whiteout_device(e, parent, hidden));
        } else {
            entries.push(e.clone());
        }
    }
    // one pass to index the directories: O(entries), whatever the number of opaque markers
    // (a scan per marker was O(markers × entries) on an async worker: H1)
    let mut dirs: HashMap<String, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.kind == EntryType::Dir {
            dirs.insert(clean_name(&e.name), i);
        }
    }
    for dir in opaque {
        match dirs.get(&dir) {
            Some(&i) => {
                entries[i]
                    .xattrs
                    .insert(OVERLAY_OPAQUE_XATTR.into(), yes.clone());
            }
            None => {
                // at the end: Table::build merges a directory entry into the directory its
                // children made, keeping them
                let mut d = TocEntry::new(format!("{dir}/"), EntryType::Dir);
                d.mode = 0o755;
                d.xattrs.insert(OVERLAY_OPAQUE_XATTR.into(), yes.clone());
                dirs.insert(dir, entries.len());
                entries.push(d);
            }
        }
    }
    Toc {
        version: toc.version,
        entries,
    }
}

/// The longest entry name or link target a TOC may hold (Linux `PATH_MAX`) and the longest
/// part of one (`NAME_MAX`): a 10^6-part name once made 10^6 directories whose paths totalled
/// about 10^12 bytes in [`Table::walk`].
pub const PATH_MAX: usize = 4096;
pub const NAME_MAX: usize = 255;
pub use crate::image::estargz::toc::MAX_ENTRIES;

struct Builder {
    inodes: Vec<Inode>,
}

fn dir_inode(ino: u64, perm: u32) -> Inode {
    Inode {
        ino,
        kind: Kind::Dir {
            children: BTreeMap::new(),
        },
        perm,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        nlink: 2,
        xattrs: BTreeMap::new(),
    }
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

impl Builder {
    fn node(&mut self, ino: u64) -> &mut Inode {
        &mut self.inodes[(ino - 1) as usize]
    }

    fn children(&mut self, ino: u64) -> Option<&mut BTreeMap<String, u64>> {
        match &mut self.node(ino).kind {
            Kind::Dir { children } => Some(children),
            _ => None,
        }
    }

    fn find(&self, path: &str) -> Option<u64> {
        let mut ino = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            match &self.inodes[(ino - 1) as usize].kind {
                Kind::Dir { children } => ino = *children.get(part)?,
                _ => return None,
            }
        }
        Some(ino)
    }

    /// The directory at `path`, made (0755, 0:0) where missing; a non-directory in the way is
    /// replaced, as a tar extraction would.
    fn dir(&mut self, path: &str) -> u64 {
        let mut ino = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let existing = self.children(ino).and_then(|c| c.get(part).copied());
            ino = match existing {
                Some(c) if matches!(self.node(c).kind, Kind::Dir { .. }) => c,
                _ => {
                    let new = self.inodes.len() as u64 + 1;
                    self.inodes.push(dir_inode(new, 0o755));
                    if let Some(c) = self.children(ino) {
                        c.insert(part.to_string(), new);
                    }
                    new
                }
            };
        }
        ino
    }

    fn remove(&mut self, path: &str) {
        let (parent, name) = split(path);
        if let Some(p) = self.find(parent) {
            if let Some(c) = self.children(p) {
                c.remove(name);
            }
        }
    }

    fn apply(&mut self, layer: usize, toc: &Toc, overlay: bool) -> Result<(), Error> {
        let bad = |name: &str, reason: &str| Error::Entry {
            layer,
            name: name.into(),
            reason: reason.into(),
        };
        if toc.entries.len() > MAX_ENTRIES {
            return Err(bad(
                "",
                &format!(
                    "{} TOC entries, over the bound of {MAX_ENTRIES}",
                    toc.entries.len()
                ),
            ));
        }
        // names a kernel could hold, so every walk of the tree stays within entries × PATH_MAX
        // (in overlay form, those of the entries whiteouts become: checked as they are made)
        for e in toc.entries.iter() {
            if e.kind != EntryType::Chunk && !(overlay && is_whiteout(&e.name)) {
                check_names(layer, e)?;
            }
        }
        // whiteouts first: they act on the layers below only (a layer in overlay form keeps
        // them, as overlayfs applies them)
        for e in toc
            .entries
            .iter()
            .filter(|e| !overlay && is_whiteout(&e.name))
        {
            let path = clean(&e.name);
            let (parent, base) = split(&path);
            if base == OPAQUE {
                if let Some(dir) = self.find(parent) {
                    if let Some(c) = self.children(dir) {
                        c.clear();
                    }
                }
            } else if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
                self.remove(&join(parent, hidden));
            }
        }
        // at most one inode per entry that is not a chunk (whatever the layer's entries
        // make, the table holds that many): grown once, not doubled and copied
        let entries = toc.entries.iter();
        self.inodes
            .reserve(entries.filter(|e| e.kind != EntryType::Chunk).count());
        let opaque = match overlay {
            true => Opaque::plan(toc),
            false => Opaque::default(),
        };
        let mut at = Entries {
            layer,
            links: toc
                .entries
                .iter()
                .filter(|e| e.kind == EntryType::Hardlink)
                .map(|e| clean(&e.link_name))
                .collect(),
            mine: HashMap::new(),
            last: Parent::default(),
        };
        for (i, e) in toc.entries.iter().enumerate() {
            if overlay && is_whiteout(&e.name) {
                let path = clean(&e.name);
                let (parent, base) = split(&path);
                if base == OPAQUE {
                    continue;
                }
                if !base.starts_with(WHITEOUT_PREFIX) && e.kind != EntryType::Chunk {
                    check_names(layer, e)?;
                }
                if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
                    let w = whiteout_device(e, parent, hidden);
                    check_names(layer, &w)?;
                    let path = Cow::Owned(clean_name(&w.name));
                    at.entry(self, &w, path, false)?;
                    continue;
                }
            }
            if e.kind == EntryType::Chunk {
                continue;
            }
            at.entry(self, e, clean(&e.name), opaque.marked.contains(&i))?;
        }
        // opaque directories with no entry of their own: made at the end, keeping the
        // children their entries made
        for dir in opaque.made {
            let mut d = TocEntry::new(format!("{dir}/"), EntryType::Dir);
            d.mode = 0o755;
            check_names(layer, &d)?;
            let path = Cow::Owned(clean_name(&d.name));
            at.entry(self, &d, path, true)?;
        }
        Ok(())
    }

    /// `nlink`: names per non-directory; 2 + subdirectories per directory. Counted in arrays
    /// indexed by inode (`ino - 1`), as every inode number is.
    fn count_links(&mut self) {
        let n = self.inodes.len();
        let (mut names, mut subdirs, mut seen) = (vec![0u32; n], vec![0u32; n], vec![false; n]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            let i = (ino - 1) as usize;
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            let Kind::Dir { children } = &self.inodes[i].kind else {
                continue;
            };
            for child in children.values() {
                let c = (*child - 1) as usize;
                if matches!(self.inodes[c].kind, Kind::Dir { .. }) {
                    subdirs[i] += 1;
                    stack.push(*child);
                } else {
                    names[c] += 1;
                }
            }
        }
        for (i, node) in self.inodes.iter_mut().enumerate() {
            node.nlink = match node.kind {
                Kind::Dir { .. } => 2 + subdirs[i],
                _ if names[i] == 0 => 1,
                _ => names[i],
            };
        }
    }
}

/// `parent/name`, or `name` at the root.
fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// What whiteout entry `e` (`parent/.wh.hidden`) is in overlayfs lower-dir form: the 0/0
/// character device `parent/hidden`, with the whiteout's owner and time.
fn whiteout_device(e: &TocEntry, parent: &str, hidden: &str) -> TocEntry {
    let mut w = TocEntry::new(join(parent, hidden), EntryType::Char);
    (w.uid, w.gid, w.mod_time) = (e.uid, e.gid, e.mod_time.clone());
    w
}

/// Refuses an entry whose name or link target a kernel could not hold.
fn check_names(layer: usize, e: &TocEntry) -> Result<(), Error> {
    for name in [&e.name, &e.link_name] {
        let long_part = || name.split('/').any(|c| c.len() > NAME_MAX);
        if name.len() > PATH_MAX || (name.len() > NAME_MAX && long_part()) {
            return Err(Error::Entry {
                layer,
                name: e.name.chars().take(64).collect(),
                reason: format!(
                    "a name of {} bytes: over PATH_MAX ({PATH_MAX}) or a part over NAME_MAX ({NAME_MAX})",
                    name.len()
                ),
            });
        }
    }
    Ok(())
}

/// Whether a TOC name may be a whiteout or an opaque marker (a cheap test before cleaning it).
fn is_whiteout(name: &str) -> bool {
    name.contains(WHITEOUT_PREFIX)
}

/// Where a layer in overlay form marks directories opaque (`DIR/.wh..wh..opq`): the index of
/// the last directory entry of each such `DIR`, or, for a `DIR` with no entry, a directory
/// made at the end of the layer (mode 0755, owner 0:0).
#[derive(Default)]
struct Opaque {
    marked: HashSet<usize>,
    made: Vec<String>,
}

impl Opaque {
    fn plan(toc: &Toc) -> Opaque {
        let mut markers = Vec::new();
        for e in toc.entries.iter().filter(|e| is_whiteout(&e.name)) {
            let path = clean(&e.name);
            if let (parent, OPAQUE) = split(&path) {
                markers.push(parent.to_string());
            }
        }
        let mut plan = Opaque::default();
        if markers.is_empty() {
            return plan;
        }
        // one pass to index the directories: O(entries), whatever the number of markers (a
        // scan per marker was O(markers × entries) on an async worker: H1)
        let mut dirs: HashMap<Cow<str>, Option<usize>> = HashMap::new();
        for (i, e) in toc.entries.iter().enumerate() {
            if e.kind != EntryType::Dir {
                continue;
            }
            let path = clean(&e.name);
            let base = split(&path).1;
            if base != OPAQUE && !base.starts_with(WHITEOUT_PREFIX) {
                dirs.insert(path, Some(i));
            }
        }
        for dir in markers {
            match dirs.get(dir.as_str()) {
                Some(Some(i)) => {
                    plan.marked.insert(*i);
                }
                Some(None) => {}
                None => {
                    dirs.insert(Cow::Owned(dir.clone()), None);
                    plan.made.push(dir);
                }
            }
        }
        plan
    }
}

/// The entries of one layer being added to a [`Builder`].
struct Entries<'a> {
    layer: usize,
    /// This layer's inode per cleaned path, for hardlinks.
    mine: HashMap<Cow<'a, str>, u64>,
    /// The paths this layer's hardlinks name: only those are kept in `mine` (most layers
    /// have a few hardlinks, and hashing every path cost a sixth of the build).
    links: BTreeSet<Cow<'a, str>>,
    /// The directory the last entry went into: a TOC lists a directory's entries together,
    /// so most entries skip the walk from the root (see `Parent`).
    last: Parent,
}

impl<'a> Entries<'a> {
    /// Notes that this layer's `path` is inode `ino`, if a hardlink of the layer names it.
    fn remember(&mut self, path: Cow<'a, str>, ino: u64) {
        if self.links.contains(&path) {
            self.mine.insert(path, ino);
        }
    }

    /// Adds entry `e`, whose cleaned name is `path`; with `opaque`, marked as an opaque
    /// directory (overlay form).
    fn entry(
        &mut self,
        b: &mut Builder,
        e: &TocEntry,
        path: Cow<'a, str>,
        opaque: bool,
    ) -> Result<(), Error> {
        let bad = |name: &str, reason: &str| Error::Entry {
            layer: self.layer,
            name: name.into(),
            reason: reason.into(),
        };
        let (parent, base) = split(&path);
        if base.starts_with(WHITEOUT_PREFIX)
            || (parent.is_empty() && ESTARGZ_ROOT_FILES.contains(&base))
        {
            return Ok(());
        }
        let mut xattrs = e
            .xattrs
            .iter()
            .filter(|(k, _)| !opaque || *k != OVERLAY_OPAQUE_XATTR)
            .map(|(k, v)| {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(|v| (k.clone(), v))
                    .map_err(|_| bad(&e.name, &format!("xattr {k} is not base64")))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        if opaque {
            xattrs.insert(OVERLAY_OPAQUE_XATTR.into(), b"y".to_vec());
        }
        let perm = (e.mode & 0o7777) as u32;
        let (uid, gid) = (e.uid as u32, e.gid as u32);
        let mtime = parse_rfc3339(&e.mod_time).ok_or_else(|| bad(&e.name, "bad modtime"))?;
        if path.is_empty() {
            // the root itself: take its metadata
            let root = b.node(ROOT);
            (root.perm, root.uid, root.gid, root.mtime, root.xattrs) =
                (perm, uid, gid, mtime, xattrs);
            return Ok(());
        }
        if e.kind == EntryType::Hardlink {
            let target = clean(&e.link_name);
            let ino = self
                .mine
                .get(target.as_ref())
                .copied()
                .or_else(|| b.find(&target))
                .filter(|i| !matches!(b.node(*i).kind, Kind::Dir { .. }))
                .ok_or_else(|| {
                    bad(
                        &e.name,
                        &format!("hardlink target {target:?} is not an earlier file"),
                    )
                })?;
            let dir = self.last.dir(b, parent);
            if let Some(c) = b.children(dir) {
                c.insert(base.to_string(), ino);
            }
            self.last.replaced(&path);
            self.remember(path, ino);
            return Ok(());
        }
        let kind = match e.kind {
            EntryType::Dir => {
                // a directory over a directory merges; keep its children
                let ino = b.dir(&path);
                let n = b.node(ino);
                (n.perm, n.uid, n.gid, n.mtime, n.xattrs) = (perm, uid, gid, mtime, xattrs);
                self.remember(path, ino);
                return Ok(());
            }
            EntryType::Reg => Kind::File(File {
                layer: self.layer,
                name: path.to_string(),
            }),
            EntryType::Symlink => Kind::Symlink {
                target: e.link_name.clone(),
            },
            EntryType::Char => Kind::Char {
                major: e.dev_major as u32,
                minor: e.dev_minor as u32,
            },
            EntryType::Block => Kind::Block {
                major: e.dev_major as u32,
                minor: e.dev_minor as u32,
            },
            EntryType::Fifo => Kind::Fifo,
            EntryType::Hardlink | EntryType::Chunk => unreachable!("handled above"),
        };
        let size = match &kind {
            Kind::File(_) => e.size.max(0) as u64,
            Kind::Symlink { target } => target.len() as u64,
            _ => 0,
        };
        let ino = b.inodes.len() as u64 + 1;
        b.inodes.push(Inode {
            ino,
            kind,
            perm,
            uid,
            gid,
            size,
            mtime,
            nlink: 1,
            xattrs,
        });
        let dir = self.last.dir(b, parent);
        if let Some(c) = b.children(dir) {
            c.insert(base.to_string(), ino);
        }
        self.last.replaced(&path);
        self.remember(path, ino);
        Ok(())
    }
}

/// The directory the previous entry of a layer went into, so that the next one in the same
/// directory skips [`Builder::dir`]'s walk from the root. Only an entry that is not a directory
/// can replace a directory (a directory entry merges), and such an entry first moves this
/// memory to its own parent, outside what it replaces; [`Parent::replaced`] drops the memory
/// anyway when it would name what was replaced, so the builder stays right if that changes.
#[derive(Default)]
struct Parent(Option<(String, u64)>);

impl Parent {
    fn dir(&mut self, b: &mut Builder, path: &str) -> u64 {
        match &self.0 {
            Some((p, ino)) if p == path => *ino,
            _ => {
                let ino = b.dir(path);
                self.0 = Some((path.to_string(), ino));
                ino
            }
        }
    }

    /// A non-directory now sits at `path`.
    fn replaced(&mut self, path: &str) {
        let stale = self.0.as_ref().is_some_and(|(p, _)| {
            p.strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
        if stale {
            self.0 = None;
        }
    }
}

/// Seconds since the epoch of a TOC `modtime` (`YYYY-MM-DDTHH:MM:SSZ`, as Go writes it; an
/// offset like `+02:00` is applied). Empty is 0.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.is_empty() {
        return Some(0);
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // skip fractional seconds
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        // ASCII first: slicing a hostile string at fixed bytes must not split a character
        o if o.len() == 6
            && o.is_ascii()
            && (o.starts_with('+') || o.starts_with('-'))
            && &o[3..4] == ":" =>
        {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // days from civil (Howard Hinnant's algorithm)
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::estargz::TocEntry;

    fn e(name: &str, kind: EntryType) -> TocEntry {
        let mut t = TocEntry::new(name, kind);
        t.mode = match kind {
            EntryType::Dir => 0o755,
            _ => 0o644,
        };
        t
    }

    fn reg(name: &str, size: i64) -> TocEntry {
        let mut t = e(name, EntryType::Reg);
        t.size = size;
        t
    }

    fn toc(entries: Vec<TocEntry>) -> Toc {
        Toc {
            version: 1,
            entries,
        }
    }

    fn paths(t: &Table) -> Vec<String> {
        t.walk().into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn layers_merge_with_whiteouts_and_opaque_dirs() {
        let mut link = e("bin/sh", EntryType::Symlink);
        link.link_name = "busybox".into();
        let lower = toc(vec![
            e(".no.prefetch.landmark", EntryType::Reg),
            e("bin/", EntryType::Dir),
            reg("bin/busybox", 100),
            link,
            e("etc/", EntryType::Dir),
            reg("etc/gone", 1),
            reg("etc/kept", 2),
            e("etc/sub/", EntryType::Dir),
            reg("etc/sub/deep", 3),
            e("var/", EntryType::Dir),
            reg("var/old", 4),
            reg("stargz.index.json", 10),
        ]);
        let upper = toc(vec![
            reg("etc/.wh.gone", 0),
            reg("var/.wh..wh..opq", 0),
            reg("var/new", 5),
            reg("etc/kept", 20),
            reg("etc/sub", 6),
            // a whiteout never hides its own layer's entries
            reg("etc/fresh", 7),
            reg("etc/.wh.fresh", 0),
        ]);
        let t = Table::build(&[lower, upper]).unwrap();
        assert_eq!(
            paths(&t),
            [
                "",
                "bin",
                "bin/busybox",
                "bin/sh",
                "etc",
                "etc/fresh",
                "etc/kept",
                "etc/sub",
                "var",
                "var/new"
            ]
        );
        let kept = t.resolve("etc/kept").unwrap();
        assert_eq!(kept.size, 20);
        assert_eq!(
            kept.kind,
            Kind::File(File {
                layer: 1,
                name: "etc/kept".into()
            })
        );
        assert!(
            matches!(t.resolve("etc/sub").unwrap().kind, Kind::File(_)),
            "a file replaces a directory"
        );
        let sh = t.resolve("bin/sh").unwrap();
        assert_eq!(
            (sh.kind.clone(), sh.size),
            (
                Kind::Symlink {
                    target: "busybox".into()
                },
                7
            )
        );
        assert_eq!(t.get(ROOT).unwrap().nlink, 5);
    }

    /// Within one layer, a file that replaces a directory (or one of its parents) takes it out
    /// of the tree; a later entry under that name makes a new directory there, as a tar
    /// extraction would, and never goes into the old one (which the builder's memory of the
    /// last parent it used must not name).
    #[test]
    fn an_entry_after_its_directory_was_replaced_goes_into_a_new_one() {
        let t = Table::build(&[toc(vec![
            e("d/", EntryType::Dir),
            e("d/e/", EntryType::Dir),
            reg("d/e/x", 1),
            reg("d/e", 2),
            reg("d/e/y", 3),
            reg("d/z", 4),
            reg("d", 5),
            reg("d/w", 6),
        ])])
        .unwrap();
        assert_eq!(paths(&t), ["", "d", "d/w"]);
        assert!(matches!(t.resolve("d").unwrap().kind, Kind::Dir { .. }));
        assert_eq!(t.resolve("d/w").unwrap().size, 6);
        let t = Table::build(&[toc(vec![
            e("a/", EntryType::Dir),
            e("a/b/", EntryType::Dir),
            reg("a/b/x", 1),
            reg("a", 2),
            reg("a/b/y", 3),
        ])])
        .unwrap();
        assert_eq!(paths(&t), ["", "a", "a/b", "a/b/y"]);
        assert_eq!(t.get(ROOT).unwrap().nlink, 3);
    }

    #[test]
    fn hardlinks_share_an_inode_and_metadata_comes_through() {
        let mut a = reg("usr/bin/a", 9);
        a.mode = 0o104755;
        a.uid = 1000;
        a.gid = 65534;
        a.mod_time = "2024-01-02T03:04:05Z".into();
        a.xattrs.insert("user.x".into(), "aGk=".into());
        let mut b = e("usr/bin/b", EntryType::Hardlink);
        b.link_name = "usr/bin/a".into();
        let mut dev = e("dev/null", EntryType::Char);
        (dev.dev_major, dev.dev_minor) = (1, 3);
        let t = Table::build(&[toc(vec![
            a,
            b,
            dev,
            e("tmp/", EntryType::Dir),
            e("run/fifo", EntryType::Fifo),
        ])])
        .unwrap();
        let (a, b) = (
            t.resolve("usr/bin/a").unwrap(),
            t.resolve("usr/bin/b").unwrap(),
        );
        assert_eq!(a.ino, b.ino);
        assert_eq!(a.nlink, 2);
        assert_eq!((a.perm, a.uid, a.gid), (0o4755, 1000, 65534));
        assert_eq!(a.mtime, 1_704_164_645);
        assert_eq!(a.xattrs["user.x"], b"hi");
        assert_eq!(a.blocks(), 1);
        assert_eq!(
            t.resolve("dev/null").unwrap().kind,
            Kind::Char { major: 1, minor: 3 }
        );
        // implicit parents
        let usr = t.resolve("usr").unwrap();
        assert_eq!((usr.perm, usr.nlink), (0o755, 3));
        assert_eq!(
            t.lookup(usr.ino, "bin").unwrap().ino,
            t.resolve("usr/bin").unwrap().ino
        );
        assert!(t.lookup(a.ino, "x").is_none());
        // a hardlink to nothing is an error naming the entry
        let mut bad = e("x", EntryType::Hardlink);
        bad.link_name = "missing".into();
        let err = Table::build(&[toc(vec![bad])]).unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
    }

    #[test]
    fn overlay_form_turns_whiteouts_into_devices_and_xattrs() {
        let layer = toc(vec![
            reg("etc/.wh.gone", 0),
            e("var/", EntryType::Dir),
            reg("var/.wh..wh..opq", 0),
            reg("var/new", 5),
            reg("opt/.wh..wh..opq", 0),
            reg("opt/x", 1),
            reg(".wh.top", 0),
        ]);
        let t = Table::build_overlay(&layer).unwrap();
        assert_eq!(t, Table::build(&[overlay_form(&layer)]).unwrap());
        assert_eq!(
            paths(&t),
            ["", "etc", "etc/gone", "opt", "opt/x", "top", "var", "var/new"]
        );
        for w in ["etc/gone", "top"] {
            let n = t.resolve(w).unwrap();
            assert_eq!(n.kind, Kind::Char { major: 0, minor: 0 }, "{w}");
        }
        for d in ["var", "opt"] {
            let n = t.resolve(d).unwrap();
            assert!(matches!(n.kind, Kind::Dir { .. }), "{d}");
            assert_eq!(n.xattrs[OVERLAY_OPAQUE_XATTR], b"y", "{d}");
        }
        assert!(t.resolve("etc").unwrap().xattrs.is_empty());
    }

    /// [`Table::build_overlay`] builds what [`Table::build`] of [`overlay_form`] does, on the
    /// awkward cases: whiteouts of every kind (chunks and directories too), at the root and
    /// of nothing (`.wh.`), markers for directories with, without and with several entries,
    /// repeated markers, a marked directory replaced by a file, an xattr the marker overrides,
    /// hardlinks, and eStargz's own root files.
    #[test]
    fn overlay_form_built_in_place_is_the_same_tree() {
        let mut chunked = reg("lib/.wh.big", 8);
        chunked.chunk_size = 4;
        let mut chunk = e("lib/.wh.big", EntryType::Chunk);
        (chunk.chunk_offset, chunk.chunk_size) = (4, 4);
        let mut marked = e("var/", EntryType::Dir);
        marked
            .xattrs
            .insert(OVERLAY_OPAQUE_XATTR.into(), "not base64!".into());
        let mut link = e("bin/hard", EntryType::Hardlink);
        link.link_name = "bin/sh".into();
        let entries = vec![
            e("", EntryType::Dir),
            reg("stargz.index.json", 1),
            reg(".wh.", 0),
            reg("etc/.wh.gone", 0),
            e("etc/.wh.dir/", EntryType::Dir),
            chunked,
            chunk,
            e("var/", EntryType::Dir),
            reg("var/.wh..wh..opq", 0),
            marked,
            reg("var/.wh..wh..opq", 0),
            reg("var/new", 5),
            reg("opt/.wh..wh..opq", 0),
            reg("opt/x", 1),
            reg("opt/.wh..wh..opq", 0),
            e("srv/", EntryType::Dir),
            reg("srv/.wh..wh..opq", 0),
            reg("srv", 3),
            reg("a.wh.b", 1),
            reg("bin/sh", 2),
            link,
            reg(".wh..wh..wh.x", 0),
            reg(".wh.top", 0),
        ];
        let layer = toc(entries);
        let t = Table::build_overlay(&layer).unwrap();
        assert_eq!(t, Table::build(&[overlay_form(&layer)]).unwrap());
        assert_eq!(t.resolve("var").unwrap().xattrs[OVERLAY_OPAQUE_XATTR], b"y");
        // a file after a marked directory replaces it
        assert!(matches!(t.resolve("srv").unwrap().kind, Kind::File(_)));
        // and a whiteout whose device name no kernel could hold refuses both alike
        let long = toc(vec![reg(&format!(".wh.{}", "n".repeat(NAME_MAX + 1)), 0)]);
        assert!(Table::build_overlay(&long).is_err());
        assert!(Table::build(&[overlay_form(&long)]).is_err());
    }

    /// A hardlink names the inode its target had in the layer at that point, even when a
    /// later entry of the layer has since replaced the target's directory (only the paths
    /// hardlinks name are remembered, and these always are).
    #[test]
    fn a_hardlink_finds_its_target_of_the_same_layer() {
        let mut link = e("x", EntryType::Hardlink);
        link.link_name = "./d/f".into();
        let mut other = e("y", EntryType::Hardlink);
        other.link_name = "g".into();
        let t = Table::build(&[toc(vec![
            reg("d/f", 7),
            reg("d", 1),
            link,
            reg("g", 2),
            other,
        ])])
        .unwrap();
        let (x, y) = (t.resolve("x").unwrap(), t.resolve("y").unwrap());
        assert_eq!((x.size, x.nlink), (7, 1));
        assert!(t.resolve("d/f").is_none());
        assert_eq!(y.ino, t.resolve("g").unwrap().ino);
        assert_eq!(y.nlink, 2);
    }

    /// Names a kernel could not hold refuse the layer (H1: a 10^6-part name made 10^6
    /// directories and ~10^12 bytes of paths); at the limits they are fine.
    #[test]
    fn names_past_path_max_or_name_max_are_refused() {
        let deep = format!("{}f", "a/".repeat(PATH_MAX / 2));
        let long = format!("d/{}", "n".repeat(NAME_MAX + 1));
        for bad in [deep, long] {
            let err = Table::build(&[toc(vec![reg(&bad, 1)])]).unwrap_err();
            assert!(err.to_string().contains("PATH_MAX"), "{err}");
        }
        let mut link = e("l", EntryType::Symlink);
        link.link_name = "x/".repeat(PATH_MAX);
        assert!(
            Table::build(&[toc(vec![link])]).is_err(),
            "a link target too"
        );
        let ok = format!("{}/{}", "a".repeat(NAME_MAX), "b".repeat(NAME_MAX));
        let t = Table::build(&[toc(vec![reg(&ok, 1)])]).unwrap();
        assert!(t.resolve(&ok).is_some());
    }

    /// Thousands of opaque markers for directories that have no entry: each becomes an opaque
    /// directory holding its children, in one pass over the TOC.
    #[test]
    fn many_opaque_markers_without_dir_entries() {
        let mut entries = Vec::new();
        for i in 0..5_000 {
            entries.push(reg(&format!("d{i}/.wh..wh..opq"), 0));
            entries.push(reg(&format!("d{i}/f"), 1));
        }
        let t = Table::build_overlay(&toc(entries)).unwrap();
        for i in [0, 2_500, 4_999] {
            let d = t.resolve(&format!("d{i}")).unwrap();
            assert_eq!(d.xattrs[OVERLAY_OPAQUE_XATTR], b"y");
            assert!(t.resolve(&format!("d{i}/f")).is_some());
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339(""), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            parse_rfc3339("2024-01-02T05:04:05+02:00"),
            Some(1_704_164_645)
        );
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05.5Z"), Some(1_704_164_645));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "2024-13-01T00:00:00Z",
            "yesterday",
            "2024-01-02 03:04:05Z",
            "2024-01-02T03:04:05",
            // hostile: a multi-byte character where the offset's colon would be (a panic once)
            "2024-01-02T03:04:05+0\u{20ac}a",
            "2024-01-02T03:04:05+\u{20ac}:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
