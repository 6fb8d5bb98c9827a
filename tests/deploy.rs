//! The compose cluster of `deploy/compose/` booted without Docker (there is no engine here): each
//! service of `compose.yaml` runs in a network namespace of its own on one bridge, with the
//! service's very command, environment, bind mounts and secret, read from the files in the repo
//! (not copies). Named volumes and the secret become temp files, and container paths in the
//! command and environment are rewritten to them. The nodes must find each other by mDNS (the
//! compose files name no peers), share an image, and their `/metrics` counters must move as the
//! image travels: bitswap per peer, registry requests, FUSE reads, store size.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::images::gen::{build_oci_layout, GenSpec};
use crate::util::{
    command, eventually, http_in_netns, pipe_lines, run_bounded, swarm_key, wait_bounded, Cluster,
    MetricsPage, BIN, START_TIMEOUT,
};

const COMPOSE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/compose");

/// One service of `compose.yaml`, as the test reads it.
struct Service {
    name: String,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    volumes: Vec<String>,
    secrets: Vec<String>,
}

fn strings(v: &serde_yaml_ng::Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn services() -> Vec<Service> {
    let text = std::fs::read_to_string(Path::new(COMPOSE_DIR).join("compose.yaml"))
        .expect("deploy/compose/compose.yaml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("compose.yaml is YAML");
    let mut out: Vec<Service> = doc["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, s)| Service {
            name: name.as_str().expect("service name").to_string(),
            command: strings(&s["command"]),
            environment: s["environment"]
                .as_mapping()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let v = match v {
                                serde_yaml_ng::Value::String(s) => s.clone(),
                                other => serde_yaml_ng::to_string(other)
                                    .expect("scalar")
                                    .trim()
                                    .to_string(),
                            };
                            (k.as_str().expect("env name").to_string(), v)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            volumes: strings(&s["volumes"]),
            secrets: strings(&s["secrets"]),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `arg` with a container path prefix replaced by its host path (`paths`: longest first).
fn rewrite(paths: &[(String, PathBuf)], arg: &str) -> String {
    for (c, h) in paths {
        if let Some(rest) = arg.strip_prefix(c.as_str()) {
            return format!("{}{rest}", h.display());
        }
    }
    arg.to_string()
}

/// A service running in its namespace; killed by PID on drop.
struct Node {
    name: String,
    ns: String,
    child: Child,
    /// Container path → host path, longest first.
    paths: Vec<(String, PathBuf)>,
    /// Holds the named volumes.
    _volumes: tempfile::TempDir,
    lines: Receiver<String>,
    log: PathBuf,
}

impl Node {
    fn start(svc: &Service, ns: String, secret: &Path) -> Node {
        let volumes = tempfile::tempdir().expect("volumes");
        let mut paths = Vec::new();
        for v in &svc.volumes {
            let mut parts = v.split(':');
            let (src, dst) = (parts.next().expect("source"), parts.next().expect("target"));
            let host = match src.strip_prefix("./") {
                // a bind mount of a file beside compose.yaml: that very file
                Some(rel) => Path::new(COMPOSE_DIR).join(rel),
                // a named volume
                None => volumes.path().join(src),
            };
            assert!(
                host.exists() || !src.starts_with("./"),
                "{}: bind mount {src} does not exist",
                svc.name
            );
            std::fs::create_dir_all(volumes.path().join(src.trim_start_matches("./")))
                .expect("volume dir");
            paths.push((dst.to_string(), host));
        }
        for s in &svc.secrets {
            paths.push((format!("/run/secrets/{s}"), secret.to_path_buf()));
        }
        paths.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, BIN])
            .args(svc.command.iter().map(|a| rewrite(&paths, a)))
            .env_remove("LIBP2P_FORCE_PNET")
            .env_remove("CIDFS_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &svc.environment {
            cmd.env(k, rewrite(&paths, v));
        }
        let mut child = cmd.spawn().expect("spawn the service's daemon");
        let log = volumes.path().join("daemon.log");
        let lines = pipe_lines(child.stderr.take().expect("stderr"), log.clone());
        let node = Node {
            name: svc.name.clone(),
            ns,
            child,
            paths,
            _volumes: volumes,
            lines,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("{} did not start:\n{}", node.name, node.log()));
            let line = node
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{} did not start:\n{}", node.name, node.log()));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("--log-format json wrote a line that is not JSON ({e}): {line}")
            });
            if v["message"] == "daemon is ready" {
                break;
            }
        }
        node
    }

    fn repo(&self) -> String {
        rewrite(&self.paths, "/var/lib/cidfs")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `cidfs <args>` in the node's namespace, on its repo.
    fn cli(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let cmd = command(Some(&self.ns), Path::new(&self.repo()), &args);
        run_bounded(cmd, Duration::from_secs(300))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{}: cidfs {args:?}: {}\n--- log ---\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// The loopback address of the port in the repo's `api` (a multiaddr ending in `/tcp/P`) or
    /// `registry` (`IP:P`) file: the listener's port, to reach from inside the namespace.
    fn local(&self, file: &str) -> SocketAddr {
        let text = std::fs::read_to_string(format!("{}/{file}", self.repo()))
            .unwrap_or_else(|e| panic!("{}: {file} file: {e}", self.name));
        let port: u16 = text
            .trim()
            .rsplit(['/', ':'])
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{}: no port in {file}: {text}", self.name));
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Scrapes `/metrics` from inside the namespace.
    fn metrics(&self) -> MetricsPage {
        let (status, body) = http_in_netns(&self.ns, self.local("api"), "GET", "/metrics");
        assert_eq!(status, 200, "{}: /metrics", self.name);
        MetricsPage(String::from_utf8(body).expect("utf-8"))
    }

    fn peer_id(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["id"])).expect("id JSON");
        v["ID"].as_str().expect("ID").to_string()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, Duration::from_secs(30));
    }
}

