//! An OCI registry of the swarm's images (the distribution API, REFERENCE §7). Pulls: an image
//! CID `C` is the repository `ipfs/C` with the one tag `latest` (the naming of `nerdctl ipfs
//! registry serve`, §2.6), and every name pushed here (`team/app:1.0`) serves the image it names;
//! blobs come from the node, local store first and bitswap for the rest, as they are read.
//! Pushes: the spec's push flow ([`upload`] for blobs, [`push`] for manifests); an image pushed
//! by tag is converted as `cidfs image push` does, stored, pinned and named
//! ([`crate::image::names`]).
//!
//! - `GET|HEAD /v2/` → 200.
//! - `GET|HEAD /v2/<name>/manifests/<tag|digest>`, `…/blobs/<digest>` (single and multiple byte
//!   ranges, [`range`]), `GET …/tags/list`.
//! - `POST /v2/<name>/blobs/uploads/` (with `?digest=` and a body: one request; with
//!   `?mount=&from=`: a blob already here is not sent again), `PATCH|PUT|GET|DELETE
//!   …/blobs/uploads/<id>`, `PUT …/manifests/<tag|digest>`, `DELETE …/manifests/<tag>`.
//!
//! Every answer carries `Docker-Content-Digest` where a digest applies; errors are OCI error JSON
//! ([`error`]). `ipfs/` names take a CIDv1 in its canonical lowercase base32 form (repository
//! names are lowercase; CIDv0 is refused) and cannot be pushed to. Resolved images are kept in a
//! small in-memory map, so a pull resolves its image once.

mod error;
pub mod htpasswd;
pub mod push;
mod range;
pub mod upload;

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::any,
    Json, Router,
};
use cid::Cid;
use futures::{StreamExt as _, TryStreamExt as _};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::blockservice::BlockService;
use crate::cidref::is_tag;
use crate::image::oci::{self, Kind};
use crate::image::pull::{self, Found, ResolveError, Resolved};
use crate::metrics::RegistryCounters;
use crate::sync::lock;
pub use error::RegistryError;

/// Images kept resolved at most (then the map starts over).
const MAX_RESOLVED: usize = 64;
/// `Content-Type` of layer blobs (and anything that is not JSON).
const OCTET_STREAM: &str = "application/octet-stream";

/// The registry's state: the node, what it served, and (when it takes pushes) the push side.
pub struct Registry {
    blocks: BlockService,
    counters: Arc<RegistryCounters>,
    resolved: Mutex<HashMap<Cid, Arc<Resolved>>>,
    pushes: Option<push::Pushes>,
}

impl Registry {
    /// A registry that only serves pulls.
    pub fn new(blocks: BlockService, counters: Arc<RegistryCounters>) -> Arc<Registry> {
        Self::with_pushes(blocks, counters, None)
    }

    /// A registry that takes pushes too, when `pushes` is given.
    pub fn with_pushes(
        blocks: BlockService,
        counters: Arc<RegistryCounters>,
        pushes: Option<push::Pushes>,
    ) -> Arc<Registry> {
        Arc::new(Registry {
            blocks,
            counters,
            resolved: Mutex::default(),
            pushes,
        })
    }

    fn pushes(&self) -> Result<&push::Pushes, RegistryError> {
        self.pushes.as_ref().ok_or_else(|| {
            RegistryError::unsupported(
                "this registry takes no pushes (registry.push = false): images enter the swarm with `cidfs image push`",
            )
        })
    }

    /// The image `repo` names with `tag`.
    fn named(&self, repo: &str, tag: &str) -> Result<Cid, RegistryError> {
        let names = &self
            .pushes
            .as_ref()
            .ok_or_else(|| unknown_repo(repo))?
            .names;
        let internal = |e: crate::image::names::NamesError| RegistryError::internal(e.into());
        let image = crate::cidref::ImageRef::Named {
            repo: repo.to_string(),
            tag: tag.to_string(),
        };
        if let Some(cid) = names.cid_of(&image).map_err(internal)? {
            return Ok(cid);
        }
        if names.tags(repo).map_err(internal)?.is_empty() {
            return Err(unknown_repo(repo));
        }
        Err(RegistryError::manifest_unknown(format!(
            "{repo}:{tag} names no image here"
        )))
    }

