//! Test harness: real `cidfs` daemons in separate processes, each with its own temp repo,
//! loopback ports chosen by the OS, killed by PID when dropped (also when a test panics).
//! Waits are event-driven (log lines on a channel) or bounded polls; nothing sleeps to sync.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cidfs");
/// How long a daemon may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A kubo-format swarm key file with a random key.
pub fn swarm_key() -> String {
    let key: [u8; 32] = rand::random();
    format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", hex(&key))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::Rng::fill(&mut rand::rng(), &mut v[..]);
    v
}

pub fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(b))
}

/// How to start a daemon.
#[derive(Default, Clone)]
pub struct Opts {
    pub swarm_key: Option<String>,
    pub peers: Vec<String>,
    pub env: Vec<(String, String)>,
    pub fetch_timeout: Option<u64>,
    pub mdns: bool,
    /// Run inside this network namespace (`ip netns exec`), listening on all its interfaces.
    pub netns: Option<String>,
    /// Written to `config.toml` in the repo before the daemon starts (the daemon keeps an
    /// existing config file; any key may be left out), e.g. `"[mount]\nread_timeout_secs = 5\n"`.
    pub config: Option<String>,
}

pub struct Daemon {
    child: Child,
    pub repo: tempfile::TempDir,
    pub peer_id: String,
    /// `/ip4/127.0.0.1/tcp/<port>/p2p/<id>`
    pub addr: String,
    pub api: SocketAddr,
    /// The registry endpoint (`HOST:PORT`, images at `HOST:PORT/ipfs/<CID>`).
    pub registry: SocketAddr,
    lines: Receiver<String>,
    netns: Option<String>,
    opts: Opts,
}

impl Daemon {
    pub fn start(opts: Opts) -> Daemon {
        let repo = tempfile::tempdir().expect("temp repo");
        Self::start_in(repo, opts)
    }

    /// Starts a daemon on an existing repo (for restarts).
    pub fn start_in(repo: tempfile::TempDir, opts: Opts) -> Daemon {
        if let Some(k) = &opts.swarm_key {
            use std::os::unix::fs::PermissionsExt;
            let path = repo.path().join("swarm.key");
            std::fs::write(&path, k).expect("write swarm.key");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod swarm.key");
        }
        if let Some(c) = &opts.config {
            std::fs::write(repo.path().join("config.toml"), c).expect("write config.toml");
        }
        let listen = if opts.netns.is_some() {
            "/ip4/0.0.0.0/tcp/0"
        } else {
            "/ip4/127.0.0.1/tcp/0"
        };
        let mut args: Vec<String> = vec![
            "daemon".into(),
            "--listen".into(),
            listen.into(),
            "--api-listen".into(),
            "127.0.0.1:0".into(),
            "--registry-listen".into(),
            "127.0.0.1:0".into(),
        ];
        if !opts.mdns {
            args.push("--no-mdns".into());
        }
        for p in &opts.peers {
            args.push("--peer".into());
            args.push(p.clone());
        }
        if let Some(t) = opts.fetch_timeout {
            args.push("--fetch-timeout".into());
            args.push(t.to_string());
        }
        let mut cmd = command(opts.netns.as_deref(), repo.path(), &args);
        cmd.env(
            "RUST_LOG",
            "info,cidfs_p2p=debug,cidfs::layer_store=debug,cidfs::blockservice=debug,libp2p=warn",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn cidfs daemon");
        let lines = pipe_lines(
            child.stderr.take().expect("stderr"),
            repo.path().join("daemon.log"),
        );
        let mut d = Daemon {
            child,
            repo,
            peer_id: String::new(),
            addr: String::new(),
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            registry: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
            netns: opts.netns.clone(),
            opts,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut ready = false;
        while !ready || d.addr.is_empty() {
            let line = d
                .next_line(deadline)
                .unwrap_or_else(|| panic!("daemon did not start:\n{}", d.log()));
            if let Some(id) = line.split("peer id ").nth(1) {
                d.peer_id = id.trim().to_string();
            }
            if let Some(a) = line.split("listening on ").nth(1) {
                let a = a.trim();
                let usable = if d.netns.is_some() {
                    !a.contains("/127.")
                } else {
                    a.contains("/127.0.0.1/")
                };
                if d.addr.is_empty() && a.contains("/p2p/") && usable {
                    d.addr = a.to_string();
                }
            }
            ready |= line.contains("daemon is ready");
        }
        let api = std::fs::read_to_string(d.repo.path().join("api")).expect("api file");
        let port = api
            .trim()
            .rsplit('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("api port");
        d.api = SocketAddr::from(([127, 0, 0, 1], port));
        d.registry = std::fs::read_to_string(d.repo.path().join("registry"))
            .expect("registry file")
            .trim()
            .parse()
            .expect("registry address");
        d
    }

    fn next_line(&self, deadline: Instant) -> Option<String> {
        let left = deadline.checked_duration_since(Instant::now())?;
        self.lines.recv_timeout(left).ok()
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(l) = self.next_line(deadline) {
            if l.contains(needle) {
                return true;
            }
        }
        false
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.repo.path().join("daemon.log")).unwrap_or_default()
    }

    /// Runs `cidfs <args>` against this daemon's repo.
    pub fn cli(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run_bounded(
            command(self.netns.as_deref(), self.repo.path(), &args),
            Duration::from_secs(300),
        )
    }

    /// [`Self::cli`] bounded by `timeout` instead.
    pub fn cli_bounded(&self, args: &[&str], timeout: Duration) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run_bounded(
            command(self.netns.as_deref(), self.repo.path(), &args),
            timeout,
        )
    }

    /// Runs `cidfs <args>` on a thread (bounded); join the handle for its output.
    pub fn cli_in_background(&self, args: &[&str]) -> std::thread::JoinHandle<Output> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let cmd = command(self.netns.as_deref(), self.repo.path(), &args);
        std::thread::spawn(move || run_bounded(cmd, Duration::from_secs(300)))
    }

