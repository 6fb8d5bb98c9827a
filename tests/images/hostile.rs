//! Hostile images built from honest ones on a node: the same layers under a config that lies.

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
    let add = |v: &serde_json::Value, media_type: &str| -> serde_json::Value {
        let bytes = serde_json::to_vec(v).expect("JSON");
        let path = d
            .repo
            .path()
            .join(format!("blob-{}", rand::random::<u32>()));
        std::fs::write(&path, &bytes).expect("write");
        let out = d.ok(&["add", "-q", "--cid-version=1", path.to_str().expect("utf8")]);
        let c = String::from_utf8(out).expect("utf8").trim().to_string();
        serde_json::json!({
            "mediaType": media_type,
            "digest": super::gen::digest(&bytes),
            "size": bytes.len(),
            "urls": [format!("ipfs://{c}")],
        })
    };
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
    manifest["config"] = add(&config, &media);
    let media = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    // the image CID names the root descriptor
    let root = add(&manifest, &media);
    let path = d.repo.path().join("root.json");
    std::fs::write(&path, serde_json::to_vec(&root).expect("JSON")).expect("write");
    String::from_utf8(d.ok(&["add", "-q", "--cid-version=1", path.to_str().expect("utf8")]))
        .expect("utf8")
        .trim()
        .to_string()
}
