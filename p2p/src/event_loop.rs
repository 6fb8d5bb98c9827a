//! The task that owns the libp2p `Swarm`. It `select!`s over swarm events, [`Command`]s from
//! [`Client`]s, DHT searches asked for by bitswap, and a redial timer for static and mDNS peers. Pending
//! requests live in maps keyed by connection or query id; nothing else touches the swarm.

use cid::Cid;
use futures::StreamExt;
use libp2p::{
    identify, kad, mdns,
    multiaddr::Protocol,
    ping,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, SwarmEvent,
    },
    Multiaddr, PeerId, Swarm, SwarmBuilder,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, trace, warn};

use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::bitswap::Bitswap;
use crate::client::{Command, Found, PeerInfo};
use crate::{transport, BlockSource, Client, Config, Error};

/// The node: build it with [`Node::spawn`].
pub struct Node;

struct ProviderQuery {
    replies: Vec<oneshot::Sender<Vec<PeerId>>>,
    found: HashSet<PeerId>,
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    bitswap: Bitswap,
    commands: mpsc::Receiver<Command>,
    searches: mpsc::Receiver<Cid>,
    static_peers: Vec<(PeerId, Multiaddr)>,
    /// Peers mDNS currently reports on the LAN: redialled like static peers until mDNS expires
    /// them, so one failed dial (a peer still starting up) does not lose the peer.
    lan_peers: crate::lan::LanPeers,
    pending_dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, Error>>>,
    provider_queries: HashMap<kad::QueryId, ProviderQuery>,
    peers: HashMap<PeerId, PeerInfo>,
    redial_interval: Duration,
    /// Tells [`Client::connected`] subscribers of each new peer.
    connected: tokio::sync::broadcast::Sender<PeerId>,
}

impl Node {
    /// Builds the swarm, starts listening, and spawns the event loop on the current tokio
    /// runtime. Returns the client and the loop's join handle.
    pub fn spawn(
        config: Config,
        source: Arc<dyn BlockSource>,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), Error> {
        let transport = transport::build(
            &config.keypair,
            config.swarm_key.as_ref(),
            config.force_pnet,
            config.memory_transport,
        )?;
        let (behaviour, bitswap_streams) = Behaviour::new(&config.keypair, &config)?;
        let mut swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
            .with_tokio()
            .with_other_transport(|_| transport)
            .map_err(|e| Error::Transport(e.to_string()))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| Error::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
            .build();
        for addr in &config.listen {
            swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        }
        let mut static_peers = Vec::new();
        for addr in &config.peers {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(Error::Config(format!(
                    "static peer {addr} must end with /p2p/<peer id>"
                )));
            };
            let mut base = addr.clone();
            base.pop();
            if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
                kad.add_address(&peer, base.clone());
            }
            static_peers.push((peer, base));
        }
        let (search_tx, search_rx) = mpsc::channel(64);
        let control = swarm.behaviour().stream.new_control();
        let bitswap = Bitswap::spawn(
            config.bitswap.clone(),
            control,
            bitswap_streams,
            source,
            search_tx,
        );
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let peer_id = *swarm.local_peer_id();
        let (connected, _) = tokio::sync::broadcast::channel(64);
        let client = Client {
            commands: cmd_tx,
            bitswap: bitswap.clone(),
            peer_id,
            streams: swarm.behaviour().stream.new_control(),
            connected: connected.clone(),
        };
        let event_loop = EventLoop {
            swarm,
            bitswap,
            commands: cmd_rx,
            searches: search_rx,
            static_peers,
            lan_peers: Default::default(),
            pending_dials: HashMap::new(),
            provider_queries: HashMap::new(),
            peers: HashMap::new(),
            redial_interval: config.redial_interval,
            connected,
        };
        let handle = tokio::spawn(event_loop.run());
        Ok((client, handle))
    }
}

