//! The trust boundary (the security review's findings C1 and M2), on real daemons and real FUSE
//! mounts: web pages and DNS rebinding cannot drive the API, `mount` and `umount` need the API
//! token that only the daemon's user can read, mounts go only on empty directories below
//! `mount.allowed_roots` and are `nosuid,nodev`, and the repo is 0700 whatever made it.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};

use crate::images::gen::GenSpec;
use crate::images::runtimes::{mount_at, mounts_under, Containerd, Unmount};
use crate::mount::{generate_and_push, MountPoint};
use crate::util::{http_with, random_bytes, Daemon, Opts};

const MIB: usize = 1 << 20;

fn small_image(d: &Daemon) -> String {
    generate_and_push(
        d,
        GenSpec {
            big_file_size: MIB,
            ..Default::default()
        },
    )
    .1
}

/// An empty directory below /tmp (one of the default allowed roots), unmounted on drop; and its
/// path.
fn mount_point() -> (MountPoint, std::path::PathBuf) {
    let mp = MountPoint::new();
    let dir = mp.path().to_path_buf();
    (mp, dir)
}

/// A POST to the API as a browser (or a local process without the token) would send it.
fn post(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let host = d.api.to_string();
    let mut all = vec![("Host", host.as_str())];
    all.extend_from_slice(headers);
    let (status, body) = http_with(d.api, "POST", path, &all);
    (status, String::from_utf8_lossy(&body).to_string())
}

/// The CLI of the daemon's own user talks to it over `<repo>/api.sock`, which only that user
/// can reach (0600); without the socket it goes to the TCP address in the api file; the socket
/// is gone after a shutdown.
#[test]
fn the_cli_uses_the_owner_only_api_socket_and_falls_back_to_tcp() {
    let d = Daemon::start(Opts::default());
    let socket = d.repo.path().join("api.sock");
    let meta = std::fs::symlink_metadata(&socket).expect("api.sock");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "api.sock mode");
    // the socket is no way around the API's checks: a web page's request and a privileged
    // command without the token are refused there as over TCP
    let over_socket = |path: &str, headers: &str| {
        use std::io::{Read as _, Write as _};
        let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answer");
        answer.split(' ').nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(over_socket("/api/v0/id", ""), "200");
    assert_eq!(
        over_socket("/api/v0/id", "Origin: http://evil.example\r\n"),
        "403"
    );
    assert_eq!(over_socket("/api/v0/umount?arg=/tmp/x", ""), "401");

    let data = random_bytes(600_000);
    let cid = d.add(&data);

    // no api file: only the socket leads to the daemon
    let api_file = d.repo.path().join("api");
    let api = std::fs::read(&api_file).expect("api file");
    std::fs::remove_file(&api_file).unwrap();
    assert_eq!(d.ok(&["cat", &cid]), data);
    // no socket either: the CLI looks for the api file and says so
    let moved = d.repo.path().join("moved.sock");
    std::fs::rename(&socket, &moved).unwrap();
    let out = d.cli(&["cat", &cid]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot find the cidfs daemon"), "{err}");
    // the api file alone: TCP
    std::fs::write(&api_file, &api).unwrap();
    assert_eq!(d.ok(&["cat", &cid]), data);
    std::fs::rename(&moved, &socket).unwrap();

    let (status, repo) = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!repo.path().join("api.sock").exists(), "socket removed");
}

