//! Image names (`team/app:1.0` → image CID), as pushes to the registry endpoint set them, kept
//! in the store's database (a sled tree beside the blocks, so they survive restarts and share its
//! flushes), with every earlier value of a name as its history. Every door that takes an image
//! CID takes a name through this table.
//!
//! The table is the swarm's: each value carries when (nanoseconds) and where (peer id) it was
//! set, a removal is a value too (a tombstone), and [`Names::merge`] keeps whichever of two
//! values is later by (time, peer id), so every node that has seen the same values agrees,
//! in whatever order they came (`names_sync` carries them). Every change is announced to
//! [`Names::changes`].

use cid::Cid;
use serde::{Deserialize, Serialize};

/// Names kept; a push past it is refused.
pub const MAX_NAMES: usize = 100_000;
/// Earlier values kept per name.
pub const MAX_HISTORY: usize = 100;
/// Values from this far ahead of this node's clock are refused (a peer's clock may run
/// ahead a little; a value far in the future would win every later push).
pub const MAX_CLOCK_SKEW_NS: u64 = 3600 * 1_000_000_000;

/// What a name points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    /// The converted image's CID (`ipfs/<CID>` serves the same image); empty when removed.
    pub cid: String,
    /// The digest of the manifest or index the client pushed.
    pub pushed_digest: String,
    /// Seconds since the epoch.
    pub pushed_at: u64,
    /// When it was set, nanoseconds since the epoch: the first half of its order.
    #[serde(default)]
    pub time_ns: u64,
    /// The peer id of the node that set it: the second half.
    #[serde(default)]
    pub origin: String,
    /// A removal (a tombstone, so that a peer that still has the old value does not bring it
    /// back).
    #[serde(default)]
    pub removed: bool,
}

impl Named {
    /// Whether this value wins over `other`.
    pub fn newer_than(&self, other: &Named) -> bool {
        (self.time_ns, &self.origin) > (other.time_ns, &other.origin)
    }
}

/// One name and its value, as nodes exchange them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `repo:tag`.
    pub name: String,
    pub value: Named,
}

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("the name table: {0}")]
    Db(#[from] sled::Error),
    #[error("the name table holds a bad record for {key:?}: {source}")]
    Bad {
        key: String,
        source: serde_json::Error,
    },
    #[error("the name table is full ({MAX_NAMES} names)")]
    Full,
    #[error("a name record from a peer is refused: {0}")]
    Refused(String),
    #[error("the name table holds {cid:?} for {name}, which is not a CID")]
    NotCid { name: String, cid: String },
}

/// The table: `repo:tag` → [`Named`], and `history/repo:tag/<time>` for the earlier ones.
#[derive(Clone)]
pub struct Names {
    tree: sled::Tree,
    /// This node's peer id, the origin of what it sets.
    origin: String,
    changes: tokio::sync::broadcast::Sender<Record>,
    /// Names in the table (tombstones included, history not): counted once at open, so the
    /// bound costs nothing per write (sled's `len` walks the whole tree).
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const HISTORY: &str = "history/";

/// Now, in ns since the Unix epoch (0 before it).
pub(super) fn now_ns() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Names {
    /// The table in `tree`; what this node sets comes from `origin` (its peer id).
    pub fn new(tree: sled::Tree, origin: impl Into<String>) -> Self {
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let count = tree
            .iter()
            .keys()
            .filter(|k| k.as_ref().is_ok_and(|k| !k.starts_with(HISTORY.as_bytes())))
            .count();
        Names {
            tree,
            origin: origin.into(),
            changes,
            count: std::sync::Arc::new(count.into()),
        }
    }

    /// Whether a new name would pass [`MAX_NAMES`].
    fn full(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Relaxed) >= MAX_NAMES
    }

    /// Every change from now on (a set, a removal, a value merged from a peer).
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Record> {
        self.changes.subscribe()
    }

    fn decode(key: &str, v: &[u8]) -> Result<Named, NamesError> {
        serde_json::from_slice(v).map_err(|source| NamesError::Bad {
            key: key.to_string(),
            source,
        })
    }

    fn raw(&self, key: &str) -> Result<Option<Named>, NamesError> {
        self.tree
            .get(key.as_bytes())?
            .map(|v| Self::decode(key, &v))
            .transpose()
    }

    /// What `repo:tag` names.
    pub fn get(&self, repo: &str, tag: &str) -> Result<Option<Named>, NamesError> {
        Ok(self.raw(&format!("{repo}:{tag}"))?.filter(|n| !n.removed))
    }

    /// The image CID `image` stands for: its CID, or what the table names so (None when
    /// nothing is). The one lookup of every door that takes a name.
    pub fn cid_of(&self, image: &crate::cidref::ImageRef) -> Result<Option<Cid>, NamesError> {
        let (repo, tag) = match image {
            crate::cidref::ImageRef::Cid(cid) => return Ok(Some(*cid)),
            crate::cidref::ImageRef::Named { repo, tag } => (repo, tag),
        };
        let Some(named) = self.get(repo, tag)? else {
            return Ok(None);
        };
        let cid = Cid::try_from(named.cid.as_str()).map_err(|_| NamesError::NotCid {
            name: image.to_string(),
            cid: named.cid.clone(),
        })?;
        Ok(Some(cid))
    }

