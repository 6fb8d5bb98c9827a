//! Container images (issue 5): `cidfs image push | pull | inspect` between two real daemons,
//! from every source kind, checked against the source tree, against Debian's `ctr-remote`
//! eStargz converter, and by real runtimes (containerd, podman, skopeo).

use std::path::{Path, PathBuf};

use cidfs::image::convert::read_toc_file;
use cidfs::image::estargz::TocEntry;
use cidfs::image::oci;

use crate::images::gen::{self, GenSpec};
use crate::images::runtimes::{skopeo, Auth, Containerd, Podman, Registry};
use crate::images::tree::layers_of_oci_archive;
use crate::images::tree::{
    assert_same_tree, layers_of_docker_archive, layers_of_oci_layout, tree_of_layers,
};
use crate::util::{pair, Daemon, Opts};

const MIB: usize = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `cidfs image push ARGS` on `d`: stdout must be exactly one CID line.
fn push(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["image", "push", "-q"];
    all.extend_from_slice(args);
    let out = String::from_utf8(d.ok(&all)).expect("utf-8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "push printed more than the CID: {out:?}");
    assert!(
        lines[0].starts_with("bafkrei"),
        "image CID is not a CIDv1 raw block: {out:?}"
    );
    lines[0].to_string()
}

/// `cidfs image pull -q IMAGE --to DEST` on `d`, which must succeed.
fn pull(d: &Daemon, image: &str, dest: &str) {
    d.ok(&["image", "pull", "-q", image, "--to", dest]);
}

/// `cidfs image push` that must fail; returns stderr.
fn push_fails(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["image", "push", "-q"];
    all.extend_from_slice(args);
    let out = d.cli(&all);
    assert!(!out.status.success(), "push {args:?} should have failed");
    assert!(
        out.stdout.is_empty(),
        "a failed push printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temp dir holding `layout/`, a generated image.
fn generate(spec: GenSpec) -> (tempfile::TempDir, PathBuf, gen::GeneratedImage) {
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let img = gen::build_oci_layout(&layout, &spec);
    (work, layout, img)
}

fn pins(d: &Daemon) -> String {
    String::from_utf8(d.ok(&["pin", "ls"])).expect("utf-8")
}

/// Round trip: one generated image pushed on A from each source kind, pulled on B into `oci:`
/// and `docker-archive:`; every pull unpacks to the generator's tree; skopeo reads the archive.
#[test]
fn push_from_every_source_and_pull_into_both_formats() {
    let (a, b) = pair(None);
    let (work, layout, img) = generate(GenSpec {
        big_file_size: 11 * MIB,
        ..Default::default()
    });
    let expected = &img.expected;

    let oci_archive = work.path().join("img.oci.tar");
    gen::to_oci_archive(&layout, &img.tag, &oci_archive);
    let docker_archive = work.path().join("img.docker.tar");
    gen::to_docker_archive(&layout, &img.tag, &docker_archive, "gen/image:1");
    let registry = Registry::start();
    let remote = gen::push_to_registry(&layout, &img.tag, &registry.addr(), "gen/image:1", None);

    let sources = [
        vec![format!("oci:{}:{}", s(&layout), img.tag)],
        vec![format!("oci-archive:{}", s(&oci_archive))],
        vec![format!("docker-archive:{}", s(&docker_archive))],
        vec!["--insecure".to_string(), format!("docker://{remote}")],
    ];
    let mut layer_digests: Option<Vec<String>> = None;
    for (i, src) in sources.iter().enumerate() {
        let args: Vec<&str> = src.iter().map(String::as_str).collect();
        let cid = push(&a, &args);
        let out = work.path().join(format!("pulled-{i}"));
        pull(&b, &cid, &format!("oci:{}:t", s(&out)));
        let pulled = layers_of_oci_layout(&out, Some("t"));
        assert_same_tree(expected, &tree_of_layers(&pulled.layers));
        if i == 0 {
            assert_inode_table_matches(expected, &pulled.layers);
        }
        // the conversion is deterministic: the same layer tars give the same eStargz blobs
        let m: oci::Manifest = serde_json::from_value(pulled.manifest).expect("manifest");
        let digests: Vec<String> = m.layers.iter().map(|l| l.digest.clone()).collect();
        match &layer_digests {
            None => layer_digests = Some(digests),
            Some(first) => assert_eq!(first, &digests, "source {src:?} converted differently"),
        }
        {
            let archive = work.path().join(format!("pulled-{i}.tar"));
            let ref_arg = format!("docker-archive:{}:cidfs/pulled:{i}", s(&archive));
            pull(&b, &format!("ipfs://{cid}"), &ref_arg);
            let unpacked = layers_of_docker_archive(&archive);
            assert_eq!(unpacked.repo_tags.len(), 1);
            assert!(
                unpacked.repo_tags[0].ends_with(&format!("cidfs/pulled:{i}")),
                "{:?}",
                unpacked.repo_tags
            );
            assert_same_tree(expected, &tree_of_layers(&unpacked.layers));
            let copy = work.path().join(format!("skopeo-{i}"));
            let out = skopeo(&[
                "copy",
                &format!("docker-archive:{}", s(&archive)),
                &format!("oci:{}:x", s(&copy)),
            ]);
            assert!(
                out.status.success(),
                "skopeo cannot read the archive: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The fields ctr-remote and cidfs must agree on (compressed offsets may differ).
fn toc_view(e: &TocEntry) -> String {
    format!(
        "{} {:?} size={} mode={:o} link={:?} uid={} gid={} chunkOffset={} chunkSize={} digest={} chunkDigest={} xattrs={:?}",
        e.name, e.kind, e.size, e.mode, e.link_name, e.uid, e.gid, e.chunk_offset, e.chunk_size, e.digest, e.chunk_digest, e.xattrs
    )
}

fn tocs(layers: &[PathBuf]) -> Vec<Vec<String>> {
    layers
        .iter()
        .map(|l| {
            let t = read_toc_file(l).unwrap_or_else(|e| panic!("{}: {e}", l.display()));
            t.toc.entries.iter().map(toc_view).collect()
        })
        .collect()
}

/// eStargz fidelity: cidfs and `ctr-remote image convert --estargz --oci` give the same TOC
/// entries for the same layers, and an image ctr-remote converted keeps its layers byte for byte
/// through a cidfs push and pull.
#[test]
fn estargz_layers_match_ctr_remote() {
    let (a, b) = pair(None);
    let (work, layout, img) = generate(GenSpec {
        big_file_size: 11 * MIB,
        ..Default::default()
    });
    let archive = work.path().join("src.tar");
    gen::to_oci_archive(&layout, &img.tag, &archive);

    let ctd = Containerd::start();
    let src_ref = ctd
        .import(&archive)
        .into_iter()
        .next()
        .expect("an imported image");
    let dst_ref = "example.com/converted:esgz";
    ctd.convert_estargz(&src_ref, dst_ref);
    let exported = work.path().join("converted.tar");
    ctd.export(dst_ref, &exported);
    let theirs = layers_of_oci_archive(&exported, None);
    let theirs = &theirs.layers;

    let cid = push(&a, &[&format!("oci:{}:{}", s(&layout), img.tag)]);
    let ours_dir = work.path().join("ours");
    pull(&b, &cid, &format!("oci:{}", s(&ours_dir)));
    let ours = layers_of_oci_layout(&ours_dir, None).layers;
    let (ours, theirs_tocs) = (tocs(&ours), tocs(theirs));
    assert_eq!(ours.len(), 2, "two layers");
    assert!(
        ours[0].len() > 20 && ours[1].len() > 3,
        "TOCs too small to compare: {ours:?}"
    );
    assert!(
        ours[0].iter().any(|e| e.contains("Chunk")),
        "no multi-chunk file in the layer"
    );
    assert_eq!(ours, theirs_tocs);

    // ctr-remote's eStargz layers go through cidfs unchanged
    let cid2 = push(&a, &[&format!("oci-archive:{}", s(&exported))]);
    let back = work.path().join("back");
    pull(&b, &cid2, &format!("oci:{}", s(&back)));
    let kept = layers_of_oci_layout(&back, None).layers;
    assert_eq!(kept.len(), theirs.len());
    for (k, t) in kept.iter().zip(theirs) {
        assert_eq!(
            std::fs::read(k).expect("read"),
            std::fs::read(t).expect("read"),
            "layer changed"
        );
    }
}

/// Real runtimes run what cidfs pulls: containerd (`ctr images import` + `ctr run`) and
/// podman (`podman load` + `podman run`).
#[test]
fn pulled_archives_run_in_containerd_and_podman() {
    let (a, b) = pair(None);
    let (work, layout, img) = generate(GenSpec {
        busybox: true,
        big_file_size: MIB,
        ..Default::default()
    });
    let cid = push(&a, &[&format!("oci:{}:{}", s(&layout), img.tag)]);
    let archive = work.path().join("run.tar");
    pull(
        &b,
        &cid,
        &format!("docker-archive:{}:cidfs/hello:1", s(&archive)),
    );

    let ctd = Containerd::start();
    let name = ctd
        .import(&archive)
        .into_iter()
        .next()
        .expect("an imported image");
    assert_eq!(
        ctd.run_output(&name, &["cat", "/etc/hello"]).trim(),
        gen::HELLO_LINE
    );

    let podman = Podman::new();
    let name = podman.load(&archive);
    assert_eq!(
        podman.run_output(&name, &["cat", "/etc/hello"]).trim(),
        gen::HELLO_LINE
    );
}

/// REFERENCE §2: the root is a raw block holding the index descriptor; every descriptor below
/// it carries one ipfs:// URL whose content has the descriptor's digest and size; media types
/// are OCI; eStargz layers carry both annotations; the config's diff_ids are the layers' tars.
#[test]
fn the_image_format_follows_reference_2() {
    let a = Daemon::start(Opts::default());
    let (_work, layout, img) = generate(GenSpec {
        big_file_size: 5 * MIB,
        docker_media_types: true,
        ..Default::default()
    });
    let cid = push(&a, &[&format!("oci:{}:{}", s(&layout), img.tag)]);
    let root = a.ok(&["block", "get", &cid]);
    let text = String::from_utf8(root.clone()).expect("utf-8");
    assert!(
        text.starts_with(
            r#"{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:"#
        ),
        "{text}"
    );
    let desc: oci::Descriptor = serde_json::from_slice(&root).expect("descriptor");
    assert_eq!(desc.urls.len(), 1);

    let fetch = |d: &oci::Descriptor| -> Vec<u8> {
        assert_eq!(d.urls.len(), 1, "{d:?}");
        let c = d.urls[0].strip_prefix("ipfs://").expect("ipfs:// URL");
        assert!(c.starts_with("baf"), "not a base32 CIDv1: {c}");
        let bytes = a.ok(&["cat", c]);
        assert_eq!(bytes.len() as i64, d.size, "{}", d.digest);
        assert_eq!(oci::sha256_digest(&bytes), d.digest);
        bytes
    };
    let index: oci::Index = serde_json::from_slice(&fetch(&desc)).expect("index");
    assert_eq!(index.media_type, oci::OCI_INDEX);
    assert_eq!(index.manifests.len(), 1);
    let md = &index.manifests[0];
    assert_eq!(md.media_type, oci::OCI_MANIFEST);
    assert_eq!(
        md.platform.as_ref().expect("platform").to_string(),
        "linux/amd64"
    );
    let m: oci::Manifest = serde_json::from_slice(&fetch(md)).expect("manifest");
    assert_eq!(m.config.media_type, oci::OCI_CONFIG);
    let config: serde_json::Value = serde_json::from_slice(&fetch(&m.config)).expect("config");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(diff_ids.len(), m.layers.len());
    for (l, id) in m.layers.iter().zip(diff_ids) {
        assert_eq!(l.media_type, oci::OCI_LAYER_GZIP);
        let blob = fetch(l);
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&blob[..]), &mut tar)
            .expect("gunzip");
        assert_eq!(id.as_str(), Some(oci::sha256_digest(&tar).as_str()));
        assert_eq!(
            l.annotations[oci::ANNOTATION_UNCOMPRESSED_SIZE],
            tar.len().to_string()
        );
        assert!(l.annotations[oci::ANNOTATION_TOC_DIGEST].starts_with("sha256:"));
    }
    // inspect shows the same, as a table and as JSON
    let table = String::from_utf8(a.ok(&["image", "inspect", &cid])).expect("utf-8");
    assert!(table.contains(&m.layers[0].digest[..19]), "{table}");
    let json: serde_json::Value =
        serde_json::from_slice(&a.ok(&["image", "inspect", "--json", &format!("/ipfs/{cid}")]))
            .expect("json");
    for l in json["images"][0]["layers"].as_array().expect("layers") {
        assert_eq!(l["estargz"], true);
    }
}

/// Bad input: each case fails with an error that names the problem, prints no CID, pins
/// nothing and leaves no output behind.
#[test]
fn bad_images_fail_cleanly() {
    let a = Daemon::start(Opts::default());
    let work = tempfile::tempdir().expect("tempdir");
    let fresh = |name: &str| {
        let dir = work.path().join(name);
        let img = gen::build_oci_layout(
            &dir,
            &GenSpec {
                big_file_size: MIB,
                ..Default::default()
            },
        );
        (dir, img)
    };

    // a layer blob missing from the layout
    let (dir, img) = fresh("missing");
    std::fs::remove_file(dir.join("blobs/sha256").join(&img.layer_digests[1][7..])).expect("rm");
    let e = push_fails(&a, &[&format!("oci:{}:{}", s(&dir), img.tag)]);
    assert!(e.contains("missing from the layout"), "{e}");

    // an unknown layer media type
    let (dir, img) = fresh("mediatype");
    rewrite_manifest(&dir, &img.tag, |m| {
        m["layers"][0]["mediaType"] = "application/x-mystery".into()
    });
    let e = push_fails(&a, &[&format!("oci:{}:{}", s(&dir), img.tag)]);
    assert!(
        e.contains("unknown media type \"application/x-mystery\""),
        "{e}"
    );

    // a truncated archive
    let (dir, img) = fresh("truncated");
    let archive = work.path().join("t.tar");
    gen::to_docker_archive(&dir, &img.tag, &archive, "t/t:1");
    let len = std::fs::metadata(&archive).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&archive)
        .expect("open")
        .set_len(len / 2 + 7)
        .expect("truncate");
    let e = push_fails(&a, &[&format!("docker-archive:{}", s(&archive))]);
    assert!(e.contains("truncated"), "{e}");

    // layer tar entries with ../ and absolute names
    for hostile in ["../escape", "/etc/evil"] {
        let dir = work.path().join(format!("hostile{}", hostile.len()));
        let tag = layout_with_raw_entry(&dir, hostile);
        let e = push_fails(&a, &[&format!("oci:{}:{tag}", s(&dir))]);
        assert!(
            e.contains(hostile.trim_start_matches('/')),
            "{hostile}: {e}"
        );
    }
    assert_eq!(pins(&a).trim(), "", "a failed push left pins");

    // a digest mismatch on pull: a root whose index descriptor has the wrong digest
    let (dir, img) = fresh("good");
    let cid = push(&a, &[&format!("oci:{}:{}", s(&dir), img.tag)]);
    let mut root: oci::Descriptor =
        serde_json::from_slice(&a.ok(&["block", "get", &cid])).expect("root");
    root.digest = oci::sha256_digest(b"something else");
    let forged = work.path().join("forged.json");
    std::fs::write(&forged, oci::to_json(&root)).expect("write");
    let bad = String::from_utf8(a.ok(&["block", "put", s(&forged)])).expect("utf-8");
    let out_dir = work.path().join("out-layout");
    let out_tar = work.path().join("out.tar");
    for dest in [
        format!("oci:{}", s(&out_dir)),
        format!("docker-archive:{}", s(&out_tar)),
    ] {
        let out = a.cli(&["image", "pull", bad.trim(), "--to", &dest]);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("digest mismatch"), "{e}");
    }
    assert!(
        !out_dir.exists() && !out_tar.exists(),
        "a failed pull left output"
    );
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".cidfs-pull-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // malformed references
    let out = a.cli(&["image", "pull", "bafnotacid", "--to", "oci:/tmp/x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid CID"));
    let e = push_fails(&a, &["zip:/tmp/x"]);
    assert!(e.contains("unknown transport"), "{e}");
}

/// Rewrites the manifest tagged `tag` in a layout with `edit`; index.json follows.
fn rewrite_manifest(dir: &Path, tag: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("index")).expect("json");
    let entry = index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .iter_mut()
        .find(|d| d["annotations"][gen::REF_NAME] == tag)
        .expect("tagged entry");
    let old = dir
        .join("blobs/sha256")
        .join(&entry["digest"].as_str().expect("digest")[7..]);
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(old).expect("manifest")).expect("json");
    edit(&mut m);
    let bytes = serde_json::to_vec(&m).expect("json");
    let d = oci::sha256_digest(&bytes);
    std::fs::write(dir.join("blobs/sha256").join(&d[7..]), &bytes).expect("write");
    entry["digest"] = d.into();
    entry["size"] = bytes.len().into();
    std::fs::write(&index_path, serde_json::to_vec(&index).expect("json")).expect("write");
}

/// A one-layer layout whose layer has an entry named `name` written raw (tar libraries refuse
/// to write `..` and absolute names); returns its tag.
fn layout_with_raw_entry(dir: &Path, name: &str) -> &'static str {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut tar = Vec::new();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(b"evil");
    tar.resize(tar.len() + 508 + 1024, 0);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |bytes: &[u8]| {
        let d = oci::sha256_digest(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).expect("write");
        d
    };
    let layer = put(&tar);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}
    }))
    .expect("json");
    let cd = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": oci::OCI_MANIFEST,
        "config": {"mediaType": oci::OCI_CONFIG, "digest": cd, "size": config.len()},
        "layers": [{"mediaType": oci::OCI_LAYER, "digest": layer, "size": tar.len()}],
    }))
    .expect("json");
    let md = put(&manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": oci::OCI_MANIFEST, "digest": md, "size": manifest.len(), "annotations": {(gen::REF_NAME): "hostile"}}
    ]});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("write");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    "hostile"
}

