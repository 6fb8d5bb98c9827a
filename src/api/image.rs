//! The image names of the node (set by pushes to the registry endpoint): `image/ls` (every
//! name with its CID), `image/resolve` (`arg=NAME[:TAG]` or a CID reference → the image CID),
//! `image/tag` (`arg=IMAGE&arg=NAME[:TAG]`), `image/rm` (`arg=NAME[:TAG]`), `image/history`,
//! and `image/pin` / `image/unpin` (`arg=IMAGE`: every blob of the image, not only its root).
//! Not kubo commands; same conventions.

use axum::{
    extract::{RawQuery, State},
    Json,
};
use serde_json::{json, Value};
use std::sync::Arc;

use super::{ApiError, AppState, Params};

/// Every name with its image: CID, size, who pushed it, which live nodes hold it fully.
pub async fn ls(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let all = on_names(&st, |n| n.all()).await?;
    let list: Vec<Value> = all
        .into_iter()
        .map(|(name, n)| {
            let facts = st.catalog.get(&n.cid).unwrap_or_default();
            let size = st.copies.size_of(&n.cid).or(facts.size);
            json!({
                "Name": name,
                "Cid": n.cid,
                "Size": size,
                "PushedDigest": n.pushed_digest,
                "PushedAt": n.pushed_at,
                "PushedBy": n.origin,
                "Holders": st.copies.holders(&n.cid),
                "PartialHolders": st.copies.partial_holders(&n.cid),
                "Policy": st.copies.policy(&name),
                "Preload": facts.preload,
            })
        })
        .collect();
    Ok(Json(json!({ "Names": list, "Self": st.copies.me() })))
}

pub async fn resolve(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let cid = image_arg(&st, q, "image/resolve")?;
    Ok(Json(json!({ "Cid": cid.to_string() })))
}

/// `image/pin`: fetches every blob of the image (index, manifests, configs, layers) through the
/// swarm's shared fetch and pins them all, as a preload rule would; announces the root.
pub async fn pin(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let root = image_arg(&st, q, "image/pin")?;
    let resolved = crate::image::pull::resolve(&st.blocks, root, &[])
        .await
        .map_err(|e| ApiError::Failed(e.into()))?;
    let blobs = resolved.blob_cids(true).map_err(ApiError::Failed)?;
    st.blocks
        .fetch_and_pin(&blobs, st.blocks.readahead())
        .await?;
    if let Some(net) = st.blocks.net() {
        net.provide(vec![root]).await?;
    }
    Ok(Json(
        json!({ "Cid": root.to_string(), "Pinned": blobs.len() }),
    ))
}

/// `image/unpin`: unpins every blob of the image (resolved from this node's store alone), so
/// `repo gc` frees what no other pin holds. Its names stay.
pub async fn unpin(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let root = image_arg(&st, q, "image/unpin")?;
    let local = st.blocks.local_only();
    let resolved = crate::image::pull::resolve(&local, root, &[])
        .await
        .map_err(|e| {
            ApiError::Failed(anyhow::Error::new(e).context("the image is not all on this node"))
        })?;
    let blobs = resolved.blob_cids(true).map_err(ApiError::Failed)?;
    let n = unpin_all(&st, blobs).await?;
    Ok(Json(json!({ "Cid": root.to_string(), "Unpinned": n })))
}

/// Unpins `cids` on this node; how many pins went.
async fn unpin_all(st: &AppState, cids: Vec<cid::Cid>) -> Result<usize, ApiError> {
    let n = st
        .blocks
        .with_store(move |s| {
            let mut n = 0;
            for c in &cids {
                n += usize::from(s.unpin(c)?);
            }
            Ok(n)
        })
        .await?;
    Ok(n)
}

/// The CID of a request's one argument, a NAME[:TAG] or a CID.
fn image_arg(st: &AppState, q: Option<String>, cmd: &str) -> Result<cid::Cid, ApiError> {
    let usage = format!("{cmd} takes one argument: NAME[:TAG] or a CID");
    let image = one_arg(&Params::parse(q), &usage)?;
    super::resolve_image(st, &image)
}

