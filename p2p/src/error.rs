//! Errors of the p2p crate.

use cid::Cid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nobody delivered the block in time.
    #[error("block {cid} not found: no peer provided it within {secs}s ({peers} peers connected)")]
    NotFound { cid: Cid, secs: u64, peers: usize },
    #[error("CID {0} uses a hash function this node cannot verify (only sha2-256 and identity)")]
    UnsupportedHash(Cid),
    #[error("the p2p node has shut down")]
    Shutdown,
    #[error("invalid node configuration: {0}")]
    Config(String),
    #[error("transport setup failed: {0}")]
    Transport(String),
    #[error("dial failed: {0}")]
    Dial(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    /// A stream of an application protocol could not be opened or accepted.
    #[error("stream {protocol} with {peer}: {reason}")]
    Stream {
        protocol: String,
        peer: String,
        reason: String,
    },
}
