//! Images rebuilt from honest ones on a node: hostile ones (the same layers under a config that
//! lies, or layers that lie) and relocated ones (the same blobs under other CIDs).

use crate::util::Daemon;

/// The config DiffIDs of image `cid` on `d` (of its lone or first manifest).
pub fn diff_ids_of(d: &Daemon, cid: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let json = |c: &str| -> serde_json::Value {
        serde_json::from_slice(&d.ok(&["cat", c])).expect("JSON blob")
    };
    let cid_of = |desc: &serde_json::Value| -> String {
        desc["urls"]
            .as_array()
            .and_then(|u| u.iter().find_map(|u| u.as_str()?.strip_prefix("ipfs://")))
            .unwrap_or_else(|| panic!("no ipfs:// URL in {desc}"))
            .to_string()
    };
    let mut desc = json(cid);
    if desc["mediaType"]
        .as_str()
        .is_some_and(|m| m.contains("index"))
    {
        desc = json(&cid_of(&desc))["manifests"][0].clone();
    }
    let manifest = json(&cid_of(&desc));
    let config = json(&cid_of(&manifest["config"]));
    let ids = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .clone();
    (manifest, ids)
}

/// An image made of `cid`'s layers whose config claims the DiffIDs `claimed` (another
/// image's): the hostile image of finding 4. Returns its CID.
pub fn claiming(d: &Daemon, cid: &str, claimed: &[serde_json::Value]) -> String {
    let (mut manifest, ids) = diff_ids_of(d, cid);
    assert_eq!(ids.len(), claimed.len(), "same number of layers");
    let config_cid =
        manifest["config"]["urls"][0].as_str().expect("url")["ipfs://".len()..].to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&d.ok(&["cat", &config_cid])).expect("config");
    config["rootfs"]["diff_ids"] = serde_json::Value::Array(claimed.to_vec());
    // (another config than the victim's even where the two images differ only in layers)
    config["author"] = "a hostile image".into();
    let media = manifest["config"]["mediaType"]
        .as_str()
        .expect("type")
        .to_string();
    manifest["config"] = add_blob(d, &serde_json::to_vec(&config).expect("JSON"), &media);
    root_of(d, &manifest)
}

/// `cid`'s image with its layers' `ipfs://` URLs replaced by `cids` (the same blobs added
/// elsewhere, e.g. by kubo); added on `d`, its CID.
pub fn with_layer_cids(d: &Daemon, cid: &str, cids: &[String]) -> String {
    let (mut manifest, _) = diff_ids_of(d, cid);
    let layers = manifest["layers"].as_array_mut().expect("layers");
    assert_eq!(layers.len(), cids.len(), "one CID per layer");
    for (l, c) in layers.iter_mut().zip(cids) {
        l["urls"] = serde_json::json!([format!("ipfs://{c}")]);
    }
    root_of(d, &manifest)
}

/// Two images of the same shape on `d` (busybox, `big` bytes of big file) and a third made of
/// the second's layers claiming the first's DiffIDs: (victim, its DiffIDs, the impostor).
pub fn victim_and_impostor(d: &Daemon, big: usize) -> (String, Vec<serde_json::Value>, String) {
    let spec = |seed| super::gen::GenSpec {
        busybox: true,
        big_file_size: big,
        seed,
        ..Default::default()
    };
    let (_, victim) = crate::mount::generate_and_push(d, spec(1));
    let (_, other) = crate::mount::generate_and_push(d, spec(2));
    let (_, victim_ids) = diff_ids_of(d, &victim);
    let impostor = claiming(d, &other, &victim_ids);
    (victim, victim_ids, impostor)
}

