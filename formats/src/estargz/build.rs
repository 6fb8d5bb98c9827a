//! Building eStargz blobs from a layer tar (REFERENCE §1.1–§1.5).
//!
//! [`build`] reads the layer with a checking [`TarStream`], copies every entry's header blocks
//! verbatim and cuts the uncompressed output into gzip members: one at the start, one at every
//! chunk of every non-empty regular file, one for the TOC, one for the footer. The main thread
//! reads, hashes the uncompressed stream (the DiffID) and writes; members are compressed by a
//! rayon pool a batch (~32 MiB) at a time, overlapping the reading of the next batch. Member
//! boundaries depend only on the input and the chunk size, so the blob is the same for any
//! number of threads. Compressed offsets are only known once a batch is written, so TOC entries
//! remember their member's index until [`Writer::finish`] fills the offsets in.
//!
//! With prefetch files the input is spooled to a temporary file first (see [`super::prefetch`]), as the
//! prioritized entries and their parents go before everything else.
//!
//! [`scan`] runs the same entry checks over a tar without converting it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver};

use base64::Engine as _;
use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::footer;
use super::prefetch::{order, Spool};
use super::tarstream::{self, Entry, Kind, Meta, TarStream, BLOCK};
use super::toc::{self, EntryType, Toc, TocEntry, TOC_TAR_NAME, TOC_VERSION};

/// Name of the landmark placed after the prioritized files.
pub const PREFETCH_LANDMARK: &str = ".prefetch.landmark";
/// Name of the landmark placed first when nothing is prioritized.
pub const NO_PREFETCH_LANDMARK: &str = ".no.prefetch.landmark";
/// The compressed offset of `toc`'s `.prefetch.landmark`: the blob's bytes before it hold the
/// files to prefetch. `None` when there is no such landmark (or it sits at the very start).
pub fn prefetch_end(toc: &Toc) -> Option<u64> {
    toc.entries
        .iter()
        .find(|e| e.kind == EntryType::Reg && tarstream::clean(&e.name) == PREFETCH_LANDMARK)
        .and_then(|e| u64::try_from(e.offset).ok())
        .filter(|o| *o > 0)
}
/// The one byte of a landmark file.
const LANDMARK_CONTENTS: u8 = 0x0f;
/// Chunk size when [`BuildOptions::chunk_size`] is 0 (Go `Writer.chunkSize`).
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;
/// Uncompressed bytes handed to the compression pool at once (tests pass smaller batches to
/// `build_batched` to cross batch boundaries).
const BATCH: usize = 32 << 20;
/// `sha256:` of nothing, the digest of an empty regular file.
const EMPTY_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Options of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Uncompressed bytes per chunk (REFERENCE §1.2); default 4 MiB.
    pub chunk_size: u64,
    /// Paths (as in the tar, any of `a/b`, `./a/b`, `/a/b`) to place first, in this order,
    /// followed by `.prefetch.landmark`. Empty: `.no.prefetch.landmark` goes first.
    pub prefetch: Vec<String>,
    /// gzip level 0–9.
    pub level: u32,
    /// Compression threads (0 = all cores). The output does not depend on it.
    pub threads: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            chunk_size: DEFAULT_CHUNK_SIZE,
            prefetch: Vec::new(),
            level: 6,
            threads: 0,
        }
    }
}

