//! cidfs: share container images across a private peer-to-peer swarm.
//!
//! Levels (a module imports only from lower levels):
//! 0. [`config`], [`repo`], [`metrics`] and the `cidfs_p2p` crate
//! 1. [`blockstore`]: sled-backed block storage, every block checked against its CID
//! 2. [`blockservice`]: local store first, then bitswap through the p2p node
//! 3. [`unixfs`]: kubo-identical `add` and range reads over any block getter
//! 4. [`image`]: the IPFS-enabled OCI format, eStargz, push / pull / inspect
//! 5. [`mount`]: lazy FUSE rootfs mounts of images, chunk by chunk from the swarm
//! 6. [`api`]: the kubo RPC subset on axum; [`registry`]: the read-only OCI registry endpoint;
//!    [`store`]: the Podman additional layer store; [`snapshotter`]: the containerd snapshotter
//! 7. [`daemon`]: wires it all together
//! 8. [`cli`]: clap front-end; every networked subcommand is an API client

pub mod api;
pub mod blockservice;
pub mod blockstore;
pub mod cidref;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod image;
pub mod metrics;
pub mod mount;
pub mod registry;
pub mod repo;
pub mod snapshotter;
pub mod store;
pub mod sync;
#[cfg(test)]
pub(crate) mod test_utils;
pub mod unixfs;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
