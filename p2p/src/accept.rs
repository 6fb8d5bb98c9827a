//! Inbound streams of a fixed set of protocols, handed to the application through a queue of a
//! size it chooses.
//!
//! libp2p-stream's `accept` hands each inbound stream over through a channel with no room
//! (`mpsc::channel(0)`: one stream per connection in flight) and resets any stream that arrives
//! while one waits. kubo (boxo) sends every bitswap message on a stream of its own, from eight
//! task workers at once, so most of a burst of its answers was reset and their blocks lost until
//! the wants timed out and were sent again: fetching from kubo ran at 0.4 MB/s in 10 s bursts
//! (issue 21). Here a connection's streams wait in a queue of `queue` places instead; past it a
//! stream is still dropped, so a peer that opens streams faster than they are read cannot grow
//! the daemon. Outbound streams keep going through libp2p-stream's `Control`.

use futures::channel::mpsc;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{DeniedUpgrade, InboundUpgrade, UpgradeInfo};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, Stream, StreamProtocol, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::PeerId;
use std::convert::Infallible;
use std::task::{Context, Poll};

/// One inbound stream: who opened it, and for which protocol.
pub type Inbound = (PeerId, Stream, StreamProtocol);
/// Where the streams arrive.
pub type Incoming = mpsc::Receiver<Inbound>;

/// Accepts inbound streams of its protocols on every connection.
pub struct Behaviour {
    protocols: Vec<StreamProtocol>,
    sender: mpsc::Sender<Inbound>,
}

impl Behaviour {
    /// Accepts `protocols` (the first is preferred), with room for `queue` streams not yet taken
    /// from [`Incoming`] (plus one per connection).
    pub fn new(protocols: Vec<StreamProtocol>, queue: usize) -> (Self, Incoming) {
        let (sender, receiver) = mpsc::channel(queue);
        (Behaviour { protocols, sender }, receiver)
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            protocols: self.protocols.clone(),
            sender: self.sender.clone(),
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// The protocols offered to a peer that opens a stream.
#[derive(Clone)]
pub struct Protocols(Vec<StreamProtocol>);

impl UpgradeInfo for Protocols {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Protocols {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        std::future::ready(Ok((stream, protocol)))
    }
}

/// One connection's side: offers the protocols, queues what is opened.
pub struct Handler {
    peer: PeerId,
    protocols: Vec<StreamProtocol>,
    sender: mpsc::Sender<Inbound>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Protocols;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Protocols> {
        SubstreamProtocol::new(Protocols(self.protocols.clone()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, Infallible, Infallible>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, e: Infallible) {
        match e {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol, (), Infallible>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, protocol),
            ..
        }) = event
        {
            if let Err(e) = self.sender.try_send((self.peer, stream, protocol)) {
                // dropping the stream resets it; the peer may send again
                tracing::debug!(peer = %self.peer, full = e.is_full(), "inbound stream queue full or gone; dropping a stream");
            }
        }
    }
}
