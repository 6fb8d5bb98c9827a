//! Credentials (explicit or from an auth file) and the `WWW-Authenticate` challenge, parsed
//! without I/O except [`credentials_for`] reading the auth file.

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Auth files larger than this are refused.
const MAX_AUTHFILE: u64 = 1 << 20;

/// A user name and password (or token) for Basic auth or for a bearer-token request.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The credentials to use for `host` (`host[:port]`, as in [`super::Reference::host`]).
///
/// `explicit` (`USER:PASS`, from `--creds`) wins. Otherwise the auth file: `authfile` or
/// `$REGISTRY_AUTH_FILE` when given, else the first of
/// `$XDG_RUNTIME_DIR/containers/auth.json` and `~/.docker/config.json` that exists and has an
/// entry for the host. Entries are `{"auths":{"HOST":{"auth":"base64(USER:PASS)"}}}` or carry
/// `username`/`password`; keys may be URLs (`https://index.docker.io/v1/`). Credential helpers
/// (`credsStore`, `credHelpers`) are not run. A missing file means no credentials; an
/// unreadable or malformed one is an error.
pub fn credentials_for(
    host: &str,
    explicit: Option<&str>,
    authfile: Option<&Path>,
) -> anyhow::Result<Option<Credentials>> {
    if let Some(text) = explicit {
        return parse_user_pass(text)
            .map(Some)
            .context("bad --creds: expected USER:PASS");
    }
    let named = authfile
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from));
    if let Some(path) = named {
        if !path.exists() {
            tracing::warn!(path = %path.display(), "auth file does not exist; pulling anonymously");
        }
        return lookup_file(&path, host);
    }
    let defaults = [
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(|d| PathBuf::from(d).join("containers").join("auth.json")),
        dirs::home_dir().map(|h| h.join(".docker").join("config.json")),
    ];
    for path in defaults.into_iter().flatten() {
        if path.exists() {
            if let Some(c) = lookup_file(&path, host)? {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

fn lookup_file(path: &Path, host: &str) -> anyhow::Result<Option<Credentials>> {
    use std::io::Read as _;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no auth file");
            return Ok(None);
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("opening auth file {}", path.display()))
            )
        }
    };
    let mut text = String::new();
    f.take(MAX_AUTHFILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading auth file {}", path.display()))?;
    if text.len() as u64 > MAX_AUTHFILE {
        bail!("auth file {} is larger than 1 MiB", path.display());
    }
    lookup(&text, host).with_context(|| format!("auth file {}", path.display()))
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// The entry for `host` in an auth file's JSON, if any.
pub(crate) fn lookup(json: &str, host: &str) -> anyhow::Result<Option<Credentials>> {
    let file: AuthFile = serde_json::from_str(json).context("not an auth file (JSON)")?;
    let wanted = hub_alias(host);
    let Some((key, entry)) = file
        .auths
        .iter()
        .find(|(k, _)| key_host(k).is_some_and(|h| hub_alias(h) == wanted))
    else {
        return Ok(None);
    };
    let creds = if !entry.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.trim())
            .map_err(|_| anyhow!("entry {key:?}: \"auth\" is not base64"))?;
        let text =
            String::from_utf8(raw).map_err(|_| anyhow!("entry {key:?}: \"auth\" is not UTF-8"))?;
        parse_user_pass(&text).with_context(|| format!("entry {key:?}: \"auth\""))?
    } else if !entry.username.is_empty() {
        Credentials {
            username: entry.username.clone(),
            password: entry.password.clone(),
        }
    } else {
        return Ok(None);
    };
    Ok(Some(creds))
}

/// The host of an auth-file key: `host[:port]`, or a URL whose path is dropped. Keys naming a
/// repository namespace (`host/ns`) are skipped: they would grant one repo's credentials to all.
fn key_host(key: &str) -> Option<&str> {
    match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(url) => url.split('/').next(),
        None => (!key.contains('/')).then_some(key),
    }
}

/// Docker Hub goes by several names.
fn hub_alias(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    }
}

fn parse_user_pass(text: &str) -> anyhow::Result<Credentials> {
    match text.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }),
        _ => bail!("expected USER:PASS with a non-empty user"),
    }
}

