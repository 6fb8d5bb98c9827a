//! cidfs-p2p: the libp2p node of cidfs. It trades blocks by CID and knows nothing of how they
//! are stored, of images or of FUSE.
//!
//! ```text
//!   Client ──Command──▶ EventLoop (owns Swarm: transport + Behaviour{identify, ping, kad, mdns, stream})
//!     │                      │ connection events
//!     └── get_block ──▶ Bitswap ◀─┘ ──streams (libp2p-stream)──▶ peers
//!                          │ serves from
//!                          ▼
//!                     dyn BlockSource (the daemon's blockstore)
//! ```
//! - [`transport`]: TCP → PSK (kubo `swarm.key`) → noise → yamux.
//! - [`bitswap`]: bitswap 1.2.0/1.1.0 client and server with sessions and caps.
//! - [`slots`]: admission of inbound streams, per peer and in all.
//! - [`Node::spawn`] builds it all and returns a [`Client`].

pub mod accept;
pub mod behaviour;
pub mod bitswap;
mod block_source;
mod client;
pub mod codes;
mod config;
mod error;
mod event_loop;
pub mod fetch;
mod lan;
pub mod pnet;
pub mod psk;
pub mod slots;
pub mod transport;

pub use bitswap::{PeerStats, Session, Stats};
pub use block_source::{BlockSource, MemSource};
pub use client::{Client, Found, PeerInfo};
pub use config::Config;
pub use error::Error;
pub use event_loop::Node;
pub use libp2p::{identity, Multiaddr, PeerId};

#[cfg(test)]
mod tests;
