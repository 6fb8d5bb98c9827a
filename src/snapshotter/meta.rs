//! The snapshotter's metadata: every snapshot containerd knows, by key (active and view
//! snapshots) or name (committed ones), in a sled database of its own under the snapshotter's
//! root, so it survives a restart of the daemon. The rules are containerd's
//! (`snapshots/storage`): a parent must be committed, a name is used once, a committed snapshot
//! with children cannot go, only an active snapshot can be committed.
//!
//! Every write holds one lock and ends with a flush, so a check and the write it guards are
//! atomic and a change containerd was told about is on disk.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Error;

/// Kind of a snapshot (containerd's `snapshots.Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    View,
    Active,
    Committed,
}

impl Kind {
    /// The name containerd's filters use (`kind==committed`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

/// Disk used by a snapshot's own directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub size: i64,
    pub inodes: i64,
}

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Names its directory, `snapshots/<id>`; never reused.
    pub id: u64,
    pub kind: Kind,
    /// The parent's name; empty for none.
    pub parent: String,
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created: i64,
    pub updated: i64,
    /// Measured at commit; zero for lazily served layers.
    pub usage: Usage,
}

/// A snapshot with its key or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub snapshot: Snapshot,
}

pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The metadata store.
pub struct Meta {
    db: sled::Db,
    tree: sled::Tree,
    /// What is known of lazily served layers, by [`crate::mount::proof::key`]: empty
    /// for bytes proven to be their DiffID's, the reason for bytes proven not to be.
    verdicts: sled::Tree,
    write: Mutex<()>,
}

pub use crate::mount::proof::Verdict;

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("snapshot metadata: {what}: {e}"))
}

impl Meta {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Meta> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(4 << 20)
            .open()
            .map_err(|e| anyhow::anyhow!("opening snapshot metadata {}: {e}", path.display()))?;
        let tree = db
            .open_tree("snapshots")
            .map_err(|e| anyhow::anyhow!("opening snapshot metadata {}: {e}", path.display()))?;
        let verdicts = db
            .open_tree("verdicts")
            .map_err(|e| anyhow::anyhow!("opening snapshot metadata {}: {e}", path.display()))?;
        Ok(Meta {
            db,
            tree,
            verdicts,
            write: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        crate::sync::lock(&self.write)
    }

    fn decode(name: &[u8], v: &[u8]) -> Result<Named, Error> {
        let snapshot = serde_json::from_slice(v).map_err(|e| internal("decoding a record", e))?;
        let name = String::from_utf8(name.to_vec()).map_err(|e| internal("a key", e))?;
        Ok(Named { name, snapshot })
    }

    /// The snapshot with key or name `key`.
    pub fn get(&self, key: &str) -> Result<Snapshot, Error> {
        match self.tree.get(key).map_err(|e| internal("reading", e))? {
            Some(v) => Ok(Self::decode(key.as_bytes(), &v)?.snapshot),
            None => Err(Error::NotFound(format!("snapshot {key:?} does not exist"))),
        }
    }

    /// Every snapshot, ordered by name.
    pub fn all(&self) -> Result<Vec<Named>, Error> {
        self.tree
            .iter()
            .map(|r| {
                let (k, v) = r.map_err(|e| internal("listing", e))?;
                Self::decode(&k, &v)
            })
            .collect()
    }

    /// `key` and its ancestors with their records, nearest first (`key` itself first).
    pub fn chain(&self, key: &str) -> Result<Vec<(String, Snapshot)>, Error> {
        let mut out = Vec::new();
        let mut next = key.to_string();
        while !next.is_empty() {
            let s = self.get(&next)?;
            let parent = s.parent.clone();
            out.push((next, s));
            if out.len() > 4096 {
                return Err(internal("a parent chain", "longer than 4096 (a loop?)"));
            }
            next = parent;
        }
        Ok(out)
    }

    fn encode(s: &Snapshot) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(s).map_err(|e| internal("encoding", e))
    }

    fn put(&self, key: &str, s: &Snapshot) -> Result<(), Error> {
        self.tree
            .insert(key, Self::encode(s)?)
            .map_err(|e| internal("writing", e))?;
        Ok(())
    }

    /// What is known of the layer `key` names; None: not read whole yet.
    pub fn verdict(&self, key: &str) -> Result<Option<Verdict>, Error> {
        let v = self.verdicts.get(key).map_err(|e| internal("reading", e))?;
        Ok(v.map(|v| match v.is_empty() {
            true => Verdict::Proven,
            false => Verdict::Refused(String::from_utf8_lossy(&v).into_owned()),
        }))
    }

