//! Blobs pushed to the registry (the distribution spec's "pushing blobs"): upload sessions and
//! the staging area where finished blobs wait for the manifest that names them.
//!
//! - A session (`POST …/blobs/uploads/`) is a file in `<repo>/pushes/uploads/` and a SHA-256
//!   state in memory. `PATCH` appends at the session's end (a `Content-Range` that starts
//!   elsewhere is refused), streamed to the file on a blocking thread in pieces of up to 1 MiB,
//!   hashed on the way, so a blob is never whole in memory nor read twice. A `PATCH` that breaks
//!   off keeps what arrived whole: the client asks for the session's `Range` and goes on.
//! - `PUT …?digest=` ends it: the digest must match what arrived, and the file moves to
//!   `<repo>/pushes/blobs/sha256/<hex>` (an OCI layout's blob directory; manifests pushed by
//!   digest land there too). A blob is only there under a digest it was checked against.
//! - Sessions idle for [`IDLE`] are dropped with their file; at most [`MAX_SESSIONS`] live at
//!   once, each at most the configured blob size. Staged blobs untouched for [`STAGED_FOR`] are
//!   removed: by then their image is converted and stored (or never came).

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::error::RegistryError;
use crate::sync::lock;

/// Sessions open at once.
pub const MAX_SESSIONS: usize = 256;
/// A session no request touched for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(3600);
/// Staged blobs no push touched for this long are removed.
pub const STAGED_FOR: Duration = Duration::from_secs(24 * 3600);
/// Bytes handed to the writer thread at once.
const PIECE: usize = 1 << 20;

/// A session's file and the hash of what it holds.
struct Written {
    file: std::fs::File,
    hash: Sha256,
    len: u64,
}

struct Session {
    repo: String,
    /// Taken by the request writing to it (a second one at once is refused).
    written: Option<Written>,
    touched: Instant,
}

/// The registry's uploads and staged blobs.
pub struct Uploads {
    /// `<repo>/pushes`: an OCI layout's root, whose `blobs/sha256/` holds the staged blobs.
    root: PathBuf,
    sessions_dir: PathBuf,
    blobs_dir: PathBuf,
    max_blob: u64,
    sessions: Mutex<HashMap<String, Session>>,
}

/// `sha256:` digests only; the hex of a checked one.
fn hex_of(digest: &str) -> Result<&str, RegistryError> {
    super::check_digest(digest).map(|d| &d["sha256:".len()..])
}

