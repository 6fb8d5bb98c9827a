//! The embedded node (issue 3): transfers, range reads, private swarms, mDNS, restarts, faults.

use std::time::{Duration, Instant};

use crate::util::{eventually, random_bytes, sha256, swarm_key, Daemon, Opts};

const MIB: usize = 1 << 20;

/// Options for a node of the swarm with `key`.
fn keyed(key: &str) -> Opts {
    Opts {
        swarm_key: Some(key.into()),
        ..Default::default()
    }
}

fn pair(key: &str) -> (Daemon, Daemon) {
    let a = Daemon::start(Opts {
        swarm_key: Some(key.into()),
        ..Default::default()
    });
    let b = Daemon::start(Opts {
        swarm_key: Some(key.into()),
        peers: vec![a.addr.clone()],
        ..Default::default()
    });
    (a, b)
}

/// (a) A adds a 64 MiB random file; B (same key, --peer A) cats it; sha256 equal.
#[test]
fn a_private_swarm_transfers_64_mib() {
    let key = swarm_key();
    let (a, b) = pair(&key);
    let data = random_bytes(64 * MIB);
    let cid = a.add(&data);
    assert!(cid.starts_with("bafy"), "{cid}");
    let got = b.ok(&["cat", &cid]);
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256(&got), sha256(&data));
    assert!(a.stat_u64("BlocksSent") >= 256, "A served the leaves");
    assert!(b.stat_u64("BlocksFetched") >= 257);
    let (status, body) = crate::util::http(a.api, "GET", "/metrics");
    let metrics = String::from_utf8_lossy(&body);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE cidfs_bytes_sent_total counter"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("cidfs_blocks_sent_total 0\n"),
        "{metrics}"
    );
    // the readiness probe of deploy/kubernetes
    assert_eq!(
        crate::util::http(b.api, "GET", "/healthz"),
        (200, b"ok\n".to_vec())
    );
}

/// (b) 1 byte at offset 40 MiB of a fresh 64 MiB file: B fetches the root, the interior node on
/// the path and the one covering leaf; nothing else.
#[test]
fn b_range_read_fetches_only_covering_blocks() {
    let key = swarm_key();
    let (a, b) = pair(&key);
    let data = random_bytes(64 * MIB);
    let cid = a.add(&data);
    let off = 40 * MIB;
    let got = b.ok(&["cat", &cid, "--offset", &off.to_string(), "--length", "1"]);
    assert_eq!(got, vec![data[off]]);
    // 256 leaves > 174: root → 2 interior nodes → leaves; depth 2 means 3 blocks on the path
    assert_eq!(b.stat_u64("BlocksFetched"), 3, "{}", b.stat());
    assert_eq!(b.stat_u64("NumObjects"), 3);
    let fetched = b.stat_u64("BytesFetched");
    assert!(
        fetched < 256 * 1024 + 16 * 1024,
        "fetched {fetched} bytes for a 1-byte read"
    );
    // a range across a leaf boundary returns exactly those bytes
    let (s, l) = (3 * 262144 - 10, 20);
    let got = b.ok(&[
        "cat",
        &cid,
        "--offset",
        &s.to_string(),
        "--length",
        &l.to_string(),
    ]);
    assert_eq!(got, &data[s..s + l]);
}

/// (c) A node with another key cannot connect; its cat fails within the configured timeout with
/// an error that says nothing was found.
#[test]
fn c_wrong_swarm_key_cannot_connect_and_cat_fails_in_time() {
    let a = Daemon::start(Opts {
        swarm_key: Some(swarm_key()),
        ..Default::default()
    });
    let cid = a.add(&random_bytes(MIB));
    let c = Daemon::start(Opts {
        swarm_key: Some(swarm_key()),
        peers: vec![a.addr.clone()],
        fetch_timeout: Some(4),
        ..Default::default()
    });
    let t = Instant::now();
    let out = c.cli(&["cat", &cid]);
    let took = t.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "stderr: {err}");
    assert!(took < Duration::from_secs(30), "cat took {took:?}");
    let (_, peers) = c.rpc("swarm/peers", "");
    assert_eq!(peers["Peers"].as_array().map(Vec::len), Some(0), "{peers}");
    let (_, peers) = a.rpc("swarm/peers", "");
    assert_eq!(peers["Peers"].as_array().map(Vec::len), Some(0), "{peers}");
}

