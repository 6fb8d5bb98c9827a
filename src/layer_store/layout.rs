//! Names in the additional layer store and what they mean (pure).
//!
//! - `<base64std(ref)>`: a directory per image reference, as containers/storage writes it, e.g.
//!   `base64("127.0.0.1:5050/ipfs/<CID>:latest")`, or `base64("127.0.0.1:5050/team/app:1.0")`
//!   for a name pushed to the registry endpoint. The host part is not used: the CID (or the
//!   name, in this node's name table) names the image wherever it came from, and its content
//!   comes from the swarm.
//! - `<digest>`: a layer of that image, by its compressed digest (containers/storage 1.43) or by
//!   its eStargz TOC digest (≥ 1.54).
//! - in it: `diff` (the layer tree), `info` (JSON for containers/storage), `blob` (the compressed
//!   bytes) and `use` (never exists; creating it is a use notification).

use base64::Engine as _;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::image::oci::{Descriptor, ANNOTATION_TOC_DIGEST, ANNOTATION_UNCOMPRESSED_SIZE};

/// Why a name is not part of the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("{0:?} is not base64 of an image reference")]
    NotBase64(String),
    #[error("image reference {0:?} is not HOST/ipfs/<CID>[:TAG|@DIGEST] or HOST/NAME[:TAG]")]
    NotIpfs(String),
    #[error("image reference {reference:?}: bad CID: {reason}")]
    Cid { reference: String, reason: String },
    #[error("{0:?} is not a layer digest (sha256:<64 hex>)")]
    Digest(String),
}

/// An image reference of the store, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The reference as containers/storage wrote it.
    pub text: String,
    pub image: crate::cidref::ImageRef,
}

/// The directory name containers/storage uses for `reference`.
pub fn ref_dir_name(reference: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(reference)
}

/// Decodes a reference directory name.
pub fn parse_ref_dir(name: &str) -> Result<ImageRef, LayoutError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(name)
        .map_err(|_| LayoutError::NotBase64(name.into()))?;
    let text = String::from_utf8(raw).map_err(|_| LayoutError::NotBase64(name.into()))?;
    let image = crate::cidref::parse_registry_image(&text).map_err(|e| match e {
        crate::cidref::CidRefError::Invalid { reason, .. } => LayoutError::Cid {
            reference: text.clone(),
            reason,
        },
        _ => LayoutError::NotIpfs(text.clone()),
    })?;
    Ok(ImageRef { text, image })
}

/// Checks a layer directory name: `sha256:` and 64 lowercase hex digits.
pub fn parse_digest_dir(name: &str) -> Result<&str, LayoutError> {
    match name.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(name)
        }
        _ => Err(LayoutError::Digest(name.into())),
    }
}

/// The layer of `layers` that a layer directory names, by compressed digest or TOC digest;
/// its index.
pub fn find_layer(layers: &[Descriptor], digest: &str) -> Option<usize> {
    layers.iter().position(|l| l.digest == digest).or_else(|| {
        layers.iter().position(|l| {
            l.annotations.get(ANNOTATION_TOC_DIGEST).map(String::as_str) == Some(digest)
        })
    })
}

/// `info`: the fields of containers/storage's `Layer` that both store layouts need. Field order
/// and names follow Go's `json` tags of `storage.Layer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Info {
    #[serde(rename = "compressed-diff-digest")]
    pub compressed_digest: String,
    #[serde(rename = "compressed-size")]
    pub compressed_size: i64,
    #[serde(rename = "diff-digest")]
    pub diff_digest: String,
    #[serde(rename = "toc-digest", skip_serializing_if = "Option::is_none")]
    pub toc_digest: Option<String>,
    /// Uncompressed size, -1 when the manifest does not say.
    #[serde(rename = "diff-size")]
    pub diff_size: i64,
    /// containers/storage `archive.Compression`: 2 = gzip.
    pub compression: u8,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, String>,
}

/// containers/storage's code for gzip.
const GZIP: u8 = 2;

