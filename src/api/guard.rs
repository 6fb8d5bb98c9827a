//! Who may call the API, checked before any handler runs (finding C1 of the security review):
//! - **Web pages.** A browser lets any page POST to `127.0.0.1` with `mode: 'no-cors'` (query
//!   arguments, multipart bodies: no preflight). Browsers mark such requests, so a request that
//!   carries an `Origin` not in `api.allowed_origins` (or, without one, a `Referer` from such an
//!   origin, or `Sec-Fetch-Site: cross-site | same-site`) is refused with 403, as kubo does.
//!   One page is let in: the daemon's own dashboard (`/ui/`, an `Origin` equal to `http://` +
//!   this request's `Host`), and only with the API token its user pasted into it. No other page
//!   can send that origin, and none can read the token.
//! - **DNS rebinding.** A page can also make its own host name resolve to 127.0.0.1; the `Host`
//!   header then names that host. Only IP literals, `localhost` and `api.allowed_hosts` pass.
//! - **Local users.** Anyone on the machine can reach 127.0.0.1, so the commands that touch host
//!   paths (`mount`, `umount`, and `mount/trace`, which tells what a mount read) also need the API token: a random secret the daemon writes to
//!   `$CIDFS_PATH/api.token` (0600) at every start, sent as `Authorization: Bearer <token>`.
//!   The CLI sends it when its user can read the file, so these commands are for the daemon's
//!   own user (root, where mounts reach the host).
//! - **Remote callers.** `api.authorizations` (kubo's `API.Authorizations`) names callers by
//!   a bearer token or a basic user and password, each with the paths it may call. With any,
//!   every `/api/` request needs one of them (or the node's token, which may do everything)
//!   and a path it allows: 401 without a known credential, 403 outside its paths. Without any,
//!   the daemon refuses to listen beyond loopback ([`check_listen`]).
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
const PRIVILEGED: &[&str] = &["/api/v0/mount", "/api/v0/umount", "/api/v0/mount/trace"];

/// The API's admission rules; cheap to clone.
#[derive(Clone)]
pub struct Guard(Arc<Rules>);

struct Rules {
    /// Normalised (`scheme://host[:port]`, lower case, no trailing slash).
    origins: Vec<String>,
    /// Lower case.
    hosts: Vec<String>,
    token: String,
    callers: Vec<Caller>,
}

/// One of `api.authorizations`.
struct Caller {
    name: String,
    /// The whole `Authorization` header value it sends.
    header: String,
    paths: Vec<String>,
}

/// A bad `api.authorizations` entry.
#[derive(Debug, thiserror::Error)]
#[error("api.authorizations.{name}: {why}")]
pub struct ConfigError {
    name: String,
    why: String,
}

/// An API that would listen beyond loopback with no `api.authorizations`.
#[derive(Debug, thiserror::Error)]
#[error("api.listen is {0}, beyond loopback, and no [api.authorizations] are configured: the API would be open to anyone who reaches it. Listen on 127.0.0.1, or configure callers (see config/cidfs.toml)")]
pub struct OpenApi(pub std::net::SocketAddr);

/// Refuses an API that would listen beyond loopback with no `api.authorizations`: anyone who
/// can reach it could add, pin and read everything.
pub fn check_listen(config: &ApiConfig) -> Result<(), OpenApi> {
    if config.listen.ip().is_loopback() || !config.authorizations.is_empty() {
        return Ok(());
    }
    Err(OpenApi(config.listen))
}

fn caller(name: &str, a: &crate::config::Authorization) -> Result<Caller, ConfigError> {
    use crate::config::AuthSecret;
    let bad = |why: &str| ConfigError {
        name: name.into(),
        why: why.into(),
    };
    let header = match AuthSecret::parse(&a.auth_secret) {
        Some(s @ AuthSecret::Bearer(t)) if t.len() >= 16 => s.header(),
        Some(AuthSecret::Bearer(_)) => {
            return Err(bad("a bearer token needs 16 characters or more"))
        }
        Some(s @ AuthSecret::Basic { password, .. }) if password.len() >= 8 => s.header(),
        Some(AuthSecret::Basic { .. }) => {
            return Err(bad(
                "basic needs USER:PASSWORD, a password of 8 characters or more",
            ))
        }
        None => {
            return Err(bad(
                "auth_secret must be bearer:TOKEN or basic:USER:PASSWORD",
            ))
        }
    };
    let paths: Vec<String> = a
        .allowed_paths
        .iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    if paths.is_empty() || paths.iter().any(|p| !p.starts_with('/')) {
        return Err(bad("allowed_paths must list paths such as /api/v0/cat"));
    }
    Ok(Caller {
        name: name.into(),
        header,
        paths,
    })
}

