//! Prometheus names and the snapshot behind `/metrics` and `repo/stat`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::blockservice::BlockService;
use crate::blockstore::StoreStat;

/// What the read-only registry endpoint served, by kind of blob (updated by `registry`).
#[derive(Debug, Default)]
pub struct RegistryCounters {
    pub manifests: AtomicU64,
    pub configs: AtomicU64,
    pub layers: AtomicU64,
    /// Body bytes of layer blobs sent (ranges included).
    pub layer_bytes: AtomicU64,
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
}

/// Counters at one moment.
pub struct Snapshot {
    pub store: StoreStat,
    pub net: cidfs_p2p::Stats,
    /// Bytes the repo directory takes on disk.
    pub disk_bytes: u64,
    /// What the registry endpoint served.
    pub registry: RegistryStat,
}

impl Snapshot {
    pub async fn take(
        blocks: &BlockService,
        repo: &Path,
        registry: &RegistryCounters,
    ) -> anyhow::Result<Snapshot> {
        let store = blocks.with_store(|s| s.stat()).await?;
        let net = blocks.net().map(|n| n.stats()).unwrap_or_default();
        let repo = repo.to_path_buf();
        let disk_bytes = tokio::task::spawn_blocking(move || dir_size(&repo)).await?;
        Ok(Snapshot {
            store,
            net,
            disk_bytes,
            registry: registry.stat(),
        })
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let n = &self.net;
        let r = &self.registry;
        let rows: [(&str, &str, &str, u64); 15] = [
            (
                "cidfs_blocks_received_total",
                "counter",
                "Blocks fetched from peers",
                n.blocks_received,
            ),
            (
                "cidfs_bytes_received_total",
                "counter",
                "Block bytes fetched from peers",
                n.bytes_received,
            ),
            (
                "cidfs_blocks_sent_total",
                "counter",
                "Blocks sent to peers",
                n.blocks_sent,
            ),
            (
                "cidfs_bytes_sent_total",
                "counter",
                "Block bytes sent to peers",
                n.bytes_sent,
            ),
            (
                "cidfs_duplicate_blocks_total",
                "counter",
                "Blocks received more than once",
                n.duplicate_blocks,
            ),
            (
                "cidfs_rejected_blocks_total",
                "counter",
                "Blocks dropped because they hashed to no wanted CID",
                n.rejected_blocks,
            ),
            ("cidfs_wants", "gauge", "CIDs currently wanted", n.wants),
            ("cidfs_peers", "gauge", "Connected peers", n.peers),
            (
                "cidfs_store_blocks",
                "gauge",
                "Blocks in the store",
                self.store.blocks,
            ),
            (
                "cidfs_store_bytes",
                "gauge",
                "Bytes of blocks in the store",
                self.store.bytes,
            ),
            (
                "cidfs_repo_disk_bytes",
                "gauge",
                "Bytes the repo takes on disk",
                self.disk_bytes,
            ),
            (
                "cidfs_registry_manifests_total",
                "counter",
                "Manifests and indexes the registry endpoint served",
                r.manifests,
            ),
            (
                "cidfs_registry_configs_total",
                "counter",
                "Image configs the registry endpoint served",
                r.configs,
            ),
            (
                "cidfs_registry_layers_total",
                "counter",
                "Layer blob requests (GET) the registry endpoint served",
                r.layers,
            ),
            (
                "cidfs_registry_layer_bytes_total",
                "counter",
                "Layer bytes the registry endpoint sent",
                r.layer_bytes,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, v) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        out
    }
}

/// Total size of the files under `dir` (0 when unreadable).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
