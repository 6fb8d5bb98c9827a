//! Range reads of UnixFS files over any [`BlockGet`].
//!
//! [`cat()`] walks the file tree depth first and fetches only the blocks that cover the requested
//! range: the root, the interior nodes on the way, and the leaves that hold requested bytes. A
//! 1-byte read of a depth-2 file fetches exactly 3 blocks, even at a chunk boundary.
//!
//! The walk decodes each interior node with `rust_unixfs::file::adder::parse_file_branch` (links
//! and the byte count under each) and each dag-pb leaf with `IdleFileVisit::start`, so it knows the
//! file range of every pending block and checks that leaves hold exactly the bytes their parent
//! promised. Up to `readahead` of the next pending blocks are fetched at once. A root that carries
//! mode/mtime metadata is walked by the crate's `FileVisit` (via `pending_links`/`continue_walk`)
//! instead; that visitor may fetch one extra block at the start of a range that begins exactly on a
//! block boundary.
//!
//! Supported: raw-leaf CIDv1 DAGs, CIDv0 DAGs with dag-pb leaves, and a single raw block. The
//! getter is trusted to return blocks that match their CID (the store and the block service verify).

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use bytes::Bytes;
use cid::Cid;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use rust_unixfs::dir::{describe, NodeDescription};
use rust_unixfs::file::adder::{parse_file_branch, FileBranch};
use rust_unixfs::file::visit::{FileVisit, IdleFileVisit};
use rust_unixfs::file::FileReadFailed;

use crate::blockservice::{BlockGet, FetchError};
use crate::blockstore::{dag_pb_links, DAG_PB, RAW};

/// What a root block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A UnixFS file (dag-pb).
    File,
    /// A single raw (0x55) block: the block is the file.
    Raw,
    /// A UnixFS directory.
    Directory,
    /// A HAMT-sharded UnixFS directory.
    HamtShard,
    /// A UnixFS symlink.
    Symlink,
    /// A dag-pb node that is not UnixFS (or a UnixFS type this code does not know).
    Other,
}

impl FileKind {
    /// The name kubo's `files/stat` uses for `Type`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File | FileKind::Raw => "file",
            FileKind::Directory | FileKind::HamtShard => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Other => "unknown",
        }
    }
}

/// Why a UnixFS read failed: a block could not be had, or the DAG is not a file (as this node
/// reads files: kubo's layouts).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A block could not be had (the error names it).
    #[error("fetching a block: {0}")]
    Fetch(#[source] FetchError),
    /// What the CID names is not a file (a directory, another node type, another codec).
    #[error("{cid} {what}")]
    NotAFile { cid: Cid, what: String },
    /// A node that breaks the format (sizes that do not add up, bad dag-pb).
    #[error("{cid}: invalid file node: {reason}")]
    Invalid { cid: Cid, reason: String },
}

impl ReadError {
    /// The fetch that failed, if that is why.
    pub fn fetch(&self) -> Option<&FetchError> {
        match self {
            ReadError::Fetch(source) => Some(source),
            _ => None,
        }
    }
}

/// [`stat()`] of a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// File size in bytes (0 for anything but files).
    pub size: u64,
    /// Root block length plus the `Tsize` of its links: the whole DAG (kubo's `CumulativeSize`).
    pub cumulative_size: u64,
    /// Number of links of the root block.
    pub blocks: usize,
    pub kind: FileKind,
}

/// Describes `root` from its block alone (one fetch).
pub async fn stat<G: BlockGet>(g: &G, root: Cid) -> Result<FileInfo, ReadError> {
    let block = g.get(root).await.map_err(ReadError::Fetch)?;
    let len = block.len() as u64;
    match root.codec() {
        RAW => Ok(FileInfo {
            size: len,
            cumulative_size: len,
            blocks: 0,
            kind: FileKind::Raw,
        }),
        DAG_PB => {
            let links = dag_pb_links(&root, &block).map_err(|e| ReadError::Invalid {
                cid: root,
                reason: e.to_string(),
            })?;
            let cumulative_size = links
                .iter()
                .fold(len, |sum, link| sum.saturating_add(link.tsize.unwrap_or(0)));
            let (kind, size) = match describe(&block) {
                NodeDescription::File { .. } => match IdleFileVisit::default().start(&block) {
                    Ok((_, size, _, _)) => (FileKind::File, size),
                    Err(e) => return Err(not_a_file(&root, e)),
                },
                NodeDescription::Directory { .. } => (FileKind::Directory, 0),
                NodeDescription::HamtShard { .. } => (FileKind::HamtShard, 0),
                NodeDescription::Symlink => (FileKind::Symlink, 0),
                NodeDescription::Other => (FileKind::Other, 0),
            };
            Ok(FileInfo {
                size,
                cumulative_size,
                blocks: links.len(),
                kind,
            })
        }
        codec => Err(ReadError::NotAFile {
            cid: root,
            what: format!("has codec 0x{codec:x}: not a UnixFS node"),
        }),
    }
}

