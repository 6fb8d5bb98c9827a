//! Lazy rootfs mounts of images. Level 5 of the crate: it uses `image` and below.
//!
//! `cidfs mount CID DIR` asks the daemon, which owns the node, to mount the merged, read-only
//! rootfs of an image over FUSE. Mounting reads only metadata: the image's index, manifest and
//! config, then each eStargz layer's footer and TOC by range; file contents are fetched chunk by
//! chunk when something reads them.
//!
//! - [`inode`]: the merged rootfs as an immutable inode table, built from the layers' TOCs with
//!   overlay semantics (pure).
//! - [`layer`]: one layer opened for reading: its TOC checked against the manifest, its chunk
//!   index; a layer that is not eStargz is fetched whole and converted into a local spool file.
//! - [`reader`]: file range → chunks → node range reads → inflate → `chunkDigest` check.
//! - [`cache`]: the bounded cache of inflated chunks, one fetch per chunk however many readers.
//! - [`verified`]: which chunks were checked against their digest on this node (sled).
//! - [`loads`]: prefetch that follows a program's loads (its interpreter and libraries).
//! - [`trace`]: the files a mount's readers touched, in order (for `image optimize`).
//! - `prefetch`: the background work of a mount (landmark prefetch, then optionally the whole
//!   image).
//! - [`fs`]: the one fuser adapter ([`fs::Fs`] over any [`fs::Requests`]) and [`fs::Tree`], the
//!   requests of one merged tree.
//!
//! [`Mounts`] is the daemon's registry of live mounts: mount, unmount, list, unmount everything
//! at shutdown, and detach mounts a killed daemon of the same repo left behind.

pub mod cache;
pub mod fs;
pub mod inode;
pub mod layer;
pub mod loads;
pub(crate) mod prefetch;
pub mod proof;
pub mod reader;
pub mod trace;
pub mod verified;

use crate::metrics::{MountStats, MountStatsView};
use anyhow::{anyhow, bail, Context as _};
use cid::Cid;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::AbortOnDropHandle;

use crate::blockservice::BlockService;
use crate::config::MountConfig;
use crate::image::oci::{Descriptor, Platform};
use crate::image::pull;
use crate::metrics::Metrics;
use cache::ChunkCache;
use inode::Table;
use reader::Reader;

/// FUSE subtype: mounts show as `fuse.cidfs`.
pub const SUBTYPE: &str = "cidfs";
/// Longest wait for a FUSE session thread to end after its unmount.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What to mount.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub image: Cid,
    pub dir: PathBuf,
    /// Let users other than the daemon's own use the mount (`allow_other`).
    pub allow_other: bool,
    /// Platforms to choose from (all if empty); several left → the host's.
    pub platforms: Vec<Platform>,
}

/// See [`Mounts::reader_parts`].
#[derive(Clone)]
pub struct ReaderParts {
    pub blocks: BlockService,
    pub metrics: Metrics,
    pub cache: Arc<ChunkCache>,
    pub read_timeout: Duration,
    pub spool: PathBuf,
    /// `mount.prefetch`: layers fetch their prefetched files early ([`layer::warm`]).
    pub prefetch: bool,
    /// `mount.prefetch_libraries`: trees follow programs' loads ([`loads`]).
    pub libraries: bool,
}

impl ReaderParts {
    /// Opens one layer as a tree of its own in overlayfs lower-dir form (whiteouts as 0/0
    /// character devices, opaque directories marked by xattr): the layer store's `diff`, a
    /// snapshotter's lazily served layer.
    pub async fn open_overlay(
        &self,
        desc: &Descriptor,
        diff_id: &str,
    ) -> anyhow::Result<(Arc<Table>, Reader)> {
        let read = layer::read(&self.blocks, desc, diff_id, &self.spool, self.prefetch).await?;
        // the chunk index and the tree, CPU work proportional to a hostile TOC: off the async
        // workers, side by side
        let read = FreedAside(Some(Arc::new(read)));
        let table = tokio::task::spawn_blocking({
            let read = Arc::clone(&read);
            move || Table::build_overlay(&read.toc)
        });
        let l = tokio::task::spawn_blocking({
            let read = Arc::clone(&read);
            move || read.index()
        });
        let (l, table) = (l.await, table.await);
        let l = l.context("TOC indexing task failed")??;
        let table = table.context("building the layer's tree")??;
        Ok((Arc::new(table), self.reader(vec![l])))
    }

