//! Lazy FUSE mounts (issue 6): `cidfs mount | umount | mounts` on real daemons. The daemon makes
//! a real FUSE mount; this process reads it and runs a real `chroot` into it.
//!
//! - **Fidelity and laziness**: the mounted tree of an image pushed on another node equals the
//!   generator's merged tree (whiteouts, opaque dir, hardlinks as one inode, xattrs, modes with
//!   setuid/sticky, owners, mtimes, symlink targets, contents, `st_nlink`, `st_blocks`); the mount
//!   is read-only and answers `statvfs`. Reading one small file of a ≥ 300 MiB image first fetches
//!   less than 1 % of the image's blocks.
//! - **The kernel keeps what never changes**: after one round of stat of a missing name,
//!   readlink, read and listing, the same round asks the daemon nothing.
//! - **Exec**: busybox runs from a lazy mount under `chroot`; another user may run it only from a
//!   mount made with `--allow-other`. A dynamically linked program (the host's `true` with its
//!   loader and libc) runs too, and the first read of it alone fetches its libraries.
//! - **Failure**: with its only provider killed, a read of data nobody serves fails with ETIMEDOUT
//!   within `mount.read_timeout_secs` (and a margin), is logged as "read failed" with the layer
//!   CID, and the mount still serves what it already fetched and unmounts cleanly.
//! - **Lifecycle**: `cidfs mounts` lists mounts, `cidfs umount` and the daemon's SIGTERM leave
//!   no mount behind; a bad reference, a missing mount point and a platform the image lacks fail
//!   with a message and mount nothing.
//!
//! Each mount point lives in a temp dir of its own ([`MountPoint`]); whatever is still mounted
//! there is unmounted (`umount -l`) when it drops, also when a test panics. Every access to a
//! mount runs with a time bound ([`call_bounded`]), so a hung FUSE request fails the test instead
//! of hanging it. The mounted tree is read by [`crate::images::dirtree`].

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::images::dirtree::{assert_inodes_match, c_path, tree_of_dir, DirTree};
use crate::images::gen::{self, GenSpec, GeneratedImage};
use crate::images::runtimes::{mount_at, mounts_under, MountEntry};
use crate::images::tree::assert_same_tree;
use crate::util::{call_bounded, eventually, pair, run_bounded, try_run, Daemon, Opts};

const MIB: usize = 1 << 20;
/// Bound of one read through a mount that must succeed (a fetch from a peer included).
const READ_BOUND: Duration = Duration::from_secs(120);
/// Bound of a walk that reads every file of a mount (a 320 MiB image from a peer).
const WALK_BOUND: Duration = Duration::from_secs(600);
/// The content of `a/small.txt` in every generated image.
const SMALL: &[u8] = b"hello world\n";

/// Generates the image of `spec` and pushes it on `d` (`image push -q`, which must print one
/// CID line); returns the image and its CID. The layout is removed once pushed.
pub fn generate_and_push(d: &Daemon, spec: GenSpec) -> (GeneratedImage, String) {
    let work = tempfile::tempdir().expect("tempdir");
    let img = gen::build_oci_layout(&work.path().join("layout"), &spec);
    let out = String::from_utf8(d.ok(&["image", "push", "-q", &img.oci_ref()])).expect("utf-8");
    let cid = out.trim();
    assert!(
        cid.starts_with("bafkrei") && !cid.contains('\n'),
        "push printed {out:?}"
    );
    (img, cid.to_string())
}

/// Pushes on `d` a generated busybox image with a `big_file_size`-byte incompressible file;
/// returns its CID.
pub fn busybox_image(d: &Daemon, big_file_size: usize) -> String {
    let spec = GenSpec {
        busybox: true,
        big_file_size,
        ..Default::default()
    };
    generate_and_push(d, spec).1
}

/// What `cidfs image inspect --json` on a node says about an image.
struct ImageInfo {
    /// Layer CIDs, bottom first (of the first platform).
    layer_cids: Vec<String>,
    /// Bytes of every blob: index, manifests, configs, layers.
    bytes: u64,
}