    /// The images of `repo`: its one for `ipfs/<CID>`, every tag's for a pushed name.
    async fn images_of(&self, repo: &Repo) -> Result<Vec<Arc<Resolved>>, RegistryError> {
        match repo {
            Repo::Ipfs(cid) => Ok(vec![self.resolve(*cid).await?]),
            Repo::Named(name) => {
                let tags = self.tags(repo)?;
                let mut out = Vec::new();
                for tag in tags.iter().take(MAX_RESOLVED) {
                    out.push(self.resolve(self.named(name, tag)?).await?);
                }
                Ok(out)
            }
        }
    }

    fn tags(&self, repo: &Repo) -> Result<Vec<String>, RegistryError> {
        match repo {
            Repo::Ipfs(_) => Ok(vec!["latest".into()]),
            Repo::Named(name) => {
                let pushes = self.pushes.as_ref().ok_or_else(|| unknown_repo(name))?;
                let tags = pushes
                    .names
                    .tags(name)
                    .map_err(|e| RegistryError::internal(e.into()))?;
                if tags.is_empty() {
                    return Err(unknown_repo(name));
                }
                Ok(tags)
            }
        }
    }

    async fn resolve(&self, cid: Cid) -> Result<Arc<Resolved>, RegistryError> {
        let cached = lock(&self.resolved).get(&cid).cloned();
        if let Some(r) = cached {
            return Ok(r);
        }
        let r = Arc::new(pull::resolve(&self.blocks, cid, &[]).await.map_err(|e| match e {
            ResolveError::Unreachable(e) => RegistryError::unavailable(format!(
                "ipfs/{cid}: the image could not be fetched from the swarm in time, try again: {e:#}"
            )),
            ResolveError::NotAnImage(e) => {
                RegistryError::name_unknown(format!("ipfs/{cid} is not an image here: {e:#}"))
            }
        })?);
        let mut map = lock(&self.resolved);
        if map.len() >= MAX_RESOLVED {
            map.clear();
        }
        map.insert(cid, r.clone());
        Ok(r)
    }
}

fn unknown_repo(name: &str) -> RegistryError {
    RegistryError::name_unknown(format!(
        "repository {name:?} is unknown here: it serves ipfs/<CID> and the names pushed to it"
    ))
}

/// The registry's router.
pub fn router(reg: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(v2))
        .route("/v2/", any(v2))
        .route("/v2/token", axum::routing::get(token))
        .route("/v2/{*path}", any(dispatch))
        .fallback(|| async { RegistryError::name_unknown("not a registry path: use /v2/") })
        .layer(axum::middleware::from_fn_with_state(
            reg.clone(),
            count_request,
        ))
        .with_state(reg)
}

/// Counts every answered request by route, method and status (`cidfs_registry_requests_total`).
async fn count_request(
    State(reg): State<Arc<Registry>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let route = if path.trim_end_matches('/') == "/v2" {
        "ping"
    } else if path.contains("/blobs/uploads") {
        "upload"
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.ends_with("/tags/list") {
        "tags"
    } else {
        "other"
    };
    // a fixed set of labels keeps clients from minting new series
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    };
    let resp = next.run(req).await;
    reg.counters.request(route, method, resp.status().as_u16());
    resp
}