/// One `WWW-Authenticate` challenge cidfs can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    /// Ask `realm` for a token for `service`.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The first Bearer or Basic challenge in a `WWW-Authenticate` value (RFC 7235 auth-params;
/// quoted values may contain `,`). Other schemes are skipped.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut rest = header.trim();
    while !rest.is_empty() {
        let (scheme, after) = rest
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((rest, ""));
        let (params, next) = parse_params(after);
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(pk, _)| pk.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            if let Some(realm) = get("realm") {
                return Some(Challenge::Bearer {
                    realm,
                    service: get("service"),
                });
            }
        }
        rest = next.trim_start_matches([',', ' ', '\t']);
    }
    None
}

/// `k=v, k="v", …` up to the start of the next challenge (a token not followed by `=`).
fn parse_params(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ', '\t']);
        let Some(eq) = s.find('=') else {
            return (out, s);
        };
        let key = &s[..eq];
        if key.is_empty() || key.contains([' ', '\t', ',', '"']) {
            return (out, s);
        }
        let after = &s[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, c2)) = chars.next() {
                            v.push(c2);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key.to_string(), value));
        s = next;
    }
}

/// The token endpoint's answer: `token` or (OAuth2) `access_token`.
pub(crate) fn parse_token(body: &[u8]) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Token {
        #[serde(default)]
        token: String,
        #[serde(default)]
        access_token: String,
    }
    let t: Token = serde_json::from_slice(body).context("token response is not JSON")?;
    let tok = if t.token.is_empty() {
        t.access_token
    } else {
        t.token
    };
    if tok.is_empty() {
        bail!("token response has neither \"token\" nor \"access_token\"");
    }
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example.com/token",service="reg, x",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("reg, x".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("basic"), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(r#"Negotiate abc, Bearer realm=http://x/t"#),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: None
            })
        );
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge(""), None);
        assert_eq!(
            parse_challenge(r#"Bearer realm="unterminated"#),
            Some(Challenge::Bearer {
                realm: "unterminated".into(),
                service: None
            })
        );
    }

    #[test]
    fn tokens() {
        assert_eq!(
            parse_token(br#"{"token":"a","access_token":"b"}"#).unwrap(),
            "a"
        );
        assert_eq!(
            parse_token(br#"{"access_token":"b","expires_in":60}"#).unwrap(),
            "b"
        );
        assert!(parse_token(br#"{}"#).is_err());
        assert!(parse_token(b"<html>").is_err());
    }

    #[test]
    fn auth_file_entries() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let json = format!(
            r#"{{"auths":{{
                "127.0.0.1:5000":{{"auth":"{}"}},
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "quay.io":{{"username":"u","password":"p:q"}},
                "ghcr.io/some/ns":{{"auth":"{}"}},
                "broken.io":{{"auth":"!!"}}
            }},"credsStore":"desktop"}}"#,
            b64("alice:s3cr:et"),
            b64("hub:pw"),
            b64("ns:pw")
        );
        let c = lookup(&json, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr:et")
        );
        let c = lookup(&json, "registry-1.docker.io").unwrap().unwrap();
        assert_eq!(c.username, "hub");
        let c = lookup(&json, "quay.io").unwrap().unwrap();
        assert_eq!(c.password, "p:q");
        assert!(lookup(&json, "ghcr.io").unwrap().is_none());
        assert!(lookup(&json, "127.0.0.1:5001").unwrap().is_none());
        let e = format!("{:#}", lookup(&json, "broken.io").unwrap_err());
        assert!(e.contains("not base64"), "{e}");
        assert!(lookup("{", "x").is_err());
        assert!(lookup(r#"{"auths":[1]}"#, "x").is_err());
        assert!(format!("{:?}", c).contains("redacted"));
    }

    #[test]
    fn credentials_sources() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("bob:pw");
        std::fs::write(
            &file,
            format!(r#"{{"auths":{{"reg.local:443":{{"auth":"{b64}"}}}}}}"#),
        )
        .unwrap();
        let c = credentials_for("reg.local:443", None, Some(&file))
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pw"));
        // explicit wins over the file
        let c = credentials_for("reg.local:443", Some("eve:x"), Some(&file))
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "eve");
        assert!(credentials_for("other:1", None, Some(&file))
            .unwrap()
            .is_none());
        let e = format!(
            "{:#}",
            credentials_for("h", Some("nopass"), None).unwrap_err()
        );
        assert!(e.contains("USER:PASS"), "{e}");
        // A missing file is no credentials; a malformed one is an error naming the file.
        assert!(
            credentials_for("h", None, Some(&dir.path().join("missing.json")))
                .unwrap()
                .is_none()
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let e = format!("{:#}", credentials_for("h", None, Some(&bad)).unwrap_err());
        assert!(
            e.contains("bad.json") && e.contains("not an auth file"),
            "{e}"
        );
    }
}