/// (d) LIBP2P_FORCE_PNET=1 and no key: the daemon refuses to start, with a clear message.
#[test]
fn d_force_pnet_without_key_refuses_to_start() {
    let repo = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(crate::util::BIN);
    cmd.args([
        "--repo",
        repo.path().to_str().unwrap(),
        "daemon",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api-listen",
        "127.0.0.1:0",
        "--no-mdns",
    ])
    .env("LIBP2P_FORCE_PNET", "1");
    let out = crate::util::run_bounded(cmd, Duration::from_secs(60));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LIBP2P_FORCE_PNET=1") && err.contains("swarm key"),
        "stderr: {err}"
    );
    assert!(!repo.path().join("api").exists());
}

/// (f) Blocks and pins survive a restart (SIGTERM exits 0 and removes the api file);
/// `repo gc` drops the unpinned block only.
#[test]
fn f_blocks_and_pins_survive_restart_and_gc_drops_unpinned_only() {
    let key = swarm_key();
    let a = Daemon::start(Opts {
        swarm_key: Some(key.clone()),
        fetch_timeout: Some(2),
        ..Default::default()
    });
    let data = random_bytes(3 * MIB + 5);
    let cid = a.add(&data);
    let loose = a.repo.path().join("loose");
    std::fs::write(&loose, b"an unpinned block").unwrap();
    let loose_cid = String::from_utf8(a.ok(&["block", "put", loose.to_str().unwrap()]))
        .unwrap()
        .trim()
        .to_string();
    let before = a.stat_u64("NumObjects");
    assert_eq!(before, 13 + 1 + 1, "13 leaves + root + loose block");
    let opts = a.opts();
    let (status, repo) = a.terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    assert!(
        !repo.path().join("api").exists(),
        "api file removed on shutdown"
    );

    let a = Daemon::start_in(repo, opts);
    assert_eq!(a.stat_u64("NumObjects"), before);
    let pins = String::from_utf8(a.ok(&["pin", "ls"])).unwrap();
    assert!(pins.contains(&cid), "{pins}");
    assert_eq!(a.ok(&["block", "get", &loose_cid]), b"an unpinned block");
    let removed = String::from_utf8(a.ok(&["repo", "gc"])).unwrap();
    assert_eq!(removed.trim(), format!("removed {loose_cid}"));
    assert_eq!(a.stat_u64("NumObjects"), before - 1);
    assert_eq!(sha256(&a.ok(&["cat", &cid])), sha256(&data));
    let out = a.cli(&["block", "get", &loose_cid]);
    assert!(!out.status.success(), "gc removed the unpinned block");
}