/// `GET /v2/`: 200, except where pushes need credentials and the caller brought none that may
/// push: then 401 with a token challenge ([`challenge`]), because docker sends credentials only
/// to a registry whose ping asks for them. Pulls stay anonymous: the token endpoint gives any
/// caller a pull token, and pulls are not checked.
async fn v2(State(reg): State<Arc<Registry>>, req: axum::extract::Request) -> Response {
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        if let Some(pushes) = reg.pushes.as_ref().filter(|p| p.auth.needs_credentials()) {
            let peer = peer_of(&req);
            let headers = req.headers();
            let refused = match headers.contains_key(axum::http::header::AUTHORIZATION) {
                true => pushes.auth.check(peer, headers).await.err(),
                false => Some(RegistryError::unauthorized(
                    "pulls need no credentials; pushes need them (docker login / --creds)",
                )),
            };
            if let Some(e) = refused.filter(|e| e.code == "UNAUTHORIZED") {
                return with_challenge(e.into_response(), headers, None);
            }
        }
        (
            [("Docker-Distribution-API-Version", "registry/2.0")],
            Json(serde_json::json!({})),
        )
            .into_response()
    } else {
        RegistryError::unsupported(format!("{method} /v2/ means nothing")).into_response()
    }
}

/// A repository: an image by CID, or a name pushed here.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Repo {
    Ipfs(Cid),
    Named(String),
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repo::Ipfs(cid) => write!(f, "ipfs/{cid}"),
            Repo::Named(n) => f.write_str(n),
        }
    }
}

/// What a `/v2/…` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Manifest {
        repo: Repo,
        reference: String,
    },
    Blob {
        repo: Repo,
        digest: String,
    },
    Tags {
        repo: Repo,
    },
    /// `…/blobs/uploads/`: start an upload.
    Uploads {
        repo: Repo,
    },
    /// `…/blobs/uploads/<id>`.
    Upload {
        repo: Repo,
        id: String,
    },
}

/// Parses the part of the path after `/v2/`.
fn parse(path: &str) -> Result<Request, RegistryError> {
    // the one path that ends in a slash
    let (path, start_upload) = match path.strip_suffix("/blobs/uploads/") {
        Some(name) => (name, true),
        None => (path, false),
    };
    let parts: Vec<&str> = path.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(RegistryError::name_invalid(format!(
            "{path:?}: empty, `.` or `..` path segments are not allowed"
        )));
    }
    if start_upload {
        return Ok(Request::Uploads {
            repo: repo_of(&parts)?,
        });
    }
    if let [name @ .., "blobs", "uploads", id] = parts.as_slice() {
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.len() != 32 {
            return Err(RegistryError::upload_unknown(format!(
                "{id:?} is not an upload"
            )));
        }
        return Ok(Request::Upload {
            repo: repo_of(name)?,
            id: id.to_string(),
        });
    }
    let (name, rest) = match parts.as_slice() {
        [name @ .., kind, last] if !name.is_empty() => (name, (*kind, *last)),
        _ => {
            return Err(RegistryError::name_unknown(format!(
                "{path:?}: not a registry path"
            )))
        }
    };
    let repo = repo_of(name)?;
    match rest {
        ("manifests", reference) => Ok(Request::Manifest {
            repo,
            reference: reference.to_string(),
        }),
        ("blobs", digest) => Ok(Request::Blob {
            repo,
            digest: check_digest(digest)?.to_string(),
        }),
        ("tags", "list") => Ok(Request::Tags { repo }),
        _ => Err(RegistryError::name_unknown(format!(
            "{path:?}: not a registry path (manifests, blobs, blobs/uploads or tags/list)"
        ))),
    }
}

/// The repository a name's segments make: `ipfs/<CID>`, or a name in the spec's grammar
/// (lowercase components of letters and digits joined by `.`, `_`, `__` or dashes).
fn repo_of(name: &[&str]) -> Result<Repo, RegistryError> {
    match name {
        ["ipfs", cid] => return Ok(Repo::Ipfs(parse_cid(cid)?)),
        ["ipfs", ..] => {
            return Err(RegistryError::name_invalid(
                "ipfs/ names an image by its CID alone (ipfs/<CID>)",
            ))
        }
        _ => {}
    }
    let joined = name.join("/");
    if !crate::cidref::is_repository(&joined) {
        return Err(RegistryError::name_invalid(format!(
            "{joined:?} is not a repository name: lowercase letters and digits, parts joined by ., _, __ or -, at most {} characters",
            crate::cidref::MAX_REPOSITORY
        )));
    }
    Ok(Repo::Named(joined))
}

