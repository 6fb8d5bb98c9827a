//! `cidfs daemon`: opens the repo and the sled store, spawns the p2p node, serves the API, and
//! on SIGINT/SIGTERM stops accepting, stops the node, flushes sled and removes the api file.

use anyhow::Context;
use libp2p::Multiaddr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::blockservice::{BlockService, StoreSource};
use crate::blockstore::{Blocks, SledStore};
use crate::metrics::Metrics;
use crate::mount::verified::Verified;
use crate::mount::Mounts;
use crate::registry_server::{self, Registry};
use crate::repo::{self, Repo};
use crate::snapshotter::{self, Snapshotter};

/// Command-line overrides of the config file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub swarm_key: Option<PathBuf>,
    pub peers: Vec<Multiaddr>,
    pub listen: Vec<Multiaddr>,
    pub api: Option<SocketAddr>,
    pub no_mdns: bool,
    pub fetch_timeout_secs: Option<u64>,
    pub registry: Option<SocketAddr>,
    pub layer_store: Option<PathBuf>,
    pub snapshotter_socket: Option<PathBuf>,
}

/// Longest wait for the final flush of the block store at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(20);

/// Environment switch of the test-only fault: serve corrupted blocks.
pub const CORRUPT_ENV: &str = "CIDFS_TEST_CORRUPT_BLOCKS";

