//! Real container clients, each isolated in its own temp dir and cleaned up on drop (also when a
//! test panics): the distribution registry, containerd (+ `ctr`, `ctr-remote`), podman, skopeo.
//!
//! Every daemon is started by the test and killed by PID; every command runs with a time bound
//! ([`crate::util::run_bounded`]); daemons listen on 127.0.0.1 with OS-chosen ports or on unix
//! sockets in their temp dir. On drop, whatever a client left mounted under its temp dir is
//! unmounted (`umount -l`) and processes whose command line names the temp dir (containerd shims,
//! conmon) are killed by PID.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::util::{pipe_lines, run_bounded, try_run, wait_bounded};

/// Bound of one client command (pull, push, run, convert…).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound of a daemon's start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Panics with the command line, stdout and stderr unless `out` succeeded; returns stdout.
#[track_caller]
pub fn check(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A name unique in this test process (container IDs, image names).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// skopeo

/// `skopeo --insecure-policy ARGS…`, bounded; the output is returned whatever the status.
pub fn skopeo(args: &[&str]) -> Output {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy").args(args).stdin(Stdio::null());
    run_bounded(c, CMD_TIMEOUT)
}

/// [`skopeo`], panicking on failure; returns stdout.
#[track_caller]
pub fn skopeo_ok(args: &[&str]) -> String {
    check(&format!("skopeo {args:?}"), skopeo(args))
}

// ---------------------------------------------------------------------------------------------
// cleanup helpers

/// Mount points at or under `dir`, deepest first (from `/proc/self/mountinfo`).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy().trim_end_matches('/').to_string();
    let mut v: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v.dedup();
    v
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted (unescaped).
    pub point: String,
    /// Per-mount options (`ro,nosuid,…`).
    pub options: String,
    /// File system type (`fuse`, `fuse.cidfs`, `tmpfs`…).
    pub fs_type: String,
    /// Source (`cidfs`, `/dev/sda1`…).
    pub source: String,
}

