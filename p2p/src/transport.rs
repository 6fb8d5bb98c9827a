//! TCP → (optional) PSK (`pnet.rs`) → noise → yamux. The PSK layer wraps the raw TCP socket, before
//! multistream-select, exactly where go-libp2p puts it, so kubo and Helia peers with the same
//! `swarm.key` interoperate and peers with another key see only noise.

use either::Either;
use libp2p::{
    core::{
        muxing::StreamMuxerBox,
        transport::{Boxed, MemoryTransport},
        upgrade::Version,
    },
    identity::Keypair,
    noise, tcp, yamux, PeerId, Transport,
};
use std::time::Duration;

use crate::{psk::SwarmKey, Error};

/// Time allowed for the whole upgrade (PSK + noise + yamux) of one connection.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most yamux streams one connection may have open. It also caps every stream's receive window.
///
/// js-libp2p's yamux (Helia) sends a stream's whole send window as one data frame, while
/// rust-yamux drops the connection on a frame body over 1 MiB (`FrameTooLarge`). rust-yamux grows a
/// stream's window past the 256 KiB default only out of what the connection window (1 GiB) leaves
/// above `max_num_streams × 256 KiB`: 4093 streams leave 768 KiB, so no window (and no frame from
/// a js peer) exceeds 1 MiB. go-yamux splits frames at 64 KiB and is unaffected.
pub const YAMUX_MAX_STREAMS: usize = 4093;

/// Builds the transport: TCP, or with `memory` libp2p's in-process memory transport (tests).
/// With `force_pnet` and no key it refuses, as go-libp2p does.
pub fn build(
    keypair: &Keypair,
    swarm_key: Option<&SwarmKey>,
    force_pnet: bool,
    memory: bool,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Error> {
    if force_pnet && swarm_key.is_none() {
        return Err(Error::Config(
            "LIBP2P_FORCE_PNET=1 is set but no swarm key was given: refusing to join a public network \
             (put a swarm.key in the repo or pass --swarm-key FILE)"
                .into(),
        ));
    }
    let noise = noise::Config::new(keypair).map_err(|e| Error::Transport(e.to_string()))?;
    let raw = if memory {
        Either::Left(MemoryTransport::default())
    } else {
        Either::Right(tcp::tokio::Transport::new(
            tcp::Config::default().nodelay(true),
        ))
    };
    let base = match swarm_key {
        Some(key) => {
            let key = key.bytes();
            Either::Left(raw.and_then(move |socket, _| crate::pnet::handshake(socket, key)))
        }
        None => Either::Right(raw),
    };
    let mut yamux = yamux::Config::default();
    yamux.set_max_num_streams(YAMUX_MAX_STREAMS);
    Ok(base
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux)
        .timeout(UPGRADE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}
