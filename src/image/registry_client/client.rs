//! [`Client`]: GETs manifests and blobs of one repository, answering auth challenges and
//! verifying every byte it hands out.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::auth::{self, Challenge, Credentials};
use super::error::{parse_oci_error, Error, ManifestType};
use super::reference::{self, Reference};
use crate::image::oci::{self, Descriptor};

/// Manifests and indexes larger than this are refused (containerd uses about 4 MiB too).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Token responses and error bodies are read up to this size.
const MAX_SMALL_BODY: u64 = 64 << 10;
/// Giving up on establishing a TCP (+TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Giving up when no byte (headers or body) arrived for this long; a slow but moving download
/// of any size never times out.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 10;

/// Every manifest type cidfs can read, in the order containerd asks for them.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// A pull-only client of one repository (`host/repo`).
///
/// Requests start anonymous. On a `401`, the `WWW-Authenticate` challenge is answered (Basic with
/// the credentials, or a Bearer token fetched from the realm with scope `repository:REPO:pull`)
/// and the request is retried once; the resulting `Authorization` value is reused by later
/// requests. reqwest drops `Authorization` when a redirect leaves the host (or port), and this
/// client refuses redirects from `https` to `http`.
pub struct Client {
    http: reqwest::Client,
    /// `http[s]://HOST/v2/REPO`
    base: String,
    https: bool,
    repo: String,
    creds: Option<Credentials>,
    /// The `Authorization` value last obtained (a token or Basic credentials).
    auth: Mutex<Option<HeaderValue>>,
}

impl Client {
    /// A client for `r`'s repository: `http://` when `insecure`, else `https://` checked against
    /// the system's root certificates. Does no I/O.
    pub fn new(
        r: &Reference,
        insecure: bool,
        creds: Option<Credentials>,
    ) -> anyhow::Result<Client> {
        Client::with_timeouts(r, insecure, creds, CONNECT_TIMEOUT, STALL_TIMEOUT)
    }

