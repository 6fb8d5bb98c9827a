//! OCI image types (descriptor, manifest, index, platform), media types, digests, and the
//! Docker → OCI media type rewrite (REFERENCE §2.1).
//!
//! Serialization follows Go's `ocispec` structs field for field, so [`to_json`] writes the
//! same bytes `json.Marshal` would: fields in Go order, empty ones omitted, maps sorted.
//! Fields this crate does not model are dropped on re-serialization, as containerd's
//! converter drops them.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub const OCI_LAYOUT_VERSION: &str = "1.0.0";

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Annotation: digest of the uncompressed eStargz TOC JSON (REFERENCE §1.6).
pub const ANNOTATION_TOC_DIGEST: &str = "containerd.io/snapshot/stargz/toc.digest";
/// Annotation: decimal size of the uncompressed layer tar (REFERENCE §1.6).
pub const ANNOTATION_UNCOMPRESSED_SIZE: &str = "io.containers.estargz.uncompressed-size";
/// Annotation (cidfs's own): the compressed offset of an eStargz layer's `.prefetch.landmark`,
/// in decimal. The layer's bytes before it hold the files to prefetch, so a reader can start
/// fetching them before it has read the TOC. A hint only: nothing is trusted because of it.
pub const ANNOTATION_PREFETCH_END: &str = "io.cidfs.estargz.prefetch-end";
/// Annotation: the tag of a manifest in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The URL scheme that carries a descriptor's CID.
pub const IPFS_URL_PREFIX: &str = "ipfs://";

/// What a blob of a given media type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Index,
    Manifest,
    Config,
    /// A layer tar; `gzip` when compressed with gzip, else plain.
    Layer {
        gzip: bool,
    },
}

/// Why an OCI value (media type, platform, descriptor URL, config, digest) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    #[error(
        "unsupported media type {0}: zstd layers cannot be converted (convert them to gzip first)"
    )]
    Zstd(String),
    #[error("unknown media type {0:?}")]
    MediaType(String),
    #[error("bad platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")]
    Platform(String),
    #[error("descriptor {0} has no ipfs:// URL: no CID is recorded")]
    NoCid(String),
    #[error("descriptor {digest}: bad CID {cid:?} in its ipfs:// URL: {reason}")]
    BadCid {
        digest: String,
        cid: String,
        reason: String,
    },
    #[error("bad image config JSON: {0}")]
    Config(String),
    #[error("bad digest {0:?}: only sha256 digests are supported")]
    DigestAlgorithm(String),
    #[error("bad digest {0:?}: expected sha256: and 64 lowercase hex digits")]
    Digest(String),
}

/// The OCI media type for a Docker (or OCI) one, and what it is. Unknown types (including
/// zstd layers, which cidfs cannot convert) are errors naming the type.
pub fn classify(media_type: &str) -> Result<(&'static str, Kind), OciError> {
    Ok(match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => (OCI_INDEX, Kind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => (OCI_MANIFEST, Kind::Manifest),
        OCI_CONFIG | DOCKER_CONFIG => (OCI_CONFIG, Kind::Config),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => (OCI_LAYER_GZIP, Kind::Layer { gzip: true }),
        OCI_LAYER | DOCKER_LAYER => (OCI_LAYER, Kind::Layer { gzip: false }),
        OCI_LAYER_NONDIST_GZIP | DOCKER_FOREIGN_LAYER_GZIP => {
            (OCI_LAYER_NONDIST_GZIP, Kind::Layer { gzip: true })
        }
        OCI_LAYER_NONDIST => (OCI_LAYER_NONDIST, Kind::Layer { gzip: false }),
        OCI_LAYER_ZSTD => return Err(OciError::Zstd(media_type.to_string())),
        other => return Err(OciError::MediaType(other.to_string())),
    })
}

/// Go `ocispec.Platform`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// `os/arch[/variant]`, as `--platform` takes it.
    pub fn parse(s: &str) -> Result<Platform, OciError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty();
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                ..Default::default()
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: variant.to_string(),
                ..Default::default()
            }),
            _ => Err(OciError::Platform(s.to_string())),
        }
    }

    /// The platform this binary runs on, in OCI names.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            ..Default::default()
        }
    }

    /// Whether `self` (a wanted platform) accepts `other` (an image's). An empty wanted variant
    /// accepts any variant.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_empty() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// Go `ocispec.Descriptor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub artifact_type: String,
}

impl Descriptor {
    /// A descriptor of `bytes` with the given media type.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: sha256_digest(bytes),
            size: bytes.len() as i64,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: String::new(),
        }
    }

    /// The CID in the first `ipfs://` URL (REFERENCE §2.1 `GetCID`), parsed.
    pub fn cid(&self) -> Result<cid::Cid, OciError> {
        let s = self
            .urls
            .iter()
            .find_map(|u| u.strip_prefix(IPFS_URL_PREFIX))
            .ok_or_else(|| OciError::NoCid(self.digest.clone()))?;
        cid::Cid::try_from(s).map_err(|e| OciError::BadCid {
            digest: self.digest.clone(),
            cid: s.to_string(),
            reason: e.to_string(),
        })
    }

    /// Replace the URLs with the one `ipfs://` URL of `cid` (always CIDv1, base32).
    pub fn set_cid(&mut self, cid: &cid::Cid) {
        self.urls = vec![format!("{IPFS_URL_PREFIX}{cid}")];
    }
}

