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

impl RegistryCounters {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Counters at one moment.
pub struct Snapshot {
    pub store: StoreStat,
    pub net: cidfs_p2p::Stats,
    /// Bytes the repo directory takes on disk.
    pub disk_bytes: u64,
    /// Manifests, configs, layers and layer bytes the registry served.
    pub registry: [u64; 4],
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
        let g = RegistryCounters::get;
        Ok(Snapshot {
            store,
            net,
            disk_bytes,
            registry: [
                g(&registry.manifests),
                g(&registry.configs),
                g(&registry.layers),
                g(&registry.layer_bytes),
            ],
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
                r[0],
            ),
            (
                "cidfs_registry_configs_total",
                "counter",
                "Image configs the registry endpoint served",
                r[1],
            ),
            (
                "cidfs_registry_layers_total",
                "counter",
                "Layer blob requests (GET) the registry endpoint served",
                r[2],
            ),
            (
                "cidfs_registry_layer_bytes_total",
                "counter",
                "Layer bytes the registry endpoint sent",
                r[3],
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