#[test]
fn web_pages_and_rebinding_are_refused_and_mount_needs_the_token() {
    let d = Daemon::start(Opts::default());
    let cid = small_image(&d);
    let (_tmp, dir) = mount_point();
    let mount = format!(
        "/api/v0/mount?arg={cid}&arg={}&allow-other=true",
        dir.display()
    );
    // the page's no-cors POST carries its Origin; a rebinding page's Host names its domain
    for (headers, status) in [
        (vec![("Origin", "http://evil.example")], 403),
        (vec![("Origin", "null")], 403),
        (vec![("Referer", "http://evil.example/x.html")], 403),
        (vec![("Sec-Fetch-Site", "cross-site")], 403),
        (vec![("Host", "rebind.evil.example:5001")], 403),
        // a local process without the token (it cannot read api.token)
        (vec![], 401),
        (vec![("Authorization", "Bearer 0123")], 401),
    ] {
        let (got, body) = if headers.first().is_some_and(|(k, _)| *k == "Host") {
            let (s, b) = http_with(d.api, "POST", &mount, &headers);
            (s, String::from_utf8_lossy(&b).to_string())
        } else {
            post(&d, &mount, &headers)
        };
        assert_eq!(got, status, "{headers:?}: {body}");
        assert!(body.contains("\"Message\""), "kubo's error shape: {body}");
        assert!(mount_at(&dir).is_none(), "{headers:?} mounted something");
    }
    // other commands refuse web pages too (add is reachable with a CORS-safelisted form)
    let (got, _) = post(&d, "/api/v0/id", &[("Origin", "http://evil.example")]);
    assert_eq!(got, 403);
    let (got, _) = post(&d, "/api/v0/id", &[]);
    assert_eq!(got, 200, "the CLI's requests carry no Origin");

    let token_file = d.repo.path().join("api.token");
    let mode = std::fs::metadata(&token_file)
        .expect("api.token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "api.token mode {mode:o}");
    let token = std::fs::read_to_string(&token_file).expect("read api.token");
    let bearer = format!("Bearer {}", token.trim());
    let (got, body) = post(&d, &mount, &[("Authorization", &bearer)]);
    assert_eq!(got, 200, "{body}");
    let entry = mount_at(&dir).expect("mounted with the token");
    for flag in ["nosuid", "nodev"] {
        assert!(
            entry.options.split(',').any(|o| o == flag),
            "mount options {:?} lack {flag}",
            entry.options
        );
    }
    // the CLI reads the token itself
    d.ok(&["umount", dir.to_str().expect("utf-8")]);
    assert!(mount_at(&dir).is_none());
}

#[test]
fn mounts_go_only_on_empty_directories_below_the_allowed_roots() {
    let d = Daemon::start(Opts::default());
    let cid = small_image(&d);
    let (_tmp, dir) = mount_point();
    std::fs::write(dir.join("keep.txt"), b"mine").expect("write");
    let out = d.cli(&["mount", &cid, dir.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not empty"), "{err}");
    assert!(mount_at(&dir).is_none());

    // a root of its own: /tmp is no longer allowed
    let roots = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Opts {
        config: Some(format!(
            "[mount]\nallowed_roots = [\"{}\"]\n",
            roots.path().display()
        )),
        ..Default::default()
    });
    let cid = small_image(&d);
    let (_tmp2, outside) = mount_point();
    let out = d.cli(&["mount", &cid, outside.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("mount.allowed_roots"),
        "{err}"
    );
    assert!(mount_at(&outside).is_none());
    // the root itself is refused too: only directories strictly below it
    let root = roots.path().canonicalize().expect("canonical");
    let out = d.cli(&["mount", &cid, root.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "mounted over an allowed root itself");
    let inside = root.join("m");
    std::fs::create_dir(&inside).expect("mkdir");
    d.ok(&["mount", &cid, inside.to_str().expect("utf-8")]);
    assert!(mount_at(&inside).is_some());
    d.ok(&["umount", inside.to_str().expect("utf-8")]);
}

#[test]
fn an_open_repo_is_made_0700() {
    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(repo.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let d = Daemon::start_in(repo, Opts::default());
    let mode = std::fs::metadata(d.repo.path())
        .expect("repo")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "repo mode {mode:o}");
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// `block/put` of a 256 MiB part is refused once it passes the 2 MiB block limit, without
/// buffering the part (finding M8: the whole part was read into memory before the check).
#[test]
fn an_oversized_block_put_is_refused_without_buffering_it() {
    use std::io::{Read as _, Write as _};
    let d = Daemon::start(Opts::default());
    let before = peak_rss(d.pid());
    const PART: usize = 256 << 20;
    let boundary = "cidfsboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let len = head.len() + PART + tail.len();
    let mut s = std::net::TcpStream::connect(d.api).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "POST /api/v0/block/put HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{head}",
        d.api
    )
    .expect("write head");
    let mut writer = s.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..PART >> 20 {
            if writer.write_all(&chunk).is_err() {
                return; // the daemon stopped reading: refused early
            }
        }
        let _ = writer.write_all(tail.as_bytes());
    });
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer); // may be cut short by a reset once refused
    sender.join().expect("sender");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || (answer.starts_with("HTTP/1.1 400") && answer.contains("exceeds")),
        "{answer}"
    );
    let grew = peak_rss(d.pid()).saturating_sub(before);
    assert!(
        grew < 64 << 20,
        "the daemon's peak RSS grew by {} MiB for one refused upload",
        grew >> 20
    );
    // and it still serves
    let (status, _) = post(&d, "/api/v0/id", &[]);
    assert_eq!(status, 200);
}

