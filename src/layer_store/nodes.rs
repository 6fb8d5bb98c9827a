//! The layer store's own inodes: image directories, layer directories and their `info` and
//! `blob` files, and the opened layer trees (`diff`), bounded ([`MAX_NODES`], [`MAX_TREES`]) with
//! the images and layers in use kept. Pure: no FUSE, no I/O.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::layout::ImageRef;
use crate::image::oci::Descriptor;
use crate::mount::fs::Tree;

/// Inodes below this are the store's own; trees start at `1 << 32`.
const TREE_SHIFT: u32 = 32;
const TREE_MASK: u64 = (1 << TREE_SHIFT) - 1;

/// The inode number of `ino` of the tree in `slot`.
pub(super) fn tree_ino(slot: usize, ino: u64) -> u64 {
    ((slot as u64 + 1) << TREE_SHIFT) | ino
}

/// The slot and inner inode of a tree inode; None for one of the store's own.
pub(super) fn split_tree_ino(ino: u64) -> Option<(usize, u64)> {
    let slot = (ino >> TREE_SHIFT).checked_sub(1)? as usize;
    Some((slot, ino & TREE_MASK))
}

pub(super) enum Node {
    Ref {
        r: ImageRef,
    },
    Layer {
        desc: Descriptor,
        diff_id: String,
        /// The CIDs of the image's layers, the lowest first.
        image_layers: Arc<[String]>,
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
pub(super) struct Nodes {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Each directory's entries (name → ino), and each inode's (parent, name).
    entries: HashMap<u64, BTreeMap<String, u64>>,
    parent_of: HashMap<u64, (u64, String)>,
    /// Image inodes, oldest first.
    refs: VecDeque<u64>,
    /// Opened layer trees by slot, with the ino of their layer directory; slots oldest first.
    trees: HashMap<usize, (Arc<Tree>, u64)>,
    next_slot: usize,
    tree_order: VecDeque<usize>,
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
    pub(super) fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The inode of `name` in directory `parent`.
    pub(super) fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.entries.get(&parent)?.get(name).copied()
    }

    /// The inode of `name` in `parent` (of image `image`, which is kept), made if new; None
    /// when the bound is reached and nothing can be forgotten.
    pub(super) fn add(&mut self, parent: u64, name: &str, node: Node, image: u64) -> Option<u64> {
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

    /// The opened tree in `slot`, with the inode of its layer directory.
    pub(super) fn tree(&self, slot: usize) -> Option<(Arc<Tree>, u64)> {
        self.trees.get(&slot).cloned()
    }

    /// Counts a `use` notification (`delta` 1) or a release (-1) of layer directory `layer`;
    /// the users left.
    pub(super) fn count_use(&mut self, layer: u64, delta: i64) -> i64 {
        let uses = self.uses.entry(layer).or_default();
        *uses += delta;
        *uses
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
    pub(super) fn add_tree(&mut self, tree: Arc<Tree>, layer: u64) -> Option<usize> {
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

    pub(super) fn children(&self, parent: u64) -> Vec<(u64, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::inode::ROOT;

    fn image(n: usize) -> Node {
        let cid: cid::Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
            .parse()
            .unwrap();
        Node::Ref {
            r: ImageRef {
                text: format!("h/ipfs/{cid}:{n}"),
                image: crate::cidref::ImageRef::Cid(cid),
            },
        }
    }

    fn layer() -> Node {
        Node::Layer {
            desc: serde_json::from_str(r#"{"mediaType":"m","digest":"sha256:00","size":1}"#)
                .unwrap(),
            diff_id: "sha256:01".into(),
            image_layers: Arc::from([]),
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
