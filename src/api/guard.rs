//! Who may call the API, checked before any handler runs (finding C1 of the security review):
//! - **Web pages.** A browser lets any page POST to `127.0.0.1` with `mode: 'no-cors'` (query
//!   arguments, multipart bodies: no preflight). Browsers mark such requests, so a request that
//!   carries an `Origin` not in `api.allowed_origins` (or, without one, a `Referer` from such an
//!   origin, or `Sec-Fetch-Site: cross-site | same-site`) is refused with 403, as kubo does.
//! - **DNS rebinding.** A page can also make its own host name resolve to 127.0.0.1; the `Host`
//!   header then names that host. Only IP literals, `localhost` and `api.allowed_hosts` pass.
//! - **Local users.** Anyone on the machine can reach 127.0.0.1, so the commands that touch host
//!   paths (`mount`, `umount`) also need the API token: a random secret the daemon writes to
//!   `$CIDFS_PATH/api.token` (0600) at every start, sent as `Authorization: Bearer <token>`.
//!   The CLI sends it when its user can read the file, so these commands are for the daemon's
//!   own user (root, where mounts reach the host).
//!
//! The checks read headers only: no I/O, no allocation beyond a few small strings.

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::net::IpAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq as _;

use super::ApiError;
use crate::config::ApiConfig;

/// Commands that act on host paths: they need the API token.
const PRIVILEGED: &[&str] = &["/api/v0/mount", "/api/v0/umount"];

/// The API's admission rules; cheap to clone.
#[derive(Clone)]
pub struct Guard(Arc<Rules>);

struct Rules {
    /// Normalised (`scheme://host[:port]`, lower case, no trailing slash).
    origins: Vec<String>,
    /// Lower case.
    hosts: Vec<String>,
    token: String,
}

impl Guard {
    pub fn new(config: &ApiConfig, token: String) -> Self {
        Guard(Arc::new(Rules {
            origins: config
                .allowed_origins
                .iter()
                .map(|o| normalise(o))
                .collect(),
            hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            token,
        }))
    }

    /// Why a request with these headers for `path` is refused, if it is.
    pub fn check(&self, headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
        let r = &self.0;
        let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
        let origin_allowed = |o: &str| r.origins.contains(&normalise(o));
        if let Some(origin) = text(header::ORIGIN) {
            if !origin_allowed(origin) {
                return Err(ApiError::Forbidden(format!(
                    "requests from web pages are refused: Origin {origin:?} is not in api.allowed_origins"
                )));
            }
        } else if let Some(referer) = text(header::REFERER) {
            match origin_of(referer) {
                Some(o) if origin_allowed(&o) => {}
                _ => {
                    return Err(ApiError::Forbidden(format!(
                        "requests from web pages are refused: Referer {referer:?} is not from api.allowed_origins"
                    )))
                }
            }
        } else if let Some(site @ ("cross-site" | "same-site")) =
            headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        {
            return Err(ApiError::Forbidden(format!(
                "requests from web pages are refused (Sec-Fetch-Site: {site})"
            )));
        }
        if let Some(host) = text(header::HOST) {
            let name = host_name(host).to_ascii_lowercase();
            let ok =
                name.parse::<IpAddr>().is_ok() || name == "localhost" || r.hosts.contains(&name);
            if !ok {
                return Err(ApiError::Forbidden(format!(
                    "Host {host:?} is not a name of this API (add it to api.allowed_hosts)"
                )));
            }
        }
        if PRIVILEGED.contains(&path) {
            let given = text(header::AUTHORIZATION)
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(r.token.as_bytes())) {
                return Err(ApiError::Unauthorized(format!(
                    "{} needs the API token (Authorization: Bearer, from $CIDFS_PATH/api.token, readable by the daemon's user; the cidfs CLI sends it)",
                    path.trim_start_matches("/api/v0/")
                )));
            }
        }
        Ok(())
    }
}

/// The middleware: refuses what [`Guard::check`] refuses, passes the rest on.
pub async fn admit(State(g): State<Guard>, req: Request, next: Next) -> Response {
    match g.check(req.headers(), req.uri().path()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::warn!(path = req.uri().path(), "API request refused: {e:?}");
            e.into_response()
        }
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `scheme://authority` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let uri: axum::http::Uri = url.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

/// The host part of a `Host` header: `[::1]:5001` → `::1`, `localhost:5001` → `localhost`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn guard(origins: &[&str], hosts: &[&str]) -> Guard {
        let config = ApiConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..ApiConfig::default()
        };
        Guard::new(&config, "s3cret".into())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn status(g: &Guard, pairs: &[(&'static str, &str)], path: &str) -> u16 {
        match g.check(&headers(pairs), path) {
            Ok(()) => 200,
            Err(e) => e.into_response().status().as_u16(),
        }
    }

    #[test]
    fn web_pages_are_refused_unless_allowed() {
        let g = guard(&["http://127.0.0.1:5001"], &[]);
        let host = ("host", "127.0.0.1:5001");
        let add = "/api/v0/add";
        assert_eq!(status(&g, &[host], add), 200, "the CLI sends no Origin");
        assert_eq!(
            status(&g, &[host, ("origin", "http://evil.example")], add),
            403
        );
        assert_eq!(status(&g, &[host, ("origin", "null")], add), 403);
        assert_eq!(
            status(&g, &[host, ("origin", "http://127.0.0.1:5001/")], add),
            200
        );
        assert_eq!(
            status(
                &g,
                &[host, ("referer", "https://evil.example/page?x=1")],
                add
            ),
            403
        );
        assert_eq!(
            status(&g, &[host, ("referer", "http://127.0.0.1:5001/ui/")], add),
            200
        );
        assert_eq!(status(&g, &[host, ("referer", "not a url")], add), 403);
        for site in ["cross-site", "same-site"] {
            assert_eq!(status(&g, &[host, ("sec-fetch-site", site)], add), 403);
        }
        assert_eq!(
            status(&g, &[host, ("sec-fetch-site", "same-origin")], add),
            200
        );
    }

    #[test]
    fn host_names_other_than_ip_literals_and_localhost_are_refused() {
        let g = guard(&[], &["node1.lan"]);
        let path = "/api/v0/id";
        for ok in [
            "127.0.0.1:5001",
            "127.0.0.1",
            "[::1]:5001",
            "LOCALHOST:5001",
            "10.0.0.2",
            "node1.lan:5001",
        ] {
            assert_eq!(status(&g, &[("host", ok)], path), 200, "{ok}");
        }
        for bad in [
            "evil.example:5001",
            "rebind.evil.example",
            "localhost.evil:5001",
        ] {
            assert_eq!(status(&g, &[("host", bad)], path), 403, "{bad}");
        }
        assert_eq!(status(&g, &[], path), 200, "HTTP/1.0 without Host");
    }

    #[test]
    fn mount_and_umount_need_the_token() {
        let g = guard(&[], &[]);
        for path in ["/api/v0/mount", "/api/v0/umount"] {
            assert_eq!(status(&g, &[], path), 401);
            assert_eq!(status(&g, &[("authorization", "Bearer wrong")], path), 401);
            assert_eq!(status(&g, &[("authorization", "s3cret")], path), 401);
            assert_eq!(status(&g, &[("authorization", "Bearer s3cret")], path), 200);
        }
        assert_eq!(
            status(&g, &[], "/api/v0/mounts"),
            200,
            "listing is not privileged"
        );
    }
}
