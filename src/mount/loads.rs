//! Prefetch that follows a program's loads. When a file of a mounted tree is first read and is
//! an ELF program or library, the interpreter and the libraries it names (`DT_NEEDED`, looked
//! up as the dynamic loader would: its search path, then the system's library directories,
//! through the tree's symlinks) are read at once, in the background, and theirs in turn. The
//! loader would open them one after another, each waiting for its first chunk; now their chunks
//! are fetched and inflated side by side while it works through the program's own.
//!
//! What is read is what the loader reads of each file: its first bytes, its dynamic section and
//! its string table, so nothing is fetched that the start would not fetch anyway. Where each
//! layer of an image is a tree of its own (the layer store's `diff`s and the snapshotter's
//! layer mounts, which the runtime stacks with overlayfs), a name is looked up in the image's
//! other open layers too, the topmost that has it first, as the merged view would show it
//! ([`ImageLayers`]; symlinks are resolved within each layer, a whiteout hides what is below
//! it, opaque directories are not heeded: a wrong guess costs a fetch, never a wrong byte).
//! Each file is followed once per tree, at most [`MAX_FOLLOWED`] files; the ELF parsing is
//! bounded (`cidfs_formats::elf`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use cidfs_formats::elf;

use crate::image::oci::Descriptor;

use super::inode::{Inode, Kind, Table, ROOT};
use super::reader::{ReadError, Reader};
use super::MAX_LAYERS;
use crate::sync::lock;

/// Files whose loads one tree follows (a Python with its extension modules opens about 50).
pub const MAX_FOLLOWED: usize = 4096;
/// Symlinks followed while looking up one path (Linux allows 40).
const MAX_LINKS: usize = 40;
/// Path components walked while looking up one path, symlinks' included (a library's path
/// takes about a dozen).
const MAX_STEPS: usize = 256;
/// Path components walked for all the names one file loads, through every layer: the bound
/// on the map lookups one hostile file can cause (a few milliseconds of one async worker).
const MAX_STEPS_PER_FILE: usize = 250_000;
/// Directories of a file's own search path tried.
const MAX_SEARCH: usize = 8;

/// The followers of the open layers of a tree's image, topmost first, the tree's own among
/// them (see [`Loads::in_image`]); at most [`MAX_LAYERS`], the layers an image may have.
type Layers = Box<dyn Fn() -> Vec<Arc<Loads>> + Send + Sync>;

/// The followers of layers served alone (the layer store's trees, the snapshotter's layer
/// mounts), by the CID of the layer they serve: each one joined looks names up through the
/// layers of its image, whichever image's mount or tree serves each (a base layer that
/// containerd mounted once for one image serves every image stacked on it; the CID names the
/// bytes, so any tree of it will do). Holds no follower alive; a gone one is dropped at the
/// next join. Cheap to clone.
#[derive(Clone, Default)]
pub struct ImageLayers(Arc<Mutex<HashMap<String, Vec<Weak<Loads>>>>>);

impl ImageLayers {
    /// The CIDs of an image's `layers` (the lowest first), as [`Self::join`] takes them; a
    /// layer without one is left out.
    pub fn cids<'a>(layers: impl IntoIterator<Item = &'a Descriptor>) -> Arc<[String]> {
        layers
            .into_iter()
            .filter_map(|l| Some(l.cid().ok()?.to_string()))
            .collect()
    }

    /// `loads` follows `layer`, one of the layers whose CIDs `image` lists ([`Self::cids`]):
    /// it looks names up through those of them served, topmost first. A layer without a CID
    /// is not joined.
    pub fn join(&self, layer: &Descriptor, image: Arc<[String]>, loads: &Arc<Loads>) {
        let Ok(cid) = layer.cid() else { return };
        {
            let mut layers = lock(&self.0);
            layers.retain(|_, trees| {
                trees.retain(|l| l.strong_count() > 0);
                !trees.is_empty()
            });
            layers
                .entry(cid.to_string())
                .or_default()
                .push(Arc::downgrade(loads));
        }
        let layers = Arc::downgrade(&self.0);
        loads.in_image(Box::new(move || {
            let Some(layers) = layers.upgrade() else {
                return Vec::new();
            };
            let layers = lock(&layers);
            image
                .iter()
                .rev()
                .take(MAX_LAYERS)
                .filter_map(|cid| layers.get(cid)?.iter().find_map(Weak::upgrade))
                .collect()
        }));
    }
}

