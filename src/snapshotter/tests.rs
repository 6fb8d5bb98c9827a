//! Unit tests of the snapshotter: containerd's filter syntax, the metadata rules (and that they
//! survive a reopen), and the overlay snapshotter's directories and mounts over a real temp dir.
//! Lazily served layers and the gRPC wire are tested with containerd itself (tests/containerd.rs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::filter::Filter;
use super::meta::{Kind, Meta, Usage};
use super::remote::{self, Remote, DIGEST_LABEL, REFERENCE_LABEL, TARGET_LABEL};
use super::{Error, MountSpec, Snapshotter};
use crate::blockservice::BlockService;
use crate::blockstore::MemStore;
use crate::config::MountConfig;
use crate::mount::Mounts;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn filters_parse_containerds_forms() {
    let matches = |f: &[&str], name: &str, parent: &str| {
        let mut vals: BTreeMap<Vec<String>, String> = BTreeMap::new();
        vals.insert(strings(&["name"]), name.into());
        vals.insert(strings(&["parent"]), parent.into());
        vals.insert(
            strings(&["labels", "containerd.io/snapshot.ref"]),
            "sha256:abc".into(),
        );
        vals.insert(strings(&["labels", "x"]), "1".into());
        let f = Filter::parse(&strings(f)).unwrap();
        f.matches(|p| vals.get(p).map(String::as_str))
    };
    // what containerd's metadata snapshotter sends after a remote Prepare
    let meta = r#"labels."containerd.io/snapshot.ref"==sha256:abc,parent=="p/1""#;
    assert!(matches(&[meta], "n", "p/1"));
    assert!(!matches(&[meta], "n", "p/2"));
    assert!(matches(&[], "n", ""), "no filter matches all");
    assert!(matches(&["labels.x"], "n", ""));
    assert!(!matches(&["labels.y"], "n", ""));
    assert!(matches(&["labels.y!=1"], "n", ""), "absent differs");
    assert!(
        matches(&["name==a", "name==n"], "n", ""),
        "strings are ORed"
    );
    assert!(
        !matches(&["name==n,labels.x==2"], "n", ""),
        "selectors are ANDed"
    );
    assert!(matches(&[r#"name=="a \"q\"""#], r#"a "q""#, ""));
    for (bad, why) in [
        ("name~=a.*", "~="),
        (r#"labels."open==x"#, "unterminated"),
        ("name==", "expected a value"),
        ("==x", "expected a field"),
        ("name==a,", "expected a field"),
        ("labels./re/", "regular-expression"),
    ] {
        match Filter::parse(&strings(&[bad])) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(why), "{bad}: {m}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn metadata_follows_containerds_rules_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    {
        let m = Meta::open(&path).unwrap();
        let id = m.next_id().unwrap();
        m.create(id, Kind::Active, "k1", "", labels(&[("a", "1")]))
            .unwrap();
        assert!(matches!(
            m.create(
                m.next_id().unwrap(),
                Kind::Active,
                "k1",
                "",
                BTreeMap::new()
            ),
            Err(Error::AlreadyExists(_))
        ));
        assert!(
            matches!(
                m.create(9, Kind::Active, "k2", "k1", BTreeMap::new()),
                Err(Error::InvalidArgument(_))
            ),
            "an active parent"
        );
        assert!(matches!(
            m.create(9, Kind::Active, "k2", "nope", BTreeMap::new()),
            Err(Error::NotFound(_))
        ));
        let usage = Usage {
            size: 4096,
            inodes: 2,
        };
        let c = m.commit("k1", "c1", labels(&[("b", "2")]), usage).unwrap();
        assert_eq!((c.id, c.kind, c.usage), (id, Kind::Committed, usage));
        assert!(
            matches!(m.get("k1"), Err(Error::NotFound(_))),
            "the key is gone"
        );
        assert!(matches!(
            m.commit("c1", "c2", BTreeMap::new(), usage),
            Err(Error::FailedPrecondition(_))
        ));
        m.create(
            m.next_id().unwrap(),
            Kind::View,
            "v1",
            "c1",
            BTreeMap::new(),
        )
        .unwrap();
        assert!(
            matches!(
                m.commit("v1", "c3", BTreeMap::new(), usage),
                Err(Error::FailedPrecondition(_))
            ),
            "a view cannot be committed"
        );
        m.create(
            m.next_id().unwrap(),
            Kind::Active,
            "k3",
            "c1",
            BTreeMap::new(),
        )
        .unwrap();
        assert!(matches!(
            m.commit("k3", "c1", BTreeMap::new(), usage),
            Err(Error::AlreadyExists(_))
        ));
        match m.remove("c1") {
            Err(Error::FailedPrecondition(msg)) => assert!(msg.contains("child"), "{msg}"),
            other => panic!("{other:?}"),
        }
        let chain: Vec<_> = m.chain("k3").unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(chain, ["k3", "c1"]);
        // update: labels.K sets or removes one label; no paths replaces all
        let u = m
            .update(
                "c1",
                labels(&[("c", "3")]),
                &strings(&["labels.c", "labels.b"]),
            )
            .unwrap();
        assert_eq!(u.labels, labels(&[("c", "3")]));
        assert!(matches!(
            m.update("c1", BTreeMap::new(), &strings(&["parent"])),
            Err(Error::InvalidArgument(_))
        ));
    }
    let m = crate::test_utils::reopen(|| Meta::open(&path));
    let names: Vec<_> = m.all().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["c1", "k3", "v1"]);
    assert_eq!(m.get("c1").unwrap().labels, labels(&[("c", "3")]));
    assert!(
        m.next_id().unwrap() > m.get("k3").unwrap().id,
        "ids are not reused"
    );
    m.remove("k3").unwrap();
    m.remove("v1").unwrap();
    m.remove("c1").unwrap();
    assert!(m.all().unwrap().is_empty());
}

#[test]
fn rpull_labels_name_a_layer_of_an_image_by_cid() {
    let cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    let digest = format!("sha256:{}", "a".repeat(64));
    let ours = labels(&[
        (
            REFERENCE_LABEL,
            &format!("127.0.0.1:5050/ipfs/{cid}:latest"),
        ),
        (DIGEST_LABEL, &digest),
    ]);
    let t = remote::target(&ours).unwrap().unwrap();
    assert_eq!(
        (t.image, t.layer),
        (
            crate::cidref::ImageRef::Cid(cid.parse().unwrap()),
            digest.clone()
        )
    );
    // a name: of the swarm's table, or another registry's image that resolving will not find
    let named = labels(&[
        (REFERENCE_LABEL, "docker.io/library/alpine:3"),
        (DIGEST_LABEL, &digest),
    ]);
    assert_eq!(
        remote::target(&named).unwrap().map(|t| t.image),
        Some(crate::cidref::ImageRef::Named {
            repo: "library/alpine".into(),
            tag: "3".into()
        })
    );
    let other = labels(&[(REFERENCE_LABEL, "no-path"), (DIGEST_LABEL, &digest)]);
    assert_eq!(remote::target(&other).unwrap(), None, "not a reference");
    assert_eq!(remote::target(&BTreeMap::new()).unwrap(), None);
    let bad = labels(&[(REFERENCE_LABEL, "localhost:5050/ipfs/bafynotacid:latest")]);
    let e = remote::target(&bad).unwrap_err();
    assert!(matches!(e, remote::LabelError::Reference(_)), "{e}");
    assert!(e.to_string().contains("invalid CID"), "{e}");
    let no_digest = labels(&[(REFERENCE_LABEL, &format!("h:1/ipfs/{cid}"))]);
    let e = remote::target(&no_digest).unwrap_err();
    assert!(
        matches!(e, remote::LabelError::NoDigest { label, .. } if label == DIGEST_LABEL),
        "{e}"
    );
}

/// A reference by a name the swarm's table does not hold (another registry's image) is not an
/// image here: containerd unpacks it as usual.
#[tokio::test]
async fn a_name_the_swarm_does_not_hold_is_unpacked_as_usual() {
    let f = fixture();
    let t = remote::Target {
        reference: "docker.io/library/alpine:3".into(),
        image: crate::cidref::ImageRef::Named {
            repo: "library/alpine".into(),
            tag: "3".into(),
        },
        layer: format!("sha256:{}", "a".repeat(64)),
    };
    let e = f.s.remote.resolve(&t).await.unwrap_err();
    assert!(
        matches!(e, crate::image::pull::ResolveError::NotAnImage(_)),
        "{e}"
    );
    assert!(
        e.to_string().contains("no image is named library/alpine:3"),
        "{e}"
    );
}

struct Fixture {
    _dir: tempfile::TempDir,
    s: Snapshotter,
}

fn fixture() -> Fixture {
    fixture_on(BlockService::new(Arc::new(MemStore::default()), None))
}

fn fixture_on(blocks: BlockService) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let mounts = Mounts::new(
        blocks,
        MountConfig::default(),
        &repo,
        Default::default(),
        None,
    )
    .unwrap();
    let names = sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree("names")
        .unwrap();
    let remote = Remote {
        mounts,
        names: crate::image::names::Names::new(names, "me"),
        timeout: Duration::from_secs(2),
    };
    let s = Snapshotter::open(&dir.path().join("sn"), remote, Default::default()).unwrap();
    Fixture { _dir: dir, s }
}

fn option<'a>(m: &'a MountSpec, key: &str) -> Option<&'a str> {
    m.options
        .iter()
        .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
}

