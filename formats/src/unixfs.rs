//! UnixFS files as kubo's `ipfs add` writes them: bytes in, blocks and a root CID out.
//!
//! [`Adder`] wraps `rust_unixfs::file::adder::FileAdder` with kubo's settings: fixed-size chunks
//! (256 KiB), a balanced tree of at most 174 links per node, sha2-256, and raw leaves for CIDv1
//! (dag-pb leaves for CIDv0) unless told otherwise. It streams: each [`Adder::push`] returns the
//! blocks that became complete, and [`Adder::finish`] returns the rest and the root.
//!
//! The root is the last block emitted. [`Adder::finish`] can emit nothing (a file of exactly one
//! chunk: its only block came out of `push`); an empty file is one empty leaf (the empty raw block
//! for CIDv1, `QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH` for CIDv0).
//!
//! Kubo's add answer reports `Size`, the cumulative size of the root: the sum of the lengths of
//! all blocks in the DAG. [`Adder::cumulative_size`] tracks it (every emitted block is counted,
//! repeated leaves included, like dag-pb `Tsize`).

use cid::{Cid, Version};
use rust_unixfs::file::adder::{BalancedCollector, Chunker, FileAdder, FileBranchLink};

/// Kubo's default chunk size (`size-262144`).
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;
/// Kubo's largest chunk size (`chunker.ChunkSizeLimit`, 2 MiB - 256).
pub const MAX_CHUNK_SIZE: usize = 2 * 1024 * 1024 - 256;
/// Kubo's links per file node (`helpers.DefaultLinksPerBlock`).
pub const DEFAULT_MAX_LINKS: usize = 174;
/// Largest accepted links per node; keeps a node well under the 2 MiB block limit.
pub const MAX_LINKS: usize = 8192;

/// [`AddOptions`] out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// Chunks must hold at least one byte and fit kubo's limit.
    #[error("chunk size {0} is out of range: it must be 1..={MAX_CHUNK_SIZE} bytes")]
    ChunkSize(usize),
    /// A file node must have room for at least two links.
    #[error("max links {0} is out of range: it must be 2..={MAX_LINKS}")]
    MaxLinks(usize),
    /// Only CIDv0 and CIDv1 exist.
    #[error("unsupported CID version {0}: use 0 or 1")]
    CidVersion(u8),
}

/// How a file is cut into blocks. [`Default`] is `ipfs add --cid-version=1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddOptions {
    /// CID version of the dag-pb nodes: 0 or 1.
    pub cid_version: u8,
    /// Store leaves as raw (0x55) blocks. `None` is kubo's rule: raw for CIDv1, dag-pb for CIDv0.
    pub raw_leaves: Option<bool>,
    /// Bytes per leaf, 1..=[`MAX_CHUNK_SIZE`].
    pub chunk_size: usize,
    /// Links per file node, 2..=[`MAX_LINKS`].
    pub max_links: usize,
}

impl Default for AddOptions {
    fn default() -> Self {
        AddOptions {
            cid_version: 1,
            raw_leaves: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_links: DEFAULT_MAX_LINKS,
        }
    }
}

impl AddOptions {
    /// Plain `ipfs add` (kubo's config defaults, profile `unixfs-v0-2015`): CIDv0, dag-pb leaves.
    pub fn kubo_v0() -> Self {
        AddOptions {
            cid_version: 0,
            ..AddOptions::default()
        }
    }

    /// The import profiles kubo names (`Import` config profiles, IPIP-499), by name:
    /// `unixfs-v0-2015` ([`Self::kubo_v0`]), `legacy-cid-v1` (`--cid-version=1`, the default
    /// here and the layout of image CIDs), and `unixfs-v1-2025` (kubo ≥ 0.40, `@helia/unixfs` 8:
    /// CIDv1, raw leaves, 1 MiB chunks, 1024 links per node).
    pub fn profile(name: &str) -> Option<Self> {
        match name {
            "unixfs-v0-2015" => Some(Self::kubo_v0()),
            "legacy-cid-v1" => Some(Self::default()),
            "unixfs-v1-2025" => Some(AddOptions {
                cid_version: 1,
                raw_leaves: Some(true),
                chunk_size: 1 << 20,
                max_links: 1024,
            }),
            _ => None,
        }
    }

