//! The eStargz TOC: the `stargz.index.json` tar entry near the end of the blob (REFERENCE §1.3).
//!
//! - [`Toc`] / [`TocEntry`]: serde types with every JSON field Go writes (`omitempty` fields are
//!   skipped when zero and default to zero when missing).
//! - [`parse`]: JSON bytes → [`Toc`], rejecting versions other than 1, unknown entry types and
//!   xattr values that are not standard base64.
//! - [`to_json`]: [`Toc`] → bytes laid out like Go's `json.MarshalIndent(toc, "", "\t")`,
//!   including Go's escaping of `<`, `>`, `&`, U+2028 and U+2029.
//! - [`digest`]: `sha256:<hex>` of the exact JSON bytes, the value of the
//!   `containerd.io/snapshot/stargz/toc.digest` annotation. Never re-serialize before hashing.
//! - [`index`]: the reader-side derivations (re-exported from [`super::index`]): cleaned names
//!   and, per regular file, the list of [`Chunk`]s with their sizes and `nextOffset`s filled in.
//!
//! Everything here is pure; the caller fetches and gunzips the TOC member.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use super::index::{clean_name, index, Chunk, Index};

/// Name of the TOC's tar entry.
pub const TOC_TAR_NAME: &str = "stargz.index.json";
/// The only TOC version there is.
pub const TOC_VERSION: i32 = 1;

/// The whole TOC (Go `JTOC`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toc {
    pub version: i32,
    #[serde(default, deserialize_with = "bounded_entries")]
    pub entries: Vec<TocEntry>,
}

/// Entries one TOC may hold, chunk entries included (a large distribution layer has about
/// 10^5). Enforced while the JSON is read, so a 64 MiB TOC of tiny entries is refused after
/// at most this many entries (about 300 MB at its worst), not after all 4 million of them.
pub const MAX_ENTRIES: usize = 1_000_000;

/// `entries` read one at a time, refused at entry [`MAX_ENTRIES`] + 1; the vector grows as
/// entries arrive rather than from any size the input claims.
fn bounded_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<TocEntry>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<TocEntry>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_ENTRIES} TOC entries")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(e) = seq.next_element::<TocEntry>()? {
                if out.len() == MAX_ENTRIES {
                    return Err(serde::de::Error::custom(format_args!(
                        "more than {MAX_ENTRIES} entries"
                    )));
                }
                out.push(e);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded)
}

/// The `type` of a TOC entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    Dir,
    Reg,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
    /// A later chunk of the preceding `reg` entry.
    Chunk,
}

/// One TOC entry (Go `TOCEntry`). Field order is Go's, so serialization matches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TocEntry {
    /// Path as stored in the tar; see [`clean_name`].
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Logical file size (`reg` only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: i64,
    /// UTC RFC 3339, seconds; empty for the zero time.
    #[serde(rename = "modtime", default, skip_serializing_if = "String::is_empty")]
    pub mod_time: String,
    #[serde(rename = "linkName", default, skip_serializing_if = "String::is_empty")]
    pub link_name: String,
    /// Raw tar header mode (may include type bits).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mode: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: i64,
    #[serde(rename = "userName", default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    #[serde(
        rename = "groupName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub group_name: String,
    /// Compressed offset of the gzip member holding this payload.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: i64,
    /// Uncompressed offset of the payload inside the member at `offset`.
    #[serde(rename = "innerOffset", default, skip_serializing_if = "is_zero")]
    pub inner_offset: i64,
    #[serde(rename = "devMajor", default, skip_serializing_if = "is_zero")]
    pub dev_major: i64,
    #[serde(rename = "devMinor", default, skip_serializing_if = "is_zero")]
    pub dev_minor: i64,
    /// Extended attributes; values are standard base64 with padding (Go `[]byte`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// `sha256:<hex>` of the whole file (`reg` only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    #[serde(rename = "chunkOffset", default, skip_serializing_if = "is_zero")]
    pub chunk_offset: i64,
    /// Uncompressed chunk size; 0 = to the end of the file.
    #[serde(rename = "chunkSize", default, skip_serializing_if = "is_zero")]
    pub chunk_size: i64,
    /// `sha256:<hex>` of this chunk's uncompressed bytes.
    #[serde(
        rename = "chunkDigest",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub chunk_digest: String,
}