/// A repository name's CID: CIDv1 in canonical lowercase base32, as `cidfs image push` prints it.
fn parse_cid(s: &str) -> Result<Cid, RegistryError> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(RegistryError::name_invalid(format!(
            "{s:?}: repository names are lowercase; write the CID as CIDv1 in base32 (bafk…)"
        )));
    }
    let cid = Cid::try_from(s)
        .map_err(|e| RegistryError::name_invalid(format!("{s:?} is not a CID: {e}")))?;
    if cid.version() == cid::Version::V0 || cid.to_string() != s {
        return Err(RegistryError::name_invalid(format!(
            "{s:?}: write the CID as CIDv1 in base32 ({})",
            cid.into_v1().map(|c| c.to_string()).unwrap_or_default()
        )));
    }
    Ok(cid)
}

/// `sha256:` and 64 lowercase hex digits.
fn check_digest(d: &str) -> Result<&str, RegistryError> {
    match d.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(d)
        }
        _ => Err(RegistryError::digest_invalid(format!(
            "{d:?} is not a digest (sha256: and 64 lowercase hex digits)"
        ))),
    }
}

async fn dispatch(
    State(reg): State<Arc<Registry>>,
    Path(path): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let peer = peer_of(&req);
    let (parts, body) = req.into_parts();
    let call = Call {
        method: &parts.method,
        headers: &parts.headers,
        query: parts.uri.query().unwrap_or(""),
        peer,
    };
    match serve(&reg, &path, &call, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(
                "registry {} /v2/{path}: {} {}",
                parts.method,
                e.code,
                e.message
            );
            let unauthorized = e.code == "UNAUTHORIZED";
            let r = e.into_response();
            match unauthorized {
                true => {
                    let repo = ["/blobs/", "/manifests/", "/tags/"]
                        .iter()
                        .filter_map(|m| path.find(m))
                        .min()
                        .map_or(path.as_str(), |i| &path[..i]);
                    let scope = format!("repository:{repo}:pull,push");
                    with_challenge(r, &parts.headers, Some(&scope))
                }
                false => r,
            }
        }
    }
}

/// The caller's address.
fn peer_of(req: &axum::extract::Request) -> Option<std::net::SocketAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
}

/// The challenge of a 401 where pushes need credentials: docker's token auth, the token
/// endpoint on this registry as the caller reached it (`Host`, kept to host and port
/// characters), for `scope`.
fn challenge(headers: &axum::http::HeaderMap, scope: Option<&str>) -> Option<HeaderValue> {
    let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
    let plain = |b: u8| b.is_ascii_alphanumeric() || b".-:[]".contains(&b);
    if host.is_empty() || host.len() > 255 || !host.bytes().all(plain) {
        return None;
    }
    let mut v = format!("Bearer realm=\"http://{host}/v2/token\",service=\"cidfs\"");
    if let Some(s) = scope {
        v.push_str(&format!(",scope=\"{s}\""));
    }
    HeaderValue::from_str(&v).ok()
}

/// `r` with the token challenge instead of the plain `Basic` one, when there is one.
fn with_challenge(
    mut r: Response,
    headers: &axum::http::HeaderMap,
    scope: Option<&str>,
) -> Response {
    if let Some(c) = challenge(headers, scope) {
        r.headers_mut()
            .insert(axum::http::header::WWW_AUTHENTICATE, c);
    }
    r
}

