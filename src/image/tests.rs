//! Push → pull round trips through an in-memory node (the real UnixFS adder and range reader
//! over a `MemStore`), and the bad inputs a push or pull must refuse cleanly. The same flows
//! against real daemons and real container tools are in `tests/image.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::blob_store::BlobStore;
use super::estargz::build::BuildOptions;
use super::location::{Dest, Source as Loc};
use super::oci::{self, Descriptor};
use super::progress::Silent;
use super::{pull, push, source};
use crate::blockservice::BlockService;
use crate::blockstore::MemStore;

/// A node in memory: the daemon's own `BlobStore` (the block service) over a `MemStore`, offline.
fn mem_node() -> BlockService {
    BlockService::new(Arc::new(MemStore::default()), None)
}

/// A gzip layer tar of `files` (name → content).
fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, String) {
    let tar = crate::test_utils::tar_of(files, &[]);
    let diff_id = oci::sha256_digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Writes an OCI layout of a two-layer image with Docker media types; returns the layer blobs.
pub fn write_layout(dir: &Path, tag: &str) -> Vec<Vec<u8>> {
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    write_image(
        dir,
        tag,
        &[
            &[
                ("etc/hello", b"hello from cidfs\n"),
                ("big.bin", &big),
                ("empty", b""),
            ],
            &[("etc/second", b"two\n")],
        ],
    )
}

/// Writes an OCI layout (Docker media types) of an image with one gzip layer per entry of
/// `layers`, tagged `tag`, beside any images already there; returns the layer blobs.
fn write_image(dir: &Path, tag: &str, layers: &[&[(&str, &[u8])]]) -> Vec<Vec<u8>> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8], mt: &str| {
        let d = Descriptor::of(mt, bytes);
        std::fs::write(blobs.join(&d.digest[7..]), bytes).unwrap();
        d
    };
    let (gz, ids): (Vec<_>, Vec<_>) = layers.iter().map(|files| layer(files)).unzip();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": ids},
    }))
    .unwrap();
    let manifest = oci::Manifest {
        schema_version: 2,
        media_type: oci::DOCKER_MANIFEST.into(),
        artifact_type: String::new(),
        config: put(&config, oci::DOCKER_CONFIG),
        layers: gz.iter().map(|l| put(l, oci::DOCKER_LAYER_GZIP)).collect(),
        subject: None,
        annotations: BTreeMap::new(),
    };
    let mut mdesc = put(&oci::to_json(&manifest), oci::DOCKER_MANIFEST);
    mdesc
        .annotations
        .insert(oci::ANNOTATION_REF_NAME.into(), tag.into());
    let index_path = dir.join("index.json");
    let mut index = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<oci::Index>(&b).ok())
        .unwrap_or_else(|| oci::Index::new(vec![]));
    index.manifests.push(mdesc);
    std::fs::write(index_path, oci::to_json(&index)).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    gz
}

