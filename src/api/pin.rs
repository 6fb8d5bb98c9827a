//! `pin/add` (fetches the whole DAG first), `pin/ls` (a `Keys` map, or NDJSON with `stream`),
//! `pin/rm`. All pins are recursive.

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use cid::Cid;
use serde_json::{json, Map, Value};
use std::sync::Arc;

use super::{ApiError, AppState, Params};

pub async fn add(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q);
    p.arg("ipfs-path")?;
    let roots = p
        .args()
        .into_iter()
        .map(super::parse_cid)
        .collect::<Result<Vec<_>, _>>()?;
    if !p.bool("recursive", true)? {
        return Err(ApiError::client("only recursive pins are supported"));
    }
    // all or none, as kubo: every DAG is fetched, then all are pinned at once
    st.blocks
        .fetch_and_pin(&roots, st.blocks.readahead())
        .await?;
    if let Some(net) = st.blocks.net() {
        net.provide(roots.clone()).await?;
    }
    let pins: Vec<String> = roots.iter().map(Cid::to_string).collect();
    Ok(Json(json!({ "Pins": pins })))
}

pub async fn ls(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q);
    let pins = st.blocks.with_store(|s| s.pins()).await?;
    let wanted = match p.args().first() {
        Some(a) => {
            let cid = super::parse_cid(a)?;
            if !pins.contains(&cid) {
                return Err(ApiError::Failed(anyhow::anyhow!(
                    "path '{a}' is not pinned"
                )));
            }
            vec![cid]
        }
        None => pins,
    };
    if p.bool("stream", false)? {
        // kubo `pin ls --stream`: one NDJSON object per pin (kubo-rpc-client asks for this)
        let mut lines = String::new();
        for c in wanted {
            lines.push_str(
                &json!({ "Cid": c.to_string(), "Name": "", "Type": "recursive" }).to_string(),
            );
            lines.push('\n');
        }
        return Ok(Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .header("X-Chunked-Output", "1")
            .body(Body::from(lines))?);
    }
    let keys: Map<String, Value> = wanted
        .into_iter()
        .map(|c| (c.to_string(), json!({ "Type": "recursive" })))
        .collect();
    Ok(Json(json!({ "Keys": keys })).into_response())
}

pub async fn rm(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let root = Params::parse(q).cid("ipfs-path")?;
    if !st.blocks.with_store(move |s| s.unpin(&root)).await? {
        return Err(ApiError::Failed(anyhow::anyhow!("{root} is not pinned")));
    }
    Ok(Json(json!({ "Pins": [root.to_string()] })))
}