/// Streams the bytes `[offset, offset + length)` of the file `root` (`length: None` reads to the
/// end; a range past the end is an empty stream; `length: Some(0)` fetches nothing).
///
/// Fetches only the blocks covering the range, with up to `readahead` (at least 1) fetches in
/// flight, polled together inside the stream (no tasks are spawned). The stream ends after the
/// first error. Dropping it cancels the fetches in flight.
pub fn cat<G: BlockGet>(
    g: G,
    root: Cid,
    offset: u64,
    length: Option<u64>,
    readahead: usize,
) -> impl Stream<Item = Result<Bytes, ReadError>> + Send + 'static {
    let end = length.map_or(u64::MAX, |len| offset.saturating_add(len));
    let reader = Reader {
        root,
        target: offset..end,
        state: State::Start,
        fetches: Fetches {
            getter: g,
            limit: readahead.max(1),
            in_flight: FuturesUnordered::new(),
            requested: HashSet::new(),
            ready: HashMap::new(),
        },
    };
    futures::stream::unfold(reader, |mut reader| async move {
        let item = reader.next_chunk().await?;
        Some((item, reader))
    })
}

struct Reader<G> {
    root: Cid,
    target: Range<u64>,
    state: State,
    fetches: Fetches<G>,
}

enum State {
    Start,
    Walking(Walk),
    Done,
}

