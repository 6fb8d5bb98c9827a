//! The one picture of the node: every libp2p protocol it runs.

use libp2p::{
    identify, identity::Keypair, kad, mdns, ping, swarm::behaviour::toggle::Toggle,
    swarm::NetworkBehaviour, StreamProtocol,
};
use std::time::Duration;

use crate::{Config, Error};

/// Kademlia protocol, as kubo.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
/// identify `protocolVersion`, as kubo.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "ipfs/0.1.0";

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Outbound streams (bitswap sends); inbound bitswap streams come through `bitswap_in`.
    pub stream: libp2p_stream::Behaviour,
    pub bitswap_in: crate::accept::Behaviour,
}

/// Every connection is pinged this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A ping not answered within this fails; a connection whose pings fail twice in a row (within
/// about 30 s of going quiet) is closed, as go-yamux's keepalive does for kubo. A TCP connection
/// that carried nothing through a partition can take minutes to move again once it heals (its
/// retransmission timer backs off up to 120 s), while a fresh dial works at once: static and
/// LAN peers are redialled every `redial_interval`.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Inbound bitswap streams that may wait to be read (kubo opens one per message it sends, from
/// eight workers at once); each is then admitted against the per-peer and total caps.
pub const BITSWAP_INBOUND_QUEUE: usize = 256;

/// Provider records of other peers kept (keys), and keys this node provides.
pub const KAD_MAX_RECORDS: usize = 65_536;
pub const KAD_MAX_PROVIDED_KEYS: usize = 262_144;

impl Behaviour {
    /// The behaviour, and where its inbound bitswap streams arrive.
    pub fn new(key: &Keypair, config: &Config) -> Result<(Self, crate::accept::Incoming), Error> {
        let peer_id = key.public().to_peer_id();
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), key.public())
                .with_agent_version(config.agent_version.clone()),
        );
        let kad = config.kademlia.then(|| {
            let mut cfg = kad::Config::new(KAD_PROTOCOL);
            cfg.set_query_timeout(Duration::from_secs(30));
            // peers come from mDNS, static config and identify; no bootstrap nodes to poll
            cfg.set_periodic_bootstrap_interval(None);
            // the defaults (1024) stop announcing a node's 1025th pin, and let peers fill
            // every provider slot (L6); a record is ~100 bytes
            let store = kad::store::MemoryStore::with_config(
                peer_id,
                kad::store::MemoryStoreConfig {
                    max_records: KAD_MAX_RECORDS,
                    max_provided_keys: KAD_MAX_PROVIDED_KEYS,
                    ..Default::default()
                },
            );
            let mut kad = kad::Behaviour::with_config(peer_id, store, cfg);
            // a private LAN never confirms an external address: serve the DHT explicitly
            kad.set_mode(Some(kad::Mode::Server));
            kad
        });
        let mdns = if config.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| Error::Transport(format!("mDNS: {e}")))?,
            )
        } else {
            None
        };
        let (bitswap_in, incoming) = crate::accept::Behaviour::new(
            vec![
                crate::bitswap::PROTOCOL_1_2_0,
                crate::bitswap::PROTOCOL_1_1_0,
            ],
            BITSWAP_INBOUND_QUEUE,
        );
        let behaviour = Behaviour {
            identify,
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
            kad: kad.into(),
            mdns: mdns.into(),
            stream: libp2p_stream::Behaviour::new(),
            bitswap_in,
        };
        Ok((behaviour, incoming))
    }
}