    /// Records what a full read of layer `key` found (on disk when this returns).
    pub fn set_verdict(&self, key: &str, v: &Verdict) -> Result<(), Error> {
        let value = match v {
            Verdict::Proven => Vec::new(),
            Verdict::Refused(why) if why.is_empty() => b"refused".to_vec(),
            Verdict::Refused(why) => why.as_bytes().to_vec(),
        };
        let _w = self.lock();
        self.verdicts
            .insert(key, value)
            .map_err(|e| internal("writing", e))?;
        self.flush()
    }

    fn flush(&self) -> Result<(), Error> {
        self.db.flush().map_err(|e| internal("flushing", e))?;
        Ok(())
    }

    /// A fresh snapshot id.
    pub fn next_id(&self) -> Result<u64, Error> {
        self.db.generate_id().map_err(|e| internal("an id", e))
    }

    /// Records a new active or view snapshot `key` with directory `id` on `parent`.
    pub fn create(
        &self,
        id: u64,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Snapshot, Error> {
        if key.is_empty() {
            return Err(Error::InvalidArgument("a snapshot key is required".into()));
        }
        let _w = self.lock();
        if self
            .tree
            .contains_key(key)
            .map_err(|e| internal("reading", e))?
        {
            return Err(Error::AlreadyExists(format!(
                "snapshot {key:?} already exists"
            )));
        }
        if !parent.is_empty() {
            let p = self.get(parent).map_err(|_| {
                Error::NotFound(format!("parent snapshot {parent:?} does not exist"))
            })?;
            if p.kind != Kind::Committed {
                return Err(Error::InvalidArgument(format!(
                    "parent {parent:?} is not a committed snapshot"
                )));
            }
        }
        let t = now_nanos();
        let s = Snapshot {
            id,
            kind,
            parent: parent.to_string(),
            labels,
            created: t,
            updated: t,
            usage: Usage::default(),
        };
        self.put(key, &s)?;
        self.flush()?;
        Ok(s)
    }

    /// Commits active snapshot `key` as `name` (same directory), with `labels` and `usage`.
    pub fn commit(
        &self,
        key: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        usage: Usage,
    ) -> Result<Snapshot, Error> {
        if name.is_empty() {
            return Err(Error::InvalidArgument("a snapshot name is required".into()));
        }
        let _w = self.lock();
        let s = self.get(key)?;
        if s.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is {}, not active: only active snapshots can be committed",
                s.kind.name()
            )));
        }
        if self
            .tree
            .contains_key(name)
            .map_err(|e| internal("reading", e))?
        {
            return Err(Error::AlreadyExists(format!(
                "snapshot {name:?} already exists"
            )));
        }
        let t = now_nanos();
        let committed = Snapshot {
            kind: Kind::Committed,
            labels,
            created: t,
            updated: t,
            usage,
            ..s
        };
        let mut batch = sled::Batch::default();
        batch.remove(key);
        batch.insert(name, Self::encode(&committed)?);
        self.tree
            .apply_batch(batch)
            .map_err(|e| internal("writing", e))?;
        self.flush()?;
        Ok(committed)
    }

    /// Forgets `key`; returns it. A snapshot that is some snapshot's parent stays.
    pub fn remove(&self, key: &str) -> Result<Snapshot, Error> {
        let _w = self.lock();
        let s = self.get(key)?;
        if let Some(child) = self.all()?.into_iter().find(|n| n.snapshot.parent == key) {
            return Err(Error::FailedPrecondition(format!(
                "cannot remove snapshot {key:?}: {:?} is its child",
                child.name
            )));
        }
        self.tree.remove(key).map_err(|e| internal("writing", e))?;
        self.flush()?;
        Ok(s)
    }

    /// Sets labels of `key` as containerd's `UpdateInfo` does: with no `paths`, the labels are
    /// replaced; `labels` replaces them too; `labels.K` sets or (absent from `labels`) removes K.
    pub fn update(
        &self,
        key: &str,
        labels: BTreeMap<String, String>,
        paths: &[String],
    ) -> Result<Snapshot, Error> {
        let _w = self.lock();
        let mut s = self.get(key)?;
        if paths.is_empty() {
            s.labels = labels;
        } else {
            for p in paths {
                if p == "labels" {
                    s.labels = labels.clone();
                } else if let Some(k) = p.strip_prefix("labels.") {
                    match labels.get(k) {
                        Some(v) => s.labels.insert(k.to_string(), v.clone()),
                        None => s.labels.remove(k),
                    };
                } else {
                    return Err(Error::InvalidArgument(format!(
                        "cannot update field {p:?} of a snapshot (only labels)"
                    )));
                }
            }
        }
        s.updated = now_nanos();
        self.put(key, &s)?;
        self.flush()?;
        Ok(s)
    }
}