/// `docker://` with basic auth against Debian's docker-registry (htpasswd): without credentials
/// the push fails saying so; with `--creds` and with an auth file it works and gives the same CID.
#[test]
fn registry_sources_authenticate() {
    let a = Daemon::start(Opts::default());
    let (work, layout, img) = generate(GenSpec {
        big_file_size: MIB,
        ..Default::default()
    });
    let registry = Registry::start_with(Some(Auth {
        user: "alice".into(),
        password: "s3cret".into(),
    }));
    let creds = registry.creds().expect("creds");
    let remote = gen::push_to_registry(
        &layout,
        &img.tag,
        &registry.addr(),
        "private/app:1",
        Some(&creds),
    );
    let src = format!("docker://{remote}");

    let e = push_fails(&a, &["--insecure", &src]);
    assert!(e.contains("--creds"), "{e}");
    let e = push_fails(&a, &["--insecure", "--creds", "alice:wrong", &src]);
    assert!(e.contains("rejected"), "{e}");
    let with_creds = push(&a, &["--insecure", "--creds", &creds, &src]);

    let authfile = work.path().join("auth.json");
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &creds);
    let json = serde_json::json!({"auths": {registry.addr(): {"auth": auth}}});
    std::fs::write(&authfile, json.to_string()).expect("write");
    let with_file = push(&a, &["--insecure", "--authfile", s(&authfile), &src]);
    assert_eq!(with_creds, with_file);
    // without --insecure the client speaks TLS to a plain-HTTP port and fails clearly
    let e = push_fails(&a, &["--creds", &creds, &src]);
    assert!(
        e.to_lowercase().contains("tls") || e.contains("https"),
        "{e}"
    );
}

