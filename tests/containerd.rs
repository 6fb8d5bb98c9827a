//! The containerd snapshotter (issue 8) with the real containerd 1.6 and `ctr-remote`: node A
//! pushes an eStargz image, containerd (started by the test with `deploy/containerd/config.toml`'s
//! proxy plugin pointed at node B's socket) rpulls it through B's registry endpoint, and
//! B serves every layer lazily: no layer blob leaves the registry, a container runs, the merged
//! view equals the generated tree, and all of it survives a restart of B.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::images::dirtree::tree_of_dir;
use crate::images::gen::{GenSpec, HELLO_LINE};
use crate::images::hostile::victim_and_impostor;
use crate::images::runtimes::{unmount_under, Containerd, Unmount};
use crate::images::tree::assert_same_tree;
use crate::mount::{generate_and_push, libraries_brought};
use crate::util::{call_bounded, eventually, pair, Daemon};

const SNAPSHOTTER: &str = "cidfs";

/// containerd's config tail from the deploy snippet, with B's socket for the example path.
pub(crate) fn proxy_plugin_config(socket: &Path) -> String {
    let snippet = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/containerd/config.toml"),
    )
    .expect("deploy/containerd/config.toml");
    let example = "/var/lib/cidfs/snapshotter.sock";
    assert!(snippet.contains(example), "the snippet names {example}");
    let from = snippet
        .find("[proxy_plugins]")
        .expect("a [proxy_plugins] table");
    // the CRI table of the snippet is for Kubernetes; the test's containerd runs without CRI
    let to = snippet.find("\n# Kubernetes").unwrap_or(snippet.len());
    format!(
        "\n{}\n",
        snippet[from..to].replace(example, &socket.to_string_lossy())
    )
}

/// `ctr snapshots ls` lines of the cidfs snapshotter (KEY PARENT KIND), sorted.
fn snapshots(c: &Containerd) -> Vec<String> {
    let out = c.ctr_ok(&["snapshots", "--snapshotter", SNAPSHOTTER, "ls"]);
    let mut v: Vec<String> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

/// Finding 4: an image whose config claims another image's DiffIDs must never have its layers
/// used under that image's chain IDs. Under the default (`verify-first`) its rpull fails with
/// the reason and commits nothing, and the real image then runs from proven lazy layers. Under
/// `verify-after` it is served at once and withdrawn once read: every later mount is refused.
#[test]
fn a_layer_claiming_another_images_diff_id_is_never_served_under_its_chain_id() {
    let (a, b) = pair(None);
    let _unmount = Unmount(b.repo.path().to_path_buf());
    let (victim, victim_ids, hostile) = victim_and_impostor(&a, 2 << 20);
    let socket = b.repo.path().join("snapshotter.sock");
    let c = Containerd::start_with(&proxy_plugin_config(&socket));
    let rpull = |d: &Daemon, cid: &str| {
        c.ctr_remote(&[
            "image",
            "rpull",
            "--plain-http",
            &format!("--snapshotter={SNAPSHOTTER}"),
            &format!("{}/ipfs/{cid}:latest", d.registry),
        ])
    };

    let out = rpull(&b, &hostile);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the hostile image was pulled");
    assert!(
        err.contains("not what the image claims") && err.contains("DiffID"),
        "{err}"
    );
    assert_eq!(snapshots(&c), Vec::<String>::new(), "nothing committed");

    let ok = rpull(&b, &victim);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let reference = format!("{}/ipfs/{victim}:latest", b.registry);
    let out = c.run_output_on(SNAPSHOTTER, &reference, &["cat", "/etc/hello"]);
    assert_eq!(out.trim(), HELLO_LINE);
    assert_eq!(
        b.log().matches("served lazily as").count(),
        victim_ids.len(),
        "{}",
        b.log()
    );
    drop(c);
    drop(b);

    // verify-after: served at once, then withdrawn
    let b = Daemon::start(crate::util::Opts {
        swarm_key: a.opts().swarm_key.clone(),
        peers: vec![a.addr.clone()],
        config: Some("[trust]\nunverified_layers = \"verify-after\"\n".into()),
        ..Default::default()
    });
    let _unmount = Unmount(b.repo.path().to_path_buf());
    let socket = b.repo.path().join("snapshotter.sock");
    let c = Containerd::start_with(&proxy_plugin_config(&socket));
    let rpull = |cid: &str| {
        c.ctr_remote(&[
            "image",
            "rpull",
            "--plain-http",
            &format!("--snapshotter={SNAPSHOTTER}"),
            &format!("{}/ipfs/{cid}:latest", b.registry),
        ])
    };
    let out = rpull(&hostile);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let withdrawn = || b.log().matches("withdrawing a lazily served layer").count();
    eventually(Duration::from_secs(120), || {
        (withdrawn() == victim_ids.len()).then_some(())
    })
    .unwrap_or_else(|| panic!("B withdrew {} layers:\n{}", withdrawn(), b.log()));
    let runc_root = tempfile::tempdir().expect("tempdir");
    let hostile_ref = format!("{}/ipfs/{hostile}:latest", b.registry);
    let run = c.ctr(&[
        "run",
        "--rm",
        "--snapshotter",
        SNAPSHOTTER,
        "--runc-root",
        runc_root.path().to_str().expect("utf8"),
        &hostile_ref,
        "hostile-run",
        "cat",
        "/etc/hello",
    ]);
    assert!(!run.status.success(), "a withdrawn layer was mounted");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("refused"), "{err}");
}

