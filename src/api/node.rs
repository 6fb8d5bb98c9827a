//! `id`, `version`, `swarm/peers`, `swarm/connect`.

use axum::{
    extract::{RawQuery, State},
    Json,
};
use libp2p::Multiaddr;
use serde_json::{json, Value};
use std::{sync::Arc, time::Duration};

use super::{ApiError, AppState, Params};

/// How long `swarm/connect` waits for one dial.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

fn net(st: &AppState) -> Result<&cidfs_p2p::Client, ApiError> {
    st.blocks.net().ok_or_else(|| {
        ApiError::Failed(anyhow::anyhow!(
            "this command needs the p2p node, which is not running"
        ))
    })
}

pub async fn id(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let peer = st.public_key.to_peer_id();
    let addrs: Vec<String> = match st.blocks.net() {
        Some(n) => n
            .listen_addrs()
            .await?
            .into_iter()
            .map(|a| format!("{a}/p2p/{peer}"))
            .collect(),
        None => Vec::new(),
    };
    use base64::Engine;
    Ok(Json(json!({
        "ID": peer.to_string(),
        "PublicKey": base64::engine::general_purpose::STANDARD.encode(st.public_key.encode_protobuf()),
        "Addresses": addrs,
        "AgentVersion": format!("cidfs/{}", env!("CARGO_PKG_VERSION")),
        "ProtocolVersion": cidfs_p2p::behaviour::IDENTIFY_PROTOCOL_VERSION,
        "Protocols": [
            cidfs_p2p::bitswap::PROTOCOL_1_2_0.to_string(),
            cidfs_p2p::bitswap::PROTOCOL_1_1_0.to_string(),
            "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", cidfs_p2p::behaviour::KAD_PROTOCOL.to_string(),
        ],
    })))
}

pub async fn version() -> Json<Value> {
    Json(json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Commit": "",
        "Repo": "cidfs-1",
        "System": format!("{}/{}", std::env::consts::ARCH, std::env::consts::OS),
        "Golang": "",
    }))
}

pub async fn swarm_peers(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let mut peers = net(&st)?.peers().await?;
    peers.sort_by_key(|p| p.peer);
    let list: Vec<Value> = peers
        .into_iter()
        .map(|p| {
            json!({
                "Addr": p.addr.to_string(),
                "Peer": p.peer.to_string(),
                "Latency": p.latency.map(|l| format!("{l:?}")).unwrap_or_default(),
                "Agent": p.agent.unwrap_or_default(),
                "Found": p.found.to_string(),
            })
        })
        .collect();
    Ok(Json(json!({ "Peers": list })))
}

pub async fn swarm_connect(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q);
    let args = p.args();
    if args.is_empty() {
        return Err(ApiError::client("argument \"address\" is required"));
    }
    let net = net(&st)?;
    let mut out = Vec::new();
    for a in args {
        let addr: Multiaddr = a
            .parse()
            .map_err(|e| ApiError::client(format!("invalid multiaddr {a:?}: {e}")))?;
        let peer = tokio::time::timeout(DIAL_TIMEOUT, net.dial(addr))
            .await
            .map_err(|_| anyhow::anyhow!("connect {a} failure: no answer within {DIAL_TIMEOUT:?}"))?
            .map_err(|e| anyhow::anyhow!("connect {a} failure: {e}"))?;
        out.push(format!("connect {peer} success"));
    }
    Ok(Json(json!({ "Strings": out })))
}