/// Runs the daemon until SIGINT or SIGTERM. Each start-up step below owns what it starts;
/// shutdown stops the parts in the reverse order of their start (the API first, the p2p node
/// last), then flushes the block store.
pub async fn run(repo: Repo, o: Overrides) -> anyhow::Result<()> {
    if repo.init()? {
        info!("initialized repo {}", repo.root().display());
    }
    let config = settings(&repo, &o)?;
    let force_pnet = std::env::var("LIBP2P_FORCE_PNET").is_ok_and(|v| v == "1");
    let swarm_key = repo.swarm_key(o.swarm_key.as_deref(), &config.swarm.swarm_key)?;
    if force_pnet && swarm_key.is_none() {
        anyhow::bail!(
            "LIBP2P_FORCE_PNET=1 but no swarm key: put one at {} or pass --swarm-key FILE (refusing to start an open node)",
            repo.default_swarm_key_path().display()
        );
    }
    let _lock = repo.lock()?;
    let keypair = repo.identity()?;
    let (store, verified, names, preloaded) = open_store(&repo, &config).await?;
    let me = keypair.public().to_peer_id().to_string();
    let names = crate::image::names::Names::new(names, me.clone());
    let (net, net_task) = start_node(&config, &keypair, swarm_key, force_pnet, &store)?;
    let blocks = BlockService::new(store.clone(), Some(net.clone()))
        .with_readahead(config.bitswap.readahead_blocks);
    crate::image::names_sync::spawn(net.clone(), names.clone())?;
    let copies = crate::image::copies::Copies::new(me);
    crate::image::copies::spawn(net.clone(), copies.clone())?;
    let landing = blocks.clone();
    let catalog = crate::image::preload::spawn(
        blocks.clone(),
        names.clone(),
        copies.clone(),
        &config.preload,
        preloaded,
        config.store.gc_target_bytes(),
    )
    .context("starting the [[preload]] worker")?;
    if !config.preload.is_empty() {
        info!("preloading by {} [[preload]] rules", config.preload.len());
    }
    let pins = blocks.with_store(|s| s.pins()).await?;
    if !pins.is_empty() {
        net.provide(pins).await?;
    }
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding the API to {}", config.api.listen))?;
    let api_addr = listener.local_addr()?;
    let instruments = Metrics::default();
    let mounts = Mounts::new(
        blocks.clone(),
        config.mount.clone(),
        repo.root(),
        instruments.clone(),
        Some(verified),
    )?;
    if !config.layer_store.mountpoint.as_os_str().is_empty() {
        let dir = &config.layer_store.mountpoint;
        let m = crate::layer_store::mount(&mounts, dir, config.trust, names.clone())
            .await
            .context("mounting the layer store (layer_store.mountpoint; --layer-store)")?;
        info!("layer store mounted at {}", m.dir.display());
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // started in this order, stopped in the reverse one
    let mut started = Vec::new();
    let registry = start_registry(
        &repo,
        &config,
        &blocks,
        names.clone(),
        &instruments,
        &stopped,
    );
    started.extend(registry.await?);
    started.extend(start_snapshotter(&repo, &config, &mounts, names.clone(), &stopped).await?);
    let state = AppState {
        blocks,
        public_key: keypair.public(),
        repo_path: repo.root().to_path_buf(),
        metrics: config.metrics.enabled,
        mounts: mounts.clone(),
        instruments,
        names,
        copies,
        catalog,
        ui_facts: Default::default(),
        gc_target: config.store.gc_target_bytes(),
        last_verify: Default::default(),
    };
    started.extend(start_metrics(&config, &state, &stopped).await?);
    api::guard::check_listen(&config.api)?;
    let guard = api::guard::Guard::new(&config.api, repo.write_api_token()?)?;
    let router = api::router(state, guard);
    started.extend(start_api_socket(&repo, router.clone(), &stopped));
    repo.write_api_file(&repo::api_multiaddr(api_addr))?;
    info!("API server listening on {}", repo::api_multiaddr(api_addr));
    info!("dashboard: http://{api_addr}{}", api::ui::PATH);
    info!("daemon is ready");

    let served = axum::serve(no_delay(listener), router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await;
    info!("shutting down");
    for part in started.into_iter().rev() {
        part.stop().await;
    }
    mounts.unmount_all().await;
    net.shutdown().await;
    let _ = tokio::time::timeout(STOP_TIMEOUT, net_task).await;
    repo.remove_api_file()?;
    // the blocks reads fetched last are still being written: the flush must include them
    if tokio::time::timeout(FLUSH_TIMEOUT, landing.landed())
        .await
        .is_err()
    {
        warn!("fetched blocks were still being stored after {FLUSH_TIMEOUT:?}; they may be fetched again");
    }
    // sled can retry a flush forever on a full disk: never hang the shutdown on it
    let flushed = tokio::time::timeout(FLUSH_TIMEOUT, tokio::task::spawn_blocking(move || store.flush()))
        .await
        .map_err(|_| anyhow::anyhow!("the block store did not flush within {FLUSH_TIMEOUT:?} (disk full?); recent blocks may be lost"))?;
    served.context("API server failed")?;
    flushed?.context("flushing the block store")?;
    info!("stopped");
    Ok(())
}

/// Longest wait for one part of the daemon to stop at shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A part of the daemon that runs in a task of its own until the shutdown.
struct Started {
    what: &'static str,
    /// Ends when the part has stopped (it watches the shutdown signal itself).
    done: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// Runs once it stopped, or once it was given up on.
    after: Box<dyn FnOnce() + Send>,
}

impl Started {
    /// Waits (bounded) for the part to stop, then tidies up after it.
    async fn stop(self) {
        if tokio::time::timeout(STOP_TIMEOUT, self.done).await.is_err() {
            warn!("the {} did not stop within {STOP_TIMEOUT:?}", self.what);
        }
        (self.after)();
    }
}

/// The config file with the command line's overrides, checked.
fn settings(repo: &Repo, o: &Overrides) -> anyhow::Result<crate::config::Config> {
    let mut config = repo.config()?;
    if !o.listen.is_empty() {
        config.swarm.listen = o.listen.clone();
    }
    config.swarm.peers.extend(o.peers.iter().cloned());
    if o.no_mdns {
        config.swarm.mdns = false;
    }
    if let Some(api) = o.api {
        config.api.listen = api;
    }
    if let Some(d) = &o.layer_store {
        config.layer_store.mountpoint = d.clone();
    }
    if let Some(s) = &o.snapshotter_socket {
        config.snapshotter.socket = s.clone();
    }
    if let Some(r) = o.registry {
        config.registry.listen = r;
        config.registry.enabled = true;
    }
    if let Some(t) = o.fetch_timeout_secs {
        config.bitswap.fetch_timeout_secs = t;
    }
    config
        .validate()
        .context("invalid settings (config file plus command-line flags)")?;
    Ok(config)
}

/// The store tree of the registry's names.
const NAMES_TREE: &str = "registry-names";

/// The block store, and the records kept in its database: the mount's checked chunks, the
/// registry's names and what the preloads pinned.
async fn open_store(
    repo: &Repo,
    config: &crate::config::Config,
) -> anyhow::Result<(Arc<dyn Blocks>, Verified, sled::Tree, sled::Tree)> {
    let path = repo.blocks_dir();
    let cache = config.store.cache_capacity_bytes();
    let min_free = config.store.min_free_bytes();
    let (store, verified, names, preloaded) = tokio::task::spawn_blocking(move || {
        let store = SledStore::open(&path, cache)?.with_min_free(min_free);
        let verified = store.tree(crate::mount::verified::TREE)?;
        let names = store.tree(NAMES_TREE)?;
        let preloaded = store.tree(crate::image::preload::TREE)?;
        anyhow::Ok((store, Verified::new(verified), names, preloaded))
    })
    .await??;
    Ok((Arc::new(store), verified, names, preloaded))
}

/// The p2p node, serving `store` to its peers.
fn start_node(
    config: &crate::config::Config,
    keypair: &libp2p::identity::Keypair,
    swarm_key: Option<cidfs_p2p::psk::SwarmKey>,
    force_pnet: bool,
    store: &Arc<dyn Blocks>,
) -> anyhow::Result<(cidfs_p2p::Client, tokio::task::JoinHandle<()>)> {
    let mut net_cfg = cidfs_p2p::Config::new(keypair.clone());
    net_cfg.listen = config.swarm.listen.clone();
    net_cfg.peers = config.swarm.peers.clone();
    net_cfg.swarm_key = swarm_key.clone();
    net_cfg.force_pnet = force_pnet;
    net_cfg.mdns = config.swarm.mdns;
    net_cfg.kademlia = config.swarm.kademlia;
    net_cfg.idle_connection_timeout = config.swarm.idle_connection_timeout();
    net_cfg.bitswap.fetch_timeout = config.bitswap.fetch_timeout();
    net_cfg.bitswap.rebroadcast = config.bitswap.rebroadcast_interval();
    net_cfg.bitswap.max_wants_per_peer = config.bitswap.max_wants_per_peer;
    net_cfg.bitswap.max_outstanding_bytes_per_peer = config.bitswap.max_outstanding_bytes_per_peer;
    net_cfg.bitswap.corrupt_blocks = std::env::var(CORRUPT_ENV).is_ok_and(|v| v == "1");
    if net_cfg.bitswap.corrupt_blocks {
        warn!("{CORRUPT_ENV}=1: this node serves CORRUPTED blocks (test fault switch)");
    }
    let started = cidfs_p2p::Node::spawn(net_cfg, Arc::new(StoreSource(store.clone())))
        .context("starting the p2p node")?;
    info!("peer id {}", keypair.public().to_peer_id());
    match &swarm_key {
        Some(k) => info!(
            "Swarm is limited to private network of peers with the swarm key; swarm key fingerprint: {}",
            k.fingerprint()
        ),
        None => warn!("no swarm key: this node joins an open network (only peers you configure or discover on the LAN)"),
    }
    Ok(started)
}

/// The registry's push side: uploads and staged blobs in `<repo>/pushes`, names in `names`.
fn open_pushes(
    repo: &Repo,
    config: &crate::config::Config,
    names: crate::image::names::Names,
) -> anyhow::Result<registry_server::push::Pushes> {
    let htpasswd = match config.registry.htpasswd.as_os_str().is_empty() {
        true => None,
        false => {
            let path = repo.root().join(&config.registry.htpasswd);
            let bytes = crate::image::layout::read_limited(
                &path,
                registry_server::htpasswd::MAX_FILE as u64,
            )
            .context("registry.htpasswd")?;
            let text = String::from_utf8(bytes)
                .with_context(|| format!("registry.htpasswd {} is not UTF-8", path.display()))?;
            let file = registry_server::htpasswd::Htpasswd::parse(&text)
                .with_context(|| format!("registry.htpasswd {}", path.display()))?;
            Some(file)
        }
    };
    let root = repo.root().join("pushes");
    registry_server::push::Pushes::open(&root, names, &config.registry, htpasswd)
        .with_context(|| format!("preparing {} for pushes", root.display()))
}

/// The registry endpoint, when enabled; it writes the `registry` file and removes it at stop.
async fn start_registry(
    repo: &Repo,
    config: &crate::config::Config,
    blocks: &BlockService,
    names: crate::image::names::Names,
    instruments: &Metrics,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Started>> {
    if !config.registry.enabled {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(config.registry.listen)
        .await
        .with_context(|| {
            format!(
                "binding the registry endpoint to {} (registry.listen; --registry-listen)",
                config.registry.listen
            )
        })?;
    let addr = listener.local_addr()?;
    repo.write_registry_file(addr)?;
    info!("registry listening on {addr} (pull {addr}/ipfs/<CID>)");
    let pushes = match config.registry.push {
        true => Some(open_pushes(repo, config, names)?),
        false => None,
    };
    let registry = Registry::with_pushes(blocks.clone(), instruments.registry.clone(), pushes);
    let task = serve_until(listener, registry_server::router(registry), stopped.clone());
    let repo = repo.clone();
    Ok(Some(Started {
        what: "registry endpoint",
        done: Box::pin(async move {
            if let Ok(Err(e)) = task.await {
                warn!("registry endpoint failed: {e}");
            }
        }),
        after: Box::new(move || {
            if let Err(e) = repo.remove_registry_file() {
                warn!("{e:#}");
            }
        }),
    }))
}

/// The containerd snapshotter, unless its socket is set to "": its verifier, the layers it
/// mounted before a restart, and its gRPC server.
async fn start_snapshotter(
    repo: &Repo,
    config: &crate::config::Config,
    mounts: &Mounts,
    names: crate::image::names::Names,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Started>> {
    if config.snapshotter.socket.as_os_str().is_empty() {
        return Ok(None);
    }
    let root = repo.root().join(&config.snapshotter.root);
    let socket = repo.root().join(&config.snapshotter.socket);
    let remote = snapshotter::remote::Remote {
        mounts: mounts.clone(),
        names,
        timeout: config.mount.read_timeout(),
    };
    let s = Arc::new(
        Snapshotter::open(&root, remote, config.trust).with_context(|| {
            format!(
                "opening the snapshotter at {} (snapshotter.root)",
                root.display()
            )
        })?,
    );
    s.start_verifier();
    s.restore().await;
    let mut stopped = stopped.clone();
    let stop = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let task = snapshotter::serve(s, socket.clone(), stop).await?;
    let abort = task.abort_handle();
    Ok(Some(Started {
        what: "snapshotter (a client kept a call open)",
        done: Box::pin(async move {
            let _ = task.await;
        }),
        after: Box::new(move || {
            // a server given up on leaves its socket behind
            if !abort.is_finished() {
                abort.abort();
                let _ = std::fs::remove_file(socket);
            }
        }),
    }))
}

/// The API on `<repo>/api.sock` as well (the CLI's preferred way in; see
/// [`crate::repo::API_SOCKET`]), with the same router and the same admission rules. A socket
/// that cannot be bound (a repo path longer than a socket address allows) leaves the TCP API
/// alone, with a warning.
fn start_api_socket(
    repo: &Repo,
    router: axum::Router,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> Option<Started> {
    let path = repo.api_socket();
    let listener = match crate::socket::bind_private(&path, "the API's socket") {
        Ok(l) => l,
        Err(e) => {
            warn!("{e:#}; the CLI will use the TCP API");
            return None;
        }
    };
    info!("API server listening on {} as well", path.display());
    let mut stopped = stopped.clone();
    let listener = {
        use axum::serve::ListenerExt as _;
        // a Unix socket's send buffer is 208 KiB by default, less than one 256 KiB block:
        // `cat` then wrote in pieces, each waiting for the client to read, and ran slower
        // than over loopback TCP, which sizes its buffers itself (0.75-1.3 against 1.2-1.4
        // GB/s from the node's own store)
        fn tap(s: &mut tokio::net::UnixStream) {
            if let Err(e) = socket2::SockRef::from(&*s).set_send_buffer_size(SEND_BUFFER) {
                tracing::debug!("SO_SNDBUF on the API socket: {e}");
            }
        }
        listener.tap_io(tap as fn(&mut tokio::net::UnixStream))
    };
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    let abort = task.abort_handle();
    let repo = repo.clone();
    Some(Started {
        what: "API socket (a client kept a call open)",
        done: Box::pin(async move {
            if let Ok(Err(e)) = task.await {
                warn!("API socket failed: {e}");
            }
        }),
        after: Box::new(move || {
            abort.abort();
            if let Err(e) = repo.remove_api_socket() {
                warn!("{e:#}");
            }
        }),
    })
}

/// The send buffer asked for on each connection to the API socket (the kernel caps it at
/// `net.core.wmem_max`).
const SEND_BUFFER: usize = 4 << 20;

/// The metrics listener, when `metrics.listen` is set.
async fn start_metrics(
    config: &crate::config::Config,
    state: &AppState,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Started>> {
    let Some(addr) = config.metrics.listen_addr()? else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener to {addr} (metrics.listen)"))?;
    let local = listener.local_addr()?;
    info!("metrics listening on {local}");
    info!("read-only dashboard: http://{local}{}", api::ui::PATH);
    let task = serve_until(
        listener,
        api::metrics_router(state.clone()),
        stopped.clone(),
    );
    Ok(Some(Started {
        what: "metrics listener",
        done: Box::pin(async move {
            let _ = task.await;
        }),
        after: Box::new(|| {}),
    }))
}

/// `listener` with Nagle's algorithm off on every connection it accepts. A streamed answer
/// (`cat`, a registry blob) goes out as its headers, then its body: with Nagle on, the body
/// waited for the client's delayed ACK of the headers, 40 ms on Linux, once per request (four
/// times before an `image pull` moved its first layer byte).
fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    fn tap(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on an accepted connection: {e}");
        }
    }
    listener.tap_io(tap as fn(&mut tokio::net::TcpStream))
}

/// Serves `app` on `listener` from a task of its own until `stopped` turns true.
fn serve_until(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(no_delay(listener), app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    })
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!("cannot watch SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    /// Every connection the API, the registry endpoint and the metrics page accept has Nagle
    /// off: a streamed answer's body does not wait for the client's delayed ACK.
    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        use axum::serve::Listener as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = super::no_delay(listener);
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, from) = listener.accept().await;
        assert_eq!(from, client.local_addr().unwrap());
        assert!(accepted.nodelay().unwrap());
        // a plain listener's connections keep Nagle on: the test can fail
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = tokio::net::TcpStream::connect(plain.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = plain.accept().await.unwrap();
        assert!(!s.nodelay().unwrap());
    }
}
