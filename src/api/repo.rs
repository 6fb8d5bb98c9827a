//! `repo/gc`, `repo/stat` and the Prometheus `/metrics` page.

use axum::{extract::State, http::header, response::IntoResponse, Json};
use serde_json::{json, Value};
use std::sync::Arc;

use super::{ApiError, AppState};
use crate::metrics;

/// kubo's answer: one NDJSON line `{"Key":{"/":"<cid>"}}` per removed block.
pub async fn gc(State(st): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let report = st.blocks.with_store(crate::blockstore::gc).await?;
    Ok(ndjson(
        report
            .removed
            .iter()
            .map(|cid| json!({ "Key": { "/": cid.to_string() } })),
    ))
}

/// `refs/local`: every stored block, as kubo's NDJSON lines `{"Ref":"<cid>","Err":""}`.
pub async fn refs_local(State(st): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let cids = st.blocks.with_store(|s| s.cids()).await?;
    Ok(ndjson(
        cids.iter()
            .map(|cid| json!({ "Ref": cid.to_string(), "Err": "" })),
    ))
}

/// A kubo-style NDJSON answer (`X-Chunked-Output: 1`), one line per value.
fn ndjson(values: impl Iterator<Item = Value>) -> axum::response::Response {
    let mut lines = String::new();
    for v in values {
        lines.push_str(&v.to_string());
        lines.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("x-chunked-output"), "1"),
        ],
        lines,
    )
        .into_response()
}

pub async fn stat(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let s = metrics::Snapshot::take(&st.blocks, &st.repo_path, &st.registry).await?;
    Ok(Json(json!({
        "RepoSize": s.disk_bytes,
        "StorageMax": 0,
        "NumObjects": s.store.blocks,
        "RepoPath": st.repo_path.display().to_string(),
        "Version": "cidfs-1",
        "BlockBytes": s.store.bytes,
        "BlocksFetched": s.net.blocks_received,
        "BytesFetched": s.net.bytes_received,
        "BlocksSent": s.net.blocks_sent,
        "BytesSent": s.net.bytes_sent,
        "DuplicateBlocks": s.net.duplicate_blocks,
        "RejectedBlocks": s.net.rejected_blocks,
        "RegistryManifests": s.registry.manifests,
        "RegistryConfigs": s.registry.configs,
        "RegistryLayers": s.registry.layers,
        "RegistryLayerBytes": s.registry.layer_bytes,
    })))
}

pub async fn metrics(State(st): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let s = metrics::Snapshot::take(&st.blocks, &st.repo_path, &st.registry).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.render(),
    ))
}