fn inspect(d: &Daemon, cid: &str) -> ImageInfo {
    let v: serde_json::Value =
        serde_json::from_slice(&d.ok(&["image", "inspect", "--json", cid])).expect("json");
    let size = |x: &serde_json::Value| {
        x["size"]
            .as_u64()
            .unwrap_or_else(|| panic!("no size in {x}"))
    };
    let mut sizes = vec![size(&v["rootDescriptor"])];
    let images = v["images"].as_array().expect("images");
    for i in images {
        sizes.push(size(&i["descriptor"]));
        sizes.push(size(&i["manifest"]["config"]));
        sizes.extend(i["layers"].as_array().expect("layers").iter().map(size));
    }
    let layer_cids = images[0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["cid"].as_str().expect("layer cid").to_string())
        .collect();
    ImageInfo {
        layer_cids,
        bytes: sizes.iter().sum(),
    }
}

/// An empty directory to mount on, `mnt` in a temp dir of its own (canonical path). On drop,
/// whatever is mounted anywhere in that temp dir is unmounted with `umount -l` (bounded), before
/// the temp dir is removed.
pub struct MountPoint {
    dir: PathBuf,
    /// The canonical temp dir holding `dir`.
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl MountPoint {
    pub fn new() -> MountPoint {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canonical temp dir");
        let dir = root.join("mnt");
        std::fs::create_dir(&dir).expect("mkdir mount point");
        MountPoint {
            dir,
            root,
            _tmp: tmp,
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn s(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    /// The mount at the mount point, if any (`/proc/self/mountinfo`).
    pub fn entry(&self) -> Option<MountEntry> {
        mount_at(&self.dir)
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        for _ in 0..3 {
            let left = mounts_under(&self.root);
            if left.is_empty() {
                return;
            }
            for m in left {
                let mut c = Command::new("umount");
                c.arg("-l").arg(&m).stdin(Stdio::null());
                let _ = try_run(c, Duration::from_secs(30));
            }
        }
    }
}

/// `cidfs mount [EXTRA…] REF DIR` on `d` onto a fresh [`MountPoint`]: it must succeed, and a
/// FUSE mount must be there when the command returns.
pub(crate) fn mount(d: &Daemon, reference: &str, extra: &[&str]) -> MountPoint {
    let mp = MountPoint::new();
    let mut args = vec!["mount"];
    args.extend_from_slice(extra);
    args.extend([reference, mp.s()]);
    d.ok(&args);
    let e = mp.entry().unwrap_or_else(|| {
        panic!(
            "`cidfs {args:?}` returned but nothing is mounted at {}:\n{}",
            mp.s(),
            d.log()
        )
    });
    assert!(e.fs_type.starts_with("fuse"), "not a FUSE mount: {e:?}");
    mp
}

/// `cidfs mount ARGS…` that must fail with a message; returns stderr.
fn mount_fails(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["mount"];
    all.extend_from_slice(args);
    let out = d.cli(&all);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success(), "`cidfs {all:?}` succeeded");
    assert!(!err.is_empty(), "`cidfs {all:?}` failed without a message");
    err
}

/// `cidfs mounts` on `d`: `(DIR, CID)` of each line `DIR<TAB>CID[<TAB>…]`, sorted (columns
/// after the CID, such as the platform, are not checked).
fn mounts(d: &Daemon) -> Vec<(String, String)> {
    let out = String::from_utf8(d.ok(&["mounts"])).expect("utf-8");
    let mut v: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let mut cols = l.split('\t');
            match (cols.next(), cols.next()) {
                (Some(dir), Some(cid)) => (dir.to_string(), cid.to_string()),
                _ => panic!("`cidfs mounts` line is not DIR<TAB>CID: {l:?}"),
            }
        })
        .collect();
    v.sort();
    v
}

/// Reads a whole file through a mount, past the kernel's page cache (its cached pages are
/// dropped first, so the FUSE daemon serves the read), on a thread bounded by `timeout`.
/// Returns the result and how long the read took.
fn read_through(path: &Path, timeout: Duration) -> (io::Result<Vec<u8>>, Duration) {
    let p = path.to_path_buf();
    call_bounded(&format!("reading {}", path.display()), timeout, move || {
        let t = Instant::now();
        let read = || -> io::Result<Vec<u8>> {
            let mut f = std::fs::File::open(&p)?;
            use std::os::fd::AsRawFd;
            // SAFETY: a plain advice call on an fd we own.
            let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(v)
        };
        let r = read();
        (r, t.elapsed())
    })
}

/// [`tree_of_dir`] of a mount, bounded by [`WALK_BOUND`].
fn walk(mnt: &Path) -> DirTree {
    let mnt = mnt.to_path_buf();
    call_bounded("walking the mount", WALK_BOUND, move || tree_of_dir(&mnt))
}

/// `statvfs` answers, and the mount refuses writes with EROFS (new files and writes to
/// existing ones). Bounded.
fn assert_read_only(mnt: &Path) {
    let mnt = mnt.to_path_buf();
    call_bounded("statvfs and write attempts", READ_BOUND, move || {
        let p = c_path(&mnt);
        // SAFETY: `st` is a plain C struct the call fills in.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::statvfs(p.as_ptr(), &mut st) };
        assert_eq!(
            r,
            0,
            "statvfs {}: {}",
            mnt.display(),
            io::Error::last_os_error()
        );
        assert!(st.f_namemax >= 255, "f_namemax {}", st.f_namemax);

        let e = std::fs::File::create(mnt.join("new-file"))
            .expect_err("created a file in the read-only mount");
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "create: {e}");
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(mnt.join("a/small.txt"))
            .expect_err("opened a file for writing in the read-only mount");
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "open for writing: {e}");
    })
}

