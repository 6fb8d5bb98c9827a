//! Integration tests: real `cidfs` daemons in separate processes talking libp2p on loopback
//! (or inside network namespaces the test creates). One binary, as ripgrep does.

mod util;

mod airgap;
mod cluster;
mod containerd;
mod crash;
mod dashboard;
mod deploy;
mod deploy_files;
mod image;
mod images;
mod interop;
mod kubo;
mod mount;
mod netns;
mod node;
mod preload;
mod push;
mod registry;
mod security;
