//! The additional layer store's answers to FUSE requests ([`Requests`], served by the one fuser
//! adapter [`crate::mount::fs::Fs`], as a mount's [`Tree`] is).
//!
//! The tree grows as containers/storage looks names up: `<base64(ref)>` names an image,
//! `<digest>` a layer of it (by compressed or TOC digest; resolving the image fetches its
//! manifest and config), `diff` the layer's files in overlayfs lower-dir form (opening it fetches
//! the footer and TOC). The store's own inodes live in [`Nodes`]; each opened layer is a
//! [`Tree`] under inode numbers of its own ([`nodes::tree_ino`]). Creating `use` and removing a
//! layer directory answer ENOENT, which is what containers/storage expects of a store without
//! reference counting.

use bytes::Bytes;
use fuser::{Errno, FileAttr, FileType, FopenFlags, INodeNo, OpenAccMode, OpenFlags};
use futures::FutureExt as _;
use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use super::layout::{self, ImageRef, Info};
use super::nodes::{self, Node, Nodes};
use crate::config::{Trust, UnverifiedLayers};
use crate::image::names::Names;
use crate::image::oci::Descriptor;
use crate::image::pull;
use crate::mount::fs::{Answer, ReadFuture, Requests, Tree};
use crate::mount::inode::ROOT;
use crate::mount::loads::ImageLayers;
use crate::mount::proof::{self, Verdict, Verdicts};
use crate::mount::{prefetch, ReaderParts};
use crate::sync::lock;

/// The store: its inodes, the opened layers, and what it knows of each layer's honesty.
pub struct Store {
    parts: ReaderParts,
    names: Names,
    nodes: Arc<Mutex<Nodes>>,
    trust: Trust,
    verdicts: Arc<Verdicts>,
    /// The followers of the opened layers, by layer.
    layers_alone: ImageLayers,
}

/// An opened layer tree, as found from one of its inode numbers.
struct InTree {
    tree: Arc<Tree>,
    /// The inode inside the tree.
    inner: u64,
    /// The layer directory holding the tree as `diff`.
    layer_dir: u64,
    slot: usize,
}

impl Store {
    pub fn new(parts: ReaderParts, trust: Trust, names: Names) -> Self {
        Store {
            parts,
            names,
            nodes: Arc::default(),
            trust,
            verdicts: Arc::default(),
            layers_alone: ImageLayers::default(),
        }
    }

    fn in_tree(&self, ino: u64) -> Option<InTree> {
        let (slot, inner) = nodes::split_tree_ino(ino)?;
        let (tree, layer_dir) = lock(&self.nodes).tree(slot)?;
        Some(InTree {
            tree,
            inner,
            layer_dir,
            slot,
        })
    }