    pub fn reader(&self, layers: Vec<layer::Layer>) -> Reader {
        Reader::new(
            self.blocks.clone(),
            Arc::new(layers),
            self.cache.clone(),
            self.read_timeout,
        )
    }
}

/// Holds the TOCs of a layer being opened (tens of thousands of allocations, up to
/// [`MAX_ENTRIES`](inode::MAX_ENTRIES) per layer) and frees them on a blocking thread of their
/// own when it goes, also on an early return: off the async workers and off the mount's way.
struct FreedAside<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> std::ops::Deref for FreedAside<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for FreedAside<T> {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            drop(tokio::task::spawn_blocking(move || drop(t)));
        }
    }
}

/// Layers an image may have to be mounted (Docker's overlay2 stacks at most 128).
pub const MAX_LAYERS: usize = 128;
/// Layers opened (footer and TOC fetched, indexed) at once at mount.
const OPEN_AT_ONCE: usize = 4;

/// A live mount.
#[derive(Debug, Clone, Serialize)]
pub struct MountInfo {
    #[serde(rename = "Mountpoint")]
    pub dir: PathBuf,
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "Platform")]
    pub platform: String,
    #[serde(rename = "Layers")]
    pub layers: usize,
    #[serde(rename = "Inodes")]
    pub inodes: u64,
    /// Its reads, chunks and fetches so far (filled in by [`Mounts::list`]).
    #[serde(rename = "Stats", skip_serializing_if = "Option::is_none")]
    pub stats: Option<MountStatsView>,
}

struct Active {
    info: MountInfo,
    session: fuser::BackgroundSession,
    background: tokio::task::AbortHandle,
    /// Made by [`Mounts::mount`] (`cidfs mount`), so `cidfs umount` may remove it; the layer
    /// store and the snapshotter's layers are the daemon's own.
    by_user: bool,
    /// The first reads of its files (user mounts).
    trace: Option<Arc<trace::Trace>>,
    stats: Arc<MountStats>,
}

struct Inner {
    blocks: BlockService,
    metrics: Metrics,
    settings: MountConfig,
    cache: Arc<ChunkCache>,
    spool: PathBuf,
    /// Source name of this daemon's mounts in the mount table (`cidfs-<repo hash>`).
    fsname: String,
    active: tokio::sync::Mutex<BTreeMap<PathBuf, Active>>,
    /// The followers of the layers mounted alone, by layer.
    layers_alone: loads::ImageLayers,
}

/// The daemon's mounts. Cheap to clone.
#[derive(Clone)]
pub struct Mounts {
    inner: Arc<Inner>,
}

impl Mounts {
    /// Mounts for the repo at `repo` (its `spool/` holds converted non-eStargz layers). Detaches
    /// mounts that an earlier daemon of this repo left behind.
    pub fn new(
        blocks: BlockService,
        settings: MountConfig,
        repo: &Path,
        metrics: Metrics,
        verified: Option<verified::Verified>,
    ) -> anyhow::Result<Mounts> {
        let spool = repo.join("spool");
        if spool.exists() {
            std::fs::remove_dir_all(&spool)
                .with_context(|| format!("clearing {}", spool.display()))?;
        }
        std::fs::create_dir_all(&spool).with_context(|| format!("creating {}", spool.display()))?;
        let fsname = fsname_of(repo);
        for dir in stale_mounts(&fsname) {
            tracing::warn!("detaching a stale mount of this repo at {}", dir.display());
            if let Err(e) = umount(&dir, libc::MNT_DETACH) {
                tracing::warn!("cannot detach {}: {e}", dir.display());
            }
        }
        Ok(Mounts {
            inner: Arc::new(Inner {
                blocks,
                cache: Arc::new({
                    let cache = ChunkCache::new(settings.cache_bytes())
                        .with_counters(metrics.cache_hits.clone(), metrics.cache_misses.clone());
                    match verified {
                        Some(v) => cache.with_verified(v),
                        None => cache,
                    }
                }),
                metrics,
                settings,
                spool,
                fsname,
                active: Default::default(),
                layers_alone: Default::default(),
            }),
        })
    }