/// `GET /v2/token?service=…&scope=repository:NAME:pull,push`: docker's token endpoint. A push
/// scope (or none: a `docker login`) needs credentials that may push and gets a push token
/// for [`TOKEN_LIFETIME`](push::TOKEN_LIFETIME); anything else gets the anonymous pull token.
async fn token(State(reg): State<Arc<Registry>>, req: axum::extract::Request) -> Response {
    let Ok(pushes) = reg.pushes() else {
        return Json(serde_json::json!({ "token": push::ANONYMOUS_TOKEN })).into_response();
    };
    let query = req.uri().query().unwrap_or("");
    let scopes: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .take(16)
        .collect();
    let wants_push = scopes.is_empty()
        || scopes.iter().any(|s| {
            s.rsplit(':')
                .next()
                .is_some_and(|a| a.split(',').any(|x| x == "push" || x == "*"))
        });
    match pushes
        .auth
        .issue(peer_of(&req), req.headers(), wants_push)
        .await
    {
        Ok(t) => {
            let expires = push::TOKEN_LIFETIME.as_secs();
            Json(serde_json::json!({
                "token": t,
                "access_token": t,
                "expires_in": expires,
            }))
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// One request, but its path and body.
struct Call<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    query: &'a str,
    peer: Option<std::net::SocketAddr>,
}

impl Call<'_> {
    fn query(&self, key: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }
}

async fn serve(
    reg: &Registry,
    path: &str,
    call: &Call<'_>,
    body: Body,
) -> Result<Response, RegistryError> {
    let request = parse(path)?;
    let method = call.method;
    let read = method == Method::GET || method == Method::HEAD;
    let head = method == Method::HEAD;
    let is_upload = matches!(request, Request::Uploads { .. } | Request::Upload { .. });
    if !read || is_upload {
        reg.pushes()?.auth.check(call.peer, call.headers).await?;
    }
    match request {
        Request::Tags { repo } if read => {
            if let Repo::Ipfs(cid) = repo {
                reg.resolve(cid).await?;
            }
            let tags = reg.tags(&repo)?;
            Ok(Json(serde_json::json!({ "name": repo.to_string(), "tags": tags })).into_response())
        }
        Request::Manifest { repo, reference } if read => {
            get_manifest(reg, &repo, &reference, head).await
        }
        Request::Blob { repo, digest } if read => get_blob(reg, &repo, &digest, call, head).await,
        Request::Manifest { repo, reference } if *method == Method::PUT => {
            let name = pushable(&repo)?;
            let content_type = call
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if !reference.starts_with("sha256:") && !is_tag(&reference) {
                return Err(RegistryError::manifest_invalid(format!(
                    "{reference:?} is neither a tag nor a digest"
                )));
            }
            let bytes = axum::body::to_bytes(body, push::MAX_MANIFEST)
                .await
                .map_err(|e| {
                    RegistryError::manifest_invalid(format!(
                        "the manifest could not be read whole (at most {} bytes): {e}",
                        push::MAX_MANIFEST
                    ))
                })?;
            let put = reg
                .pushes()?
                .put_manifest(&reg.blocks, name, &reference, &content_type, bytes)
                .await?;
            let mut h = HeaderMap::new();
            set(
                &mut h,
                header::LOCATION,
                &format!("/v2/{name}/manifests/{}", put.digest),
            );
            set(&mut h, DIGEST_HEADER, &put.digest);
            if let Some(named) = &put.image {
                set(&mut h, "x-cidfs-image", &named.cid);
            }
            Ok((StatusCode::CREATED, h).into_response())
        }
        Request::Manifest { repo, reference } if *method == Method::DELETE => {
            let name = pushable(&repo)?;
            if !is_tag(&reference) {
                return Err(RegistryError::unsupported(
                    "only tags are deleted here: DELETE …/manifests/<tag>",
                ));
            }
            let removed = reg
                .pushes()?
                .names
                .remove(name, &reference)
                .map_err(|e| RegistryError::internal(e.into()))?;
            if removed.is_none() {
                return Err(RegistryError::manifest_unknown(format!(
                    "{name}:{reference} names nothing"
                )));
            }
            tracing::info!("registry: {name}:{reference} removed");
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Request::Uploads { repo } if *method == Method::POST => {
            start_upload(reg, pushable(&repo)?, call, body).await
        }
        Request::Upload { repo, id } => upload(reg, pushable(&repo)?, &id, call, body).await,
        _ => Err(RegistryError::unsupported(format!(
            "{method} is not supported on /v2/{path}"
        ))),
    }
}

/// The name a push may go to: not `ipfs/<CID>`.
fn pushable(repo: &Repo) -> Result<&str, RegistryError> {
    match repo {
        Repo::Named(n) => Ok(n),
        Repo::Ipfs(_) => Err(RegistryError::name_denied(
            "ipfs/<CID> names an image by its content and cannot be pushed to: push to a name",
        )),
    }
}

const DIGEST_HEADER: &str = "docker-content-digest";

fn set(h: &mut HeaderMap, k: impl header::IntoHeaderName, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(k, v);
    }
}

/// `201 Created` for blob `digest` of `name`.
fn blob_created(name: &str, digest: &str) -> Response {
    let mut h = HeaderMap::new();
    set(
        &mut h,
        header::LOCATION,
        &format!("/v2/{name}/blobs/{digest}"),
    );
    set(&mut h, DIGEST_HEADER, digest);
    set(&mut h, header::CONTENT_LENGTH, "0");
    (StatusCode::CREATED, h).into_response()
}

/// An upload's state: `status` with its `Location` and the `Range` it holds.
fn upload_state(status: StatusCode, name: &str, id: &str, len: u64) -> Response {
    let mut h = HeaderMap::new();
    set(
        &mut h,
        header::LOCATION,
        &format!("/v2/{name}/blobs/uploads/{id}"),
    );
    set(
        &mut h,
        header::RANGE,
        &format!("0-{}", len.saturating_sub(1)),
    );
    set(&mut h, "docker-upload-uuid", id);
    set(&mut h, header::CONTENT_LENGTH, "0");
    (status, h).into_response()
}

/// `POST …/blobs/uploads/`: a blob already here (`?mount=`), a whole blob (`?digest=`), or a
/// session.
async fn start_upload(
    reg: &Registry,
    name: &str,
    call: &Call<'_>,
    body: Body,
) -> Result<Response, RegistryError> {
    let uploads = &reg.pushes()?.uploads;
    if let Some(mount) = call.query("mount") {
        let mount = check_digest(&mount)?;
        if uploads.staged(mount).is_some() {
            return Ok(blob_created(name, mount));
        }
    }
    let id = uploads.start(name)?;
    let Some(digest) = call.query("digest") else {
        return Ok(upload_state(StatusCode::ACCEPTED, name, &id, 0));
    };
    let whole = async {
        let digest = check_digest(&digest)?;
        uploads
            .append(name, &id, Some(0), body.into_data_stream())
            .await?;
        uploads.finish(name, &id, digest).await
    };
    match whole.await {
        Ok(_) => Ok(blob_created(name, &digest)),
        Err(e) => {
            let _ = uploads.cancel(name, &id);
            Err(e)
        }
    }
}

/// `PATCH|PUT|GET|DELETE …/blobs/uploads/<id>`.
async fn upload(
    reg: &Registry,
    name: &str,
    id: &str,
    call: &Call<'_>,
    body: Body,
) -> Result<Response, RegistryError> {
    let uploads = &reg.pushes()?.uploads;
    match *call.method {
        Method::PATCH => {
            let start = match call.headers.get(header::CONTENT_RANGE) {
                None => None,
                Some(v) => Some(content_range_start(v.to_str().unwrap_or(""))?),
            };
            let len = uploads
                .append(name, id, start, body.into_data_stream())
                .await?;
            Ok(upload_state(StatusCode::ACCEPTED, name, id, len))
        }
        Method::PUT => {
            let digest = call
                .query("digest")
                .ok_or_else(|| RegistryError::digest_invalid("PUT of an upload needs ?digest="))?;
            let digest = check_digest(&digest)?.to_string();
            uploads
                .append(name, id, None, body.into_data_stream())
                .await?;
            uploads.finish(name, id, &digest).await?;
            Ok(blob_created(name, &digest))
        }
        Method::GET => {
            let len = uploads.status(name, id)?;
            Ok(upload_state(StatusCode::NO_CONTENT, name, id, len))
        }
        Method::DELETE => {
            uploads.cancel(name, id)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ref m => Err(RegistryError::unsupported(format!(
            "{m} is not supported on an upload"
        ))),
    }
}

/// The first byte of a chunk's `Content-Range` (`<start>-<end>`, or `bytes <start>-<end>`).
fn content_range_start(v: &str) -> Result<u64, RegistryError> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes ")
        .or(v.strip_prefix("bytes="))
        .unwrap_or(v);
    v.split_once('-')
        .and_then(|(a, _)| a.trim().parse().ok())
        .ok_or_else(|| {
            RegistryError::upload_invalid(format!("Content-Range {v:?} is not <start>-<end>"))
        })
}

/// `GET|HEAD …/manifests/<reference>`.
async fn get_manifest(
    reg: &Registry,
    repo: &Repo,
    reference: &str,
    head: bool,
) -> Result<Response, RegistryError> {
    if reference.starts_with("sha256:") {
        let digest = check_digest(reference)?;
        for img in reg.images_of(repo).await? {
            let found = img
                .find(digest)
                .filter(|f| matches!(f.kind, Kind::Index | Kind::Manifest));
            if let Some(found) = found {
                reg.count(&found, head, 0);
                return Ok(json_blob(&found, None, head));
            }
        }
        // a manifest pushed by digest, not converted yet (a client checks before it pushes)
        if let (Repo::Named(_), Some(p)) = (repo, &reg.pushes) {
            if let Some(r) = staged_manifest(&p.uploads, digest, head).await {
                return Ok(r);
            }
        }
        return Err(RegistryError::manifest_unknown(format!(
            "{repo} has no manifest {digest}"
        )));
    }
    if !is_tag(reference) {
        return Err(RegistryError::manifest_unknown(format!(
            "{reference:?} is neither a tag nor a digest"
        )));
    }
    let cid = match repo {
        Repo::Ipfs(cid) if reference == "latest" => *cid,
        Repo::Ipfs(cid) => {
            return Err(RegistryError::manifest_unknown(format!(
                "ipfs/{cid} has no manifest {reference:?} (its one tag is latest)"
            )))
        }
        Repo::Named(name) => reg.named(name, reference)?,
    };
    let img = reg.resolve(cid).await?;
    let found = img.top();
    reg.count(&found, head, 0);
    let mut r = json_blob(&found, None, head);
    // which image a name stands for, as the push answered
    set(r.headers_mut(), "x-cidfs-image", &cid.to_string());
    Ok(r)
}

/// A staged manifest, with the media type its JSON names.
async fn staged_manifest(uploads: &upload::Uploads, digest: &str, head: bool) -> Option<Response> {
    uploads.staged(digest)?;
    let path = uploads.staged_path(digest).ok()?;
    let bytes = tokio::fs::read(path).await.ok()?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
    let h = headers(digest, &media_type, bytes.len() as u64);
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    Some(response(StatusCode::OK, h, body))
}

/// `GET|HEAD …/blobs/<digest>`: a blob staged by a push, or one of the repository's images.
async fn get_blob(
    reg: &Registry,
    repo: &Repo,
    digest: &str,
    call: &Call<'_>,
    head: bool,
) -> Result<Response, RegistryError> {
    if let (Repo::Named(_), Some(p)) = (repo, &reg.pushes) {
        if let Some(size) = p.uploads.staged(digest) {
            let ranges = range::requested(call.headers, size)?;
            let path = p.uploads.staged_path(digest)?;
            let mut desc = oci::Descriptor::of(OCTET_STREAM, &[]);
            desc.digest = digest.to_string();
            desc.size = size as i64;
            let read = move |start: u64, len: u64| read_file(path.clone(), start, len).boxed();
            return Ok(range::respond(&desc, OCTET_STREAM, ranges, head, read).0);
        }
    }
    for img in reg.images_of(repo).await? {
        let Some(found) = img.find(digest) else {
            continue;
        };
        let size = u64::try_from(found.desc.size).unwrap_or(0);
        let ranges = range::requested(call.headers, size)?;
        if found.bytes.is_some() {
            reg.count(&found, head, 0);
            return Ok(json_blob(&found, ranges, head));
        }
        let layer = found
            .desc
            .cid()
            .map_err(|e| RegistryError::internal(anyhow::anyhow!(e)))?;
        let blocks = reg.blocks.clone();
        let read = move |start: u64, len: u64| {
            let getter = blocks.getter_for(layer, start, Some(len), Some(size));
            crate::unixfs::io::cat(&blocks, getter, layer, start, Some(len))
                .map(|r| r.map_err(|e| std::io::Error::other(format!("{e:#}"))))
                .boxed()
        };
        let resp = range::respond(found.desc, OCTET_STREAM, ranges, head, read);
        reg.count(&found, head, resp.1);
        return Ok(resp.0);
    }
    Err(RegistryError::blob_unknown(format!(
        "{repo} has no blob {digest}"
    )))
}

/// `len` bytes of the file at `path` from `start`, as a stream.
fn read_file(
    path: PathBuf,
    start: u64,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    futures::stream::once(async move {
        let mut f = tokio::fs::File::open(&path).await?;
        f.seek(std::io::SeekFrom::Start(start)).await?;
        std::io::Result::Ok(tokio_util::io::ReaderStream::new(f.take(len)))
    })
    .try_flatten()
}

impl Registry {
    fn count(&self, found: &Found<'_>, head: bool, bytes: u64) {
        if head {
            return;
        }
        let c = &self.counters;
        let counter = match found.kind {
            Kind::Index | Kind::Manifest => &c.manifests,
            Kind::Config => &c.configs,
            Kind::Layer { .. } => {
                c.layer_bytes.fetch_add(bytes, Ordering::Relaxed);
                &c.layers
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A JSON blob (index, manifest, config) from the bytes resolving verified.
fn json_blob(
    found: &Found<'_>,
    ranges: Option<Vec<std::ops::RangeInclusive<u64>>>,
    head: bool,
) -> Response {
    let bytes = bytes::Bytes::copy_from_slice(found.bytes.unwrap_or_default());
    let read = move |start: u64, len: u64| {
        let piece = bytes.slice(start as usize..(start + len) as usize);
        futures::stream::once(async move { Ok(piece) }).boxed()
    };
    range::respond(found.desc, &found.desc.media_type, ranges, head, read).0
}

/// Builds a response's common headers.
fn headers(desc_digest: &str, content_type: &str, len: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(header::CONTENT_TYPE, content_type);
    set(header::CONTENT_LENGTH, &len.to_string());
    set(
        header::HeaderName::from_static("docker-content-digest"),
        desc_digest,
    );
    set(header::ETAG, &format!("\"{desc_digest}\""));
    set(header::ACCEPT_RANGES, "bytes");
    h
}

/// A 200/206 response with `headers` and `body` (empty for HEAD).
fn response(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

#[cfg(test)]
mod tests;

/// Fuzz entry (`fuzz/`, feature `fuzzing`): the first line is a path after `/v2/`, the second
/// a `Range` header, the rest picks a blob size; each is parsed as a request would be.
#[cfg(feature = "fuzzing")]
pub fn fuzz_request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let _ = parse(lines.next().unwrap_or(""));
    if let Ok(v) = axum::http::HeaderValue::from_str(lines.next().unwrap_or("")) {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::RANGE, v);
        let size = lines.next().map_or(0, |s| s.len() as u64 * 4099);
        let _ = range::requested(&h, size);
    }
}