    /// Looks layer `name` up in image directory `image` (ref `r`): resolves the image (fetches
    /// its manifest and config), admits the layer, and makes its directory with `info` and
    /// `blob`.
    fn find_layer(
        &self,
        image: u64,
        r: ImageRef,
        name: String,
    ) -> impl std::future::Future<Output = Result<FileAttr, Errno>> + Send + 'static {
        let (parts, nodes) = (self.parts.clone(), self.nodes.clone());
        let (trust, verdicts) = (self.trust, self.verdicts.clone());
        let names = self.names.clone();
        async move {
            let layers = layers_of(&parts, &names, &r).await.map_err(|e| {
                tracing::warn!("layer store: {}: {e:#}", r.text);
                Errno::ENOENT
            })?;
            let descs: Vec<Descriptor> = layers.iter().map(|(d, _)| d.clone()).collect();
            let i = layout::find_layer(&descs, &name).ok_or(Errno::ENOENT)?;
            let (desc, diff_id) = layers[i].clone();
            if !admit(&parts, trust, &verdicts, &desc, &diff_id).await {
                return Err(Errno::ENOENT);
            }
            let mut n = lock(&nodes);
            // (the image may have been forgotten meanwhile: then nothing is added)
            if n.get(image).is_none() {
                return Err(Errno::ENOENT);
            }
            let info = Node::Info(Info::of(&desc, &diff_id).to_json());
            let layer = Node::Layer {
                desc: desc.clone(),
                diff_id,
                image_layers: ImageLayers::cids(&descs),
                tree: None,
            };
            let layer = n.add(image, &name, layer, image).ok_or(Errno::ENOSPC)?;
            n.add(layer, "info", info, image).ok_or(Errno::ENOSPC)?;
            n.add(layer, "blob", Node::Blob(desc), image)
                .ok_or(Errno::ENOSPC)?;
            Ok(dir_attr(layer))
        }
    }

    /// `diff` of layer directory `layer`: opens the layer's tree unless it is open.
    fn open_diff(
        &self,
        layer: u64,
        desc: Descriptor,
        diff_id: String,
    ) -> impl std::future::Future<Output = Result<FileAttr, Errno>> + Send + 'static {
        let (parts, nodes) = (self.parts.clone(), self.nodes.clone());
        let layers_alone = self.layers_alone.clone();
        async move {
            let (open, image_layers) = match lock(&nodes).get(layer) {
                Some(Node::Layer {
                    tree, image_layers, ..
                }) => (*tree, image_layers.clone()),
                _ => (None, Arc::from([])),
            };
            let slot = match open {
                Some(s) => s,
                None => {
                    let tree = open_tree(&parts, &desc, &diff_id).await.map_err(|e| {
                        tracing::warn!("layer store: layer {}: {e:#}", desc.digest);
                        Errno::EIO
                    })?;
                    // a program's libraries are often in a lower layer than the program
                    if let Some(loads) = tree.loads() {
                        layers_alone.join(&desc, image_layers, loads);
                    }
                    let mut n = lock(&nodes);
                    // another lookup may have opened it meanwhile, or the layer been forgotten
                    match n.get(layer) {
                        Some(Node::Layer { tree: Some(s), .. }) => *s,
                        Some(_) => n.add_tree(Arc::new(tree), layer).ok_or(Errno::ENOSPC)?,
                        None => return Err(Errno::ENOENT),
                    }
                }
            };
            let (tree, _) = lock(&nodes).tree(slot).ok_or(Errno::ENOENT)?;
            let mut a = tree.attr(ROOT)?;
            a.ino = INodeNo(nodes::tree_ino(slot, ROOT));
            Ok(a)
        }
    }
}