/// What [`build`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `sha256:` of the whole blob written to `out`.
    pub digest: String,
    /// Bytes written to `out`.
    pub size: u64,
    /// `sha256:` of the uncompressed tar (the new DiffID).
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// `sha256:` of the TOC JSON (the `containerd.io/snapshot/stargz/toc.digest` annotation).
    pub toc_digest: String,
    /// [`prefetch_end`] of the blob's TOC.
    pub prefetch_end: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading the layer tar: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing the eStargz blob: {0}")]
    Write(#[source] std::io::Error),
    #[error("creating the spool for the prefetch files: {0}")]
    Spool(#[source] std::io::Error),
    #[error(transparent)]
    Tar(#[from] super::tarstream::TarError),
    #[error("prefetch file {0:?} is not in the layer")]
    PrefetchMissing(String),
    #[error("starting the compression threads: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
    #[error("compressing: {0}")]
    Compress(#[source] std::io::Error),
}

/// Convert an uncompressed layer tar into an eStargz blob written to `out`.
///
/// `spool` gives the file in which the layer's payloads wait while the files named by
/// [`BuildOptions::prefetch`] move to the front: called once, and only when there are such
/// files; written in order, then read back by offset. The caller picks where it lives (a
/// temporary file where the layer's size has room), so this module opens no file itself.
///
/// Reading stops at the tar's end-of-archive marker; anything after it is left in `tar`.
pub fn build(
    tar: impl Read,
    opts: &BuildOptions,
    out: impl Write,
    spool: impl FnOnce() -> std::io::Result<std::fs::File>,
) -> Result<Built, BuildError> {
    build_batched(tar, opts, out, spool, BATCH)
}

/// [`build`] handing about `batch` uncompressed bytes to the pool at once.
fn build_batched(
    tar: impl Read,
    opts: &BuildOptions,
    out: impl Write,
    spool: impl FnOnce() -> std::io::Result<std::fs::File>,
    batch: usize,
) -> Result<Built, BuildError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("estargz-{i}"))
        .build()?;
    let mut w = Writer::new(opts, &pool, out, batch);
    let mut ts = TarStream::new(tar);
    if opts.prefetch.is_empty() {
        w.landmark(NO_PREFETCH_LANDMARK)?;
        while let Some(e) = ts.next()? {
            if dropped(&e.meta.name) {
                ts.skip_payload(e.meta.padded())?;
                continue;
            }
            w.entry(&e, &mut |buf: &mut Vec<u8>, len: usize| {
                Ok(ts.payload_into(buf, len)?)
            })?;
        }
    } else {
        let spool = Spool::read(&mut ts, spool().map_err(BuildError::Spool)?)?;
        let (first, rest) = order(&spool.entries, &opts.prefetch)?;
        for i in first {
            w.entry(&spool.entries[i].0, &mut spool.payload(i))?;
        }
        w.landmark(PREFETCH_LANDMARK)?;
        for i in rest {
            w.entry(&spool.entries[i].0, &mut spool.payload(i))?;
        }
    }
    w.finish()
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub diff_id: String,
    pub size: u64,
}

/// Check every entry of a layer tar and hash it (the whole stream, to EOF).
pub fn scan(tar: impl Read) -> Result<Scanned, BuildError> {
    let mut ts = TarStream::new(Hashing {
        inner: tar,
        hash: Sha256::new(),
        n: 0,
    });
    while let Some(e) = ts.next()? {
        ts.skip_payload(e.meta.padded())?;
    }
    let mut r = ts.into_inner();
    std::io::copy(&mut r, &mut std::io::sink()).map_err(BuildError::Read)?;
    Ok(Scanned {
        diff_id: format!("sha256:{}", hex::encode(r.hash.finalize())),
        size: r.n,
    })
}

/// Entries the builder writes itself.
pub(super) fn dropped(name: &str) -> bool {
    let c = tarstream::clean(name);
    c == TOC_TAR_NAME || c == PREFETCH_LANDMARK || c == NO_PREFETCH_LANDMARK
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// Appends `len` bytes of the current entry's payload to a buffer.
pub(super) trait Payload {
    fn read_into(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<(), BuildError>;
}

impl<F: FnMut(&mut Vec<u8>, usize) -> Result<(), BuildError>> Payload for F {
    fn read_into(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<(), BuildError> {
        self(buf, len)
    }
}

/// Uncompressed bytes of one gzip member.
struct Member {
    data: Vec<u8>,
    /// Leading bytes that are a chunk (their sha256 is its `chunkDigest`); 0 = none.
    chunk_len: usize,
}

/// A compressed member.
struct Packed {
    gz: Vec<u8>,
    chunk_digest: Option<String>,
}

/// A TOC entry waiting for its member's compressed offset.
struct Pending {
    entry: TocEntry,
    /// Index of the member its payload starts; `None` for entries without payload.
    member: Option<usize>,
    /// A single-chunk file: its `digest` is its `chunkDigest`.
    digest_is_chunk: bool,
}

/// The sequential half of [`build`]: lays out members, hashes, writes.
struct Writer<'p, W> {
    chunk_size: u64,
    level: Compression,
    pool: &'p rayon::ThreadPool,
    out: W,
    out_hash: Sha256,
    out_size: u64,
    diff: Sha256,
    diff_size: u64,
    cur: Member,
    /// Members created so far, including `cur`.
    members: usize,
    batch: Vec<Member>,
    batch_bytes: usize,
    batch_limit: usize,
    in_flight: Option<Receiver<std::io::Result<Vec<Packed>>>>,
    /// Compressed offset and chunk digest of every written member.
    offsets: Vec<u64>,
    chunk_digests: Vec<Option<String>>,
    toc: Vec<Pending>,
    users: HashMap<i64, String>,
    groups: HashMap<i64, String>,
}

impl<'p, W: Write> Writer<'p, W> {
    fn new(opts: &BuildOptions, pool: &'p rayon::ThreadPool, out: W, batch_limit: usize) -> Self {
        Writer {
            chunk_size: if opts.chunk_size == 0 {
                DEFAULT_CHUNK_SIZE
            } else {
                opts.chunk_size
            },
            level: Compression::new(opts.level.min(9)),
            pool,
            out,
            out_hash: Sha256::new(),
            out_size: 0,
            diff: Sha256::new(),
            diff_size: 0,
            cur: Member {
                data: Vec::with_capacity(64 << 10),
                chunk_len: 0,
            },
            members: 1,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_limit,
            in_flight: None,
            offsets: Vec::new(),
            chunk_digests: Vec::new(),
            toc: Vec::new(),
            users: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    /// Appends bytes to the current member.
    fn append(&mut self, b: &[u8]) {
        self.cur.data.extend_from_slice(b);
        self.diff.update(b);
        self.diff_size += b.len() as u64;
    }

    /// Appends `len` payload bytes; returns where they start in the current member.
    fn append_payload(&mut self, p: &mut dyn Payload, len: usize) -> Result<usize, BuildError> {
        let start = self.cur.data.len();
        p.read_into(&mut self.cur.data, len)?;
        self.diff.update(&self.cur.data[start..]);
        self.diff_size += len as u64;
        Ok(start)
    }

    /// Closes the current member and opens one starting with a `chunk_len`-byte chunk.
    fn new_member(&mut self, chunk_len: usize) -> Result<(), BuildError> {
        let next = Member {
            data: Vec::with_capacity(chunk_len + BLOCK + 4096),
            chunk_len,
        };
        let done = std::mem::replace(&mut self.cur, next);
        self.members += 1;
        self.batch_bytes += done.data.len();
        self.batch.push(done);
        if self.batch_bytes >= self.batch_limit {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Writes the batch in flight (if any) and starts compressing the current batch.
    fn flush_batch(&mut self) -> Result<(), BuildError> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.collect()?;
        let (tx, rx) = sync_channel(1);
        let level = self.level;
        self.pool.spawn(move || {
            // a panic here would abort the process (rayon `spawn`); report it instead
            let packed = std::panic::catch_unwind(|| {
                batch
                    .par_iter()
                    .map_init(|| Compress::new(level, false), |c, m| pack(c, level, m))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap_or_else(|_| Err(std::io::Error::other("a compression thread panicked")));
            let _ = tx.send(packed);
        });
        self.in_flight = Some(rx);
        Ok(())
    }

    /// Waits for the batch in flight and writes it.
    fn collect(&mut self) -> Result<(), BuildError> {
        let Some(rx) = self.in_flight.take() else {
            return Ok(());
        };
        let packed = rx
            .recv()
            .map_err(|_| BuildError::Compress(std::io::Error::other("a compression task died")))?
            .map_err(BuildError::Compress)?;
        for p in packed {
            self.offsets.push(self.out_size);
            self.chunk_digests.push(p.chunk_digest);
            self.write(&p.gz)?;
        }
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> Result<(), BuildError> {
        self.out.write_all(b).map_err(BuildError::Write)?;
        self.out_hash.update(b);
        self.out_size += b.len() as u64;
        Ok(())
    }

    /// A landmark file (REFERENCE §1.5).
    fn landmark(&mut self, name: &str) -> Result<(), BuildError> {
        self.append(&go_header(name, 1));
        self.new_member(1)?;
        let mut block = [0u8; BLOCK];
        block[0] = LANDMARK_CONTENTS;
        self.append(&block);
        let mut e = TocEntry::new(name, EntryType::Reg);
        e.size = 1;
        self.toc.push(Pending {
            entry: e,
            member: Some(self.members - 1),
            digest_is_chunk: true,
        });
        Ok(())
    }

    /// One input entry: its header blocks, then its payload, chunk by chunk.
    fn entry(&mut self, e: &Entry, p: &mut dyn Payload) -> Result<(), BuildError> {
        self.append(&e.raw);
        let m = &e.meta;
        let te = self.toc_entry(m);
        if m.kind != Kind::Reg || m.size == 0 {
            self.toc.push(Pending {
                entry: te,
                member: None,
                digest_is_chunk: false,
            });
            return Ok(());
        }
        let size = m.size;
        let pad = (m.padded() - size) as usize;
        let multi = size > self.chunk_size;
        let mut file_hash = multi.then(Sha256::new);
        let reg_index = self.toc.len();
        let mut te = te;
        let mut written = 0u64;
        while written < size {
            let remain = size - written;
            let n = if remain < self.chunk_size {
                remain
            } else {
                te.chunk_size = self.chunk_size as i64;
                self.chunk_size
            };
            te.chunk_offset = written as i64;
            self.new_member(n as usize)?;
            let last = written + n == size;
            let start = self.append_payload(p, n as usize + if last { pad } else { 0 })?;
            if let Some(h) = &mut file_hash {
                h.update(&self.cur.data[start..start + n as usize]);
            }
            self.toc.push(Pending {
                entry: te,
                member: Some(self.members - 1),
                digest_is_chunk: !multi,
            });
            written += n;
            te = TocEntry::new(m.name.clone(), EntryType::Chunk);
        }
        if let Some(h) = file_hash {
            self.toc[reg_index].entry.digest = format!("sha256:{}", hex::encode(h.finalize()));
        }
        Ok(())
    }

    /// The TOC entry of `m` without payload fields (REFERENCE §1.3).
    fn toc_entry(&mut self, m: &Meta) -> TocEntry {
        let kind = match m.kind {
            Kind::Reg => EntryType::Reg,
            Kind::Hardlink => EntryType::Hardlink,
            Kind::Symlink => EntryType::Symlink,
            Kind::Char => EntryType::Char,
            Kind::Block => EntryType::Block,
            Kind::Dir => EntryType::Dir,
            Kind::Fifo => EntryType::Fifo,
        };
        let mut e = TocEntry::new(m.name.clone(), kind);
        e.mode = m.mode;
        e.uid = m.uid;
        e.gid = m.gid;
        e.user_name = name_if_changed(&mut self.users, m.uid, &m.uname);
        e.group_name = name_if_changed(&mut self.groups, m.gid, &m.gname);
        e.mod_time = rfc3339(m.mtime);
        let b64 = base64::engine::general_purpose::STANDARD;
        e.xattrs = m
            .xattrs
            .iter()
            .map(|(k, v)| (k.clone(), b64.encode(v)))
            .collect();
        match m.kind {
            Kind::Reg => {
                e.size = m.size as i64;
                if m.size == 0 {
                    e.digest = EMPTY_DIGEST.into();
                }
            }
            Kind::Symlink | Kind::Hardlink => e.link_name = m.link_name.clone(),
            Kind::Char | Kind::Block => {
                e.dev_major = m.dev_major;
                e.dev_minor = m.dev_minor;
            }
            Kind::Dir | Kind::Fifo => {}
        }
        e
    }

    /// Compresses what is left, then writes the TOC member and the footer.
    fn finish(mut self) -> Result<Built, BuildError> {
        let last = std::mem::replace(
            &mut self.cur,
            Member {
                data: Vec::new(),
                chunk_len: 0,
            },
        );
        self.batch.push(last);
        self.flush_batch()?;
        self.collect()?;
        let mut entries = Vec::with_capacity(self.toc.len());
        for p in std::mem::take(&mut self.toc) {
            let mut e = p.entry;
            if let Some(m) = p.member {
                let (Some(&off), Some(Some(d))) = (self.offsets.get(m), self.chunk_digests.get(m))
                else {
                    return Err(BuildError::Compress(std::io::Error::other(format!(
                        "member {m} went missing"
                    ))));
                };
                e.offset = off as i64;
                e.chunk_digest = d.clone();
                if p.digest_is_chunk {
                    e.digest = d.clone();
                }
            }
            entries.push(e);
        }
        let toc = Toc {
            version: TOC_VERSION,
            entries,
        };
        let prefetch_end = prefetch_end(&toc);
        let json = toc::to_json(&toc);
        let mut tail = Vec::with_capacity(json.len() + 3 * BLOCK + 1024);
        tail.extend_from_slice(&go_header(TOC_TAR_NAME, json.len() as u64));
        tail.extend_from_slice(&json);
        tail.resize(tarstream::padded(tail.len() as u64) as usize + 1024, 0);
        self.diff.update(&tail);
        self.diff_size += tail.len() as u64;
        let packed = pack(
            &mut Compress::new(self.level, false),
            self.level,
            &Member {
                data: tail,
                chunk_len: 0,
            },
        )
        .map_err(BuildError::Compress)?;
        let toc_offset = self.out_size;
        self.write(&packed.gz)?;
        self.write(&footer::build(toc_offset))?;
        self.out.flush().map_err(BuildError::Write)?;
        Ok(Built {
            digest: format!("sha256:{}", hex::encode(self.out_hash.finalize())),
            size: self.out_size,
            diff_id: format!("sha256:{}", hex::encode(self.diff.finalize())),
            uncompressed_size: self.diff_size,
            toc_digest: toc::digest(&json),
            prefetch_end,
        })
    }
}

/// Go `nameIfChanged`: the name when it differs from the last one seen for `id`.
fn name_if_changed(last: &mut HashMap<i64, String>, id: i64, name: &str) -> String {
    if name.is_empty() || last.get(&id).is_some_and(|n| n == name) {
        return String::new();
    }
    last.insert(id, name.to_string());
    name.to_string()
}

/// One gzip member of `m` (mtime 0, OS 255, as `GzBuilder` writes it) and its chunk digest.
fn pack(c: &mut Compress, level: Compression, m: &Member) -> std::io::Result<Packed> {
    let xfl = match level.level() {
        9.. => 2,
        0 | 1 => 4,
        _ => 0,
    };
    let mut gz = Vec::with_capacity(m.data.len() / 2 + 1024);
    gz.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]);
    c.reset();
    let mut input = &m.data[..];
    loop {
        if gz.capacity() - gz.len() < 1024 {
            gz.reserve(gz.capacity().max(64 << 10));
        }
        let before = c.total_in();
        let st = c.compress_vec(input, &mut gz, FlushCompress::Finish)?;
        input = &input[(c.total_in() - before) as usize..];
        if st == Status::StreamEnd {
            break;
        }
    }
    let mut crc = flate2::Crc::new();
    crc.update(&m.data);
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
    let chunk_digest = (m.chunk_len > 0).then(|| {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(&m.data[..m.chunk_len]))
        )
    });
    Ok(Packed { gz, chunk_digest })
}

/// A ustar header with only name, typeflag regular and size set, as Go's `tar.Writer` writes
/// `&tar.Header{Name, Typeflag: TypeReg, Size}` (the TOC and landmark entries).
fn go_header(name: &str, size: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; BLOCK], off: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}", w = len - 1);
        h[off..off + len - 1].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0); // mode
    octal(&mut h, 108, 8, 0); // uid
    octal(&mut h, 116, 8, 0); // gid
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, 0); // mtime
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h, 329, 8, 0); // devmajor
    octal(&mut h, 337, 8, 0); // devminor
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    octal(&mut h, 148, 7, sum); // Go: six digits, NUL, space
    h[154] = 0;
    h[155] = b' ';
    h
}

/// Go `formatModtime`: empty for the zero time and when `Unix()` is 0, else UTC RFC 3339 of
/// the time rounded to seconds (halves round up) (REFERENCE §1.3).
fn rfc3339((secs, nanos): (i64, u32)) -> String {
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    if secs == 0 || (secs == GO_ZERO_TIME && nanos == 0) {
        return String::new();
    }
    let secs = secs + i64::from(nanos >= 500_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
