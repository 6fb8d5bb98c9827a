//! The registry endpoint (issue 7) with the real clients: an image pushed on node A is pulled
//! through node B's endpoint (`B/ipfs/<CID>`, blobs fetched from A by bitswap as they are read)
//! by skopeo, podman and docker (dockerd on the test's own containerd), each of which checks every
//! digest; what they get must unpack to the generated tree and run.

use crate::images::dockerd::Dockerd;
use crate::images::gen::{self, GenSpec, HELLO_LINE};
use crate::images::hostile::victim_and_impostor;
use crate::images::runtimes::{skopeo_ok, Podman};
use crate::images::tree::{assert_same_tree, tree_of_layers};
use crate::mount::{generate_and_push, MountPoint};
use crate::util::{pair, Daemon};
use std::path::Path;

#[test]
fn skopeo_podman_and_docker_pull_through_the_registry_endpoint() {
    let (a, b) = pair(None);
    let (img, cid) = generate_and_push(
        &a,
        GenSpec {
            busybox: true,
            big_file_size: 6 << 20,
            ..Default::default()
        },
    );
    let reference = format!("{}/ipfs/{cid}:latest", b.registry);

    // skopeo: copy into a `dir:` (an `oci:` layout would keep the ipfs:// URLs instead of the
    // layers: containers/image skips blobs with URLs for destinations that accept them); the
    // manifest is byte for byte the one cidfs stored, and the layers unpack to the generated tree
    let work = tempfile::tempdir().expect("tempdir");
    let copy = work.path().join("copy");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("dir:{}", copy.display()),
    ]);
    let manifest_bytes = std::fs::read(copy.join("manifest.json")).expect("manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).expect("JSON");
    let layers: Vec<_> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            copy.join(
                l["digest"]
                    .as_str()
                    .expect("digest")
                    .trim_start_matches("sha256:"),
            )
        })
        .collect();
    assert_same_tree(&tree_of_layers(&layers), &img.expected);
    // into an OCI layout skopeo copies the manifest and config and, as for any layer with URLs
    // when the destination accepts them, keeps the layers as their ipfs:// URLs
    let oci = work.path().join("oci");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:got", oci.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).expect("index.json"))
            .expect("JSON");
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(gen::digest(&manifest_bytes).as_str()),
        "the oci: copy has the same manifest"
    );
    for l in manifest["layers"].as_array().expect("layers") {
        let url = l["urls"][0].as_str().unwrap_or_default();
        assert!(
            url.starts_with("ipfs://"),
            "layer {l} keeps its ipfs:// URL"
        );
    }
    assert!(
        b.stat_u64("RegistryLayers") >= 2,
        "skopeo fetched both layers"
    );
    assert!(
        b.stat_u64("BlocksFetched") > 0,
        "B fetched the image from A"
    );

    // podman: `podman run` pulls by itself, over plain HTTP thanks to the deploy/ drop-in
    let podman = Podman::new();
    let drop_in = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/podman/registries.conf"),
    )
    .expect("deploy/podman/registries.conf");
    assert!(drop_in.contains("127.0.0.1:5050"));
    let conf = podman.dir.path().join("registries.conf");
    let mut text = std::fs::read_to_string(&conf).expect("podman registries.conf");
    text.push_str(&drop_in.replace("127.0.0.1:5050", &b.registry.to_string()));
    std::fs::write(&conf, text).expect("write registries.conf");
    let out = podman.podman_ok(&["run", "--rm", &reference, "cat", "/etc/hello"]);
    assert_eq!(out.trim(), HELLO_LINE);

    // docker: pull (127.0.0.0/8 is plain HTTP for dockerd) and run
    let docker = Dockerd::start();
    docker.docker_ok(&["pull", &reference]);
    let out = docker.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &reference,
        "cat",
        "/etc/hello",
    ]);
    assert_eq!(out.trim(), HELLO_LINE);
    // every client got the very manifest and config cidfs stored
    let info: serde_json::Value =
        serde_json::from_slice(&a.ok(&["image", "inspect", "--json", &cid])).expect("inspect JSON");
    let manifest = info["images"][0]["descriptor"]["digest"]
        .as_str()
        .expect("manifest digest");
    let config = info["images"][0]["manifest"]["config"]["digest"]
        .as_str()
        .expect("config");
    assert_eq!(gen::digest(&manifest_bytes), manifest);
    let id = docker.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &reference]);
    assert_eq!(id.trim(), config, "docker's image id is the config digest");
}

/// Podman set up as `deploy/podman` says, with B's registry endpoint and the layer store at
/// `mnt`; the `--storage-opt` that names the store.
pub(crate) fn podman_with_store(b: &Daemon, mnt: &Path) -> (Podman, String) {
    let podman = Podman::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/podman");
    let conf = podman.dir.path();
    let drop_in = std::fs::read_to_string(root.join("registries.conf")).expect("snippet");
    let registries = conf.join("registries.conf");
    let mut text = std::fs::read_to_string(&registries).expect("podman registries.conf");
    text.push_str(&drop_in.replace("127.0.0.1:5050", &b.registry.to_string()));
    std::fs::write(&registries, text).expect("write registries.conf");
    // the harness passes --storage-driver, with which podman ignores storage.conf's
    // [storage.options]; the same store goes in as the equivalent --storage-opt
    let storage = std::fs::read_to_string(root.join("storage.conf")).expect("snippet");
    let line = r#"additionallayerstores = ["/var/lib/cidfs/store:ref"]"#;
    assert!(
        storage.contains(line),
        "deploy/podman/storage.conf has {line}"
    );
    let opt = format!("overlay.additionallayerstore={}:ref", mnt.display());
    (podman, opt)
}