/// Go `ocispec.Manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: i32,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub artifact_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Go `ocispec.Index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: i32,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub artifact_type: String,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: OCI_INDEX.to_string(),
            artifact_type: String::new(),
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The part of an image config this crate reads or rewrites; the rest is kept verbatim by
/// [`set_diff_ids`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigSummary {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: String,
    #[serde(default)]
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigSummary {
    pub fn parse(bytes: &[u8]) -> Result<ConfigSummary, OciError> {
        serde_json::from_slice(bytes).map_err(|e| OciError::Config(e.to_string()))
    }

    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            ..Default::default()
        }
    }
}

/// The config with `rootfs.diff_ids` replaced, re-serialized like containerd's converter does
/// (Go `json.Marshal` of a `map[string]*json.RawMessage`: top-level keys sorted, values kept).
pub fn set_diff_ids(config: &[u8], diff_ids: &[String]) -> Result<Vec<u8>, OciError> {
    let bad = |e: &dyn std::fmt::Display| OciError::Config(e.to_string());
    let mut top: BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(config).map_err(|e| bad(&e))?;
    let mut rootfs: BTreeMap<String, Box<serde_json::value::RawValue>> = match top.get("rootfs") {
        Some(r) => serde_json::from_str(r.get()).map_err(|e| bad(&format!("rootfs: {e}")))?,
        None => BTreeMap::new(),
    };
    let ids = serde_json::value::to_raw_value(diff_ids).map_err(|e| bad(&e))?;
    rootfs.insert("diff_ids".into(), ids);
    if !rootfs.contains_key("type") {
        rootfs.insert(
            "type".into(),
            serde_json::value::to_raw_value("layers").map_err(|e| bad(&e))?,
        );
    }
    top.insert(
        "rootfs".into(),
        serde_json::value::to_raw_value(&rootfs).map_err(|e| bad(&e))?,
    );
    super::gojson::to_vec(&top).map_err(|e| bad(&e))
}

/// Go-compatible compact JSON of any of these types.
pub fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Cannot fail: plain structs with string keys.
    super::gojson::to_vec(v).unwrap_or_default()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks a digest string: `sha256:` and 64 lowercase hex digits. Returns the hex part.
pub fn digest_hex(digest: &str) -> Result<&str, OciError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| OciError::DigestAlgorithm(digest.to_string()))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(OciError::Digest(digest.to_string()));
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_json_has_go_field_order() {
        let mut d = Descriptor::of(OCI_INDEX, b"{}");
        let cid: cid::Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            .parse()
            .unwrap();
        d.set_cid(&cid);
        let json = String::from_utf8(to_json(&d)).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"mediaType":"{OCI_INDEX}","digest":"{}","size":2,"urls":["ipfs://{cid}"]}}"#,
                sha256_digest(b"{}")
            )
        );
        let back: Descriptor = serde_json::from_str(&json).unwrap();
        assert_eq!(back.cid().unwrap(), cid);
    }

    #[test]
    fn docker_types_become_oci_and_unknown_ones_fail() {
        assert_eq!(classify(DOCKER_MANIFEST).unwrap().0, OCI_MANIFEST);
        assert_eq!(
            classify(DOCKER_LAYER_GZIP).unwrap(),
            (OCI_LAYER_GZIP, Kind::Layer { gzip: true })
        );
        assert_eq!(classify(DOCKER_CONFIG).unwrap().0, OCI_CONFIG);
        let e = classify("application/x-whatever").unwrap_err();
        assert!(matches!(e, OciError::MediaType(_)), "{e}");
        assert!(e.to_string().contains("unknown media type"), "{e}");
        let e = classify(OCI_LAYER_ZSTD).unwrap_err();
        assert!(
            matches!(e, OciError::Zstd(_)) && e.to_string().contains("zstd"),
            "{e}"
        );
    }

    #[test]
    fn diff_ids_are_replaced_and_other_fields_kept() {
        let cfg = br#"{"os":"linux","architecture":"amd64","config":{"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let out = set_diff_ids(cfg, &["sha256:bb".into()]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"architecture":"amd64","config":{"Env":["A=1"]},"os":"linux","rootfs":{"diff_ids":["sha256:bb"],"type":"layers"}}"#
        );
    }

    #[test]
    fn digests_are_checked() {
        assert!(digest_hex(&sha256_digest(b"")).is_ok());
        assert!(digest_hex("sha256:ABC").is_err());
        assert!(digest_hex("md5:00").is_err());
        assert!(digest_hex(&sha256_digest(b"").to_uppercase()).is_err());
    }

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/amd64")
            .unwrap()
            .matches(&Platform::parse("linux/amd64").unwrap()));
        assert!(!p.matches(&Platform::parse("linux/arm64/v7").unwrap()));
    }
}
