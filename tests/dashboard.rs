//! The dashboard (`/ui/`) in a real browser: headless Chromium (Debian's `chromium`) loads the
//! page of a running two-node swarm, its script fetches `/ui/state` as any browser would, and
//! the rendered DOM must show the peers, a named image and a mount whose counters move during a
//! read. Screenshots go to `target/dashboard/`. Its actions are clicked through Playwright (from
//! PyPI, in `target/venv`) driving the same Chromium. Also: what the page's headers and the
//! API's guard do with the dashboard's routes, without a browser.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::mount::{busybox_image, mount};
use crate::util::*;

const BROWSER_BOUND: Duration = Duration::from_secs(90);

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("no chromium in PATH: scripts/test.sh installs Debian's chromium");
}

/// What Chromium shows at `url` once the page's script has run (`--dump-dom` after the page
/// settles; virtual time waits for the page's fetches), and a screenshot of it at `shot`.
fn browse(url: &str, shot: &Path) -> String {
    let profile = tempfile::tempdir().expect("tempdir");
    let base = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--virtual-time-budget=4000",
            "--window-size=1400,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut dump = Command::new(chromium());
    base(&mut dump);
    dump.arg("--dump-dom").arg(url);
    let out = run_bounded(dump, BROWSER_BOUND);
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir_all(shot.parent().expect("a directory")).expect("mkdir");
    let mut snap = Command::new(chromium());
    base(&mut snap);
    snap.arg(format!("--screenshot={}", shot.display()))
        .arg(url);
    let out = run_bounded(snap, BROWSER_BOUND);
    assert!(
        out.status.success() && shot.metadata().map(|m| m.len() > 10_000).unwrap_or(false),
        "no screenshot at {} ({:?}):\n{}",
        shot.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

fn shots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard")
}

/// The number in the cell of class `cls` in the row of filesystem `kind` (the mounts page's
/// FUSE table), from the rendered DOM.
fn fuse_cell(dom: &str, kind: &str, cls: &str) -> String {
    let row = dom
        .split("<tr>")
        .find(|r| r.starts_with(&format!("<td>{kind}</td>")))
        .unwrap_or_else(|| panic!("no {kind} row in:\n{dom}"));
    let cell = row
        .split(&format!("class=\"num {cls}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {cls} cell in {row}"));
    cell.split('<').next().unwrap_or_default().to_string()
}

#[test]
fn a_browser_sees_the_peers_the_images_and_a_mount_read() {
    let (a, b) = pair(Some("[mount]\nbackground_fetch = false\n"));
    let cid = busybox_image(&a, 2 << 20);
    a.ok(&["image", "tag", &cid, "team/app:1.0"]);
    let peers_of = |d: &Daemon| d.rpc("swarm/peers", "").1.to_string();
    eventually(READ, || peers_of(&b).contains(&a.peer_id).then_some(()))
        .unwrap_or_else(|| panic!("B never saw A:\n{}", b.log()));

    // A: itself, B as its peer, the named image with its CID and size
    let page = format!("http://{}/ui/", a.api);
    let dom = browse(&page, &shots().join("swarm-and-images.png"));
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page's script never loaded the state:\n{dom}"
    );
    assert!(dom.contains(&a.peer_id), "A's own id missing:\n{dom}");
    assert!(dom.contains(&b.peer_id), "B missing from A's peers:\n{dom}");
    assert!(
        dom.contains("team/app:1.0") && dom.contains(&cid),
        "the image missing:\n{dom}"
    );
    for fact in [
        "<td class=\"estargz\">yes</td>",
        "<td class=\"pinned\">yes</td>",
    ] {
        assert!(dom.contains(fact), "{fact} missing:\n{dom}");
    }
    assert!(dom.contains("1 connected"), "{dom}");

    // B: a mount, and its counters move while a file is read through it
    let mp = mount(&b, &cid, &[]);
    let page = format!("http://{}/ui/", b.api);
    let before = browse(&page, &shots().join("mounts-before-read.png"));
    assert!(
        before.contains(mp.path().to_str().expect("utf-8")),
        "no mount:\n{before}"
    );
    let reads_before: u64 = fuse_cell(&before, "mount", "fuse-reads")
        .parse()
        .expect("a count");
    let big = std::fs::read(mp.path().join("big.bin")).expect("read through the mount");
    assert_eq!(big.len(), 2 << 20);
    let after = browse(&page, &shots().join("mounts-after-read.png"));
    let reads_after: u64 = fuse_cell(&after, "mount", "fuse-reads")
        .parse()
        .expect("a count");
    assert!(
        reads_after > reads_before,
        "the mount's reads did not move: {reads_before} then {reads_after}"
    );
    assert_ne!(
        fuse_cell(&after, "mount", "fuse-bytes"),
        fuse_cell(&before, "mount", "fuse-bytes")
    );
    // and the mount's own counters: what it served, fetched, and how fast
    let (_, mounts) = b.rpc("mounts", "");
    let st = &mounts["Mounts"][0]["Stats"];
    assert!(st["BytesRead"].as_u64() >= Some(2 << 20), "{mounts}");
    assert!(st["BytesFetched"].as_u64() > Some(0), "{mounts}");
    assert!(st["CacheMisses"].as_u64() >= Some(1), "{mounts}");
    assert!(st["ReadP99Ms"].as_f64().is_some(), "{mounts}");
    assert!(
        !after.contains("class=\"num mount-read\">0 B<"),
        "the mount's row shows nothing read:\n{after}"
    );

    // A's images page: B holds the image partly (its index and manifests, through the mount;
    // no blob pinned), A fully; no preload rule asks for it
    eventually(READ, || {
        let (_, ls) = a.rpc("image/ls", "");
        (ls["Names"][0]["PartialHolders"][&b.peer_id] == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("A never heard B holds part of the image:\n{}", b.log()));
    let ls = String::from_utf8(a.ok(&["image", "ls", "--holders"])).expect("utf-8");
    assert!(
        ls.contains(&format!(
            "held partly by {} (0 B of its blobs pinned)",
            b.peer_id
        )),
        "{ls}"
    );
    let dom = browse(
        &format!("http://{}/ui/", a.api),
        &shots().join("images-held-partly.png"),
    );
    let cell = |cls: &str| {
        let at = dom
            .find(&format!("<td class=\"{cls}\""))
            .unwrap_or_else(|| panic!("no {cls}:\n{dom}"));
        dom[at..]
            .split("</td>")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert!(cell("partial-holders").contains(&b.peer_id[..10]), "{dom}");
    assert!(cell("partial-holders").contains(" 0 %"), "{dom}");
    assert!(cell("holders").contains(&a.peer_id[..10]), "{dom}");
    assert!(!cell("holders").contains(&b.peer_id[..10]), "{dom}");
    assert!(cell("policy").ends_with(">none"), "{dom}");
    // and its size, as image/ls gives it
    let (_, ls) = a.rpc("image/ls", "");
    let size = ls["Names"][0]["Size"].as_u64().expect("a size");
    assert!(
        cell("num size").contains(&format!("title=\"{size} bytes\"")),
        "{dom}"
    );
}

const READ: Duration = Duration::from_secs(30);

/// Runs `tests/dashboard/actions.py` (Playwright) on `url` for `step`; panics with its output
/// unless every action showed what it must.
fn click_through(url: &str, step: &str, args: serde_json::Value) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/venv/bin/python");
    assert!(
        python.is_file(),
        "no {}: scripts/test.sh installs playwright there",
        python.display()
    );
    let mut args = args;
    args["chromium"] = chromium().display().to_string().into();
    args["shot"] = shots()
        .join(format!("actions-{step}.png"))
        .display()
        .to_string()
        .into();
    std::fs::create_dir_all(shots()).expect("mkdir");
    let mut c = Command::new(python);
    c.arg(root.join("tests/dashboard/actions.py"))
        .args([url, step, &args.to_string()]);
    let out = run_bounded(c, BROWSER_BOUND * 2);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the dashboard's actions failed:\n{text}"
    );
    text
}

/// Pin, unpin, gc, connect and unmount, clicked in the page with the API token pasted (and a
/// pin without it refused): each changes the node as the CLI would see it.
#[test]
fn the_dashboards_actions_act_with_the_token_only() {
    let (a, b) = pair(Some("[mount]\nbackground_fetch = false\n"));
    let c = Daemon::start(Opts {
        swarm_key: Some(
            std::fs::read_to_string(a.repo.path().join("swarm.key")).expect("swarm.key"),
        ),
        ..Default::default()
    });
    let cid = busybox_image(&a, 1 << 20);
    a.ok(&["image", "tag", &cid, "team/app:1.0"]);
    // B learns the name from A
    eventually(READ, || {
        String::from_utf8_lossy(&b.ok(&["image", "ls"]))
            .contains("team/app")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("B never learnt the name:\n{}", b.log()));
    let mp = mount(&b, &cid, &[]);
    let dir = mp.path().to_str().expect("utf-8").to_string();
    let token = std::fs::read_to_string(b.repo.path().join("api.token")).expect("api.token");
    let page = format!("http://{}/ui/", b.api);
    let pinned = |d: &Daemon| String::from_utf8_lossy(&d.ok(&["pin", "ls"])).contains(&cid);
    assert!(!pinned(&b));
    let args = serde_json::json!({
        "token": token.trim(), "cid": cid, "addr": c.addr, "dir": dir,
    });
    click_through(&page, "first", args.clone());
    assert!(pinned(&b), "the pin click did not pin");
    // the whole image, not only its root: every layer came and is pinned
    let held = b.stat_u64("BlockBytes");
    assert!(
        held > 1 << 20,
        "B holds {held} bytes after pinning the image"
    );
    let peers = b.rpc("swarm/peers", "").1;
    let found = |id: &str| {
        peers["Peers"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["Peer"] == id))
            .map(|p| p["Found"].clone())
    };
    assert_eq!(
        found(&c.peer_id),
        Some("connect".into()),
        "the connect click: {peers}"
    );
    assert_eq!(found(&a.peer_id), Some("static".into()), "{peers}");
    assert!(mp.entry().is_none(), "the unmount click left the mount");
    let blocks = b.stat_u64("NumObjects");
    b.ok(&["repo", "verify"]);
    let (status, body) = http_with(b.api, "GET", "/ui/state", &[("Host", &b.api.to_string())]);
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(state["Store"]["LastVerify"]["Corrupt"], 0, "{state}");
    click_through(&page, "second", args);
    assert!(!pinned(&b), "the unpin click did not unpin");
    assert!(
        b.stat_u64("NumObjects") < blocks,
        "gc freed nothing: {blocks} blocks before"
    );
}

/// The page is served with a policy that allows only its own script, style and fetches; its
/// own fetches pass the guard, other pages' do not.
#[test]
fn the_dashboard_admits_its_own_page_and_refuses_others() {
    let d = Daemon::start(Opts::default());
    let host = d.api.to_string();
    let (status, page) = http(d.api, "GET", "/ui/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("/ui/app.js"));
    let head = head_of(d.api, "/ui/", &host);
    for h in [
        "content-security-policy: default-src 'none'; script-src 'self'",
        "referrer-policy: no-referrer",
        "x-frame-options: deny",
    ] {
        assert!(
            head.to_ascii_lowercase().contains(h),
            "missing {h:?} in:\n{head}"
        );
    }
    // the page's own fetch: same-origin, no Referer (no-referrer)
    let (status, body) = http_with(
        d.api,
        "GET",
        "/ui/state",
        &[("Host", &host), ("Sec-Fetch-Site", "same-origin")],
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let state: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(state["Node"]["ID"], d.peer_id.as_str());
    // another page's, and a rebinding host name
    for headers in [
        vec![("Host", host.as_str()), ("Origin", "http://evil.example")],
        vec![("Host", host.as_str()), ("Sec-Fetch-Site", "cross-site")],
        vec![
            ("Host", host.as_str()),
            ("Referer", "http://evil.example/x"),
        ],
        vec![("Host", "evil.example")],
    ] {
        let (status, _) = http_with(d.api, "GET", "/ui/state", &headers);
        assert_eq!(status, 403, "{headers:?}");
    }
    // with api.authorizations, the figures need a caller's credentials like the API
    let locked = Daemon::start(Opts {
        config: Some(
            "[api.authorizations.ops]\nauth_secret = \"bearer:dashboard-token-0123456789\"\nallowed_paths = [\"/api/v0/id\"]\n"
                .into(),
        ),
        ..Default::default()
    });
    let lhost = locked.api.to_string();
    let (status, _) = http_with(locked.api, "GET", "/ui/state", &[("Host", &lhost)]);
    assert_eq!(status, 401);
    let (status, _) = http_with(
        locked.api,
        "GET",
        "/ui/state",
        &[
            ("Host", &lhost),
            ("Authorization", "Bearer dashboard-token-0123456789"),
        ],
    );
    assert_eq!(status, 403, "a caller not allowed /ui/state");
}

/// The response head of `GET path`.
fn head_of(addr: std::net::SocketAddr, path: &str, host: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let text = String::from_utf8_lossy(&resp).to_string();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}