/// B mounts an image pushed on A. One small read fetches < 1 % of the image's blocks; then the
/// whole mounted tree (contents and metadata) equals the generator's merged tree.
#[test]
fn mount_matches_the_layers() {
    let (a, b) = pair(Some("[mount]\nbackground_fetch = false\n"));
    // big.bin is incompressible, so the layer is about as big as the file
    let (img, cid) = generate_and_push(
        &a,
        GenSpec {
            busybox: true,
            big_file_size: 320 * MIB,
            ..Default::default()
        },
    );
    let info = inspect(&a, &cid);
    assert!(
        info.bytes >= 300 * MIB as u64,
        "image of {} bytes is too small for the 1 % check",
        info.bytes
    );
    let stored = a.stat_u64("BlockBytes");
    assert!(
        stored >= info.bytes,
        "A stores {stored} bytes of blocks, fewer than the image's {} bytes",
        info.bytes
    );
    assert_eq!(b.stat_u64("BlocksFetched"), 0, "B fetched before mounting");

    let mp = mount(&b, &format!("ipfs://{cid}"), &[]);
    let (small, _) = read_through(&mp.path().join("a/small.txt"), READ_BOUND);
    assert_eq!(small.expect("read a/small.txt through the mount"), SMALL);
    let fetched = b.stat_u64("BytesFetched");
    assert!(
        b.stat_u64("BlocksFetched") > 0 && fetched * 100 < info.bytes,
        "mount + one small read fetched {fetched} bytes of the image's {} (limit: < 1 %)",
        info.bytes
    );
    eprintln!(
        "mount + small read fetched {fetched} of {} bytes",
        info.bytes
    );

    let w = walk(mp.path());
    let mut want = img.expected.clone();
    for n in want.values_mut() {
        n.hardlink = None;
    }
    assert_same_tree(&want, &w.tree);
    assert_inodes_match(&img.expected, &w);
    assert_read_only(mp.path());
}