/// Finding 4 through Podman (containers/storage finds layers by the DiffIDs images claim):
/// under the default (`verify-first`) the store reads each layer whole before handing it over,
/// so the layers of an image that claims another image's DiffIDs are never handed over, and the
/// real image, pulled after it, runs its own bytes from the store.
#[test]
fn podman_is_never_handed_a_layer_whose_image_lies_about_its_diff_id() {
    let store = MountPoint::new();
    let mnt = store.path().to_path_buf();
    let (a, b) = pair(Some(&format!(
        "[layer_store]\nmountpoint = \"{}\"\n",
        mnt.display()
    )));
    let (victim, _, hostile) = victim_and_impostor(&a, 1 << 20);
    let (podman, opt) = podman_with_store(&b, &mnt);
    // podman falls back to the registry endpoint and its own checks; whatever it decides, the
    // store never hands the lying layers over
    let _ = podman.podman(&[
        "--storage-opt",
        &opt,
        "pull",
        &format!("{}/ipfs/{hostile}:latest", b.registry),
    ]);
    let log = b.log();
    assert!(
        log.contains("layer store: refusing a layer") && log.contains("DiffID"),
        "{log}"
    );
    let out = podman.podman(&[
        "--storage-opt",
        &opt,
        "run",
        "--rm",
        &format!("{}/ipfs/{victim}:latest", b.registry),
        "cat",
        "/a/b/c/deep.bin",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == gen::xorshift_bytes(1 + 1, 4097),
        "the real image ran other bytes"
    );
}

/// Podman with the additional layer store of node B: `podman run B/ipfs/<CID>` takes the layers
/// from the store (lazily, by bitswap from A), not from the registry endpoint.
#[test]
fn podman_runs_from_the_additional_layer_store_without_pulling_layers() {
    // declared before B: dropped after it, unmounting whatever B left
    let store = MountPoint::new();
    let mnt = store.path().to_path_buf();
    // layers handed over without a full read (see the next test for the default)
    let (a, b) = pair(Some(&format!(
        "[layer_store]\nmountpoint = \"{}\"\n[trust]\nunverified_layers = \"trust\"\n",
        mnt.display()
    )));
    let (_img, cid) = generate_and_push(
        &a,
        GenSpec {
            busybox: true,
            big_file_size: 64 << 20,
            ..Default::default()
        },
    );
    let bytes_on_a = a.stat_u64("BlockBytes");
    let reference = format!("{}/ipfs/{cid}:latest", b.registry);
    let (podman, opt) = podman_with_store(&b, &mnt);
    let out = podman.podman_ok(&[
        "--storage-opt",
        &opt,
        "run",
        "--rm",
        &reference,
        "cat",
        "/etc/hello",
    ]);
    assert_eq!(out.trim(), HELLO_LINE);
    assert_eq!(
        b.stat_u64("RegistryLayers"),
        0,
        "no layer blob came from the registry; B's log:\n{}",
        b.log()
    );
    assert!(b.stat_u64("RegistryConfigs") >= 1);
    // /metrics saw the store at work: podman's lookups and use notifications, and the reads of
    // `cat` through overlayfs into the store's FUSE `diff`
    let m = b.metrics();
    for series in [
        "cidfs_fuse_requests_total{fs=\"layer_store\",op=\"lookup\"}",
        "cidfs_fuse_requests_total{fs=\"layer_store\",op=\"read\"}",
        "cidfs_fuse_reads_total{fs=\"layer_store\"}",
        "cidfs_fuse_read_seconds_count{fs=\"layer_store\"}",
        "cidfs_registry_requests_total{route=\"manifest\",method=\"GET\",code=\"200\"",
    ] {
        assert!(m.get(series) >= 1.0, "{series} did not move:\n{}", m.0);
    }
    assert!(m.get("cidfs_fuse_requests_total{fs=\"layer_store\",op=\"create\"}") >= 2.0);
    assert!(m.get("cidfs_fuse_requests_total{fs=\"layer_store\",op=\"rmdir\"}") >= 1.0);
    // podman notified the use of each layer (create `use`, at lookup and again when it made its
    // layer) and released one (rmdir) after the pull: its image still holds the layers
    let log = b.log();
    assert!(log.contains("in use (2)"), "no use notifications:\n{log}");
    assert!(
        log.contains("released (1 users left)"),
        "no release:\n{log}"
    );
    let fetched = b.stat_u64("BytesFetched");
    assert!(
        fetched * 20 < bytes_on_a,
        "B fetched {fetched} of the image's {bytes_on_a} bytes (5 % or more)"
    );
    // the store's own files for that layer: info for containers/storage, and blob, the whole
    // compressed layer (read last: it fetches every block)
    let layer: serde_json::Value =
        serde_json::from_slice(&a.ok(&["image", "inspect", "--json", &cid])).expect("inspect");
    let digest = layer["images"][0]["manifest"]["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_string();
    let dir = mnt
        .join(cidfs::layer_store::layout::ref_dir_name(&reference))
        .join(&digest);
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("info")).expect("info")).expect("JSON");
    assert_eq!(info["compressed-diff-digest"], digest.as_str());
    assert_eq!(info["compression"], 2);
    let blob = std::fs::read(dir.join("blob")).expect("blob");
    assert_eq!(gen::digest(&blob), digest, "blob is the compressed layer");
    drop(podman);
    let (status, _) = b.terminate();
    assert!(status.success());
    assert!(
        crate::images::runtimes::mount_at(&mnt).is_none(),
        "the store is unmounted"
    );
}
