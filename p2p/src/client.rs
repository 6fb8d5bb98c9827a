//! [`Client`]: the cheap, clonable handle through which the rest of cidfs uses the node.
//! Each method sends a [`Command`] carrying a `oneshot` to the event loop and awaits the answer,
//! or calls the bitswap engine directly.

use bytes::Bytes;
use cid::Cid;
use libp2p::{Multiaddr, PeerId};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::bitswap::{Bitswap, PeerStats, Session, Stats};
use crate::Error;

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer: PeerId,
    /// Remote address of the (first) connection.
    pub addr: Multiaddr,
    /// Last ping round trip.
    pub latency: Option<Duration>,
    /// identify `agentVersion`, once known.
    pub agent: Option<String>,
    /// How this node came to be connected to the peer.
    pub found: Found,
}

/// How a peer was found: what made the first connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A static peer of this node's config (`--peer`, `p2p.peers`).
    Static,
    /// Announced by mDNS on the LAN.
    Mdns,
    /// A DHT provider of something this node wanted.
    Dht,
    /// Dialled on request (`swarm/connect`).
    Connect,
    /// It dialled this node.
    Inbound,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Found::Static => "static",
            Found::Mdns => "mdns",
            Found::Dht => "dht",
            Found::Connect => "connect",
            Found::Inbound => "inbound",
        })
    }
}

pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, Error>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Provide {
        cids: Vec<Cid>,
    },
    FindProviders {
        cid: Cid,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Shutdown,
}

/// Handle to a running node.
#[derive(Clone)]
pub struct Client {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) bitswap: Bitswap,
    pub(crate) peer_id: PeerId,
    /// Streams of application protocols (e.g. cidfs's name records), outbound and inbound.
    pub(crate) streams: libp2p_stream::Control,
    /// Every peer as it connects (its first connection).
    pub(crate) connected: tokio::sync::broadcast::Sender<PeerId>,
}

impl Client {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Fetches a block from the swarm; the bytes are verified against `cid`.
    /// Cancel-safe.
    pub async fn get_block(&self, cid: Cid, session: &Session) -> Result<Bytes, Error> {
        self.bitswap.get(cid, session).await
    }

    pub fn stats(&self) -> Stats {
        self.bitswap.stats()
    }

    /// Bitswap counters per peer, sorted by peer id.
    pub fn peer_stats(&self) -> Vec<(PeerId, PeerStats)> {
        self.bitswap.peer_stats()
    }

    /// Tells bitswap that `cid` was stored locally (after a fetch): peers that asked for it
    /// before it was here hear HAVE.
    pub fn stored(&self, cid: &Cid) {
        self.bitswap.stored(cid);
    }

    /// Peers that asked this node for `cid` lately: for a DAG's root, the ones fetching it too
    /// (see [`Session::divide`]).
    pub fn wanted_by(&self, cid: &Cid) -> Vec<PeerId> {
        self.bitswap.wanted_by(cid)
    }

    /// Connects to `addr` (which may end in `/p2p/<id>`); returns the peer's id once connected.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, Error> {
        self.request(|reply| Command::Dial { addr, reply }).await?
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        self.request(|reply| Command::Peers { reply }).await
    }

    /// Addresses the node listens on (each without the `/p2p` suffix).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, Error> {
        self.request(|reply| Command::ListenAddrs { reply }).await
    }

    /// Announces in the DHT that this node provides `cids`. Fire and forget.
    pub async fn provide(&self, cids: Vec<Cid>) -> Result<(), Error> {
        self.commands
            .send(Command::Provide { cids })
            .await
            .map_err(|_| Error::Shutdown)
    }

    /// Looks `cid` up in the DHT; found providers are also dialled.
    pub async fn find_providers(&self, cid: Cid) -> Result<Vec<PeerId>, Error> {
        self.request(|reply| Command::FindProviders { cid, reply })
            .await
    }

    /// Opens a stream of `protocol` to `peer` (dialled if need be). For an application's own
    /// protocol; bitswap has its own streams.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: &'static str,
    ) -> Result<libp2p::Stream, Error> {
        self.streams
            .clone()
            .open_stream(peer, libp2p::StreamProtocol::new(protocol))
            .await
            .map_err(|e| Error::Stream {
                protocol: protocol.to_string(),
                peer: peer.to_string(),
                reason: e.to_string(),
            })
    }

    /// The inbound streams of `protocol`, each with the peer that opened it; one taker per
    /// protocol. A stream that arrives while the previous one is not taken yet is reset.
    pub fn accept(
        &self,
        protocol: &'static str,
    ) -> Result<impl futures::Stream<Item = (PeerId, libp2p::Stream)> + Send + 'static, Error> {
        self.streams
            .clone()
            .accept(libp2p::StreamProtocol::new(protocol))
            .map_err(|e| Error::Stream {
                protocol: protocol.to_string(),
                peer: "any".into(),
                reason: e.to_string(),
            })
    }

    /// Peers as they connect (their first connection), from now on; see [`Client::peers`]
    /// for the ones connected already.
    pub fn connected(&self) -> tokio::sync::broadcast::Receiver<PeerId> {
        self.connected.subscribe()
    }

    /// Stops the event loop (connections close).
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }
}
