//! The kubo RPC subset on axum (REFERENCE §2.5): every command is a POST to `/api/v0/<cmd>`,
//! positional arguments are repeated `arg=` query parameters and options go by their long name.
//! Handlers parse, call a typed function of a lower level and map its error; no logic lives here.

mod add;
mod block;
mod cat;
mod error;
pub mod guard;
mod image;
mod mount;
mod node;
mod pin;
mod repo;
pub mod ui;

use axum::{extract::DefaultBodyLimit, routing::post, Router};
use libp2p::identity::PublicKey;
use std::path::PathBuf;
use std::sync::Arc;

use crate::blockservice::BlockService;
pub use add::LEAF_ENDS_PART;
pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub blocks: BlockService,
    pub public_key: PublicKey,
    pub repo_path: PathBuf,
    pub metrics: bool,
    pub mounts: crate::mount::Mounts,
    /// The live instruments (`/metrics`; the registry's counters are in `repo/stat` too).
    pub instruments: crate::metrics::Metrics,
    /// Image names pushed to the registry endpoint (`image/ls`, and every image argument).
    pub names: crate::image::names::Names,
    /// Who holds which image (`image/ls`).
    pub copies: crate::image::copies::Copies,
    /// What the preload worker learnt of each named image (`image/ls`).
    pub catalog: crate::image::preload::Catalog,
    /// What the dashboard learnt of each image it showed.
    pub ui_facts: Arc<ui::FactsCache>,
    /// `store.gc_target_mb` in bytes, if set (the dashboard's store page).
    pub gc_target: Option<u64>,
    /// The outcome of the last `repo/verify` since the daemon started: `{"At", "Checked",
    /// "Corrupt"}` (the dashboard's store page).
    pub last_verify: Arc<std::sync::Mutex<Option<serde_json::Value>>>,
}

/// The API router; every request passes `guard` first.
pub fn router(state: AppState, guard: guard::Guard) -> Router {
    let metrics = state.metrics;
    let api = Router::new()
        .route("/api/v0/add", post(add::add))
        .route("/api/v0/cat", post(cat::cat))
        .route("/api/v0/files/stat", post(cat::files_stat))
        .route("/api/v0/block/get", post(block::get))
        .route("/api/v0/block/put", post(block::put))
        .route("/api/v0/block/stat", post(block::stat))
        .route("/api/v0/id", post(node::id))
        .route("/api/v0/image/ls", post(image::ls))
        .route("/api/v0/image/resolve", post(image::resolve))
        .route("/api/v0/image/tag", post(image::tag))
        .route("/api/v0/image/rm", post(image::rm))
        .route("/api/v0/image/history", post(image::history))
        .route("/api/v0/image/pin", post(image::pin))
        .route("/api/v0/image/unpin", post(image::unpin))
        .route("/api/v0/version", post(node::version))
        .route("/api/v0/swarm/peers", post(node::swarm_peers))
        .route("/api/v0/swarm/connect", post(node::swarm_connect))
        .route("/api/v0/pin/add", post(pin::add))
        .route("/api/v0/pin/ls", post(pin::ls))
        .route("/api/v0/pin/rm", post(pin::rm))
        .route("/api/v0/repo/gc", post(repo::gc))
        .route("/api/v0/repo/stat", post(repo::stat))
        .route("/api/v0/repo/verify", post(repo::verify))
        .route("/api/v0/refs/local", post(repo::refs_local))
        .route("/api/v0/mount", post(mount::mount))
        .route("/api/v0/umount", post(mount::umount))
        .route("/api/v0/mounts", post(mount::mounts))
        .route("/api/v0/mount/trace", post(mount::trace))
        .route("/healthz", axum::routing::get(healthz))
        .route("/livez", axum::routing::get(livez))
        .fallback(error::unknown_command)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::disable());
    let api = if metrics {
        api.route("/metrics", axum::routing::get(repo::metrics))
    } else {
        api
    };
    api.merge(ui::routes())
        .with_state(Arc::new(state))
        .layer(axum::middleware::from_fn_with_state(guard, guard::admit))
}

/// The metrics listener's router (`metrics.listen`): `/metrics`, `/healthz` and the read-only
/// dashboard, nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(repo::metrics))
        .route("/healthz", axum::routing::get(healthz))
        .route("/livez", axum::routing::get(livez))
        .merge(ui::routes())
        .with_state(Arc::new(state))
}

/// `GET /livez`, for liveness probes: the daemon answers (a restart would not cure a full disk,
/// and would drop every mount, so liveness does not look at the store).
async fn livez() -> &'static str {
    "ok\n"
}

/// `GET /healthz`, for load balancers and readiness probes: `ok` while the daemon serves
/// requests and its store can take writes; 503 with the reason when the store's disk is below
/// its reserve or the database does not answer (M3: it said `ok` with a dead store).
async fn healthz(
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
) -> (axum::http::StatusCode, String) {
    match st.blocks.with_store(|s| s.health()).await {
        Ok(()) => (axum::http::StatusCode::OK, "ok\n".into()),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store: {e:#}\n"),
        ),
    }
}

/// The image a request names: a CID reference, or a name pushed to the registry endpoint
/// (`team/app:1.0`) looked up in the name table.
/// A multipart part's bytes, read chunk by chunk and refused with `too_big` as soon as they
/// pass `limit`.
async fn read_part(
    field: &mut axum::extract::multipart::Field<'_>,
    limit: usize,
    too_big: impl FnOnce() -> String,
) -> Result<Vec<u8>, ApiError> {
    let mut data = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::client(format!("reading the upload: {e}")))?
    {
        if data.len() + chunk.len() > limit {
            return Err(ApiError::client(too_big()));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

pub(crate) fn resolve_image(st: &AppState, text: &str) -> Result<cid::Cid, ApiError> {
    let image = crate::cidref::parse_image(text).map_err(|e| ApiError::client(e.to_string()))?;
    st.names
        .cid_of(&image)
        .map_err(|e| ApiError::Failed(e.into()))?
        .ok_or_else(|| {
            // it may have been meant as a CID: say why it is not one
            let not_cid = crate::cidref::parse(text)
                .err()
                .map(|e| format!("; nor is it a CID: {e}"))
                .unwrap_or_default();
            ApiError::Failed(anyhow::anyhow!(
                "no image is named {image} here (names come from pushes to the registry endpoint){not_cid}"
            ))
        })
}

/// A CID reference from a request; a bad one is the client's error.
pub(crate) fn parse_cid(text: &str) -> Result<cid::Cid, ApiError> {
    crate::cidref::parse(text).map_err(|e| ApiError::client(e.to_string()))
}

/// Query parameters in kubo's style (repeated `arg=`).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<String>) -> Self {
        let q = query.unwrap_or_default();
        Params(form_urlencoded::parse(q.as_bytes()).into_owned().collect())
    }

    /// Positional arguments.
    pub fn args(&self) -> Vec<&str> {
        self.all("arg")
    }

    /// The first positional argument, or a client error naming it.
    pub fn arg(&self, name: &str) -> Result<&str, ApiError> {
        self.args()
            .first()
            .copied()
            .ok_or_else(|| ApiError::client(format!("argument \"{name}\" is required")))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated option.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::client(format!(
                "option \"{key}\": {v:?} is not a boolean"
            ))),
        }
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::client(format!(
                        "option \"{key}\": {v:?} is not a non-negative integer"
                    ))
                })
            })
            .transpose()
    }

    /// The first argument as a CID reference.
    pub fn cid(&self, name: &str) -> Result<cid::Cid, ApiError> {
        parse_cid(self.arg(name)?)
    }
}
