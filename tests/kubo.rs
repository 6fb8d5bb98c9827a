//! A real kubo node (v0.22.0: boxo 0.11, go-libp2p 0.29) and cidfs in one private swarm on
//! loopback (issue 21). `tests/interop/kubo_peer.py` runs kubo in-process from the PyPI wheel
//! `kubo-python` 0.1.5 that `scripts/test.sh` installs into `target/venv`; every add there is
//! kubo's default (CIDv0, dag-pb leaves). kubo processes are killed by PID on drop; every wait is
//! bounded.
//!
//! boxo answers every message on a stream of its own, from eight workers at once; cidfs once
//! reset all but one of such a burst (libp2p-stream hands inbound streams over through a channel
//! with no room), so fetching from kubo crawled in 10 s bursts. The bounds below would fail at
//! that speed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crate::images::gen::xorshift_bytes;
use crate::images::hostile::{diff_ids_of, with_layer_cids};
use crate::mount::{busybox_image, MountPoint};
use crate::util::{random_bytes, run_bounded, sha256, swarm_key, wait_bounded, Daemon, Opts};

/// How long a kubo node may take to start (and add its files).
const KUBO_START: Duration = Duration::from_secs(120);
/// Bound on moving 64 MiB either way (kubo → kubo moves it in about 2 s here; the stall of
/// issue 21 took 160 s).
const TRANSFER: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which installs kubo-python 0.1.5 there",
        p.display()
    );
    p
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/kubo_peer.py")
}

/// A kubo swarm key file (the same format cidfs reads) for `key`.
fn key_file(dir: &Path, key: &str) -> PathBuf {
    let p = dir.join("swarm.key");
    std::fs::write(&p, key).expect("write swarm.key");
    p
}

/// A serving kubo node: `kubo_peer.py serve`, killed on drop.
struct Kubo {
    child: Child,
    lines: Receiver<serde_json::Value>,
    addr: String,
    /// CIDs of the files it added, in order.
    cids: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Kubo {
    /// Starts kubo with swarm key `key` (None: no private network) and adds `files`.
    fn serve(key: Option<&str>, files: &[&[u8]]) -> Kubo {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(python());
        cmd.arg(script())
            .args(["serve", "--repo"])
            .arg(dir.path().join("repo"))
            .args(["--port", "0", "--nosync"]);
        if let Some(k) = key {
            cmd.arg("--key").arg(key_file(dir.path(), k));
            cmd.env("LIBP2P_FORCE_PNET", "1");
        }
        if !files.is_empty() {
            cmd.arg("--add");
            for (i, data) in files.iter().enumerate() {
                let p = dir.path().join(format!("file-{i}"));
                std::fs::write(&p, data).expect("write");
                cmd.arg(p);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start kubo_peer.py");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut k = Kubo {
            child,
            lines,
            addr: String::new(),
            cids: Vec::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + KUBO_START;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = k
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("kubo did not start within {KUBO_START:?}"));
            match v["event"].as_str() {
                Some("started") => {
                    k.addr = v["multiaddrs"][0].as_str().expect("multiaddr").to_string()
                }
                Some("added") => k.cids.push(v["cid"].as_str().expect("cid").to_string()),
                Some("ready") => return k,
                _ => {}
            }
        }
    }
}

impl Drop for Kubo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, Duration::from_secs(10));
    }
}

/// `kubo_peer.py fetch` of `cid` from `peer` with key `key` (None: no private network); the
/// fetch line (`ok`, `bytes`, `sha256`, `seconds`) and the exit code.
fn kubo_fetch(key: Option<&str>, peer: &str, cid: &str) -> (serde_json::Value, Option<i32>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(python());
    cmd.arg(script())
        .args(["fetch", "--repo"])
        .arg(dir.path().join("repo"))
        .args([
            "--port", "0", "--nosync", "--peer", peer, "--cid", cid, "--sha256",
        ])
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--timeout", &TRANSFER.as_secs().to_string()]);
    if let Some(k) = key {
        cmd.arg("--key").arg(key_file(dir.path(), k));
        cmd.env("LIBP2P_FORCE_PNET", "1");
    }
    let out = run_bounded(cmd, TRANSFER + KUBO_START);
    let text = String::from_utf8_lossy(&out.stdout);
    let fetch = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "fetch")
        .unwrap_or(serde_json::Value::Null);
    (fetch, out.status.code())
}

