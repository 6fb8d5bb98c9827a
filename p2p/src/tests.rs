//! Nodes in one process over libp2p's memory transport (`Config::memory_transport`): the whole
//! stack — PSK, noise, yamux, identify, bitswap — without sockets, so the engine is tested
//! beside the process-level tests of the `cidfs` crate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cid::multihash::Multihash;
use cid::Cid;
use libp2p::identity::Keypair;
use libp2p::Multiaddr;
use sha2::{Digest, Sha256};

use crate::block_source::MemSource;
use crate::psk::SwarmKey;
use crate::{Client, Config, Error, Node, Session};

fn block(seed: u8, len: usize) -> (Cid, Bytes) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
        .collect();
    let cid = Cid::new_v1(0x55, Multihash::wrap(0x12, &Sha256::digest(&data)).unwrap());
    (cid, Bytes::from(data))
}

/// A node listening on a fresh `/memory/N` address, holding `blocks`, dialling `peers`.
fn node(
    key: &SwarmKey,
    blocks: MemSource,
    peers: Vec<Multiaddr>,
) -> (Client, Multiaddr, tokio::task::JoinHandle<()>) {
    let keypair = Keypair::generate_ed25519();
    let listen: Multiaddr = format!("/memory/{}", rand::random::<u64>() | 1)
        .parse()
        .unwrap();
    let mut config = Config::new(keypair);
    config.memory_transport = true;
    config.listen = vec![listen.clone()];
    config.peers = peers;
    config.swarm_key = Some(key.clone());
    config.mdns = false;
    config.kademlia = false;
    config.redial_interval = Duration::from_millis(200);
    config.bitswap.fetch_timeout = Duration::from_secs(5);
    let (client, task) = Node::spawn(config, Arc::new(blocks)).unwrap();
    let dial = listen.with(libp2p::multiaddr::Protocol::P2p(client.peer_id()));
    (client, dial, task)
}

/// Two nodes of one private swarm trade blocks of every size up to the bitswap limit, both
/// ways; a block nobody has fails with NotFound once the fetch times out.
#[tokio::test]
async fn two_nodes_in_one_process_trade_blocks_over_the_memory_transport() {
    let key = SwarmKey::generate();
    let sizes = [1usize, 1000, 256 << 10, 1 << 20];
    let on_a: Vec<_> = sizes.iter().map(|n| block(1, *n)).collect();
    let on_b = block(2, 5000);
    let (a, a_addr, a_task) = node(&key, MemSource(on_a.iter().cloned().collect()), vec![]);
    let (b, _, b_task) = node(&key, MemSource([on_b.clone()].into()), vec![a_addr]);
    let session = Session::new();
    for (cid, data) in &on_a {
        assert_eq!(&b.get_block(*cid, &session).await.unwrap(), data);
    }
    assert_eq!(a.get_block(on_b.0, &Session::new()).await.unwrap(), on_b.1);
    assert_eq!(b.stats().blocks_received, sizes.len() as u64);
    assert_eq!(b.stats().rejected_blocks, 0);
    let (missing, _) = block(3, 10);
    let err = b.get_block(missing, &Session::new()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    a_task.abort();
    b_task.abort();
}

/// A node with another swarm key never gets a block: the PSK layer turns its handshake into
/// noise, so no connection, no bitswap.
#[tokio::test]
async fn a_node_with_another_key_gets_nothing() {
    let held = block(1, 4096);
    let (_a, a_addr, a_task) = node(
        &SwarmKey::generate(),
        MemSource([held.clone()].into()),
        vec![],
    );
    let (b, _, b_task) = node(&SwarmKey::generate(), MemSource::default(), vec![a_addr]);
    let err = b.get_block(held.0, &Session::new()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { peers: 0, .. }), "{err}");
    a_task.abort();
    b_task.abort();
}

/// Shutting a node down stops its bitswap tasks before the node's task ends, and a fetch still
/// waiting fails with [`Error::Shutdown`] at once instead of running out its timeout.
#[tokio::test]
async fn shutdown_joins_the_engine_and_fails_waiting_fetches() {
    let key = SwarmKey::generate();
    let (a, a_addr, a_task) = node(&key, MemSource([block(1, 1000)].into()), vec![]);
    let (b, _, b_task) = node(&key, MemSource::default(), vec![a_addr]);
    assert_eq!(
        b.get_block(block(1, 1000).0, &Session::new())
            .await
            .unwrap(),
        block(1, 1000).1
    );
    let waiting = {
        let a = a.clone();
        tokio::spawn(async move { a.get_block(block(9, 10).0, &Session::new()).await })
    };
    a.shutdown().await;
    let ended = tokio::time::timeout(Duration::from_secs(3), a_task).await;
    assert!(
        ended.is_ok(),
        "the node's task did not end within 3 s of shutdown"
    );
    let err = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("a waiting fetch outlived the shutdown")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::Shutdown), "{err}");
    b_task.abort();
}