/// The follower of one tree's loads. Cheap to share.
pub struct Loads {
    table: Arc<Table>,
    reader: Reader,
    /// Inodes followed, or being followed.
    seen: Mutex<HashSet<u64>>,
    /// Where the tree is one layer of an image: that image's layers.
    layers: OnceLock<Layers>,
}

impl Loads {
    pub fn new(table: Arc<Table>, reader: Reader) -> Arc<Loads> {
        Arc::new(Loads {
            table,
            reader,
            seen: Mutex::default(),
            layers: OnceLock::new(),
        })
    }

    /// The tree is one layer of an image whose open layers `layers` lists, topmost first (this
    /// one among them): names are looked up through all of them, and a file found in another
    /// is followed by that layer's follower. Set once; later calls change nothing.
    fn in_image(&self, layers: Layers) {
        let _ = self.layers.set(layers);
    }

    /// The read at offset 0 of `ino` returned `head`: when it is an ELF file not followed yet,
    /// follows its loads in the background.
    pub fn first_read(self: &Arc<Self>, ino: u64, head: &[u8]) {
        if head.starts_with(&elf::MAGIC) && !self.prefetched(ino) && self.claim(ino) {
            self.spawn(ino);
        }
    }

    /// Whether `ino` is among the files its layer prefetches (before `.prefetch.landmark`):
    /// `image optimize` recorded them with the libraries the start loaded, and the mount's
    /// prefetch fetches them in that order, one chunk per core; reads beside it would only
    /// take cores from it (measured: an optimized start 0.18 -> 0.21 s).
    pub(super) fn prefetched(&self, ino: u64) -> bool {
        let Some((_, f)) = self.file(ino) else {
            return false;
        };
        let Some(layer) = self.reader.layers().get(f.layer) else {
            return false;
        };
        let first = layer.index.files.get(&f.name).and_then(|c| c.first());
        layer
            .prefetch_end
            .zip(first)
            .is_some_and(|(end, c)| c.offset < end)
    }

    /// Whether `ino` was taken to follow.
    #[cfg(test)]
    pub(super) fn followed(&self, ino: u64) -> bool {
        lock(&self.seen).contains(&ino)
    }

    /// Whether `ino` is newly taken to follow (each once, at most [`MAX_FOLLOWED`]).
    fn claim(&self, ino: u64) -> bool {
        let mut seen = lock(&self.seen);
        seen.len() < MAX_FOLLOWED && seen.insert(ino)
    }