/// What never changes in a mount, the kernel keeps after asking once: a name that is not
/// there, a symlink's target, a file's bytes, a directory's listing, and whether files and
/// directories may be opened (the mount answers the first open of each ENOSYS, and the kernel
/// opens without asking from then on). Counted by `cidfs_fuse_requests_total{fs="mount"}`.
#[test]
fn the_kernel_asks_a_mount_once_for_what_never_changes() {
    let (a, b) = pair(Some("[mount]\nbackground_fetch = false\n"));
    let cid = busybox_image(&a, MIB);
    let mp = mount(&b, &format!("ipfs://{cid}"), &[]);
    let touch = |what: &'static str| {
        let root = mp.path().to_path_buf();
        call_bounded(what, READ_BOUND, move || {
            let e = std::fs::symlink_metadata(root.join("a/no-such-name"))
                .expect_err("stat of a name that is not there");
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
            let link = std::fs::read_link(root.join("bin/sh")).expect("readlink bin/sh");
            assert_eq!(link, Path::new("busybox"));
            assert_eq!(
                std::fs::read(root.join("a/small.txt")).expect("read"),
                SMALL
            );
            let names = std::fs::read_dir(root.join("a")).expect("list a/").count();
            assert!(names > 1, "a/ lists {names} entries");
        })
    };
    const OPS: [&str; 6] = ["lookup", "readlink", "open", "opendir", "read", "readdir"];
    let asked = || {
        let m = b.metrics();
        OPS.map(|op| {
            m.get(&format!(
                "cidfs_fuse_requests_total{{fs=\"mount\",op=\"{op}\"}}"
            ))
        })
    };
    touch("the first stat, readlink, read and listing");
    let first = asked();
    assert!(first[0] >= 1.0, "no lookup counted: {first:?}");
    touch("the same again");
    touch("and a third time");
    assert_eq!(
        asked(),
        first,
        "requests by kind ({OPS:?}) after the first round"
    );
    assert!(
        first[2] <= 1.0 && first[3] <= 1.0,
        "opens {} and directory opens {} reached the daemon (at most the first of each)",
        first[2],
        first[3]
    );
}

/// `chroot [--userspec=U:G] MNT /bin/busybox sh -c 'cat /etc/hello; echo ok'`, bounded.
fn chroot_hello(mnt: &Path, userspec: Option<&str>) -> std::process::Output {
    let mut c = Command::new("chroot");
    if let Some(u) = userspec {
        c.arg(format!("--userspec={u}"));
    }
    c.arg(mnt)
        .args(["/bin/busybox", "sh", "-c", "cat /etc/hello; echo ok"])
        .stdin(Stdio::null());
    run_bounded(c, Duration::from_secs(120))
}