    /// The names [`Self::profile`] knows.
    pub const PROFILES: &'static [&'static str] =
        &["unixfs-v0-2015", "legacy-cid-v1", "unixfs-v1-2025"];

    /// Whether leaves are raw blocks, after applying kubo's rule to `raw_leaves: None`.
    pub fn uses_raw_leaves(&self) -> bool {
        self.raw_leaves.unwrap_or(self.cid_version == 1)
    }

    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if !(1..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(OptionsError::ChunkSize(self.chunk_size));
        }
        if !(2..=MAX_LINKS).contains(&self.max_links) {
            return Err(OptionsError::MaxLinks(self.max_links));
        }
        if self.cid_version > 1 {
            return Err(OptionsError::CidVersion(self.cid_version));
        }
        Ok(())
    }
}

/// Streaming UnixFS file builder: push bytes in, blocks come out.
#[derive(Debug)]
pub struct Adder {
    inner: FileAdder,
    bytes_in: u64,
    cumulative_size: u64,
    last: Option<Cid>,
}

impl Adder {
    /// A builder for one file; fails when `opts` are out of range.
    pub fn new(opts: &AddOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        let version = if opts.cid_version == 0 {
            Version::V0
        } else {
            Version::V1
        };
        let inner = FileAdder::builder()
            .with_chunker(Chunker::Size(opts.chunk_size))
            .with_collector(BalancedCollector::with_branching_factor(opts.max_links))
            .with_cid_version(version)
            .with_raw_leaves(opts.uses_raw_leaves())
            .build();
        Ok(Adder {
            inner,
            bytes_in: 0,
            cumulative_size: 0,
            last: None,
        })
    }

    /// Adds file bytes; returns the blocks that became complete, in order (children before
    /// parents). Push any amount at a time: the CIDs do not depend on how the input is split.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<(Cid, Vec<u8>)> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let (blocks, consumed) = self.inner.push(data);
            out.extend(blocks);
            // the size chunker takes at least one byte of a non-empty input
            if consumed == 0 {
                debug_assert!(false, "FileAdder::push consumed nothing");
                break;
            }
            self.bytes_in += consumed as u64;
            data = data.get(consumed..).unwrap_or_default();
        }
        self.record(&out);
        out
    }

    /// Ends the file: returns the root CID and the remaining blocks (possibly none; the root is
    /// then the last block `push` returned).
    pub fn finish(self) -> (Cid, Vec<(Cid, Vec<u8>)>) {
        let mut blocks: Vec<_> = self.inner.finish().collect();
        if blocks.is_empty() && self.last.is_none() {
            // rust-unixfs always emits the empty leaf for an empty file (see the tests); should
            // that change, emit the empty raw block so that the root is still a stored block
            blocks.push((empty_raw_cid(), Vec::new()));
        }
        let root = blocks.last().map(|(cid, _)| *cid).or(self.last);
        (root.unwrap_or_else(empty_raw_cid), blocks)
    }

    /// File bytes pushed so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Sum of the lengths of the blocks emitted so far. After the blocks from
    /// [`finish`](Self::finish) are added, this is the root's cumulative size (kubo's `Size`).
    pub fn cumulative_size(&self) -> u64 {
        self.cumulative_size
    }

    fn record(&mut self, blocks: &[(Cid, Vec<u8>)]) {
        for (cid, block) in blocks {
            self.cumulative_size += block.len() as u64;
            self.last = Some(*cid);
        }
    }
}

/// A UnixFS file whose leaves the caller cuts, so that a piece of content gets the same leaf
/// CIDs wherever it sits in a file (a gzip member of an eStargz blob, say, in every image that
/// holds it). Leaves are raw CIDv1 blocks of 1..=[`MAX_CHUNK_SIZE`] bytes; the tree above them
/// is kubo's balanced one ([`DEFAULT_MAX_LINKS`] links per node, the same nodes `ipfs add`
/// writes over the same leaves). Cut every [`DEFAULT_CHUNK_SIZE`] bytes it is `ipfs add
/// --cid-version=1` exactly; cut elsewhere, the root differs, but any reader of UnixFS reads
/// the same bytes (node `blocksizes` say where each leaf lies).
#[derive(Debug, Default)]
pub struct LeafAdder {
    leaves: Vec<FileBranchLink>,
    bytes_in: u64,
}

/// A leaf out of range for [`LeafAdder::push_leaf`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a leaf of {0} bytes: leaves hold 1..={MAX_CHUNK_SIZE} bytes")]
pub struct LeafSizeError(pub usize);