    fn spawn(self: &Arc<Self>, ino: u64) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.follow(ino).await {
                tracing::debug!("following the loads of inode {ino}: {e}");
            }
        });
    }

    /// Reads `ino`'s first bytes (its first chunk: the prefetch itself), and when it is an ELF
    /// file, its dynamic section and string table, then follows what they name.
    async fn follow(self: &Arc<Self>, ino: u64) -> Result<(), ReadError> {
        let Some((n, file)) = self.file(ino) else {
            return Ok(());
        };
        let read =
            |at: std::ops::Range<u64>| self.reader.read(file, n.size, at.start, at.end - at.start);
        let head = read(0..elf::HEAD).await?;
        let Ok(program) = elf::program(&head) else {
            return Ok(());
        };
        let layers = self.layers();
        let budget = AtomicUsize::new(MAX_STEPS_PER_FILE);
        let find = |path: &str| {
            layers
                .iter()
                .find_map(|l| Some((l, find(&l.table, path, &budget)?)))
                .filter(|(_, n)| matches!(n.kind, Kind::File(_)))
                .map(|(l, n)| (l.clone(), n.ino))
        };
        let mut found = Vec::new();
        if let Some(r) = program.interp.clone() {
            found.extend(elf::interpreter(&read(r).await?).and_then(find));
        }
        let names = match program.dynamic.clone() {
            Some(r) => {
                let dynamic = program.dynamic(&read(r).await?);
                match dynamic.strings.clone() {
                    Some(s) => dynamic.names(&read(s).await?),
                    None => elf::Names::default(),
                }
            }
            None => elf::Names::default(),
        };
        let origin = file.name.rsplit_once('/').map_or("", |(dir, _)| dir);
        let dirs = search_dirs(&names.search, origin, program.machine);
        for name in &names.needed {
            let lib = match name.contains('/') {
                true => find(name),
                false => dirs.iter().find_map(|d| find(&format!("{d}/{name}"))),
            };
            if lib.is_none() {
                tracing::trace!("{name:?}, needed by {:?}, is not in the tree", file.name);
            }
            found.extend(lib);
        }
        for (layer, ino) in found {
            if !layer.prefetched(ino) && layer.claim(ino) {
                tracing::trace!("{:?} loads inode {ino}: reading it now", file.name);
                layer.spawn(ino);
            }
        }
        Ok(())
    }

    /// The layers a name is looked up in, topmost first: this tree alone, or its image's.
    pub(super) fn layers(self: &Arc<Self>) -> Vec<Arc<Loads>> {
        let mut layers = self.layers.get().map(|l| l()).unwrap_or_default();
        if !layers.iter().any(|l| Arc::ptr_eq(l, self)) {
            layers.insert(0, self.clone());
        }
        layers
    }

    fn file(&self, ino: u64) -> Option<(&Inode, &super::inode::File)> {
        let n = self.table.get(ino)?;
        match &n.kind {
            Kind::File(f) => Some((n, f)),
            _ => None,
        }
    }
}

/// The inode at `path` in `table` (from the root, `/` or not), through symlinks as the kernel
/// would resolve them inside the tree; `None` past [`MAX_LINKS`] links, [`MAX_STEPS`]
/// components, at a missing part, or once `budget` (components, taken from as they are
/// walked) is spent.
fn find<'t>(table: &'t Table, path: &str, budget: &AtomicUsize) -> Option<&'t Inode> {
    let mut todo: VecDeque<&str> = parts(path).collect();
    let mut walked = vec![ROOT];
    let (mut links, mut steps) = (0, 0);
    while let Some(part) = todo.pop_front() {
        steps += 1;
        budget.store(budget.load(Relaxed).checked_sub(1)?, Relaxed);
        if steps > MAX_STEPS {
            return None;
        }
        let at = *walked.last()?;
        match part {
            "." => continue,
            ".." => {
                if walked.len() > 1 {
                    walked.pop();
                }
                continue;
            }
            _ => {}
        }
        let n = table.lookup(at, part)?;
        match &n.kind {
            Kind::Dir { .. } => walked.push(n.ino),
            Kind::Symlink { target } => {
                links += 1;
                let more: Vec<&str> = parts(target).take(MAX_STEPS + 1).collect();
                if links > MAX_LINKS || todo.len() + more.len() > MAX_STEPS {
                    return None;
                }
                if target.starts_with('/') {
                    walked.truncate(1);
                }
                for p in more.into_iter().rev() {
                    todo.push_front(p);
                }
            }
            _ => return todo.is_empty().then_some(n),
        }
    }
    table.get(*walked.last()?)
}

fn parts(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|p| !p.is_empty())
}