/// B's config for the laziness checks: layers committed without a full read. Under the default
/// (`verify-first`) a layer's first use on a node reads it whole; that is tested below.
const TRUSTING: &str = "[trust]\nunverified_layers = \"trust\"\n";

#[test]
fn ctr_remote_rpull_runs_a_container_from_lazily_served_layers() {
    let (a, b) = pair(Some(TRUSTING));
    let _unmount = Unmount(b.repo.path().to_path_buf());
    let (img, cid) = generate_and_push(
        &a,
        GenSpec {
            busybox: true,
            big_file_size: 64 << 20,
            ..Default::default()
        },
    );
    let bytes_on_a = a.stat_u64("BlockBytes");
    let socket = b.repo.path().join("snapshotter.sock");
    let c = Containerd::start_with(&proxy_plugin_config(&socket));
    let plugins = c.ctr_ok(&["plugins", "ls"]);
    assert!(
        plugins
            .lines()
            .any(|l| l.contains("io.containerd.snapshotter.v1")
                && l.contains(SNAPSHOTTER)
                && l.contains("ok")),
        "containerd did not load the proxy snapshotter:\n{plugins}"
    );

    let reference = format!("{}/ipfs/{cid}:latest", b.registry);
    rpull(&c, &reference);
    assert_eq!(
        b.stat_u64("RegistryLayers"),
        0,
        "no layer blob came from the registry; B's log:\n{}",
        b.log()
    );
    assert!(b.stat_u64("RegistryManifests") >= 1 && b.stat_u64("RegistryConfigs") >= 1);
    let fetched = b.stat_u64("BytesFetched");
    assert!(
        fetched * 20 < bytes_on_a,
        "rpull made B fetch {fetched} of the image's {bytes_on_a} bytes (5 % or more)"
    );
    let lazy = b.log().matches("served lazily as").count();
    assert_eq!(
        lazy,
        img.diff_ids.len(),
        "every layer served lazily:\n{}",
        b.log()
    );

    // the layers are committed (under containerd's chain IDs), one on the other
    let before = snapshots(&c);
    let rows: Vec<Vec<&str>> = before.iter().map(|l| l.split(' ').collect()).collect();
    let (bottom, top) = match rows.as_slice() {
        [x, y] if x.len() == 3 && y.len() == 2 => (y, x),
        [x, y] if x.len() == 2 && y.len() == 3 => (x, y),
        _ => panic!("ctr snapshots ls: {before:?}"),
    };
    assert_eq!(
        (bottom[1], top[2]),
        ("Committed", "Committed"),
        "{before:?}"
    );
    assert_eq!(
        top[1], bottom[0],
        "the top layer's parent is the bottom one"
    );
    let top = top[0].to_string();

    let out = c.run_output_on(SNAPSHOTTER, &reference, &["cat", "/etc/hello"]);
    assert_eq!(out.trim(), HELLO_LINE);

    // the merged view of both layers (overlayfs over the two lazy mounts, whiteouts and the
    // opaque dir of layer 2 applied by the kernel) is the generated tree
    let view = mounted_view(&c, "check-view", &top);
    let root = view.path().to_path_buf();
    let w = call_bounded("walking the view", Duration::from_secs(120), move || {
        tree_of_dir(&root)
    });
    unmount_under(view.path());
    let mut want = img.expected.clone();
    for n in want.values_mut() {
        n.hardlink = None;
    }
    // layer 2 has entries under `a/` but no entry for `a` itself, so its own `a` is implicit
    // (0755, root, mtime 0, as stargz-snapshotter makes such dirs), and overlayfs shows the
    // topmost copy's attributes
    want.get_mut("a").expect("a").mtime = 0;
    assert_same_tree(&want, &w.tree);
    // (GC may have taken it already)
    let _ = c.ctr(&[
        "snapshots",
        "--snapshotter",
        SNAPSHOTTER,
        "rm",
        "check-view",
    ]);

    // restart B: containerd keeps its snapshots, B mounts the layers again, and a container
    // reads a file nobody read before
    let opts = b.opts();
    let (status, repo) = b.terminate();
    assert!(status.success());
    let b = Daemon::start_in(repo, opts);
    assert!(
        b.log()
            .contains("2 of 2 lazily served layers mounted again"),
        "B's log:\n{}",
        b.log()
    );
    let after = eventually(Duration::from_secs(60), || {
        let out = c.ctr(&["snapshots", "--snapshotter", SNAPSHOTTER, "ls"]);
        out.status.success().then(|| snapshots(&c))
    })
    .expect("containerd reconnects to the snapshotter");
    assert_eq!(after, before);
    let big = img.expected["big.bin"]
        .sha256
        .clone()
        .expect("big.bin digest");
    let out = c.run_output_on(
        SNAPSHOTTER,
        &reference,
        &["/bin/busybox", "sha256sum", "/big.bin"],
    );
    assert_eq!(out.split_whitespace().next(), Some(big.as_str()), "{out}");
    assert_eq!(b.stat_u64("RegistryLayers"), 0);

    // removing the image lets containerd's GC remove the snapshots, which unmounts the layers
    c.ctr_ok(&["images", "rm", "--sync", &reference]);
    let gone = eventually(Duration::from_secs(60), || {
        snapshots(&c).is_empty().then_some(())
    });
    assert!(gone.is_some(), "snapshots left: {:?}", snapshots(&c));
    let mounts = String::from_utf8(b.ok(&["mounts"])).expect("utf-8");
    assert!(!mounts.contains(&cid), "layers still mounted:\n{mounts}");
    drop(c);
    let (status, _) = b.terminate();
    assert!(status.success());
}

