//! Prometheus names, the live instruments, and the snapshot behind `/metrics` and `repo/stat`.
//!
//! Two kinds of figures reach `/metrics`:
//! - live instruments ([`Metrics`]: counters and a histogram of the `prometheus-client` crate),
//!   bumped where things happen: FUSE requests and reads (mounts, snapshotter layers and the
//!   layer store), chunk-cache lookups, registry requests;
//! - a [`Snapshot`] taken at scrape time from the parts that already count for themselves: the
//!   block store (blocks, bytes, disk), bitswap (totals and per peer, from the p2p crate).
//!
//! [`render`] puts both in one Prometheus text page (format 0.0.4).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::blockstore::StoreStat;

/// `Content-Type` of the page [`render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One label, e.g. `[("fs", "mount")]`.
type Label = [(&'static str, &'static str); 1];
/// A FUSE filesystem kind and a request kind, e.g. `[("fs", "mount"), ("op", "lookup")]`.
type FsOp = [(&'static str, &'static str); 2];
/// Labels of a registry request: route kind, method and status code.
type RequestLabels = [(&'static str, String); 3];

/// What the read-only registry endpoint served, by kind of blob (updated by `registry`).
#[derive(Debug, Default)]
pub struct RegistryCounters {
    pub manifests: AtomicU64,
    pub configs: AtomicU64,
    pub layers: AtomicU64,
    /// Body bytes of layer blobs sent (ranges included).
    pub layer_bytes: AtomicU64,
    /// Every request, by route (`ping`, `manifest`, `blob`, `tags`, `other`), method and code.
    requests: Family<RequestLabels, Counter>,
}

/// [`RegistryCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryStat {
    pub manifests: u64,
    pub configs: u64,
    pub layers: u64,
    pub layer_bytes: u64,
}

impl RegistryCounters {
    pub fn stat(&self) -> RegistryStat {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RegistryStat {
            manifests: get(&self.manifests),
            configs: get(&self.configs),
            layers: get(&self.layers),
            layer_bytes: get(&self.layer_bytes),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, route: &'static str, method: &str, code: u16) {
        self.requests
            .get_or_create(&[
                ("route", route.to_string()),
                ("method", method.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
    }
}

/// Request and read counters of one FUSE filesystem kind (`fs` label: `mount`, `snapshotter`
/// or `layer_store`), and of the one mount they are for when [`FuseReads::for_mount`] says so.
#[derive(Debug, Clone)]
pub struct FuseReads {
    fs: &'static str,
    requests: Family<FsOp, Counter>,
    reads: Counter,
    bytes: Counter,
    errors: Counter,
    seconds: Histogram,
    mount: Option<Arc<MountStats>>,
}

impl FuseReads {
    /// Counts one request of kind `op` (`lookup`, `getattr`, `open`, `read`, …).
    pub fn request(&self, op: &'static str) {
        self.requests
            .get_or_create(&[("fs", self.fs), ("op", op)])
            .inc();
    }

    /// Records one answered `read`, started at `started`.
    pub fn record(&self, started: Instant, result: Result<usize, ()>) {
        let took = started.elapsed();
        self.seconds.observe(took.as_secs_f64());
        self.reads.inc();
        match result {
            Ok(n) => {
                self.bytes.inc_by(n as u64);
            }
            Err(()) => {
                self.errors.inc();
            }
        }
        if let Some(m) = &self.mount {
            m.read(took, result);
        }
    }

    /// These counters, also counting into `stats` (one mount's).
    pub fn for_mount(mut self, stats: Arc<MountStats>) -> Self {
        self.mount = Some(stats);
        self
    }
}

/// Read latency buckets of [`MountStats`]: up to 100 µs × 2ⁿ, the last one open.
const LATENCY_BUCKETS: usize = 18;

/// The counters of one mount (a user mount, a snapshotter layer, the layer store): what the
/// dashboard shows per mount. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct MountStats {
    reads: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Chunks its reads asked for, and those not in the chunk cache (fetched and inflated).
    chunks: AtomicU64,
    misses: AtomicU64,
    /// Compressed bytes of the chunks it fetched.
    fetched: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
}

/// [`MountStats`] at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MountStatsView {
    #[serde(rename = "Reads")]
    pub reads: u64,
    #[serde(rename = "BytesRead")]
    pub bytes: u64,
    #[serde(rename = "Errors")]
    pub errors: u64,
    #[serde(rename = "CacheHits")]
    pub hits: u64,
    #[serde(rename = "CacheMisses")]
    pub misses: u64,
    #[serde(rename = "BytesFetched")]
    pub fetched: u64,
    /// Upper bounds of the buckets the median and the 99th percentile read fall in.
    #[serde(rename = "ReadP50Ms")]
    pub p50_ms: Option<f64>,
    #[serde(rename = "ReadP99Ms")]
    pub p99_ms: Option<f64>,
}

impl MountStats {
    fn read(&self, took: std::time::Duration, result: Result<usize, ()>) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(n) => self.bytes.fetch_add(n as u64, Ordering::Relaxed),
            Err(()) => self.errors.fetch_add(1, Ordering::Relaxed),
        };
        let units = (took.as_micros() / 100) as u64; // of 100 µs
        let bucket = (u64::BITS - units.leading_zeros()) as usize;
        self.latency[bucket.min(LATENCY_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// A chunk asked for; `fetched` compressed bytes when it was not cached (0: it was).
    pub fn chunk(&self, fetched: Option<u64>) {
        self.chunks.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = fetched {
            self.misses.fetch_add(1, Ordering::Relaxed);
            self.fetched.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn view(&self) -> MountStatsView {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counts: Vec<u64> = self.latency.iter().map(get).collect();
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| {
            let want = (total as f64 * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            counts.iter().enumerate().find_map(|(i, n)| {
                seen += n;
                // bucket i holds reads of under 100 µs × 2^i
                (total > 0 && seen >= want).then(|| 0.1 * (1u64 << i) as f64)
            })
        };
        let (chunks, misses) = (get(&self.chunks), get(&self.misses));
        MountStatsView {
            reads: get(&self.reads),
            bytes: get(&self.bytes),
            errors: get(&self.errors),
            hits: chunks.saturating_sub(misses),
            misses,
            fetched: get(&self.fetched),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
        }
    }
}

/// The daemon's live instruments. Cheap to clone: every field is shared.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Arc<RegistryCounters>,
    fuse_reads: Family<Label, Counter>,
    fuse_bytes: Family<Label, Counter>,
    fuse_errors: Family<Label, Counter>,
    fuse_seconds: Family<Label, Histogram, fn() -> Histogram>,
    /// Inflated eStargz chunks found in the chunk cache, and not found (then fetched).
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    fuse_requests: Family<FsOp, Counter>,
}

/// Read latency buckets: 100 µs × 4ⁿ, up to ~6.5 s (a read that waits for the swarm).
fn read_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 4.0, 9))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            registry: Arc::default(),
            fuse_reads: Family::default(),
            fuse_bytes: Family::default(),
            fuse_errors: Family::default(),
            fuse_seconds: Family::new_with_constructor(read_histogram as fn() -> Histogram),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            fuse_requests: Family::default(),
        }
    }
}

impl Metrics {
    /// The read counters of FUSE filesystems of kind `fs` (`mount`, `layer_store`).
    pub fn fuse(&self, fs: &'static str) -> FuseReads {
        let l = [("fs", fs)];
        FuseReads {
            fs,
            requests: self.fuse_requests.clone(),
            reads: self.fuse_reads.get_or_create_owned(&l),
            bytes: self.fuse_bytes.get_or_create_owned(&l),
            errors: self.fuse_errors.get_or_create_owned(&l),
            seconds: self.fuse_seconds.get_or_create_owned(&l),
            mount: None,
        }
    }

    /// Reads, bytes and errors of each kind of FUSE filesystem, and the chunk cache's hits
    /// and misses (the dashboard's mounts page).
    pub fn fuse_summary(&self) -> serde_json::Value {
        let mut kinds = serde_json::Map::new();
        for fs in ["mount", "snapshotter", "layer_store"] {
            let l = [("fs", fs)];
            kinds.insert(
                fs.into(),
                serde_json::json!({
                    "Reads": self.fuse_reads.get_or_create(&l).get(),
                    "Bytes": self.fuse_bytes.get_or_create(&l).get(),
                    "Errors": self.fuse_errors.get_or_create(&l).get(),
                }),
            );
        }
        serde_json::json!({
            "ByKind": kinds,
            "CacheHits": self.cache_hits.get(),
            "CacheMisses": self.cache_misses.get(),
        })
    }
}

/// Counters at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub store: StoreStat,
    pub net: cidfs_p2p::Stats,
    /// Bitswap counters per peer.
    pub peers: Vec<(cidfs_p2p::PeerId, cidfs_p2p::PeerStats)>,
    /// Bytes the repo directory takes on disk.
    pub disk_bytes: u64,
    /// What the registry endpoint served.
    pub registry: RegistryStat,
}