impl Requests for Store {
    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        if ino == ROOT {
            return Ok(dir_attr(ino));
        }
        if let Some(t) = self.in_tree(ino) {
            let mut a = t.tree.attr(t.inner)?;
            a.ino = INodeNo(nodes::tree_ino(t.slot, t.inner));
            return Ok(a);
        }
        own_attr(&lock(&self.nodes), ino)
    }

    /// `lookup`: inside a layer tree, from the tree; at the root, an image reference (made at
    /// once, resolved when a layer is looked up in it); in an image, a layer (resolves the
    /// image and judges the layer: a future); in a layer, `info`, `blob`, and `diff` (opens
    /// the layer's tree: a future).
    fn lookup(&self, parent: u64, name: &OsStr) -> Answer<FileAttr> {
        if let Some(t) = self.in_tree(parent) {
            return Answer::Now(t.tree.lookup(t.inner, name).map(|mut a| {
                a.ino = INodeNo(nodes::tree_ino(t.slot, a.ino.0));
                a
            }));
        }
        let Some(name) = name.to_str().map(str::to_string) else {
            return Answer::Now(Err(Errno::ENOENT));
        };
        let known = lock(&self.nodes).child(parent, &name);
        if let Some(ino) = known {
            return Answer::Now(self.attr(ino));
        }
        if parent == ROOT {
            let Ok(r) = layout::parse_ref_dir(&name) else {
                return Answer::Now(Err(Errno::ENOENT));
            };
            let made = lock(&self.nodes).add(ROOT, &name, Node::Ref { r }, 0);
            return Answer::Now(made.map(dir_attr).ok_or(Errno::ENOSPC));
        }
        let kind = match lock(&self.nodes).get(parent) {
            Some(Node::Ref { r }) => Ok(r.clone()),
            Some(Node::Layer { desc, diff_id, .. }) => Err((desc.clone(), diff_id.clone())),
            _ => return Answer::Now(Err(Errno::ENOENT)),
        };
        match kind {
            Ok(r) if layout::parse_digest_dir(&name).is_ok() => {
                Answer::Later(self.find_layer(parent, r, name).boxed())
            }
            Err((desc, diff_id)) if name == "diff" => {
                if let Some(Verdict::Refused(_)) = self.verdicts.get(&proof::key(&desc, &diff_id)) {
                    return Answer::Now(Err(Errno::ENOENT));
                }
                Answer::Later(self.open_diff(parent, desc, diff_id).boxed())
            }
            _ => Answer::Now(Err(Errno::ENOENT)),
        }
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let t = self.in_tree(ino).ok_or(Errno::EINVAL)?;
        t.tree.readlink(t.inner).map(<[u8]>::to_vec)
    }

    /// `open`: read-only, files only.
    fn open(&self, ino: u64, flags: OpenFlags) -> Result<FopenFlags, Errno> {
        if let Some(t) = self.in_tree(ino) {
            return t.tree.open(t.inner, flags);
        }
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return Err(Errno::EROFS);
        }
        match lock(&self.nodes).get(ino) {
            Some(Node::Info(_) | Node::Blob(_)) => Ok(FopenFlags::FOPEN_KEEP_CACHE),
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// `read`: a file of a layer tree through the mount reader, `info` from memory, `blob`
    /// (the compressed layer) by UnixFS range read.
    fn read(&self, ino: u64, offset: u64, size: u32) -> Result<ReadFuture, Errno> {
        if let Some(t) = self.in_tree(ino) {
            return Ok(t.tree.read(t.inner, offset, size)?.boxed());
        }
        match lock(&self.nodes).get(ino) {
            Some(Node::Info(json)) => {
                let start = (offset as usize).min(json.len());
                let end = start.saturating_add(size as usize).min(json.len());
                let part = Bytes::copy_from_slice(&json[start..end]);
                Ok(futures::future::ready(Ok(part)).boxed())
            }
            Some(Node::Blob(desc)) => {
                let (parts, desc) = (self.parts.clone(), desc.clone());
                Ok(async move { read_blob(&parts, &desc, offset, size).await }.boxed())
            }
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// `readdir`: `.`, `..` and the children, in order (a layer's `diff` last).
    fn entries(&self, ino: u64) -> Result<Vec<(u64, FileType, OsString)>, Errno> {
        if let Some(t) = self.in_tree(ino) {
            let list = t.tree.entries(t.inner)?;
            return Ok(list
                .into_iter()
                .map(|(c, kind, name)| {
                    let c = if t.inner == ROOT && name == ".." {
                        t.layer_dir
                    } else {
                        nodes::tree_ino(t.slot, c)
                    };
                    (c, kind, name.to_owned())
                })
                .collect());
        }
        let nodes = lock(&self.nodes);
        if ino != ROOT && nodes.get(ino).is_none() {
            return Err(Errno::ENOENT);
        }
        let mut v = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (ROOT, FileType::Directory, OsString::from("..")),
        ];
        for (c, name) in nodes.children(ino) {
            let kind = match nodes.get(c) {
                Some(Node::Info(_) | Node::Blob(_)) => FileType::RegularFile,
                _ => FileType::Directory,
            };
            v.push((c, kind, name.into()));
        }
        if let Some(Node::Layer { tree: Some(s), .. }) = nodes.get(ino) {
            v.push((
                nodes::tree_ino(*s, ROOT),
                FileType::Directory,
                "diff".into(),
            ));
        }
        Ok(v)
    }

    fn xattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, Errno> {
        let t = self.in_tree(ino).ok_or(Errno::from_i32(libc::ENODATA))?;
        t.tree.xattr(t.inner, name).map(<[u8]>::to_vec)
    }

    /// `listxattr`: NUL-terminated names (the store's own inodes have none).
    fn xattr_names(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        match self.in_tree(ino) {
            Some(t) => t.tree.xattr_names(t.inner),
            None => Ok(Vec::new()),
        }
    }

    /// Creating `use` in a layer directory is a use notification of containers/storage:
    /// counted. Answered ENOENT, as containers/storage expects.
    fn create(&self, parent: u64, name: &OsStr) -> Errno {
        let mut n = lock(&self.nodes);
        if name == "use" && matches!(n.get(parent), Some(Node::Layer { .. })) {
            let uses = n.count_use(parent, 1);
            tracing::debug!("layer store: layer {parent} in use ({uses})");
        }
        Errno::ENOENT
    }

    /// Removing a layer directory releases it: counted, and answered ENOENT. The layer's tree
    /// stays open (a container may still read it through overlayfs after the release that
    /// follows a pull) until it is forgotten or the store is unmounted.
    fn rmdir(&self, parent: u64, name: &OsStr) -> Errno {
        let mut n = lock(&self.nodes);
        if let Some(ino) = name.to_str().and_then(|name| n.child(parent, name)) {
            let uses = n.count_use(ino, -1);
            tracing::debug!("layer store: layer {ino} released ({uses} users left)");
        }
        Errno::ENOENT
    }
}

/// The attributes of one of the store's own inodes.
fn own_attr(nodes: &Nodes, ino: u64) -> Result<FileAttr, Errno> {
    Ok(match nodes.get(ino).ok_or(Errno::ENOENT)? {
        Node::Ref { .. } | Node::Layer { .. } => dir_attr(ino),
        Node::Info(json) => file_attr(ino, json.len() as u64),
        Node::Blob(d) => file_attr(ino, d.size.max(0) as u64),
    })
}

fn dir_attr(ino: u64) -> FileAttr {
    attr(ino, FileType::Directory, 0o555, 0)
}

fn file_attr(ino: u64, size: u64) -> FileAttr {
    attr(ino, FileType::RegularFile, 0o444, size)
}

fn attr(ino: u64, kind: FileType, perm: u16, size: u64) -> FileAttr {
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

/// `size` bytes from `offset` of the compressed layer blob `desc`.
async fn read_blob(
    parts: &ReaderParts,
    desc: &Descriptor,
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

/// Resolves `r` (a name through `names`) and lists its layers with their DiffIDs (the host's
/// platform).
async fn layers_of(
    parts: &ReaderParts,
    names: &Names,
    r: &ImageRef,
) -> anyhow::Result<Vec<(Descriptor, String)>> {
    let cid = names
        .cid_of(&r.image)?
        .ok_or_else(|| anyhow::anyhow!("no image is named {} here", r.image))?;
    let resolved = pull::resolve(&parts.blocks, cid, &[]).await?;
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

/// Opens a layer as its own tree in overlayfs lower-dir form. The files the layer puts before
/// its landmark are inflated into the chunk cache in the background (their blocks are already
/// on their way: `layer::warm`), while the runtime sets the container up.
async fn open_tree(parts: &ReaderParts, desc: &Descriptor, diff_id: &str) -> anyhow::Result<Tree> {
    let (table, reader) = parts.open_overlay(desc, diff_id).await?;
    let plan = prefetch::Plan {
        prefetch: parts.prefetch,
        pin: None,
    };
    let (background, _) = prefetch::start(reader.clone(), parts.blocks.clone(), plan);
    Ok(Tree::new(table, reader)
        .following_loads(parts.libraries)
        .with_background(background))
}
