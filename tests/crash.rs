//! The block store across crashes: SIGKILL in the middle of an `add`, a transfer and a `repo gc`,
//! then a restart on the same repo. Each time `repo verify` must be clean, what was pinned
//! before must read back whole, and the interrupted work must complete when run again.

use std::path::Path;
use std::time::Duration;

use crate::util::{eventually, pair, random_bytes, sha256, Daemon, Opts};

const MIB: usize = 1 << 20;
/// Bound on waiting for an interrupted operation to get under way.
const UNDER_WAY: Duration = Duration::from_secs(60);

/// Bytes the filesystem holds for the repo's pack files.
fn packed_bytes(repo: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir(repo.join("blocks").join("packs")) else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// Waits (bounded) until `d` has packed 32 MiB more than `base`: `what` is under way.
fn wait_packed(d: &Daemon, base: u64, what: &str) {
    let grown = eventually(UNDER_WAY, || {
        (packed_bytes(d.repo.path()) > base + 32 * MIB as u64).then_some(())
    });
    assert!(grown.is_some(), "{what} never got under way");
}

/// Restarts `d` after a SIGKILL and checks the store: `repo verify` clean, `keep` (CID and
/// bytes) pinned and whole.
fn crash_and_check(d: Daemon, keep: &(String, Vec<u8>)) -> Daemon {
    let opts = d.opts();
    let d = Daemon::start_in(d.crash(), opts);
    let verify = d.cli(&["repo", "verify"]);
    assert!(
        verify.status.success(),
        "repo verify after the crash: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let pins = String::from_utf8(d.ok(&["pin", "ls"])).expect("utf-8");
    assert!(pins.contains(&keep.0), "pin lost: {pins}");
    assert_eq!(
        sha256(&d.ok(&["cat", &keep.0])),
        sha256(&keep.1),
        "pinned data changed"
    );
    d
}

/// `add?pin=false&chunker=size-8192` through the kubo RPC (the CLI has no chunker option).
fn add_unpinned_in_8_kib_blocks(d: &Daemon, data: &[u8]) {
    use std::io::{Read as _, Write as _};
    let boundary = "cidfsboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"junk\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let mut s = std::net::TcpStream::connect(d.api).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(
        s,
        "POST /api/v0/add?pin=false&chunker=size-8192 HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        d.api,
        head.len() + data.len() + tail.len()
    )
    .expect("write head");
    s.write_all(data).expect("write body");
    s.write_all(tail.as_bytes()).expect("write tail");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

fn pinned(d: &Daemon, bytes: usize) -> (String, Vec<u8>) {
    let data = random_bytes(bytes);
    (d.add(&data), data)
}

#[test]
fn a_kill_during_a_256_mib_add_loses_nothing_pinned() {
    let d = Daemon::start(Opts::default());
    let keep = pinned(&d, 8 * MIB);
    let data = random_bytes(256 * MIB);
    let input = d.repo.path().join("big");
    std::fs::write(&input, &data).expect("write input");
    let base = packed_bytes(d.repo.path());
    let add = d.cli_in_background(&["add", "-q", input.to_str().expect("utf-8")]);
    wait_packed(&d, base, "the add");
    let d = crash_and_check(d, &keep);
    let _ = add.join();
    let cid = String::from_utf8(d.ok(&["add", "-q", input.to_str().expect("utf-8")]))
        .expect("utf-8")
        .trim()
        .to_string();
    assert_eq!(sha256(&d.ok(&["cat", &cid])), sha256(&data));
    assert!(d.cli(&["repo", "verify"]).status.success());
}

#[test]
fn a_kill_during_a_transfer_loses_nothing_pinned() {
    let (a, b) = pair(None);
    let keep = pinned(&b, 8 * MIB);
    let data = random_bytes(256 * MIB);
    let cid = a.add(&data);
    let base = packed_bytes(b.repo.path());
    let pin = b.cli_in_background(&["pin", "add", &cid]);
    wait_packed(&b, base, "the transfer");
    let b = crash_and_check(b, &keep);
    let _ = pin.join();
    b.ok(&["pin", "add", &cid]);
    assert_eq!(sha256(&b.ok(&["cat", &cid])), sha256(&data));
    assert!(b.cli(&["repo", "verify"]).status.success());
}

#[test]
fn a_kill_during_repo_gc_loses_nothing_pinned() {
    let d = Daemon::start(Opts::default());
    let keep = pinned(&d, 8 * MIB);
    // 32,768 unpinned 8 KiB blocks: gc takes long enough to be caught half-way
    add_unpinned_in_8_kib_blocks(&d, &random_bytes(256 * MIB));
    let full = d.stat_u64("NumObjects");
    let gc = d.cli_in_background(&["repo", "gc", "-q"]);
    assert!(
        eventually(UNDER_WAY, || (d.stat_u64("NumObjects") < full)
            .then_some(()))
        .is_some(),
        "gc never got under way"
    );
    let d = crash_and_check(d, &keep);
    let _ = gc.join();
    d.ok(&["repo", "gc", "-q"]);
    assert!(
        d.stat_u64("NumObjects") < 100,
        "gc after the restart left {} blocks",
        d.stat_u64("NumObjects")
    );
}