impl<G: BlockGet> Reader<G> {
    /// The next non-empty piece of the range, `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, ReadError>> {
        loop {
            match self.step().await {
                Ok(Some(bytes)) if bytes.is_empty() => continue,
                Ok(Some(bytes)) => return Some(Ok(bytes)),
                Ok(None) => return None,
                Err(e) => {
                    self.state = State::Done;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Processes one block; `None` once the walk is over.
    async fn step(&mut self) -> Result<Option<Bytes>, ReadError> {
        let (bytes, walk) = match std::mem::replace(&mut self.state, State::Done) {
            State::Done => return Ok(None),
            State::Start if self.target.is_empty() => return Ok(None),
            State::Start => {
                let block = self.fetches.take(self.root, false).await?;
                Walk::start(self.root, &block, &self.target)?
            }
            State::Walking(walk) => {
                let upcoming = walk.upcoming(self.fetches.limit);
                let Some(&next) = upcoming.first() else {
                    return Ok(None);
                };
                self.fetches.prefetch(&upcoming);
                let again = upcoming.iter().skip(1).any(|cid| *cid == next);
                let block = self.fetches.take(next, again).await?;
                walk.feed(next, &block, &self.target)?
            }
        };
        if let Some(walk) = walk {
            self.state = State::Walking(walk);
        }
        Ok(Some(bytes))
    }
}

/// The walk over the file tree, between blocks.
enum Walk {
    /// Pending blocks with their file ranges, next one last. Only blocks that overlap the target.
    Tree(Vec<(Cid, Range<u64>)>),
    /// The crate's visitor (for a root with metadata) and the bytes still to emit.
    Visitor { visit: FileVisit, remaining: u64 },
}

impl Walk {
    /// Reads the root block: its bytes in `target`, and the walk if more blocks are needed.
    fn start(
        root: Cid,
        block: &Bytes,
        target: &Range<u64>,
    ) -> Result<(Bytes, Option<Walk>), ReadError> {
        if root.codec() == DAG_PB && parse_file_branch(block).is_none() {
            if let Ok((_, size, _, Some(_))) = IdleFileVisit::default().start(block) {
                // links and mode/mtime: only the crate's visitor walks this
                let end = target.end.min(size);
                if target.start >= end {
                    return Ok((Bytes::new(), None));
                }
                let range = target.start..end;
                let visit = IdleFileVisit::default()
                    .with_target_range(range)
                    .start(block);
                let visit = visit.map_err(|e| not_a_file(&root, e))?.3;
                let remaining = end - target.start;
                return Ok((
                    Bytes::new(),
                    visit.map(|visit| Walk::Visitor { visit, remaining }),
                ));
            }
        }
        let mut pending = Vec::new();
        let bytes = read_node(&root, block, 0, None, target, &mut pending)?;
        Ok((bytes, Walk::tree(pending)))
    }

    fn tree(pending: Vec<(Cid, Range<u64>)>) -> Option<Walk> {
        (!pending.is_empty()).then_some(Walk::Tree(pending))
    }

    /// The next `n` blocks the walk will ask for, the very next one first.
    fn upcoming(&self, n: usize) -> Vec<Cid> {
        match self {
            Walk::Tree(pending) => pending.iter().rev().take(n).map(|(cid, _)| *cid).collect(),
            Walk::Visitor { visit, .. } => {
                let (first, rest) = visit.pending_links();
                std::iter::once(first)
                    .chain(rest)
                    .take(n)
                    .copied()
                    .collect()
            }
        }
    }

    /// Feeds the block of the first [`upcoming`](Self::upcoming) CID.
    fn feed(
        self,
        cid: Cid,
        block: &Bytes,
        target: &Range<u64>,
    ) -> Result<(Bytes, Option<Walk>), ReadError> {
        match self {
            Walk::Tree(mut pending) => {
                let Some((expected, range)) = pending.pop() else {
                    return Ok((Bytes::new(), None));
                };
                if expected != cid {
                    return Err(ReadError::Invalid {
                        cid,
                        reason: format!("the walk expected {expected} here (internal error)"),
                    });
                }
                let expected = Some(range.end - range.start);
                let bytes = read_node(&cid, block, range.start, expected, target, &mut pending)?;
                Ok((bytes, Walk::tree(pending)))
            }
            Walk::Visitor { visit, remaining } => {
                let (content, next) = visit
                    .continue_walk(block, &mut None)
                    .map_err(|e| not_a_file(&cid, e))?;
                let take = content
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let content = content.get(..take).unwrap_or(content);
                let remaining = remaining - take as u64;
                let next = next
                    .filter(|_| remaining > 0)
                    .map(|visit| Walk::Visitor { visit, remaining });
                Ok((sub_bytes(block, content), next))
            }
        }
    }
}

/// Reads the block of `cid`, which starts at file offset `at` and holds `expected` bytes (as its
/// parent says; `None` for the root): a leaf gives its bytes in `target`, an interior node pushes
/// its children that overlap `target` to `pending`.
fn read_node(
    cid: &Cid,
    block: &Bytes,
    at: u64,
    expected: Option<u64>,
    target: &Range<u64>,
    pending: &mut Vec<(Cid, Range<u64>)>,
) -> Result<Bytes, ReadError> {
    match cid.codec() {
        RAW => {
            check_len(cid, block.len() as u64, expected)?;
            Ok(clip(block, block, at, target))
        }
        DAG_PB => {
            if let Some(branch) = parse_file_branch(block) {
                check_len(cid, branch.filesize, expected)?;
                push_children(pending, cid, &branch, at, target)?;
                return Ok(Bytes::new());
            }
            match IdleFileVisit::default().start(block) {
                Ok((content, size, _, None)) => {
                    check_len(cid, content.len() as u64, Some(expected.unwrap_or(size)))?;
                    Ok(clip(block, content, at, target))
                }
                Ok((_, _, _, Some(_))) => Err(ReadError::Invalid {
                    cid: *cid,
                    reason: "unsupported file node with metadata below the root".into(),
                }),
                Err(e) => Err(not_a_file(cid, e)),
            }
        }
        codec => Err(ReadError::NotAFile {
            cid: *cid,
            what: format!("has codec 0x{codec:x}: not a UnixFS file"),
        }),
    }
}

/// Pushes the children of `branch` (which starts at file offset `at`) that overlap `target`, so
/// that the first child is popped first.
fn push_children(
    pending: &mut Vec<(Cid, Range<u64>)>,
    cid: &Cid,
    branch: &FileBranch,
    at: u64,
    target: &Range<u64>,
) -> Result<(), ReadError> {
    let total = branch
        .links
        .iter()
        .try_fold(0u64, |sum, link| sum.checked_add(link.blocksize));
    if total != Some(branch.filesize) || at.checked_add(branch.filesize).is_none() {
        return Err(ReadError::Invalid {
            cid: *cid,
            reason: format!(
                "link sizes do not add up to its filesize {}",
                branch.filesize
            ),
        });
    }
    let first = pending.len();
    let mut start = at;
    for link in &branch.links {
        let end = start + link.blocksize; // no overflow: checked above
        if start < target.end && target.start < end {
            pending.push((link.cid, start..end));
        }
        start = end;
    }
    if let Some(new) = pending.get_mut(first..) {
        new.reverse();
    }
    Ok(())
}

fn check_len(cid: &Cid, actual: u64, expected: Option<u64>) -> Result<(), ReadError> {
    if let Some(expected) = expected.filter(|e| *e != actual) {
        return Err(ReadError::Invalid {
            cid: *cid,
            reason: format!("holds {actual} bytes, its parent or filesize says {expected}"),
        });
    }
    Ok(())
}

/// The part of `content` (file bytes starting at file offset `at`, a slice of `block`) inside
/// `target`.
fn clip(block: &Bytes, content: &[u8], at: u64, target: &Range<u64>) -> Bytes {
    let len = content.len() as u64;
    let start = target.start.saturating_sub(at).min(len);
    let end = target.end.saturating_sub(at).min(len);
    match (usize::try_from(start), usize::try_from(end)) {
        (Ok(start), Ok(end)) if start < end => {
            sub_bytes(block, content.get(start..end).unwrap_or_default())
        }
        _ => Bytes::new(),
    }
}

/// `part` (a slice of `block`) as a zero-copy `Bytes`; copies if it is not a slice of `block`.
fn sub_bytes(block: &Bytes, part: &[u8]) -> Bytes {
    if part.is_empty() {
        return Bytes::new();
    }
    let offset = (part.as_ptr() as usize).wrapping_sub(block.as_ptr() as usize);
    match offset.checked_add(part.len()) {
        Some(end) if offset < block.len() && end <= block.len() => block.slice(offset..end),
        _ => Bytes::copy_from_slice(part),
    }
}

fn not_a_file(cid: &Cid, e: FileReadFailed) -> ReadError {
    let what = match e {
        FileReadFailed::UnexpectedType(t) if t.is_directory() => {
            "is a directory, not a file".into()
        }
        FileReadFailed::UnexpectedType(t) => format!("is not a UnixFS file (node type {t:?})"),
        e => format!("is not a valid UnixFS file: {e}"),
    };
    ReadError::NotAFile { cid: *cid, what }
}

/// The blocks being fetched or fetched and not yet used. At most `limit` of them (plus the one
/// the walk waits for), so memory stays at about `limit` blocks.
struct Fetches<G> {
    getter: G,
    limit: usize,
    in_flight: FuturesUnordered<BoxFuture<'static, (Cid, Result<Bytes, FetchError>)>>,
    requested: HashSet<Cid>,
    ready: HashMap<Cid, Bytes>,
}

impl<G: BlockGet> Fetches<G> {
    /// Starts fetches for `upcoming` in order (its first CID always) while under the limit.
    fn prefetch(&mut self, upcoming: &[Cid]) {
        for (i, cid) in upcoming.iter().enumerate() {
            if self.ready.contains_key(cid) || self.requested.contains(cid) {
                continue;
            }
            if i > 0 && self.requested.len() + self.ready.len() >= self.limit {
                break;
            }
            self.start(*cid);
        }
    }

    fn start(&mut self, cid: Cid) {
        self.requested.insert(cid);
        let getter = self.getter.clone();
        self.in_flight
            .push(Box::pin(async move { (cid, getter.get(cid).await) }));
    }

    /// Waits for `cid` (fetching it if needed), driving the other fetches meanwhile. Keeps a copy
    /// when `again` (the CID comes up again soon, e.g. a repeated leaf).
    async fn take(&mut self, cid: Cid, again: bool) -> Result<Bytes, ReadError> {
        loop {
            let found = if again {
                self.ready.get(&cid).cloned()
            } else {
                self.ready.remove(&cid)
            };
            if let Some(block) = found {
                return Ok(block);
            }
            if !self.requested.contains(&cid) {
                self.start(cid);
            }
            if let Some((got, result)) = self.in_flight.next().await {
                self.requested.remove(&got);
                match result {
                    Ok(block) => {
                        self.ready.insert(got, block);
                    }
                    Err(source) if got == cid => return Err(ReadError::Fetch(source)),
                    // a failed prefetch is retried when the walk reaches it
                    Err(e) => tracing::debug!(%got, "prefetch failed: {e:#}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockstore::{Blocks, MemStore};
    use crate::unixfs::add::{add_bytes, AddOptions, DEFAULT_CHUNK_SIZE};
    use futures::TryStreamExt;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use sha2::Digest;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    /// Local getter that records every fetch and the most fetches in flight at once.
    #[derive(Clone, Default)]
    struct Counting {
        store: Arc<MemStore>,
        fetched: Arc<Mutex<Vec<Cid>>>,
        now: Arc<AtomicUsize>,
        max: Arc<AtomicUsize>,
    }

    impl Counting {
        fn take_fetched(&self) -> Vec<Cid> {
            std::mem::take(&mut *self.fetched.lock().unwrap())
        }
    }

    impl BlockGet for Counting {
        fn get(
            &self,
            cid: Cid,
        ) -> impl Future<Output = Result<Bytes, crate::blockservice::FetchError>> + Send {
            let this = self.clone();
            async move {
                this.fetched.lock().unwrap().push(cid);
                this.max
                    .fetch_max(this.now.fetch_add(1, SeqCst) + 1, SeqCst);
                tokio::time::sleep(Duration::from_micros(200)).await;
                this.now.fetch_sub(1, SeqCst);
                BlockGet::get(&this.store, cid).await
            }
        }
    }

    struct Dag {
        getter: Counting,
        root: Cid,
        data: Vec<u8>,
        depth: usize,
    }

    fn dag(data: Vec<u8>, opts: &AddOptions) -> Dag {
        let getter = Counting::default();
        let added = add_bytes(&*getter.store, &data, opts).unwrap();
        let (mut depth, mut cid) = (0, added.root);
        while let Some(link) =
            crate::blockstore::links(&cid, &Blocks::get(&*getter.store, &cid).unwrap().unwrap())
                .unwrap()
                .first()
        {
            (depth, cid) = (depth + 1, *link);
        }
        Dag {
            getter,
            root: added.root,
            data,
            depth,
        }
    }

    /// 174 chunks + 1 byte: root -> [174 leaves, 1 leaf], as CIDv1 raw leaves and CIDv0 dag-pb leaves.
    fn big() -> &'static [Dag; 2] {
        static BIG: OnceLock<[Dag; 2]> = OnceLock::new();
        BIG.get_or_init(|| {
            let data: Vec<u8> = (0..45_613_057usize).map(|i| (i % 251) as u8).collect();
            [
                dag(data.clone(), &AddOptions::default()),
                dag(data, &AddOptions::kubo_v0()),
            ]
        })
    }

    async fn read(g: &Counting, root: Cid, offset: u64, len: Option<u64>, ra: usize) -> Vec<u8> {
        let parts: Vec<Bytes> = cat(g.clone(), root, offset, len, ra)
            .try_collect()
            .await
            .unwrap();
        parts.concat()
    }

    fn slice(data: &[u8], offset: u64, len: Option<u64>) -> &[u8] {
        let start = (offset as usize).min(data.len());
        let end = len.map_or(data.len(), |l| (start + l as usize).min(data.len()));
        &data[start..end]
    }

    #[tokio::test]
    async fn random_ranges_equal_the_slice() {
        let mut rng = StdRng::seed_from_u64(251);
        for dag in big() {
            assert_eq!(dag.depth, 2);
            let size = dag.data.len() as u64;
            let mut ranges = vec![
                (0, None),
                (size - 1, None),
                (size, Some(5)),
                (1 << 20, Some(0)),
            ];
            for _ in 0..40 {
                let len = [None, Some(rng.random_range(1..3 << 20))][rng.random_range(0..2)];
                ranges.push((rng.random_range(0..size + 10), len));
            }
            for (offset, len) in ranges {
                let got = read(&dag.getter, dag.root, offset, len, 8).await;
                assert!(
                    got == slice(&dag.data, offset, len),
                    "{} {offset} {len:?}",
                    dag.root
                );
            }
        }
    }

    #[tokio::test]
    async fn one_byte_fetches_depth_plus_one_blocks() {
        let chunk = DEFAULT_CHUNK_SIZE as u64;
        for dag in big() {
            let size = dag.data.len() as u64;
            for offset in [
                0,
                1,
                chunk - 1,
                chunk,
                chunk + 1,
                174 * chunk - 1,
                174 * chunk,
                12_345_678,
            ] {
                dag.getter.take_fetched();
                assert_eq!(
                    read(&dag.getter, dag.root, offset, Some(1), 8).await,
                    slice(&dag.data, offset, Some(1))
                );
                let fetched = dag.getter.take_fetched();
                assert_eq!(fetched.len(), dag.depth + 1, "offset {offset}: {fetched:?}");
                assert_eq!(fetched[0], dag.root);
            }
            // across the two interior nodes: root, both of them, and one leaf under each
            read(&dag.getter, dag.root, 174 * chunk - 1, Some(2), 8).await;
            assert_eq!(dag.getter.take_fetched().len(), 5);
            // past the end: the root only; empty range: nothing
            assert!(read(&dag.getter, dag.root, size, None, 8).await.is_empty());
            assert_eq!(dag.getter.take_fetched(), vec![dag.root]);
            assert!(read(&dag.getter, dag.root, 7, Some(0), 8).await.is_empty());
            assert!(dag.getter.take_fetched().is_empty());
        }
    }

    #[tokio::test]
    async fn deep_small_trees_and_repeated_leaves() {
        // chunks of 100 bytes, 4 links per node: depth 4; the zero file repeats one leaf
        let opts = AddOptions {
            chunk_size: 100,
            max_links: 4,
            ..AddOptions::default()
        };
        let mod251: Vec<u8> = (0..10_050usize).map(|i| (i % 251) as u8).collect();
        for opts in [
            opts,
            AddOptions {
                cid_version: 0,
                ..opts
            },
        ] {
            for dag in [dag(mod251.clone(), &opts), dag(vec![0; 3_001], &opts)] {
                for offset in (0..dag.data.len() as u64 + 1).step_by(50) {
                    dag.getter.take_fetched();
                    let got = read(&dag.getter, dag.root, offset, Some(1), 3).await;
                    assert_eq!(got, slice(&dag.data, offset, Some(1)));
                    if offset < dag.data.len() as u64 {
                        assert_eq!(dag.getter.take_fetched().len(), dag.depth + 1);
                    }
                    let got = read(&dag.getter, dag.root, offset, Some(777), 3).await;
                    assert_eq!(got, slice(&dag.data, offset, Some(777)));
                }
            }
        }
    }

    #[tokio::test]
    async fn readahead_bounds_fetches_in_flight() {
        let data: Vec<u8> = (0..64 * 1024usize).map(|i| (i % 251) as u8).collect();
        let dag = dag(
            data,
            &AddOptions {
                chunk_size: 1024,
                ..AddOptions::default()
            },
        );
        for readahead in [1, 4, 16] {
            dag.getter.max.store(0, SeqCst);
            assert_eq!(
                read(&dag.getter, dag.root, 0, None, readahead).await,
                dag.data
            );
            assert_eq!(dag.getter.max.load(SeqCst), readahead);
            assert_eq!(dag.getter.take_fetched().len(), 65);
        }
    }

    #[tokio::test]
    async fn single_blocks_and_metadata_roots() {
        let store = Arc::new(MemStore::default());
        let hello = b"hello world\n";
        for opts in [AddOptions::default(), AddOptions::kubo_v0()] {
            let root = add_bytes(&*store, hello, &opts).unwrap().root;
            let info = stat(&store, root).await.unwrap();
            assert_eq!(
                (info.size, info.blocks, info.kind.as_str()),
                (12, 0, "file")
            );
            for (offset, len) in [
                (0, None),
                (6, Some(5)),
                (11, Some(9)),
                (12, None),
                (40, Some(1)),
            ] {
                let parts: Vec<Bytes> = cat(store.clone(), root, offset, len, 2)
                    .try_collect()
                    .await
                    .unwrap();
                assert_eq!(parts.concat(), slice(hello, offset, len));
            }
        }
        // a root with mode and links goes through the crate's visitor
        let data: Vec<u8> = (0..5_000usize).map(|i| (i % 251) as u8).collect();
        let mut adder = rust_unixfs::file::adder::FileAdder::builder()
            .with_chunker(rust_unixfs::file::adder::Chunker::Size(300))
            .with_metadata(rust_unixfs::Metadata::default().with_mode(0o644))
            .build();
        let mut blocks = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let (out, n) = adder.push(rest);
            blocks.extend(out);
            rest = &rest[n..];
        }
        blocks.extend(adder.finish());
        for (cid, block) in &blocks {
            store.put(cid, block).unwrap();
        }
        let root = blocks.last().unwrap().0;
        assert_eq!(stat(&store, root).await.unwrap().size, 5_000);
        for (offset, len) in [
            (0, None),
            (299, Some(2)),
            (4_999, Some(10)),
            (1_000, Some(2_345)),
            (5_000, None),
        ] {
            let parts: Vec<Bytes> = cat(store.clone(), root, offset, len, 4)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(
                parts.concat(),
                slice(&data, offset, len),
                "{offset} {len:?}"
            );
        }
    }

    /// A file node over the raw leaves "abcd" and "efgh" that claims they hold 3 and 5 bytes.
    fn lying_parent(store: &MemStore) -> Cid {
        let mut node = Vec::new();
        for leaf in [b"abcd", b"efgh"] {
            let cid = add_bytes(store, leaf, &AddOptions::default()).unwrap().root;
            let mut link = vec![0x0a, 36];
            link.extend(cid.to_bytes());
            link.extend([0x12, 0x00, 0x18, 4]);
            node.extend([0x12, link.len() as u8]);
            node.extend(link);
        }
        node.extend([0x0a, 8, 0x08, 0x02, 0x18, 8, 0x20, 3, 0x20, 5]);
        let mh = cid::multihash::Multihash::wrap(0x12, &sha2::Sha256::digest(&node)).unwrap();
        let cid = Cid::new_v1(DAG_PB, mh);
        store.put(&cid, &node).unwrap();
        cid
    }

    #[tokio::test]
    async fn stat_and_clear_errors() {
        let (dag, store) = (&big()[0], &big()[0].getter.store);
        let info = stat(store, dag.root).await.unwrap();
        assert_eq!(
            (info.size, info.blocks, info.kind),
            (dag.data.len() as u64, 2, FileKind::File)
        );
        let total: u64 = store
            .cids()
            .unwrap()
            .iter()
            .map(|c| Blocks::get(&**store, c).unwrap().unwrap().len() as u64)
            .sum();
        assert_eq!(info.cumulative_size, total);

        let dir: Cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
            .parse()
            .unwrap();
        let not_unixfs: Cid = "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        let missing: Cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
            .parse()
            .unwrap();
        let store = Arc::new(MemStore::default());
        let lying = lying_parent(&store);
        store.put(&dir, &[0x0a, 0x02, 0x08, 0x01]).unwrap();
        store.put(&not_unixfs, b"").unwrap();
        assert_eq!(stat(&store, dir).await.unwrap().kind, FileKind::Directory);
        for (cid, msg) in [
            (dir, "is a directory, not a file"),
            (not_unixfs, "is not a valid UnixFS file"),
            (missing, "not found locally"),
            (lying, "holds 4 bytes, its parent or filesize says 3"),
        ] {
            let mut stream = Box::pin(cat(store.clone(), cid, 0, None, 4));
            let err = stream.try_next().await.unwrap_err();
            assert!(format!("{err:#}").contains(msg), "{cid}: {err:#}");
            assert!(
                stream.try_next().await.unwrap().is_none(),
                "the stream ends after an error"
            );
        }
    }
}