/// The mount at exactly `dir` (the topmost if several are stacked), from `/proc/self/mountinfo`.
pub fn mount_at(dir: &Path) -> Option<MountEntry> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy().trim_end_matches('/').to_string();
    info.lines()
        .filter_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let head: Vec<&str> = head.split(' ').collect();
            let mut tail = tail.split(' ');
            Some(MountEntry {
                point: unescape_mountinfo(head.get(4)?),
                options: head.get(5)?.to_string(),
                fs_type: tail.next()?.to_string(),
                source: unescape_mountinfo(tail.next()?),
            })
        })
        .rfind(|e| e.point == dir)
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(n) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(n as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Lazily unmounts everything under `dir` (a few rounds, for stacked mounts).
pub fn unmount_under(dir: &Path) {
    for _ in 0..5 {
        let m = mounts_under(dir);
        if m.is_empty() {
            return;
        }
        for p in m {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&p)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Unmounts whatever is mounted under its directory when dropped (a daemon's repo, where its
/// lazily served layers live), also when a test fails.
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        unmount_under(&self.0);
    }
}

/// PIDs (not ours) whose command line contains `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| text(&c).replace('\0', " ").contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// SIGKILLs, by PID, every process whose command line contains `needle`.
pub fn kill_mentioning(needle: &str) {
    for pid in pids_mentioning(needle) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    if wait_bounded(child, Duration::from_secs(10)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn wait_line(lines: &Receiver<String>, timeout: Duration, needle: &str) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let l = lines.recv_timeout(left).ok()?;
        if l.contains(needle) {
            return Some(l);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// registry

/// Basic-auth credentials of a [`Registry`].
#[derive(Debug, Clone)]
pub struct Auth {
    pub user: String,
    pub password: String,
}

impl Auth {
    /// `user:password`, as skopeo's `--creds` wants it.
    pub fn creds(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }
}

/// A distribution registry (`docker-registry serve`) on 127.0.0.1, storage in a temp dir.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    auth: Option<Auth>,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// With htpasswd basic auth when `auth` is given (bcrypt by `htpasswd -B`, from apache2-utils).
    pub fn start_with(auth: Option<Auth>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n  \
             secret: cidfs-test-secret\n",
            dir.path().join("data").display()
        );
        if let Some(a) = &auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, bcrypt_line(a)).expect("write htpasswd");
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: cidfs-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).expect("write registry config");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn docker-registry (Debian package docker-registry)");
        let lines = pipe_lines(
            child.stderr.take().expect("stderr"),
            dir.path().join("registry.log"),
        );
        let mut r = Registry {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth,
            dir,
        };
        // The registry logs the bound address: `msg="listening on 127.0.0.1:41495"`.
        let line = wait_line(&lines, START_TIMEOUT, "listening on ")
            .unwrap_or_else(|| panic!("registry did not start:\n{}", r.log()));
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|s| s.split(['"', ' ']).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        r.addr = addr;
        let want = if r.auth.is_some() { 401 } else { 200 };
        crate::util::eventually(START_TIMEOUT, || {
            (http_status(addr, "/v2/", None) == Some(want)).then_some(())
        })
        .unwrap_or_else(|| panic!("registry /v2/ did not answer {want}:\n{}", r.log()));
        // Keep draining the log so the registry never blocks on a full pipe.
        std::thread::spawn(move || while lines.recv().is_ok() {});
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn auth(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    /// `--creds` value when auth is on.
    pub fn creds(&self) -> Option<String> {
        self.auth.as_ref().map(Auth::creds)
    }

    /// HTTP status of `GET path` (with the registry's credentials if `authed`); `None` if the
    /// connection fails.
    pub fn get_status(&self, path: &str, authed: bool) -> Option<u16> {
        let creds = if authed { self.creds() } else { None };
        http_status(self.addr, path, creds.as_deref())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `user:$2y$…` via `htpasswd -nbB`, else python3's `crypt` (blowfish).
fn bcrypt_line(a: &Auth) -> String {
    let mut c = Command::new("htpasswd");
    c.args(["-nbB", &a.user, &a.password]).stdin(Stdio::null());
    if let Some(out) = try_run(c, Duration::from_secs(30)) {
        if out.status.success() {
            return text(&out.stdout).trim().to_string() + "\n";
        }
    }
    let mut c = Command::new("/usr/bin/python3");
    c.args([
        "-W",
        "ignore",
        "-c",
        "import crypt,sys; print(sys.argv[1]+':'+crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        &a.user,
        &a.password,
    ]);
    let out = check(
        "bcrypt (install apache2-utils for htpasswd)",
        run_bounded(c, Duration::from_secs(30)),
    );
    out.trim().to_string() + "\n"
}

/// Status code of a plain HTTP/1.0 `GET` (basic auth with `creds` = `user:pass`).
pub fn http_status(addr: SocketAddr, path: &str, creds: Option<&str>) -> Option<u16> {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = creds
        .map(|c| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(c)
            )
        })
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    text(&head[..n]).split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// containerd

/// A containerd daemon with root, state and sockets in a temp dir (CRI disabled).
pub struct Containerd {
    child: Child,
    pub dir: tempfile::TempDir,
    sock: PathBuf,
}

/// The namespace every `ctr` call uses.
pub const CTR_NAMESPACE: &str = "default";

impl Containerd {
    pub fn start() -> Containerd {
        Self::start_with("")
    }

    /// [`Self::start`] with `extra` appended to the config (e.g. a `[proxy_plugins]` table).
    pub fn start_with(extra: &str) -> Containerd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let sock = d.join("containerd.sock");
        let cfg = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  level = \"info\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = sock.display(),
            opt = d.join("opt").display(),
        ) + extra;
        let cfg_path = d.join("config.toml");
        std::fs::write(&cfg_path, cfg).expect("write containerd config");
        let mut child = Command::new("containerd")
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn containerd (Debian package containerd)");
        let lines = pipe_lines(
            child.stderr.take().expect("stderr"),
            d.join("containerd.log"),
        );
        std::thread::spawn(move || while lines.recv().is_ok() {});
        let c = Containerd { child, dir, sock };
        crate::util::eventually(START_TIMEOUT, || {
            let out = c.ctr_timeout(&["version"], Duration::from_secs(5));
            out.status.success().then_some(())
        })
        .unwrap_or_else(|| panic!("containerd did not start:\n{}", c.log()));
        c
    }

    /// The gRPC socket.
    pub fn address(&self) -> &Path {
        &self.sock
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .args(["--namespace", CTR_NAMESPACE])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn ctr_timeout(&self, args: &[&str], t: Duration) -> Output {
        run_bounded(self.ctr_command(args), t)
    }

    /// `ctr --address SOCK --namespace default ARGS…`, bounded; output whatever the status.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_timeout(args, CMD_TIMEOUT)
    }

    /// [`Self::ctr`], panicking (with the daemon log) on failure; returns stdout.
    #[track_caller]
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        if !out.status.success() {
            eprintln!("--- containerd log ---\n{}", self.log());
        }
        check(&format!("ctr {args:?}"), out)
    }

    /// `ctr images import ARCHIVE` (docker- or oci-archive); returns the image names imported.
    pub fn import(&self, archive: &Path) -> Vec<String> {
        let out = self.ctr_ok(&["images", "import", &archive.to_string_lossy()]);
        // "unpacking docker.io/cidfs/test:latest (sha256:…)...done"
        let names: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("unpacking "))
            .filter_map(|l| l.split(" (").next())
            .map(String::from)
            .collect();
        assert!(!names.is_empty(), "ctr import printed no image: {out}");
        names
    }

    /// `ctr run --rm --snapshotter overlayfs IMAGE ID CMD…` (fresh ID, runc state in the temp dir);
    /// panics on failure, returns stdout.
    pub fn run_output(&self, image: &str, cmd: &[&str]) -> String {
        self.run_output_on("overlayfs", image, cmd)
    }

    /// [`Self::run_output`] with another snapshotter.
    pub fn run_output_on(&self, snapshotter: &str, image: &str, cmd: &[&str]) -> String {
        let id = unique("cidfs-ctr");
        let runc_root = self.dir.path().join("runc");
        let mut args = vec![
            "run",
            "--rm",
            "--snapshotter",
            snapshotter,
            "--runc-root",
            runc_root.to_str().expect("utf8"),
            image,
            &id,
        ];
        args.extend_from_slice(cmd);
        self.ctr_ok(&args)
    }

    /// `ctr-remote --address SOCK --namespace default ARGS…`, bounded; output whatever the
    /// status.
    pub fn ctr_remote(&self, args: &[&str]) -> Output {
        let mut c = Command::new("ctr-remote");
        c.arg("--address")
            .arg(&self.sock)
            .args(["--namespace", CTR_NAMESPACE])
            .args(args)
            .stdin(Stdio::null());
        run_bounded(c, CMD_TIMEOUT)
    }

    /// [`Self::ctr_remote`], panicking (with the daemon log) on failure; returns stdout.
    #[track_caller]
    pub fn ctr_remote_ok(&self, args: &[&str]) -> String {
        let out = self.ctr_remote(args);
        if !out.status.success() {
            eprintln!("--- containerd log ---\n{}", self.log());
        }
        check(&format!("ctr-remote {args:?}"), out)
    }

    /// `ctr-remote image convert --estargz --oci SRC DST`.
    pub fn convert_estargz(&self, src: &str, dst: &str) {
        self.ctr_remote_ok(&["image", "convert", "--estargz", "--oci", src, dst]);
    }

    /// `ctr images export --platform linux/amd64 FILE REF` (an oci-archive with a manifest.json).
    pub fn export(&self, reference: &str, file: &Path) {
        self.ctr_ok(&[
            "images",
            "export",
            "--platform",
            "linux/amd64",
            &file.to_string_lossy(),
            reference,
        ]);
    }

    /// `ctr images pull --plain-http REF` (a reference on a test [`Registry`]).
    pub fn pull_plain_http(&self, reference: &str) {
        self.ctr_ok(&["images", "pull", "--plain-http", reference]);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks a failed or timed-out test left behind.
        if self.child.try_wait().ok().flatten().is_none() {
            let t = Duration::from_secs(10);
            let ls = try_run(self.ctr_command(&["tasks", "ls", "-q"]), t);
            let ids = ls.map(|o| text(&o.stdout)).unwrap_or_default();
            for id in ids.split_whitespace() {
                let _ = try_run(self.ctr_command(&["tasks", "kill", "-s", "SIGKILL", id]), t);
                let _ = try_run(self.ctr_command(&["tasks", "delete", "-f", id]), t);
            }
        }
        terminate(&mut self.child);
        // Shims are started with `-address <our socket>`; they outlive containerd.
        kill_mentioning(&self.sock.to_string_lossy());
        unmount_under(self.dir.path());
    }
}

