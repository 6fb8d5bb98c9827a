//! kubo's error shape: `{"Message": "...", "Code": n, "Type": "error"}` (go-ipfs-cmds
//! `error.go`). Code 1 (client error) answers 400, code 0 (normal error) answers 500, except
//! where the cause tells more: a block no peer delivered in time answers 504 (worth asking
//! again), one that is not on an offline node 404 ([`status_of`]).

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
            ApiError::Failed(e) => (status_of(&e), 0, format!("{e:#}")),
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

/// The status of a failed command, by its cause.
pub fn status_of(e: &anyhow::Error) -> StatusCode {
    use crate::blockservice::FetchError;
    match FetchError::find(e) {
        Some(FetchError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
        Some(FetchError::Missing(_)) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockservice::BlockService;
    use crate::blockstore::MemStore;

    /// A command that fails because no peer delivered a block in time answers 504, one whose
    /// block is not on this offline node 404, anything else 500: a caller can tell "try again"
    /// from "not here" from "broken".
    #[tokio::test]
    async fn failures_answer_by_their_cause() {
        let cid = crate::test_utils::absent_cid();
        let (online, task) = crate::test_utils::lone_node(std::time::Duration::from_secs(1));
        let e = anyhow::Error::from(
            crate::unixfs::stat(&online.session(), cid)
                .await
                .unwrap_err(),
        );
        assert_eq!(status_of(&e), StatusCode::GATEWAY_TIMEOUT, "{e:#}");
        task.abort();
        let offline = BlockService::new(std::sync::Arc::new(MemStore::default()), None);
        let e = anyhow::Error::from(
            crate::unixfs::stat(&offline.session(), cid)
                .await
                .unwrap_err(),
        );
        assert_eq!(status_of(&e), StatusCode::NOT_FOUND, "{e:#}");
        let response = ApiError::from(e.context("cat")).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(&anyhow::anyhow!("the store is broken")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