/// The lazy mount's inode table, merged from the pulled layers' TOCs alone, describes the same
/// tree as a real unpack: kinds, modes, owners, sizes, link targets, xattrs, mtimes, and one
/// inode per hardlinked file.
fn assert_inode_table_matches(expected: &crate::images::tree::Tree, layers: &[PathBuf]) {
    use crate::images::tree::{Kind, Node};
    use cidfs::mount::inode::{Kind as K, Table};
    let tocs: Vec<_> = layers
        .iter()
        .map(|l| read_toc_file(l).expect("TOC").toc)
        .collect();
    let table = Table::build(&tocs).expect("inode table");
    let mut got = crate::images::tree::Tree::new();
    for (path, n) in table.walk().into_iter().filter(|(p, _)| !p.is_empty()) {
        let (kind, link) = match &n.kind {
            K::Dir { .. } => (Kind::Dir, None),
            K::File(_) => (Kind::File, None),
            K::Symlink { target } => (Kind::Symlink, Some(target.clone())),
            K::Char { major, minor } => (
                Kind::CharDev {
                    major: *major,
                    minor: *minor,
                },
                None,
            ),
            K::Block { major, minor } => (
                Kind::BlockDev {
                    major: *major,
                    minor: *minor,
                },
                None,
            ),
            K::Fifo => (Kind::Fifo, None),
        };
        let size = if kind == Kind::File { n.size } else { 0 };
        got.insert(
            path,
            Node {
                kind,
                mode: n.perm,
                uid: n.uid.into(),
                gid: n.gid.into(),
                size,
                sha256: None,
                link,
                xattrs: n.xattrs.clone(),
                mtime: n.mtime as u64,
                hardlink: None,
            },
        );
    }
    let mut want = expected.clone();
    for node in want.values_mut() {
        node.sha256 = None;
        node.hardlink = None;
    }
    assert_same_tree(&want, &got);
    let mut links = 0;
    for (path, node) in expected {
        if let Some(target) = &node.hardlink {
            let (a, b) = (
                table.resolve(path).expect("link"),
                table.resolve(target).expect("target"),
            );
            assert_eq!(a.ino, b.ino, "{path} and {target} are one file");
            assert!(a.nlink >= 2);
            links += 1;
        }
    }
    assert!(links > 0, "the generated image has a hardlink");
}
