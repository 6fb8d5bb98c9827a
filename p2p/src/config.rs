//! Typed settings of a node. Reads no files: the daemon builds this from its own config.

use libp2p::{identity::Keypair, Multiaddr};
use std::time::Duration;

use crate::{bitswap, psk::SwarmKey};

/// Everything [`crate::Node::spawn`] needs.
#[derive(Clone)]
pub struct Config {
    pub keypair: Keypair,
    /// Multiaddrs to listen on (`/ip4/127.0.0.1/tcp/0` picks a free port).
    pub listen: Vec<Multiaddr>,
    /// Static peers, dialled at start and redialled when the connection drops.
    pub peers: Vec<Multiaddr>,
    /// Private-network key; `None` means an open network.
    pub swarm_key: Option<SwarmKey>,
    /// Refuse to run without a swarm key (`LIBP2P_FORCE_PNET=1`).
    pub force_pnet: bool,
    pub mdns: bool,
    pub kademlia: bool,
    pub idle_connection_timeout: Duration,
    /// How often disconnected static peers (and peers mDNS reports on the LAN) are redialled.
    pub redial_interval: Duration,
    pub bitswap: bitswap::Config,
    /// `agent_version` sent by identify.
    pub agent_version: String,
    /// libp2p's in-process memory transport (`/memory/N` addresses) instead of TCP, under the
    /// same PSK, noise and yamux: for tests of several nodes in one process.
    pub memory_transport: bool,
}

impl Config {
    /// Settings with defaults for everything but the identity.
    pub fn new(keypair: Keypair) -> Self {
        Config {
            keypair,
            listen: Vec::new(),
            peers: Vec::new(),
            swarm_key: None,
            force_pnet: false,
            mdns: true,
            kademlia: true,
            idle_connection_timeout: Duration::from_secs(600),
            redial_interval: Duration::from_secs(5),
            bitswap: bitswap::Config::default(),
            agent_version: format!("cidfs/{}", env!("CARGO_PKG_VERSION")),
            memory_transport: false,
        }
    }
}