/// Adds `manifest` on `d` and the root descriptor that names it; the image's CID.
fn root_of(d: &Daemon, manifest: &serde_json::Value) -> String {
    let media = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    let root = add_blob(d, &serde_json::to_vec(manifest).expect("JSON"), &media);
    let path = d
        .repo
        .path()
        .join(format!("root-{}.json", rand::random::<u64>()));
    std::fs::write(&path, serde_json::to_vec(&root).expect("JSON")).expect("write");
    String::from_utf8(d.ok(&["add", "-q", "--cid-version=1", path.to_str().expect("utf8")]))
        .expect("utf8")
        .trim()
        .to_string()
}

/// One layer of a hostile image: its blob and what the manifest and config claim of it.
pub struct HostileLayer {
    pub blob: Vec<u8>,
    /// The manifest's digest and size for it (None: the true ones).
    pub digest: Option<String>,
    pub size: Option<i64>,
    /// The `toc.digest` annotation (None: none, a plain gzip layer).
    pub toc_digest: Option<String>,
}

/// gzip of `data` as one member.
pub fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// An eStargz blob: the gzip `members` (payloads) in order, then the TOC `json` as the tar entry
/// `stargz.index.json` in a member of its own, then the footer. The TOC says whatever it says.
pub fn estargz_blob(members: &[Vec<u8>], json: &[u8]) -> HostileLayer {
    let mut blob: Vec<u8> = members.concat();
    let toc_offset = blob.len() as u64;
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "stargz.index.json", json)
        .expect("tar");
    blob.extend_from_slice(&gz(&tar.into_inner().expect("tar")));
    blob.extend_from_slice(&cidfs::image::estargz::footer::build(toc_offset));
    HostileLayer {
        blob,
        digest: None,
        size: None,
        toc_digest: Some(super::gen::digest(json)),
    }
}

/// A TOC of `entries` (JSON objects) at version 1.
pub fn toc(entries: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "version": 1, "entries": entries })).expect("JSON")
}

/// Adds `v` on `d` as a blob; its descriptor of `media_type`.
fn add_blob(d: &Daemon, bytes: &[u8], media_type: &str) -> serde_json::Value {
    let path = d
        .repo
        .path()
        .join(format!("blob-{}", rand::random::<u64>()));
    std::fs::write(&path, bytes).expect("write");
    let out = d.ok(&["add", "-q", "--cid-version=1", path.to_str().expect("utf8")]);
    let _ = std::fs::remove_file(&path);
    let c = String::from_utf8(out).expect("utf8").trim().to_string();
    serde_json::json!({
        "mediaType": media_type,
        "digest": super::gen::digest(bytes),
        "size": bytes.len(),
        "urls": [format!("ipfs://{c}")],
    })
}

/// An image of `layers` on `d` (a lone manifest, linux/amd64, DiffIDs made up); its CID.
pub fn image_of(d: &Daemon, layers: &[HostileLayer]) -> String {
    let mut descs = Vec::new();
    for l in layers {
        let mut desc = add_blob(d, &l.blob, "application/vnd.oci.image.layer.v1.tar+gzip");
        if let Some(digest) = &l.digest {
            desc["digest"] = digest.clone().into();
        }
        if let Some(size) = l.size {
            desc["size"] = size.into();
        }
        if let Some(t) = &l.toc_digest {
            desc["annotations"] =
                serde_json::json!({ "containerd.io/snapshot/stargz/toc.digest": t });
        }
        descs.push(desc);
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| super::gen::digest(&l.blob)).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = add_blob(
        d,
        &serde_json::to_vec(&config).expect("JSON"),
        "application/vnd.oci.image.config.v1+json",
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descs,
    });
    root_of(d, &manifest)
}

/// A tar entry header block of `kind` for `size` bytes.
fn tar_header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).expect("name");
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

