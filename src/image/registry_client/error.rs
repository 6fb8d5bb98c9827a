//! What can go wrong talking to a registry, one variant per thing a user would do differently.
//! The public API returns `anyhow::Error`; callers and tests `downcast_ref::<Error>()` to tell
//! the cases apart.

use serde::Deserialize;

/// A registry request that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry wants credentials and none were given.
    #[error(
        "{url}: the registry requires authentication; pass credentials with --creds USER:PASS \
         or an auth file with --authfile FILE (or $REGISTRY_AUTH_FILE)"
    )]
    AuthRequired { url: String },
    /// Credentials were given and refused (by the registry or its token service).
    #[error("{url}: the registry rejected the credentials for user {user:?} (HTTP {status})")]
    AuthRejected {
        url: String,
        user: String,
        status: u16,
    },
    /// The token service answered with something other than a token.
    #[error("{url}: bad token response: {what}")]
    Token { url: String, what: String },
    /// A `401` whose challenge cidfs cannot answer.
    #[error("{url}: HTTP 401 with an unsupported WWW-Authenticate challenge {challenge:?}")]
    UnsupportedChallenge { url: String, challenge: String },
    /// Any other non-success answer; `code`/`message` come from the OCI error JSON when present.
    #[error("{url}: HTTP {status}{}", oci_suffix(.code, .message))]
    Status {
        url: String,
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// The bytes do not hash to the digest asked for.
    #[error("{url}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    /// The blob is not as long as its descriptor says.
    #[error("{url}: size mismatch: the descriptor says {expected} bytes, the registry sent {actual}{}", if *.more { " or more" } else { "" })]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
        /// The registry sent (or announced) more than expected; `actual` is a lower bound.
        more: bool,
    },
    /// A manifest larger than [`super::client::MAX_MANIFEST`].
    #[error("{url}: manifest is larger than {limit} bytes; refusing")]
    ManifestTooLarge { url: String, limit: u64 },
    /// The manifest's media type is missing or contradicts itself.
    #[error("{url}: {what}")]
    BadManifest { url: String, what: ManifestType },
    /// Connection, TLS, timeout or stream errors.
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

fn oci_suffix(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) if !m.is_empty() => format!(" {c}: {m}"),
        (Some(c), _) => format!(" {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

/// `errors[0].code` and `.message` of an OCI error body, if it is one.
pub(crate) fn parse_oci_error(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => match b.errors.into_iter().next() {
            Some(i) => (i.code, i.message),
            None => (None, None),
        },
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_errors() {
        let (c, m) = parse_oci_error(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#,
        );
        assert_eq!(
            (c.as_deref(), m.as_deref()),
            (Some("MANIFEST_UNKNOWN"), Some("manifest unknown"))
        );
        assert_eq!(parse_oci_error(b"<html>404</html>"), (None, None));
        assert_eq!(parse_oci_error(br#"{"errors":[]}"#), (None, None));
        let e = Error::Status {
            url: "http://h/v2/x/manifests/1".into(),
            status: 404,
            code: c,
            message: m,
        };
        assert_eq!(
            e.to_string(),
            "http://h/v2/x/manifests/1: HTTP 404 MANIFEST_UNKNOWN: manifest unknown"
        );
    }
}

/// Why a manifest's media type cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestType {
    #[error("manifest is not a JSON object: {0}")]
    NotJson(String),
    #[error("Content-Type is {content_type} but the manifest says mediaType {media_type}")]
    Contradicts {
        content_type: String,
        media_type: String,
    },
    #[error("cannot tell the manifest's type (Content-Type {0:?}, no mediaType)")]
    Unknown(String),
}