/// Through the snapshotter's per-layer mounts (which containerd stacks with overlayfs),
/// reading a program in the upper layer of an image brings the loader and libraries that the
/// lower layer holds, though that layer was mounted for another image on the same base
/// (containerd mounts a shared layer once): the follower finds an image's layers by CID.
#[test]
fn a_programs_libraries_in_a_lower_layer_come_through_the_snapshotter() {
    let (a, b) = pair(Some(&format!(
        "{TRUSTING}[mount]\nbackground_fetch = false\n"
    )));
    let _unmount = Unmount(b.repo.path().to_path_buf());
    let spec = GenSpec {
        host_program: Some("/usr/bin/true"),
        program_above: true,
        big_file_size: 1 << 20,
        ..Default::default()
    };
    let (_, first) = generate_and_push(&a, spec.clone());
    let (_, cid) = generate_and_push(
        &a,
        GenSpec {
            upper_seed: Some(99),
            ..spec
        },
    );
    let (c, reference) = containerd_for(&b, &cid);
    rpull(&c, &format!("{}/ipfs/{first}:latest", b.registry));
    let before = snapshots(&c);
    rpull(&c, &reference);
    let after = snapshots(&c);
    assert_eq!(after.len(), 3, "one base under two upper layers: {after:?}");
    let top = after
        .iter()
        .find(|r| !before.contains(r))
        .and_then(|r| r.split(' ').next())
        .expect("the second image's upper layer")
        .to_string();
    let view = mounted_view(&c, "libraries-view", &top);
    let brought = libraries_brought(&b, "/usr/bin/true", view.path().join("usr/bin/true"));
    unmount_under(view.path());
    let _ = c.ctr(&[
        "snapshots",
        "--snapshotter",
        SNAPSHOTTER,
        "rm",
        "libraries-view",
    ]);
    if let Err(e) = brought {
        panic!("{e}\n--- B's log ---\n{}", b.log());
    }
}

