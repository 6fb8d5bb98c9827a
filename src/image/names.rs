//! Image names (`team/app:1.0` → image CID), as pushes to the registry endpoint set them, kept
//! in the store's database (a sled tree beside the blocks, so they survive restarts and share its
//! flushes), with every earlier value of a name as its history. Every door that takes an image
//! CID takes a name through this table.

use cid::Cid;
use serde::{Deserialize, Serialize};

/// Names kept; a push past it is refused.
pub const MAX_NAMES: usize = 100_000;
/// Earlier values kept per name.
pub const MAX_HISTORY: usize = 100;

/// What a name points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    /// The converted image's CID (`ipfs/<CID>` serves the same image).
    pub cid: String,
    /// The digest of the manifest or index the client pushed.
    pub pushed_digest: String,
    /// Seconds since the epoch.
    pub pushed_at: u64,
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
}

/// The table: `repo:tag` → [`Named`], and `history/repo:tag/<time>` for the earlier ones.
#[derive(Clone)]
pub struct Names(sled::Tree);

const HISTORY: &str = "history/";

impl Names {
    pub fn new(tree: sled::Tree) -> Self {
        Names(tree)
    }

    fn decode(key: &str, v: &[u8]) -> Result<Named, NamesError> {
        serde_json::from_slice(v).map_err(|source| NamesError::Bad {
            key: key.to_string(),
            source,
        })
    }

    /// What `repo:tag` names.
    pub fn get(&self, repo: &str, tag: &str) -> Result<Option<Named>, NamesError> {
        let key = format!("{repo}:{tag}");
        self.0
            .get(key.as_bytes())?
            .map(|v| Self::decode(&key, &v))
            .transpose()
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
        if self.0.len() >= MAX_NAMES && !self.0.contains_key(key.as_bytes())? {
            return Err(NamesError::Full);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let named = Named {
            cid: cid.to_string(),
            pushed_digest: pushed_digest.to_string(),
            pushed_at: now.as_secs(),
        };
        let value = serde_json::to_vec(&named).map_err(|source| NamesError::Bad {
            key: key.clone(),
            source,
        })?;
        if let Some(old) = self.0.insert(key.as_bytes(), value)? {
            let at = format!("{HISTORY}{key}/{:020}", now.as_nanos());
            self.0.insert(at.as_bytes(), old)?;
            let prefix = format!("{HISTORY}{key}/");
            let kept: Vec<_> = self.0.scan_prefix(prefix.as_bytes()).keys().collect();
            for k in kept
                .iter()
                .take(kept.len().saturating_sub(MAX_HISTORY))
                .flatten()
            {
                self.0.remove(k)?;
            }
        }
        self.0.flush()?;
        Ok(named)
    }

    /// Removes `repo:tag`; whether it was there. Its history stays.
    pub fn remove(&self, repo: &str, tag: &str) -> Result<bool, NamesError> {
        let removed = self.0.remove(format!("{repo}:{tag}").as_bytes())?.is_some();
        self.0.flush()?;
        Ok(removed)
    }

    /// The tags of `repo`, sorted.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>, NamesError> {
        let prefix = format!("{repo}:");
        let mut tags = Vec::new();
        for key in self.0.scan_prefix(prefix.as_bytes()).keys() {
            let key = key?;
            if let Ok(tag) = std::str::from_utf8(&key[prefix.len()..]) {
                tags.push(tag.to_string());
            }
        }
        Ok(tags)
    }

    /// Every name (`repo:tag`) with what it points at, sorted.
    pub fn all(&self) -> Result<Vec<(String, Named)>, NamesError> {
        let mut out = Vec::new();
        for entry in self.0.iter() {
            let (k, v) = entry?;
            let key = String::from_utf8_lossy(&k).into_owned();
            if key.starts_with(HISTORY) {
                continue;
            }
            out.push((key.clone(), Self::decode(&key, &v)?));
        }
        Ok(out)
    }

    /// The earlier values of `repo:tag`, oldest first.
    pub fn history(&self, repo: &str, tag: &str) -> Result<Vec<Named>, NamesError> {
        let prefix = format!("{HISTORY}{repo}:{tag}/");
        self.0
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

    #[test]
    fn names_move_keep_history_and_list_by_repository() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let names = Names::new(db.open_tree("names").unwrap());
        let a: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        let b: Cid = "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau"
            .parse()
            .unwrap();
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
        assert!(names.remove("team/app", "latest").unwrap());
        assert!(!names.remove("team/app", "latest").unwrap());
        assert_eq!(names.get("team/app", "latest").unwrap(), None);
    }
}
