//! `cat` (with `offset` / `length`) and `files/stat` over UnixFS files, fetching only the blocks
//! that cover the requested range.

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::header,
    response::Response,
    Json,
};
use serde_json::{json, Value};
use std::sync::Arc;

use super::{ApiError, AppState, Params};
use crate::unixfs;

pub async fn cat(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q);
    let root = p.cid("ipfs-path")?;
    let offset = p.u64("offset")?.unwrap_or(0);
    let length = p.u64("length")?;
    let getter = st.blocks.getter_for(root, offset, length, None);
    let info = unixfs::stat(&getter, root).await?;
    let available = info.size.saturating_sub(offset);
    let n = length.map_or(available, |l| l.min(available));
    let body = Body::from_stream(unixfs::io::cat(&st.blocks, getter, root, offset, length));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .header("X-Stream-Output", "1")
        .header("X-Content-Length", n.to_string())
        .header(header::CONTENT_LENGTH, n.to_string())
        .body(body)?)
}

pub async fn files_stat(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q);
    let path = p.arg("path")?;
    if !path.starts_with("/ipfs/") {
        return Err(ApiError::client(format!(
            "{path:?}: only /ipfs/<cid> paths are supported (there is no MFS)"
        )));
    }
    let root = super::parse_cid(path)?;
    let info = unixfs::stat(&st.blocks.session(), root).await?;
    Ok(Json(json!({
        "Hash": root.to_string(),
        "Size": info.size,
        "CumulativeSize": info.cumulative_size,
        "Blocks": info.blocks,
        "Type": info.kind.as_str(),
    })))
}
