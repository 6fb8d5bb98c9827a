//! Harness for container-image integration tests: a deterministic image generator ([`gen`]),
//! layer unpacking and tree comparison ([`tree`]), the same tree read from a real directory such
//! as a mount ([`dirtree`]) and real clients ([`runtimes`]: registry, containerd, podman, skopeo).
//! The self-tests below check the harness against the real tools.
//!
//! Typical use in a push/pull test:
//! ```ignore
//! let tmp = tempfile::tempdir().unwrap();
//! let img = gen::build_oci_layout(&tmp.path().join("layout"), &GenSpec { busybox: true, ..Default::default() });
//! let reg = Registry::start();
//! let r = gen::push_to_registry(&img.layout, &img.tag, &reg.addr(), "test/img:v1", None);
//! // … cidfs push/pull …, then compare what came out:
//! tree::assert_same_tree(&tree::tree_of_layers(&out.layers), &img.expected);
//! ```

#![allow(dead_code)]

pub mod dirtree;
pub mod dockerd;
pub mod gen;
pub mod hostile;
pub mod runtimes;
pub mod tree;

use std::path::{Path, PathBuf};
use std::time::Instant;

use gen::{build_oci_layout, GenSpec, GeneratedImage, HELLO_LINE};
use runtimes::{Auth, Containerd, Podman, Registry};
use tree::{assert_same_tree, tree_of_layers};

/// Big file of the self-tests: > 10 MiB, so it spans three 4 MiB chunks.
const BIG: usize = 12 << 20;

fn busybox_spec() -> GenSpec {
    GenSpec {
        tag: "v1".into(),
        big_file_size: BIG,
        busybox: true,
        ..Default::default()
    }
}

/// A busybox layout in `dir/layout` and its docker-archive `dir/image.tar` (`cidfs-test/bb:v1`).
fn busybox_archive(dir: &Path) -> (GeneratedImage, PathBuf) {
    let img = build_oci_layout(&dir.join("layout"), &busybox_spec());
    let archive = dir.join("image.tar");
    gen::to_docker_archive(&img.layout, &img.tag, &archive, "cidfs-test/bb:v1");
    (img, archive)
}

fn done(name: &str, t: Instant) {
    eprintln!("{name}: {:.1}s", t.elapsed().as_secs_f64());
}

#[test]
fn generator_is_deterministic_and_its_tree_matches_its_layers() {
    let t = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let spec = GenSpec {
        big_file_size: BIG,
        ..Default::default()
    };
    let a = build_oci_layout(&tmp.path().join("a"), &spec);
    let b = build_oci_layout(&tmp.path().join("b"), &spec);
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.layer_digests, b.layer_digests);
    let c = build_oci_layout(
        &tmp.path().join("c"),
        &GenSpec {
            docker_media_types: true,
            ..spec.clone()
        },
    );
    assert_ne!(a.manifest_digest, c.manifest_digest);
    assert_eq!(a.diff_ids, c.diff_ids);

    assert_same_tree(&tree_of_layers(&a.layer_paths), &a.expected);
    let read = tree::layers_of_oci_layout(&a.layout, Some(&a.tag));
    assert_eq!(read.manifest_digest, a.manifest_digest);
    assert_eq!(read.layers, a.layer_paths);
    assert_eq!(
        read.config["rootfs"]["diff_ids"],
        serde_json::json!(a.diff_ids)
    );

    // The cases the generator promises are in the merged tree.
    let e = &a.expected;
    assert_eq!(e["big.bin"].size, BIG as u64);
    assert_eq!(e["a/exact-4mib.bin"].size, gen::FOUR_MIB as u64);
    assert_eq!(e["a/empty"].size, 0);
    assert_eq!(e["a/setuid"].mode, 0o4755);
    assert_eq!(e["tmp"].mode, 0o1777);
    assert_eq!(e["a/secret"].mode, 0o600);
    assert_eq!((e["nobody.txt"].uid, e["nobody.txt"].gid), (65534, 65534));
    assert_eq!(e["a/xattr.txt"].xattrs["user.foo"], b"bar baz");
    assert!(e["a/xattr.txt"].xattrs["user.bin"].contains(&0));
    assert_eq!(e["a/hardlink"].hardlink.as_deref(), Some("a/small.txt"));
    assert_eq!(e["abs-link"].link.as_deref(), Some("/a/small.txt"));
    assert_eq!(e["a/fifo"].kind, tree::Kind::Fifo);
    assert!(e.keys().any(|k| k.len() > 100));
    assert!(!e.contains_key("a/deleteme.txt") && !e.contains_key("gone-dir"));
    let opq: Vec<_> = e.keys().filter(|k| k.starts_with("opq/")).collect();
    assert_eq!(opq, ["opq/new-in-opq"]);
    assert_eq!(e["a/overwrite.txt"].mode, 0o600);
    let whiteouts = tree::entries_of_layer(&a.layer_paths[1]);
    assert!(whiteouts.contains(&"opq/.wh..wh..opq".to_string()));
    done("generator", t);
}