impl EventLoop {
    async fn run(mut self) {
        self.redial();
        let mut redial = tokio::time::interval(self.redial_interval);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                Some(cid) = self.searches.recv() => self.find_providers(cid, None),
                _ = redial.tick() => self.redial(),
            }
        }
        // the engine's and every peer's tasks end before the loop's own handle resolves
        self.bitswap.shutdown().await;
        debug!("p2p event loop stopped");
    }

    fn redial(&mut self) {
        let statics = self.static_peers.iter().map(|(p, a)| (*p, vec![a.clone()]));
        let swarm = &self.swarm;
        let lan = self.lan_peers.next_redials(|p| swarm.is_connected(p));
        let wanted: Vec<(PeerId, Vec<Multiaddr>)> = statics.chain(lan).collect();
        for (peer, addrs) in wanted {
            self.dial_if_disconnected(peer, addrs);
        }
    }

    fn dial_if_disconnected(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if self.swarm.is_connected(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            trace!(%peer, "dial not started: {e}");
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial { addr, reply } => {
                if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                    if self.swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(peer));
                        return;
                    }
                }
                let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Dial(format!("{addr}: {e}"))));
                    }
                }
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peers.values().cloned().collect());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Provide { cids } => {
                if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                    for cid in cids {
                        if let Err(e) =
                            kad.start_providing(kad::RecordKey::new(&cid.hash().to_bytes()))
                        {
                            warn!(%cid, "cannot record provider entry: {e}");
                        }
                    }
                }
            }
            Command::FindProviders { cid, reply } => self.find_providers(cid, Some(reply)),
            Command::Shutdown => {}
        }
    }

    fn find_providers(&mut self, cid: Cid, reply: Option<oneshot::Sender<Vec<PeerId>>>) {
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
            if let Some(r) = reply {
                let _ = r.send(Vec::new());
            }
            return;
        };
        debug!(%cid, "searching the DHT for providers");
        let id = kad.get_providers(kad::RecordKey::new(&cid.hash().to_bytes()));
        self.provider_queries.insert(
            id,
            ProviderQuery {
                replies: reply.into_iter().collect(),
                found: HashSet::new(),
            },
        );
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!("listening on {address}/p2p/{}", self.swarm.local_peer_id());
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let requested = match self.pending_dials.remove(&connection_id) {
                    Some(reply) => {
                        let _ = reply.send(Ok(peer_id));
                        true
                    }
                    None => false,
                };
                if num_established.get() == 1 {
                    let found = if !endpoint.is_dialer() {
                        Found::Inbound
                    } else if requested {
                        Found::Connect
                    } else if self.static_peers.iter().any(|(p, _)| *p == peer_id) {
                        Found::Static
                    } else if self.lan_peers.contains(&peer_id) {
                        Found::Mdns
                    } else {
                        Found::Dht
                    };
                    debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "peer connected");
                    self.peers.insert(
                        peer_id,
                        PeerInfo {
                            peer: peer_id,
                            addr: endpoint.get_remote_address().clone(),
                            latency: None,
                            agent: None,
                            found,
                        },
                    );
                    self.bitswap.peer_connected(peer_id);
                    let _ = self.connected.send(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                if num_established == 0 {
                    debug!(peer = %peer_id, ?cause, "peer disconnected");
                    self.peers.remove(&peer_id);
                    self.bitswap.peer_disconnected(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                debug!(?peer_id, "outgoing connection failed: {error}");
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(Error::Dial(error.to_string())));
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                debug!(%send_back_addr, "incoming connection failed (wrong swarm key?): {error}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.agent = Some(info.agent_version.clone());
                }
                if info.protocols.contains(&KAD_PROTOCOL) {
                    if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                        for addr in info.listen_addrs {
                            kad.add_address(&peer_id, addr);
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.latency = Some(rtt);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(e),
            })) => {
                // reported after two failures in a row (libp2p's first is silent)
                if !matches!(e, ping::Failure::Unsupported) {
                    info!(%peer, "a connection answered no ping twice ({e}): closing it");
                    self.swarm.close_connection(connection);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    // not into the DHT's table: anyone on the LAN can announce, key or not;
                    // a peer enters it through identify, once connected (with the swarm key)
                    match self.lan_peers.discovered(peer, addr.clone()) {
                        Some(addrs) => {
                            debug!(%peer, %addr, "discovered by mDNS");
                            self.dial_if_disconnected(peer, addrs);
                        }
                        None => {
                            debug!(%peer, %addr, "discovered by mDNS; not kept (the LAN book is full)")
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Expired(gone))) => {
                for (peer, addr) in gone {
                    debug!(%peer, %addr, "mDNS record expired");
                    self.lan_peers.expired(&peer, &addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            other => trace!(?other, "swarm event"),
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            trace!(?event, "kad event");
            return;
        };
        match result {
            kad::QueryResult::GetProviders(res) => {
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = res {
                    let me = *self.swarm.local_peer_id();
                    for peer in providers {
                        if peer == me || self.swarm.is_connected(&peer) {
                            continue;
                        }
                        let _ = self.swarm.dial(
                            DialOpts::peer_id(peer)
                                .condition(PeerCondition::DisconnectedAndNotDialing)
                                .build(),
                        );
                        if let Some(q) = self.provider_queries.get_mut(&id) {
                            q.found.insert(peer);
                        }
                    }
                }
                if step.last {
                    if let Some(q) = self.provider_queries.remove(&id) {
                        let found: Vec<PeerId> = q.found.into_iter().collect();
                        debug!(providers = found.len(), "provider search finished");
                        for r in q.replies {
                            let _ = r.send(found.clone());
                        }
                    }
                }
            }
            kad::QueryResult::StartProviding(res) => trace!(?res, "provide finished"),
            other => trace!(?other, "kad query progressed"),
        }
    }
}