    /// [`Client::new`] with other timeouts (see [`CONNECT_TIMEOUT`], [`STALL_TIMEOUT`]).
    pub fn with_timeouts(
        r: &Reference,
        insecure: bool,
        creds: Option<Credentials>,
        connect: Duration,
        stall: Duration,
    ) -> anyhow::Result<Client> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt.url().scheme() == "http"
                && attempt
                    .previous()
                    .last()
                    .is_some_and(|u| u.scheme() == "https");
            if downgrade {
                attempt.error("refusing a redirect from https to http")
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("cidfs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect)
            .read_timeout(stall)
            .redirect(policy)
            .build()?;
        let scheme = if insecure { "http" } else { "https" };
        Ok(Client {
            http,
            base: format!("{scheme}://{}/v2/{}", r.host, r.repo),
            https: !insecure,
            repo: r.repo.clone(),
            creds,
            auth: Mutex::new(None),
        })
    }

    /// The manifest or index named by `reference` (a tag or a `sha256:` digest): its media type
    /// (from `Content-Type` without parameters, else the body's `mediaType`) and its bytes.
    /// A digest reference is verified against the body, and so is a `Docker-Content-Digest`
    /// header when present.
    ///
    /// Cancel-safe: it holds nothing but the request.
    pub async fn manifest(&self, reference: &str) -> anyhow::Result<(String, Vec<u8>)> {
        let by_digest = reference.contains(':');
        if by_digest {
            oci::digest_hex(reference).map_err(anyhow::Error::msg)?;
        } else {
            reference::check_tag(reference)?;
        }
        let url = format!("{}/manifests/{reference}", self.base);
        let resp = self.get(&url, Some(ACCEPT_MANIFESTS)).await?;
        if resp.content_length().is_some_and(|n| n > MAX_MANIFEST) {
            return Err(Error::ManifestTooLarge {
                url,
                limit: MAX_MANIFEST,
            }
            .into());
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_capped(resp, &url, MAX_MANIFEST)
            .await?
            .ok_or_else(|| Error::ManifestTooLarge {
                url: url.clone(),
                limit: MAX_MANIFEST,
            })?;
        let actual = oci::sha256_digest(&body);
        let expected = if by_digest {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected {
            if expected != actual {
                return Err(Error::DigestMismatch {
                    url,
                    expected,
                    actual,
                }
                .into());
            }
        }
        let media_type = manifest_media_type(&content_type, &body)
            .map_err(|what| Error::BadManifest { url, what })?;
        Ok((media_type, body))
    }

    /// A blob in memory, verified against `desc` (size and sha256). For small blobs (configs);
    /// the caller bounds `desc.size`.
    ///
    /// Cancel-safe.
    pub async fn blob_bytes(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        let mut blob = self.open_blob(desc).await?;
        let mut out = Vec::with_capacity(blob.expected.min(MAX_MANIFEST) as usize);
        while let Some(chunk) = blob.next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// A blob streamed into `path` (created or truncated), verified against `desc`; `progress`
    /// gets the length of each chunk written. On any failure, and when the future is dropped
    /// before it finishes, `path` is removed.
    pub async fn blob_to_file(
        &self,
        desc: &Descriptor,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<()> {
        let mut blob = self.open_blob(desc).await?;
        let guard = RemoveOnDrop(Some(path.to_path_buf()));
        let io_err = |e: std::io::Error| {
            anyhow::Error::new(e).context(format!("writing {}", path.display()))
        };
        let mut file = tokio::fs::File::create(path).await.map_err(io_err)?;
        while let Some(chunk) = blob.next().await? {
            file.write_all(&chunk).await.map_err(io_err)?;
            progress(chunk.len() as u64);
        }
        file.flush().await.map_err(io_err)?;
        drop(file);
        guard.keep();
        Ok(())
    }

    /// Starts a blob download; the body is checked as it is read.
    async fn open_blob(&self, desc: &Descriptor) -> anyhow::Result<VerifiedBody> {
        oci::digest_hex(&desc.digest).map_err(anyhow::Error::msg)?;
        let expected = u64::try_from(desc.size)
            .map_err(|_| anyhow::anyhow!("blob {} has a negative size", desc.digest))?;
        let url = format!("{}/blobs/{}", self.base, desc.digest);
        let resp = self.get(&url, None).await?;
        if let Some(n) = resp.content_length() {
            if n != expected {
                return Err(Error::SizeMismatch {
                    url,
                    expected,
                    actual: n,
                    more: false,
                }
                .into());
            }
        }
        Ok(VerifiedBody {
            resp,
            url,
            digest: desc.digest.clone(),
            expected,
            got: 0,
            hasher: Sha256::new(),
        })
    }

    /// GET with the cached `Authorization`; on a `401`, answers the challenge and retries once.
    /// Returns only successful responses.
    async fn get(&self, url: &str, accept: Option<&str>) -> Result<Response, Error> {
        let mut fresh = false;
        loop {
            let cached = self.cached_auth();
            let mut req = self.http.get(url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(h) = cached {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req.send().await.map_err(|source| Error::Transport {
                url: url.to_string(),
                source,
            })?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return if resp.status().is_success() {
                    Ok(resp)
                } else {
                    Err(status_error(url, resp).await)
                };
            }
            if fresh {
                return Err(self.refused(url, 401));
            }
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let header = self.answer(url, &challenge).await?;
            *crate::sync::lock(&self.auth) = Some(header);
            fresh = true;
        }
    }

    fn cached_auth(&self) -> Option<HeaderValue> {
        crate::sync::lock(&self.auth).clone()
    }

    /// The error for a request refused after (or without) authenticating.
    fn refused(&self, url: &str, status: u16) -> Error {
        match &self.creds {
            Some(c) => Error::AuthRejected {
                url: url.to_string(),
                user: c.username.clone(),
                status,
            },
            None => Error::AuthRequired {
                url: url.to_string(),
            },
        }
    }

    /// The `Authorization` value answering `challenge`.
    async fn answer(&self, url: &str, challenge: &str) -> Result<HeaderValue, Error> {
        match auth::parse_challenge(challenge) {
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => Ok(basic(c)),
                None => Err(self.refused(url, 401)),
            },
            Some(Challenge::Bearer { realm, service }) => {
                self.fetch_token(url, &realm, service.as_deref()).await
            }
            None => Err(Error::UnsupportedChallenge {
                url: url.to_string(),
                challenge: challenge.to_string(),
            }),
        }
    }

    /// A pull token for this repository from `realm`, asked for with Basic credentials when
    /// there are any (anonymously otherwise).
    async fn fetch_token(
        &self,
        url: &str,
        realm: &str,
        service: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        let bad = |what: String| Error::Token {
            url: url.to_string(),
            what,
        };
        let mut token_url = reqwest::Url::parse(realm)
            .map_err(|e| bad(format!("bad Bearer realm {realm:?}: {e}")))?;
        match token_url.scheme() {
            "https" => {}
            "http" if !self.https => {}
            s => {
                return Err(bad(format!(
                    "refusing Bearer realm {realm:?} (scheme {s}) for an https registry"
                )))
            }
        }
        {
            let mut q = token_url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &format!("repository:{}:pull", self.repo));
        }
        let token_url_s = token_url.to_string();
        let mut req = self.http.get(token_url);
        if let Some(c) = &self.creds {
            req = req.header(AUTHORIZATION, basic(c));
        }
        let resp = req.send().await.map_err(|source| Error::Transport {
            url: token_url_s.clone(),
            source,
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.refused(&token_url_s, status.as_u16()));
        }
        if !status.is_success() {
            return Err(status_error(&token_url_s, resp).await);
        }
        let body = read_capped(resp, &token_url_s, MAX_SMALL_BODY)
            .await?
            .ok_or_else(|| bad(format!("{token_url_s}: token response too large")))?;
        let token = auth::parse_token(&body).map_err(|e| bad(format!("{token_url_s}: {e:#}")))?;
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| bad(format!("{token_url_s}: token is not a valid header value")))
    }
}

fn basic(c: &Credentials) -> HeaderValue {
    let raw = format!("{}:{}", c.username, c.password);
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// A non-success response as an [`Error::Status`], with the OCI error JSON when there is one.
async fn status_error(url: &str, resp: Response) -> Error {
    let status = resp.status().as_u16();
    let body = read_capped(resp, url, MAX_SMALL_BODY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let (code, message) = parse_oci_error(&body);
    Error::Status {
        url: url.to_string(),
        status,
        code,
        message,
    }
}

/// The whole body, or `None` when it is longer than `cap`.
async fn read_capped(mut resp: Response, url: &str, cap: u64) -> Result<Option<Vec<u8>>, Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| Error::Transport {
        url: url.to_string(),
        source,
    })? {
        if (out.len() + chunk.len()) as u64 > cap {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// A manifest's media type: a manifest type in `Content-Type` (which the body's `mediaType`
/// must then agree with), else the body's `mediaType`, else guessed from the fields present.
fn manifest_media_type(content_type: &str, body: &[u8]) -> Result<String, ManifestType> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: String,
        manifests: Option<serde::de::IgnoredAny>,
        config: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| ManifestType::NotJson(e.to_string()))?;
    let is_manifest_type = |t: &str| {
        matches!(
            oci::classify(t),
            Ok((_, oci::Kind::Manifest | oci::Kind::Index))
        )
    };
    if is_manifest_type(content_type) {
        if !probe.media_type.is_empty() && probe.media_type != content_type {
            return Err(ManifestType::Contradicts {
                content_type: content_type.to_string(),
                media_type: probe.media_type,
            });
        }
        return Ok(content_type.to_string());
    }
    if !probe.media_type.is_empty() {
        return Ok(probe.media_type);
    }
    match (probe.manifests.is_some(), probe.config.is_some()) {
        (true, false) => Ok(oci::OCI_INDEX.to_string()),
        (false, true) => Ok(oci::OCI_MANIFEST.to_string()),
        _ => Err(ManifestType::Unknown(content_type.to_string())),
    }
}

/// A blob body checked while it is read: never more than the expected size, and at the end
/// exactly that size and the expected digest.
struct VerifiedBody {
    resp: Response,
    url: String,
    digest: String,
    expected: u64,
    got: u64,
    hasher: Sha256,
}

impl VerifiedBody {
    /// The next chunk, or `None` at a verified end.
    async fn next(&mut self) -> Result<Option<Bytes>, Error> {
        let chunk = self.resp.chunk().await.map_err(|source| Error::Transport {
            url: self.url.clone(),
            source,
        })?;
        match chunk {
            Some(c) => {
                self.got += c.len() as u64;
                if self.got > self.expected {
                    return Err(Error::SizeMismatch {
                        url: self.url.clone(),
                        expected: self.expected,
                        actual: self.got,
                        more: true,
                    });
                }
                self.hasher.update(&c);
                Ok(Some(c))
            }
            None => {
                if self.got != self.expected {
                    return Err(Error::SizeMismatch {
                        url: self.url.clone(),
                        expected: self.expected,
                        actual: self.got,
                        more: false,
                    });
                }
                let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
                if actual != self.digest {
                    return Err(Error::DigestMismatch {
                        url: self.url.clone(),
                        expected: self.digest.clone(),
                        actual,
                    });
                }
                Ok(None)
            }
        }
    }
}

/// Removes the file when dropped, unless [`RemoveOnDrop::keep`] was called.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // Best effort: the file may not exist yet.
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}"#;
        assert_eq!(
            manifest_media_type(oci::OCI_MANIFEST, m).unwrap(),
            oci::OCI_MANIFEST
        );
        assert_eq!(
            manifest_media_type("application/json", m).unwrap(),
            oci::OCI_MANIFEST
        );
        assert_eq!(manifest_media_type("", m).unwrap(), oci::OCI_MANIFEST);
        let e = manifest_media_type(oci::OCI_INDEX, m).unwrap_err();
        assert!(matches!(e, ManifestType::Contradicts { .. }), "{e}");
        assert_eq!(
            manifest_media_type("", br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            oci::OCI_INDEX
        );
        assert_eq!(
            manifest_media_type("", br#"{"schemaVersion":2,"config":{},"layers":[]}"#).unwrap(),
            oci::OCI_MANIFEST
        );
        assert!(manifest_media_type("", b"{}").is_err());
        assert!(manifest_media_type(oci::OCI_MANIFEST, b"not json").is_err());
    }
}
