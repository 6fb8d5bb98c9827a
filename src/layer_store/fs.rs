//! The additional layer store as a FUSE filesystem.
//!
//! The tree grows as containers/storage looks names up: `<base64(ref)>` resolves the image (its
//! manifest and config, for the host platform), `<digest>` finds the layer by compressed or TOC
//! digest, `diff` opens the layer (footer and TOC by range) as its own tree in overlayfs lower-dir
//! form. Inode numbers: 1 is the root, small numbers are the store's own directories and files,
//! and the `diff` tree of the `n`th opened layer is `(n + 1) << 32 | its inode`. Creating `use`
//! and removing a layer directory answer ENOENT, which is what containers/storage expects of a
//! store without reference counting. Lookups that fetch run on the daemon's runtime.

use bytes::Bytes;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, INodeNo, LockOwner, OpenFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyXattr, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use super::layout::{self, ImageRef, Info};
use crate::config::{Trust, UnverifiedLayers};
use crate::image::oci::Descriptor;
use crate::image::pull;
use crate::metrics::FuseReads;
use crate::mount::fs::{reply_entries, spawn_read_reply, xattr_reply, Tree, TTL};
use crate::mount::inode::ROOT;
use crate::mount::proof::{self, Verdict, Verdicts};
use crate::mount::ReaderParts;
use crate::sync::lock;

/// Inodes below this are the store's own; trees start at `1 << 32`.
const TREE_SHIFT: u32 = 32;
const TREE_MASK: u64 = (1 << TREE_SHIFT) - 1;

enum Node {
    Ref {
        r: ImageRef,
    },
    Layer {
        desc: Descriptor,
        diff_id: String,
        /// Slot of the opened `diff` tree.
        tree: Option<usize>,
    },
    Info(Vec<u8>),
    Blob(Descriptor),
}

/// Store inodes (image, layer, `info`, `blob`) kept at once: every name looked up makes some,
/// so a caller looking up endless names must not grow the daemon without end (M9).
pub const MAX_NODES: usize = 65_536;
/// Layer trees (a layer's TOC as inodes, up to hundreds of MB for a huge layer) open at once.
pub const MAX_TREES: usize = 256;

/// The store's inodes. Past [`MAX_NODES`] or [`MAX_TREES`] the oldest image (or tree) that no
/// layer in use (`use` notifications of containers/storage) holds is forgotten; its inode
/// numbers are never given again, so a kernel that still holds one gets ENOENT and looks the
/// name up afresh.
struct Nodes {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Each directory's entries (name → ino), and each inode's (parent, name).
    entries: HashMap<u64, std::collections::BTreeMap<String, u64>>,
    parent_of: HashMap<u64, (u64, String)>,
    /// Image inodes, oldest first.
    refs: std::collections::VecDeque<u64>,
    /// Opened layer trees by slot, with the ino of their layer directory; slots oldest first.
    trees: HashMap<usize, (Arc<Tree>, u64)>,
    next_slot: usize,
    tree_order: std::collections::VecDeque<usize>,
    /// Users of each layer directory: `use` notifications minus releases (`rmdir`).
    uses: HashMap<u64, i64>,
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes {
            nodes: HashMap::new(),
            next_ino: 2,
            entries: HashMap::new(),
            parent_of: HashMap::new(),
            refs: Default::default(),
            trees: HashMap::new(),
            next_slot: 0,
            tree_order: Default::default(),
            uses: HashMap::new(),
        }
    }
}