impl Uploads {
    /// Uploads under `root` (`<repo>/pushes`); sessions of an earlier run are dropped (their
    /// hash state is gone), staged blobs kept.
    pub fn open(root: &Path, max_blob: u64) -> std::io::Result<Uploads> {
        let sessions_dir = root.join("uploads");
        if sessions_dir.exists() {
            std::fs::remove_dir_all(&sessions_dir)?;
        }
        std::fs::create_dir_all(&sessions_dir)?;
        let blobs_dir = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs_dir)?;
        let uploads = Uploads {
            root: root.to_path_buf(),
            sessions_dir,
            blobs_dir,
            max_blob,
            sessions: Mutex::default(),
        };
        uploads.sweep_staged();
        Ok(uploads)
    }

    /// The OCI layout whose `blobs/sha256/` holds the staged blobs.
    pub fn layout_root(&self) -> &Path {
        &self.root
    }

    /// Starts a session for repository `repo`; its id.
    pub fn start(&self, repo: &str) -> Result<String, RegistryError> {
        self.sweep_idle();
        let id = hex::encode(rand::random::<[u8; 16]>());
        let path = self.sessions_dir.join(&id);
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            return Err(RegistryError::too_many(format!(
                "{MAX_SESSIONS} uploads are open: finish or cancel one"
            )));
        }
        let file = std::fs::File::options()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| {
                RegistryError::internal(anyhow::anyhow!("creating {}: {e}", path.display()))
            })?;
        sessions.insert(
            id.clone(),
            Session {
                repo: repo.to_string(),
                written: Some(Written {
                    file,
                    hash: Sha256::new(),
                    len: 0,
                }),
                touched: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Bytes session `id` of `repo` holds.
    pub fn status(&self, repo: &str, id: &str) -> Result<u64, RegistryError> {
        let mut sessions = lock(&self.sessions);
        let s = session(&mut sessions, repo, id)?;
        s.touched = Instant::now();
        s.written
            .as_ref()
            .map(|w| w.len)
            .ok_or_else(|| RegistryError::upload_invalid("the upload is being written to"))
    }

    /// Appends `body` to session `id`, which must start at `start` when given; its new length.
    /// What arrived whole stays when the body breaks off.
    pub async fn append<E: std::fmt::Display>(
        &self,
        repo: &str,
        id: &str,
        start: Option<u64>,
        body: impl futures::Stream<Item = Result<Bytes, E>>,
    ) -> Result<u64, RegistryError> {
        use futures::StreamExt as _;
        let mut w = {
            let mut sessions = lock(&self.sessions);
            let s = session(&mut sessions, repo, id)?;
            s.touched = Instant::now();
            s.written.take().ok_or_else(|| {
                RegistryError::upload_invalid("another request is writing to this upload")
            })?
        };
        let mut failed = None;
        if let Some(start) = start.filter(|s| *s != w.len) {
            failed = Some(RegistryError::range(
                w.len,
                format!(
                    "the upload holds {} bytes; a chunk must start there, not at {start}",
                    w.len
                ),
            ));
        }
        futures::pin_mut!(body);
        let mut buf = Vec::with_capacity(PIECE);
        while failed.is_none() {
            let piece = body.next().await;
            if let Some(Ok(p)) = &piece {
                if w.len + (buf.len() + p.len()) as u64 > self.max_blob {
                    failed = Some(RegistryError::size_invalid(format!(
                        "the blob grows past {} bytes (registry.max_blob_mb)",
                        self.max_blob
                    )));
                } else {
                    buf.extend_from_slice(p);
                }
            }
            let last = !matches!(piece, Some(Ok(_)));
            if let Some(Err(e)) = piece {
                failed = Some(RegistryError::upload_invalid(format!(
                    "the upload broke off: {e}"
                )));
            }
            if buf.len() >= PIECE || (last && !buf.is_empty()) {
                let data = std::mem::replace(&mut buf, Vec::with_capacity(PIECE));
                let (back, wrote) = tokio::task::spawn_blocking(move || {
                    let r = w.file.write_all(&data);
                    if r.is_ok() {
                        w.hash.update(&data);
                        w.len += data.len() as u64;
                    }
                    (w, r)
                })
                .await
                .map_err(|e| RegistryError::internal(e.into()))?;
                w = back;
                if let Err(e) = wrote {
                    // the file may hold part of the piece: the session cannot go on
                    lock(&self.sessions).remove(id);
                    let _ = std::fs::remove_file(self.sessions_dir.join(id));
                    return Err(RegistryError::internal(anyhow::anyhow!(
                        "writing the upload: {e}"
                    )));
                }
            }
            if last {
                break;
            }
        }
        let len = w.len;
        if let Some(s) = lock(&self.sessions).get_mut(id) {
            s.written = Some(w);
            s.touched = Instant::now();
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(len),
        }
    }

    /// Ends session `id`: what it holds must hash to `digest`; it is then staged under it.
    pub async fn finish(&self, repo: &str, id: &str, digest: &str) -> Result<u64, RegistryError> {
        let hex = hex_of(digest)?.to_string();
        let w = {
            let mut sessions = lock(&self.sessions);
            session(&mut sessions, repo, id)?;
            let s = sessions.remove(id);
            s.and_then(|s| s.written).ok_or_else(|| {
                RegistryError::upload_invalid("another request is writing to this upload")
            })?
        };
        let from = self.sessions_dir.join(id);
        let got = format!("sha256:{}", hex::encode(w.hash.finalize()));
        if got != digest {
            let _ = std::fs::remove_file(&from);
            return Err(RegistryError::digest_invalid(format!(
                "the upload's {} bytes hash to {got}, not {digest}",
                w.len
            )));
        }
        let to = self.blobs_dir.join(&hex);
        let (file, len) = (w.file, w.len);
        tokio::task::spawn_blocking(move || {
            file.sync_all()?;
            std::fs::rename(&from, &to)
        })
        .await
        .map_err(|e| RegistryError::internal(e.into()))?
        .map_err(|e| RegistryError::internal(anyhow::anyhow!("staging the blob: {e}")))?;
        Ok(len)
    }

    /// Drops session `id`.
    pub fn cancel(&self, repo: &str, id: &str) -> Result<(), RegistryError> {
        let mut sessions = lock(&self.sessions);
        session(&mut sessions, repo, id)?;
        sessions.remove(id);
        let _ = std::fs::remove_file(self.sessions_dir.join(id));
        Ok(())
    }

    /// The size of staged blob `digest`, if it is staged (and marks it used).
    pub fn staged(&self, digest: &str) -> Option<u64> {
        let path = self.blobs_dir.join(hex_of(digest).ok()?);
        let meta = std::fs::metadata(&path).ok()?;
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        meta.is_file().then_some(meta.len())
    }

    /// The path of staged blob `digest`.
    pub fn staged_path(&self, digest: &str) -> Result<PathBuf, RegistryError> {
        Ok(self.blobs_dir.join(hex_of(digest)?))
    }

    /// Stages `bytes` (a manifest pushed by digest) under their digest.
    pub fn stage_bytes(&self, bytes: &[u8]) -> Result<String, RegistryError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let to = self.staged_path(&digest)?;
        let tmp = self.sessions_dir.join(format!(
            "manifest-{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &to))
            .map_err(|e| RegistryError::internal(anyhow::anyhow!("staging a manifest: {e}")))?;
        Ok(digest)
    }

    fn sweep_idle(&self) {
        let mut sessions = lock(&self.sessions);
        let idle: Vec<String> = sessions
            .iter()
            .filter(|(_, s)| s.written.is_some() && s.touched.elapsed() > IDLE)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            tracing::info!("registry: dropping upload {id}, idle for an hour");
            sessions.remove(&id);
            let _ = std::fs::remove_file(self.sessions_dir.join(&id));
        }
    }

    /// Removes staged blobs untouched for [`STAGED_FOR`].
    pub fn sweep_staged(&self) {
        let Ok(dir) = std::fs::read_dir(&self.blobs_dir) else {
            return;
        };
        for entry in dir.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STAGED_FOR);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Session `id`, which must belong to `repo`.
fn session<'a>(
    sessions: &'a mut HashMap<String, Session>,
    repo: &str,
    id: &str,
) -> Result<&'a mut Session, RegistryError> {
    match sessions.get_mut(id) {
        Some(s) if s.repo == repo => Ok(s),
        _ => Err(RegistryError::upload_unknown(format!(
            "no upload {id:?} in {repo}: start one with POST /v2/{repo}/blobs/uploads/"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl futures::Stream<Item = Result<Bytes, String>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    /// Chunks append in order and the digest decides: a wrong one stages nothing, a chunk that
    /// does not start at the end is refused, a broken-off chunk keeps what came whole.
    #[tokio::test]
    async fn chunks_append_resume_and_stage_only_under_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let up = Uploads::open(dir.path(), 1 << 20).unwrap();
        let id = up.start("app").unwrap();
        assert_eq!(
            up.append("app", &id, Some(0), chunks(&[b"hello "]))
                .await
                .unwrap(),
            6
        );
        let e = up
            .append("app", &id, Some(3), chunks(&[b"x"]))
            .await
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 416);
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"wor")),
            Err("reset".to_string()),
        ]);
        assert!(up.append("app", &id, None, broken).await.is_err());
        assert_eq!(up.status("app", &id).unwrap(), 9);
        assert!(
            up.status("other", &id).is_err(),
            "another repository's upload"
        );
        up.append("app", &id, Some(9), chunks(&[b"ld"]))
            .await
            .unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(b"hello world")));
        let wrong = format!("sha256:{}", hex::encode(Sha256::digest(b"other")));
        let id2 = up.start("app").unwrap();
        up.append("app", &id2, None, chunks(&[b"hello world"]))
            .await
            .unwrap();
        assert_eq!(
            up.finish("app", &id2, &wrong).await.unwrap_err().code,
            "DIGEST_INVALID"
        );
        assert_eq!(up.staged(&wrong), None);
        assert_eq!(up.finish("app", &id, &digest).await.unwrap(), 11);
        assert_eq!(up.staged(&digest), Some(11));
        assert_eq!(
            std::fs::read(up.staged_path(&digest).unwrap()).unwrap(),
            b"hello world"
        );
        assert_eq!(
            up.status("app", &id).unwrap_err().code,
            "BLOB_UPLOAD_UNKNOWN"
        );
        // the size bound
        let id3 = up.start("app").unwrap();
        let big: &'static [u8] = Box::leak(vec![0u8; (1 << 20) + 1].into_boxed_slice());
        let e = up
            .append("app", &id3, None, chunks(&[big]))
            .await
            .unwrap_err();
        assert_eq!(e.code, "SIZE_INVALID");
    }
}