/// A cidfs daemon in the private swarm `key`, dialling `peers` (cidfs nodes).
fn cidfs_with(key: &str, peers: &[&str]) -> Daemon {
    Daemon::start(Opts {
        swarm_key: Some(key.to_string()),
        peers: peers.iter().map(|p| p.to_string()).collect(),
        env: vec![("LIBP2P_FORCE_PNET".into(), "1".into())],
        ..Default::default()
    })
}

fn cidfs(key: &str) -> Daemon {
    cidfs_with(key, &[])
}

/// `cidfs cat CID` (or a range) on `d`, bounded by [`TRANSFER`]; the bytes and the seconds.
fn cat(d: &Daemon, args: &[&str]) -> (Vec<u8>, f64) {
    let t = Instant::now();
    let mut all = vec!["cat"];
    all.extend_from_slice(args);
    let out = d.cli_bounded(&all, TRANSFER);
    assert!(
        out.status.success(),
        "cidfs {all:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    (out.stdout, t.elapsed().as_secs_f64())
}

/// kubo → cidfs: 64 MiB that kubo added (CIDv0, dag-pb leaves), by `cat`, by `pin add`, and a
/// 1-byte range read that fetches only the blocks above that byte.
#[test]
fn cidfs_fetches_from_kubo_by_cat_pin_and_range() {
    let key = swarm_key();
    let data = random_bytes(64 * MIB);
    let kubo = Kubo::serve(Some(&key), &[&data]);
    let cid = kubo.cids[0].clone();
    assert!(cid.starts_with("Qm"), "kubo 0.22 adds CIDv0: {cid}");

    let d = cidfs(&key);
    d.ok(&["swarm", "connect", &kubo.addr]);
    let (got, secs) = cat(&d, &[&cid]);
    assert_eq!(sha256(&got), sha256(&data), "cat from kubo");
    eprintln!("kubo → cidfs cat: 64 MiB in {secs:.2} s");

    let d2 = cidfs(&key);
    d2.ok(&["swarm", "connect", &kubo.addr]);
    let out = d2.cli_bounded(&["pin", "add", &cid], TRANSFER);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (got, _) = cat(&d2, &[&cid]);
    assert_eq!(sha256(&got), sha256(&data), "pinned from kubo");

    // 64 MiB in 256 KiB leaves under 174-link nodes: root, one inner node, one leaf
    let d3 = cidfs(&key);
    d3.ok(&["swarm", "connect", &kubo.addr]);
    let offset = 40 * MIB + 12_345;
    let (got, _) = cat(
        &d3,
        &[&cid, "--offset", &offset.to_string(), "--length", "1"],
    );
    assert_eq!(got, &data[offset..offset + 1]);
    let fetched = d3.stat_u64("BlocksFetched");
    assert!(fetched <= 3, "a 1-byte read fetched {fetched} blocks");
}

/// cidfs → kubo: 64 MiB that cidfs added (CIDv1, raw leaves), fetched by kubo.
#[test]
fn kubo_fetches_from_cidfs() {
    let key = swarm_key();
    let d = cidfs(&key);
    let data = random_bytes(64 * MIB);
    let path = d.repo.path().join("upload");
    std::fs::write(&path, &data).expect("write");
    let cid =
        String::from_utf8(d.ok(&["add", "-q", "--cid-version=1", path.to_str().expect("utf8")]))
            .expect("utf8")
            .trim()
            .to_string();
    let addr = d.addr.clone();
    let (fetch, code) = kubo_fetch(Some(&key), &addr, &cid);
    assert_eq!(code, Some(0), "kubo fetch: {fetch}");
    assert_eq!(fetch["bytes"], data.len());
    assert_eq!(fetch["sha256"].as_str(), Some(sha256(&data).as_str()));
    eprintln!("cidfs → kubo: 64 MiB in {} s", fetch["seconds"]);
}

/// A kubo node with another swarm key, or none, exchanges nothing with cidfs, either way.
#[test]
fn kubo_with_another_key_or_none_is_refused_both_ways() {
    let key = swarm_key();
    let d = cidfs(&key);
    let cid = d.add(b"for the private swarm only\n");
    let addr = d.addr.clone();
    for other in [Some(swarm_key()), None] {
        let kubo = Kubo::serve(other.as_deref(), &[b"kubo's own file\n"]);
        let out = d.cli_bounded(&["swarm", "connect", &kubo.addr], TRANSFER);
        assert!(
            !out.status.success(),
            "cidfs connected to kubo with key {other:?}"
        );
        let (fetch, code) = kubo_fetch(other.as_deref(), &addr, &cid);
        assert_eq!(
            code,
            Some(3),
            "kubo with key {other:?} reached cidfs: {fetch}"
        );
    }
}

/// A mixed swarm: kubo and a cidfs seed hold the same file (cidfs `add --cid-version=0` is
/// kubo's default add, and gives kubo's CID); a cidfs fetcher connected to both gets it whole, taking blocks from both.
#[test]
fn a_cidfs_fetcher_takes_blocks_from_kubo_and_cidfs_seeds() {
    let key = swarm_key();
    let data = random_bytes(64 * MIB);
    let kubo = Kubo::serve(Some(&key), &[&data]);
    let seed = cidfs(&key);
    let path = seed.repo.path().join("upload");
    std::fs::write(&path, &data).expect("write");
    let add = ["add", "-q", "--cid-version=0", path.to_str().expect("utf8")];
    let cid = String::from_utf8(seed.ok(&add))
        .expect("utf8")
        .trim()
        .to_string();
    assert_eq!(
        cid, kubo.cids[0],
        "cidfs add --cid-version=0 gives kubo's CID"
    );
    let d = cidfs_with(&key, &[&seed.addr]);
    d.ok(&["swarm", "connect", &kubo.addr]);
    let (got, secs) = cat(&d, &[&cid]);
    assert_eq!(sha256(&got), sha256(&data));
    let fetched = d.stat_u64("BlocksFetched");
    let from_seed = seed.stat_u64("BlocksSent");
    eprintln!("mixed swarm: {fetched} blocks in {secs:.2} s, {from_seed} from the cidfs seed");
    assert!(
        from_seed > 0 && from_seed < fetched,
        "{from_seed} of {fetched} blocks came from the cidfs seed: kubo served none or all"
    );
}

/// An image layer served from kubo: the layer blobs of an image pushed on cidfs node A, added by
/// kubo (its own CIDv0 DAGs, so no block of theirs is on A), under a manifest that names kubo's
/// CIDs; a fresh cidfs node mounts the image and reads a file whose chunks only kubo serves.
#[test]
fn a_mount_reads_an_image_layer_that_kubo_serves() {
    let key = swarm_key();
    let a = cidfs(&key);
    let cid = busybox_image(&a, 2 * MIB);
    let (manifest, _) = diff_ids_of(&a, &cid);
    let blobs: Vec<Vec<u8>> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let url = l["urls"][0].as_str().expect("url");
            a.ok(&["cat", url.trim_start_matches("ipfs://")])
        })
        .collect();
    let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let kubo = Kubo::serve(Some(&key), &refs);
    let relocated = with_layer_cids(&a, &cid, &kubo.cids);

    let b = cidfs_with(&key, &[&a.addr]);
    b.ok(&["swarm", "connect", &kubo.addr]);
    let mp = MountPoint::new();
    let dir = mp.path().to_path_buf();
    let dir_s = dir.to_str().expect("utf8").to_string();
    let out = b.cli_bounded(&["mount", &relocated, &dir_s], TRANSFER);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    let file = dir.join("a/b/c/deep.bin");
    let read = crate::util::call_bounded("reading through the mount", TRANSFER, move || {
        std::fs::read(file)
    });
    let _ = b.cli_bounded(&["umount", &dir_s], TRANSFER);
    assert_eq!(read.expect("read"), xorshift_bytes(1 + 1, 4097));
    assert!(b.stat_u64("BlocksFetched") > 0);
}

/// The layers of a pushed image are cut at their gzip members (`--dag-layout members`, the
/// default): leaves of up to 256 KiB, one DAG per layer that is not `ipfs add`'s. kubo fetches
/// every block of each and reads back the blob its digest names.
#[test]
fn kubo_fetches_layers_cut_at_their_members() {
    let key = swarm_key();
    let a = cidfs(&key);
    let cid = busybox_image(&a, 3 * MIB);
    let (manifest, _) = diff_ids_of(&a, &cid);
    let layers = manifest["layers"].as_array().expect("layers");
    assert!(!layers.is_empty());
    for l in layers {
        let url = l["urls"][0].as_str().expect("url");
        let layer = url.trim_start_matches("ipfs://");
        let digest = l["digest"].as_str().expect("digest");
        let (fetch, code) = kubo_fetch(Some(&key), &a.addr, layer);
        assert_eq!(code, Some(0), "kubo fetch of {layer}: {fetch}");
        assert_eq!(fetch["bytes"], l["size"], "{layer}");
        assert_eq!(
            fetch["sha256"].as_str().map(|h| format!("sha256:{h}")),
            Some(digest.to_string()),
            "{layer}"
        );
    }
}
