//! A containerd snapshotter (issue 8), served over gRPC on a unix socket for containerd's
//! `proxy_plugins` (type `snapshot`). Level 6 of the crate: it uses `mount` and `image`.
//!
//! It is containerd's overlay snapshotter — the same directories, mounts and metadata rules —
//! plus remote layers, as stargz-snapshotter does them: when `Prepare` carries the labels of
//! `ctr-remote image rpull` for a layer of an image in the swarm ([`remote`]), the layer is
//! mounted lazily from the swarm at the snapshot's directory, committed at once under the chain
//! ID containerd asked for, and `Prepare` answers AlreadyExists, so containerd neither downloads
//! nor unpacks it. Every other layer unpacks as usual into the snapshot's own directory. Once
//! the image is found (so a layer the swarm lacks still unpacks as usual), the layer's mount
//! (its TOC, its inode table, FUSE) goes on behind the answer; the first `Mounts` or `Prepare`
//! on it, or its `Remove`, waits for it ([`Snapshotter::mounting`]).
//!
//! - [`meta`]: the snapshots and their rules, in sled (survives restarts).
//! - [`filter`]: containerd's filter syntax for `List`.
//! - [`remote`]: the rpull labels and the lazy layer mounts.
//! - `grpc`: the service adapter (containerd.services.snapshots.v1).
//!
//! Layout under the root: `metadata.db/`, `snapshots/<id>/fs` (the layer, or a container's
//! upper dir) and `snapshots/<id>/work` (overlayfs' work dir, for active snapshots). At start
//! the remote layers containerd knows are mounted again.

pub mod filter;
mod grpc;
pub mod meta;
pub mod proto;
pub mod remote;
#[cfg(test)]
mod tests;

use anyhow::Context as _;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::config::{Trust, UnverifiedLayers};
use crate::image::pull::ResolveError;
use crate::mount::proof;
use filter::Filter;
use meta::{Kind, Meta, Named, Usage, Verdict};
use remote::{Remote, REMOTE_LABEL, REMOTE_VALUE, TARGET_LABEL};

/// On a lazily served snapshot: the [`remote::Layer::proof_key`] of its layer.
pub const LAYER_LABEL: &str = "containerd.io/snapshot/cidfs.layer";

/// A committed lazily served layer to read whole in the background (`verify-after`).
struct Job {
    layer: remote::Layer,
}

/// Why a call failed; each maps to the gRPC code containerd's `errdefs` expects.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

fn io_error(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what}: {e}"))
}

/// One mount for the caller to perform (containerd.types.Mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// A layer mount under way ([`Snapshotter::mounting`]): its outcome, for every waiter.
type Mounting = futures::future::Shared<futures::future::BoxFuture<'static, Result<(), String>>>;

/// The snapshotter.
pub struct Snapshotter {
    root: PathBuf,
    meta: Meta,
    remote: Remote,
    /// Add `index=off` to overlay mounts (containerd does when the kernel has the option).
    index_off: bool,
    /// Held while a snapshot directory exists without its record, and by `Cleanup`.
    dirs: tokio::sync::Mutex<()>,
    trust: Trust,
    /// Remote layers being mounted behind a `Prepare` that has answered, by their `fs` dir:
    /// what uses one waits for it (an error is the mount's, and the layer is mounted again).
    mounting: std::sync::Mutex<std::collections::HashMap<PathBuf, Mounting>>,
    /// Layers to prove in the background, and the receiving end until the verifier starts.
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    queued: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Job>>>,
}

impl Snapshotter {
    /// Opens the snapshotter at `root` (created when missing).
    pub fn open(root: &Path, remote: Remote, trust: Trust) -> anyhow::Result<Snapshotter> {
        std::fs::create_dir_all(root.join("snapshots"))
            .with_context(|| format!("creating {}", root.join("snapshots").display()))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 700 {}", root.display()))?;
        let root = std::fs::canonicalize(root)?;
        let meta = Meta::open(&root.join("metadata.db"))?;
        let (jobs, queued) = tokio::sync::mpsc::unbounded_channel();
        Ok(Snapshotter {
            root,
            meta,
            remote,
            index_off: Path::new("/sys/module/overlay/parameters/index").exists(),
            dirs: Default::default(),
            trust,
            mounting: Default::default(),
            jobs,
            queued: std::sync::Mutex::new(Some(queued)),
        })
    }