/// Where the loader looks for a library named without a `/`: the file's `DT_RUNPATH` (or
/// `DT_RPATH`; `$ORIGIN` is the file's directory, other tokens are skipped), then the
/// directories a distribution's `ld.so.conf` lists (Debian's: `/usr/local/lib`, where the
/// official `python` and `node` images keep their libraries, and the multiarch directories of
/// the file's machine) and the loader's own (Fedora's `lib64`, Alpine's `lib`; musl also looks
/// in `/usr/local/lib`). `/etc/ld.so.cache` itself is not read.
fn search_dirs(search: &[String], origin: &str, machine: u16) -> Vec<String> {
    let mut dirs: Vec<String> = search
        .iter()
        .take(MAX_SEARCH)
        .filter_map(|d| {
            let d = d
                .replace("${ORIGIN}", "$ORIGIN")
                .replace("$ORIGIN", &format!("/{origin}"));
            (!d.contains('$')).then_some(d)
        })
        .collect();
    dirs.push("/usr/local/lib".into());
    if let Some(triplet) = elf::multiarch(machine) {
        for root in ["/usr/local/lib", "/lib", "/usr/lib"] {
            dirs.push(format!("{root}/{triplet}"));
        }
    }
    dirs.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(String::from));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::estargz::{EntryType, Toc, TocEntry};

    fn tree(entries: &[(&str, Option<&str>)]) -> Table {
        let entries = entries
            .iter()
            .map(|(name, link)| match link {
                Some(t) => TocEntry {
                    link_name: t.to_string(),
                    ..TocEntry::new(*name, EntryType::Symlink)
                },
                None => TocEntry::new(*name, EntryType::Reg),
            })
            .collect();
        Table::build(&[Toc {
            version: 1,
            entries,
        }])
        .unwrap()
    }

    fn plenty() -> AtomicUsize {
        AtomicUsize::new(MAX_STEPS_PER_FILE)
    }

    #[test]
    fn paths_are_found_through_symlinks_as_the_kernel_would() {
        let t = tree(&[
            ("usr/lib/x86_64-linux-gnu/libz.so.1.2.13", None),
            ("usr/lib/x86_64-linux-gnu/libz.so.1", Some("libz.so.1.2.13")),
            ("lib", Some("usr/lib")),
            (
                "usr/lib64/ld.so",
                Some("/lib/x86_64-linux-gnu/../x86_64-linux-gnu/libz.so.1"),
            ),
            ("loop/a", Some("b")),
            ("loop/b", Some("a")),
            ("deep", Some(&"x/".repeat(300))),
        ]);
        let real = t
            .resolve("usr/lib/x86_64-linux-gnu/libz.so.1.2.13")
            .unwrap()
            .ino;
        for p in [
            "/lib/x86_64-linux-gnu/libz.so.1",
            "lib/./x86_64-linux-gnu/libz.so.1",
            "/usr/lib64/ld.so",
            "/../../usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
        ] {
            assert_eq!(find(&t, p, &plenty()).map(|n| n.ino), Some(real), "{p}");
        }
        // a loop, a path through a file, a missing name, a symlink too long: not found, and
        // each within its bound
        for p in [
            "/loop/a",
            "/lib/x86_64-linux-gnu/libz.so.1/x",
            "/lib/nothing",
            "/deep/y",
        ] {
            assert!(find(&t, p, &plenty()).is_none(), "{p}");
        }
        // a spent budget finds nothing; each part walked takes one
        let budget = AtomicUsize::new(3);
        assert!(find(&t, "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", &budget).is_none());
        assert_eq!(budget.load(Relaxed), 0);
        let budget = AtomicUsize::new(4);
        assert!(find(&t, "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", &budget).is_some());
    }

    #[test]
    fn the_search_path_comes_first_with_origin_and_then_the_systems() {
        let dirs = search_dirs(
            &["$ORIGIN/../lib".into(), "${ORIGIN}".into(), "$LIB/x".into()],
            "opt/app/bin",
            62,
        );
        assert_eq!(dirs[..2], ["/opt/app/bin/../lib", "/opt/app/bin"]);
        assert_eq!(
            dirs[2..6],
            [
                "/usr/local/lib",
                "/usr/local/lib/x86_64-linux-gnu",
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu"
            ]
        );
        assert_eq!(dirs[6..], ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]);
        assert!(dirs.iter().all(|d| !d.contains('$')));
        let many: Vec<String> = (0..100).map(|i| format!("/d{i}")).collect();
        assert_eq!(search_dirs(&many, "", 0).len(), MAX_SEARCH + 5);
    }
}