    /// Mounts `req.image` at `req.dir`; returns once the mount serves requests.
    pub async fn mount(&self, req: MountRequest) -> anyhow::Result<MountInfo> {
        let me = &self.inner;
        let dir = mount_point(&req.dir, &me.settings.allowed_roots)?;
        if me.active.lock().await.contains_key(&dir) {
            bail!("{} is already a cidfs mount", dir.display());
        }
        let t0 = std::time::Instant::now();
        let resolved = pull::resolve(&me.blocks, req.image, &req.platforms).await?;
        let t_resolve = t0.elapsed();
        let image = resolved.one_image()?;
        let (config, layers) = image.layers_with_diff_ids()?;
        if layers.len() > MAX_LAYERS {
            bail!(
                "the image has {} layers, over the bound of {MAX_LAYERS} (overlayfs stacks at most 128 lower directories)",
                layers.len()
            );
        }
        // a few at a time: each holds a TOC of up to 64 MiB
        use futures::{StreamExt as _, TryStreamExt as _};
        let mut reading = Vec::with_capacity(layers.len());
        for (l, d) in &layers {
            reading.push(layer::read(
                &me.blocks,
                l,
                d,
                &me.spool,
                me.settings.prefetch,
            ));
        }
        let read: Vec<layer::Read> = futures::stream::iter(reading)
            .buffered(OPEN_AT_ONCE)
            .try_collect()
            .await?;
        // the chunk index and the inode table, CPU work over hostile TOCs: off the async
        // workers, built side by side
        let read = FreedAside(Some(Arc::new(read)));
        let table = tokio::task::spawn_blocking({
            let read = Arc::clone(&read);
            move || Table::build(read.iter().map(|r| &r.toc))
        });
        let indexed = tokio::task::spawn_blocking({
            let read = Arc::clone(&read);
            move || {
                read.iter()
                    .map(layer::Read::index)
                    .collect::<anyhow::Result<Vec<_>>>()
            }
        });
        let layers = indexed.await.context("TOC indexing task failed")??;
        let stats = Arc::new(MountStats::default());
        let reader = self.reader_parts().reader(layers).with_stats(stats.clone());
        // the prefetch starts as soon as the chunk index is there, while the inode table is
        // built and the mount attached (reads of a chunk in flight wait for its fetch)
        let pin = match me.settings.background_fetch {
            true => Some(resolved.blob_cids_of([image], true)?),
            false => None,
        };
        let plan = prefetch::Plan {
            prefetch: me.settings.prefetch,
            pin,
        };
        let (background, prefetched) = prefetch::start(reader.clone(), me.blocks.clone(), plan);
        let t_open = t0.elapsed();
        let table = table
            .await
            .context("merging the layers")?
            .context("merging the layers")?;
        drop(read);
        let t_table = t0.elapsed();
        let table = Arc::new(table);
        let platform = config.platform().to_string();
        let info = MountInfo {
            dir: dir.clone(),
            image: req.image.to_string(),
            platform,
            layers: reader.layers().len(),
            inodes: table.totals().0,
            stats: None,
        };
        let traced = Arc::new(trace::Trace::new(
            reader.layers().iter().map(|l| l.digest.clone()).collect(),
        ));
        let fs = fs::Fs::new(
            fs::Tree::new(table, reader.clone())
                .traced(traced.clone())
                .following_loads(me.settings.prefetch_libraries),
            tokio::runtime::Handle::current(),
            me.metrics.fuse("mount").for_mount(stats.clone()),
        );
        let info = self
            .attach(fs, info, req.allow_other, true, background, stats)
            .await?;
        let t_attach = t0.elapsed();
        self.wait_for(prefetched).await;
        tracing::debug!(
            "mount of {} took {:?}: resolved at {t_resolve:?}, layers open at {t_open:?}, inodes built at {t_table:?}, attached at {t_attach:?}",
            info.dir.display(),
            t0.elapsed()
        );
        if let Some(a) = me.active.lock().await.get_mut(&info.dir) {
            a.by_user = true;
            a.trace = Some(traced);
        }
        Ok(info)
    }

