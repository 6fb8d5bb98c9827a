//! The daemon's TOML configuration (`<repo>/config.toml`), typed.
//!
//! Every section and every key is optional: a missing key takes the default shown in
//! `config/cidfs.toml`, which is also the file `cidfs init` writes. Unknown keys are errors
//! (`deny_unknown_fields`), so a typo such as `mdsn = false` is reported with its name and line
//! instead of being silently ignored. Multiaddrs are checked when the file is loaded, and static
//! peers must end in `/p2p/<peer id>`.
//!
//! [`Config::from_toml_str`] is pure; [`Config::load`] adds the file read and names the file in
//! its errors. This is the only module that turns config text into values.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// The documented default config file, as written by `cidfs init`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../config/cidfs.toml");

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[api]`: the kubo-compatible HTTP API.
    pub api: ApiConfig,
    /// `[swarm]`: the libp2p node.
    pub swarm: SwarmConfig,
    /// `[bitswap]`: block exchange limits and timing.
    pub bitswap: BitswapConfig,
    /// `[store]`: the local block store.
    pub store: StoreConfig,
    /// `[metrics]`: Prometheus metrics.
    pub metrics: MetricsConfig,
    /// `[mount]`: lazy image mounts.
    pub mount: MountConfig,
    /// `[registry]`: the read-only registry endpoint.
    pub registry: RegistryConfig,
    /// `[layer_store]`: the Podman / CRI-O additional layer store.
    pub layer_store: LayerStoreConfig,
    /// `[snapshotter]`: the containerd snapshotter.
    pub snapshotter: SnapshotterConfig,
    /// `[trust]`: what a lazily served layer must show first.
    pub trust: Trust,
    /// `[[preload]]`: images this node fetches and pins ahead of use.
    pub preload: Vec<PreloadRule>,
}

/// Most `[[preload]]` rules.
pub const MAX_PRELOAD_RULES: usize = 64;
/// Longest `[[preload]] name` pattern.
pub const MAX_PATTERN: usize = 256;
/// Most copies a `replicas` rule may ask for.
pub const MAX_REPLICAS: u32 = 1000;

/// One `[[preload]]` rule: the images named by `name` are fetched and pinned in the background
/// when the name appears or moves, by every node with the rule (`all = true`) or by as many as
/// keep `replicas` full copies in the swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreloadRule {
    /// The names it covers: a glob over `repo:tag` or `repo` (`*` also crosses `/`):
    /// `team/*`, `app:1.*`, `*`.
    pub name: String,
    /// Keep at least this many full copies in the swarm; the nodes with the rule decide which
    /// of them hold one, without a coordinator, and replace a holder that leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Every node with the rule holds a copy.
    #[serde(default)]
    pub all: bool,
    /// Only this platform's image of a multi-platform index (`linux/amd64`, `linux/arm64/v8`);
    /// default: every platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Fetch and pin only the index, manifests and configs, and read each eStargz layer's
    /// table of contents into the store, so a lazy start begins warm; the layers' files come
    /// as they are read. Default: the whole image.
    #[serde(default)]
    pub lazy: bool,
}

impl PreloadRule {
    /// The rule's glob, checked.
    pub fn pattern(&self) -> anyhow::Result<glob::Pattern> {
        anyhow::ensure!(
            !self.name.is_empty() && self.name.len() <= MAX_PATTERN,
            "name must be 1 to {MAX_PATTERN} characters"
        );
        glob::Pattern::new(&self.name)
            .with_context(|| format!("name {:?} is not a glob", self.name))
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.pattern()?;
        match (self.replicas, self.all) {
            (Some(_), true) => anyhow::bail!("takes `replicas = N` or `all = true`, not both"),
            (None, false) => anyhow::bail!("needs `replicas = N` or `all = true`"),
            (Some(n), false) => anyhow::ensure!(
                (1..=MAX_REPLICAS).contains(&n),
                "replicas must be 1 to {MAX_REPLICAS}"
            ),
            (None, true) => {}
        }
        if let Some(p) = &self.platform {
            cidfs_formats::oci::Platform::parse(p)
                .map_err(|_| anyhow::anyhow!("platform {p:?} is not OS/ARCH[/VARIANT]"))?;
        }
        Ok(())
    }
}

/// `[snapshotter]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotterConfig {
    /// Unix socket of the containerd snapshotter (relative: in the repo); empty: off.
    pub socket: std::path::PathBuf,
    /// Directory of the snapshots (relative: in the repo).
    pub root: std::path::PathBuf,
}

/// `[trust]` section: what a layer served lazily (by the containerd snapshotter or the layer
/// store) must show before a container runtime may record it under the DiffID its image's
/// config claims: containerd names snapshots by the chain IDs of those DiffIDs, and
/// containers/storage finds layers by them, so every later image that claims the same
/// DiffIDs would run the bytes without looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trust {
    pub unverified_layers: UnverifiedLayers,
    /// Longest full read of one layer when proving it.
    pub verify_timeout_secs: u64,
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            unverified_layers: UnverifiedLayers::VerifyFirst,
            verify_timeout_secs: 600,
        }
    }
}

impl Trust {
    /// `verify_timeout_secs` as a duration.
    pub fn verify_timeout(&self) -> Duration {
        Duration::from_secs(self.verify_timeout_secs)
    }
}

/// `trust.unverified_layers`: a layer not yet read whole on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnverifiedLayers {
    /// Read it whole and check its DiffID before it is committed (later uses are lazy).
    #[default]
    VerifyFirst,
    /// Serve it at once and check it in the background; withdrawn if it is not its DiffID.
    /// Until then another image claiming the same chain ID could run it: for swarms whose
    /// every publisher is trusted by every tenant of the node.
    VerifyAfter,
    /// Never check it (stargz-snapshotter's behaviour): single-tenant nodes only.
    Trust,
}

impl Default for SnapshotterConfig {
    fn default() -> Self {
        SnapshotterConfig {
            socket: "snapshotter.sock".into(),
            root: "snapshotter".into(),
        }
    }
}

/// `[layer_store]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LayerStoreConfig {
    /// Where the daemon mounts the additional layer store; empty: not mounted.
    pub mountpoint: std::path::PathBuf,
}

/// `[registry]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Serve images of the swarm as `HOST:PORT/ipfs/<CID>` and by the names pushed to it, to
    /// docker, podman, skopeo, containerd.
    pub enabled: bool,
    /// `IP:port` it listens on; port 0 lets the OS pick.
    pub listen: SocketAddr,
    /// Accept pushes (the distribution spec's push flow); each pushed image is converted to
    /// eStargz, stored and pinned, and its tag names it.
    pub push: bool,
    /// `[registry.pushers.NAME]`: who may push. With none, pushes are taken only from
    /// loopback; with any, every push needs the `Authorization` of one of them. Pulls stay
    /// anonymous.
    pub pushers: std::collections::BTreeMap<String, Pusher>,
    /// An htpasswd file of bcrypt hashes (`htpasswd -B`; relative: in the repo) whose users may
    /// push with basic auth, besides `pushers`; empty: none.
    pub htpasswd: std::path::PathBuf,
    /// Largest blob a push may upload, in MiB.
    pub max_blob_mb: u64,
}

/// One who may push to the registry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pusher {
    /// `bearer:TOKEN` or `basic:USER:PASSWORD` (what `docker login` / `podman login` send).
    pub auth_secret: String,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("auth_secret", &"<redacted>")
            .finish()
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 5050)),
            push: true,
            pushers: Default::default(),
            htpasswd: Default::default(),
            max_blob_mb: 8192,
        }
    }
}

/// `[api]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `IP:port` the HTTP API (and `/metrics`) listens on; port 0 lets the OS pick.
    pub listen: SocketAddr,
    /// Browser origins (`scheme://host[:port]`) allowed to call the API. A request that carries
    /// any other `Origin` (or, without one, a `Referer` from another origin, or a browser's
    /// cross-site `Sec-Fetch-Site`) is refused with 403, as kubo refuses it.
    pub allowed_origins: Vec<String>,
    /// Host names the API answers to besides IP literals and `localhost`: a request whose `Host`
    /// header names another host is refused with 403 (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// `[api.authorizations.NAME]`: callers of the API and what each may call (kubo's
    /// `API.Authorizations`). With any, every `/api/` request needs the `Authorization` of one
    /// of them (or the node's own token) and a path it allows; without any, the API must
    /// listen on loopback only.
    pub authorizations: std::collections::BTreeMap<String, Authorization>,
}

/// One caller of the API.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// `bearer:TOKEN` (sent as `Authorization: Bearer TOKEN`) or `basic:USER:PASSWORD`
    /// (HTTP basic auth).
    pub auth_secret: String,
    /// Paths this caller may call, each with what lies below it: `/api/v0/cat`,
    /// `/api/v0/pin` (all of `pin/…`), `/api/v0` (everything, `mount` included).
    pub allowed_paths: Vec<String>,
}

/// A secret as `auth_secret` and `--api-auth` write it, parsed: `bearer:TOKEN` or
/// `basic:USER:PASSWORD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSecret<'a> {
    Bearer(&'a str),
    Basic { user: &'a str, password: &'a str },
}

impl<'a> AuthSecret<'a> {
    /// None: neither form.
    pub fn parse(secret: &'a str) -> Option<Self> {
        match secret.split_once(':')? {
            ("bearer", token) => Some(AuthSecret::Bearer(token)),
            ("basic", up) => {
                let (user, password) = up.split_once(':')?;
                Some(AuthSecret::Basic { user, password })
            }
            _ => None,
        }
    }

    /// The `Authorization` header value that carries it.
    pub fn header(&self) -> String {
        use base64::Engine as _;
        match self {
            AuthSecret::Bearer(token) => format!("Bearer {token}"),
            AuthSecret::Basic { user, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
        }
    }
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("auth_secret", &"<redacted>")
            .field("allowed_paths", &self.allowed_paths)
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5001)),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            authorizations: Default::default(),
        }
    }
}

/// `[swarm]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwarmConfig {
    /// Multiaddrs the libp2p node listens on.
    #[serde(with = "multiaddrs")]
    pub listen: Vec<Multiaddr>,
    /// Static peers, dialled at start and kept connected; each ends in `/p2p/<peer id>`.
    #[serde(with = "multiaddrs")]
    pub peers: Vec<Multiaddr>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Run the Kademlia DHT (peer routing and provider records).
    pub kademlia: bool,
    /// Path of the swarm key file; empty means `<repo>/swarm.key` if that file exists.
    /// A relative path is taken relative to the repo directory.
    pub swarm_key: String,
    /// Close connections that have had no open stream for this long.
    pub idle_connection_timeout_secs: u64,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            listen: vec![Multiaddr::empty()
                .with(Protocol::Ip4([0, 0, 0, 0].into()))
                .with(Protocol::Tcp(4001))],
            peers: Vec::new(),
            mdns: true,
            kademlia: true,
            swarm_key: String::new(),
            idle_connection_timeout_secs: 600,
        }
    }
}

impl SwarmConfig {
    /// The static peers as `(peer id, address)`; the address keeps its `/p2p/` suffix.
    pub fn static_peers(&self) -> Vec<(PeerId, Multiaddr)> {
        self.peers
            .iter()
            .filter_map(|addr| peer_id_of(addr).map(|id| (id, addr.clone())))
            .collect()
    }

    /// `idle_connection_timeout_secs` as a duration.
    pub fn idle_connection_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_connection_timeout_secs)
    }
}

/// `[bitswap]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BitswapConfig {
    /// A block that no peer delivers within this time fails to fetch.
    pub fetch_timeout_secs: u64,
    /// Wantlist entries we keep queued for one peer; more are dropped.
    pub max_wants_per_peer: usize,
    /// Bytes of blocks queued for one peer before we stop reading its wants.
    pub max_outstanding_bytes_per_peer: usize,
    /// Leaves `cat` fetches in parallel ahead of the reader.
    pub readahead_blocks: usize,
    /// Interval at which unanswered wants are sent again.
    pub rebroadcast_secs: u64,
}

impl Default for BitswapConfig {
    fn default() -> Self {
        BitswapConfig {
            fetch_timeout_secs: 60,
            max_wants_per_peer: 1024,
            max_outstanding_bytes_per_peer: 8 * 1024 * 1024,
            readahead_blocks: 32,
            rebroadcast_secs: 1,
        }
    }
}

impl BitswapConfig {
    /// `fetch_timeout_secs` as a duration.
    pub fn fetch_timeout(&self) -> Duration {
        Duration::from_secs(self.fetch_timeout_secs)
    }

    /// `rebroadcast_secs` as a duration.
    pub fn rebroadcast_interval(&self) -> Duration {
        Duration::from_secs(self.rebroadcast_secs)
    }
}

/// `[store]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Memory sled may use for its page cache, in MiB.
    pub cache_capacity_mb: u64,
    /// Free disk space, in MiB, that writes to the store always leave on its filesystem; a write
    /// that would go below it fails with a "disk full" error instead of filling the disk.
    pub min_free_mb: u64,
    /// The store's size goal, in MiB (0: none): a store over it is garbage collected down to it,
    /// unpinned blocks first, then the images `[[preload]]` holds beyond what its rules ask.
    pub gc_target_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity_mb: 256,
            min_free_mb: 64,
            gc_target_mb: 0,
        }
    }
}

impl StoreConfig {
    /// `cache_capacity_mb` in bytes.
    pub fn cache_capacity_bytes(&self) -> u64 {
        self.cache_capacity_mb.saturating_mul(1024 * 1024)
    }

    /// `min_free_mb` in bytes.
    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_mb.saturating_mul(1024 * 1024)
    }

    /// `gc_target_mb` in bytes; None when 0 (no target).
    pub fn gc_target_bytes(&self) -> Option<u64> {
        (self.gc_target_mb > 0).then(|| self.gc_target_mb.saturating_mul(1024 * 1024))
    }
}

/// `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `/metrics` on the API port.
    pub enabled: bool,
    /// `IP:port` of a listener serving only `/metrics` and `/healthz` (empty: none), so that
    /// Prometheus can scrape a node whose API stays on loopback.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: String::new(),
        }
    }
}

impl MetricsConfig {
    /// The separate metrics listener, if one is set (and metrics are on).
    pub fn listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if !self.enabled || self.listen.trim().is_empty() {
            return Ok(None);
        }
        let addr = self.listen.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "metrics.listen: `{}` is not an IP:port such as 0.0.0.0:9101",
                self.listen
            )
        })?;
        Ok(Some(addr))
    }
}

/// `[mount]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MountConfig {
    /// A read in a mount whose blocks no peer delivers within this time fails with EIO.
    pub read_timeout_secs: u64,
    /// At mount, fetch in the background what each layer puts before `.prefetch.landmark`.
    pub prefetch: bool,
    /// A mount is answered once that prefetch is done, or after this many seconds, as
    /// stargz-snapshotter's `prefetch_timeout`. 0 (the default): at once; the prefetch goes on
    /// and a read of a chunk it is fetching waits for that fetch, which measured no slower.
    pub prefetch_wait_secs: u64,
    /// When a program or shared library in a mount is first read, read the interpreter and the
    /// libraries it names (ELF `DT_NEEDED`) at once, side by side, instead of one after another
    /// as the dynamic loader opens them.
    pub prefetch_libraries: bool,
    /// After the prefetch, fetch (and pin) the rest of every mounted image in the background,
    /// so the node ends up holding the whole image and can serve it to others.
    pub background_fetch: bool,
    /// Memory for inflated eStargz chunks shared by all mounts, in MiB.
    pub cache_mb: u64,
    /// `cidfs mount` targets must be empty directories strictly below one of these.
    pub allowed_roots: Vec<std::path::PathBuf>,
    /// Honour setuid bits and device nodes in mounted images (leaves out `nosuid,nodev`).
    /// Containers do not need it: overlayfs applies its own mount's flags, not its lowers'.
    pub allow_setuid_and_devices: bool,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            read_timeout_secs: 30,
            prefetch: true,
            prefetch_wait_secs: 0,
            prefetch_libraries: true,
            background_fetch: false,
            cache_mb: 256,
            allowed_roots: ["/mnt", "/media", "/srv", "/run/cidfs", "/tmp", "/var/tmp"]
                .into_iter()
                .map(std::path::PathBuf::from)
                .collect(),
            allow_setuid_and_devices: false,
        }
    }
}

impl MountConfig {
    /// `read_timeout_secs` as a duration.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout_secs)
    }

    /// `cache_mb` in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1024 * 1024)
    }
}

impl Config {
    /// Reads and checks a config file; errors name the file and the offending key or line.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Config::from_toml_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses and checks config text.
    pub fn from_toml_str(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// The config as TOML (no comments; `config/cidfs.toml` is the commented form).
    pub fn to_toml_string(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("serializing config")
    }

    /// Checks the rules serde cannot express; each error names its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        for addr in &self.swarm.peers {
            anyhow::ensure!(
                peer_id_of(addr).is_some(),
                "swarm.peers: `{addr}` must end in /p2p/<peer id>"
            );
        }
        let positive = [
            (
                "bitswap.fetch_timeout_secs",
                self.bitswap.fetch_timeout_secs,
            ),
            ("bitswap.rebroadcast_secs", self.bitswap.rebroadcast_secs),
            (
                "bitswap.max_wants_per_peer",
                self.bitswap.max_wants_per_peer as u64,
            ),
            (
                "bitswap.max_outstanding_bytes_per_peer",
                self.bitswap.max_outstanding_bytes_per_peer as u64,
            ),
            (
                "bitswap.readahead_blocks",
                self.bitswap.readahead_blocks as u64,
            ),
            ("mount.read_timeout_secs", self.mount.read_timeout_secs),
            ("registry.max_blob_mb", self.registry.max_blob_mb),
        ];
        for (key, value) in positive {
            anyhow::ensure!(value > 0, "{key} must be at least 1");
        }
        self.metrics.listen_addr()?;
        for (name, p) in &self.registry.pushers {
            anyhow::ensure!(
                AuthSecret::parse(&p.auth_secret).is_some(),
                "registry.pushers.{name}.auth_secret must be bearer:TOKEN or basic:USER:PASSWORD"
            );
        }
        anyhow::ensure!(
            self.preload.len() <= MAX_PRELOAD_RULES,
            "at most {MAX_PRELOAD_RULES} [[preload]] rules"
        );
        for (i, rule) in self.preload.iter().enumerate() {
            rule.validate()
                .with_context(|| format!("[[preload]] rule {} ({:?})", i + 1, rule.name))?;
        }
        Ok(())
    }
}

fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(id)) => Some(id),
        _ => None,
    }
}

/// Serde for `Vec<Multiaddr>` as a list of strings, with the bad address in the error.
mod multiaddrs {
    use libp2p::Multiaddr;
    use serde::de::Error as _;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addrs: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(addrs.iter().map(Multiaddr::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| {
                s.parse()
                    .map_err(|e| D::Error::custom(format!("invalid multiaddr `{s}`: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_text(text: &str) -> String {
        format!("{:#}", Config::from_toml_str(text).expect_err("must fail"))
    }

    #[test]
    fn documented_file_is_the_default() {
        let parsed = Config::from_toml_str(DEFAULT_CONFIG_TOML).expect("config/cidfs.toml parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn defaults_round_trip_and_empty_file_is_default() {
        let text = Config::default().to_toml_string().expect("serializes");
        assert_eq!(
            Config::from_toml_str(&text).expect("parses"),
            Config::default()
        );
        assert_eq!(Config::from_toml_str("").expect("empty"), Config::default());
        assert!(text.contains("/ip4/0.0.0.0/tcp/4001"), "{text}");
        assert!(text.contains("127.0.0.1:5001"), "{text}");
    }

    #[test]
    fn partial_section_keeps_other_defaults() {
        let config = Config::from_toml_str("[swarm]\nmdns = false\n").expect("parses");
        assert!(!config.swarm.mdns);
        assert!(config.swarm.kademlia);
        assert_eq!(config.bitswap, BitswapConfig::default());
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = error_text("[swarm]\nmdsn = false\n");
        assert!(e.contains("mdsn"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = error_text("[swram]\n");
        assert!(e.contains("swram"), "{e}");
    }

    #[test]
    fn bad_multiaddrs_are_rejected() {
        let e = error_text("[swarm]\nlisten = [\"/ip4/0.0.0.0/tcpx/4001\"]\n");
        assert!(e.contains("/ip4/0.0.0.0/tcpx/4001"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = error_text("[swarm]\npeers = [\"/ip4/10.0.0.1/tcp/4001\"]\n");
        assert!(e.contains("swarm.peers"), "{e}");
        assert!(e.contains("/p2p/"), "{e}");
    }

    #[test]
    fn metrics_listen_is_an_address_or_nothing() {
        let c = Config::from_toml_str("[metrics]\nlisten = \"0.0.0.0:9101\"\n").expect("parses");
        assert_eq!(
            c.metrics.listen_addr().unwrap(),
            Some(SocketAddr::from(([0, 0, 0, 0], 9101)))
        );
        assert_eq!(Config::default().metrics.listen_addr().unwrap(), None);
        let off = Config::from_toml_str("[metrics]\nenabled = false\nlisten = \"0.0.0.0:9101\"\n")
            .expect("parses");
        assert_eq!(off.metrics.listen_addr().unwrap(), None, "disabled wins");
        let e = error_text("[metrics]\nlisten = \"localhost\"\n");
        assert!(
            e.contains("metrics.listen") && e.contains("localhost"),
            "{e}"
        );
    }

    #[test]
    fn static_peers_carry_their_ids() {
        let id = PeerId::random();
        let text = format!("[swarm]\npeers = [\"/ip4/10.0.0.1/tcp/4001/p2p/{id}\"]\n");
        let config = Config::from_toml_str(&text).expect("parses");
        let peers = config.swarm.static_peers();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].0, id);
    }

    #[test]
    fn bad_values_are_rejected_by_key() {
        let e = error_text("[bitswap]\nfetch_timeout_secs = 0\n");
        assert!(e.contains("bitswap.fetch_timeout_secs"), "{e}");
        let e = error_text("[api]\nlisten = \"localhost\"\n");
        assert!(e.contains("listen"), "{e}");
        let e = error_text("[bitswap]\nreadahead_blocks = -1\n");
        assert!(e.contains("readahead_blocks"), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        let e = format!("{:#}", Config::load(&path).expect_err("missing"));
        assert!(e.contains("config.toml"), "{e}");
        std::fs::write(&path, "[metrics]\nenable = true\n").expect("write");
        let e = format!("{:#}", Config::load(&path).expect_err("typo"));
        assert!(e.contains("config.toml") && e.contains("enable"), "{e}");
    }

    #[test]
    fn preload_rules_are_checked() {
        let ok = Config::from_toml_str(
            "[[preload]]\nname = \"team/*\"\nreplicas = 3\n\n[[preload]]\nname = \"*\"\nall = true\nplatform = \"linux/arm64/v8\"\nlazy = true\n",
        )
        .expect("parses");
        assert_eq!(ok.preload.len(), 2);
        assert_eq!(ok.preload[0].replicas, Some(3));
        assert!(ok.preload[1].all && ok.preload[1].lazy);
        for (text, says) in [
            ("name = \"a\"\nreplicas = 2\nall = true", "not both"),
            ("name = \"a\"", "needs"),
            ("name = \"a\"\nreplicas = 0", "replicas must be"),
            ("name = \"[a\"\nall = true", "not a glob"),
            ("name = \"\"\nall = true", "name must be"),
            ("name = \"a\"\nall = true\nplatform = \"linux\"", "OS/ARCH"),
            ("name = \"a\"\nall = true\ncopies = 2", "copies"),
        ] {
            let e = error_text(&format!("[[preload]]\n{text}\n"));
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