impl Info {
    /// The `info` of `layer` whose config DiffID is `diff_id`.
    pub fn of(layer: &Descriptor, diff_id: &str) -> Info {
        let toc_digest = layer.annotations.get(ANNOTATION_TOC_DIGEST).cloned();
        let mut flags = BTreeMap::new();
        if toc_digest.is_some() {
            // containers/image refuses a TOC-keyed layer without it
            flags.insert("expected-layer-diffid".into(), diff_id.to_string());
        }
        Info {
            compressed_digest: layer.digest.clone(),
            compressed_size: layer.size,
            diff_digest: diff_id.to_string(),
            toc_digest,
            diff_size: layer
                .annotations
                .get(ANNOTATION_UNCOMPRESSED_SIZE)
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1),
            compression: GZIP,
            flags,
        }
    }

    /// One JSON line and a newline, as Go's `json.Encoder` writes it.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafkreib62fjdg36eam22bvven6z3zgl3tm3wqthyvnr3aph6zokkqtd2t4";

    #[test]
    fn reference_dirs_decode_to_image_cids() {
        for text in [
            format!("127.0.0.1:5050/ipfs/{CID}:latest"),
            format!("localhost/ipfs/{CID}"),
            format!("//127.0.0.1:5050/ipfs/{CID}:latest"),
            format!("docker://reg:1/ipfs/{CID}@sha256:{}", "a".repeat(64)),
        ] {
            let name = ref_dir_name(&text);
            let r = parse_ref_dir(&name).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.text, text);
            assert_eq!(r.image, crate::cidref::ImageRef::Cid(CID.parse().unwrap()));
        }
        assert_eq!(
            ref_dir_name("127.0.0.1:5050/ipfs/x:latest"),
            "MTI3LjAuMC4xOjUwNTAvaXBmcy94OmxhdGVzdA=="
        );
        let named = parse_ref_dir(&ref_dir_name("127.0.0.1:5050/team/app:1.0")).unwrap();
        assert_eq!(
            named.image,
            crate::cidref::ImageRef::Named {
                repo: "team/app".into(),
                tag: "1.0".into()
            }
        );
        for bad in [
            "not base64!".to_string(),
            ref_dir_name("docker.io/Library/busybox:latest"),
            ref_dir_name("127.0.0.1/ipfs/notacid:latest"),
            ref_dir_name(&format!("127.0.0.1/ipfs/{CID}/more:latest")),
            ref_dir_name("noslash"),
        ] {
            assert!(parse_ref_dir(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_dirs_and_layer_lookup() {
        let d = format!("sha256:{}", "b".repeat(64));
        assert_eq!(parse_digest_dir(&d), Ok(d.as_str()));
        for bad in ["sha256:B", "md5:00", "..", "sha256:../../x"] {
            assert!(parse_digest_dir(bad).is_err(), "{bad}");
        }
        let mut l0 = Descriptor::of("application/vnd.oci.image.layer.v1.tar+gzip", b"zero");
        l0.annotations.insert(
            ANNOTATION_TOC_DIGEST.into(),
            format!("sha256:{}", "c".repeat(64)),
        );
        let l1 = Descriptor::of("application/vnd.oci.image.layer.v1.tar+gzip", b"one");
        let layers = [l0.clone(), l1.clone()];
        assert_eq!(find_layer(&layers, &l1.digest), Some(1));
        assert_eq!(
            find_layer(&layers, &format!("sha256:{}", "c".repeat(64))),
            Some(0)
        );
        assert_eq!(find_layer(&layers, &d), None);
    }

    #[test]
    fn info_carries_what_both_store_layouts_need() {
        let mut l = Descriptor::of("application/vnd.oci.image.layer.v1.tar+gzip", b"blob");
        l.annotations
            .insert(ANNOTATION_TOC_DIGEST.into(), "sha256:toc".into());
        l.annotations
            .insert(ANNOTATION_UNCOMPRESSED_SIZE.into(), "1024".into());
        let json = String::from_utf8(Info::of(&l, "sha256:diff").to_json()).unwrap();
        assert_eq!(
            json,
            format!(
                "{{\"compressed-diff-digest\":\"{}\",\"compressed-size\":4,\"diff-digest\":\"sha256:diff\",\"toc-digest\":\"sha256:toc\",\"diff-size\":1024,\"compression\":2,\"flags\":{{\"expected-layer-diffid\":\"sha256:diff\"}}}}\n",
                l.digest
            )
        );
        // no eStargz annotations: no TOC digest, no flags, unknown size
        let plain = Descriptor::of("application/vnd.oci.image.layer.v1.tar+gzip", b"x");
        let i = Info::of(&plain, "sha256:d");
        assert_eq!((i.toc_digest, i.flags.len(), i.diff_size), (None, 0, -1));
    }
}