    /// Mounts layer `desc` of `image` alone at `dir`, in overlayfs lower-dir form
    /// ([`ReaderParts::open_overlay`]), read-only and open to every user (overlayfs and the
    /// container's processes read it), and prefetches what the layer puts before its landmark.
    /// `image_layers` are the CIDs of the image's layers, the lowest first: a program's loads
    /// are looked up through those mounted so ([`loads::ImageLayers`]).
    pub async fn mount_layer(
        &self,
        dir: &Path,
        image: &str,
        image_layers: &Arc<[String]>,
        desc: &Descriptor,
        diff_id: &str,
    ) -> anyhow::Result<MountInfo> {
        let (table, reader) = self.reader_parts().open_overlay(desc, diff_id).await?;
        let stats = Arc::new(MountStats::default());
        let reader = reader.with_stats(stats.clone());
        let info = MountInfo {
            dir: dir.to_path_buf(),
            image: format!("{image} layer {}", desc.digest),
            platform: String::new(),
            layers: 1,
            inodes: table.totals().0,
            stats: None,
        };
        let tree = fs::Tree::new(table, reader.clone())
            .following_loads(self.inner.settings.prefetch_libraries);
        if let Some(loads) = tree.loads() {
            let layers = &self.inner.layers_alone;
            layers.join(desc, image_layers.clone(), loads);
        }
        let fs = fs::Fs::new(
            tree,
            tokio::runtime::Handle::current(),
            self.inner
                .metrics
                .fuse("snapshotter")
                .for_mount(stats.clone()),
        );
        let plan = prefetch::Plan {
            prefetch: self.inner.settings.prefetch,
            pin: None,
        };
        let (background, prefetched) = prefetch::start(reader, self.inner.blocks.clone(), plan);
        let info = self.attach(fs, info, true, true, background, stats).await?;
        self.wait_for(prefetched).await;
        Ok(info)
    }

    /// Waits for a fresh mount's prefetch, at most `mount.prefetch_wait_secs`.
    async fn wait_for(&self, prefetched: tokio::sync::oneshot::Receiver<()>) {
        let wait = Duration::from_secs(self.inner.settings.prefetch_wait_secs);
        if tokio::time::timeout(wait, prefetched).await.is_err() {
            tracing::info!(
                "the prefetch is still running after {} s; answering the mount",
                wait.as_secs()
            );
        }
    }

    /// Whether this daemon serves a mount at `dir`.
    pub async fn is_mounted(&self, dir: &Path) -> bool {
        self.inner.active.lock().await.contains_key(dir)
    }

    /// Mounts `fs` at `info.dir` (`allow_other` and read-only if asked), runs `background` until
    /// the mount goes, and registers the mount. Also serves filesystems of higher levels (the
    /// layer store, which must see `create` calls, so it is not mounted read-only).
    pub async fn attach(
        &self,
        fs: impl fuser::Filesystem,
        info: MountInfo,
        allow_other: bool,
        read_only: bool,
        background: AbortOnDropHandle<()>,
        stats: Arc<MountStats>,
    ) -> anyhow::Result<MountInfo> {
        let me = &self.inner;
        let dir = info.dir.clone();
        if me.active.lock().await.contains_key(&dir) {
            bail!("{} is already a cidfs mount", dir.display());
        }
        let mut options = fuser::Config::default();
        options.mount_options = vec![
            fuser::MountOption::FSName(me.fsname.clone()),
            fuser::MountOption::Subtype(SUBTYPE.into()),
            fuser::MountOption::DefaultPermissions,
            fuser::MountOption::NoAtime,
        ];
        // images come from the swarm: their setuid bits and device nodes count only if the
        // operator says so (overlayfs over these mounts applies its own flags, not these)
        if me.settings.allow_setuid_and_devices {
            options
                .mount_options
                .extend([fuser::MountOption::Dev, fuser::MountOption::Suid]);
        } else {
            options
                .mount_options
                .extend([fuser::MountOption::NoDev, fuser::MountOption::NoSuid]);
        }
        if read_only {
            options.mount_options.push(fuser::MountOption::RO);
        }
        if allow_other {
            options.acl = fuser::SessionACL::All;
        }
        options.n_threads = Some(2);
        let at = dir.clone();
        let session = tokio::task::spawn_blocking(move || fuser::spawn_mount(fs, &at, &options))
            .await
            .context("mount task failed")?
            .with_context(|| {
                format!(
                    "mounting FUSE at {} (is /dev/fuse there, and are we root?)",
                    dir.display()
                )
            })?;
        raise_readahead(&dir);
        let background = background.detach().abort_handle();
        tracing::info!(
            "mounted {} ({}, {} layers, {} inodes) at {}",
            info.image,
            info.platform,
            info.layers,
            info.inodes,
            dir.display()
        );
        let mut active = me.active.lock().await;
        if active.contains_key(&dir) {
            // another mount of the same directory won the race: undo ours
            drop(active);
            background.abort();
            finish(&dir, session, libc::MNT_DETACH).await;
            bail!("{} is already a cidfs mount", dir.display());
        }
        active.insert(
            dir,
            Active {
                info: info.clone(),
                session,
                background,
                by_user: false,
                trace: None,
                stats,
            },
        );
        Ok(info)
    }