    /// Stores `value` under `key` (the old value goes to the history), durable on return, and
    /// announces it.
    fn put(&self, key: &str, value: Named) -> Result<(), NamesError> {
        let bytes = serde_json::to_vec(&value).map_err(|source| NamesError::Bad {
            key: key.to_string(),
            source,
        })?;
        let old = self.tree.insert(key.as_bytes(), bytes)?;
        if old.is_none() {
            self.count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(old) = old {
            if !Self::decode(key, &old)?.removed {
                let at = format!("{HISTORY}{key}/{:020}", value.time_ns);
                self.tree.insert(at.as_bytes(), old)?;
                let prefix = format!("{HISTORY}{key}/");
                let kept: Vec<_> = self.tree.scan_prefix(prefix.as_bytes()).keys().collect();
                for k in kept
                    .iter()
                    .take(kept.len().saturating_sub(MAX_HISTORY))
                    .flatten()
                {
                    self.tree.remove(k)?;
                }
            }
        }
        self.tree.flush()?;
        let _ = self.changes.send(Record {
            name: key.to_string(),
            value,
        });
        Ok(())
    }

    /// A new value of `key` from this node, later than the one it replaces.
    fn local(&self, key: &str, mut value: Named) -> Result<Named, NamesError> {
        let old = self.raw(key)?;
        value.time_ns = now_ns().max(old.map_or(0, |o| o.time_ns.saturating_add(1)));
        value.origin = self.origin.clone();
        self.put(key, value.clone())?;
        Ok(value)
    }

    /// Points `repo:tag` at `cid`; the old value goes to the history. Durable on return.
    pub fn set(
        &self,
        repo: &str,
        tag: &str,
        cid: Cid,
        pushed_digest: &str,
    ) -> Result<Named, NamesError> {
        let key = format!("{repo}:{tag}");
        if self.full() && !self.tree.contains_key(key.as_bytes())? {
            return Err(NamesError::Full);
        }
        let named = Named {
            cid: cid.to_string(),
            pushed_digest: pushed_digest.to_string(),
            pushed_at: now_ns() / 1_000_000_000,
            time_ns: 0,
            origin: String::new(),
            removed: false,
        };
        self.local(&key, named)
    }

    /// Removes `repo:tag` (a tombstone); what it named, if anything. Its history stays.
    pub fn remove(&self, repo: &str, tag: &str) -> Result<Option<Named>, NamesError> {
        let key = format!("{repo}:{tag}");
        let Some(was) = self.get(repo, tag)? else {
            return Ok(None);
        };
        let tombstone = Named {
            cid: String::new(),
            pushed_digest: String::new(),
            pushed_at: now_ns() / 1_000_000_000,
            time_ns: 0,
            origin: String::new(),
            removed: true,
        };
        self.local(&key, tombstone)?;
        Ok(Some(was))
    }

    /// Takes a peer's value of a name if it is later than this node's; whether it did. The
    /// record is checked first: a name in the distribution grammar, a CID, a clock not far
    /// ahead.
    pub fn merge(&self, record: Record) -> Result<bool, NamesError> {
        let refuse = |why: String| Err(NamesError::Refused(why));
        let Some((repo, tag)) = record.name.rsplit_once(':') else {
            return refuse(format!("{:?} is not NAME:TAG", record.name));
        };
        if !crate::cidref::is_repository(repo) || !crate::cidref::is_tag(tag) {
            return refuse(format!("{:?} is not NAME:TAG", record.name));
        }
        let v = &record.value;
        if !v.removed && Cid::try_from(v.cid.as_str()).is_err() {
            return refuse(format!("{}: {:?} is not a CID", record.name, v.cid));
        }
        if v.origin.len() > 128 || v.pushed_digest.len() > 128 {
            return refuse(format!("{}: oversized fields", record.name));
        }
        if v.time_ns > now_ns().saturating_add(MAX_CLOCK_SKEW_NS) {
            return refuse(format!("{}: set in the future", record.name));
        }
        match self.raw(&record.name)? {
            Some(old) if !v.newer_than(&old) => Ok(false),
            old => {
                if old.is_none() && self.full() {
                    return Err(NamesError::Full);
                }
                self.put(&record.name, record.value)?;
                Ok(true)
            }
        }
    }

    /// Every value, tombstones included, as nodes exchange them.
    pub fn records(&self) -> Result<Vec<Record>, NamesError> {
        let mut out = Vec::new();
        for entry in self.tree.iter() {
            let (k, v) = entry?;
            let key = String::from_utf8_lossy(&k).into_owned();
            if key.starts_with(HISTORY) {
                continue;
            }
            out.push(Record {
                value: Self::decode(&key, &v)?,
                name: key,
            });
        }
        Ok(out)
    }

    /// The tags of `repo`, sorted.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>, NamesError> {
        let prefix = format!("{repo}:");
        let mut tags = Vec::new();
        for entry in self.tree.scan_prefix(prefix.as_bytes()) {
            let (key, v) = entry?;
            let name = String::from_utf8_lossy(&key).into_owned();
            if Self::decode(&name, &v)?.removed {
                continue;
            }
            if let Some(tag) = name.get(prefix.len()..) {
                tags.push(tag.to_string());
            }
        }
        Ok(tags)
    }

