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
use futures::StreamExt as _;
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
use crate::mount::proof::{self, Unproven, Verdict, Verdicts};
use crate::mount::ReaderParts;

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

#[derive(Default)]
struct Nodes {
    /// `nodes[ino - 2]`.
    nodes: Vec<Node>,
    /// (parent, name) → ino.
    names: HashMap<(u64, String), u64>,
    /// Opened layer trees and the ino of their layer directory.
    trees: Vec<(Arc<Tree>, u64)>,
    /// Users of each layer directory: `use` notifications minus releases (`rmdir`).
    uses: HashMap<u64, i64>,
}

impl Nodes {
    fn get(&self, ino: u64) -> Option<&Node> {
        ino.checked_sub(2).and_then(|i| self.nodes.get(i as usize))
    }

    fn add(&mut self, parent: u64, name: &str, node: Node) -> u64 {
        if let Some(ino) = self.names.get(&(parent, name.to_string())) {
            return *ino;
        }
        self.nodes.push(node);
        let ino = self.nodes.len() as u64 + 1;
        self.names.insert((parent, name.to_string()), ino);
        ino
    }

    fn children(&self, parent: u64) -> Vec<(u64, String)> {
        let mut v: Vec<_> = self
            .names
            .iter()
            .filter(|((p, _), _)| *p == parent)
            .map(|((_, n), ino)| (*ino, n.clone()))
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

fn lock(m: &Mutex<Nodes>) -> std::sync::MutexGuard<'_, Nodes> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        let (tree, layer_dir) = nodes.trees.get(slot)?;
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
            let p = proof::prove_within(&parts.blocks, desc, diff_id, trust.verify_timeout());
            judge(verdicts, key, p.await)
        }
        (None, UnverifiedLayers::VerifyAfter) => {
            let (parts, verdicts, desc) = (parts.clone(), verdicts.clone(), desc.clone());
            let diff_id = diff_id.to_string();
            tokio::spawn(async move {
                let p = proof::prove_within(&parts.blocks, &desc, &diff_id, trust.verify_timeout());
                judge(&verdicts, key, p.await);
            });
            true
        }
    }
}

/// Records what a full read found; whether the layer is proven.
fn judge(verdicts: &Verdicts, key: String, proof: Result<(), Unproven>) -> bool {
    match proof {
        Ok(()) => {
            verdicts.set(key, Verdict::Proven);
            true
        }
        Err(Unproven::Mismatch(why)) => {
            tracing::error!("layer store: refusing a layer: {why}");
            verdicts.set(key, Verdict::Refused(why));
            false
        }
        Err(e) => {
            tracing::warn!("layer store: a layer is not proven: {e}");
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
        let known = lock(&self.nodes)
            .names
            .get(&(parent, name.clone()))
            .copied();
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
            let ino = lock(&nodes).add(ROOT, &name, Node::Ref { r });
            return reply.entry(&TTL, &dir_attr(ino), fuser::Generation(0));
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
                    let layer = n.add(
                        parent,
                        &name,
                        Node::Layer {
                            desc: desc.clone(),
                            diff_id: diff_id.clone(),
                            tree: None,
                        },
                    );
                    n.add(
                        layer,
                        "info",
                        Node::Info(Info::of(&desc, &diff_id).to_json()),
                    );
                    n.add(layer, "blob", Node::Blob(desc));
                    drop(n);
                    reply.entry(&TTL, &dir_attr(layer), fuser::Generation(0));
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
                                // another lookup may have opened it meanwhile
                                if let Some(Node::Layer { tree: Some(s), .. }) = n.get(parent) {
                                    *s
                                } else {
                                    n.trees.push((Arc::new(tree), parent));
                                    let s = n.trees.len() - 1;
                                    if let Some(Node::Layer { tree, .. }) =
                                        n.nodes.get_mut(parent as usize - 2)
                                    {
                                        *tree = Some(s);
                                    }
                                    s
                                }
                            }
                            Err(e) => {
                                tracing::warn!("layer store: layer {}: {e:#}", desc.digest);
                                return reply.error(Errno::EIO);
                            }
                        },
                    };
                    let tree = lock(&nodes).trees[slot].0.clone();
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
        match node {
            Ok(json) => {
                let start = (offset as usize).min(json.len());
                let end = start.saturating_add(size as usize).min(json.len());
                reply.data(&json[start..end])
            }
            Err(desc) => {
                // the compressed blob, by UnixFS range read
                let parts = self.parts.clone();
                self.rt.spawn(async move {
                    let Ok(cid) = desc.cid() else {
                        return reply.error(Errno::EIO);
                    };
                    let len = (size as u64).min((desc.size.max(0) as u64).saturating_sub(offset));
                    let s = crate::unixfs::cat(parts.blocks.session(), cid, offset, Some(len), 32);
                    futures::pin_mut!(s);
                    let mut out = Vec::with_capacity(len as usize);
                    let read = tokio::time::timeout(parts.read_timeout, async {
                        while let Some(p) = s.next().await {
                            out.extend_from_slice(&p?);
                        }
                        anyhow::Ok(())
                    })
                    .await;
                    match read {
                        Ok(Ok(())) => reply.data(&out),
                        Ok(Err(e)) => {
                            tracing::warn!("layer store: read failed: blob {cid}: {e:#}");
                            reply.error(Errno::EIO)
                        }
                        Err(_) => {
                            tracing::warn!("layer store: read failed: blob {cid}: timed out");
                            reply.error(Errno::EIO)
                        }
                    }
                });
            }
        }
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
        let layer = name
            .to_str()
            .and_then(|name| n.names.get(&(parent.0, name.to_string())).copied());
        if let Some(ino) = layer {
            let uses = n.uses.entry(ino).or_default();
            *uses -= 1;
            tracing::debug!("layer store: layer {ino} released ({uses} users left)");
        }
        reply.error(Errno::ENOENT);
    }
}