impl TocEntry {
    /// An entry with the given name and type and every other field zero.
    pub fn new(name: impl Into<String>, kind: EntryType) -> Self {
        TocEntry {
            name: name.into(),
            kind,
            size: 0,
            mod_time: String::new(),
            link_name: String::new(),
            mode: 0,
            uid: 0,
            gid: 0,
            user_name: String::new(),
            group_name: String::new(),
            offset: 0,
            inner_offset: 0,
            dev_major: 0,
            dev_minor: 0,
            xattrs: BTreeMap::new(),
            digest: String::new(),
            chunk_offset: 0,
            chunk_size: 0,
            chunk_digest: String::new(),
        }
    }
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A TOC that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TocError {
    /// (The JSON error is in the message, not also a source: printed once.)
    #[error("TOC JSON is malformed: {0}")]
    Json(serde_json::Error),
    #[error("TOC version is {0}, only 1 is supported")]
    Version(i32),
    #[error("entry {index} ({name:?}): xattr {key:?} is not standard base64")]
    Xattr {
        index: usize,
        name: String,
        key: String,
    },
    #[error("entry {index} ({name:?}): {field} is negative ({value})")]
    Negative {
        index: usize,
        name: String,
        field: &'static str,
        value: i64,
    },
    #[error("entry {index}: name {name:?} is empty after cleaning")]
    EmptyName { index: usize, name: String },
    #[error("entry {index}: chunk does not follow a regular file")]
    OrphanChunk { index: usize },
    #[error("entry {index} ({name:?}): a reg entry has chunkOffset {chunk_offset}, expected 0")]
    RegChunkOffset {
        index: usize,
        name: String,
        chunk_offset: i64,
    },
    #[error(
        "entry {index} ({name:?}): data offset {offset} is not below the blob size {blob_size}"
    )]
    OffsetOutOfBlob {
        index: usize,
        name: String,
        offset: u64,
        blob_size: u64,
    },
    #[error("entry {index} ({name:?}): next gzip member starts at {next_offset}, not after this one at {offset}")]
    NextOffset {
        index: usize,
        name: String,
        offset: u64,
        next_offset: u64,
    },
    #[error("entry {index} ({name:?}): a chunk of {chunk_size} bytes, {compressed} compressed, is over the bound of {max} bytes (inflated; twice that compressed)")]
    ChunkTooBig {
        index: usize,
        name: String,
        chunk_size: u64,
        compressed: u64,
        max: u64,
    },
    #[error("entry {index} ({name:?}): chunk at {chunk_offset} (size {chunk_size}) does not continue the file at {expected} within its {size} bytes")]
    ChunkLayout {
        index: usize,
        name: String,
        chunk_offset: u64,
        chunk_size: u64,
        expected: u64,
        size: u64,
    },
    #[error("file {name:?}: chunks cover {covered} of its {size} bytes")]
    Incomplete {
        name: String,
        covered: u64,
        size: u64,
    },
}

impl From<serde_json::Error> for TocError {
    fn from(e: serde_json::Error) -> Self {
        TocError::Json(e)
    }
}

/// Parse TOC JSON. Rejects versions other than 1, unknown entry types and bad xattr values.
pub fn parse(json: &[u8]) -> Result<Toc, TocError> {
    let toc: Toc = serde_json::from_slice(json)?;
    if toc.version != TOC_VERSION {
        return Err(TocError::Version(toc.version));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    for (index, e) in toc.entries.iter().enumerate() {
        if let Some(key) = e.xattrs.iter().find(|(_, v)| b64.decode(v).is_err()) {
            return Err(TocError::Xattr {
                index,
                name: e.name.clone(),
                key: key.0.clone(),
            });
        }
    }
    Ok(toc)
}

/// `sha256:<hex>` of the TOC JSON bytes exactly as stored in the tar entry.
pub fn digest(json: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(json)))
}