    /// Every name (`repo:tag`) with what it points at, sorted.
    pub fn all(&self) -> Result<Vec<(String, Named)>, NamesError> {
        Ok(self
            .records()?
            .into_iter()
            .filter(|r| !r.value.removed)
            .map(|r| (r.name, r.value))
            .collect())
    }

    /// The earlier values of `repo:tag`, oldest first.
    pub fn history(&self, repo: &str, tag: &str) -> Result<Vec<Named>, NamesError> {
        let prefix = format!("{HISTORY}{repo}:{tag}/");
        self.tree
            .scan_prefix(prefix.as_bytes())
            .map(|e| {
                let (k, v) = e?;
                Self::decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(origin: &str) -> Names {
        let db = sled::Config::new().temporary(true).open().unwrap();
        Names::new(db.open_tree("names").unwrap(), origin)
    }

    const A: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    const B: &str = "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau";

    /// The bound counts names, not their history, and the count survives a reopen.
    #[test]
    fn history_does_not_count_against_the_bound() {
        let t = table("me");
        let (a, b): (Cid, Cid) = (A.parse().unwrap(), B.parse().unwrap());
        for i in 0..150 {
            t.set("app", "1", if i % 2 == 0 { a } else { b }, "sha256:x")
                .unwrap();
        }
        t.set("app", "2", a, "sha256:x").unwrap();
        t.remove("app", "2").unwrap();
        let count = |n: &Names| n.count.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(count(&t), 2, "two names, the tombstone included");
        assert_eq!(t.history("app", "1").unwrap().len(), MAX_HISTORY);
        let again = Names::new(t.tree.clone(), "me");
        assert_eq!(count(&again), 2);
    }

    #[test]
    fn names_move_keep_history_and_list_by_repository() {
        let names = table("me");
        let (a, b): (Cid, Cid) = (A.parse().unwrap(), B.parse().unwrap());
        names.set("team/app", "1.0", a, "sha256:aa").unwrap();
        names.set("team/app", "1.0", b, "sha256:bb").unwrap();
        names.set("team/app", "latest", b, "sha256:bb").unwrap();
        names.set("team/app2", "x", a, "sha256:aa").unwrap();
        assert_eq!(
            names.get("team/app", "1.0").unwrap().unwrap().cid,
            b.to_string()
        );
        assert_eq!(names.tags("team/app").unwrap(), ["1.0", "latest"]);
        let history = names.history("team/app", "1.0").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].cid, a.to_string());
        assert_eq!(names.all().unwrap().len(), 3);
        assert!(names.remove("team/app", "latest").unwrap().is_some());
        assert!(names.remove("team/app", "latest").unwrap().is_none());
        assert_eq!(names.get("team/app", "latest").unwrap(), None);
        assert_eq!(names.tags("team/app").unwrap(), ["1.0"]);
    }

    /// Two tables that see the same values, in any order, agree: the later by (time, origin)
    /// wins, a removal included; hostile records are refused.
    #[test]
    fn merged_values_converge_in_any_order() {
        let (x, y) = (table("peer-x"), table("peer-y"));
        let a: Cid = A.parse().unwrap();
        let b: Cid = B.parse().unwrap();
        let first = x.set("team/app", "1.0", a, "").unwrap();
        let second = y.set("team/app", "1.0", b, "").unwrap();
        let rec = |v: &Named| Record {
            name: "team/app:1.0".into(),
            value: v.clone(),
        };
        let later = if second.newer_than(&first) {
            &second
        } else {
            &first
        };
        assert!(x.merge(rec(&second)).unwrap() == second.newer_than(&first));
        assert!(y.merge(rec(&first)).unwrap() == first.newer_than(&second));
        assert_eq!(x.get("team/app", "1.0").unwrap().as_ref(), Some(later));
        assert_eq!(y.get("team/app", "1.0").unwrap().as_ref(), Some(later));
        // a removal travels as a value and is not undone by the older one
        x.remove("team/app", "1.0").unwrap();
        let tomb = x.records().unwrap().remove(0);
        assert!(y.merge(tomb.clone()).unwrap());
        assert!(!y.merge(rec(later)).unwrap());
        assert_eq!(y.get("team/app", "1.0").unwrap(), None);
        // hostile records
        let mut future = later.clone();
        future.time_ns = u64::MAX;
        for bad in [
            Record {
                name: "Team/App:1".into(),
                value: later.clone(),
            },
            Record {
                name: "team/app:1.0".into(),
                value: Named {
                    cid: "not a cid".into(),
                    ..later.clone()
                },
            },
            rec(&future),
        ] {
            assert!(matches!(y.merge(bad), Err(NamesError::Refused(_))));
        }
    }
}
