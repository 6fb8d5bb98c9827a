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
    /// Leaf ends must increase, each leaf holding 1..=[`MAX_CHUNK_SIZE`] bytes, and number at
    /// most [`MAX_LEAF_ENDS`].
    #[error("leaf ends: {0}")]
    LeafEnds(String),
}

/// Most leaf ends [`Adder::with_leaf_ends`] takes (a 1 TiB file of 1 MiB leaves).
pub const MAX_LEAF_ENDS: usize = 1 << 20;

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
///
/// [`Adder::new`] cuts kubo's fixed-size chunks; [`Adder::with_leaf_ends`] cuts where the
/// caller says (the leaves of a [`LeafAdder`]).
#[derive(Debug)]
pub struct Adder {
    inner: Inner,
    bytes_in: u64,
    cumulative_size: u64,
    last: Option<Cid>,
}

#[derive(Debug)]
enum Inner {
    Fixed(FileAdder),
    Cut(Cutter),
}

/// Leaves cut at planned ends: the bytes of the leaf being filled, and the ends still ahead.
#[derive(Debug)]
struct Cutter {
    leaves: LeafAdder,
    ends: std::vec::IntoIter<u64>,
    /// End of the leaf being filled; past the plan, every [`DEFAULT_CHUNK_SIZE`] bytes.
    end: u64,
    buf: Vec<u8>,
}

impl Cutter {
    fn next_end(&mut self) {
        match self.ends.next() {
            Some(e) => self.end = e,
            None => self.end += DEFAULT_CHUNK_SIZE as u64,
        }
    }

    /// Takes bytes that start at file offset `at`; returns the leaves they completed.
    fn push(&mut self, mut at: u64, mut data: &[u8], out: &mut Vec<(Cid, Vec<u8>)>) {
        while !data.is_empty() {
            let want = (self.end - at) as usize;
            let (now, rest) = data.split_at(want.min(data.len()));
            at += now.len() as u64;
            data = rest;
            if at < self.end {
                self.buf.extend_from_slice(now);
                break;
            }
            let leaf = if self.buf.is_empty() {
                self.leaves.push_leaf(now)
            } else {
                self.buf.extend_from_slice(now);
                let r = self.leaves.push_leaf(&self.buf);
                self.buf.clear();
                r
            };
            // `with_leaf_ends` checked every leaf's size
            out.extend(leaf.ok());
            self.next_end();
        }
    }

