//! OCI distribution errors (REFERENCE §7): `{"errors":[{"code","message","detail"}]}` with the
//! status each code goes with. Every failure of the registry becomes one of these here.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

#[derive(Debug)]
pub struct RegistryError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For a 416: the blob size, sent as `Content-Range: bytes */SIZE`.
    pub size: Option<u64>,
}

impl RegistryError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        RegistryError {
            status,
            code,
            message: message.into(),
            size: None,
        }
    }
    pub fn name_invalid(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "NAME_INVALID", m)
    }
    pub fn name_unknown(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", m)
    }
    pub fn digest_invalid(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", m)
    }
    pub fn manifest_unknown(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", m)
    }
    pub fn blob_unknown(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", m)
    }
    /// 503: the swarm did not deliver in time; Docker's registry answers `UNAVAILABLE` so, and
    /// clients retry 5xx.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", m)
    }
    pub fn unsupported(m: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", m)
    }
    pub fn name_denied(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "DENIED", m)
    }
    /// 401: a push without (known) credentials; the answer asks for basic auth.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m)
    }
    pub fn upload_unknown(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", m)
    }
    pub fn upload_invalid(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", m)
    }
    pub fn size_invalid(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "SIZE_INVALID", m)
    }
    pub fn manifest_invalid(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", m)
    }
    /// A pushed manifest names a blob (or manifest) that was not pushed.
    pub fn manifest_blob_unknown(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", m)
    }
    pub fn too_many(m: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", m)
    }
    /// 416 for a range outside the blob (no OCI code fits better than SIZE_INVALID).
    pub fn range(size: u64, why: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "SIZE_INVALID",
            format!("the requested range does not fit the {size}-byte blob: {why}"),
        );
        e.size = Some(size);
        e
    }
    /// The node failed (a block store error, a broken image): 500 with the reason.
    pub fn internal(e: anyhow::Error) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("{e:#}"),
        )
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body =
            json!({ "errors": [{ "code": self.code, "message": self.message, "detail": null }] });
        let mut r = (self.status, Json(body)).into_response();
        if let Some(size) = self.size {
            if let Ok(v) = format!("bytes */{size}").parse() {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        if self.code == "UNAUTHORIZED" {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"cidfs\""),
            );
        }
        r
    }
}