#[test]
fn podman_runs_generated_busybox_image_from_docker_archive() {
    let t = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (img, archive) = busybox_archive(tmp.path());
    let da = tree::layers_of_docker_archive(&archive);
    // skopeo writes the normalized name.
    assert_eq!(da.repo_tags, ["docker.io/cidfs-test/bb:v1"]);
    assert_same_tree(&tree_of_layers(&da.layers), &img.expected);

    let podman = Podman::new();
    let name = podman.load(&archive);
    let out = podman.run_output(&name, &["cat", "/etc/hello"]);
    assert_eq!(out.trim(), HELLO_LINE);
    // The config's Cmd is `cat /etc/hello` too.
    assert_eq!(podman.run_output(&name, &[]).trim(), HELLO_LINE);

    // And from a registry (plain HTTP, `--tls-verify=false`).
    let reg = Registry::start();
    let r = gen::push_to_registry(
        &img.layout,
        &img.tag,
        &reg.addr(),
        "cidfs-test/pull:v1",
        None,
    );
    let fresh = Podman::new();
    let id = fresh.pull(&r);
    assert!(!id.is_empty());
    assert_eq!(
        fresh.run_output(&r, &["cat", "/etc/hello"]).trim(),
        HELLO_LINE
    );
    done("podman", t);
}

/// State of a process (`R`, `S`, `Z`…) or `None` when it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn assert_gone(pid: u32) {
    let gone = crate::util::eventually(std::time::Duration::from_secs(10), || {
        matches!(proc_state(pid), None | Some('Z')).then_some(())
    });
    assert!(gone.is_some(), "process {pid} still runs");
}

#[test]
fn dropping_the_clients_stops_running_containers_and_unmounts() {
    let t = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (_img, archive) = busybox_archive(tmp.path());

    let ctd = Containerd::start();
    let name = ctd.import(&archive).remove(0);
    let id = runtimes::unique("cidfs-detached");
    let runc_root = ctd.dir.path().join("runc");
    ctd.ctr_ok(&[
        "run",
        "-d",
        "--snapshotter",
        "overlayfs",
        "--runc-root",
        runc_root.to_str().unwrap(),
        &name,
        &id,
        "/bin/busybox",
        "sleep",
        "600",
    ]);
    let tasks = ctd.ctr_ok(&["tasks", "ls"]);
    let ctr_pid: u32 = tasks
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no task {id} in {tasks}"));
    let ctd_dir = ctd.dir.path().to_path_buf();
    let sock = ctd.address().to_string_lossy().into_owned();
    assert!(!runtimes::mounts_under(&ctd_dir).is_empty());
    assert!(!runtimes::pids_mentioning(&sock).is_empty());
    drop(ctd);
    assert_gone(ctr_pid);
    assert!(runtimes::mounts_under(&ctd_dir).is_empty());
    assert!(runtimes::pids_mentioning(&sock).is_empty());

    let podman = Podman::new();
    let name = podman.load(&archive);
    let cid = podman.podman_ok(&["run", "-d", &name, "/bin/busybox", "sleep", "600"]);
    let pid: u32 = podman
        .podman_ok(&["inspect", "--format", "{{.State.Pid}}", cid.trim()])
        .trim()
        .parse()
        .unwrap();
    let root = podman.dir.path().to_path_buf();
    assert!(!runtimes::mounts_under(&root).is_empty());
    drop(podman);
    assert_gone(pid);
    assert!(runtimes::mounts_under(&root).is_empty());
    assert!(runtimes::pids_mentioning(&root.to_string_lossy()).is_empty());
    done("cleanup on drop", t);
}