/// busybox, read lazily from A through B's mount, runs under `chroot`. Another user (nobody)
/// may run it only from a mount made with `--allow-other`.
#[test]
fn chroot_runs_busybox_from_a_lazy_mount() {
    let (a, b) = pair(None);
    let (_img, cid) = generate_and_push(
        &a,
        GenSpec {
            busybox: true,
            big_file_size: MIB,
            ..Default::default()
        },
    );
    let hello = format!("{}\nok\n", gen::HELLO_LINE);
    let mp = mount(&b, &cid, &[]);
    let out = chroot_hello(mp.path(), None);
    assert!(
        out.status.success(),
        "chroot failed ({}): {}\n--- daemon log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        b.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), hello);

    // FUSE lets only the mounting user (the daemon's, root) in unless the mount allows others
    let nobody = "65534:65534";
    let out = chroot_hello(mp.path(), Some(nobody));
    assert!(
        !out.status.success(),
        "nobody ran busybox from a mount without --allow-other: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let open = mount(&b, &cid, &["--allow-other"]);
    let out = chroot_hello(open.path(), Some(nobody));
    assert!(
        out.status.success(),
        "nobody cannot run busybox from an --allow-other mount ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), hello);
}

/// A dynamically linked program (the host's `true`, with its loader and libraries at their
/// host paths and the host's symlinks) runs from a lazy mount, and the first read of it alone
/// brings what the loader will load: after B reads the program's bytes (not running it), the
/// mount fetches the chunks of its loader and libraries too, which nothing read.
#[test]
fn a_programs_first_read_brings_its_libraries() {
    let (a, b) = pair(None);
    let (_img, cid) = generate_and_push(
        &a,
        GenSpec {
            host_program: Some("/usr/bin/true"),
            big_file_size: MIB,
            ..Default::default()
        },
    );
    let libraries = gen::host_loads("/usr/bin/true").len();
    assert!(libraries >= 2, "ldd lists the loader and libc");
    let mp = mount(&b, &cid, &[]);
    let misses = || {
        let (_, m) = b.rpc("mounts", "");
        m["Mounts"][0]["Stats"]["CacheMisses"].as_u64().unwrap_or(0)
    };
    let (prog, _) = read_through(&mp.path().join("usr/bin/true"), READ_BOUND);
    assert_eq!(
        prog.expect("read the program").get(..4),
        Some(&b"\x7fELF"[..])
    );
    let fetched = eventually(Duration::from_secs(20), || {
        (misses() > libraries as u64).then_some(())
    });
    assert!(
        fetched.is_some(),
        "the mount fetched {} chunks for the program and its {libraries} libraries\n--- B's log ---\n{}",
        misses(),
        b.log()
    );
    let mut chroot = Command::new("chroot");
    chroot
        .arg(mp.path())
        .arg("/usr/bin/true")
        .stdin(Stdio::null());
    let out = run_bounded(chroot, READ_BOUND);
    assert!(out.status.success(), "chroot true: {out:?}");
}

/// Through B's layer store (the per-layer trees podman stacks), reading a program in the
/// upper layer of an image brings the loader and libraries that the lower layer holds: the
/// follower looks names up in the image's other open layers.
#[test]
fn a_programs_libraries_in_a_lower_layer_come_through_the_layer_store() {
    let store = MountPoint::new();
    let (a, b) = pair(Some(&format!(
        "[layer_store]\nmountpoint = \"{}\"\n[trust]\nunverified_layers = \"trust\"\n[mount]\nbackground_fetch = false\n",
        store.path().display()
    )));
    let (_img, cid) = generate_and_push(
        &a,
        GenSpec {
            host_program: Some("/usr/bin/true"),
            program_above: true,
            big_file_size: MIB,
            ..Default::default()
        },
    );
    let json: serde_json::Value =
        serde_json::from_slice(&b.ok(&["image", "inspect", "--json", &cid])).expect("json");
    let digests: Vec<&str> = json["images"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest"))
        .collect();
    assert_eq!(digests.len(), 2);
    let image = store
        .path()
        .join(cidfs::layer_store::layout::ref_dir_name(&format!(
            "127.0.0.1:1/ipfs/{cid}:latest"
        )));
    // podman looks every layer up before it reads a file
    for d in &digests {
        let diff = image.join(d).join("diff");
        call_bounded("opening a layer", READ_BOUND, move || {
            std::fs::metadata(diff)
        })
        .unwrap_or_else(|e| panic!("{e}\n--- B's log ---\n{}", b.log()));
    }
    let prog = image.join(digests[1]).join("diff/usr/bin/true");
    if let Err(e) = libraries_brought(&b, "/usr/bin/true", prog) {
        panic!("{e}\n--- B's log ---\n{}", b.log());
    }
}

/// Reads the file at `path` (the host's `program`, lazily served by `b`) and waits, bounded,
/// until `b` has fetched a quarter of the bytes of the libraries the program loads (compressed
/// they are about half): the program's own chunk is a few KiB.
pub(crate) fn libraries_brought(b: &Daemon, program: &str, path: PathBuf) -> Result<(), String> {
    let library_bytes: u64 = gen::host_loads(program)
        .iter()
        .map(|p| std::fs::metadata(p).expect("a library").len())
        .sum();
    let before = b.stat_u64("BytesFetched");
    let (head, _) = read_through(&path, READ_BOUND);
    let head = head.map_err(|e| format!("reading {}: {e}", path.display()))?;
    if head.get(..4) != Some(&b"\x7fELF"[..]) {
        return Err(format!("{} is not the program", path.display()));
    }
    let fetched = || b.stat_u64("BytesFetched") - before;
    eventually(Duration::from_secs(20), || {
        (fetched() > library_bytes / 4).then_some(())
    })
    .ok_or_else(|| {
        format!(
            "reading the program fetched {} bytes; its libraries hold {library_bytes}",
            fetched()
        )
    })
}

/// B mounts a 64 MiB image of A and reads one small file; A is killed. A read of big.bin (never
/// fetched) fails with ETIMEDOUT (as NFS's `softerr` does; bad bytes would be EIO) within
/// read_timeout + 6 s and is logged with its layer's CID; the
/// small file still reads from B's cache, and the mount unmounts cleanly.
#[test]
fn provider_killed_mid_read_times_out_and_the_mount_stays_usable() {
    // long enough that one timeout plus the margin below (a loaded 2-core machine may be slow
    // to fail the read: 6 s) stays under two timeouts
    const READ_TIMEOUT_SECS: u64 = 8;
    // no --fetch-timeout: the bitswap default (60 s) is longer than the bound below, so only
    // the mount's own read timeout can end the read in time
    let (mut a, b) = pair(Some(&format!(
        "[mount]\nread_timeout_secs = {READ_TIMEOUT_SECS}\nbackground_fetch = false\n"
    )));
    let (img, cid) = generate_and_push(
        &a,
        GenSpec {
            big_file_size: 64 * MIB,
            ..Default::default()
        },
    );
    assert!(img.expected["big.bin"].size >= 64 * MIB as u64);
    // big.bin is in the bottom layer
    let layer = inspect(&a, &cid).layer_cids[0].clone();
    let mp = mount(&b, &cid, &[]);
    let small = mp.path().join("a/small.txt");
    assert_eq!(
        read_through(&small, READ_BOUND)
            .0
            .expect("read a/small.txt"),
        SMALL
    );

    a.kill();
    // one timeout plus a margin: less than two, so a read that waits the timeout out twice (the
    // kernel retries a failed readahead page by page) fails the test
    let bound = Duration::from_secs(READ_TIMEOUT_SECS + 6);
    let (big, took) = read_through(&mp.path().join("big.bin"), bound);
    match big {
        Ok(data) => panic!(
            "big.bin read {} bytes with its only provider dead (fetched before the kill?)",
            data.len()
        ),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::ETIMEDOUT),
            "after {took:?}: {e}"
        ),
    }
    eprintln!("ETIMEDOUT after {took:?}");

    let (again, _) = read_through(&small, READ_BOUND);
    assert_eq!(again.expect("a/small.txt after the timeout"), SMALL);
    assert_eq!(mounts(&b), vec![(mp.s().to_string(), cid.clone())]);
    let logged = eventually(Duration::from_secs(10), || {
        b.log()
            .lines()
            .any(|l| l.contains("read failed") && l.contains(&layer))
            .then_some(())
    });
    assert!(
        logged.is_some(),
        "no \"read failed\" line naming layer {layer}:\n{}",
        b.log()
    );

    b.ok(&["umount", mp.s()]);
    assert_eq!(mp.entry(), None, "still mounted after `cidfs umount`");
    assert_eq!(mounts(&b), Vec::<(String, String)>::new());
}

/// Two mounts of one image; `cidfs umount` removes one, SIGTERM the other. Bad references, a
/// missing mount point and a missing platform fail with a message and mount nothing.
#[test]
fn umount_and_sigterm_leave_no_stale_mount() {
    let d = Daemon::start(Opts::default());
    let (_img, cid) = generate_and_push(
        &d,
        GenSpec {
            big_file_size: MIB,
            ..Default::default()
        },
    );
    let one = mount(&d, &cid, &[]);
    let two = mount(&d, &format!("/ipfs/{cid}"), &["--platform", "linux/amd64"]);
    let mut both = vec![
        (one.s().to_string(), cid.clone()),
        (two.s().to_string(), cid.clone()),
    ];
    both.sort();
    assert_eq!(mounts(&d), both);
    for mp in [&one, &two] {
        let (r, _) = read_through(&mp.path().join("a/small.txt"), READ_BOUND);
        assert_eq!(r.expect("read a/small.txt"), SMALL);
    }

    d.ok(&["umount", one.s()]);
    assert_eq!(one.entry(), None, "still mounted after `cidfs umount`");
    let empty = std::fs::read_dir(one.path()).expect("ls").next().is_none();
    assert!(empty, "the unmounted mount point is not empty");
    let only_two = vec![(two.s().to_string(), cid.clone())];
    assert_eq!(mounts(&d), only_two);
    let (r, _) = read_through(&two.path().join("a/small.txt"), READ_BOUND);
    assert_eq!(r.expect("the other mount still reads"), SMALL);
    let out = d.cli(&["umount", one.s()]);
    assert!(
        !out.status.success(),
        "umount of a dir not mounted succeeded"
    );

    let spare = MountPoint::new();
    let e = mount_fails(&d, &["notacid", spare.s()]);
    assert!(e.contains("notacid"), "{e}");
    let missing = spare.path().join("missing");
    let missing = missing.to_str().expect("utf-8");
    let e = mount_fails(&d, &[cid.as_str(), missing]);
    assert!(e.contains(missing), "{e}");
    let e = mount_fails(&d, &["--platform", "linux/arm64", &cid, spare.s()]);
    assert!(e.contains("platform"), "{e}");
    assert_eq!(mounts_under(&spare.root), Vec::<String>::new());
    assert_eq!(mounts(&d), only_two);

    let (status, repo) = d.terminate();
    let log = std::fs::read_to_string(repo.path().join("daemon.log")).unwrap_or_default();
    assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
    assert_eq!(two.entry(), None, "SIGTERM left a mount:\n{log}");
}

/// `image optimize` runs a command in a lazy mount of the image, records what it read and pushes
/// the image again with those files first: a node that mounts the new image fetches them as it
/// mounts (the prefetch), so the same read afterwards fetches nothing more. The trace itself is
/// the daemon's `mount/trace`, which needs the API token.
#[test]
fn optimize_puts_what_a_command_reads_first() {
    let (a, b) = pair(Some("[mount]\nbackground_fetch = false\n"));
    let cid = busybox_image(&a, 2 * MIB);
    let out = a.cli_bounded(
        &[
            "image",
            "optimize",
            "-q",
            &cid,
            "--",
            "/bin/cat",
            "/etc/hello",
        ],
        READ_BOUND,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}\n{}", a.log());
    assert!(err.contains("read "), "{err}");
    let optimized = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(optimized.starts_with("bafkrei"), "{optimized:?}");
    assert_ne!(optimized, cid);
    assert!(
        a.cli(&["mounts"]).stdout.is_empty(),
        "optimize left a mount"
    );
    // the optimized layer says where its prefetched files end, so B starts fetching them as
    // soon as it has the TOC, before the mount is answered
    let info: serde_json::Value =
        serde_json::from_slice(&a.ok(&["image", "inspect", "--json", &optimized]))
            .expect("inspect --json");
    let layer = &info["images"][0]["manifest"]["layers"][0];
    let end = layer["annotations"]["io.cidfs.estargz.prefetch-end"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no prefetch-end annotation: {layer}"));
    assert!(
        end > 0 && end < layer["size"].as_u64().expect("size"),
        "{end}"
    );
    // the old image mounts with nothing to prefetch; the new one fetches what cat read
    let mp = mount(&b, &optimized, &[]);
    let cid = layer["urls"][0]
        .as_str()
        .expect("url")
        .trim_start_matches("ipfs://");
    let early = format!("fetched the prefetched files of layer {cid} early: {end} bytes");
    eventually(READ_BOUND, || b.log().contains(&early).then_some(()))
        .unwrap_or_else(|| panic!("no early fetch ({early}) on B:\n{}", b.log()));
    let prefetched = eventually(READ_BOUND, || {
        b.log()
            .lines()
            .find(|l| l.contains("prefetched"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no prefetch on B:\n{}", b.log()));
    assert!(!prefetched.contains("prefetched 0 of"), "{prefetched}");
    let before = b.stat_u64("BytesFetched");
    let (hello, _) = read_through(&mp.path().join("etc/hello"), READ_BOUND);
    assert_eq!(
        hello.expect("read etc/hello"),
        format!("{}\n", gen::HELLO_LINE).as_bytes()
    );
    assert_eq!(
        b.stat_u64("BytesFetched"),
        before,
        "reading a prefetched file fetched more"
    );
    // mount/trace: what was read, in order; privileged
    let dir = mp.path().to_str().expect("utf8").to_string();
    let (status, _) = crate::util::http(b.api, "POST", &format!("/api/v0/mount/trace?arg={dir}"));
    assert_eq!(status, 401, "mount/trace without the token");
    let token = std::fs::read_to_string(b.repo.path().join("api.token")).expect("api.token");
    let (status, body) = crate::util::http_with(
        b.api,
        "POST",
        &format!("/api/v0/mount/trace?arg={dir}"),
        &[
            ("Host", &b.api.to_string()),
            ("Authorization", &format!("Bearer {}", token.trim())),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200, "{v}");
    let paths: Vec<&str> = v["Files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["Path"].as_str())
        .collect();
    assert_eq!(paths, vec!["etc/hello"], "{v}");
}
