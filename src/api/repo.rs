//! `repo/gc`, `repo/stat`, `repo/verify` and the Prometheus `/metrics` page.

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::header,
    response::IntoResponse,
    Json,
};
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::sync::Arc;

use super::{ApiError, AppState, Params};
use crate::metrics;

/// `repo/verify` reports progress after this many blocks.
const VERIFY_PROGRESS_EVERY: u64 = 1024;

/// kubo's answer: one NDJSON line `{"Key":{"/":"<cid>"}}` per removed block. `target=BYTES`
/// (a cidfs extension) stops once the store holds at most that many bytes of blocks.
pub async fn gc(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let target = Params::parse(q).u64("target")?;
    let report = st
        .blocks
        .collect(move |s| crate::blockstore::gc_to(s, target))
        .await?;
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

/// `repo/verify`, as kubo: re-hashes every block and streams NDJSON lines, `{"Msg":"","Progress":N}`
/// every [`VERIFY_PROGRESS_EVERY`] blocks, `{"Msg":"block <cid> was corrupt (<why>)","Progress":0}`
/// per bad block, and a last line with the verdict. `remove=true` (a cidfs extension) deletes
/// corrupt blocks so that the next read fetches good copies from peers.
pub async fn verify(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let remove = Params::parse(q).bool("remove", false)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Value>(64);
    let blocks = st.blocks.clone();
    let last = st.last_verify.clone();
    tokio::spawn(async move {
        let progress = tx.clone();
        let report = blocks
            .with_store(move |s| {
                crate::blockstore::verify_all(s, remove, |n| {
                    if n % VERIFY_PROGRESS_EVERY == 0 {
                        // the client went away: finish anyway (the log has the findings)
                        let _ = progress.blocking_send(json!({ "Msg": "", "Progress": n }));
                    }
                })
            })
            .await;
        let mut lines = Vec::new();
        match report {
            Ok(r) => {
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if let Ok(mut l) = last.lock() {
                    *l =
                        Some(json!({ "At": at, "Checked": r.checked, "Corrupt": r.corrupt.len() }));
                }
                for c in &r.corrupt {
                    let removed = if c.removed { "; removed" } else { "" };
                    lines.push(json!({
                        "Msg": format!("block {} was corrupt ({}){removed}", c.cid, c.reason),
                        "Progress": 0,
                    }));
                }
                let verdict = if r.corrupt.is_empty() {
                    "verified repo integrity".to_string()
                } else {
                    format!("{} of {} blocks were corrupt", r.corrupt.len(), r.checked)
                };
                lines.push(json!({ "Msg": verdict, "Progress": r.checked }));
            }
            Err(e) => lines.push(json!({ "Message": format!("{e:#}"), "Type": "error" })),
        }
        for l in lines {
            let _ = tx.send(l).await;
        }
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|v| Ok::<_, std::convert::Infallible>(format!("{v}\n")));
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("x-chunked-output"), "1"),
        ],
        Body::from_stream(body),
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

/// The node's counters now, for `repo/stat` and `/metrics`.
pub(super) async fn snapshot(st: &AppState) -> anyhow::Result<metrics::Snapshot> {
    let store = st.blocks.with_store(|s| s.stat()).await?;
    let net = st.blocks.net();
    let repo = st.repo_path.clone();
    let disk_bytes = tokio::task::spawn_blocking(move || metrics::disk_usage(&repo)).await?;
    Ok(metrics::Snapshot {
        store,
        net: net.map(|n| n.stats()).unwrap_or_default(),
        peers: net.map(|n| n.peer_stats()).unwrap_or_default(),
        disk_bytes,
        registry: st.instruments.registry.stat(),
    })
}

pub async fn stat(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let s = snapshot(&st).await?;
    Ok(Json(stat_of(&st, &s)))
}

/// `repo/stat`'s answer from a snapshot.
pub(super) fn stat_of(st: &AppState, s: &metrics::Snapshot) -> Value {
    json!({
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
    })
}

pub async fn metrics(State(st): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let s = snapshot(&st).await?;
    Ok((
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&st.instruments, s),
    ))
}