pub(crate) async fn push_dir<S: BlobStore>(
    node: &S,
    dir: &Path,
    estargz: bool,
) -> anyhow::Result<push::Pushed> {
    let work = tempfile::tempdir()?;
    let src = Loc::Oci {
        dir: dir.to_path_buf(),
        tag: Some("v1".into()),
    };
    let s = source::Source::open(&src, &Default::default(), work.path()).await?;
    let opts = push::PushOptions {
        estargz: estargz.then(|| BuildOptions {
            chunk_size: 1 << 20,
            ..Default::default()
        }),
        ..Default::default()
    };
    push::push(&s, node, &opts, work.path(), &Silent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_writes_the_ipfs_enabled_format() {
    let node = mem_node();
    let dir = tempfile::tempdir().unwrap();
    let originals = write_layout(dir.path(), "v1");
    let pushed = push_dir(&node, dir.path(), false).await.unwrap();
    // root → index descriptor with an ipfs:// URL
    let root: Descriptor =
        serde_json::from_slice(&node.cat_bytes(&pushed.root, 0, None).await.unwrap()).unwrap();
    assert_eq!(root.media_type, oci::OCI_INDEX);
    let index: oci::Index =
        serde_json::from_slice(&node.cat_bytes(&root.cid().unwrap(), 0, None).await.unwrap())
            .unwrap();
    assert_eq!(index.manifests.len(), 1);
    let md = &index.manifests[0];
    assert_eq!(md.media_type, oci::OCI_MANIFEST);
    assert_eq!(md.platform.as_ref().unwrap().to_string(), "linux/amd64");
    let mbytes = node.cat_bytes(&md.cid().unwrap(), 0, None).await.unwrap();
    assert_eq!(oci::sha256_digest(&mbytes), md.digest);
    let m: oci::Manifest = serde_json::from_slice(&mbytes).unwrap();
    assert_eq!(m.config.media_type, oci::OCI_CONFIG);
    // --estargz=false keeps layer bytes; media types become OCI; each blob's CID holds it
    for (l, orig) in m.layers.iter().zip(&originals) {
        assert_eq!(l.media_type, oci::OCI_LAYER_GZIP);
        assert_eq!(
            node.cat_bytes(&l.cid().unwrap(), 0, None).await.unwrap(),
            *orig
        );
    }
    // every CID is pinned
    let pins = node.store().pins().unwrap();
    for c in &pushed.cids {
        assert!(pins.contains(c), "{c} not pinned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estargz_push_pulls_back_into_a_layout_and_an_archive() {
    let node = mem_node();
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), "v1");
    let pushed = push_dir(&node, dir.path(), true).await.unwrap();
    let img = pull::resolve(&node, pushed.root, &[]).await.unwrap();
    let m = &img.images[0].manifest;
    for l in &m.layers {
        assert!(l.annotations.contains_key(oci::ANNOTATION_TOC_DIGEST));
        assert!(l
            .annotations
            .contains_key(oci::ANNOTATION_UNCOMPRESSED_SIZE));
    }
    let out = tempfile::tempdir().unwrap();
    let oci_dir = out.path().join("layout");
    let dest = Dest::Oci {
        dir: oci_dir.clone(),
        tag: Some("pulled".into()),
    };
    pull::pull(&node, &img, &dest, &Silent).await.unwrap();
    let l = super::layout::Layout::open(&oci_dir).unwrap();
    let d = l.select(Some("pulled")).unwrap();
    assert_eq!(d.digest, img.images[0].desc.digest);
    for b in &m.layers {
        l.verified_blob(b, &|_| {}).unwrap();
    }
    // the converted image pushes again unchanged: its layers already are eStargz
    let again = push_dir_tag(&node, &oci_dir, "pulled").await.unwrap();
    let img2 = pull::resolve(&node, again.root, &[]).await.unwrap();
    assert_eq!(
        img2.images[0].manifest.layers,
        img.images[0].manifest.layers
    );
    let file = out.path().join("img.tar");
    let dest = Dest::DockerArchive {
        file: file.clone(),
        name: Some("x/y:1".into()),
    };
    pull::pull(&node, &img, &dest, &Silent).await.unwrap();
    let ex = tempfile::tempdir().unwrap();
    super::archive::extract(&file, ex.path()).unwrap();
    let mf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ex.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(mf[0]["RepoTags"][0], "x/y:1");
    assert_eq!(mf[0]["Layers"].as_array().unwrap().len(), 2);
    // and a docker-archive is a push source too
    let back = tempfile::tempdir().unwrap();
    let s = source::Source::open(
        &Loc::DockerArchive { file, name: None },
        &Default::default(),
        back.path(),
    )
    .await
    .unwrap();
    let opts = push::PushOptions {
        estargz: Some(BuildOptions::default()),
        ..Default::default()
    };
    let p3 = push::push(&s, &node, &opts, back.path(), &Silent)
        .await
        .unwrap();
    let img3 = pull::resolve(&node, p3.root, &[]).await.unwrap();
    assert_eq!(
        img3.images[0].manifest.layers,
        img.images[0].manifest.layers
    );
}

async fn push_dir_tag(node: &BlockService, dir: &Path, tag: &str) -> anyhow::Result<push::Pushed> {
    push_dir_as(node, dir, tag, push::DagLayout::default()).await
}

async fn push_dir_as(
    node: &BlockService,
    dir: &Path,
    tag: &str,
    dag: push::DagLayout,
) -> anyhow::Result<push::Pushed> {
    let work = tempfile::tempdir()?;
    let src = Loc::Oci {
        dir: dir.to_path_buf(),
        tag: Some(tag.into()),
    };
    let s = source::Source::open(&src, &Default::default(), work.path()).await?;
    let opts = push::PushOptions {
        estargz: Some(BuildOptions::default()),
        dag,
        ..Default::default()
    };
    push::push(&s, node, &opts, work.path(), &Silent).await
}

/// Every block of the DAG under `root` in `store`, with its length.
fn dag_blocks(store: &MemStore, root: cid::Cid) -> BTreeMap<cid::Cid, usize> {
    use crate::blockstore::Blocks as _;
    let mut out = BTreeMap::new();
    let mut todo = vec![root];
    while let Some(cid) = todo.pop() {
        let data = store.get(&cid).unwrap().expect("the whole DAG is stored");
        if cid.codec() == 0x70 {
            let links = crate::blockstore::dag_pb_links(&cid, &data).unwrap();
            todo.extend(links.iter().map(|l| l.cid));
        }
        out.insert(cid, data.len());
    }
    out
}

/// A rebuilt image (two files of 300 changed) cut at its gzip members shares every block of
/// v1 but those of the changed files, a group or two of small neighbours and the TOC; cut
/// every 256 KiB, almost every block after the first change is new. Both read back the same
/// blob bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_image_cut_at_members_shares_all_but_its_changed_files() {
    // 300 incompressible files of 100 B to 300 KB, one of 3 MB
    let mut seed = 7u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect()
    };
    let mut files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            let len = 100 + (i * 7919) % 300_000;
            (format!("usr/lib/f{i:03}"), noise(len))
        })
        .collect();
    files.push(("usr/lib/big".into(), noise(3_000_000)));
    let v1 = files.clone();
    for i in [40, 200] {
        let len = files[i].1.len();
        files[i].1 = noise(len);
    }
    let changed: usize = [40, 200].iter().map(|&i| files[i].1.len()).sum();
    let v2 = files;
    let dir = tempfile::tempdir().unwrap();
    for (tag, files) in [("v1", &v1), ("v2", &v2)] {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        write_image(dir.path(), tag, &[&refs]);
    }
    let mut new_bytes = BTreeMap::new();
    for dag in [push::DagLayout::Members, push::DagLayout::Fixed] {
        let store = Arc::new(MemStore::default());
        let node = BlockService::new(store.clone(), None);
        let mut layers = Vec::new();
        for tag in ["v1", "v2"] {
            let pushed = push_dir_as(&node, dir.path(), tag, dag).await.unwrap();
            let img = pull::resolve(&node, pushed.root, &[]).await.unwrap();
            let l = img.images[0].manifest.layers[0].clone();
            // the blob reads back whole under its digest, whatever the cut
            let bytes = node.cat_bytes(&l.cid().unwrap(), 0, None).await.unwrap();
            assert_eq!(oci::sha256_digest(&bytes), l.digest, "{dag:?}");
            let blocks = dag_blocks(&store, l.cid().unwrap());
            layers.push((l, blocks));
        }
        let (v1_blocks, v2_blocks) = (&layers[0].1, &layers[1].1);
        let new: usize = v2_blocks
            .iter()
            .filter(|(c, _)| !v1_blocks.contains_key(c))
            .map(|(_, n)| n)
            .sum();
        let leaves = v2_blocks.keys().filter(|c| c.codec() == 0x55).count();
        assert!(
            v2_blocks.values().all(|&n| n <= 1 << 20),
            "{dag:?}: a block over 1 MiB"
        );
        new_bytes.insert(format!("{dag:?}"), (new, layers[1].0.size as usize, leaves));
    }
    let (members, size, leaves) = new_bytes["Members"];
    let (fixed, _, _) = new_bytes["Fixed"];
    // changed files + their small neighbours' groups + the TOC and the tree's nodes
    assert!(
        members < changed + 1_200_000,
        "members: {members} new bytes of {size} for {changed} changed"
    );
    assert!(fixed > size / 3, "fixed: {fixed} new bytes of {size}");
    // a run of leaves per member of 64 KiB or more (one per 256 KiB, its tar header and gzip
    // framing included), and at most one leaf per small member: groups hold up to 32 KiB, so
    // these small files of 100 B to 64 KB seldom share one (how tiny members group is
    // `formats::estargz::cuts`'s test)
    use crate::image::estargz::cuts::{MAX_LEAF, MIN_ALONE};
    let big: Vec<usize> = v2
        .iter()
        .map(|(_, d)| d.len())
        .filter(|&n| n as u64 >= MIN_ALONE)
        .collect();
    let alone: usize = big
        .iter()
        .map(|n| (n + 2048).div_ceil(MAX_LEAF as usize))
        .sum();
    let small = v2.len() - big.len();
    assert!(
        leaves <= alone + small,
        "{leaves} leaves: {alone} big members and {small} small ones"
    );
    eprintln!(
        "members: {members} new of {size} ({changed} changed), fixed: {fixed}; {leaves} leaves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_blob_fails_the_push_and_pins_nothing() {
    let node = mem_node();
    let dir = tempfile::tempdir().unwrap();
    let layers = write_layout(dir.path(), "v1");
    std::fs::remove_file(
        dir.path()
            .join("blobs/sha256")
            .join(&oci::sha256_digest(&layers[1])[7..]),
    )
    .unwrap();
    let e = format!("{:#}", push_dir(&node, dir.path(), true).await.unwrap_err());
    assert!(e.contains("missing from the layout"), "{e}");
    assert!(node.store().pins().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_or_unknown_media_type_fails_the_push() {
    let node = mem_node();
    let dir = tempfile::tempdir().unwrap();
    let layers = write_layout(dir.path(), "v1");
    let p = dir
        .path()
        .join("blobs/sha256")
        .join(&oci::sha256_digest(&layers[0])[7..]);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let e = format!("{:#}", push_dir(&node, dir.path(), true).await.unwrap_err());
    assert!(e.contains("digest mismatch"), "{e}");
    // unknown media type
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), "v1");
    let l = super::layout::Layout::open(dir.path()).unwrap();
    let d = l.select(Some("v1")).unwrap();
    let mut m: oci::Manifest = serde_json::from_slice(&l.read_blob(&d).unwrap()).unwrap();
    m.layers[1].media_type = "application/x-mystery".into();
    let bytes = oci::to_json(&m);
    let mut nd = Descriptor::of(oci::DOCKER_MANIFEST, &bytes);
    std::fs::write(
        dir.path().join("blobs/sha256").join(&nd.digest[7..]),
        &bytes,
    )
    .unwrap();
    nd.annotations
        .insert(oci::ANNOTATION_REF_NAME.into(), "v1".into());
    std::fs::write(
        dir.path().join("index.json"),
        oci::to_json(&oci::Index::new(vec![nd])),
    )
    .unwrap();
    let e = format!("{:#}", push_dir(&node, dir.path(), true).await.unwrap_err());
    assert!(
        e.contains("unknown media type \"application/x-mystery\""),
        "{e}"
    );
    assert!(node.store().pins().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_mismatch_on_pull_leaves_no_output() {
    let node = mem_node();
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), "v1");
    let pushed = push_dir(&node, dir.path(), false).await.unwrap();
    let img = pull::resolve(&node, pushed.root, &[]).await.unwrap();
    // a manifest whose second layer points at the first layer's CID
    let mut m = img.images[0].manifest.clone();
    m.layers[1].urls = m.layers[0].urls.clone();
    let mbytes = oci::to_json(&m);
    let mut md = Descriptor::of(oci::OCI_MANIFEST, &mbytes);
    md.set_cid(&node.add_bytes(mbytes).await.unwrap());
    let ibytes = oci::to_json(&oci::Index::new(vec![md]));
    let mut id = Descriptor::of(oci::OCI_INDEX, &ibytes);
    id.set_cid(&node.add_bytes(ibytes).await.unwrap());
    let bad_root = node.add_bytes(oci::to_json(&id)).await.unwrap();
    let bad = pull::resolve(&node, bad_root, &[]).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    for dest in [
        Dest::Oci {
            dir: out.path().join("layout"),
            tag: None,
        },
        Dest::DockerArchive {
            file: out.path().join("a.tar"),
            name: None,
        },
    ] {
        let e = format!(
            "{:#}",
            pull::pull(&node, &bad, &dest, &Silent).await.unwrap_err()
        );
        assert!(
            e.contains("size is") || e.contains("digest mismatch"),
            "{e}"
        );
        let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    // a root that is not a descriptor
    let junk = node.add_bytes(b"not json".to_vec()).await.unwrap();
    let e = format!("{:#}", pull::resolve(&node, junk, &[]).await.unwrap_err());
    assert!(e.contains("not an OCI descriptor"), "{e}");
}

/// Turns the single-image layout of [`write_layout`] into a two-platform index (amd64 and an
/// arm64 twin with the same layers), tagged `multi`.
fn make_multi_platform(dir: &Path) {
    let l = super::layout::Layout::open(dir).unwrap();
    let amd = l.select(Some("v1")).unwrap();
    let m: oci::Manifest = serde_json::from_slice(&l.read_blob(&amd).unwrap()).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&l.read_blob(&m.config).unwrap()).unwrap();
    cfg["architecture"] = "arm64".into();
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let put = |bytes: &[u8], mt: &str| {
        let d = Descriptor::of(mt, bytes);
        std::fs::write(dir.join("blobs/sha256").join(&d.digest[7..]), bytes).unwrap();
        d
    };
    let mut arm = m.clone();
    arm.config = put(&cfg, oci::DOCKER_CONFIG);
    let mut arm_desc = put(&oci::to_json(&arm), oci::DOCKER_MANIFEST);
    arm_desc.platform = Some(oci::Platform::parse("linux/arm64").unwrap());
    let mut amd_desc = amd.clone();
    amd_desc.annotations.clear();
    amd_desc.platform = Some(oci::Platform::parse("linux/amd64").unwrap());
    let mut idx = put(
        &oci::to_json(&oci::Index::new(vec![amd_desc, arm_desc])),
        oci::OCI_INDEX,
    );
    idx.annotations
        .insert(oci::ANNOTATION_REF_NAME.into(), "multi".into());
    std::fs::write(
        dir.join("index.json"),
        oci::to_json(&oci::Index::new(vec![idx])),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_platform_indexes_keep_every_platform_unless_narrowed() {
    let node = mem_node();
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), "v1");
    make_multi_platform(dir.path());
    let push_with = |platforms: Vec<&'static str>| {
        let node = node.clone();
        let dir = dir.path().to_path_buf();
        async move {
            let work = tempfile::tempdir()?;
            let src = Loc::Oci {
                dir,
                tag: Some("multi".into()),
            };
            let s = source::Source::open(&src, &Default::default(), work.path()).await?;
            let opts = push::PushOptions {
                estargz: Some(BuildOptions::default()),
                platforms: platforms
                    .iter()
                    .map(|p| oci::Platform::parse(p).unwrap())
                    .collect(),
                ..Default::default()
            };
            push::push(&s, &node, &opts, work.path(), &Silent).await
        }
    };
    let all = push_with(vec![]).await.unwrap();
    let img = pull::resolve(&node, all.root, &[]).await.unwrap();
    let platforms: Vec<String> = img
        .images
        .iter()
        .map(|i| i.desc.platform.clone().unwrap().to_string())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // both share the converted layers
    assert_eq!(img.images[0].manifest.layers, img.images[1].manifest.layers);

    let arm = push_with(vec!["linux/arm64"]).await.unwrap();
    let img = pull::resolve(&node, arm.root, &[]).await.unwrap();
    assert_eq!(img.images.len(), 1);
    assert_eq!(
        img.images[0].desc.platform.clone().unwrap().to_string(),
        "linux/arm64"
    );

    let e = format!("{:#}", push_with(vec!["linux/s390x"]).await.unwrap_err());
    assert!(e.contains("linux/amd64, linux/arm64"), "{e}");

    // pull narrows too; a docker-archive of a two-platform image takes the host's
    let only_arm = pull::resolve(
        &node,
        all.root,
        &[oci::Platform::parse("linux/arm64").unwrap()],
    )
    .await
    .unwrap();
    assert_eq!(only_arm.images.len(), 1);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("a.tar");
    let both = pull::resolve(&node, all.root, &[]).await.unwrap();
    pull::pull(
        &node,
        &both,
        &Dest::DockerArchive {
            file: file.clone(),
            name: None,
        },
        &Silent,
    )
    .await
    .unwrap();
    assert!(file.exists());
}