#[test]
fn containerd_runs_generated_busybox_image_from_docker_archive() {
    let t = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (_img, archive) = busybox_archive(tmp.path());
    let ctd = Containerd::start();
    let names = ctd.import(&archive);
    let out = ctd.run_output(&names[0], &["cat", "/etc/hello"]);
    assert_eq!(out.trim(), HELLO_LINE);
    done("containerd", t);
}

#[test]
fn registry_round_trip_keeps_the_tree() {
    let t = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let img = build_oci_layout(
        &tmp.path().join("layout"),
        &GenSpec {
            big_file_size: BIG,
            ..Default::default()
        },
    );
    let reg = Registry::start();
    let r = gen::push_to_registry(&img.layout, &img.tag, &reg.addr(), "cidfs-test/rt:v1", None);
    let copy = tmp.path().join("copy");
    gen::pull_from_registry(&r, &copy, "back", None);
    let back = tree::layers_of_oci_layout(&copy, Some("back"));
    // skopeo copies blobs as they are: same layers, same manifest.
    assert_eq!(back.manifest_digest, img.manifest_digest);
    let tree_back = tree_of_layers(&back.layers);
    assert_same_tree(&tree_back, &img.expected);
    assert_same_tree(&tree_back, &tree_of_layers(&img.layer_paths));

    let oci_archive = tmp.path().join("image.oci.tar");
    gen::to_oci_archive(&img.layout, &img.tag, &oci_archive);
    let from_archive = tree::layers_of_oci_archive(&oci_archive, Some(&img.tag));
    assert_eq!(from_archive.manifest_digest, img.manifest_digest);
    assert_same_tree(&tree_of_layers(&from_archive.layers), &img.expected);
    done("registry round trip", t);
}

#[test]
fn registry_with_basic_auth_refuses_anonymous_pulls() {
    let t = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let img = build_oci_layout(
        &tmp.path().join("layout"),
        &GenSpec {
            big_file_size: 1 << 20,
            ..Default::default()
        },
    );
    let reg = Registry::start_with(Some(Auth {
        user: "alice".into(),
        password: "s3cret".into(),
    }));
    assert_eq!(reg.get_status("/v2/", false), Some(401));
    assert_eq!(reg.get_status("/v2/", true), Some(200));
    let creds = reg.creds().unwrap();
    let r =
        gen::push_to_registry_v2s2(&img.layout, &img.tag, &reg.addr(), "p/img:v1", Some(&creds));
    let anon = runtimes::skopeo(&["inspect", "--tls-verify=false", &format!("docker://{r}")]);
    assert!(!anon.status.success(), "anonymous inspect succeeded");
    let raw = runtimes::skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{r}"),
    ]);
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["mediaType"], gen::DOCKER_MANIFEST);
    assert_eq!(m["layers"][0]["digest"], img.layer_digests[0].as_str());
    let copy = tmp.path().join("copy");
    gen::pull_from_registry(&r, &copy, "v1", Some(&creds));
    let back = tree::layers_of_oci_layout(&copy, Some("v1"));
    assert_same_tree(&tree_of_layers(&back.layers), &img.expected);
    done("registry auth", t);
}

#[test]
fn estargz_conversion_by_ctr_remote_adds_a_toc_and_keeps_the_tree() {
    let t = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (img, archive) = busybox_archive(tmp.path());
    let ctd = Containerd::start();
    let src = ctd.import(&archive).remove(0);
    let dst = format!("{src}-esgz");
    ctd.convert_estargz(&src, &dst);
    let out = tmp.path().join("esgz.tar");
    ctd.export(&dst, &out);
    let esgz = tree::layers_of_oci_archive(&out, None);
    assert_eq!(esgz.layers.len(), 2);
    for l in &esgz.layers {
        let entries = tree::entries_of_layer(l);
        assert!(
            entries.iter().any(|e| e == "stargz.index.json"),
            "no stargz.index.json in {}: {:?}",
            l.display(),
            &entries[entries.len().saturating_sub(3)..]
        );
    }
    assert_same_tree(&tree_of_layers(&esgz.layers), &img.expected);
    done("estargz", t);
}
