//! `block/get`, `block/put`, `block/stat`: single blocks by CID.

use axum::{
    body::Body,
    extract::{Multipart, RawQuery, State},
    http::header,
    response::Response,
    Json,
};
use cid::Cid;
use serde_json::{json, Value};
use std::sync::Arc;

use super::{ApiError, AppState, Params};
use crate::blockstore;

pub async fn get(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let cid = Params::parse(q).cid("cid")?;
    let data = st.blocks.get(cid, &Default::default()).await?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("X-Stream-Output", "1")
        .body(Body::from(data))?)
}

pub async fn stat(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let cid = Params::parse(q).cid("cid")?;
    let data = st.blocks.get(cid, &Default::default()).await?;
    Ok(Json(json!({ "Key": cid.to_string(), "Size": data.len() })))
}

/// Stores each multipart part as one block. Options as kubo: `cid-codec` (raw, dag-pb),
/// `mhtype` (sha2-256), legacy `format=v0`, `pin`.
pub async fn put(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
    mut mp: Multipart,
) -> Result<Response, ApiError> {
    let p = Params::parse(q);
    // The deprecated `format` wins over `cid-codec`, as in kubo: `v0` and the legacy name
    // `protobuf` mean CIDv0 dag-pb; a codec name means CIDv1 with that codec.
    let codec = match (
        p.get("format").filter(|f| !f.is_empty()),
        p.get("cid-codec"),
    ) {
        (Some("v0" | "protobuf"), _) => None,
        (Some("raw"), _) | (None, None | Some("raw" | "")) => Some(blockstore::RAW),
        (Some("dag-pb"), _) | (None, Some("dag-pb")) => Some(blockstore::DAG_PB),
        (Some(c), _) | (None, Some(c)) => {
            return Err(ApiError::client(format!(
                "block format {c:?} is not supported (raw, dag-pb or v0)"
            )))
        }
    };
    if let Some(h) = p.get("mhtype").filter(|h| *h != "sha2-256") {
        return Err(ApiError::client(format!(
            "option \"mhtype\": {h:?} is not supported (only sha2-256)"
        )));
    }
    let pin = p.bool("pin", false)?;
    let _guard = if pin {
        Some(st.blocks.pin_guard().await)
    } else {
        None
    };
    let mut out = String::new();
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::client(format!("bad multipart body: {e}")))?
    {
        let data = read_block(field).await?;
        let mh = cidfs_p2p::bitswap::message::hash(blockstore::SHA2_256, &data)?;
        let cid = match codec {
            Some(c) => Cid::new_v1(c, mh),
            None => Cid::new_v0(mh)?,
        };
        let len = data.len();
        st.blocks
            .with_store(move |s| {
                s.put(&cid, &data)?;
                if pin {
                    s.pin(&cid)?;
                }
                Ok(())
            })
            .await?;
        out.push_str(&json!({ "Key": cid.to_string(), "Size": len }).to_string());
        out.push('\n');
    }
    if out.is_empty() {
        return Err(ApiError::client(
            "no block given: send the data as a multipart/form-data part",
        ));
    }
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(out))?)
}

/// A part's bytes, refused as soon as they pass the block limit (M8: the whole part was
/// buffered before the check, so one request could fill the memory).
async fn read_block(mut field: axum::extract::multipart::Field<'_>) -> Result<Vec<u8>, ApiError> {
    let limit = cidfs_p2p::bitswap::codec::MAX_BLOCK_SIZE;
    super::read_part(&mut field, limit, || {
        format!("block exceeds the {limit}-byte limit")
    })
    .await
}