/// (g) A peer serving corrupted blocks cannot corrupt B: B rejects them and gets the file from a
/// second peer.
#[test]
fn g_corrupt_peer_is_rejected_and_another_peer_serves() {
    let key = swarm_key();
    let bad = Daemon::start(Opts {
        swarm_key: Some(key.clone()),
        env: vec![("CIDFS_TEST_CORRUPT_BLOCKS".into(), "1".into())],
        ..Default::default()
    });
    let good = Daemon::start(keyed(&key));
    let data = random_bytes(8 * MIB);
    let cid = bad.add(&data);
    assert_eq!(good.add(&data), cid);
    // B knows only the bad peer at first, so it must meet a corrupt block
    let b = Daemon::start(Opts {
        swarm_key: Some(key),
        peers: vec![bad.addr.clone()],
        fetch_timeout: Some(120),
        ..Default::default()
    });
    let reader = b.cli_in_background(&["cat", &cid]);
    let rejected = eventually(Duration::from_secs(30), || {
        (b.stat_u64("RejectedBlocks") > 0).then_some(())
    });
    assert!(
        rejected.is_some(),
        "B never saw the corrupt block:\n{}",
        b.log()
    );
    b.ok(&["swarm", "connect", &good.addr]);
    let out = reader.join().unwrap();
    assert!(
        out.status.success(),
        "cat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256(&out.stdout), sha256(&data));
    assert!(b.log().contains("hashes to no wanted CID"));
    // the dashboard's state names the peer that sent them, and only it
    let (status, body) = crate::util::http(b.api, "GET", "/ui/state");
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let rejected_from = |p: &Daemon| {
        state["Peers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["Peer"] == p.peer_id.as_str())
            .map(|x| x["Bitswap"]["RejectedBlocks"].as_u64().unwrap_or(0))
    };
    assert!(rejected_from(&bad) >= Some(1), "{state}");
    assert_eq!(rejected_from(&good), Some(0), "{state}");
}

/// (e) Two nodes on one LAN find each other by mDNS, with no --peer: each daemon runs in its
/// own network namespace (created by the test, joined by a veth pair, 10.77.x.0/24).
#[test]
fn e_mdns_discovers_peers_on_a_lan() {
    let lan =
        crate::netns::Lan::create().expect("creating network namespaces (needs root and iproute2)");
    let key = swarm_key();
    let a = Daemon::start(Opts {
        swarm_key: Some(key.clone()),
        mdns: true,
        netns: Some(lan.a.clone()),
        ..Default::default()
    });
    let b = Daemon::start(Opts {
        swarm_key: Some(key),
        mdns: true,
        netns: Some(lan.b.clone()),
        ..Default::default()
    });
    let found = eventually(Duration::from_secs(30), || {
        let peers = String::from_utf8_lossy(&b.cli(&["swarm", "peers"]).stdout).to_string();
        peers.contains(&a.peer_id).then_some(peers)
    });
    assert!(
        found.is_some(),
        "B did not discover A by mDNS:\n{}",
        b.log()
    );
    assert!(b.log().contains("discovered by mDNS"));
    let data = random_bytes(2 * MIB);
    let cid = a.add(&data);
    assert_eq!(sha256(&b.ok(&["cat", &cid])), sha256(&data));
}

/// Malformed input over the API and the CLI gets a clear error in kubo's JSON shape.
#[test]
fn h_bad_input_gets_clear_errors() {
    let a = Daemon::start(Opts::default());
    let cid = a.add(b"hello");
    let (s, v) = a.rpc("cat", "arg=bafy-not-a-cid");
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["Type"], "error");
    assert!(
        v["Message"]
            .as_str()
            .unwrap()
            .contains("invalid CID \"bafy-not-a-cid\""),
        "{v}"
    );
    let (s, v) = a.rpc("cat", "");
    assert_eq!((s, v["Code"].as_u64()), (400, Some(1)), "{v}");
    assert!(v["Message"].as_str().unwrap().contains("argument"), "{v}");
    let (s, v) = a.rpc("cat", &format!("arg={cid}&offset=-1"));
    assert_eq!(s, 400, "{v}");
    assert!(v["Message"].as_str().unwrap().contains("offset"), "{v}");
    let (s, v) = a.rpc("cat", &format!("arg=/ipfs/{cid}/etc/passwd"));
    assert_eq!(s, 400, "{v}");
    let (s, v) = a.rpc("no/such/command", "");
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["Type"], "error");
    let (s, v) = a.rpc("add", "cid-version=7");
    assert_eq!(s, 400, "{v}");
    let out = a.cli(&["cat", "Qm-truncated"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid CID"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the daemon is still fine
    assert_eq!(a.ok(&["cat", &cid]), b"hello");
}

/// A peer that vanishes mid-transfer: B's wants move to the other peer and the file arrives whole.
#[test]
fn i_peer_vanishing_mid_transfer_is_survived() {
    let key = swarm_key();
    let a = Daemon::start(keyed(&key));
    let c = Daemon::start(keyed(&key));
    let data = random_bytes(96 * MIB);
    let cid = a.add(&data);
    assert_eq!(c.add(&data), cid);
    let b = Daemon::start(Opts {
        swarm_key: Some(key),
        peers: vec![a.addr.clone(), c.addr.clone()],
        fetch_timeout: Some(60),
        ..Default::default()
    });
    let both = eventually(Duration::from_secs(30), || {
        let (_, v) = b.rpc("swarm/peers", "");
        (v["Peers"].as_array().map(Vec::len) == Some(2)).then_some(())
    });
    assert!(both.is_some(), "B did not connect to A and C:\n{}", b.log());
    let reader = b.cli_in_background(&["cat", &cid]);
    // both peers serve the session; kill A once it has sent some blocks
    let started = eventually(Duration::from_secs(60), || {
        (a.stat_u64("BlocksSent") >= 4).then_some(())
    });
    assert!(started.is_some(), "A never served B:\n{}", b.log());
    drop(a); // killed by PID mid-transfer
    let out = reader.join().unwrap();
    assert!(
        out.status.success(),
        "cat failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    assert_eq!(sha256(&out.stdout), sha256(&data));
    assert!(c.stat_u64("BlocksSent") > 0);
}

/// (i2) The peer that served B's last read freezes (SIGSTOP: its connection stays open, nothing
/// answers). B's next read guesses it holds the next block too, while another peer says HAVE:
/// the read moves to that peer after a moment, not after the 10 s block timeout.
#[test]
fn i2_a_frozen_last_server_holds_a_read_up_for_a_moment_only() {
    let key = swarm_key();
    let g = Daemon::start(keyed(&key));
    let a = Daemon::start(keyed(&key));
    let (first, second) = (random_bytes(64 << 10), random_bytes(64 << 10));
    let first_cid = g.add(&first);
    let second_cid = g.add(&second);
    assert_eq!(a.add(&second), second_cid);
    let b = Daemon::start(Opts {
        swarm_key: Some(key),
        peers: vec![g.addr.clone(), a.addr.clone()],
        ..Default::default()
    });
    let both = eventually(Duration::from_secs(30), || {
        let (_, v) = b.rpc("swarm/peers", "");
        (v["Peers"].as_array().map(Vec::len) == Some(2)).then_some(())
    });
    assert!(both.is_some(), "B did not connect to G and A:\n{}", b.log());
    // only G holds the first file: G serves B's read, so B's next read guesses G
    assert_eq!(sha256(&b.ok(&["cat", &first_cid])), sha256(&first));
    g.pause();
    let t0 = Instant::now();
    let out = b.cli_bounded(&["cat", &second_cid], Duration::from_secs(60));
    let took = t0.elapsed();
    g.resume();
    assert!(
        out.status.success(),
        "cat failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    assert_eq!(sha256(&out.stdout), sha256(&second));
    assert!(
        b.log().contains("is silent; asking one that said HAVE"),
        "the read did not move off the frozen peer:\n{}",
        b.log()
    );
    // before, the read waited out the block timeout (10 s) for the frozen peer
    assert!(took < Duration::from_secs(9), "took {took:?}:\n{}", b.log());
}

/// `add --only-hash` computes kubo's CID with no daemon running (vector from cids.tsv).
#[test]
fn j_only_hash_needs_no_daemon() {
    let repo = tempfile::tempdir().unwrap();
    let file = repo.path().join("1MiB");
    let data: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, data).unwrap();
    let mut cmd = std::process::Command::new(crate::util::BIN);
    cmd.args([
        "--repo",
        repo.path().to_str().unwrap(),
        "add",
        "-q",
        "--only-hash",
        file.to_str().unwrap(),
    ]);
    let out = crate::util::run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau"
    );
    assert!(
        !repo.path().join("blocks").exists(),
        "--only-hash must store nothing"
    );
}

/// A tmpfs of `size` mounted on a temp dir, unmounted (lazily) when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let mount = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount (needs root)");
        assert!(mount.success(), "mounting a tmpfs needs root");
        Tmpfs(dir)
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// A full disk: `add` fails with a clear error, what was stored before stays readable, and the
/// daemon still shuts down in bounded time. The repo lives on a 128 MiB tmpfs the test mounts;
/// the store keeps 64 MiB free (the default `store.min_free_mb`).
#[test]
fn k_full_disk_is_a_clear_error_and_loses_nothing() {
    let mnt = Tmpfs::mount("128m");
    let repo = tempfile::tempdir_in(mnt.path()).unwrap();
    let a = Daemon::start_in(repo, Opts::default());
    let small = random_bytes(MIB);
    let small_cid = a.add(&small);
    let big = std::env::temp_dir().join(format!("cidfs-big-{}", std::process::id()));
    std::fs::write(&big, random_bytes(100 * MIB)).unwrap();
    let out = a.cli(&["add", big.to_str().unwrap()]);
    let _ = std::fs::remove_file(&big);
    assert!(
        !out.status.success(),
        "add onto a full disk succeeded: {:?}\nstdout: {}\nstderr: {}\nthe tmpfs: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        crate::images::runtimes::mounts_under(mnt.path()),
        a.log()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("disk full") && err.contains("store.min_free_mb"),
        "stderr: {err}"
    );
    // the store still answers after the refusal
    let stat = String::from_utf8(a.ok(&["block", "stat", &small_cid])).unwrap();
    assert!(stat.contains(&small_cid), "{stat}");
    assert_eq!(sha256(&a.ok(&["cat", &small_cid])), sha256(&small));
    // the exit status may report a failed final flush; it must exit, and say it is gone
    let (_, repo) = a.terminate();
    assert!(!repo.path().join("api").exists());
}

/// An add refused at its first block (the disk is already under the reserve) still tells the
/// client why, though the client is still sending: the daemon reads the rest of the upload
/// before it answers, where closing at once gave the client a broken pipe (and, before the CLI
/// told a closed stdout from a closed connection, a silent success).
#[test]
fn k3_an_add_refused_at_once_still_says_why() {
    let mnt = Tmpfs::mount("128m");
    let repo = tempfile::tempdir_in(mnt.path()).unwrap();
    let a = Daemon::start_in(repo, Opts::default());
    std::fs::write(mnt.path().join("filler"), vec![0u8; 70 * MIB]).unwrap();
    let big = std::env::temp_dir().join(format!("cidfs-big3-{}", std::process::id()));
    std::fs::write(&big, random_bytes(100 * MIB)).unwrap();
    let out = a.cli(&["add", big.to_str().unwrap()]);
    let _ = std::fs::remove_file(&big);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("disk full"),
        "{:?}: {err}",
        out.status
    );
}

/// A node whose disk is full (below `store.min_free_mb`) still reads from the swarm: the fetched,
/// verified blocks are served without being stored (M3: the read failed).
#[test]
fn k2_a_full_disk_still_serves_fetched_blocks() {
    let mnt = Tmpfs::mount("96m");
    let key = swarm_key();
    let a = Daemon::start(keyed(&key));
    let data = random_bytes(8 * MIB);
    let cid = a.add(&data);
    let b = Daemon::start_in(
        tempfile::tempdir_in(mnt.path()).unwrap(),
        Opts {
            peers: vec![a.addr.clone()],
            ..keyed(&key)
        },
    );
    assert_eq!(crate::util::http(b.api, "GET", "/healthz").0, 200);
    // leave 40 MiB free, under the 64 MiB the store keeps
    std::fs::write(mnt.path().join("filler"), vec![0u8; 50 * MIB]).unwrap();
    // not ready (M3: /healthz said ok with a full or dead store), but alive
    let (status, body) = crate::util::http(b.api, "GET", "/healthz");
    let body = String::from_utf8_lossy(&body);
    assert!(
        status == 503 && body.contains("disk full"),
        "{status} {body}"
    );
    assert_eq!(crate::util::http(b.api, "GET", "/livez").0, 200);
    let got = b.ok(&["cat", &cid]);
    assert_eq!(sha256(&got), sha256(&data));
    assert!(
        b.log().contains("without storing it"),
        "the store took the blocks: is the disk not full?\n{}",
        b.log()
    );
}

/// `metrics.listen`: a second listener with `/metrics` and `/healthz` only, for a scraper that
/// must not reach the RPC API.
#[test]
fn metrics_listener_serves_metrics_and_nothing_else() {
    let a = Daemon::start(Opts {
        config: Some("[metrics]\nlisten = \"127.0.0.1:0\"\n".into()),
        ..Default::default()
    });
    let log = a.log();
    let addr: std::net::SocketAddr = log
        .lines()
        .find_map(|l| l.split("metrics listening on ").nth(1))
        .unwrap_or_else(|| panic!("no metrics listener in the log:\n{log}"))
        .trim()
        .parse()
        .expect("an address");
    assert_ne!(addr, a.api);
    let (status, body) = crate::util::http(addr, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("# TYPE cidfs_store_blocks gauge"));
    assert_eq!(crate::util::http(addr, "GET", "/healthz").0, 200);
    assert_eq!(
        crate::util::http(addr, "POST", "/api/v0/id").0,
        404,
        "no RPC there"
    );
}

/// A block that rotted on B's disk (written into B's sled while B is stopped, as disk rot would
/// leave it): `repo verify` names it and exits 1, `--remove` drops it, and the next `cat`
/// fetches a good copy from A.
#[test]
fn repo_verify_finds_a_rotten_block_and_the_swarm_heals_it() {
    use cidfs::blockstore::{Blocks, SledStore};
    let key = swarm_key();
    let (a, b) = pair(&key);
    let data = random_bytes(4 * MIB);
    let cid = a.add(&data);
    b.ok(&["pin", "add", &cid]);
    let refs = String::from_utf8(b.ok(&["repo", "ls"])).expect("utf-8");
    let leaf = refs
        .lines()
        .find(|r| r.starts_with("bafkrei"))
        .expect("a raw leaf")
        .to_string();
    let opts = b.opts();
    let (_, repo) = b.terminate();
    {
        let store = SledStore::open(&repo.path().join("blocks"), 1 << 22).expect("open B's store");
        let c = cid::Cid::try_from(leaf.as_str()).expect("CID");
        store.delete(&c).expect("delete");
        store
            .put_hashed(&c, b"rotten bytes")
            .expect("write the rot");
        store.flush().expect("flush");
    }
    let b = Daemon::start_in(repo, opts);
    let out = b.cli(&["repo", "verify"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "verify passed a rotten block: {stdout}"
    );
    assert!(
        stdout.contains(&format!("block {leaf} was corrupt")),
        "{stdout}"
    );
    assert!(stderr.contains("1 corrupt blocks"), "{stderr}");
    let out = b.cli(&["repo", "verify", "--remove"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed"));
    let clean = String::from_utf8(b.ok(&["repo", "verify"])).expect("utf-8");
    assert!(clean.contains("verified repo integrity"), "{clean}");
    assert_eq!(
        sha256(&b.ok(&["cat", &cid])),
        sha256(&data),
        "healed from A"
    );
    drop(a);
}

/// `cidfs stats` on a daemon that serves no /metrics says how to turn them on.
#[test]
fn stats_without_metrics_says_how_to_enable_them() {
    let a = Daemon::start(Opts {
        config: Some("[metrics]\nenabled = false\n".into()),
        ..Default::default()
    });
    let out = a.cli(&["stats", "--once"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[metrics]"), "{err}");
}

/// `cidfs cat CID | head` ends quietly with status 0 (its reader went away: not an error).
#[test]
fn cat_into_a_closed_pipe_ends_quietly() {
    let a = Daemon::start(Opts::default());
    let cid = a.add(&random_bytes(8 * MIB));
    let script = format!(
        "set -o pipefail; '{}' --repo '{}' cat {cid} | head -c 1000 > /dev/null",
        crate::util::BIN,
        a.repo.path().display()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", &script]);
    let out = crate::util::run_bounded(cmd, std::time::Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `leaf-ends` part (what `image push` sends with every eStargz layer) cuts the next file's
/// leaves where it says: the file reads back whole, its first leaf is exactly the planned
/// slice, and the root differs from plain `add`'s; a bad plan is a 400 that says why.
#[test]
fn j2_a_leaf_ends_part_cuts_the_next_file() {
    let a = Daemon::start(Opts::default());
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * MIB + 123);
    let file = dir.path().join("blob");
    std::fs::write(&file, &data).unwrap();
    let head = dir.path().join("head");
    std::fs::write(&head, &data[..1000]).unwrap();
    let add = |plan: &str| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-w", "\n%{http_code}", "-X", "POST"])
            .arg(format!(
                "http://{}/api/v0/add?cid-version=1&pin=false",
                a.api
            ))
            .args(["-F", &format!("leaf-ends={plan}")])
            .arg("-F")
            .arg(format!("file=@{}", file.display()));
        let out = crate::util::run_bounded(cmd, Duration::from_secs(60));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let n = data.len();
    let (code, body) = add(&format!("[1000,500000,1548576,{n}]"));
    assert_eq!(code, "200", "{body}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    let root = v["Hash"].as_str().unwrap().to_string();
    assert_eq!(a.ok(&["cat", &root]), data);
    let plain =
        String::from_utf8(a.ok(&["add", "-q", "--cid-version=1", file.to_str().unwrap()])).unwrap();
    assert_ne!(plain.trim(), root, "a planned cut is another DAG");
    // the first leaf is the raw block of exactly the first 1000 bytes
    let leaf = String::from_utf8(a.ok(&[
        "add",
        "-q",
        "--only-hash",
        "--cid-version=1",
        head.to_str().unwrap(),
    ]))
    .unwrap();
    let (s, stat) = a.rpc("block/stat", &format!("arg={}", leaf.trim()));
    assert_eq!(s, 200, "{stat}");
    assert_eq!(stat["Size"], 1000, "{stat}");
    for bad in ["[0]", "[5,5]", &format!("[{}]", 3 << 20), "not json"] {
        let (code, body) = add(bad);
        assert_eq!(code, "400", "{bad}: {body}");
        assert!(body.contains("leaf"), "{bad}: {body}");
    }
}