impl Nodes {
    fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The inode of `name` in directory `parent`.
    fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.entries.get(&parent)?.get(name).copied()
    }

    /// The inode of `name` in `parent` (of image `image`, which is kept), made if new; None
    /// when the bound is reached and nothing can be forgotten.
    fn add(&mut self, parent: u64, name: &str, node: Node, image: u64) -> Option<u64> {
        if let Some(ino) = self.child(parent, name) {
            return Some(ino);
        }
        while self.nodes.len() >= MAX_NODES {
            if !self.forget_oldest_image(image) {
                tracing::warn!("layer store: {MAX_NODES} inodes, all of images in use");
                return None;
            }
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        if matches!(node, Node::Ref { .. }) {
            self.refs.push_back(ino);
        }
        self.nodes.insert(ino, node);
        self.parent_of.insert(ino, (parent, name.to_string()));
        self.entries
            .entry(parent)
            .or_default()
            .insert(name.to_string(), ino);
        Some(ino)
    }

    fn in_use(&self, layer: u64) -> bool {
        self.uses.get(&layer).is_some_and(|u| *u > 0)
    }

    /// Forgets the oldest image but `keep` none of whose layers is in use; false if none.
    fn forget_oldest_image(&mut self, keep: u64) -> bool {
        let pos = self.refs.iter().position(|r| {
            *r != keep
                && !self
                    .children(*r)
                    .iter()
                    .any(|(layer, _)| self.in_use(*layer))
        });
        let Some(pos) = pos else { return false };
        let Some(r) = self.refs.remove(pos) else {
            return false;
        };
        for (layer, _) in self.children(r) {
            for (file, _) in self.children(layer) {
                self.remove(file);
            }
            if let Some(Node::Layer {
                tree: Some(slot), ..
            }) = self.nodes.get(&layer)
            {
                let slot = *slot;
                self.trees.remove(&slot);
                self.tree_order.retain(|s| *s != slot);
            }
            self.uses.remove(&layer);
            self.remove(layer);
        }
        self.remove(r);
        true
    }

    fn remove(&mut self, ino: u64) {
        self.nodes.remove(&ino);
        self.entries.remove(&ino);
        if let Some(key) = self.parent_of.remove(&ino) {
            if let Some(e) = self.entries.get_mut(&key.0) {
                e.remove(&key.1);
            }
        }
    }

    /// Keeps `tree` for layer directory `layer`; its slot. Past [`MAX_TREES`] the oldest tree
    /// of a layer not in use is closed (opened again when next looked up).
    fn add_tree(&mut self, tree: Arc<Tree>, layer: u64) -> Option<usize> {
        while self.trees.len() >= MAX_TREES {
            let pos = self
                .tree_order
                .iter()
                .position(|s| self.trees.get(s).is_some_and(|(_, l)| !self.in_use(*l)));
            let Some(slot) = pos.and_then(|p| self.tree_order.remove(p)) else {
                tracing::warn!("layer store: {MAX_TREES} layers open, all in use");
                return None;
            };
            if let Some((_, l)) = self.trees.remove(&slot) {
                if let Some(Node::Layer { tree, .. }) = self.nodes.get_mut(&l) {
                    *tree = None;
                }
            }
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        self.trees.insert(slot, (tree, layer));
        self.tree_order.push_back(slot);
        if let Some(Node::Layer { tree, .. }) = self.nodes.get_mut(&layer) {
            *tree = Some(slot);
        }
        Some(slot)
    }

    fn children(&self, parent: u64) -> Vec<(u64, String)> {
        let mut v: Vec<_> = self
            .entries
            .get(&parent)
            .into_iter()
            .flatten()
            .map(|(n, ino)| (*ino, n.clone()))
            .collect();
        v.sort();
        v
    }
}

/// The store's filesystem.
pub struct StoreFs {
    parts: ReaderParts,
    reads: FuseReads,
    nodes: Arc<Mutex<Nodes>>,
    rt: tokio::runtime::Handle,
    trust: Trust,
    verdicts: Arc<Verdicts>,
}

/// `size` bytes from `offset` of the compressed layer blob `desc`.
async fn read_blob(
    parts: &ReaderParts,
    desc: &crate::image::oci::Descriptor,
    offset: u64,
    size: u32,
) -> Result<Bytes, Errno> {
    let Ok(cid) = desc.cid() else {
        return Err(Errno::EIO);
    };
    let len = (size as u64).min((desc.size.max(0) as u64).saturating_sub(offset));
    let blocks = &parts.blocks;
    let read = crate::unixfs::io::read_range(
        blocks,
        blocks.session(),
        cid,
        offset,
        Some(len),
        Some(parts.read_timeout),
    )
    .await;
    read.map(Bytes::from).map_err(|e| {
        tracing::warn!("layer store: read failed: blob {cid}: {e}");
        if e.is_timeout() {
            Errno::from_i32(libc::ETIMEDOUT)
        } else {
            Errno::EIO
        }
    })
}

fn dir_attr(ino: u64) -> FileAttr {
    own_attr(ino, FileType::Directory, 0o555, 0)
}

fn own_attr(ino: u64, kind: FileType, perm: u16, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn tree_ino(slot: usize, ino: u64) -> u64 {
    ((slot as u64 + 1) << TREE_SHIFT) | ino
}

impl StoreFs {
    pub fn new(parts: ReaderParts, rt: tokio::runtime::Handle, trust: Trust) -> Self {
        StoreFs {
            reads: parts.metrics.fuse("layer_store"),
            parts,
            nodes: Arc::default(),
            rt,
            trust,
            verdicts: Arc::default(),
        }
    }

    /// The tree and the inode inside it, for a tree inode.
    fn tree_of(&self, ino: u64) -> Option<(Arc<Tree>, u64, u64, usize)> {
        let slot = (ino >> TREE_SHIFT).checked_sub(1)? as usize;
        let nodes = lock(&self.nodes);
        let (tree, layer_dir) = nodes.trees.get(&slot)?;
        Some((tree.clone(), ino & TREE_MASK, *layer_dir, slot))
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        if ino == ROOT {
            return Ok(dir_attr(ino));
        }
        if let Some((tree, inner, _, slot)) = self.tree_of(ino) {
            let mut a = tree.attr(inner)?;
            a.ino = INodeNo(tree_ino(slot, inner));
            return Ok(a);
        }
        let nodes = lock(&self.nodes);
        Ok(match nodes.get(ino).ok_or(Errno::ENOENT)? {
            Node::Ref { .. } | Node::Layer { .. } => dir_attr(ino),
            Node::Info(json) => own_attr(ino, FileType::RegularFile, 0o444, json.len() as u64),
            Node::Blob(d) => own_attr(ino, FileType::RegularFile, 0o444, d.size.max(0) as u64),
        })
    }
}

/// Resolves `r` and lists its layers with their DiffIDs (the host's platform).
async fn layers_of(parts: &ReaderParts, r: &ImageRef) -> anyhow::Result<Vec<(Descriptor, String)>> {
    let resolved = pull::resolve(&parts.blocks, r.image, &[]).await?;
    Ok(resolved.one_image()?.layers_with_diff_ids()?.1)
}

/// Whether layer `desc` may be handed to containers/storage, which records it under `diff_id`
/// and hands it to every later image claiming that DiffID ([`Trust`]). A layer proven to lie,
/// or not proven under `verify-first`, is not found: containers/storage then pulls the blob
/// itself and checks its digests.
async fn admit(
    parts: &ReaderParts,
    trust: Trust,
    verdicts: &Arc<Verdicts>,
    desc: &Descriptor,
    diff_id: &str,
) -> bool {
    let key = proof::key(desc, diff_id);
    match (verdicts.get(&key), trust.unverified_layers) {
        (Some(Verdict::Refused(_)), _) => false,
        (Some(Verdict::Proven), _) | (None, UnverifiedLayers::Trust) => true,
        (None, UnverifiedLayers::VerifyFirst) => {
            let p = proof::judge(&parts.blocks, desc, diff_id, trust.verify_timeout());
            judge(verdicts, key, p.await)
        }
        (None, UnverifiedLayers::VerifyAfter) => {
            let (parts, verdicts, desc) = (parts.clone(), verdicts.clone(), desc.clone());
            let diff_id = diff_id.to_string();
            tokio::spawn(async move {
                let p = proof::judge(&parts.blocks, &desc, &diff_id, trust.verify_timeout());
                judge(&verdicts, key, p.await);
            });
            true
        }
    }
}

/// Records what a full read found; whether the layer is proven.
fn judge(verdicts: &Verdicts, key: String, found: anyhow::Result<Verdict>) -> bool {
    match found {
        Ok(v) => {
            if let Verdict::Refused(why) = &v {
                tracing::error!("layer store: refusing a layer: {why}");
            }
            let proven = v == Verdict::Proven;
            verdicts.set(key, v);
            proven
        }
        Err(e) => {
            tracing::warn!("layer store: a layer is not proven: {e:#}");
            false
        }
    }
}

/// Opens a layer as its own tree in overlayfs lower-dir form.
async fn open_tree(parts: &ReaderParts, desc: &Descriptor, diff_id: &str) -> anyhow::Result<Tree> {
    let (table, reader) = parts.open_overlay(desc, diff_id).await?;
    Ok(Tree::new(table, reader))
}

impl Filesystem for StoreFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.parts.metrics.layer_store_request("lookup");
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::ENOENT);
        };
        let parent = parent.0;
        tracing::debug!("layer store: lookup {parent} {name:?}");
        if let Some((tree, inner, _, slot)) = self.tree_of(parent) {
            return match tree.lookup(inner, OsStr::new(&name)) {
                Ok(mut a) => {
                    a.ino = INodeNo(tree_ino(slot, a.ino.0));
                    reply.entry(&TTL, &a, fuser::Generation(0))
                }
                Err(e) => reply.error(e),
            };
        }
        let known = lock(&self.nodes).child(parent, &name);
        if let Some(ino) = known {
            return match self.attr(ino) {
                Ok(a) => reply.entry(&TTL, &a, fuser::Generation(0)),
                Err(e) => reply.error(e),
            };
        }
        let (parts, nodes) = (self.parts.clone(), self.nodes.clone());
        let (trust, verdicts) = (self.trust, self.verdicts.clone());
        if parent == ROOT {
            let Ok(r) = layout::parse_ref_dir(&name) else {
                return reply.error(Errno::ENOENT);
            };
            return match lock(&nodes).add(ROOT, &name, Node::Ref { r }, 0) {
                Some(ino) => reply.entry(&TTL, &dir_attr(ino), fuser::Generation(0)),
                None => reply.error(Errno::ENOSPC),
            };
        }
        let kind = match lock(&nodes).get(parent) {
            Some(Node::Ref { r }) => Some(Ok(r.clone())),
            Some(Node::Layer { desc, diff_id, .. }) => Some(Err((desc.clone(), diff_id.clone()))),
            _ => None,
        };
        match kind {
            // a layer of the image: resolve it (fetches the manifest and config)
            Some(Ok(r)) => {
                if layout::parse_digest_dir(&name).is_err() {
                    return reply.error(Errno::ENOENT);
                }
                self.rt.spawn(async move {
                    let layers = match layers_of(&parts, &r).await {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::warn!("layer store: {}: {e:#}", r.text);
                            return reply.error(Errno::ENOENT);
                        }
                    };
                    let descs: Vec<Descriptor> = layers.iter().map(|(d, _)| d.clone()).collect();
                    let Some(i) = layout::find_layer(&descs, &name) else {
                        return reply.error(Errno::ENOENT);
                    };
                    let (desc, diff_id) = layers[i].clone();
                    if !admit(&parts, trust, &verdicts, &desc, &diff_id).await {
                        return reply.error(Errno::ENOENT);
                    }
                    let mut n = lock(&nodes);
                    let info = Node::Info(Info::of(&desc, &diff_id).to_json());
                    let layer = Node::Layer {
                        desc: desc.clone(),
                        diff_id,
                        tree: None,
                    };
                    // (the image may have been forgotten meanwhile: then nothing is added)
                    let added = n.get(parent).is_some().then(|| {
                        let layer = n.add(parent, &name, layer, parent)?;
                        n.add(layer, "info", info, parent)?;
                        n.add(layer, "blob", Node::Blob(desc), parent)?;
                        Some(layer)
                    });
                    drop(n);
                    match added.flatten() {
                        Some(layer) => reply.entry(&TTL, &dir_attr(layer), fuser::Generation(0)),
                        None => reply.error(Errno::ENOSPC),
                    }
                });
            }
            // `diff`: open the layer's tree (never of a layer refused since it was found)
            Some(Err((desc, diff_id))) if name == "diff" => {
                if let Some(Verdict::Refused(_)) = verdicts.get(&proof::key(&desc, &diff_id)) {
                    return reply.error(Errno::ENOENT);
                }
                self.rt.spawn(async move {
                    let existing = match lock(&nodes).get(parent) {
                        Some(Node::Layer { tree: Some(s), .. }) => Some(*s),
                        _ => None,
                    };
                    let slot = match existing {
                        Some(s) => s,
                        None => match open_tree(&parts, &desc, &diff_id).await {
                            Ok(tree) => {
                                let mut n = lock(&nodes);
                                // another lookup may have opened it meanwhile, or the layer
                                // been forgotten
                                match n.get(parent) {
                                    Some(Node::Layer { tree: Some(s), .. }) => *s,
                                    Some(_) => match n.add_tree(Arc::new(tree), parent) {
                                        Some(s) => s,
                                        None => return reply.error(Errno::ENOSPC),
                                    },
                                    None => return reply.error(Errno::ENOENT),
                                }
                            }
                            Err(e) => {
                                tracing::warn!("layer store: layer {}: {e:#}", desc.digest);
                                return reply.error(Errno::EIO);
                            }
                        },
                    };
                    let Some(tree) = lock(&nodes).trees.get(&slot).map(|t| t.0.clone()) else {
                        return reply.error(Errno::ENOENT);
                    };
                    match tree.attr(ROOT) {
                        Ok(mut a) => {
                            a.ino = INodeNo(tree_ino(slot, ROOT));
                            reply.entry(&TTL, &a, fuser::Generation(0))
                        }
                        Err(e) => reply.error(e),
                    }
                });
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.parts.metrics.layer_store_request("getattr");
        match self.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.parts.metrics.layer_store_request("readlink");
        match self.tree_of(ino.0) {
            Some((tree, inner, ..)) => match tree.readlink(inner) {
                Ok(t) => reply.data(t),
                Err(e) => reply.error(e),
            },
            None => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.parts.metrics.layer_store_request("open");
        if let Some((tree, inner, ..)) = self.tree_of(ino.0) {
            return match tree.open(inner, flags) {
                Ok(f) => reply.opened(FileHandle(0), f),
                Err(e) => reply.error(e),
            };
        }
        if flags.acc_mode() != fuser::OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match lock(&self.nodes).get(ino.0) {
            Some(Node::Info(_) | Node::Blob(_)) => {
                reply.opened(FileHandle(0), fuser::FopenFlags::FOPEN_KEEP_CACHE)
            }
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.parts.metrics.layer_store_request("read");
        if let Some((tree, inner, ..)) = self.tree_of(ino.0) {
            return spawn_read_reply(&self.rt, tree.read(inner, offset, size), reply, &self.reads);
        }
        let node = match lock(&self.nodes).get(ino.0) {
            Some(Node::Info(json)) => Ok(Bytes::copy_from_slice(json)),
            Some(Node::Blob(d)) => Err(d.clone()),
            _ => return reply.error(Errno::EISDIR),
        };
        let parts = self.parts.clone();
        let read = async move {
            match node {
                Ok(json) => {
                    let start = (offset as usize).min(json.len());
                    let end = start.saturating_add(size as usize).min(json.len());
                    Ok(json.slice(start..end))
                }
                // the compressed blob, by UnixFS range read
                Err(desc) => read_blob(&parts, &desc, offset, size).await,
            }
        };
        spawn_read_reply(&self.rt, Ok(read), reply, &self.reads)
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.parts.metrics.layer_store_request("readdir");
        let ino = ino.0;
        let entries: Vec<(u64, FileType, String)> =
            if let Some((tree, inner, layer_dir, slot)) = self.tree_of(ino) {
                match tree.entries(inner) {
                    Ok(list) => list
                        .into_iter()
                        .map(|(c, kind, name)| {
                            let c = if inner == ROOT && name == ".." {
                                layer_dir
                            } else {
                                tree_ino(slot, c)
                            };
                            (c, kind, name.to_string_lossy().into_owned())
                        })
                        .collect(),
                    Err(e) => return reply.error(e),
                }
            } else {
                let nodes = lock(&self.nodes);
                let mut v = vec![(ino, FileType::Directory, ".".to_string())];
                v.push((ROOT, FileType::Directory, "..".to_string()));
                for (c, name) in nodes.children(ino) {
                    let kind = match nodes.get(c) {
                        Some(Node::Info(_) | Node::Blob(_)) => FileType::RegularFile,
                        _ => FileType::Directory,
                    };
                    v.push((c, kind, name));
                }
                if let Some(Node::Layer { tree: Some(s), .. }) = nodes.get(ino) {
                    v.push((tree_ino(*s, ROOT), FileType::Directory, "diff".into()));
                }
                v
            };
        reply_entries(reply, entries, offset);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.parts.metrics.layer_store_request("statfs");
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.parts.metrics.layer_store_request("getxattr");
        match self.tree_of(ino.0) {
            Some((tree, inner, ..)) => match tree.xattr(inner, name) {
                Ok(v) => xattr_reply(reply, v, size),
                Err(e) => reply.error(e),
            },
            None => reply.error(Errno::from_i32(libc::ENODATA)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.parts.metrics.layer_store_request("listxattr");
        let names = match self.tree_of(ino.0) {
            Some((tree, inner, ..)) => tree.xattr_names(inner),
            None => Ok(Vec::new()),
        };
        match names {
            Ok(n) => xattr_reply(reply, &n, size),
            Err(e) => reply.error(e),
        }
    }

    /// Creating `use` in a layer directory is a use notification: counted, and answered
    /// ENOENT, as containers/storage expects.
    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.parts.metrics.layer_store_request("create");
        let mut n = lock(&self.nodes);
        if name == "use" && matches!(n.get(parent.0), Some(Node::Layer { .. })) {
            let uses = n.uses.entry(parent.0).or_default();
            *uses += 1;
            tracing::debug!("layer store: layer {} in use ({uses})", parent.0);
        }
        reply.error(Errno::ENOENT);
    }

    /// Removing a layer directory releases it: counted, and answered ENOENT. The layer's tree
    /// stays open (a container may still read it through overlayfs after the release that
    /// follows a pull) until the store is unmounted.
    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.parts.metrics.layer_store_request("rmdir");
        let mut n = lock(&self.nodes);
        let layer = name.to_str().and_then(|name| n.child(parent.0, name));
        if let Some(ino) = layer {
            let uses = n.uses.entry(ino).or_default();
            *uses -= 1;
            tracing::debug!("layer store: layer {ino} released ({uses} users left)");
        }
        reply.error(Errno::ENOENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(n: usize) -> Node {
        let cid: cid::Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
            .parse()
            .unwrap();
        Node::Ref {
            r: ImageRef {
                text: format!("h/ipfs/{cid}:{n}"),
                image: cid,
            },
        }
    }

    fn layer() -> Node {
        Node::Layer {
            desc: serde_json::from_str(r#"{"mediaType":"m","digest":"sha256:00","size":1}"#)
                .unwrap(),
            diff_id: "sha256:01".into(),
            tree: None,
        }
    }

    /// Looking up endless names keeps at most MAX_NODES inodes: the oldest images go, never
    /// one with a layer in use, and a forgotten inode number is not given again (M9).
    #[test]
    fn inodes_are_bounded_and_images_in_use_stay() {
        let mut n = Nodes::default();
        let first = n.add(ROOT, "first", image(0), 0).unwrap();
        let held = n.add(first, "layer", layer(), first).unwrap();
        *n.uses.entry(held).or_default() += 1;
        let second = n.add(ROOT, "second", image(1), 0).unwrap();
        for i in 0..MAX_NODES + 100 {
            n.add(ROOT, &format!("name-{i}"), image(i + 2), 0).unwrap();
        }
        assert!(n.nodes.len() <= MAX_NODES);
        let names: usize = n.entries.values().map(|e| e.len()).sum();
        assert!(names <= MAX_NODES && n.parent_of.len() <= MAX_NODES);
        assert!(n.get(first).is_some() && n.get(held).is_some(), "in use");
        assert!(n.get(second).is_none(), "the oldest unused image went");
        let again = n.add(ROOT, "second", image(1), 0).unwrap();
        assert!(again > second, "a new inode number");
        // nothing can go once everything is in use
        let mut full = Nodes::default();
        for i in 0..MAX_NODES / 2 {
            let r = full.add(ROOT, &format!("r{i}"), image(i), 0).unwrap();
            let l = full.add(r, "l", layer(), r).unwrap();
            full.uses.insert(l, 1);
        }
        assert!(full.add(ROOT, "one-more", image(0), 0).is_none());
    }
}