/// The hostile images, each with what it tries. Every one must be refused with a clear error
/// or served correctly.
pub fn corpus() -> Vec<(&'static str, Vec<HostileLayer>)> {
    let entry = |name: &str, kind: &str| serde_json::json!({ "name": name, "type": kind });
    let mut v = Vec::new();

    // a name of 4,000 parts (the tree once kept every full path: about 10^12 bytes)
    let deep = "a/".repeat(4000) + "f";
    v.push((
        "a name of 4,000 parts",
        vec![estargz_blob(&[], &toc(&[entry(&deep, "dir")]))],
    ));

    // 1.2 million entries in 30 MB of JSON (about 1.3 GB as parsed entries)
    let many: Vec<serde_json::Value> = (0..1_200_000)
        .map(|i| entry(&format!("d{i}"), "dir"))
        .collect();
    v.push((
        "1.2 million TOC entries",
        vec![estargz_blob(&[], &toc(&many))],
    ));

    // a file of 1 TiB in one chunk: inflating it would take 1 TiB
    let huge = serde_json::json!({ "name": "huge", "type": "reg", "size": 1u64 << 40, "offset": 0,
        "chunkSize": 1u64 << 40, "chunkDigest": format!("sha256:{}", "0".repeat(64)) });
    v.push((
        "a 1 TiB chunk",
        vec![estargz_blob(&[gz(b"x")], &toc(&[huge]))],
    ));

    // a gzip bomb: 1 GiB of zeros in about 1 MiB, under a chunk that claims 16 MiB
    let zeros = vec![0u8; 16 << 20];
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..64 {
        std::io::Write::write_all(&mut bomb, &zeros).expect("gzip");
    }
    let bomb = bomb.finish().expect("gzip");
    let reg = serde_json::json!({ "name": "bomb", "type": "reg", "size": 16 << 20, "offset": 0,
        "chunkSize": 16 << 20, "chunkDigest": super::gen::digest(&zeros) });
    v.push((
        "a gzip bomb under a 16 MiB chunk",
        vec![estargz_blob(&[bomb], &toc(&[reg]))],
    ));

    // sizes and digests that lie
    let payload = b"honest bytes\n".to_vec();
    let honest = || {
        let reg = serde_json::json!({ "name": "f", "type": "reg", "size": payload.len(), "offset": 0,
            "chunkSize": payload.len(), "chunkDigest": super::gen::digest(&payload) });
        estargz_blob(&[gz(&payload)], &toc(&[reg]))
    };
    let mut l = honest();
    l.size = Some(l.blob.len() as i64 * 10);
    v.push(("a blob size ten times the truth", vec![l]));
    let mut l = honest();
    l.size = Some(-5);
    v.push(("a negative blob size", vec![l]));
    let mut l = honest();
    l.digest = Some(format!("sha256:{}", "ab".repeat(32)));
    v.push(("a layer digest claimed from another blob", vec![l]));
    let lie = serde_json::json!({ "name": "f", "type": "reg", "size": 13, "offset": 0,
        "chunkSize": 13, "chunkDigest": format!("sha256:{}", "cd".repeat(32)) });
    v.push((
        "a chunk digest that lies",
        vec![estargz_blob(&[gz(&payload)], &toc(&[lie]))],
    ));

    // a chain of PAX headers before one entry, in a layer that is not eStargz
    let mut tar = Vec::new();
    let record = |len: usize| {
        let body = "x".repeat(len);
        let line = format!("comment={body}\n");
        // "LEN key=value\n", LEN counting its own digits and the space
        let mut n = line.len() + 2;
        while n != line.len() + 1 + n.to_string().len() {
            n = line.len() + 1 + n.to_string().len();
        }
        format!("{n} {line}").into_bytes()
    };
    for _ in 0..10 {
        let r = record(512 << 10);
        let h = tar_header("pax", tar::EntryType::XHeader, r.len() as u64);
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(&r);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    let h = tar_header("f", tar::EntryType::Regular, 0);
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&[0u8; 1024]);
    v.push((
        "5 MiB of chained PAX headers",
        vec![HostileLayer {
            blob: gz(&tar),
            digest: None,
            size: None,
            toc_digest: None,
        }],
    ));

    // more layers than any runtime stacks
    v.push(("200 layers", (0..200).map(|_| honest()).collect()));
    v
}