#[test]
fn compose_cluster_shares_an_image_and_its_metrics_move() {
    let _turn = crate::util::swarm_turn();
    let svcs = services();
    let names: Vec<&str> = svcs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["node1", "node2", "node3"],
        "deploy/compose services"
    );
    let cluster = Cluster::up(svcs.len(), "");
    let secrets = tempfile::tempdir().expect("secrets");
    let key = secrets.path().join("swarm.key");
    std::fs::write(&key, swarm_key()).expect("swarm key");
    let nodes: Vec<Node> = svcs
        .iter()
        .enumerate()
        .map(|(i, s)| Node::start(s, cluster.ns(i + 1), &key))
        .collect();
    // LIBP2P_FORCE_PNET=1 from the compose file: the key must be in use
    for n in &nodes {
        assert!(
            n.log().contains("swarm key fingerprint"),
            "{}: not private",
            n.name
        );
    }
    // mDNS on the bridge: every node sees the two others, with no peer configured
    for n in &nodes {
        let seen = eventually(Duration::from_secs(60), || {
            let out = n.cli(&["swarm", "peers"]);
            let peers = String::from_utf8_lossy(&out.stdout).lines().count();
            (peers >= 2).then_some(peers)
        });
        assert!(
            seen.is_some(),
            "{} found fewer than 2 peers:\n{}",
            n.name,
            n.log()
        );
    }
    let ids: Vec<String> = nodes.iter().map(Node::peer_id).collect();
    let before: Vec<MetricsPage> = nodes.iter().map(Node::metrics).collect();

    // node1 pushes an image (6 MiB file: two eStargz chunks of 4 MiB)
    let work = tempfile::tempdir().expect("work");
    let img = build_oci_layout(
        &work.path().join("layout"),
        &GenSpec {
            big_file_size: 6 << 20,
            ..Default::default()
        },
    );
    let cid = nodes[0]
        .ok(&["image", "push", "-q", &img.oci_ref()])
        .trim()
        .to_string();

    // node2 pulls it whole, by bitswap
    let out = work.path().join("pulled");
    nodes[1].ok(&[
        "image",
        "pull",
        "-q",
        &cid,
        "--to",
        &format!("oci:{}:v1", out.display()),
    ]);
    assert!(out.join("index.json").is_file());
    let m1 = nodes[0].metrics();
    let m2 = nodes[1].metrics();
    let received =
        m2.get("cidfs_bytes_received_total") - before[1].get("cidfs_bytes_received_total");
    assert!(
        received > (6 << 20) as f64,
        "node2 received {received} bytes"
    );
    let from_node1 = m2.get(&format!(
        "cidfs_bitswap_peer_bytes_received_total{{peer=\"{}\"}}",
        ids[0]
    ));
    assert!(
        from_node1 > 0.0,
        "node2 has no per-peer bytes from node1:\n{}",
        m2.0
    );
    let to_node2 = m1.get(&format!(
        "cidfs_bitswap_peer_bytes_sent_total{{peer=\"{}\"}}",
        ids[1]
    ));
    assert!(
        to_node2 > 0.0,
        "node1 has no per-peer bytes sent to node2:\n{}",
        m1.0
    );
    assert!(m2.get("cidfs_bitswap_peer_wants_sent_total") > 0.0);
    assert!(m1.get("cidfs_bitswap_peer_wants_received_total") > 0.0);
    assert!(
        m2.get("cidfs_store_bytes") > before[1].get("cidfs_store_bytes") + (6 << 20) as f64,
        "node2's store did not grow"
    );
    let dups = m2.get("cidfs_duplicate_blocks_total");
    let blocks = m2.get("cidfs_blocks_received_total");
    assert!(
        dups <= blocks / 10.0,
        "node2: {dups} duplicates for {blocks} blocks"
    );

    // node3 serves it through its registry endpoint (as podman would pull it) …
    let reg = nodes[2].local("registry");
    let (status, manifest) = http_in_netns(
        &nodes[2].ns,
        reg,
        "GET",
        &format!("/v2/ipfs/{cid}/manifests/latest"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&manifest));
    let (status, _) = http_in_netns(&nodes[2].ns, reg, "GET", "/v2/");
    assert_eq!(status, 200);
    let (status, _) = http_in_netns(
        &nodes[2].ns,
        reg,
        "GET",
        &format!("/v2/ipfs/{cid}/blobs/sha256:{}", "0".repeat(64)),
    );
    assert_eq!(status, 404);
    // … and mounts it lazily: one file read through FUSE
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mount dir");
    nodes[2].ok(&["mount", &cid, mnt.to_str().expect("utf-8")]);
    let read = run_bounded(
        {
            // the mount lives in the daemon's mount namespace (ip netns exec made one)
            let mut c = Command::new("nsenter");
            c.args([
                "-t",
                &nodes[2].child.id().to_string(),
                "-m",
                "--",
                "sha256sum",
            ])
            .arg(mnt.join("big.bin"));
            c
        },
        Duration::from_secs(120),
    );
    assert!(
        read.status.success(),
        "reading the mount: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let m3 = nodes[2].metrics();
    let b3 = &before[2];
    let moved = |name: &str| m3.get(name) - b3.get(name);
    assert!(
        moved("cidfs_registry_requests_total{route=\"manifest\",method=\"GET\",code=\"200\"")
            >= 1.0,
        "{}",
        m3.0
    );
    assert!(moved("cidfs_registry_requests_total{route=\"ping\"") >= 1.0);
    assert!(
        moved("cidfs_registry_requests_total{route=\"blob\",method=\"GET\",code=\"404\"") >= 1.0
    );
    assert!(moved("cidfs_registry_manifests_total") >= 1.0);
    assert!(
        moved("cidfs_fuse_reads_total{fs=\"mount\"") >= 1.0,
        "{}",
        m3.0
    );
    assert!(
        moved("cidfs_fuse_read_bytes_total{fs=\"mount\"") >= (6 << 20) as f64,
        "the FUSE bytes served do not cover the file:\n{}",
        m3.0
    );
    assert_eq!(
        moved("cidfs_fuse_read_seconds_count{fs=\"mount\""),
        moved("cidfs_fuse_reads_total{fs=\"mount\""),
        "one latency sample per read"
    );
    assert!(
        moved("cidfs_chunk_cache_misses_total") >= 2.0,
        "two chunks inflated"
    );
    assert!(moved("cidfs_blocks_received_total") > 0.0);
    nodes[2].ok(&["umount", mnt.to_str().expect("utf-8")]);

    // the live summary
    let stats = nodes[1].ok(&["stats", "--once", "--interval", "0.2"]);
    assert!(stats.contains("peers       2 connected"), "{stats}");
    assert!(stats.contains(&ids[0]), "node1 in the peer table:\n{stats}");

    // repo verify and gc with a target, on node2 (the pulled blocks are not pinned there)
    let verified = nodes[1].ok(&["repo", "verify"]);
    assert!(verified.contains("verified repo integrity"), "{verified}");
    let size = m2.get("cidfs_store_bytes");
    let target = (size / 2.0) as u64;
    nodes[1].ok(&["repo", "gc", "-q", "--target", &target.to_string()]);
    let after = nodes[1].metrics().get("cidfs_store_bytes");
    assert!(
        after <= target as f64 && after > 0.0,
        "gc --target {target}: store at {after} (was {size})"
    );
}