impl LeafAdder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next leaf; returns its block.
    pub fn push_leaf(&mut self, data: &[u8]) -> Result<(Cid, Vec<u8>), LeafSizeError> {
        if data.is_empty() || data.len() > MAX_CHUNK_SIZE {
            return Err(LeafSizeError(data.len()));
        }
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(data);
        let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest)
            .map_err(|_| LeafSizeError(data.len()))?;
        let cid = Cid::new_v1(RAW_CODEC, mh);
        self.leaves.push(FileBranchLink {
            cid,
            blocksize: data.len() as u64,
            tsize: data.len() as u64,
        });
        self.bytes_in += data.len() as u64;
        Ok((cid, data.to_vec()))
    }

    /// File bytes pushed so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Ends the file: the root and the branch blocks (children before parents; none when the
    /// file is one leaf, which is then the root). An empty file is the empty raw block.
    pub fn finish(self) -> (Cid, Vec<(Cid, Vec<u8>)>) {
        if self.leaves.is_empty() {
            let root = empty_raw_cid();
            return (root, vec![(root, Vec::new())]);
        }
        let (root, _, blocks) = rust_unixfs::file::adder::build_file_from_leaves(
            &self.leaves,
            Version::V1,
            multihash_codetable::Code::Sha2_256,
        );
        (root, blocks)
    }
}

/// The multicodec of raw blocks.
const RAW_CODEC: u64 = 0x55;
/// The multihash code of sha2-256.
const SHA2_256: u64 = 0x12;

/// The CID of the empty raw block (sha2-256 of no bytes).
pub const EMPTY_RAW: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

