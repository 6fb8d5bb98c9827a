//! `mount` (`arg=REF`, `arg=DIR`, `allow-other`, repeated `platform`), `umount` (`arg=DIR`),
//! `mounts` and `mount/trace` (`arg=DIR`: the files read so far, in the order of their first
//! read): lazy image mounts served by the daemon. Not kubo commands; same conventions.

use axum::{
    extract::{RawQuery, State},
    Json,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

use super::{ApiError, AppState, Params};
use crate::image::oci::Platform;
use crate::mount::MountRequest;

pub async fn mount(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q);
    let args = p.args();
    let [image, dir] = args.as_slice() else {
        return Err(ApiError::client(
            "mount takes two arguments: the image (CID, ipfs://CID, /ipfs/CID or a pushed NAME:TAG) and the directory",
        ));
    };
    let image = super::resolve_image(&st, image)?;
    let platforms = p
        .all("platform")
        .into_iter()
        .map(|s| Platform::parse(s).map_err(|e| ApiError::client(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let req = MountRequest {
        image,
        dir: PathBuf::from(dir),
        allow_other: p.bool("allow-other", false)?,
        platforms,
    };
    Ok(Json(json!(st.mounts.mount(req).await?)))
}

pub async fn umount(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q);
    let dir = PathBuf::from(p.arg("dir")?);
    Ok(Json(json!(st.mounts.unmount_user(&dir).await?)))
}

pub async fn mounts(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "Mounts": st.mounts.list().await }))
}

pub async fn trace(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q);
    let dir = PathBuf::from(p.arg("dir")?);
    let (files, dropped) = st.mounts.trace(&dir).await?;
    Ok(Json(json!({ "Files": files, "Dropped": dropped })))
}
