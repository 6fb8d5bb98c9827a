//! The dashboard: one page, embedded in the binary (no external assets, so it works on an
//! air-gapped LAN), at `/ui/` of the API listener and, read-only, of the metrics listener. The
//! page polls [`state`] once a second and draws the node, its peers, the named images, the
//! mounts and the store, with the transfer rates of the last minutes.
//!
//! The page is same-origin with what it reads: its own fetches carry `Sec-Fetch-Site:
//! same-origin` and, since it is served with `Referrer-Policy: no-referrer`, no `Referer`, so
//! the API's guard ([`super::guard`]) admits them, while a request from any other page is
//! refused as before. Its Content-Security-Policy allows nothing but its own script, style and
//! fetches.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use std::sync::Arc;

use super::{image, mount, node, repo, ApiError, AppState};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Where the dashboard is.
pub const PATH: &str = "/ui/";
/// What its page polls.
pub const STATE: &str = "/ui/state";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, for the API listener's and the metrics listener's routers.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to(PATH) }))
        .route("/ui", get(|| async { Redirect::to(PATH) }))
        .route(
            PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(STATE, get(state))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /ui/state`: what the page shows, in one answer (the same figures as `id`,
/// `swarm/peers`, `image/ls`, `mounts` and `repo/stat`).
pub async fn state(State(st): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let id = node::id(State(st.clone())).await?.0;
    // an offline node has no peers, not an error
    let peers = match node::swarm_peers(State(st.clone())).await {
        Ok(Json(v)) => v["Peers"].clone(),
        Err(_) => json!([]),
    };
    let mut images = image::ls(State(st.clone())).await?.0;
    add_facts(&st, &mut images["Names"]).await?;
    let mounts = mount::mounts(State(st.clone())).await.0;
    // one snapshot for the store and the peers' counters (it reads the repo's disk use)
    let snap = repo::snapshot(&st).await?;
    let mut store = repo::stat_of(&st, &snap);
    store["GcTarget"] = st.gc_target.into();
    store["LastVerify"] = st
        .last_verify
        .lock()
        .ok()
        .and_then(|l| l.clone())
        .unwrap_or(Value::Null);
    // bitswap's counters per peer, beside each peer
    let per_peer: std::collections::HashMap<String, Value> = snap
        .peers
        .into_iter()
        .map(|(p, s)| {
            let v = json!({
                "BytesReceived": s.bytes_received,
                "BytesSent": s.bytes_sent,
                "BlocksReceived": s.blocks_received,
                "BlocksSent": s.blocks_sent,
                "DuplicateBlocks": s.duplicate_blocks,
                "RejectedBlocks": s.rejected_blocks,
            });
            (p.to_string(), v)
        })
        .collect();
    let mut peers = peers;
    if let Some(list) = peers.as_array_mut() {
        for p in list {
            let id = p["Peer"].as_str().unwrap_or_default().to_string();
            p["Bitswap"] = per_peer.get(&id).cloned().unwrap_or(json!({}));
        }
    }
    let body: Value = json!({
        "Node": id,
        "Version": env!("CARGO_PKG_VERSION"),
        "Peers": peers,
        "Images": images["Names"],
        "Mounts": mounts["Mounts"],
        "Store": store,
        "Mount": st.instruments.fuse_summary(),
    });
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Json(body),
    ))
}

/// What the images page shows of an image beyond its name: from this node's store alone (an
/// image not held here has none), the same for a CID for ever.
#[derive(Debug, Clone, serde::Serialize)]
struct Facts {
    #[serde(rename = "Platforms")]
    platforms: Vec<String>,
    #[serde(rename = "Layers")]
    layers: usize,
    /// Every layer carries a `toc.digest` (eStargz: lazily mountable).
    #[serde(rename = "Estargz")]
    estargz: bool,
}

/// [`Facts`] by image CID, of images held here, for the images page (bounded: when full, the
/// half with the lowest CIDs goes).
#[derive(Default)]
pub struct FactsCache(std::sync::Mutex<std::collections::BTreeMap<String, Facts>>);

/// Images whose facts are remembered at most.
const MAX_FACTS: usize = 4096;
/// Images resolved per answer at most (the rest show their facts on later polls).
const RESOLVES_PER_POLL: usize = 32;

async fn facts_of(st: &AppState, cid: &str) -> Option<Facts> {
    let local = st.blocks.local_only();
    let r = crate::image::pull::resolve(&local, cid.parse().ok()?, &[])
        .await
        .ok()?;
    let layers: Vec<_> = r.images.iter().flat_map(|i| &i.manifest.layers).collect();
    Some(Facts {
        platforms: r
            .images
            .iter()
            .map(|i| match &i.desc.platform {
                Some(p) => p.to_string(),
                // a lone manifest: its config says
                None => crate::image::oci::ConfigSummary::parse(&i.config)
                    .map(|c| c.platform().to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        layers: r.images.first().map_or(0, |i| i.manifest.layers.len()),
        estargz: !layers.is_empty()
            && layers.iter().all(|l| {
                l.annotations
                    .contains_key(crate::image::oci::ANNOTATION_TOC_DIGEST)
            }),
    })
}

/// Adds `Pinned` and the [`Facts`] to each image of `image/ls`'s `Names`.
async fn add_facts(st: &AppState, names: &mut Value) -> Result<(), ApiError> {
    let Some(list) = names.as_array_mut() else {
        return Ok(());
    };
    let pins: std::collections::HashSet<String> = st
        .blocks
        .with_store(|s| s.pins())
        .await?
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    let mut resolved = 0;
    for image in list {
        let cid = image["Cid"].as_str().unwrap_or_default().to_string();
        image["Pinned"] = pins.contains(&cid).into();
        let known = st.ui_facts.0.lock().ok().and_then(|m| m.get(&cid).cloned());
        let facts = match known {
            Some(f) => Some(f),
            None if resolved < RESOLVES_PER_POLL => {
                resolved += 1;
                let f = facts_of(st, &cid).await;
                // an image not (yet) held here is tried again later
                if let Some(f) = &f {
                    if let Ok(mut m) = st.ui_facts.0.lock() {
                        if m.len() >= MAX_FACTS {
                            let drop: Vec<String> = m.keys().take(MAX_FACTS / 2).cloned().collect();
                            for k in drop {
                                m.remove(&k);
                            }
                        }
                        m.insert(cid.clone(), f.clone());
                    }
                }
                f
            }
            None => None,
        };
        if let Some(f) = facts {
            image["Facts"] = serde_json::to_value(f).unwrap_or_default();
        }
    }
    Ok(())
}