    fn finish(mut self) -> (Cid, Vec<(Cid, Vec<u8>)>) {
        let mut blocks = Vec::new();
        if !self.buf.is_empty() {
            blocks.extend(self.leaves.push_leaf(&self.buf).ok());
        }
        let one_leaf = self.leaves.leaves.len() == 1;
        let (root, branches) = self.leaves.finish();
        if one_leaf && blocks.is_empty() {
            // the root came out of a push already
            return (root, Vec::new());
        }
        blocks.extend(branches);
        (root, blocks)
    }
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
        Ok(Self::of(Inner::Fixed(inner)))
    }

    /// A builder whose leaves end at `ends` (file offsets, increasing, each leaf
    /// 1..=[`MAX_CHUNK_SIZE`] bytes): raw CIDv1 leaves under kubo's balanced tree (see
    /// [`LeafAdder`]). Bytes past the last end are cut every [`DEFAULT_CHUNK_SIZE`]; a file
    /// that ends before the last end ends its last leaf early. So any plan reads back as the
    /// bytes pushed; the plan only decides which leaves they share with other files.
    pub fn with_leaf_ends(ends: Vec<u64>) -> Result<Self, OptionsError> {
        if ends.len() > MAX_LEAF_ENDS {
            return Err(OptionsError::LeafEnds(format!(
                "{} ends, at most {MAX_LEAF_ENDS}",
                ends.len()
            )));
        }
        let mut at = 0;
        for (i, &end) in ends.iter().enumerate() {
            if end <= at || end - at > MAX_CHUNK_SIZE as u64 {
                return Err(OptionsError::LeafEnds(format!(
                    "end {i} ({end}) after {at}: each leaf holds 1..={MAX_CHUNK_SIZE} bytes"
                )));
            }
            at = end;
        }
        let mut cutter = Cutter {
            leaves: LeafAdder::new(),
            ends: ends.into_iter(),
            end: 0,
            buf: Vec::new(),
        };
        cutter.next_end();
        Ok(Self::of(Inner::Cut(cutter)))
    }

    fn of(inner: Inner) -> Self {
        Adder {
            inner,
            bytes_in: 0,
            cumulative_size: 0,
            last: None,
        }
    }

    /// Adds file bytes; returns the blocks that became complete, in order (children before
    /// parents). Push any amount at a time: the CIDs do not depend on how the input is split.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<(Cid, Vec<u8>)> {
        let mut out = Vec::new();
        match &mut self.inner {
            Inner::Fixed(inner) => {
                while !data.is_empty() {
                    let (blocks, consumed) = inner.push(data);
                    out.extend(blocks);
                    // the size chunker takes at least one byte of a non-empty input
                    if consumed == 0 {
                        debug_assert!(false, "FileAdder::push consumed nothing");
                        break;
                    }
                    self.bytes_in += consumed as u64;
                    data = data.get(consumed..).unwrap_or_default();
                }
            }
            Inner::Cut(cutter) => {
                cutter.push(self.bytes_in, data, &mut out);
                self.bytes_in += data.len() as u64;
            }
        }
        self.record(&out);
        out
    }

    /// Ends the file: returns the root CID and the remaining blocks (possibly none; the root is
    /// then the last block `push` returned).
    pub fn finish(self) -> (Cid, Vec<(Cid, Vec<u8>)>) {
        let inner = match self.inner {
            Inner::Fixed(inner) => inner,
            Inner::Cut(cutter) => return cutter.finish(),
        };
        let mut blocks: Vec<_> = inner.finish().collect();
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

    /// Adds `data` with `adder`, pushing it in pieces of `piece` bytes; returns root, blocks
    /// and cumulative size.
    fn add_with(mut adder: Adder, data: &[u8], piece: usize) -> (Cid, Vec<(Cid, Vec<u8>)>, u64) {
        let mut blocks = Vec::new();
        for part in data.chunks(piece) {
            blocks.extend(adder.push(part));
        }
        assert_eq!(adder.bytes_in(), data.len() as u64);
        let before = adder.cumulative_size();
        let (root, rest) = adder.finish();
        let cumulative = before + rest.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        blocks.extend(rest);
        (root, blocks, cumulative)
    }

    /// Adds `data` with kubo's chunker, pushing it in pieces of `piece` bytes.
    fn add_all(data: &[u8], opts: &AddOptions, piece: usize) -> (Cid, Vec<(Cid, Vec<u8>)>, u64) {
        let (root, blocks, cumulative) = add_with(Adder::new(opts).unwrap(), data, piece);
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

    /// Adds `data` with leaves ending at `ends`, in pieces of `piece` bytes.
    fn add_cut(data: &[u8], ends: &[u64], piece: usize) -> (Cid, Vec<(Cid, Vec<u8>)>, u64) {
        add_with(Adder::with_leaf_ends(ends.to_vec()).unwrap(), data, piece)
    }

    /// Planned ends stream like kubo's chunker: the same CIDs in any pieces, kubo's own DAG
    /// when the plan is kubo's, and bytes past the plan or a file shorter than it still add.
    #[test]
    fn leaf_ends_cut_where_told_in_any_pieces() {
        let data = mod251(5 * DEFAULT_CHUNK_SIZE + 777);
        let kubo: Vec<u64> = (1..=5)
            .map(|i| (i * DEFAULT_CHUNK_SIZE) as u64)
            .chain([data.len() as u64])
            .collect();
        let (want, _, _) = add_all(&data, &AddOptions::default(), 1 << 20);
        for piece in [1, 4093, 1 << 20, data.len()] {
            let piece = piece.min(data.len());
            if piece == 1 {
                // one byte at a time over 1.3 MB is slow in debug builds: a prefix will do
                let short = &data[..9_000];
                let (root, _, _) = add_cut(short, &[100, 4_200, 9_000], 1);
                assert_eq!(root, add_cut(short, &[100, 4_200, 9_000], 9_000).0);
                continue;
            }
            let (root, blocks, cumulative) = add_cut(&data, &kubo, piece);
            assert_eq!(root, want, "pieces of {piece}");
            assert_eq!(blocks.last().map(|b| b.0), Some(root));
            let total: u64 = blocks.iter().map(|(_, b)| b.len() as u64).sum();
            assert_eq!(cumulative, total);
        }
        // uneven ends: the leaves are exactly the planned slices
        let ends = [10, 70_010, 70_011, 1_118_587, data.len() as u64];
        let (_, blocks, _) = add_cut(&data, &ends, 65_536);
        let leaves: Vec<usize> = blocks
            .iter()
            .filter(|(c, _)| c.codec() == RAW)
            .map(|(_, b)| b.len())
            .collect();
        assert_eq!(
            leaves,
            vec![10, 70_000, 1, 1_048_576, data.len() - 1_118_587]
        );
        // past the plan: 256 KiB leaves; short of it: the last leaf ends early
        let (_, blocks, _) = add_cut(&data, &[1000], 1 << 20);
        let leaves = blocks.iter().filter(|(c, _)| c.codec() == RAW).count();
        assert_eq!(leaves, 1 + (data.len() - 1000).div_ceil(DEFAULT_CHUNK_SIZE));
        let (root, blocks, _) = add_cut(b"abc", &[2, 1000], 1);
        assert_eq!(blocks.len(), 3, "two leaves and a root");
        assert_eq!(blocks.last().map(|b| b.0), Some(root));
        let (one, blocks, _) = add_cut(b"abc", &[3], 3);
        assert_eq!(
            (one.codec(), blocks.len()),
            (RAW, 1),
            "one leaf is the root"
        );
        let (empty, _, _) = add_cut(b"", &[5], 1);
        assert_eq!(empty.to_string(), EMPTY_RAW);
        // bad plans
        for bad in [
            vec![0],
            vec![5, 5],
            vec![5, 3],
            vec![MAX_CHUNK_SIZE as u64 + 1],
        ] {
            let e = Adder::with_leaf_ends(bad.clone()).unwrap_err();
            assert!(matches!(e, OptionsError::LeafEnds(_)), "{bad:?}: {e}");
        }
        let many = (1..=MAX_LEAF_ENDS as u64 + 1).collect();
        assert!(Adder::with_leaf_ends(many).is_err());
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