    /// Runs the CLI and returns stdout, panicking with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "cidfs {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out.stdout
    }

    /// Adds bytes; returns the CID.
    pub fn add(&self, data: &[u8]) -> String {
        let path = self
            .repo
            .path()
            .join(format!("input-{}", rand::random::<u32>()));
        std::fs::write(&path, data).expect("write input");
        let out = self.ok(&["add", "-q", path.to_str().expect("utf8")]);
        String::from_utf8(out).expect("utf8").trim().to_string()
    }

    /// POSTs a kubo RPC command (only for daemons on the host network namespace).
    pub fn rpc(&self, cmd: &str, query: &str) -> (u16, serde_json::Value) {
        let (status, body) = http(self.api, "POST", &format!("/api/v0/{cmd}?{query}"));
        let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, v)
    }

    /// One numeric field of [`Self::stat`] (panics, with the whole answer, if it is missing).
    pub fn stat_u64(&self, key: &str) -> u64 {
        let v = self.stat();
        v[key]
            .as_u64()
            .unwrap_or_else(|| panic!("repo stat has no {key}: {v}"))
    }

    /// `repo/stat` as JSON; inside a namespace through the CLI (`Key: value` lines).
    pub fn stat(&self) -> serde_json::Value {
        if self.netns.is_some() {
            let out = String::from_utf8(self.ok(&["repo", "stat"])).expect("utf-8");
            let mut m = serde_json::Map::new();
            for line in out.lines() {
                if let Some((k, v)) = line.split_once(": ") {
                    let v = v.trim();
                    let val = v
                        .parse::<u64>()
                        .map(serde_json::Value::from)
                        .unwrap_or_else(|_| serde_json::Value::from(v));
                    m.insert(k.to_string(), val);
                }
            }
            return serde_json::Value::Object(m);
        }
        let (s, v) = self.rpc("repo/stat", "");
        assert_eq!(s, 200, "repo/stat: {v}");
        v
    }

    /// Scrapes `GET /metrics` (only for daemons on the host network namespace).
    pub fn metrics(&self) -> MetricsPage {
        let (status, body) = http(self.api, "GET", "/metrics");
        assert_eq!(status, 200, "/metrics");
        MetricsPage(String::from_utf8(body).expect("utf-8"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = wait_bounded(&mut self.child, Duration::from_secs(30))
            .expect("daemon did not exit after SIGTERM");
        let repo = std::mem::replace(&mut self.repo, tempfile::tempdir().expect("tempdir"));
        (status, repo)
    }

    pub fn opts(&self) -> Opts {
        self.opts.clone()
    }

    /// Freezes the daemon (SIGSTOP): its connections stay open but nothing answers, as with a
    /// hung peer. [`Self::resume`] thaws it; SIGKILL (drop, [`Self::kill`]) works on it too.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws a daemon that [`Self::pause`] froze (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's PID (not yet reaped, so not reused)
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// SIGKILLs the daemon (as a crash would) and hands its repo over, for a restart.
    pub fn crash(mut self) -> tempfile::TempDir {
        self.kill();
        std::mem::replace(&mut self.repo, tempfile::tempdir().expect("tempdir"))
    }

    /// SIGKILLs the daemon by PID and reaps it (bounded); the repo stays until `self` drops.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        assert!(
            wait_bounded(&mut self.child, Duration::from_secs(30)).is_some(),
            "daemon {} did not die after SIGKILL",
            self.child.id()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cidfs --repo REPO ARGS…`, inside `netns` if given (`ip netns exec`), stdin closed.
pub fn command(netns: Option<&str>, repo: &Path, args: &[String]) -> Command {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("LIBP2P_FORCE_PNET")
        .stdin(Stdio::null());
    cmd
}

/// Forwards a child's stderr lines to a channel and a log file.
pub fn pipe_lines(stderr: impl Read + Send + 'static, log: PathBuf) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(log).ok();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits for a child to exit, at most `timeout` (polling its status; kills it on timeout).
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command to completion with a time bound; output is captured. Panics if the command
/// cannot be spawned or times out (it is killed then).
pub fn run_bounded(cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    try_run(cmd, timeout)
        .unwrap_or_else(|| panic!("{what} could not run or timed out after {timeout:?}"))
}

/// Like [`run_bounded`] but never panics (for `Drop`): `None` if the command cannot be spawned or
/// times out (it is killed then).
pub fn try_run(mut cmd: Command, timeout: Duration) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut out = child.stdout.take()?;
    let mut err = child.stderr.take()?;
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_bounded(&mut child, timeout)?;
    Some(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// Minimal HTTP/1.0 request; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<u8>) {
    http_with(addr, method, path, &[("Host", &addr.to_string())])
}

/// [`http`] with these headers (and no others but `Content-Length: 0`).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to API");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.0\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}Content-Length: 0\r\n\r\n").expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http header end");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, resp[split + 4..].to_vec())
}

/// Runs `f` on its own thread and waits for it at most `timeout`: for work that may block on a
/// FUSE mount (a hung read must fail the test, not hang it). A panic in `f` is passed on; on a
/// timeout this panics naming `what` (the thread is left behind, blocked; it ends when the
/// mount goes away).
pub fn call_bounded<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("{what}: the worker thread sent nothing"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not finish within {timeout:?}")
        }
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nodes A and B in one private swarm (a fresh key), B dialling A; `b_config`, if any, is B's
/// `config.toml`.
pub fn pair(b_config: Option<&str>) -> (Daemon, Daemon) {
    let key = swarm_key();
    let a = Daemon::start(Opts {
        swarm_key: Some(key.clone()),
        ..Default::default()
    });
    let b = Daemon::start(Opts {
        swarm_key: Some(key),
        peers: vec![a.addr.clone()],
        config: b_config.map(str::to_string),
        ..Default::default()
    });
    (a, b)
}

static SWARM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A turn for a test that runs a whole swarm (three or more daemons, or a LAN of namespaces,
/// moving tens of MiB): such tests take turns, so no two of them share the machine's two cores
/// however the test threads are scheduled, and each keeps its bounds with only light tests
/// beside it. Hold the guard for the whole test: bind it first, so that it drops last.
pub fn swarm_turn() -> std::sync::MutexGuard<'static, ()> {
    // a test that panicked in its turn poisons the lock; the next one may still go
    SWARM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

static NEXT_CLUSTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
const CLUSTER_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");

/// A LAN of network namespaces made by `scripts/cluster.sh up` (hosts `<name>-1` …, on one
/// bridge, addresses 10.78.0.I); `down` on drop.
pub struct Cluster {
    name: String,
}

fn cluster_sh(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("bash");
    cmd.arg(CLUSTER_SH).args(args).stdin(Stdio::null());
    // never panics: it also runs from Drop
    let out = try_run(cmd, Duration::from_secs(60)).ok_or("cluster.sh timed out")?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Cluster {
    /// `hosts` hosts; `rate` (tc units, e.g. `100mbit`; empty: unshaped) on every link.
    pub fn up(hosts: usize, rate: &str) -> Cluster {
        let name = format!(
            "cc{}x{}",
            std::process::id() % 100_000,
            NEXT_CLUSTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let c = Cluster { name };
        cluster_sh(&["up", &c.name, &hosts.to_string(), rate])
            .expect("creating the namespaces (needs root and iproute2)");
        c
    }

    /// The namespace of host `i` (1-based).
    pub fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.name)
    }

    /// Partitions host `i` (its bridge port goes down).
    pub fn cut(&self, i: usize) {
        cluster_sh(&["cut", &self.name, &i.to_string()]).expect("cut");
    }

    pub fn heal(&self, i: usize) {
        cluster_sh(&["heal", &self.name, &i.to_string()]).expect("heal");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = cluster_sh(&["down", &self.name]);
    }
}

/// [`http`] from inside network namespace `ns` (a thread of ours joins it with `setns`; the
/// rest of the test process stays where it is).
pub fn http_in_netns(ns: &str, addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<u8>) {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    let (method, path) = (method.to_string(), path.to_string());
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd changes only this thread's network namespace
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        http(addr, &method, &path)
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// One `/metrics` page (Prometheus text format).
pub struct MetricsPage(pub String);

impl MetricsPage {
    /// The sum of the samples of `series`: a bare name takes every label set; a name with the
    /// beginning of its labels (`name{a="x"`) takes the samples whose series starts so.
    pub fn get(&self, series: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(s, _)| {
                *s == series
                    || s.starts_with(&format!("{series}{{"))
                    || (series.contains('{') && s.starts_with(series))
            })
            .map(|(_, v)| v.parse::<f64>().expect("a number"))
            .sum()
    }
}
