//! kubo's error shape: `{"Message": "...", "Code": n, "Type": "error"}` (go-ipfs-cmds
//! `error.go`). Code 1 (client error) answers 400, code 0 (normal error) answers 500.

use axum::{
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

/// An API failure, mapped to a status and a kubo error code in one place.
#[derive(Debug)]
pub enum ApiError {
    /// Bad arguments or options (kubo `ErrClient`).
    Client(String),
    /// The command failed (kubo `ErrNormal`).
    Failed(anyhow::Error),
    /// No such command.
    NotFound(String),
    /// Not a POST.
    Method(String),
    /// Refused before any handler: a web page's request, or a Host that is not this API's.
    Forbidden(String),
    /// A privileged command without the API token.
    Unauthorized(String),
}

impl ApiError {
    pub fn client(msg: impl Into<String>) -> Self {
        ApiError::Client(msg.into())
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::Failed(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Client(m) => (StatusCode::BAD_REQUEST, 1, m),
            ApiError::Failed(e) => (StatusCode::INTERNAL_SERVER_ERROR, 0, format!("{e:#}")),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, 0, m),
            ApiError::Method(m) => (StatusCode::METHOD_NOT_ALLOWED, 2, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, 1, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, 1, m),
        };
        (
            status,
            Json(json!({ "Message": message, "Code": code, "Type": "error" })),
        )
            .into_response()
    }
}

/// A known command called with another method than POST (kubo refuses GET since go-ipfs 0.5).
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::Method(format!(
        "{method} not allowed: the RPC API accepts only POST"
    ))
}

/// Fallback: an unknown command (or a non-POST to an unknown path under `/api/v0/`).
pub async fn unknown_command(method: Method, uri: axum::http::Uri) -> ApiError {
    if method != Method::POST && uri.path().starts_with("/api/v0/") {
        return ApiError::Method(format!(
            "{method} not allowed: the RPC API accepts only POST"
        ));
    }
    ApiError::NotFound(format!("unknown command: {}", uri.path()))
}