    /// What layers opened for reading need: the node, the shared chunk cache, the read timeout,
    /// and the spool directory (the fetch parallelism is the block service's readahead).
    pub fn reader_parts(&self) -> ReaderParts {
        let me = &self.inner;
        ReaderParts {
            blocks: me.blocks.clone(),
            metrics: me.metrics.clone(),
            cache: me.cache.clone(),
            read_timeout: me.settings.read_timeout(),
            spool: me.spool.clone(),
            prefetch: me.settings.prefetch,
            libraries: me.settings.prefetch_libraries,
        }
    }

    /// Unmounts `dir`. A busy mount (open files, a process inside) is detached: it disappears
    /// from the tree at once and ends when the last user lets go.
    pub async fn unmount(&self, dir: &Path) -> anyhow::Result<MountInfo> {
        self.unmount_if(dir, false).await
    }

    /// Unmounts `dir` if [`Mounts::mount`] made it (`cidfs umount`): the layer store and the
    /// snapshotter's layer mounts are refused (L4: the API could detach them).
    pub async fn unmount_user(&self, dir: &Path) -> anyhow::Result<MountInfo> {
        self.unmount_if(dir, true).await
    }

    async fn unmount_if(&self, dir: &Path, only_user: bool) -> anyhow::Result<MountInfo> {
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut active = self.inner.active.lock().await;
        let key = if active.contains_key(&abs) {
            abs
        } else {
            std::fs::canonicalize(&abs)
                .ok()
                .filter(|c| active.contains_key(c))
                .ok_or_else(|| anyhow!("{} is not a cidfs mount", dir.display()))?
        };
        if only_user && !active.get(&key).is_some_and(|a| a.by_user) {
            bail!(
                "{} is the daemon's own mount (layer store or snapshotter), not one of `cidfs mount`",
                dir.display()
            );
        }
        let Some(a) = active.remove(&key) else {
            bail!("{} is not a cidfs mount", dir.display());
        };
        drop(active);
        a.background.abort();
        finish(&key, a.session, 0).await;
        tracing::info!("unmounted {}", key.display());
        Ok(a.info)
    }

    /// The files read through the user mount at `dir` so far, in the order of their first
    /// read, and how many more were read past [`trace::MAX_FILES`].
    pub async fn trace(&self, dir: &Path) -> anyhow::Result<(Vec<trace::TracedFile>, u64)> {
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let canonical = std::fs::canonicalize(&abs).ok();
        let active = self.inner.active.lock().await;
        let a = active
            .get(&abs)
            .or_else(|| canonical.as_ref().and_then(|c| active.get(c)))
            .ok_or_else(|| anyhow!("{} is not a cidfs mount", dir.display()))?;
        let t = a.trace.as_ref().ok_or_else(|| {
            anyhow!(
                "{} is the daemon's own mount (layer store or snapshotter), not one of `cidfs mount`",
                dir.display()
            )
        })?;
        Ok(t.files())
    }

    /// The live mounts, by directory.
    pub async fn list(&self) -> Vec<MountInfo> {
        let active = self.inner.active.lock().await;
        active
            .values()
            .map(|a| MountInfo {
                stats: Some(a.stats.view()),
                ..a.info.clone()
            })
            .collect()
    }

    /// Unmounts everything (at shutdown): each mount is detached, so none can stay busy.
    pub async fn unmount_all(&self) {
        let all = std::mem::take(&mut *self.inner.active.lock().await);
        for (dir, a) in all {
            a.background.abort();
            finish(&dir, a.session, libc::MNT_DETACH).await;
            tracing::info!("unmounted {}", dir.display());
        }
    }
}

/// Unmounts `dir` (`flags` for `umount2`; EBUSY falls back to a detach), then lets the FUSE
/// session end, waiting at most [`JOIN_TIMEOUT`].
async fn finish(dir: &Path, session: fuser::BackgroundSession, flags: i32) {
    match umount(dir, flags) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            tracing::warn!(
                "{} is busy; detaching it (it ends when its last user goes)",
                dir.display()
            );
            if let Err(e) = umount(dir, libc::MNT_DETACH) {
                tracing::warn!("cannot detach {}: {e}", dir.display());
            }
        }
        // EINVAL: no longer a mount point (someone ran umount); the session ends by itself
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => tracing::warn!("unmounting {}: {e}", dir.display()),
    }
    let join = tokio::task::spawn_blocking(move || session.join());
    match tokio::time::timeout(JOIN_TIMEOUT, join).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::debug!("FUSE session of {} ended: {e}", dir.display()),
        Ok(Err(e)) => tracing::warn!("FUSE session of {}: {e}", dir.display()),
        Err(_) => tracing::info!(
            "FUSE session of {} still has users; it ends when they close their files",
            dir.display()
        ),
    }
}