/// `NAME[:TAG]` of an argument; a CID is not a name.
fn name_arg(text: &str) -> Result<(String, String), ApiError> {
    match crate::cidref::parse_image(text) {
        Ok(crate::cidref::ImageRef::Named { repo, tag }) => Ok((repo, tag)),
        _ => Err(ApiError::client(format!(
            "{text:?} is not a NAME[:TAG] (lowercase, e.g. team/app:1.0)"
        ))),
    }
}

/// The one argument of a request; `usage` when there is not exactly one.
fn one_arg(p: &Params, usage: &str) -> Result<String, ApiError> {
    match p.args().as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(ApiError::client(usage)),
    }
}

/// Runs a name-table operation off the async workers (sled does I/O).
async fn on_names<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(crate::image::names::Names) -> Result<T, crate::image::names::NamesError>
        + Send
        + 'static,
) -> Result<T, ApiError> {
    let names = st.names.clone();
    tokio::task::spawn_blocking(move || f(names))
        .await
        .map_err(|e| ApiError::Failed(e.into()))?
        .map_err(|e| ApiError::Failed(e.into()))
}

pub async fn tag(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q);
    let args = p.args();
    let [image, name] = args.as_slice() else {
        return Err(ApiError::client(
            "image/tag takes two arguments: the image (CID or NAME[:TAG]) and the new NAME[:TAG]",
        ));
    };
    let cid = super::resolve_image(&st, image)?;
    let (repo, tag) = name_arg(name)?;
    let named = on_names(&st, move |n| n.set(&repo, &tag, cid, "")).await?;
    Ok(Json(json!({ "Cid": named.cid })))
}

/// `image/rm NAME`: removes the name (in the whole swarm: a tombstone), then, unless
/// `keep=true`, unpins on this node the image's blobs that no image still named here needs, so
/// `repo gc` frees them (no other node's copy is touched).
pub async fn rm(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q);
    let keep = p.bool("keep", false)?;
    let text = one_arg(&p, "image/rm takes one argument: NAME[:TAG]")?;
    let (repo, tag) = name_arg(&text)?;
    let Some(was) = on_names(&st, move |n| n.remove(&repo, &tag)).await? else {
        return Err(ApiError::Failed(anyhow::anyhow!(
            "{text} names nothing here"
        )));
    };
    let unpinned = match keep {
        true => 0,
        false => unpin_unnamed(&st, &was.cid).await?,
    };
    Ok(Json(json!({ "Removed": text, "Unpinned": unpinned })))
}

/// Unpins the blobs of `image` (resolved from this node's store alone) that no image still
/// named here needs, none when another name stands for it; how many pins went.
async fn unpin_unnamed(st: &AppState, image: &str) -> Result<usize, ApiError> {
    use crate::image::pull;
    let named = on_names(st, |n| n.all()).await?;
    let others: std::collections::BTreeSet<&str> =
        named.iter().map(|(_, v)| v.cid.as_str()).collect();
    if others.contains(image) {
        // another name still stands for the image
        return Ok(0);
    }
    let local = st.blocks.local_only();
    let blobs = |cid: &str| {
        let (local, cid) = (local.clone(), cid.parse::<cid::Cid>());
        async move {
            let r = pull::resolve(&local, cid.ok()?, &[]).await.ok()?;
            r.blob_cids(true).ok()
        }
    };
    let Some(mine) = blobs(image).await else {
        return Ok(0);
    };
    let mut keep = std::collections::HashSet::new();
    for other in others {
        keep.extend(blobs(other).await.unwrap_or_default());
    }
    let unpin: Vec<cid::Cid> = mine.into_iter().filter(|c| !keep.contains(c)).collect();
    unpin_all(st, unpin).await
}

pub async fn history(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let text = one_arg(
        &Params::parse(q),
        "image/history takes one argument: NAME[:TAG]",
    )?;
    let (repo, tag) = name_arg(&text)?;
    let list = on_names(&st, move |n| {
        let mut all = n.history(&repo, &tag)?;
        all.extend(n.get(&repo, &tag)?);
        Ok(all)
    })
    .await?;
    let list: Vec<Value> = list
        .into_iter()
        .map(|n| json!({ "Cid": n.cid, "PushedDigest": n.pushed_digest, "PushedAt": n.pushed_at }))
        .collect();
    Ok(Json(json!({ "History": list })))
}
