//! `add`: multipart upload → UnixFS DAG (kubo's CIDs) → NDJSON `{"Name","Hash","Size"}` per file.
//! The body is streamed through [`crate::unixfs::io::add_stream`], so a large
//! file is never held in memory.
//!
//! cidfs's own clients may send, before a file part, a part named `leaf-ends`: a JSON array of
//! the file offsets where its leaves end (an eStargz layer cut at its gzip members, see
//! `cidfs_formats::estargz::cuts`). It applies to the next file only.

use axum::{
    body::Body,
    extract::{Multipart, RawQuery, State},
    http::header,
    response::Response,
};
use serde_json::json;
use std::sync::Arc;

use super::{ApiError, AppState, Params};
use crate::unixfs::io::{add_stream, AddError};
use crate::unixfs::{AddOptions, Adder};

/// The name of the part that plans the next file's leaves.
pub const LEAF_ENDS_PART: &str = "leaf-ends";
/// Largest `leaf-ends` part: [`cidfs_formats::unixfs::MAX_LEAF_ENDS`] ends of up to 13 digits.
const MAX_LEAF_ENDS_PART: usize = 16 << 20;

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
    let mut planned: Option<Vec<u64>> = None;
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::client(format!("bad multipart body: {e}")))?
    {
        // a `leaf-ends` part plans the next file's leaves; a file part gets its adder
        let adder = if field.file_name().is_none() && field.name() == Some(LEAF_ENDS_PART) {
            leaf_ends(&mut field).await.map(|ends| {
                planned = Some(ends);
                None
            })
        } else {
            match planned.take() {
                Some(ends) => Adder::with_leaf_ends(ends),
                None => Adder::new(&opts),
            }
            .map(Some)
            .map_err(|e| ApiError::client(format!("add options: {e}")))
        };
        let adder = match adder {
            Ok(Some(adder)) => adder,
            Ok(None) => continue,
            // refused before its bytes are added: the rest of the upload is read first
            Err(e) => {
                let until = drain_deadline();
                drain_field(field, until).await;
                drain(&mut mp, until).await;
                return Err(e);
            }
        };
        let name = field.file_name().or(field.name()).unwrap_or("").to_string();
        let name = name.rsplit('/').next().unwrap_or("").to_string();
        let chunks = futures::stream::unfold(field, |mut field| async move {
            field.chunk().await.transpose().map(|chunk| (chunk, field))
        });
        let added = match add_stream(&st.blocks, adder, chunks, !only_hash, &|_| {}).await {
            Ok(added) => added,
            Err(e) => {
                // read the rest of the upload before answering: a client still sending it
                // would otherwise see the connection close (a broken pipe) and not the reason
                drain(&mut mp, drain_deadline()).await;
                return Err(match e {
                    AddError::Input(_) => ApiError::client(e.to_string()),
                    AddError::Store(e) => ApiError::from(e),
                });
            }
        };
        let (root, size) = (added.root, added.cumulative_size);
        if !only_hash {
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

/// The ends a `leaf-ends` part lists (checked when the adder is made).
async fn leaf_ends(field: &mut axum::extract::multipart::Field<'_>) -> Result<Vec<u64>, ApiError> {
    let text = super::read_part(field, MAX_LEAF_ENDS_PART, || {
        format!("the {LEAF_ENDS_PART} part is over {MAX_LEAF_ENDS_PART} bytes")
    })
    .await?;
    serde_json::from_slice(&text).map_err(|e| {
        ApiError::client(format!(
            "the {LEAF_ENDS_PART} part is not a JSON array of offsets: {e}"
        ))
    })
}

/// How long a failed add keeps reading the rest of its upload before it answers.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// When a refusal stops draining: [`DRAIN_FOR`] from now, one deadline for all of it.
fn drain_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + DRAIN_FOR
}

/// Reads and drops what is left of an upload, until `until`, before a refusal is answered: a
/// client still sending would otherwise see the connection reset (the unread bytes make the
/// close a TCP reset) and not the reason. See also [`drain_field`].
async fn drain(mp: &mut Multipart, until: tokio::time::Instant) {
    let rest = async {
        while let Ok(Some(field)) = mp.next_field().await {
            drain_field(field, until).await;
        }
    };
    let _ = tokio::time::timeout_at(until, rest).await;
}

/// [`drain`] for the rest of one part (the one being refused), until `until`.
async fn drain_field(mut field: axum::extract::multipart::Field<'_>, until: tokio::time::Instant) {
    let rest = async { while let Ok(Some(_)) = field.chunk().await {} };
    let _ = tokio::time::timeout_at(until, rest).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::FromRequest as _;
    use futures::StreamExt as _;

    /// A refused part whose client never finishes sending it: the refusal reads for
    /// [`DRAIN_FOR`] in all, not [`DRAIN_FOR`] for the part and as long again for the rest.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_drains_for_one_deadline_in_all() {
        let head =
            "--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nsome";
        let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(head))])
            .chain(futures::stream::pending());
        let request = axum::http::Request::builder()
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=X")
            .body(Body::from_stream(body))
            .unwrap();
        let mut mp = Multipart::from_request(request, &()).await.unwrap();
        let field = mp.next_field().await.unwrap().unwrap();
        let began = tokio::time::Instant::now();
        let until = drain_deadline();
        drain_field(field, until).await;
        drain(&mut mp, until).await;
        assert_eq!(began.elapsed(), DRAIN_FOR);
    }
}
