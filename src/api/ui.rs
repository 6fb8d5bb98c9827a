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
    http::{header, HeaderName},
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
    let images = image::ls(State(st.clone())).await?.0;
    let mounts = mount::mounts(State(st.clone())).await.0;
    let store = repo::stat(State(st.clone())).await?.0;
    // bitswap's counters per peer, beside each peer
    let per_peer: std::collections::HashMap<String, Value> = repo::snapshot(&st)
        .await?
        .peers
        .into_iter()
        .map(|(p, s)| {
            let v = json!({
                "BytesReceived": s.bytes_received,
                "BytesSent": s.bytes_sent,
                "BlocksReceived": s.blocks_received,
                "BlocksSent": s.blocks_sent,
                "DuplicateBlocks": s.duplicate_blocks,
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
            (HeaderName::from_static("x-content-type-options"), "nosniff"),
        ],
        Json(body),
    ))
}