/// `repo gc` in a loop while a 64 MiB `add` runs: the add's blocks are not pinned until its end,
/// yet none is swept (M1: gc raced add, which reported success with its blocks gone).
#[test]
fn gc_during_an_add_sweeps_none_of_its_blocks() {
    let d = Daemon::start(Opts::default());
    let data = crate::util::random_bytes(64 * MIB);
    let path = d.repo.path().join("input");
    std::fs::write(&path, &data).expect("write");
    let adding = d.cli_in_background(&["add", "-q", path.to_str().expect("utf-8")]);
    let mut rounds = 0;
    while !adding.is_finished() {
        d.ok(&["repo", "gc", "-q"]);
        rounds += 1;
    }
    let out = adding.join().expect("add thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cid = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    eprintln!("{rounds} gc rounds during the add");
    assert!(rounds > 0, "no gc ran during the add");
    d.ok(&["repo", "gc", "-q"]);
    // no peers: every block must be in the store
    let got = d.ok(&["cat", &cid]);
    assert!(
        got == data,
        "the added file does not read back after {rounds} gc rounds"
    );
}

/// A pin is on disk when `pin add` (here: `add`) returns: a SIGKILL right after loses nothing
/// (L1: pins waited for sled's flush interval).
#[test]
fn a_pin_survives_a_kill_right_after_it_returns() {
    let d = Daemon::start(Opts::default());
    let data = crate::util::random_bytes(MIB);
    let cid = d.add(&data);
    let d = Daemon::start_in(d.crash(), Opts::default());
    let pins = String::from_utf8(d.ok(&["pin", "ls"])).expect("utf-8");
    assert!(pins.contains(&cid), "pin lost: {pins}");
    d.ok(&["repo", "gc", "-q"]);
    assert!(d.ok(&["cat", &cid]) == data);
}

/// `cidfs umount` removes only what `cidfs mount` made: the layer store stays (L4).
#[test]
fn umount_leaves_the_daemons_own_mounts_alone() {
    // dropped after the daemon (killed, so it cannot unmount its store): unmounts what is left
    let mp = MountPoint::new();
    let store = mp.path().to_path_buf();
    let d = Daemon::start(Opts {
        config: Some(format!(
            "[layer_store]\nmountpoint = \"{}\"\n",
            store.display()
        )),
        ..Default::default()
    });
    assert!(mount_at(&store).is_some(), "the layer store is mounted");
    let out = d.cli(&["umount", store.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("daemon's own"),
        "{err}"
    );
    assert!(mount_at(&store).is_some(), "the layer store was unmounted");
}

/// kubo's `API.Authorizations`: with callers configured, a request needs one of their
/// credentials (bearer or basic) and a path that caller may call; the CLI sends one with
/// `--api-auth`; the node's own token may do everything. Without callers the daemon refuses
/// to listen beyond loopback.
#[test]
fn api_authorizations_admit_callers_to_their_paths() {
    let d = Daemon::start(Opts {
        config: Some(
            "[api.authorizations.reader]\nauth_secret = \"bearer:reader-token-0123456789\"\nallowed_paths = [\"/api/v0/cat\", \"/api/v0/id\"]\n\
             [api.authorizations.ops]\nauth_secret = \"basic:ops:a long password\"\nallowed_paths = [\"/api/v0\"]\n"
                .into(),
        ),
        ..Default::default()
    });
    let cid = d.add(b"for readers only\n");
    let path = format!("/api/v0/cat?arg={cid}");
    assert_eq!(post(&d, &path, &[]).0, 401, "no credential");
    assert_eq!(
        post(&d, &path, &[("Authorization", "Bearer not-a-known-token")]).0,
        401
    );
    let reader = ("Authorization", "Bearer reader-token-0123456789");
    let (status, body) = post(&d, &path, &[reader]);
    assert_eq!((status, body.as_str()), (200, "for readers only\n"));
    let (status, body) = post(&d, "/api/v0/pin/ls", &[reader]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("api.authorizations.reader"), "{body}");
    // basic: base64("ops:a long password")
    let ops = ("Authorization", "Basic b3BzOmEgbG9uZyBwYXNzd29yZA==");
    assert_eq!(post(&d, "/api/v0/pin/ls", &[ops]).0, 200);

    // the CLI of another user (another repo: no api.token) with --api-auth
    let other = tempfile::tempdir().expect("tempdir");
    let cli = |auth: Option<&str>| {
        let mut c = std::process::Command::new(crate::util::BIN);
        c.args(["--repo", other.path().to_str().expect("utf8")])
            .args(["--api", &d.api.to_string()])
            .args(["cat", &cid])
            .env_remove("CIDFS_API_AUTH");
        if let Some(a) = auth {
            c.env("CIDFS_API_AUTH", a);
        }
        crate::util::run_bounded(c, std::time::Duration::from_secs(60))
    };
    let out = cli(Some("bearer:reader-token-0123456789"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"for readers only\n");
    let out = cli(None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("api.authorizations"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the node's own CLI (it reads api.token) may do everything
    d.ok(&["pin", "ls"]);
    drop(d);

    // no callers: an API beyond loopback is refused at start, before it listens
    let repo = tempfile::tempdir().expect("tempdir");
    let mut c = std::process::Command::new(crate::util::BIN);
    c.args(["--repo", repo.path().to_str().expect("utf8")])
        .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .args([
            "--api-listen",
            "0.0.0.0:0",
            "--registry-listen",
            "127.0.0.1:0",
        ]);
    let out = crate::util::run_bounded(c, std::time::Duration::from_secs(60));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("beyond loopback"), "{err}");
}

/// Finding C1 asks for `nosuid,nodev` on every FUSE mount *and* containers that still work:
/// measured here, not assumed. `/a/setuid` in the generated image is a setuid-root ELF that
/// exits with its effective uid; run as uid 1000 it exits 0 where the kernel honours the bit.
/// It does so the same way from an ordinary pull and from lazily served layers, with containerd
/// (overlayfs snapshotter vs the cidfs snapshotter) and Podman (plain pull vs the additional
/// layer store), although the FUSE mounts under the container's overlayfs are `nosuid`:
/// overlayfs checks the flags of its own mount, which the runtime makes without `nosuid`.
#[test]
fn setuid_binaries_behave_in_lazily_served_layers_as_in_ordinary_pulls() {
    // the probe itself: 0 as uid 1000 from a directory where setuid is honoured
    let probe_dir = tempfile::tempdir().expect("tempdir");
    let probe = probe_dir.path().join("euid");
    std::fs::write(&probe, crate::images::gen::euid_elf()).expect("write");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let status = |out: &std::process::Output| out.status.code();
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=1000", "--regid=1000", "--clear-groups"])
        .arg(&probe);
    let host = crate::util::run_bounded(c, std::time::Duration::from_secs(30));
    assert_eq!(status(&host), Some(0), "the probe works on the host");
    let nnp = std::process::Command::new("setpriv")
        .args([
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "--no-new-privs",
        ])
        .arg(&probe)
        .status()
        .expect("setpriv");
    assert_eq!(
        nnp.code(),
        Some(232),
        "and tells when setuid is not honoured"
    );

    let store = MountPoint::new();
    let (a, b) = crate::util::pair(Some(&format!(
        "[layer_store]\nmountpoint = \"{}\"\n",
        store.path().display()
    )));
    let _unmount = Unmount(b.repo.path().to_path_buf());
    let (_, cid) = generate_and_push(
        &a,
        GenSpec {
            busybox: true,
            big_file_size: MIB,
            ..Default::default()
        },
    );
    let reference = format!("{}/ipfs/{cid}:latest", b.registry);

    // containerd: an ordinary pull (overlayfs snapshotter), then rpull (cidfs snapshotter)
    let socket = b.repo.path().join("snapshotter.sock");
    let c = Containerd::start_with(&crate::containerd::proxy_plugin_config(&socket));
    let runc_root = tempfile::tempdir().expect("tempdir");
    let run = |snapshotter: &str, id: &str| {
        // ctr 1.6 has no --user: /a/drop becomes uid 1000 and runs the probe; ctr sets
        // no_new_privs unless told not to (which would hide setuid everywhere)
        c.ctr(&[
            "run",
            "--rm",
            "--allow-new-privs",
            "--snapshotter",
            snapshotter,
            "--runc-root",
            runc_root.path().to_str().expect("utf8"),
            &reference,
            id,
            "/a/drop",
        ])
    };
    c.ctr_ok(&["images", "pull", "--plain-http", &reference]);
    let ordinary = run("overlayfs", "suid-ordinary");
    c.ctr_ok(&["images", "rm", &reference]);
    c.ctr_remote_ok(&[
        "image",
        "rpull",
        "--plain-http",
        "--snapshotter=cidfs",
        &reference,
    ]);
    let lazy = run("cidfs", "suid-lazy");
    let lazy_mounts: Vec<_> = mounts_under(b.repo.path())
        .into_iter()
        .filter_map(|p| mount_at(std::path::Path::new(&p)))
        .collect();
    assert!(!lazy_mounts.is_empty(), "the layers are mounted lazily");
    for m in &lazy_mounts {
        assert!(
            m.options.contains("nosuid") && m.options.contains("nodev"),
            "{} is {}",
            m.point,
            m.options
        );
    }
    assert_eq!(
        (status(&ordinary), status(&lazy)),
        (Some(0), Some(0)),
        "containerd: ordinary {ordinary:?}, lazy {lazy:?}"
    );
    drop(c);

    // Podman: a plain pull, then (another storage) the additional layer store
    let run = [
        "run",
        "--rm",
        "--user",
        "1000:1000",
        &reference,
        "/a/setuid",
    ];
    let (plain, _) = crate::registry::podman_with_store(&b, store.path());
    let ordinary = plain.podman(&run);
    let (lazy_podman, opt) = crate::registry::podman_with_store(&b, store.path());
    let lazy = lazy_podman.podman(&[&["--storage-opt", opt.as_str()][..], &run[..]].concat());
    assert!(
        b.metrics()
            .get("cidfs_fuse_requests_total{fs=\"layer_store\",op=\"lookup\"}")
            >= 1.0,
        "podman used the layer store"
    );
    assert_eq!(
        (status(&ordinary), status(&lazy)),
        (Some(0), Some(0)),
        "podman: ordinary {ordinary:?}, lazy {lazy:?}"
    );
}

/// Reads every regular file under `dir` (bounded); how many read whole and the errors met.
fn read_all(dir: &std::path::Path) -> (usize, Vec<String>) {
    let dir = dir.to_path_buf();
    crate::util::call_bounded(
        "reading the mount",
        std::time::Duration::from_secs(120),
        move || {
            let (mut ok, mut errors) = (0, Vec::new());
            let mut stack = vec![dir];
            while let Some(p) = stack.pop() {
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => match std::fs::read_dir(&p) {
                        Ok(rd) => stack.extend(rd.flatten().map(|e| e.path())),
                        Err(e) => errors.push(format!("{}: {e}", p.display())),
                    },
                    Ok(m) if m.is_file() => match std::fs::read(&p) {
                        Ok(_) => ok += 1,
                        Err(e) => errors.push(format!("{}: {e}", p.display())),
                    },
                    Ok(_) => {}
                    Err(e) => errors.push(format!("{}: {e}", p.display())),
                }
            }
            (ok, errors)
        },
    )
}

/// The hostile-image corpus (`images::hostile::corpus`: deep names, a million entries, a 1 TiB
/// chunk, a gzip bomb, lying sizes and digests, a PAX chain, 200 layers): each image is refused
/// at mount with a clear error, or mounts and reads correctly (a lying chunk: EIO), and the
/// daemon stays up with its peak memory under 1 GiB.
#[test]
fn every_hostile_image_is_refused_clearly_or_served_correctly() {
    let d = Daemon::start(Opts {
        config: Some("[mount]\nread_timeout_secs = 20\n".into()),
        ..Default::default()
    });
    let mut report = Vec::new();
    for (what, layers) in crate::images::hostile::corpus() {
        let cid = crate::images::hostile::image_of(&d, &layers);
        drop(layers);
        let (_tmp, dir) = mount_point();
        let out = d.cli(&["mount", &cid, dir.to_str().expect("utf-8")]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            assert!(
                err.len() > 20 && !err.contains("panicked"),
                "{what}: an unclear refusal: {err:?}"
            );
            report.push(format!(
                "{what}: refused: {}",
                err.lines().last().unwrap_or("")
            ));
            continue;
        }
        let (ok, errors) = read_all(&dir);
        d.ok(&["umount", dir.to_str().expect("utf-8")]);
        for e in &errors {
            assert!(
                e.contains("os error 5"),
                "{what}: only EIO may fail a read: {e}"
            );
        }
        report.push(format!(
            "{what}: served, {ok} files read, {} refused reads",
            errors.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
    d.ok(&["id"]);
    let peak = peak_rss(d.pid());
    assert!(
        peak < 1 << 30,
        "daemon peak RSS {} MiB:\n{}",
        peak >> 20,
        report.join("\n")
    );
    eprintln!("daemon peak RSS {} MiB", peak >> 20);
}
