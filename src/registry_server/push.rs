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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq as _;

use super::error::RegistryError;
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
/// configured credential. Requests from web pages (`Origin`, `Sec-Fetch-Site`) never.
pub struct PushAuth {
    /// The `Authorization` header values that may push.
    headers: Vec<String>,
}

impl PushAuth {
    pub fn new(config: &RegistryConfig) -> Self {
        PushAuth {
            headers: config
                .pushers
                .values()
                .filter_map(|p| AuthSecret::parse(&p.auth_secret))
                .map(|s| s.header())
                .collect(),
        }
    }

    /// Why a write from `peer` with `headers` is refused, if it is.
    pub fn check(
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
        if self.headers.is_empty() {
            return match peer {
                Some(p) if p.ip().is_loopback() => Ok(()),
                _ => Err(RegistryError::name_denied(
                    "pushes from other hosts need credentials: add [registry.pushers.NAME] to the node's config",
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
        if ok {
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
    pub fn open(root: &Path, names: Names, config: &RegistryConfig) -> std::io::Result<Pushes> {
        let work = root.join("work");
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        std::fs::create_dir_all(&work)?;
        Ok(Pushes {
            uploads: Uploads::open(root, config.max_blob_mb.saturating_mul(1 << 20))?,
            names,
            auth: PushAuth::new(config),
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
            platforms: Vec::new(),
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
