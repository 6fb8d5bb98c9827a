//! A read-only OCI registry of the swarm's images (the pull subset of the distribution API,
//! REFERENCE §7, in the naming of `nerdctl ipfs registry serve`, §2.6): an image CID `C` is the
//! repository `ipfs/C` with the one tag `latest`, so `podman pull 127.0.0.1:5050/ipfs/C`, `docker
//! pull`, `skopeo copy docker://…` and containerd work unchanged. Blobs come from the node, local
//! store first and bitswap for the rest, as they are read.
//!
//! - `GET|HEAD /v2/` → 200.
//! - `GET|HEAD /v2/ipfs/<CID>/manifests/<latest|digest>` → the index (or lone manifest) for
//!   `latest`, or the index/manifest with that digest.
//! - `GET|HEAD /v2/ipfs/<CID>/blobs/<digest>` → any blob of the image, with single and multiple
//!   byte ranges ([`range`]).
//! - `GET /v2/ipfs/<CID>/tags/list` → `latest`.
//!
//! Every answer carries `Docker-Content-Digest` and `Content-Length`; errors are OCI error JSON
//! ([`error`]); other methods get 405 `UNSUPPORTED`. Names must be `ipfs/` and a CIDv1 in its
//! canonical lowercase base32 form (repository names are lowercase; CIDv0 is refused). Resolved
//! images are kept in a small in-memory map, so a pull resolves its image once.

mod error;
mod range;

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::any,
    Json, Router,
};
use cid::Cid;
use futures::StreamExt as _;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::blockservice::BlockService;
use crate::image::oci::Kind;
use crate::image::pull::{self, Found, ResolveError, Resolved};
use crate::metrics::RegistryCounters;
use crate::sync::lock;
pub use error::RegistryError;

/// Images kept resolved at most (then the map starts over).
const MAX_RESOLVED: usize = 64;
/// `Content-Type` of layer blobs (and anything that is not JSON).
const OCTET_STREAM: &str = "application/octet-stream";

/// The registry's state: the node and what it served.
pub struct Registry {
    blocks: BlockService,
    counters: Arc<RegistryCounters>,
    resolved: Mutex<HashMap<Cid, Arc<Resolved>>>,
}

impl Registry {
    pub fn new(blocks: BlockService, counters: Arc<RegistryCounters>) -> Arc<Registry> {
        Arc::new(Registry {
            blocks,
            counters,
            resolved: Mutex::default(),
        })
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

/// The registry's router.
pub fn router(reg: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(v2))
        .route("/v2/", any(v2))
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
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.ends_with("/tags/list") {
        "tags"
    } else {
        "other"
    };
    // any other method is refused: one label keeps clients from minting new series
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let resp = next.run(req).await;
    reg.counters.request(route, method, resp.status().as_u16());
    resp
}

fn read_only(method: &Method) -> Result<(), RegistryError> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(RegistryError::unsupported(format!(
            "{method} is not supported: this registry is read-only (images enter the swarm with `cidfs image push`)"
        )))
    }
}

async fn v2(method: Method) -> Response {
    match read_only(&method) {
        Ok(()) => (
            [("Docker-Distribution-API-Version", "registry/2.0")],
            Json(serde_json::json!({})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// What a `/v2/…` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Manifest { cid: Cid, reference: String },
    Blob { cid: Cid, digest: String },
    Tags { cid: Cid },
}

/// Parses the part of the path after `/v2/`.
fn parse(path: &str) -> Result<Request, RegistryError> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(RegistryError::name_invalid(format!(
            "{path:?}: empty, `.` or `..` path segments are not allowed"
        )));
    }
    let (name, rest) = match parts.as_slice() {
        [name @ .., kind, last] => (name, (*kind, *last)),
        _ => {
            return Err(RegistryError::name_unknown(format!(
                "{path:?}: not a registry path"
            )))
        }
    };
    let cid = match name {
        ["ipfs", cid] => parse_cid(cid)?,
        _ => {
            return Err(RegistryError::name_unknown(format!(
                "repository {:?} is unknown: this registry serves only ipfs/<CID>",
                name.join("/")
            )))
        }
    };
    match rest {
        ("manifests", reference) => Ok(Request::Manifest {
            cid,
            reference: reference.to_string(),
        }),
        ("blobs", digest) => Ok(Request::Blob {
            cid,
            digest: check_digest(digest)?.to_string(),
        }),
        ("tags", "list") => Ok(Request::Tags { cid }),
        _ => Err(RegistryError::name_unknown(format!(
            "{path:?}: not a registry path (manifests, blobs or tags/list)"
        ))),
    }
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

/// The distribution spec's tag grammar.
fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

async fn dispatch(
    State(reg): State<Arc<Registry>>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    match serve(&reg, &method, &path, &headers).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("registry {method} /v2/{path}: {} {}", e.code, e.message);
            e.into_response()
        }
    }
}

async fn serve(
    reg: &Registry,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Response, RegistryError> {
    read_only(method)?;
    let head = method == Method::HEAD;
    match parse(path)? {
        Request::Tags { cid } => {
            reg.resolve(cid).await?;
            Ok(
                Json(serde_json::json!({ "name": format!("ipfs/{cid}"), "tags": ["latest"] }))
                    .into_response(),
            )
        }
        Request::Manifest { cid, reference } => {
            let img = reg.resolve(cid).await?;
            let found = if reference.starts_with("sha256:") {
                let digest = check_digest(&reference)?;
                img.find(digest)
                    .filter(|f| matches!(f.kind, Kind::Index | Kind::Manifest))
            } else if !is_tag(&reference) {
                return Err(RegistryError::manifest_unknown(format!(
                    "{reference:?} is neither a tag nor a digest"
                )));
            } else {
                (reference == "latest").then(|| img.top())
            };
            let found = found.ok_or_else(|| {
                RegistryError::manifest_unknown(format!(
                    "ipfs/{cid} has no manifest {reference:?} (its one tag is latest)"
                ))
            })?;
            reg.count(&found, head, 0);
            Ok(json_blob(&found, None, head))
        }
        Request::Blob { cid, digest } => {
            let img = reg.resolve(cid).await?;
            let found = img.find(&digest).ok_or_else(|| {
                RegistryError::blob_unknown(format!("ipfs/{cid} has no blob {digest}"))
            })?;
            let size = u64::try_from(found.desc.size).unwrap_or(0);
            let ranges = range::requested(headers, size)?;
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
            Ok(resp.0)
        }
    }
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