/// The `/metrics` page: the live instruments and `snap`.
pub fn render(metrics: &Metrics, snap: Snapshot) -> String {
    let mut r = prometheus_client::registry::Registry::default();
    let m = metrics.clone();
    r.register(
        "cidfs_registry_requests",
        "Requests the registry endpoint answered, by route, method and status code",
        m.registry.requests.clone(),
    );
    r.register(
        "cidfs_fuse_reads",
        "FUSE reads answered, by filesystem (mount: cidfs mount; layer_store: podman's store; snapshotter: containerd's lazy layers)",
        m.fuse_reads,
    );
    r.register(
        "cidfs_fuse_read_bytes",
        "Bytes FUSE reads served",
        m.fuse_bytes,
    );
    r.register(
        "cidfs_fuse_read_errors",
        "FUSE reads answered with an error (EIO after mount.read_timeout_secs, …)",
        m.fuse_errors,
    );
    r.register(
        "cidfs_fuse_read_seconds",
        "Time from a FUSE read to its answer",
        m.fuse_seconds,
    );
    r.register(
        "cidfs_chunk_cache_hits",
        "eStargz chunks a read found inflated in the chunk cache",
        m.cache_hits,
    );
    r.register(
        "cidfs_chunk_cache_misses",
        "eStargz chunks a read had to fetch and inflate",
        m.cache_misses,
    );
    r.register(
        "cidfs_fuse_requests",
        "FUSE requests answered, by filesystem and operation (the layer store's create is podman's `use`, rmdir its release)",
        m.fuse_requests,
    );
    r.register_collector(Box::new(snap));
    let mut out = String::new();
    // writing to a String cannot fail
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
    out
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (n, r) = (&self.net, &self.registry);
        let counters: [(&str, &str, u64); 10] = [
            (
                "cidfs_blocks_received",
                "Blocks fetched from peers",
                n.blocks_received,
            ),
            (
                "cidfs_bytes_received",
                "Block bytes fetched from peers",
                n.bytes_received,
            ),
            ("cidfs_blocks_sent", "Blocks sent to peers", n.blocks_sent),
            (
                "cidfs_bytes_sent",
                "Block bytes sent to peers",
                n.bytes_sent,
            ),
            (
                "cidfs_duplicate_blocks",
                "Blocks received more than once",
                n.duplicate_blocks,
            ),
            (
                "cidfs_rejected_blocks",
                "Blocks dropped because they hashed to no wanted CID",
                n.rejected_blocks,
            ),
            (
                "cidfs_registry_manifests",
                "Manifests and indexes the registry endpoint served",
                r.manifests,
            ),
            (
                "cidfs_registry_configs",
                "Image configs the registry endpoint served",
                r.configs,
            ),
            (
                "cidfs_registry_layers",
                "Layer blob requests (GET) the registry endpoint served",
                r.layers,
            ),
            (
                "cidfs_registry_layer_bytes",
                "Layer bytes the registry endpoint sent",
                r.layer_bytes,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let gauges: [(&str, &str, u64); 5] = [
            ("cidfs_wants", "CIDs currently wanted", n.wants),
            ("cidfs_peers", "Connected peers", n.peers),
            (
                "cidfs_store_blocks",
                "Blocks in the store",
                self.store.blocks,
            ),
            (
                "cidfs_store_bytes",
                "Bytes of blocks in the store",
                self.store.bytes,
            ),
            (
                "cidfs_repo_disk_bytes",
                "Bytes the repo takes on disk",
                self.disk_bytes,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v as i64);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        type Field = fn(&cidfs_p2p::PeerStats) -> u64;
        let per_peer: [(&str, &str, Field); 8] = [
            (
                "cidfs_bitswap_peer_wants_received",
                "Wantlist entries the peer sent",
                |p| p.wants_received,
            ),
            (
                "cidfs_bitswap_peer_wants_sent",
                "Wantlist entries sent to the peer",
                |p| p.wants_sent,
            ),
            (
                "cidfs_bitswap_peer_blocks_received",
                "Blocks the peer delivered",
                |p| p.blocks_received,
            ),
            (
                "cidfs_bitswap_peer_bytes_received",
                "Block bytes the peer delivered",
                |p| p.bytes_received,
            ),
            (
                "cidfs_bitswap_peer_blocks_sent",
                "Blocks sent to the peer",
                |p| p.blocks_sent,
            ),
            (
                "cidfs_bitswap_peer_bytes_sent",
                "Block bytes sent to the peer",
                |p| p.bytes_sent,
            ),
            (
                "cidfs_bitswap_peer_duplicate_blocks",
                "Blocks the peer delivered that another peer had delivered already",
                |p| p.duplicate_blocks,
            ),
            (
                "cidfs_bitswap_peer_rejected_blocks",
                "Blocks the peer sent that hashed to nothing wanted (corrupt or unsolicited)",
                |p| p.rejected_blocks,
            ),
        ];
        for (name, help, field) in per_peer {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (peer, stats) in &self.peers {
                let labels = [("peer", peer.to_string())];
                ConstCounter::new(field(stats)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// How long a measured disk usage is reused: scrapes and `repo/stat` come often, and each
/// walk reads every directory of the repo (M4: every scrape walked it anew).
const DISK_USAGE_TTL: std::time::Duration = std::time::Duration::from_secs(15);

/// [`dir_size`] of the repo, measured at most once per [`DISK_USAGE_TTL`]; concurrent callers
/// wait for one walk instead of each making their own.
pub fn disk_usage(repo: &Path) -> u64 {
    type Measured = Option<(std::path::PathBuf, std::time::Instant, u64)>;
    static LAST: std::sync::Mutex<Measured> = std::sync::Mutex::new(None);
    let mut last = crate::sync::lock(&LAST);
    if let Some((path, at, bytes)) = &*last {
        if path == repo && at.elapsed() < DISK_USAGE_TTL {
            return *bytes;
        }
    }
    let bytes = dir_size(repo);
    *last = Some((repo.to_path_buf(), std::time::Instant::now(), bytes));
    bytes
}

/// Bytes allocated to the files under `dir` on `dir`'s own filesystem (0 when unreadable; what
/// `du` says: the holes gc punches in pack files are not counted): mounts
/// under it (the layer store, snapshot layers, tmpfs) are not entered, nor symlinks followed.
pub fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let dev = root.dev();
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            // DirEntry::metadata does not follow symlinks
            match e.metadata() {
                Ok(m) if m.dev() != dev => {}
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mounts_stats_count_reads_chunks_and_latency() {
        use std::time::Duration;
        let m = super::MountStats::default();
        assert_eq!(m.view().p50_ms, None, "no reads, no latency");
        for _ in 0..98 {
            m.read(Duration::from_micros(150), Ok(4096)); // under 200 µs
        }
        m.read(Duration::from_millis(30), Err(())); // under 51.2 ms
        m.read(Duration::from_secs(3600), Ok(1)); // the open bucket
        m.chunk(None);
        m.chunk(Some(1000));
        let v = m.view();
        assert_eq!((v.reads, v.bytes, v.errors), (100, 98 * 4096 + 1, 1));
        assert_eq!((v.hits, v.misses, v.fetched), (1, 1, 1000));
        assert_eq!(v.p50_ms, Some(0.2));
        assert_eq!(v.p99_ms, Some(51.2));
    }

    use super::*;

    /// A filesystem mounted under the repo (the layer store, a snapshot layer, a tmpfs) is not
    /// counted or walked (M4).
    #[test]
    fn dir_size_stays_on_the_repos_filesystem() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("a"), vec![0u8; 1000]).unwrap();
        let sub = repo.path().join("mnt");
        std::fs::create_dir(&sub).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(&sub)
            .status()
            .is_ok_and(|s| s.success());
        assert!(mounted, "mounting a tmpfs needs root");
        std::fs::write(sub.join("big"), vec![0u8; 4 << 20]).unwrap();
        let size = dir_size(repo.path());
        let _ = std::process::Command::new("umount").arg(&sub).status();
        // "a" takes one filesystem block; the tmpfs's 4 MiB are not counted
        assert!((1000..=64 << 10).contains(&size), "{size}");
    }

    fn snapshot() -> Snapshot {
        let peer = cidfs_p2p::PeerId::random();
        Snapshot {
            store: StoreStat {
                blocks: 3,
                bytes: 300,
            },
            net: cidfs_p2p::Stats {
                blocks_received: 7,
                ..Default::default()
            },
            peers: vec![(
                peer,
                cidfs_p2p::PeerStats {
                    blocks_received: 7,
                    duplicate_blocks: 1,
                    ..Default::default()
                },
            )],
            disk_bytes: 4096,
            registry: RegistryStat::default(),
        }
    }

    /// The value of the sample line that starts with `prefix`.
    fn sample(page: &str, prefix: &str) -> Option<f64> {
        page.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn page_holds_snapshot_live_and_per_peer_figures() {
        let m = Metrics::default();
        let reads = m.fuse("mount");
        reads.record(Instant::now(), Ok(4096));
        reads.record(Instant::now(), Err(()));
        m.cache_hits.inc();
        reads.request("lookup");
        m.fuse("layer_store").request("create");
        m.registry.request("blob", "GET", 206);
        let snap = snapshot();
        let peer = snap.peers[0].0.to_string();
        let page = render(&m, snap);
        for (series, want) in [
            ("cidfs_blocks_received_total", 7.0),
            ("cidfs_store_bytes", 300.0),
            ("cidfs_fuse_reads_total{fs=\"mount\"}", 2.0),
            ("cidfs_fuse_read_bytes_total{fs=\"mount\"}", 4096.0),
            ("cidfs_fuse_read_errors_total{fs=\"mount\"}", 1.0),
            ("cidfs_fuse_read_seconds_count{fs=\"mount\"}", 2.0),
            ("cidfs_chunk_cache_hits_total", 1.0),
            ("cidfs_fuse_requests_total{fs=\"mount\",op=\"lookup\"}", 1.0),
            (
                "cidfs_fuse_requests_total{fs=\"layer_store\",op=\"create\"}",
                1.0,
            ),
            (
                "cidfs_registry_requests_total{route=\"blob\",method=\"GET\",code=\"206\"}",
                1.0,
            ),
        ] {
            assert_eq!(sample(&page, &format!("{series} ")), Some(want), "{series}");
        }
        let dup = format!("cidfs_bitswap_peer_duplicate_blocks_total{{peer=\"{peer}\"}} ");
        assert_eq!(sample(&page, &dup), Some(1.0), "{page}");
        // every family is typed once
        assert_eq!(
            page.matches("# TYPE cidfs_bitswap_peer_blocks_received_total counter")
                .count(),
            1
        );
    }
}