/// Kernel readahead of a FUSE mount, in KiB: 1 MiB requests (the default `max_pages_limit`)
/// instead of 128 KiB roughly doubles cold sequential reads (`../shared/CEILINGS.md`).
const READ_AHEAD_KB: u32 = 1024;

/// Raises the readahead of the mount at `dir` (fuser's `init` cannot ask for more than the
/// kernel offers; the mount's backing device in sysfs can). Best effort.
fn raise_readahead(dir: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, READ_AHEAD_KB.to_string()) {
        tracing::debug!(
            "cannot raise the readahead of {}: {path}: {e}",
            dir.display()
        );
    }
}

fn umount(dir: &Path, flags: i32) -> std::io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `cidfs-` and 12 hex digits of the repo path's sha256: tells this repo's mounts apart.
fn fsname_of(repo: &Path) -> String {
    use sha2::Digest as _;
    let abs = std::path::absolute(repo).unwrap_or_else(|_| repo.to_path_buf());
    let h = sha2::Sha256::digest(abs.as_os_str().as_bytes());
    format!("cidfs-{}", &hex::encode(h)[..12])
}

/// Mount points of `fuse.cidfs` mounts named `fsname` in this process's mount table.
fn stale_mounts(fsname: &str) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mountinfo(&table, fsname)
}

/// See [`stale_mounts`]; pure.
fn parse_mountinfo(table: &str, fsname: &str) -> Vec<PathBuf> {
    let fstype = format!("fuse.{SUBTYPE}");
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            (r.next()? == fstype && r.next()? == fsname).then(|| PathBuf::from(unescape(point)))
        })
        .collect()
}

/// Detaches (`MNT_DETACH`) every mount at or under `dir` in this process's mount table,
/// deepest first, so that `dir` can be removed without reaching into another filesystem.
pub fn detach_all_under(dir: &Path) {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in v {
        if let Err(e) = umount(&m, libc::MNT_DETACH) {
            tracing::warn!("cannot detach {}: {e}", m.display());
        }
    }
}

/// Undoes the octal escapes (`\040` for a space) of `/proc/self/mountinfo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical path of a requested mount point, if it may take a mount: an empty directory
/// strictly below one of `roots` (`mount.allowed_roots`), so a mount never hides a system
/// directory or files someone relies on.
pub fn mount_point(dir: &Path, roots: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let canonical =
        std::fs::canonicalize(dir).with_context(|| format!("mount point {}", dir.display()))?;
    if !canonical.is_dir() {
        bail!("mount point {} is not a directory", canonical.display());
    }
    let below = roots.iter().any(|r| {
        let r = std::fs::canonicalize(r).unwrap_or_else(|_| r.clone());
        canonical != r && canonical.starts_with(&r)
    });
    if !below {
        bail!(
            "mount point {} is not below any of mount.allowed_roots ({})",
            canonical.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let empty = std::fs::read_dir(&canonical)
        .with_context(|| format!("reading mount point {}", canonical.display()))?
        .next()
        .is_none();
    if !empty {
        bail!(
            "mount point {} is not empty: a mount would hide what it holds",
            canonical.display()
        );
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod mountinfo_tests {
    use super::*;

    #[test]
    fn mountinfo_lines_name_our_mounts() {
        let table = "\
36 35 98:0 / /mnt1 rw,noatime master:1 - ext3 /dev/root rw
40 25 0:50 / /tmp/a\\040b ro,nosuid - fuse.cidfs cidfs-0123456789ab ro,user_id=0
41 25 0:51 / /tmp/other ro - fuse.cidfs cidfs-ffffffffffff ro
42 25 0:52 / /tmp/c ro - fuse.sshfs cidfs-0123456789ab ro
";
        assert_eq!(
            parse_mountinfo(table, "cidfs-0123456789ab"),
            [PathBuf::from("/tmp/a b")]
        );
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_ne!(fsname_of(Path::new("/r1")), fsname_of(Path::new("/r2")));
    }
}