/// Whether `path` is `allowed` or lies below it (`/api/v0/pin` allows `/api/v0/pin/add`, not
/// `/api/v0/pinfoo`).
fn allows(allowed: &str, path: &str) -> bool {
    path == allowed
        || allowed.is_empty()
        || path
            .strip_prefix(allowed)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Guard {
    pub fn new(config: &ApiConfig, token: String) -> Result<Self, ConfigError> {
        let callers = config
            .authorizations
            .iter()
            .map(|(name, a)| caller(name, a))
            .collect::<Result<_, _>>()?;
        Ok(Guard(Arc::new(Rules {
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
            callers,
        })))
    }

    /// Why a request with these headers for `path` is refused, if it is.
    pub fn check(&self, headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
        let r = &self.0;
        let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("?"));
        let presented = text(header::AUTHORIZATION).unwrap_or("");
        let same = |a: &str, b: &str| bool::from(a.as_bytes().ct_eq(b.as_bytes()));
        let root = presented
            .strip_prefix("Bearer ")
            .is_some_and(|t| same(t, &r.token));
        // the dashboard's own page (an origin equal to this API's Host) acts with the token its
        // user pasted: no other page can name this origin, and none can read the token file
        let own_page = |o: &str| {
            root && text(header::HOST)
                .is_some_and(|h| normalise(o) == format!("http://{}", h.to_ascii_lowercase()))
        };
        let origin_allowed = |o: &str| r.origins.contains(&normalise(o)) || own_page(o);
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
        if root {
            return Ok(());
        }
        // the dashboard's figures are the API's: the same callers may read them
        if !r.callers.is_empty() && (path.starts_with("/api/") || path == super::ui::STATE) {
            // every caller is compared, so the time taken does not say which one nearly matched
            let mut found = None;
            for c in &r.callers {
                if same(presented, &c.header) && found.is_none() {
                    found = Some(c);
                }
            }
            let Some(c) = found else {
                return Err(ApiError::Unauthorized(
                    "this API needs the Authorization of a caller in api.authorizations (the cidfs CLI: --api-auth)".into(),
                ));
            };
            if !c.paths.iter().any(|p| allows(p, path)) {
                return Err(ApiError::Forbidden(format!(
                    "{path} is not among the paths api.authorizations.{} allows",
                    c.name
                )));
            }
            return Ok(());
        }
        if PRIVILEGED.contains(&path) {
            return Err(ApiError::Unauthorized(format!(
                "{} needs the API token (Authorization: Bearer, from $CIDFS_PATH/api.token, readable by the daemon's user; the cidfs CLI sends it)",
                path.trim_start_matches("/api/v0/")
            )));
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
        Guard::new(&config, "s3cret".into()).unwrap()
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

    /// The dashboard's actions: its own origin passes with the API token, and only with it;
    /// any other origin is refused even with the token.
    #[test]
    fn the_dashboards_own_origin_acts_with_the_token_only() {
        let g = guard(&[], &["node1.lan"]);
        let pin = "/api/v0/pin/add";
        let host = ("host", "127.0.0.1:5001");
        let own = ("origin", "http://127.0.0.1:5001");
        let token = ("authorization", "Bearer s3cret");
        assert_eq!(status(&g, &[host, own, token], pin), 200);
        assert_eq!(status(&g, &[host, own, token], "/api/v0/mount"), 200);
        assert_eq!(status(&g, &[host, own], pin), 403, "no token");
        let wrong = ("authorization", "Bearer s3cre");
        assert_eq!(status(&g, &[host, own, wrong], pin), 403);
        for other in [
            "http://127.0.0.1:5002",
            "https://127.0.0.1:5001",
            "http://localhost:5001",
            "http://evil.example",
        ] {
            assert_eq!(
                status(&g, &[host, ("origin", other), token], pin),
                403,
                "{other}"
            );
        }
        // a rebinding page names its own host, which the Host check refuses anyway
        let rebound = [
            ("host", "evil.example:5001"),
            ("origin", "http://evil.example:5001"),
            token,
        ];
        assert_eq!(status(&g, &rebound, pin), 403);
        // a Referer from the own page counts the same
        let referer = ("referer", "http://127.0.0.1:5001/ui/");
        assert_eq!(status(&g, &[host, referer, token], pin), 200);
        assert_eq!(status(&g, &[host, referer], pin), 403);
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
        for path in ["/api/v0/mount", "/api/v0/umount", "/api/v0/mount/trace"] {
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

    fn with_callers(callers: &[(&str, &str, &[&str])]) -> Guard {
        let mut config = ApiConfig::default();
        for (name, secret, paths) in callers {
            config.authorizations.insert(
                name.to_string(),
                crate::config::Authorization {
                    auth_secret: secret.to_string(),
                    allowed_paths: paths.iter().map(|p| p.to_string()).collect(),
                },
            );
        }
        Guard::new(&config, "s3cret".into()).unwrap()
    }

    /// kubo's API.Authorizations: a known credential and a path it allows, or 401 / 403; the
    /// node token may do everything; health and metrics stay open.
    #[test]
    fn authorizations_admit_their_callers_to_their_paths_only() {
        let g = with_callers(&[
            (
                "ci",
                "bearer:0123456789abcdef",
                &["/api/v0/cat", "/api/v0/pin"],
            ),
            ("ops", "basic:ops:correct horse", &["/api/v0"]),
        ]);
        let ci = ("authorization", "Bearer 0123456789abcdef");
        // base64("ops:correct horse")
        let ops = ("authorization", "Basic b3BzOmNvcnJlY3QgaG9yc2U=");
        assert_eq!(status(&g, &[ci], "/api/v0/cat"), 200);
        assert_eq!(status(&g, &[ci], "/api/v0/pin/add"), 200);
        assert_eq!(status(&g, &[ci], "/api/v0/pinfoo"), 403);
        assert_eq!(status(&g, &[ci], "/api/v0/add"), 403);
        assert_eq!(status(&g, &[ci], "/api/v0/mount"), 403);
        assert_eq!(
            status(&g, &[ops], "/api/v0/mount"),
            200,
            "granted by the operator"
        );
        assert_eq!(status(&g, &[], "/api/v0/id"), 401);
        assert_eq!(
            status(
                &g,
                &[("authorization", "Bearer wrong-but-long-enough")],
                "/api/v0/id"
            ),
            401
        );
        assert_eq!(
            status(&g, &[("authorization", "Basic b3BzOndyb25n")], "/api/v0/id"),
            401
        );
        assert_eq!(
            status(&g, &[("authorization", "Bearer s3cret")], "/api/v0/mount"),
            200
        );
        assert_eq!(status(&g, &[], "/healthz"), 200);
    }

    #[test]
    fn weak_or_malformed_secrets_and_open_listeners_are_refused() {
        for bad in [
            "bearer:short",
            "basic:nopassword",
            "basic:u:short",
            "token:abc",
            "plain",
        ] {
            let mut config = ApiConfig::default();
            config.authorizations.insert(
                "x".into(),
                crate::config::Authorization {
                    auth_secret: bad.into(),
                    allowed_paths: vec!["/api/v0".into()],
                },
            );
            assert!(Guard::new(&config, "t".into()).is_err(), "{bad}");
        }
        let mut config = ApiConfig::default();
        assert!(check_listen(&config).is_ok());
        config.listen = "0.0.0.0:5001".parse().unwrap();
        assert!(check_listen(&config)
            .unwrap_err()
            .to_string()
            .contains("beyond loopback"));
        config.authorizations.insert(
            "x".into(),
            crate::config::Authorization {
                auth_secret: "bearer:0123456789abcdef".into(),
                allowed_paths: vec!["/api/v0".into()],
            },
        );
        assert!(check_listen(&config).is_ok());
    }
}
