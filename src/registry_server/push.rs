//! What a push changes: who may push ([`PushAuth`]), and a pushed manifest ([`Pushes::put_manifest`]).
//!
//! A manifest or index is checked (media type, JSON, every blob or manifest it names already
//! pushed, with its size) and staged under its digest. Pushed by tag, the image it tops is then
//! converted and stored as `cidfs image push` does (eStargz with `toc.digest`, `ipfs://` URLs,
//! an index CID) from the staged blobs, laid out as an OCI layout, and pinned in one batch; only
//! then does the tag name it, so a node killed mid-push publishes nothing. One conversion runs at
//! a time.

use axum::http::{header, HeaderMap};
use bytes::Bytes;
use cid::Cid;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq as _;

use super::error::RegistryError;
use super::htpasswd::Htpasswd;
use super::upload::Uploads;
use crate::blockservice::BlockService;
use crate::config::{AuthSecret, RegistryConfig};
use crate::image::estargz::build::BuildOptions;
use crate::image::names::{Named, Names};
use crate::image::oci::{self, Descriptor, Kind};
use crate::image::push::PushOptions;

/// Largest manifest or index a push may send.
pub const MAX_MANIFEST: usize = 4 << 20;

/// Who may push: loopback callers when no pusher is configured, else the holders of a
/// configured credential (`[registry.pushers.NAME]`, or a user of `registry.htpasswd`).
/// Requests from web pages (`Origin`, `Sec-Fetch-Site`) never.
pub struct PushAuth {
    /// The `Authorization` header values that may push.
    headers: Vec<String>,
    htpasswd: Option<Arc<Htpasswd>>,
    /// Hashes of the (user, password, bcrypt hash) that verified: clients send their
    /// credentials with every request of a push, and a bcrypt costs tens of milliseconds.
    verified: std::sync::Mutex<HashSet<[u8; 32]>>,
    /// bcrypts at once (each on a blocking thread), so wrong passwords cannot take every core.
    bcrypts: Arc<tokio::sync::Semaphore>,
    /// Push tokens handed out by the token endpoint ([`Self::issue`]), with when they expire.
    tokens: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long a push token lasts (a push that outlasts it asks for another on the 401).
pub const TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);
/// Push tokens valid at once.
const MAX_TOKENS: usize = 4096;
/// The token given for pulls (which check nothing).
pub const ANONYMOUS_TOKEN: &str = "anonymous";

/// Good answers remembered.
const MAX_VERIFIED: usize = 1024;
/// bcrypts run at once.
const BCRYPTS: usize = 2;

impl PushAuth {
    pub fn new(config: &RegistryConfig, htpasswd: Option<Htpasswd>) -> Self {
        PushAuth {
            headers: config
                .pushers
                .values()
                .filter_map(|p| AuthSecret::parse(&p.auth_secret))
                .map(|s| s.header())
                .collect(),
            htpasswd: htpasswd.filter(|h| !h.is_empty()).map(Arc::new),
            verified: Default::default(),
            bcrypts: Arc::new(tokio::sync::Semaphore::new(BCRYPTS)),
            tokens: Default::default(),
        }
    }

    /// The token endpoint (docker's token auth, which lets clients pull anonymously and push
    /// with credentials): credentials that may push get a push token; none get the anonymous
    /// pull token ([`ANONYMOUS_TOKEN`]) unless `push` access (or a login, `scope` absent) was
    /// asked for.
    pub async fn issue(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
        wants_push: bool,
    ) -> Result<String, RegistryError> {
        let presented = headers.contains_key(header::AUTHORIZATION);
        if !presented && !wants_push {
            return Ok(ANONYMOUS_TOKEN.into());
        }
        self.check(peer, headers).await?;
        let token = hex::encode(rand::random::<[u8; 32]>());
        let now = std::time::Instant::now();
        let mut tokens = crate::sync::lock(&self.tokens);
        tokens.retain(|_, until| *until > now);
        if tokens.len() >= MAX_TOKENS {
            return Err(RegistryError::too_many(
                "too many push tokens are in use; try again later",
            ));
        }
        tokens.insert(token.clone(), now + TOKEN_LIFETIME);
        Ok(token)
    }