fn empty_raw_cid() -> Cid {
    EMPTY_RAW.parse().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Multicodecs of the blocks (dag-pb for file nodes, raw for CIDv1 leaves).
    const DAG_PB: u64 = 0x70;
    const RAW: u64 = 0x55;

    const VECTORS: &str = include_str!("../../tests/fixtures/cids.tsv");

    fn mod251(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Adds `data`, pushing it in pieces of `piece` bytes; returns root, blocks and cumulative size.
    fn add_all(data: &[u8], opts: &AddOptions, piece: usize) -> (Cid, Vec<(Cid, Vec<u8>)>, u64) {
        let mut adder = Adder::new(opts).unwrap();
        let mut blocks = Vec::new();
        for part in data.chunks(piece) {
            blocks.extend(adder.push(part));
        }
        assert_eq!(adder.bytes_in(), data.len() as u64);
        let before = adder.cumulative_size();
        let (root, rest) = adder.finish();
        let cumulative = before + rest.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        blocks.extend(rest);
        assert_eq!(
            blocks.last().map(|(c, _)| *c),
            Some(root),
            "root is the last block"
        );
        (root, blocks, cumulative)
    }

    #[test]
    fn every_vector_of_cids_tsv() {
        let rows: Vec<(&str, usize, &str)> = VECTORS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("name\t") && !l.trim().is_empty())
            .map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                assert_eq!(cols.len(), 4, "bad row {l:?}");
                assert_eq!(cols[2], "mod251", "unknown generator in {l:?}");
                (cols[0], cols[1].parse().unwrap(), cols[3])
            })
            .collect();
        assert!(rows.len() >= 12, "only {} vectors", rows.len());
        let data = mod251(rows.iter().map(|r| r.1).max().unwrap());
        for (name, size, expected) in rows {
            // an odd piece size makes the adder buffer across pushes
            let (root, blocks, cumulative) = add_all(&data[..size], &AddOptions::default(), 99_991);
            assert_eq!(root.to_string(), expected, "vector {name} ({size} bytes)");
            let total: u64 = blocks.iter().map(|(_, b)| b.len() as u64).sum();
            assert_eq!(cumulative, total, "vector {name}");
        }
    }

    #[test]
    fn kubo_v0_vectors_with_dag_pb_leaves() {
        let lorem = b"Lorem ipsum dolor sit amet, sit enim montes aliquam. Cras non lorem, \
            rhoncus condimentum, irure et ante. Pulvinar suscipit odio ante, et tellus a enim, \
            wisi ipsum, vel rhoncus eget faucibus varius, luctus turpis nibh vel odio nulla pede.";
        let cases: [(&[u8], usize, &str); 5] = [
            (
                b"",
                DEFAULT_CHUNK_SIZE,
                "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
            ),
            (
                b"hello world\n",
                DEFAULT_CHUNK_SIZE,
                "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
            ),
            (
                b"foobar\n",
                DEFAULT_CHUNK_SIZE,
                "QmRgutAxd8t7oGkSm4wmeuByG6M51wcTso6cubDdQtuEfL",
            ),
            (
                b"foobar\n",
                2,
                "QmRJHYTNvC3hmd9gJQARxLR1QMEincccBV53bBw524yyq6",
            ),
            // go-ipfs 0.5: 239 leaves of one byte under two interior nodes
            (lorem, 1, "QmRQ6NZNUs4JrCT2y7tmCC1wUhjqYuTssB8VXbbN3rMffg"),
        ];
        for (data, chunk_size, expected) in cases {
            let opts = AddOptions {
                chunk_size,
                ..AddOptions::kubo_v0()
            };
            let (root, blocks, _) = add_all(data, &opts, 3);
            assert_eq!(root.to_string(), expected);
            assert!(blocks
                .iter()
                .all(|(c, _)| c.version() == Version::V0 && c.codec() == DAG_PB));
        }
        let empty = add_all(b"", &AddOptions::kubo_v0(), 1).1;
        assert_eq!(
            empty,
            vec![(empty[0].0, vec![0x0a, 0x04, 0x08, 0x02, 0x18, 0x00])]
        );
    }

    /// Leaves cut every 256 KiB make `ipfs add --cid-version=1`'s DAG exactly (the vectors);
    /// cut elsewhere they make another root over the same bytes, with the same leaf CIDs for
    /// the same content wherever it sits.
    #[test]
    fn caller_cut_leaves_build_kubos_tree() {
        let data = mod251(3 * DEFAULT_CHUNK_SIZE * 200 + 12_345);
        let (want, kubo_blocks, _) = add_all(&data, &AddOptions::default(), 1 << 20);
        let mut leaves = LeafAdder::new();
        let mut blocks = Vec::new();
        for part in data.chunks(DEFAULT_CHUNK_SIZE) {
            blocks.push(leaves.push_leaf(part).unwrap());
        }
        assert_eq!(leaves.bytes_in(), data.len() as u64);
        let (root, branches) = leaves.finish();
        blocks.extend(branches);
        assert_eq!(root, want);
        let mut a: Vec<_> = blocks.iter().map(|(c, _)| *c).collect();
        let mut b: Vec<_> = kubo_blocks.iter().map(|(c, _)| *c).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);

        // the same piece of content, at two offsets, is the same leaf
        let piece = mod251(70_000);
        let leaf_of = |prefix: usize| {
            let mut l = LeafAdder::new();
            l.push_leaf(&data[..prefix]).unwrap();
            let (cid, _) = l.push_leaf(&piece).unwrap();
            (cid, l.finish().0)
        };
        let (x, root_x) = leaf_of(10);
        let (y, root_y) = leaf_of(99_999);
        assert_eq!(x, y);
        assert_ne!(root_x, root_y);
        // one leaf is its own root; no leaves is the empty file; bounds
        let mut one = LeafAdder::new();
        let (only, _) = one.push_leaf(b"x").unwrap();
        assert_eq!(one.finish(), (only, Vec::new()));
        assert_eq!(LeafAdder::new().finish().0.to_string(), EMPTY_RAW);
        assert_eq!(LeafAdder::new().push_leaf(b""), Err(LeafSizeError(0)));
        let big = vec![0u8; MAX_CHUNK_SIZE + 1];
        assert!(LeafAdder::new().push_leaf(&big).is_err());
    }

    #[test]
    fn finish_emits_nothing_after_exactly_one_chunk() {
        let data = mod251(DEFAULT_CHUNK_SIZE);
        let mut adder = Adder::new(&AddOptions::default()).unwrap();
        let pushed = adder.push(&data);
        assert_eq!(pushed.len(), 1);
        let (root, rest) = adder.finish();
        assert!(rest.is_empty());
        assert_eq!(root, pushed[0].0);
        assert_eq!(root.codec(), RAW);
    }

    #[test]
    fn empty_file_is_the_empty_raw_block() {
        let (root, rest) = Adder::new(&AddOptions::default()).unwrap().finish();
        assert_eq!(root.to_string(), EMPTY_RAW);
        assert_eq!(rest, vec![(root, Vec::new())]);
    }

    #[test]
    fn options_are_validated() {
        let bad = [
            AddOptions {
                chunk_size: 0,
                ..AddOptions::default()
            },
            AddOptions {
                chunk_size: MAX_CHUNK_SIZE + 1,
                ..AddOptions::default()
            },
            AddOptions {
                max_links: 1,
                ..AddOptions::default()
            },
            AddOptions {
                cid_version: 2,
                ..AddOptions::default()
            },
        ];
        for opts in bad {
            let err = Adder::new(&opts).unwrap_err();
            assert!(!err.to_string().is_empty());
        }
        let err = Adder::new(&bad[1]).unwrap_err().to_string();
        assert!(err.contains("2096896"), "{err}");
        assert!(Adder::new(&AddOptions {
            chunk_size: MAX_CHUNK_SIZE,
            ..AddOptions::default()
        })
        .is_ok());
        assert!(AddOptions::default().uses_raw_leaves());
        assert!(!AddOptions::kubo_v0().uses_raw_leaves());
    }
}
