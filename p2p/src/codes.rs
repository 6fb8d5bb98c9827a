//! The multiformats codes of the blocks cidfs trades: the one set, for the wire (bitswap) and
//! for the store.

/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of the identity "hash" (the digest is the data itself).
pub const IDENTITY: u64 = 0x00;
/// Multicodec of raw blocks.
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb blocks (implied by bitswap 1.0.0 blocks).
pub const DAG_PB: u64 = 0x70;