#[tokio::test]
async fn overlay_snapshots_mount_as_containerd_expects() {
    let f = fixture();
    let s = &f.s;
    // the first layer: a rw bind of its own directory
    let m = s.prepare("extract-1", "", BTreeMap::new()).await.unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].kind.as_str(), m[0].options.clone()),
        ("bind", strings(&["rw", "rbind"]))
    );
    let fs1 = std::path::PathBuf::from(&m[0].source);
    assert!(fs1.is_dir() && fs1.ends_with("fs"));
    std::fs::write(fs1.join("hello"), vec![7u8; 10_000]).unwrap();
    s.commit("layer1", "extract-1", BTreeMap::new())
        .await
        .unwrap();
    let u = s.usage("layer1").await.unwrap();
    assert!(u.size >= 10_000 && u.inodes == 2, "{u:?}");

    // the second: overlay, upper and work dirs of its own, the first below
    let m = s
        .prepare("extract-2", "layer1", BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(m[0].kind, "overlay");
    assert_eq!(option(&m[0], "lowerdir"), Some(fs1.to_str().unwrap()));
    let upper = std::path::PathBuf::from(option(&m[0], "upperdir").unwrap());
    assert!(upper.is_dir() && option(&m[0], "workdir").is_some());
    s.commit("layer2", "extract-2", BTreeMap::new())
        .await
        .unwrap();

    // a container on both: lowerdir nearest first
    let m = s.prepare("ctr", "layer2", BTreeMap::new()).await.unwrap();
    let lower = option(&m[0], "lowerdir").unwrap().to_string();
    assert_eq!(lower, format!("{}:{}", upper.display(), fs1.display()));
    assert_eq!(s.mounts("ctr").await.unwrap(), m, "Mounts repeats Prepare");
    // views: one parent is a ro bind of it, two an overlay without upper
    let v = s.view("v1", "layer1", BTreeMap::new()).await.unwrap();
    assert_eq!(
        (v[0].kind.as_str(), v[0].source.as_str()),
        ("bind", fs1.to_str().unwrap())
    );
    assert_eq!(v[0].options, strings(&["ro", "rbind"]));
    let v = s.view("v2", "layer2", BTreeMap::new()).await.unwrap();
    assert_eq!(v[0].kind, "overlay");
    assert!(option(&v[0], "upperdir").is_none());

    // list with filters; remove obeys children; directories go with their snapshot
    let committed = s.list(&strings(&["kind==committed"])).unwrap();
    let names: Vec<_> = committed.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["layer1", "layer2"]);
    assert!(matches!(
        s.remove("layer1").await,
        Err(Error::FailedPrecondition(_))
    ));
    let ctr_dir = upper
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(s.stat("ctr").unwrap().snapshot.id.to_string());
    assert!(ctr_dir.is_dir());
    s.remove("ctr").await.unwrap();
    assert!(!ctr_dir.exists());
    assert!(matches!(s.stat("ctr"), Err(Error::NotFound(_))));

    // cleanup removes a directory no snapshot owns, and nothing else
    let orphan = s.root().join("snapshots").join("999999");
    std::fs::create_dir_all(orphan.join("fs")).unwrap();
    s.cleanup().await.unwrap();
    assert!(!orphan.exists());
    assert!(fs1.join("hello").exists());
}