/// An index repeating one manifest is resolved to one image; an index with more entries than
/// the bound is refused before any manifest is fetched (H1: 80k repeats of a 16 MiB manifest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_huge_indexes_are_bounded() {
    let node = mem_node();
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), "v1");
    let pushed = push_dir(&node, dir.path(), false).await.unwrap();
    let img = pull::resolve(&node, pushed.root, &[]).await.unwrap();
    let md = img.images[0].desc.clone();
    let root_of = |n: usize| {
        let ibytes = oci::to_json(&oci::Index::new(vec![md.clone(); n]));
        let mut id = Descriptor::of(oci::OCI_INDEX, &ibytes);
        let node = node.clone();
        async move {
            id.set_cid(&node.add_bytes(ibytes).await.unwrap());
            node.add_bytes(oci::to_json(&id)).await.unwrap()
        }
    };
    let repeated = pull::resolve(&node, root_of(100).await, &[]).await.unwrap();
    assert_eq!(repeated.images.len(), 1);
    let e = format!(
        "{:#}",
        pull::resolve(&node, root_of(pull::MAX_INDEX_ENTRIES + 1).await, &[])
            .await
            .unwrap_err()
    );
    assert!(e.contains("over the bound"), "{e}");
}

/// Pinning an image is all or none: when one of its CIDs cannot be fetched, none is pinned
/// (L2: the CIDs were pinned one by one, so a failure half-way left layers pinned and the root
/// not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pin_is_all_or_none() {
    let node = mem_node();
    let here = node.add_bytes(b"a layer".to_vec()).await.unwrap();
    let gone = cid::Cid::new_v1(
        crate::blockstore::RAW,
        cid::multihash::Multihash::wrap(0x12, &[7u8; 32]).unwrap(),
    );
    assert!(node.pin_all(&[here, gone]).await.is_err());
    assert!(
        node.store().pins().unwrap().is_empty(),
        "pinned half an image"
    );
    node.pin_all(&[here]).await.unwrap();
    assert_eq!(node.store().pins().unwrap(), vec![here]);
}
