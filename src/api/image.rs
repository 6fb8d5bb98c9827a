//! `image/ls` (the names pushed to the registry endpoint, with their CIDs) and `image/resolve`
//! (`arg=NAME[:TAG]` or a CID reference → the image CID). Not kubo commands; same conventions.

use axum::{
    extract::{RawQuery, State},
    Json,
};
use serde_json::{json, Value};
use std::sync::Arc;

use super::{ApiError, AppState, Params};

pub async fn ls(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let names = st.names.clone();
    let all = tokio::task::spawn_blocking(move || names.all())
        .await
        .map_err(|e| ApiError::Failed(e.into()))?
        .map_err(|e| ApiError::Failed(e.into()))?;
    let list: Vec<Value> = all
        .into_iter()
        .map(|(name, n)| {
            json!({ "Name": name, "Cid": n.cid, "PushedDigest": n.pushed_digest, "PushedAt": n.pushed_at })
        })
        .collect();
    Ok(Json(json!({ "Names": list })))
}

pub async fn resolve(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q);
    let args = p.args();
    let [image] = args.as_slice() else {
        return Err(ApiError::client(
            "image/resolve takes one argument: NAME[:TAG] or a CID",
        ));
    };
    let cid = super::resolve_image(&st, image)?;
    Ok(Json(json!({ "Cid": cid.to_string() })))
}
