//! `add`: multipart upload → UnixFS DAG (kubo's CIDs) → NDJSON `{"Name","Hash","Size"}` per file.
//! The body is streamed: chunks are hashed and stored in batches off the async workers, so a
//! large file is never held in memory.

use axum::{
    body::Body,
    extract::{Multipart, RawQuery, State},
    http::header,
    response::Response,
};
use serde_json::json;
use std::sync::Arc;

use super::{ApiError, AppState, Params};
use crate::unixfs::{AddOptions, Adder};

/// Bytes buffered before a batch is hashed and stored.
const BATCH: usize = 4 << 20;

pub async fn add(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
    mut mp: Multipart,
) -> Result<Response, ApiError> {
    let p = Params::parse(q);
    let opts = options(&p)?;
    let pin = p.bool("pin", true)?;
    let only_hash = p.bool("only-hash", false)?;
    // from the first block to the pin: gc must not sweep what is not pinned yet
    let _guard = if pin && !only_hash {
        Some(st.blocks.pin_guard().await)
    } else {
        None
    };
    let mut lines = String::new();
    let mut roots = Vec::new();
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::client(format!("bad multipart body: {e}")))?
    {
        let name = field.file_name().or(field.name()).unwrap_or("").to_string();
        let name = name.rsplit('/').next().unwrap_or("").to_string();
        let mut adder = Adder::new(&opts).map_err(|e| ApiError::client(e.to_string()))?;
        let mut buf = Vec::with_capacity(BATCH);
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| ApiError::client(format!("reading upload: {e}")))?
        {
            buf.extend_from_slice(&chunk);
            if buf.len() >= BATCH {
                adder = push(&st, adder, std::mem::take(&mut buf), only_hash).await?;
            }
        }
        adder = push(&st, adder, buf, only_hash).await?;
        let (root, size, blocks) = tokio::task::spawn_blocking(move || {
            let size = adder.cumulative_size();
            let (root, blocks) = adder.finish();
            (root, size, blocks)
        })
        .await?;
        // finish() may emit blocks that change the cumulative size
        let size = size + blocks.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        if !only_hash {
            st.blocks.put_many(blocks).await?;
            if pin {
                st.blocks.with_store(move |s| s.pin(&root)).await?;
            }
            roots.push(root);
        }
        let name = if name.is_empty() {
            root.to_string()
        } else {
            name
        };
        lines.push_str(
            &json!({ "Name": name, "Hash": root.to_string(), "Size": size.to_string() })
                .to_string(),
        );
        lines.push('\n');
    }
    if lines.is_empty() {
        return Err(ApiError::client(
            "no file given: send the content as a multipart/form-data part",
        ));
    }
    if let (false, Some(net)) = (roots.is_empty(), st.blocks.net()) {
        net.provide(roots).await?;
    }
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header("X-Chunked-Output", "1")
        .body(Body::from(lines))?)
}

/// Hashes `buf` into the adder and stores the blocks it completes.
async fn push(
    st: &AppState,
    mut adder: Adder,
    buf: Vec<u8>,
    only_hash: bool,
) -> Result<Adder, ApiError> {
    let (adder, blocks) = tokio::task::spawn_blocking(move || {
        let blocks = adder.push(&buf);
        (adder, blocks)
    })
    .await?;
    if !only_hash {
        st.blocks.put_many(blocks).await?;
    }
    Ok(adder)
}

/// kubo's add options: `cid-version`, `raw-leaves`, `chunker=size-N`, `hash=sha2-256`, and
/// `profile` (an import profile by name, e.g. `unixfs-v1-2025`; the other options change it).
fn options(p: &Params) -> Result<AddOptions, ApiError> {
    let mut opts = match p.get("profile") {
        None => AddOptions::kubo_v0(),
        Some(name) => AddOptions::profile(name).ok_or_else(|| {
            ApiError::client(format!(
                "option \"profile\": {name:?} is not one of {}",
                AddOptions::PROFILES.join(", ")
            ))
        })?,
    };
    match p.get("cid-version") {
        None => {}
        Some("0") => opts.cid_version = 0,
        Some("1") => opts.cid_version = 1,
        Some(v) => {
            return Err(ApiError::client(format!(
                "option \"cid-version\": {v:?} must be 0 or 1"
            )))
        }
    }
    if p.get("raw-leaves").is_some() {
        opts.raw_leaves = Some(p.bool("raw-leaves", false)?);
    }
    if let Some(ch) = p.get("chunker") {
        let size = ch
            .strip_prefix("size-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::client(format!(
                    "option \"chunker\": {ch:?} is not supported (use size-<bytes>)"
                ))
            })?;
        opts.chunk_size = size;
    }
    if let Some(h) = p.get("hash") {
        if h != "sha2-256" {
            return Err(ApiError::client(format!(
                "option \"hash\": {h:?} is not supported (only sha2-256)"
            )));
        }
    }
    if p.get("trickle").is_some_and(|v| v == "true") {
        return Err(ApiError::client(
            "option \"trickle\": only the balanced layout is supported",
        ));
    }
    Ok(opts)
}