/// Serialize like Go's `json.MarshalIndent(toc, "", "\t")` (no trailing newline).
pub fn to_json(toc: &Toc) -> Vec<u8> {
    // Cannot fail: every map key is a string. Should it ever fail, an empty document is
    // rejected by any reader instead of a truncated one being half-trusted.
    crate::gojson::to_vec_indent(toc).unwrap_or_default()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A TOC as Go's `json.MarshalIndent(toc, "", "\t")` writes it: a reg with two more chunks
    /// (the last one a tail with chunkSize 0), dirs, a symlink, a landmark, two files sharing a
    /// gzip member (innerOffset), an empty file, a hardlink, a char device, xattrs and a name
    /// Go escapes (`&` → `\u0026`).
    pub(in crate::estargz) const FIXTURE: &str = r#"{
	"version": 1,
	"entries": [
		{
			"name": "./",
			"type": "dir",
			"modtime": "2024-01-02T03:04:05Z",
			"mode": 16877
		},
		{
			"name": "bin/",
			"type": "dir",
			"mode": 16877
		},
		{
			"name": "bin/app",
			"type": "reg",
			"size": 10,
			"modtime": "2024-01-02T03:04:05Z",
			"mode": 33261,
			"uid": 1000,
			"gid": 1000,
			"userName": "user",
			"groupName": "group",
			"offset": 512,
			"xattrs": {
				"security.capability": "AQAAAg==",
				"user.a": "dmFsdWU="
			},
			"digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
			"chunkSize": 4,
			"chunkDigest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		},
		{
			"name": "bin/app",
			"type": "chunk",
			"offset": 700,
			"chunkOffset": 4,
			"chunkSize": 4,
			"chunkDigest": "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		},
		{
			"name": "bin/app",
			"type": "chunk",
			"offset": 800,
			"chunkOffset": 8,
			"chunkDigest": "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
		},
		{
			"name": "bin/sh",
			"type": "symlink",
			"linkName": "app",
			"mode": 41471
		},
		{
			"name": ".prefetch.landmark",
			"type": "reg",
			"size": 1,
			"offset": 900,
			"digest": "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
			"chunkDigest": "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
		},
		{
			"name": "etc/a\u0026b",
			"type": "reg",
			"size": 3,
			"offset": 1000,
			"digest": "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
			"chunkDigest": "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
		},
		{
			"name": "./etc/../etc/c",
			"type": "reg",
			"size": 2,
			"offset": 1000,
			"innerOffset": 1024,
			"digest": "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
			"chunkDigest": "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
		},
		{
			"name": "etc/empty",
			"type": "reg",
			"digest": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
		},
		{
			"name": "etc/hard",
			"type": "hardlink",
			"linkName": "etc/a\u0026b"
		},
		{
			"name": "dev/null",
			"type": "char",
			"mode": 8630,
			"devMajor": 1,
			"devMinor": 3
		}
	]
}"#;

    /// A TOC of more than [`MAX_ENTRIES`] entries is refused while it is read.
    #[test]
    fn too_many_entries_refused_while_reading() {
        let one = r#"{"type":"dir","name":"d"},"#;
        let mut json = String::from(r#"{"version":1,"entries":["#);
        json.push_str(&one.repeat(MAX_ENTRIES));
        json.push_str(r#"{"type":"dir","name":"e"}]}"#);
        let err = parse(json.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("more than 1000000 entries"), "{err}");
        let at_bound = json.replacen(one, "", 1);
        assert_eq!(
            parse(at_bound.as_bytes()).unwrap().entries.len(),
            MAX_ENTRIES
        );
    }

    #[test]
    fn parses_every_field() {
        let toc = parse(FIXTURE.as_bytes()).unwrap();
        assert_eq!(toc.version, 1);
        assert_eq!(toc.entries.len(), 12);
        let app = &toc.entries[2];
        assert_eq!((app.name.as_str(), app.kind), ("bin/app", EntryType::Reg));
        assert_eq!(
            (app.size, app.mode, app.uid, app.gid),
            (10, 0o100755, 1000, 1000)
        );
        assert_eq!(
            (app.user_name.as_str(), app.group_name.as_str()),
            ("user", "group")
        );
        assert_eq!(app.mod_time, "2024-01-02T03:04:05Z");
        assert_eq!((app.offset, app.chunk_offset, app.chunk_size), (512, 0, 4));
        assert_eq!(
            app.xattrs.get("user.a").map(String::as_str),
            Some("dmFsdWU=")
        );
        assert_eq!(app.digest, format!("sha256:{}", "1".repeat(64)));
        assert_eq!(app.chunk_digest, format!("sha256:{}", "a".repeat(64)));
        let tail = &toc.entries[4];
        assert_eq!(
            (tail.kind, tail.chunk_offset, tail.chunk_size),
            (EntryType::Chunk, 8, 0)
        );
        assert_eq!(toc.entries[5].link_name, "app");
        assert_eq!(toc.entries[7].name, "etc/a&b");
        assert_eq!(
            (toc.entries[8].offset, toc.entries[8].inner_offset),
            (1000, 1024)
        );
        assert_eq!(toc.entries[10].kind, EntryType::Hardlink);
        let dev = &toc.entries[11];
        assert_eq!(
            (dev.kind, dev.dev_major, dev.dev_minor),
            (EntryType::Char, 1, 3)
        );
    }

    #[test]
    fn serializes_like_go() {
        let toc = parse(FIXTURE.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(to_json(&toc)).unwrap(), FIXTURE);
        assert_eq!(parse(&to_json(&toc)).unwrap(), toc);
    }

    #[test]
    fn minimal_layout_and_escapes() {
        let toc = Toc {
            version: 1,
            entries: vec![TocEntry::new("a<b>\u{2028}", EntryType::Dir)],
        };
        let want = "{\n\t\"version\": 1,\n\t\"entries\": [\n\t\t{\n\t\t\t\"name\": \
                    \"a\\u003cb\\u003e\\u2028\",\n\t\t\t\"type\": \"dir\"\n\t\t}\n\t]\n}";
        assert_eq!(String::from_utf8(to_json(&toc)).unwrap(), want);
        assert_eq!(parse(want.as_bytes()).unwrap(), toc);
        let empty = Toc {
            version: 1,
            entries: vec![],
        };
        let json = to_json(&empty);
        assert_eq!(json, b"{\n\t\"version\": 1,\n\t\"entries\": []\n}");
        assert_eq!(parse(&json).unwrap(), empty);
    }

    #[test]
    fn every_type_round_trips() {
        use EntryType::*;
        for kind in [Dir, Reg, Symlink, Hardlink, Char, Block, Fifo, Chunk] {
            let toc = Toc {
                version: 1,
                entries: vec![TocEntry::new("x", kind)],
            };
            assert_eq!(parse(&to_json(&toc)).unwrap(), toc);
        }
    }

    #[test]
    fn digest_is_of_exact_bytes() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let d = digest(FIXTURE.as_bytes());
        assert_eq!(d.len(), "sha256:".len() + 64);
        assert_ne!(d, digest(format!("{FIXTURE}\n").as_bytes()));
    }

    #[test]
    fn rejects_other_versions() {
        for v in ["0", "2", "-1"] {
            let json = format!("{{\"version\": {v}, \"entries\": []}}");
            assert!(
                matches!(parse(json.as_bytes()), Err(TocError::Version(_))),
                "{v}"
            );
        }
        assert!(matches!(
            parse(b"{\"entries\": []}"),
            Err(TocError::Json(_))
        ));
    }

    #[test]
    fn rejects_unknown_or_missing_type() {
        let err =
            parse(br#"{"version": 1, "entries": [{"name": "a", "type": "sparse"}]}"#).unwrap_err();
        assert!(matches!(err, TocError::Json(_)));
        assert!(err.to_string().contains("sparse"), "{err}");
        let err = parse(br#"{"version": 1, "entries": [{"name": "a"}]}"#).unwrap_err();
        assert!(err.to_string().contains("type"), "{err}");
    }

    #[test]
    fn rejects_bad_xattr_and_bad_json() {
        let json = br#"{"version": 1, "entries": [{"name": "a", "type": "reg", "xattrs": {"user.x": "not base64!"}}]}"#;
        assert!(
            matches!(parse(json), Err(TocError::Xattr { index: 0, key, .. }) if key == "user.x")
        );
        assert!(matches!(
            parse(b"{\"version\": 1, \"entries\": ["),
            Err(TocError::Json(_))
        ));
        assert!(matches!(parse(b""), Err(TocError::Json(_))));
    }
}
