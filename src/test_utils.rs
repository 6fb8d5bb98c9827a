//! Fixtures shared by the unit tests of several modules.

/// A plain layer tar: `files` (name, content; mode 0644, a fixed mtime), then `symlinks`
/// (name, target).
pub fn tar_of(files: &[(&str, &[u8])], symlinks: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    for (name, target) in symlinks {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_cksum();
        b.append_link(&mut h, name, target).unwrap();
    }
    b.into_inner().unwrap()
}

/// A block service whose node is alone in its swarm (libp2p's memory transport, no peers), so a
/// block it does not hold fails after `fetch_timeout` with [`FetchError::Timeout`], as on a node
/// whose peers do not answer. Abort the task when done.
///
/// [`FetchError::Timeout`]: crate::blockservice::FetchError::Timeout
pub fn lone_node(
    fetch_timeout: std::time::Duration,
) -> (
    crate::blockservice::BlockService,
    tokio::task::JoinHandle<()>,
) {
    let store = std::sync::Arc::new(crate::blockstore::MemStore::default());
    let (blocks, task, _) = node_with(store, fetch_timeout);
    (blocks, task)
}

/// A block service over `store` whose node listens on libp2p's memory transport (no mDNS, no
/// DHT), and the address to dial it at. Abort the task when done.
pub fn node_with(
    store: std::sync::Arc<dyn crate::blockstore::Blocks>,
    fetch_timeout: std::time::Duration,
) -> (
    crate::blockservice::BlockService,
    tokio::task::JoinHandle<()>,
    libp2p::Multiaddr,
) {
    let mut config = cidfs_p2p::Config::new(cidfs_p2p::identity::Keypair::generate_ed25519());
    config.memory_transport = true;
    let addr: libp2p::Multiaddr = format!("/memory/{}", rand::random::<u64>() | 1)
        .parse()
        .unwrap();
    config.listen = vec![addr.clone()];
    config.mdns = false;
    config.kademlia = false;
    config.bitswap.fetch_timeout = fetch_timeout;
    let source = std::sync::Arc::new(crate::blockservice::StoreSource(store.clone()));
    let (client, task) = cidfs_p2p::Node::spawn(config, source).unwrap();
    (
        crate::blockservice::BlockService::new(store, Some(client)),
        task,
        addr,
    )
}

/// The CID of a file no node of a test holds.
pub fn absent_cid() -> cid::Cid {
    crate::unixfs::add_bytes(
        &crate::blockstore::MemStore::default(),
        b"elsewhere",
        &Default::default(),
    )
    .unwrap()
    .root
}

/// Opens a sled database again right after its last handle was dropped. sled's background
/// writers may hold the directory's lock a moment longer (a test failed on it once), and sled
/// offers nothing to wait on: `open` is retried while the lock is what fails, for at most ten
/// seconds.
pub fn reopen<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Ok(db) => return db,
            Err(e)
                if format!("{e:#}").contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("reopening the database: {e:#}"),
        }
    }
}