#[tokio::test]
async fn a_layer_the_swarm_lacks_is_unpacked_as_usual() {
    let f = fixture();
    let cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    let l = labels(&[
        (TARGET_LABEL, "sha256:chain"),
        (
            REFERENCE_LABEL,
            &format!("127.0.0.1:5050/ipfs/{cid}:latest"),
        ),
        (DIGEST_LABEL, &format!("sha256:{}", "b".repeat(64))),
    ]);
    // nothing in the store and no node: the remote mount fails within its timeout, and
    // Prepare answers with the usual mounts for containerd to unpack into
    let m = f.s.prepare("extract-x", "", l).await.unwrap();
    assert_eq!(m[0].kind, "bind");
    let n = f.s.stat("extract-x").unwrap();
    assert_eq!(n.snapshot.kind, Kind::Active);
    assert!(matches!(f.s.stat("sha256:chain"), Err(Error::NotFound(_))));
}

#[tokio::test]
async fn keys_are_never_paths_and_the_socket_never_replaces_a_file() {
    let f = fixture();
    // keys and names are containerd's strings; directories are numbered by the snapshotter
    let m =
        f.s.prepare("../../etc/x", "", BTreeMap::new())
            .await
            .unwrap();
    let dir = std::path::PathBuf::from(&m[0].source);
    assert!(dir.starts_with(f.s.root().join("snapshots")), "{dir:?}");
    f.s.commit("/abs/../name", "../../etc/x", BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        f.s.stat("/abs/../name").unwrap().snapshot.kind,
        Kind::Committed
    );
    assert!(matches!(
        f.s.prepare("", "", BTreeMap::new()).await,
        Err(Error::InvalidArgument(_))
    ));

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let s = Arc::new(fixture().s);
    let err = super::serve(s, file.clone(), std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not a socket"), "{err:#}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

/// Records remote layer `layer-1` (committed from `extract-1` with `labels`) and a view `view`
/// on it, as a `Prepare` of rpull's would leave them; returns the layer's id.
fn remote_layer_and_view(s: &Snapshotter, labels: BTreeMap<String, String>) -> u64 {
    let id = s.meta.next_id().unwrap();
    s.meta
        .create(id, Kind::Active, "extract-1", "", BTreeMap::new())
        .unwrap();
    s.meta
        .commit("extract-1", "layer-1", labels, Usage::default())
        .unwrap();
    let view = s.meta.next_id().unwrap();
    s.meta
        .create(view, Kind::View, "view", "layer-1", BTreeMap::new())
        .unwrap();
    id
}

/// A lazily served layer that cannot be mounted again answers by its cause: `Unavailable` when
/// the swarm did not deliver its image in time (containerd may retry), `FailedPrecondition`
/// when what its labels name is not an image here (retrying will not help).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_layer_that_cannot_be_mounted_answers_by_its_cause() {
    let image = crate::test_utils::absent_cid();
    let (online, task) = crate::test_utils::lone_node(Duration::from_secs(1));
    let offline = BlockService::new(Arc::new(MemStore::default()), None);
    for (blocks, unavailable) in [(online, true), (offline, false)] {
        let f = fixture_on(blocks);
        let s = &f.s;
        let remote = labels(&[
            (super::REMOTE_LABEL, super::REMOTE_VALUE),
            (REFERENCE_LABEL, &format!("h:1/ipfs/{image}:latest")),
            (DIGEST_LABEL, &format!("sha256:{}", "a".repeat(64))),
        ]);
        remote_layer_and_view(s, remote);
        let e = s.mounts("view").await.unwrap_err();
        if unavailable {
            assert!(matches!(e, Error::Unavailable(_)), "{e}");
        } else {
            assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
        }
    }
    task.abort();
}

/// A layer mounted behind its `Prepare` is waited for by whatever uses it next: a child's
/// `Mounts` (here the mount fails, as the swarm never delivers the layer, and the child's answer
/// is the retried mount's cause) and a `Remove` (so no mount lands after it). Either claims it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_mounted_behind_its_prepare_is_waited_for() {
    let absent = crate::test_utils::absent_cid();
    let (online, task) = crate::test_utils::lone_node(Duration::from_secs(1));
    let f = fixture_on(online);
    let s = &f.s;
    let reference = format!("h:1/ipfs/{absent}:latest");
    let remote = labels(&[
        (super::REMOTE_LABEL, super::REMOTE_VALUE),
        (REFERENCE_LABEL, &reference),
        (DIGEST_LABEL, &format!("sha256:{}", "a".repeat(64))),
    ]);
    let t = remote::target(&remote).unwrap().expect("a target");
    let layer = remote::Layer {
        image: absent,
        desc: crate::image::oci::Descriptor {
            urls: vec![format!("ipfs://{absent}")],
            ..crate::image::oci::Descriptor::of("application/vnd.oci.image.layer.v1.tar+gzip", b"")
        },
        diff_id: format!("sha256:{}", "d".repeat(64)),
        image_layers: Arc::from([]),
    };
    let layer_id = remote_layer_and_view(s, remote);
    let pending = || crate::sync::lock(&s.mounting).len();

    s.mount_behind(s.fs_dir(layer_id), &t, &layer);
    assert_eq!(pending(), 1);
    let e = s.mounts("view").await.unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    assert_eq!(
        pending(),
        0,
        "Mounts waited for the mount behind and claimed it"
    );

    s.mount_behind(s.fs_dir(layer_id), &t, &layer);
    s.remove("view").await.unwrap();
    assert_eq!(
        pending(),
        1,
        "a view's Remove leaves its parent's mount alone"
    );
    s.remove("layer-1").await.unwrap();
    assert_eq!(pending(), 0, "Remove waited for the mount behind");
    assert!(!s.remote.mounts.is_mounted(&s.fs_dir(layer_id)).await);
    task.abort();
}