    /// Whether `presented` is `Bearer` with a push token this endpoint issued, still valid.
    fn issued(&self, presented: &str) -> bool {
        let Some(t) = presented.strip_prefix("Bearer ") else {
            return false;
        };
        crate::sync::lock(&self.tokens)
            .get(t.trim())
            .is_some_and(|until| *until > std::time::Instant::now())
    }

    /// Whether pushes need credentials (some are configured).
    pub fn needs_credentials(&self) -> bool {
        !self.headers.is_empty() || self.htpasswd.is_some()
    }

    /// Why a write from `peer` with `headers` is refused, if it is.
    pub async fn check(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<(), RegistryError> {
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if headers.contains_key(header::ORIGIN) || site.is_some_and(|s| s != "none") {
            return Err(RegistryError::name_denied(
                "pushes from web pages are refused",
            ));
        }
        if !self.needs_credentials() {
            return match peer {
                Some(p) if p.ip().is_loopback() => Ok(()),
                _ => Err(RegistryError::name_denied(
                    "pushes from other hosts need credentials: add [registry.pushers.NAME] or registry.htpasswd to the node's config",
                )),
            };
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // every credential is compared, so the time taken does not say which one nearly matched
        let mut ok = false;
        for h in &self.headers {
            ok |= bool::from(presented.as_bytes().ct_eq(h.as_bytes()));
        }
        if ok || self.issued(presented) || self.htpasswd_allows(presented).await {
            Ok(())
        } else if presented.is_empty() {
            Err(RegistryError::unauthorized(
                "pushing needs credentials (docker login / --creds)",
            ))
        } else {
            Err(RegistryError::unauthorized(
                "these credentials may not push here",
            ))
        }
    }

    /// Whether `presented` is `Basic` credentials of a user of the htpasswd file.
    async fn htpasswd_allows(&self, presented: &str) -> bool {
        use base64::Engine as _;
        use sha2::{Digest as _, Sha256};
        let Some(file) = &self.htpasswd else {
            return false;
        };
        let Some(encoded) = presented.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Some((user, password)) = std::str::from_utf8(&decoded)
            .ok()
            .and_then(|t| t.split_once(':'))
        else {
            return false;
        };
        let Some(hash) = file.hash_of(user) else {
            return false;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user)
            .chain_update([0])
            .chain_update(password)
            .chain_update([0])
            .chain_update(hash)
            .finalize()
            .into();
        if crate::sync::lock(&self.verified).contains(&key) {
            return true;
        }
        let Ok(_turn) = self.bcrypts.clone().acquire_owned().await else {
            return false;
        };
        let (file, user, password) = (file.clone(), user.to_string(), password.to_string());
        let good = tokio::task::spawn_blocking(move || file.verify(&user, &password))
            .await
            .unwrap_or(false);
        if good {
            let mut v = crate::sync::lock(&self.verified);
            if v.len() >= MAX_VERIFIED {
                v.clear();
            }
            v.insert(key);
        }
        good
    }
}

/// The push side of the registry.
pub struct Pushes {
    pub uploads: Uploads,
    pub names: Names,
    pub auth: PushAuth,
    /// Conversion work directories go here.
    work: PathBuf,
    /// One conversion at a time.
    converting: tokio::sync::Semaphore,
}

/// What a manifest `PUT` did.
pub struct Put {
    /// The digest of what the client sent.
    pub digest: String,
    /// The stored image, when pushed by tag.
    pub image: Option<Named>,
}

impl Pushes {
    /// The push side over `<root>` (`<repo>/pushes`) and the name table `names`.
    pub fn open(
        root: &Path,
        names: Names,
        config: &RegistryConfig,
        htpasswd: Option<Htpasswd>,
    ) -> std::io::Result<Pushes> {
        let work = root.join("work");
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        std::fs::create_dir_all(&work)?;
        Ok(Pushes {
            uploads: Uploads::open(root, config.max_blob_mb.saturating_mul(1 << 20))?,
            names,
            auth: PushAuth::new(config, htpasswd),
            work,
            converting: tokio::sync::Semaphore::new(1),
        })
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `body` of `content_type`.
    pub async fn put_manifest(
        &self,
        blocks: &BlockService,
        repo: &str,
        reference: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Put, RegistryError> {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        let kind = match oci::classify(media_type) {
            Ok((_, k @ (Kind::Manifest | Kind::Index))) => k,
            _ => {
                return Err(RegistryError::manifest_invalid(format!(
                    "Content-Type {content_type:?} is not an OCI or Docker manifest or index"
                )))
            }
        };
        let top = Descriptor::of(media_type, &body);
        let digest = top.digest.clone();
        if reference.starts_with("sha256:") && reference != digest {
            return Err(RegistryError::digest_invalid(format!(
                "the manifest hashes to {digest}, not {reference}"
            )));
        }
        for d in named_by(kind, &body)? {
            match self.uploads.staged(&d.digest) {
                Some(size) if i64::try_from(size) == Ok(d.size) => {}
                Some(size) => {
                    return Err(RegistryError::manifest_blob_unknown(format!(
                        "{} was pushed with {size} bytes, the manifest says {}",
                        d.digest, d.size
                    )))
                }
                None => {
                    return Err(RegistryError::manifest_blob_unknown(format!(
                        "{} ({}) was not pushed to this node: push it first",
                        d.digest, d.media_type
                    )))
                }
            }
        }
        self.uploads.stage_bytes(&body)?;
        if reference.starts_with("sha256:") {
            return Ok(Put {
                digest,
                image: None,
            });
        }
        tracing::info!("registry: converting {repo}:{reference} ({digest})");
        let root = self.convert(blocks, &top).await?;
        let named = self
            .names
            .set(repo, reference, root, &digest)
            .map_err(|e| RegistryError::internal(e.into()))?;
        tracing::info!("registry: {repo}:{reference} is now {root} (pushed {digest})");
        Ok(Put {
            digest,
            image: Some(named),
        })
    }

    /// Converts and stores the image topped by `top` (staged) as `cidfs image push` does; its CID.
    async fn convert(&self, blocks: &BlockService, top: &Descriptor) -> Result<Cid, RegistryError> {
        let _turn = self
            .converting
            .acquire()
            .await
            .map_err(|e| RegistryError::internal(e.into()))?;
        let internal = |e: std::io::Error| RegistryError::internal(anyhow::anyhow!("{e}"));
        let dir = tempfile::tempdir_in(&self.work).map_err(internal)?;
        let index = oci::Index::new(vec![top.clone()]);
        let layout = [
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (
                "index.json",
                serde_json::to_vec(&index).map_err(|e| RegistryError::internal(e.into()))?,
            ),
        ];
        for (name, bytes) in layout {
            std::fs::write(dir.path().join(name), bytes).map_err(internal)?;
        }
        std::os::unix::fs::symlink(
            self.uploads.layout_root().join("blobs"),
            dir.path().join("blobs"),
        )
        .map_err(internal)?;
        let src = crate::image::location::Source::Oci {
            dir: dir.path().to_path_buf(),
            tag: None,
        };
        let opts = PushOptions {
            estargz: Some(BuildOptions::default()),
            ..PushOptions::default()
        };
        let pushed = async {
            let source =
                crate::image::source::Source::open(&src, &Default::default(), dir.path()).await?;
            crate::image::push::push(
                &source,
                blocks,
                &opts,
                dir.path(),
                &crate::image::progress::Silent,
            )
            .await
        }
        .await
        .map_err(|e| {
            // a failing store is the node's fault; anything else is the image's
            if e.chain().any(|c| c.is::<crate::blockstore::Error>()) {
                RegistryError::internal(e)
            } else {
                RegistryError::manifest_invalid(format!("the image cannot be stored: {e:#}"))
            }
        })?;
        Ok(pushed.root)
    }
}

/// The blobs (for a manifest) or manifests (for an index) that `body` names.
fn named_by(kind: Kind, body: &[u8]) -> Result<Vec<Descriptor>, RegistryError> {
    let bad = |e: serde_json::Error| RegistryError::manifest_invalid(format!("bad JSON: {e}"));
    Ok(match kind {
        Kind::Index => {
            let index: oci::Index = serde_json::from_slice(body).map_err(bad)?;
            index.manifests
        }
        _ => {
            let m: oci::Manifest = serde_json::from_slice(body).map_err(bad)?;
            std::iter::once(m.config).chain(m.layers).collect()
        }
    })
}