/// A containerd of its own with `b`'s snapshotter as a proxy plugin, and the reference of
/// image `cid` at `b`'s registry endpoint.
fn containerd_for(b: &Daemon, cid: &str) -> (Containerd, String) {
    let socket = b.repo.path().join("snapshotter.sock");
    let c = Containerd::start_with(&proxy_plugin_config(&socket));
    (c, format!("{}/ipfs/{cid}:latest", b.registry))
}

/// `ctr-remote image rpull` of `reference` through the cidfs snapshotter.
fn rpull(c: &Containerd, reference: &str) {
    c.ctr_remote_ok(&[
        "image",
        "rpull",
        "--plain-http",
        &format!("--snapshotter={SNAPSHOTTER}"),
        reference,
    ]);
}

/// A view named `name` of snapshot `top`, mounted (overlayfs over its layers) in a new
/// directory. (containerd's GC may take the view, which nothing references, once ctr returns:
/// the mount command is printed by the same call, and the view is only a list of lower dirs.)
fn mounted_view(c: &Containerd, name: &str, top: &str) -> tempfile::TempDir {
    let view = tempfile::tempdir().expect("tempdir");
    let target = view.path().to_string_lossy().into_owned();
    let cmd = c.ctr_ok(&[
        "snapshots",
        "--snapshotter",
        SNAPSHOTTER,
        "view",
        "--target",
        &target,
        name,
        top,
    ]);
    let status = std::process::Command::new("sh")
        .args(["-c", cmd.trim()])
        .status()
        .expect("sh");
    assert!(status.success(), "{cmd}");
    view
}

/// Without rpull's labels (`ctr pull`, `ctr images import`) the layers unpack into the
/// snapshotter's own directories, as with containerd's overlayfs snapshotter, and go when
/// containerd removes them.
#[test]
fn plain_pulls_unpack_into_the_snapshotters_own_directories() {
    let (a, b) = pair(None);
    let _unmount = Unmount(b.repo.path().to_path_buf());
    let (_img, cid) = generate_and_push(
        &a,
        GenSpec {
            busybox: true,
            ..Default::default()
        },
    );
    let (c, reference) = containerd_for(&b, &cid);
    c.ctr_ok(&[
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        SNAPSHOTTER,
        &reference,
    ]);
    assert_eq!(b.stat_u64("RegistryLayers"), 2, "both layers downloaded");
    assert!(!b.log().contains("served lazily"), "{}", b.log());
    let out = c.run_output_on(SNAPSHOTTER, &reference, &["cat", "/etc/hello"]);
    assert_eq!(out.trim(), HELLO_LINE);
    // the unpacked files are in B's snapshot directories (the container's own snapshot goes
    // when containerd's GC gets to it, after `ctr run --rm` returns)
    let dirs = b.repo.path().join("snapshotter/snapshots");
    let listing = || -> Vec<PathBuf> {
        std::fs::read_dir(&dirs)
            .expect("snapshot dirs")
            .map(|e| e.expect("entry").path().join("fs"))
            .collect()
    };
    let unpacked = eventually(Duration::from_secs(60), || {
        let v = listing();
        (v.len() == 2).then_some(v)
    })
    .unwrap_or_else(|| panic!("snapshot dirs: {:?}", listing()));
    assert!(
        unpacked.iter().any(|d| d.join("etc/hello").is_file()),
        "no layer holds etc/hello: {unpacked:?}"
    );
    let usage = c.ctr_ok(&["snapshots", "--snapshotter", SNAPSHOTTER, "usage"]);
    assert!(
        usage.lines().count() == 3,
        "two snapshots with usage:\n{usage}"
    );
    c.ctr_ok(&["images", "rm", "--sync", &reference]);
    let gone = eventually(Duration::from_secs(60), || {
        (snapshots(&c).is_empty() && std::fs::read_dir(&dirs).ok()?.next().is_none()).then_some(())
    });
    assert!(gone.is_some(), "left: {:?}", snapshots(&c));
}