// ---------------------------------------------------------------------------------------------
// podman

/// Podman with its own storage (`--root`/`--runroot`), tmpdir, `containers.conf` (runc, cgroupfs,
/// file events, no network, pinned ulimits) and an empty `registries.conf`.
pub struct Podman {
    pub dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["root", "runroot", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        std::fs::write(
            d.join("containers.conf"),
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             netns = \"none\"\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )
        .expect("write containers.conf");
        std::fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                d.join("root").display(),
                d.join("runroot").display()
            ),
        )
        .expect("write storage.conf");
        std::fs::write(
            d.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("write registries.conf");
        Podman { dir }
    }

    /// The graph root (`--root`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A `podman` command with the isolating flags and environment; add arguments and run it.
    pub fn command(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "overlay"])
            .stdin(Stdio::null());
        c
    }

    /// `podman ARGS…`, bounded; output whatever the status.
    pub fn podman(&self, args: &[&str]) -> Output {
        let mut c = self.command();
        c.args(args);
        run_bounded(c, CMD_TIMEOUT)
    }

    /// [`Self::podman`], panicking on failure; returns stdout.
    #[track_caller]
    pub fn podman_ok(&self, args: &[&str]) -> String {
        check(&format!("podman {args:?}"), self.podman(args))
    }

    /// `podman load -i ARCHIVE`; returns the first loaded image name.
    pub fn load(&self, archive: &Path) -> String {
        let out = self.podman_ok(&["load", "-i", &archive.to_string_lossy()]);
        // "Loaded image: docker.io/cidfs/test:latest" (or "Loaded image(s): a,b")
        out.lines()
            .find_map(|l| l.split_once("Loaded image").map(|(_, r)| r))
            .and_then(|r| r.split_once(": "))
            .map(|(_, names)| {
                names
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| panic!("podman load printed no image: {out}"))
    }

    /// `podman run --rm IMAGE CMD…`; panics on failure, returns stdout.
    pub fn run_output(&self, image: &str, cmd: &[&str]) -> String {
        let mut args = vec!["run", "--rm", "--network=none", image];
        args.extend_from_slice(cmd);
        self.podman_ok(&args)
    }

    /// `podman pull --tls-verify=false REF` (plain HTTP test registries); returns the image ID.
    pub fn pull(&self, reference: &str) -> String {
        self.pull_with(reference, None)
    }

    /// [`Self::pull`] with `--creds user:pass`.
    pub fn pull_with(&self, reference: &str, creds: Option<&str>) -> String {
        let mut args = vec!["pull", "--tls-verify=false", "-q"];
        if let Some(c) = creds {
            args.extend(["--creds", c]);
        }
        args.push(reference);
        self.podman_ok(&args).trim().to_string()
    }
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let mut rm = self.command();
        rm.args(["rm", "-af", "-t", "0"]);
        let _ = try_run(rm, Duration::from_secs(30));
        kill_mentioning(&self.dir.path().to_string_lossy());
        unmount_under(self.dir.path());
    }
}