    /// Starts proving, one at a time, the layers committed before they were read whole
    /// (`verify-after`, and any left unproven by an earlier run or policy). A layer that is not
    /// its DiffID is withdrawn: unmounted, its snapshots removed where nothing is built on
    /// them, and every later mount of it refused. A layer that cannot be read now is tried
    /// again a minute later.
    pub fn start_verifier(self: &Arc<Self>) {
        let Some(mut queued) = crate::sync::lock(&self.queued).take() else {
            return;
        };
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(job) = queued.recv().await {
                let Some(s) = me.upgrade() else { return };
                s.verify_in_background(job).await;
            }
        });
    }

    async fn verify_in_background(&self, job: Job) {
        let key = job.layer.proof_key();
        if !matches!(self.meta.verdict(&key), Ok(None)) {
            return;
        }
        let blocks = self.remote.mounts.reader_parts().blocks;
        let proof = proof::judge(
            &blocks,
            &job.layer.desc,
            &job.layer.diff_id,
            self.trust.verify_timeout(),
        );
        match proof.await {
            Ok(Verdict::Proven) => {
                tracing::info!("snapshotter: layer {} proven", job.layer.desc.digest);
                if let Err(e) = self.meta.set_verdict(&key, &Verdict::Proven) {
                    tracing::warn!("snapshotter: {e}");
                }
            }
            Ok(Verdict::Refused(why)) => self.withdraw(&key, why).await,
            Err(e) => {
                tracing::warn!(
                    "snapshotter: layer {} not proven yet ({e:#}); trying again in a minute",
                    job.layer.desc.digest
                );
                let jobs = self.jobs.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    let _ = jobs.send(job);
                });
            }
        }
    }

    /// Records that layer `key` is not what its image claims, stops serving it and removes its
    /// snapshots where containerd has built nothing on them.
    async fn withdraw(&self, key: &str, why: String) {
        tracing::error!("snapshotter: withdrawing a lazily served layer: {why}");
        if let Err(e) = self.meta.set_verdict(key, &Verdict::Refused(why)) {
            tracing::warn!("snapshotter: {e}");
        }
        let all = self.meta.all().unwrap_or_default();
        for n in all
            .iter()
            .filter(|n| n.snapshot.labels.get(LAYER_LABEL).map(String::as_str) == Some(key))
        {
            let fs = self.fs_dir(n.snapshot.id);
            // a mount still under way would land after the unmount
            let _ = self.mounted_behind(&fs).await;
            if self.remote.mounts.is_mounted(&fs).await {
                if let Err(e) = self.remote.mounts.unmount(&fs).await {
                    tracing::warn!("snapshotter: unmounting {}: {e:#}", fs.display());
                }
            }
            if let Err(e) = self.remove(&n.name).await {
                tracing::warn!(
                    "snapshotter: {:?} stays, refused to every mount: {e}",
                    n.name
                );
            }
        }
    }

    /// The error for a layer proven not to be what its image claims.
    fn refused(name: &str, why: &str) -> Error {
        Error::FailedPrecondition(format!(
            "layer snapshot {name:?} is refused: its bytes are not what the image claims ({why})"
        ))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    /// Mounts again the remote layers containerd knows (after a restart); failures are logged
    /// and retried when containerd next uses the layer.
    pub async fn restore(&self) {
        let all = match self.meta.all() {
            Ok(a) => a,
            Err(e) => return tracing::warn!("snapshotter: cannot list snapshots: {e}"),
        };
        let remote: Vec<_> = all.into_iter().filter(|n| is_remote(&n.snapshot)).collect();
        let mut restored = 0;
        for n in &remote {
            match self.ensure_mounted(&n.name, &n.snapshot).await {
                Ok(()) => restored += 1,
                Err(e) => tracing::warn!("snapshotter: {e}"),
            }
        }
        if !remote.is_empty() {
            tracing::info!(
                "snapshotter: {restored} of {} lazily served layers mounted again",
                remote.len()
            );
        }
    }

    /// Mounts a remote snapshot's layer unless it is mounted; never one that was withdrawn.
    async fn ensure_mounted(&self, name: &str, s: &meta::Snapshot) -> Result<(), Error> {
        if let Some(key) = s.labels.get(LAYER_LABEL) {
            if let Some(Verdict::Refused(why)) = self.meta.verdict(key)? {
                return Err(Self::refused(name, &why));
            }
        }
        let dir = self.fs_dir(s.id);
        if let Err(e) = self.mounted_behind(&dir).await {
            tracing::warn!("snapshotter: mounting layer snapshot {name:?} failed ({e}); again");
        }
        if self.remote.mounts.is_mounted(&dir).await {
            return Ok(());
        }
        let unavailable = |why: String| {
            Error::Unavailable(format!("layer snapshot {name:?} is unavailable: {why}"))
        };
        // what will not change by asking again is a failed precondition, not "unavailable"
        let unservable = |why: String| {
            Error::FailedPrecondition(format!("layer snapshot {name:?} cannot be served: {why}"))
        };
        let t = remote::target(&s.labels)
            .map_err(|e| unservable(e.to_string()))?
            .ok_or_else(|| unservable("its labels name no image".into()))?;
        let layer = self.remote.resolve(&t).await.map_err(|e| match e {
            ResolveError::Unreachable(e) => unavailable(format!("{e:#}")),
            ResolveError::NotAnImage(e) => unservable(format!("{e:#}")),
        })?;
        // (snapshots committed before verdicts existed carry no LAYER_LABEL: judged here)
        match self.meta.verdict(&layer.proof_key())? {
            Some(Verdict::Refused(why)) => return Err(Self::refused(name, &why)),
            None if self.trust.unverified_layers != UnverifiedLayers::Trust => {
                let _ = self.jobs.send(Job {
                    layer: layer.clone(),
                });
            }
            _ => {}
        }
        self.remote
            .mount(&dir, &t, &layer)
            .await
            .map_err(|e| unavailable(format!("{e:#}")))?;
        Ok(())
    }

    /// Creates the directory and the record of a new snapshot.
    async fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<meta::Snapshot, Error> {
        let _dirs = self.dirs.lock().await;
        let id = self.meta.next_id()?;
        let dir = self.dir(id);
        let made = (|| {
            std::fs::create_dir(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            std::fs::create_dir(dir.join("fs"))?;
            std::fs::set_permissions(dir.join("fs"), std::fs::Permissions::from_mode(0o755))?;
            if kind == Kind::Active {
                std::fs::create_dir(dir.join("work"))?;
                std::fs::set_permissions(dir.join("work"), std::fs::Permissions::from_mode(0o711))?;
            }
            // a container's upper dir belongs to whoever owns the image's root
            if let Ok(p) = self.meta.get(parent) {
                let m = std::fs::metadata(self.fs_dir(p.id))?;
                std::os::unix::fs::lchown(dir.join("fs"), Some(m.uid()), Some(m.gid()))?;
            }
            Ok::<_, std::io::Error>(())
        })();
        let created = made
            .map_err(|e| io_error(format!("creating {}", dir.display()), e))
            .and_then(|()| self.meta.create(id, kind, key, parent, labels));
        if created.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        created
    }

    /// `Prepare`: an active snapshot on `parent`, or a remote layer committed at once.
    pub async fn prepare(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<MountSpec>, Error> {
        let s = self
            .create(Kind::Active, key, parent, labels.clone())
            .await?;
        if let Some(target) = labels.get(TARGET_LABEL) {
            match remote::target(&labels) {
                Ok(Some(t)) => {
                    if let Some(e) = self.prepare_remote(key, &s, target, &t, &labels).await {
                        return Err(e);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("snapshotter: {key}: bad remote labels: {e}"),
            }
        }
        self.mounts(key).await
    }

    /// Serves layer `t` at snapshot `s` and commits it as `target`; the error for `Prepare`,
    /// or None when the layer is to be unpacked as usual (its image or layer not found). The
    /// mount itself goes on behind the answer ([`Self::mount_behind`]). A layer not read whole
    /// before is first proven ([`Trust`]); one that lies fails the `Prepare`, so the pull fails
    /// with the reason instead of any image ever running it under the claimed chain ID.
    async fn prepare_remote(
        &self,
        key: &str,
        s: &meta::Snapshot,
        target: &str,
        t: &remote::Target,
        labels: &BTreeMap<String, String>,
    ) -> Option<Error> {
        let layer = match self.remote.resolve(t).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("snapshotter: not serving lazily, containerd unpacks it: {e:#}");
                return None;
            }
        };
        let proof_key = layer.proof_key();
        let verdict = match self.meta.verdict(&proof_key) {
            Ok(v) => v,
            Err(e) => return Some(self.abandon(key, e).await),
        };
        match (&verdict, self.trust.unverified_layers) {
            (Some(Verdict::Refused(why)), _) => {
                return Some(self.abandon(key, Self::refused(target, why)).await)
            }
            (None, UnverifiedLayers::VerifyFirst) => {
                let blocks = self.remote.mounts.reader_parts().blocks;
                let proof = proof::judge(
                    &blocks,
                    &layer.desc,
                    &layer.diff_id,
                    self.trust.verify_timeout(),
                );
                match proof.await {
                    Ok(Verdict::Proven) => {
                        if let Err(e) = self.meta.set_verdict(&proof_key, &Verdict::Proven) {
                            return Some(self.abandon(key, e).await);
                        }
                    }
                    Ok(Verdict::Refused(why)) => {
                        tracing::error!(
                            "snapshotter: refusing layer {} of {}: {why}",
                            t.layer,
                            t.reference
                        );
                        let _ = self
                            .meta
                            .set_verdict(&proof_key, &Verdict::Refused(why.clone()));
                        return Some(self.abandon(key, Self::refused(target, &why)).await);
                    }
                    Err(e) => {
                        tracing::warn!("snapshotter: layer {} not proven ({e:#}); containerd unpacks it (and checks its DiffID)", t.layer);
                        return None;
                    }
                }
            }
            _ => {}
        }
        let dir = self.fs_dir(s.id);
        self.mount_behind(dir, t, &layer);
        let mut labels = labels.clone();
        labels.insert(REMOTE_LABEL.into(), REMOTE_VALUE.into());
        labels.insert(LAYER_LABEL.into(), proof_key);
        match self.meta.commit(key, target, labels, Usage::default()) {
            Ok(_) => {
                tracing::info!(
                    "snapshotter: layer {} of {} served lazily as {target}",
                    t.layer,
                    t.reference
                );
                if verdict.is_none()
                    && self.trust.unverified_layers == UnverifiedLayers::VerifyAfter
                {
                    let _ = self.jobs.send(Job { layer });
                }
                Some(Error::AlreadyExists(format!(
                    "target snapshot {target:?} exists (served lazily)"
                )))
            }
            // another Prepare committed the target first (AlreadyExists), or the commit
            // failed: either way this snapshot goes (remove unmounts the layer)
            Err(e) => Some(self.abandon(key, e).await),
        }
    }

    /// Starts mounting `layer` at `dir` in a task of its own ([`Self::mounting`]).
    fn mount_behind(&self, dir: PathBuf, t: &remote::Target, layer: &remote::Layer) {
        use futures::FutureExt as _;
        let (remote, at, t, layer) = (self.remote.clone(), dir.clone(), t.clone(), layer.clone());
        let task = tokio::spawn(async move {
            let began = std::time::Instant::now();
            let mounted = remote.mount(&at, &t, &layer).await;
            match &mounted {
                Ok(_) => tracing::debug!(
                    "snapshotter: layer {} of {} mounted behind its Prepare in {:?}",
                    t.layer,
                    t.reference,
                    began.elapsed()
                ),
                Err(e) => tracing::warn!("snapshotter: mounting behind its Prepare: {e:#}"),
            }
            mounted.map(|_| ()).map_err(|e| format!("{e:#}"))
        });
        let outcome = async move { task.await.unwrap_or_else(|e| Err(e.to_string())) };
        crate::sync::lock(&self.mounting).insert(dir, outcome.boxed().shared());
    }

    /// Waits for the mount at `dir` started behind a `Prepare`, if one is under way or
    /// unclaimed; its error if it failed.
    async fn mounted_behind(&self, dir: &Path) -> Result<(), String> {
        let pending = crate::sync::lock(&self.mounting).get(dir).cloned();
        let Some(pending) = pending else {
            return Ok(());
        };
        let outcome = pending.await;
        crate::sync::lock(&self.mounting).remove(dir);
        outcome
    }

    /// Removes the active snapshot `key` a failed remote `Prepare` made; returns `e`.
    async fn abandon(&self, key: &str, e: Error) -> Error {
        if let Err(e) = self.remove(key).await {
            tracing::warn!("snapshotter: removing {key:?}: {e}");
        }
        e
    }

    /// `View`: a read-only snapshot of `parent`.
    pub async fn view(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<MountSpec>, Error> {
        self.create(Kind::View, key, parent, labels).await?;
        self.mounts(key).await
    }

    /// `Mounts`: what to mount for active or view snapshot `key` (containerd's overlay rules).
    /// Remote layers below it are checked, and mounted again if they went.
    pub async fn mounts(&self, key: &str) -> Result<Vec<MountSpec>, Error> {
        let chain = self.meta.chain(key)?;
        let (_, s) = &chain[0];
        for (name, p) in &chain[1..] {
            if is_remote(p) {
                self.ensure_mounted(name, p).await?;
            }
        }
        let path = |id: u64| self.fs_dir(id).to_string_lossy().into_owned();
        let parents: Vec<String> = chain[1..].iter().map(|(_, p)| path(p.id)).collect();
        let bind = |source: String, rw: bool| MountSpec {
            kind: "bind".into(),
            source,
            options: vec![if rw { "rw" } else { "ro" }.into(), "rbind".into()],
        };
        let mut options = Vec::new();
        match (s.kind, parents.len()) {
            (Kind::Active, 0) => return Ok(vec![bind(path(s.id), true)]),
            (_, 0) => return Ok(vec![bind(path(s.id), false)]),
            (Kind::Active, _) => {
                let dir = self.dir(s.id);
                options.push(format!("workdir={}", dir.join("work").display()));
                options.push(format!("upperdir={}", dir.join("fs").display()));
            }
            (_, 1) => return Ok(vec![bind(parents[0].clone(), false)]),
            _ => {}
        }
        options.push(format!("lowerdir={}", parents.join(":")));
        if self.index_off {
            options.push("index=off".into());
        }
        Ok(vec![MountSpec {
            kind: "overlay".into(),
            source: "overlay".into(),
            options,
        }])
    }

    /// `Commit`: active snapshot `key` becomes committed `name`.
    pub async fn commit(
        &self,
        name: &str,
        key: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let s = self.meta.get(key)?;
        let usage = if s.kind == Kind::Active {
            disk_usage(self.fs_dir(s.id)).await?
        } else {
            Usage::default()
        };
        self.meta.commit(key, name, labels, usage)?;
        Ok(())
    }

    /// `Remove`: forgets `key` and deletes its directory (unmounting a remote layer first).
    pub async fn remove(&self, key: &str) -> Result<(), Error> {
        let s = self.meta.remove(key)?;
        self.remove_dir(self.dir(s.id)).await;
        Ok(())
    }

    /// Deletes a snapshot directory, after detaching anything mounted in it: never removes
    /// files through a mount.
    async fn remove_dir(&self, dir: PathBuf) {
        let fs = dir.join("fs");
        // a mount still under way would land after the unmount
        let _ = self.mounted_behind(&fs).await;
        if self.remote.mounts.is_mounted(&fs).await {
            if let Err(e) = self.remote.mounts.unmount(&fs).await {
                tracing::warn!("snapshotter: unmounting {}: {e:#}", fs.display());
            }
        }
        let removed = tokio::task::spawn_blocking(move || {
            crate::mount::detach_all_under(&dir);
            std::fs::remove_dir_all(&dir).map_err(|e| (dir, e))
        })
        .await;
        if let Ok(Err((dir, e))) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("snapshotter: removing {}: {e}", dir.display());
            }
        }
    }

    /// `Stat`.
    pub fn stat(&self, key: &str) -> Result<Named, Error> {
        Ok(Named {
            name: key.to_string(),
            snapshot: self.meta.get(key)?,
        })
    }

    /// `Update`: labels only.
    pub fn update(
        &self,
        key: &str,
        labels: BTreeMap<String, String>,
        paths: &[String],
    ) -> Result<Named, Error> {
        Ok(Named {
            name: key.to_string(),
            snapshot: self.meta.update(key, labels, paths)?,
        })
    }

    /// `List` with containerd filters over `name`, `parent`, `kind` and `labels.<key>`.
    pub fn list(&self, filters: &[String]) -> Result<Vec<Named>, Error> {
        let f = Filter::parse(filters)?;
        let all = self.meta.all()?;
        Ok(all
            .into_iter()
            .filter(|n| {
                f.matches(|path| match path {
                    [p] if p == "name" => Some(n.name.as_str()),
                    [p] if p == "parent" => Some(n.snapshot.parent.as_str()),
                    [p] if p == "kind" => Some(n.snapshot.kind.name()),
                    [p, k] if p == "labels" => n.snapshot.labels.get(k).map(String::as_str),
                    _ => None,
                })
            })
            .collect())
    }

    /// `Usage`: measured now for active snapshots, as committed otherwise.
    pub async fn usage(&self, key: &str) -> Result<Usage, Error> {
        let s = self.meta.get(key)?;
        if s.kind == Kind::Active {
            disk_usage(self.fs_dir(s.id)).await
        } else {
            Ok(s.usage)
        }
    }

    /// `Cleanup`: deletes directories no snapshot owns (left by a crash or a failed call).
    pub async fn cleanup(&self) -> Result<(), Error> {
        let _dirs = self.dirs.lock().await;
        let owned: std::collections::HashSet<String> = self
            .meta
            .all()?
            .into_iter()
            .map(|n| n.snapshot.id.to_string())
            .collect();
        let base = self.root.join("snapshots");
        let entries = std::fs::read_dir(&base).map_err(|e| io_error(base.display(), e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !owned.contains(&name) {
                tracing::info!("snapshotter: cleanup removes {}", e.path().display());
                self.remove_dir(e.path()).await;
            }
        }
        Ok(())
    }
}

fn is_remote(s: &meta::Snapshot) -> bool {
    s.kind == Kind::Committed && s.labels.contains_key(REMOTE_LABEL)
}

/// Disk used under `dir` as containerd counts it: 512-byte blocks of each inode once.
async fn disk_usage(dir: PathBuf) -> Result<Usage, Error> {
    tokio::task::spawn_blocking(move || {
        let mut seen = std::collections::HashSet::new();
        let mut usage = Usage::default();
        let mut stack = vec![dir.clone()];
        while let Some(p) = stack.pop() {
            let m = std::fs::symlink_metadata(&p).map_err(|e| io_error(p.display(), e))?;
            if seen.insert((m.dev(), m.ino())) {
                usage.size += m.blocks() as i64 * 512;
                usage.inodes += 1;
            }
            if m.is_dir() {
                let entries = std::fs::read_dir(&p).map_err(|e| io_error(p.display(), e))?;
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
        Ok(usage)
    })
    .await
    .map_err(|e| io_error("measuring disk usage", e))?
}

/// Serves `snapshotter` on the unix socket `socket` until `stop` resolves; the socket file is
/// removed at the end. A socket left by an earlier daemon is replaced; any other file is not.
pub async fn serve(
    snapshotter: Arc<Snapshotter>,
    socket: PathBuf,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener =
        crate::socket::bind_private(&socket, "snapshotter.socket; --snapshotter-socket")?;
    tracing::info!(
        "containerd snapshotter listening on {} (root {})",
        socket.display(),
        snapshotter.root().display()
    );
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let service = grpc::service(snapshotter);
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop)
            .await;
        if let Err(e) = served {
            tracing::warn!("containerd snapshotter failed: {e}");
        }
        let _ = std::fs::remove_file(&socket);
    }))
}
