//! Interop with independent IPFS implementations from npm (`tests/interop/`): a Helia peer
//! (js-libp2p: TCP, pnet, noise, yamux, bitswap 1.2.0) driven line by line over stdin/stdout
//! (`peer.mjs`), and kubo-rpc-client, the IPFS project's client of kubo's RPC API (`rpc.mjs`).
//!
//! `npm ci` runs once per test binary, and only when `tests/interop/node_modules` is missing or
//! older than `package-lock.json`. Helia processes are killed by PID on drop; every wait is bounded.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::{random_bytes, run_bounded, sha256, swarm_key, wait_bounded, Daemon, Opts};

/// How long `npm ci` may take.
const NPM_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a Helia peer may take to start listening.
const HELIA_START: Duration = Duration::from_secs(60);
/// Bound on one Helia command that moves data.
const TRANSFER: Duration = Duration::from_secs(180);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs the pinned npm packages once (`npm ci`), unless they are already up to date.
fn npm_ready() -> &'static Path {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let res = READY.get_or_init(|| {
        let dir = interop_dir();
        let installed = dir.join("node_modules/.package-lock.json");
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let fresh = matches!(
            (mtime(&installed), mtime(&dir.join("package-lock.json"))),
            (Some(i), Some(l)) if i >= l
        );
        if fresh {
            return Ok(dir);
        }
        let mut cmd = Command::new("npm");
        cmd.args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null());
        let out = run_bounded(cmd, NPM_TIMEOUT);
        if out.status.success() {
            Ok(dir)
        } else {
            Err(format!(
                "npm ci in {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    match res {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

/// A Helia peer process (`peer.mjs`).
struct Helia {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// `/ip4/127.0.0.1/tcp/<port>/p2p/<id>`
    addr: String,
    dir: tempfile::TempDir,
}

impl Helia {
    /// Starts a peer with this swarm key (none: no private network).
    fn start(key: Option<&str>) -> Helia {
        let node_dir = npm_ready();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("node");
        cmd.arg(node_dir.join("peer.mjs"))
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(k) = key {
            let path = dir.path().join("swarm.key");
            std::fs::write(&path, k).expect("write swarm.key");
            cmd.arg("--key").arg(path);
        }
        let log = std::fs::File::create(dir.path().join("helia.log")).expect("log file");
        let mut child = cmd
            .current_dir(node_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn node (is Node.js installed?)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut h = Helia {
            child,
            stdin,
            lines,
            addr: String::new(),
            dir,
        };
        let line = h
            .next_line(HELIA_START)
            .unwrap_or_else(|| panic!("Helia peer did not start:\n{}", h.log()));
        h.addr = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("Helia peer: unexpected {line:?}\n{}", h.log()))
            .to_string();
        h
    }

    fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("helia.log")).unwrap_or_default()
    }

    /// Sends one command; `Ok(answer)` for `ok <answer>`, `Err(message)` for `err <message>`.
    fn cmd(&mut self, line: &str, timeout: Duration) -> Result<String, String> {
        writeln!(self.stdin, "{line}").expect("write to Helia peer");
        self.stdin.flush().expect("flush");
        let start = Instant::now();
        let answer = self.next_line(timeout).unwrap_or_else(|| {
            panic!(
                "Helia peer: no answer to {line:?} within {:?}\n{}",
                start.elapsed(),
                self.log()
            )
        });
        if let Some(rest) = answer.strip_prefix("ok") {
            Ok(rest.trim().to_string())
        } else if let Some(rest) = answer.strip_prefix("err ") {
            Err(rest.to_string())
        } else {
            panic!("Helia peer: unexpected answer {answer:?}\n{}", self.log())
        }
    }

    /// Like `cmd`, panicking with the peer's log on `err`.
    fn ok(&mut self, line: &str, timeout: Duration) -> String {
        match self.cmd(line, timeout) {
            Ok(a) => a,
            Err(e) => panic!("Helia peer: {line:?} failed: {e}\n{}", self.log()),
        }
    }

    /// Writes `data` to a file in the peer's directory and adds it (`v0`: kubo's CIDv0 layout).
    fn add(&mut self, data: &[u8], v0: bool) -> String {
        let path = self
            .dir
            .path()
            .join(format!("input-{}", rand::random::<u32>()));
        std::fs::write(&path, data).expect("write input");
        let suffix = if v0 { " v0" } else { "" };
        self.ok(&format!("add {}{suffix}", path.display()), TRANSFER)
    }

    /// Fetches a file over bitswap and returns its bytes.
    fn cat(&mut self, cid: &str) -> Vec<u8> {
        let out = self.dir.path().join(format!("out-{cid}"));
        let ms = TRANSFER.as_millis().saturating_sub(5_000);
        self.ok(&format!("cat {cid} {} {ms}", out.display()), TRANSFER);
        std::fs::read(&out).expect("read fetched file")
    }

    fn peer_id(&self) -> &str {
        self.addr.rsplit('/').next().unwrap_or_default()
    }
}

impl Drop for Helia {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn private_daemon(key: &str) -> Daemon {
    Daemon::start(Opts {
        swarm_key: Some(key.to_string()),
        fetch_timeout: Some(5),
        ..Opts::default()
    })
}

#[test]
fn helia_and_cidfs_trade_files_both_ways_with_the_same_cids() {
    let key = swarm_key();
    let d = private_daemon(&key);
    let mut h = Helia::start(Some(&key));
    h.ok(&format!("dial {}", d.addr), Duration::from_secs(30));

    // Helia → cidfs, 32 MiB (two levels of the balanced DAG)
    let data = random_bytes(32 << 20);
    let cid = h.add(&data, false);
    let path = d.repo.path().join("same-bytes");
    std::fs::write(&path, &data).expect("write");
    let ours = d.ok(&["add", "-n", "-q", path.to_str().expect("utf8")]);
    assert_eq!(
        String::from_utf8_lossy(&ours).trim(),
        cid,
        "cidfs and Helia CIDs differ"
    );
    let got = d.ok(&["cat", &cid]);
    assert_eq!(got.len(), data.len());
    assert_eq!(
        sha256(&got),
        sha256(&data),
        "cidfs fetched other bytes from Helia"
    );

    // cidfs → Helia; the same bytes get the same CID on both sides
    let data = random_bytes((9 << 20) + 12345);
    let cid = d.add(&data);
    let got = h.cat(&cid);
    assert_eq!(
        sha256(&got),
        sha256(&data),
        "Helia fetched other bytes from cidfs"
    );
    assert_eq!(h.add(&data, false), cid, "Helia and cidfs CIDs differ");
}

#[test]
fn helia_cidv0_dag_pb_leaves_fetch_and_range_read() {
    let key = swarm_key();
    let d = private_daemon(&key);
    let mut h = Helia::start(Some(&key));
    h.ok(&format!("dial {}", d.addr), Duration::from_secs(30));

    let data = random_bytes((5 << 20) + 777);
    let cid = h.add(&data, true);
    assert!(
        cid.starts_with("Qm"),
        "kubo's default layout is CIDv0: {cid}"
    );
    let path = d.repo.path().join("same-bytes");
    std::fs::write(&path, &data).expect("write");
    let ours = d.ok(&[
        "add",
        "-n",
        "-q",
        "--cid-version",
        "0",
        path.to_str().expect("utf8"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&ours).trim(),
        cid,
        "CIDv0 differs from Helia's"
    );

    // a range across a leaf boundary first (fetches only the leaves it needs), then everything
    let (off, len) = (262_144 * 3 - 1000, 300_000);
    let got = d.ok(&[
        "cat",
        &cid,
        "--offset",
        &off.to_string(),
        "--length",
        &len.to_string(),
    ]);
    assert_eq!(
        got,
        &data[off..off + len],
        "range read of a dag-pb-leaf file"
    );
    let got = d.ok(&["cat", &cid]);
    assert_eq!(sha256(&got), sha256(&data));

    // and the range over the HTTP API, as stargz-snapshotter reads it
    let (status, body) = crate::util::http(
        d.api,
        "POST",
        &format!(
            "/api/v0/cat?arg=/ipfs/{cid}&offset={}&length=4096",
            data.len() - 100
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(body, &data[data.len() - 100..]);
}

/// Helia fetches every layer of a pushed image (cut at its gzip members, leaves up to 256 KiB)
/// and reads back the blob its digest names.
#[test]
fn helia_fetches_layers_cut_at_their_members() {
    let key = swarm_key();
    let d = private_daemon(&key);
    let mut h = Helia::start(Some(&key));
    h.ok(&format!("dial {}", d.addr), Duration::from_secs(30));
    let cid = crate::mount::busybox_image(&d, 3 << 20);
    let (manifest, _) = crate::images::hostile::diff_ids_of(&d, &cid);
    let layers = manifest["layers"].as_array().expect("layers");
    assert!(!layers.is_empty());
    for l in layers {
        let url = l["urls"][0].as_str().expect("url");
        let got = h.cat(url.trim_start_matches("ipfs://"));
        assert_eq!(Some(got.len() as u64), l["size"].as_u64(), "{url}");
        assert_eq!(
            Some(format!("sha256:{}", sha256(&got)).as_str()),
            l["digest"].as_str(),
            "{url}"
        );
    }
}

#[test]
fn helia_with_another_key_or_none_cannot_exchange_with_cidfs() {
    let key = swarm_key();
    let d = private_daemon(&key);
    for other in [Some(swarm_key()), None] {
        let mut h = Helia::start(other.as_deref());
        let what = if other.is_some() {
            "another key"
        } else {
            "no key"
        };
        let dial = h.cmd(&format!("dial {}", d.addr), Duration::from_secs(90));
        assert!(dial.is_err(), "Helia with {what} connected to cidfs");
        let back = d.cli(&["swarm", "connect", &h.addr]);
        assert!(
            !back.status.success(),
            "cidfs connected to Helia with {what}"
        );

        let cid = h.add(&random_bytes(300_000), false);
        let out = d.cli(&["cat", &cid]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "cidfs fetched from Helia with {what}"
        );
        assert!(err.contains("not found"), "unclear error: {err}");

        let (_, peers) = d.rpc("swarm/peers", "");
        assert!(
            !peers.to_string().contains(h.peer_id()),
            "Helia with {what} is a peer: {peers}"
        );
    }
}

#[test]
fn kubo_rpc_client_works_against_the_cidfs_api() {
    let node_dir = npm_ready();
    let key = swarm_key();
    let b = private_daemon(&key);
    let a = Daemon::start(Opts {
        swarm_key: Some(key.clone()),
        peers: vec![b.addr.clone()],
        fetch_timeout: Some(5),
        // rpc.mjs checks that this origin is served and any other refused
        config: Some("[api]\nallowed_origins = [\"http://127.0.0.1:3000\"]\n".into()),
        ..Opts::default()
    });
    assert!(
        crate::util::eventually(Duration::from_secs(30), || {
            let (_, v) = a.rpc("swarm/peers", "");
            v.to_string().contains(&b.peer_id).then_some(())
        })
        .is_some(),
        "static peer did not connect"
    );
    let data = random_bytes((3 << 20) + 4321);
    let path = a.repo.path().join("rpc-input");
    std::fs::write(&path, &data).expect("write");
    let cid = String::from_utf8(a.ok(&["add", "-q", path.to_str().expect("utf8")]))
        .expect("utf8")
        .trim()
        .to_string();

    let mut cmd = Command::new("node");
    cmd.arg(node_dir.join("rpc.mjs"))
        .args(["--api", &format!("http://{}", a.api)])
        .arg("--file")
        .arg(&path)
        .args(["--cid", &cid, "--peer", &b.peer_id])
        .current_dir(node_dir)
        .stdin(Stdio::null());
    let out = run_bounded(cmd, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "rpc.mjs failed:\n{stdout}\n{}\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.log()
    );
}

/// The Helia peer exits when its stdin closes (`quit`), within a bound.
#[test]
fn helia_peer_quits_on_command() {
    let mut h = Helia::start(None);
    assert_eq!(h.ok("quit", Duration::from_secs(30)), "");
    assert!(wait_bounded(&mut h.child, Duration::from_secs(30)).is_some());
}

/// IPIP-499's `unixfs-v1-2025` import profile (kubo ≥ 0.40, `@helia/unixfs` 8's defaults):
/// `cidfs add --profile unixfs-v1-2025` (locally and through the daemon) and the `add` RPC's
/// `profile=` give Helia's default CIDs (`add-default`: no importer option set).
#[test]
fn the_unixfs_v1_2025_profile_gives_helias_default_cids() {
    let d = Daemon::start(Opts::default());
    let mut h = Helia::start(None);
    for size in [1usize, 1 << 20, (1 << 20) + 1, 5_500_000] {
        let data = random_bytes(size);
        let path = h.dir.path().join(format!("v1-2025-{size}"));
        std::fs::write(&path, &data).expect("write");
        let helia = h.ok(&format!("add-default {}", path.display()), TRANSFER);
        let file = path.to_str().expect("utf8");
        let local =
            String::from_utf8(d.ok(&["add", "-n", "-q", "--profile", "unixfs-v1-2025", file]))
                .expect("utf8");
        let daemon = String::from_utf8(d.ok(&["add", "-q", "--profile", "unixfs-v1-2025", file]))
            .expect("utf8");
        assert_eq!(local.trim(), helia, "{size} bytes, --only-hash");
        assert_eq!(daemon.trim(), helia, "{size} bytes, through the daemon");
        // and cidfs's own default stays kubo's --cid-version=1 layout (image CIDs)
        let legacy = String::from_utf8(d.ok(&["add", "-n", "-q", file])).expect("utf8");
        if size > 1 << 20 {
            assert_ne!(legacy.trim(), helia, "{size} bytes: the default changed");
        }
    }
}
