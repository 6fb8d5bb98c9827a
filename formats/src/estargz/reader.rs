//! Finding and reading the TOC of a blob: footer → TOC member → `stargz.index.json` JSON.
//! The blob is reached through a `read_at(offset, len)` callback, so a file, a node range read
//! or a registry range request all work, and only the tail of the blob is read.

use flate2::read::GzDecoder;
use std::io::Read;

use super::footer::{self, FOOTER_SIZE};
use super::toc::{self, Toc, TOC_TAR_NAME};

/// Largest TOC JSON accepted (a TOC has one entry per file and chunk; 64 MiB is far beyond
/// any real layer).
pub const MAX_TOC: u64 = 64 << 20;

/// The TOC of an eStargz blob.
#[derive(Debug, Clone)]
pub struct TocInfo {
    /// Compressed offset of the TOC member.
    pub toc_offset: u64,
    /// The TOC JSON exactly as stored.
    pub json: Vec<u8>,
    /// `sha256:` of `json` (the `toc.digest` annotation).
    pub digest: String,
    pub toc: Toc,
}

/// Why a blob is not a readable eStargz blob.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the blob: {0}")]
    Io(#[from] std::io::Error),
    #[error("not eStargz: {0}")]
    Footer(#[from] footer::FooterError),
    #[error("not eStargz: the footer's TOC offset {offset} is outside the {size}-byte blob")]
    Offset { offset: u64, size: u64 },
    #[error("not eStargz: the TOC member is {0} bytes, more than the limit")]
    TooBig(u64),
    #[error("not eStargz: TOC member: {0}")]
    Member(String),
    /// (The TOC error is in the message, not also a source: printed once.)
    #[error("bad eStargz TOC: {0}")]
    Toc(toc::TocError),
}

impl From<toc::TocError> for ReadError {
    fn from(e: toc::TocError) -> Self {
        ReadError::Toc(e)
    }
}

/// Read the TOC of a `size`-byte blob through `read_at(offset, len)`.
pub fn read_toc(
    size: u64,
    mut read_at: impl FnMut(u64, u64) -> std::io::Result<Vec<u8>>,
) -> Result<TocInfo, ReadError> {
    let tail = tail_range(size);
    let tail = read_at(tail.start, tail.end - tail.start)?;
    let member = toc_member(size, &tail)?;
    let bytes = read_at(member.start, member.end - member.start)?;
    parse_member(member.start, bytes.as_slice())
}

/// The last bytes of a `size`-byte blob, where the footer is.
pub fn tail_range(size: u64) -> std::ops::Range<u64> {
    size - (FOOTER_SIZE as u64).min(size)..size
}

/// The compressed range of the TOC member, from the blob's [`tail_range`] bytes; checked to lie
/// inside the blob and to be at most [`MAX_TOC`] long, before anything of it is fetched.
pub fn toc_member(size: u64, tail: &[u8]) -> Result<std::ops::Range<u64>, ReadError> {
    let f = footer::parse_footer(tail)?;
    let end = size.saturating_sub(f.kind.size() as u64);
    if f.toc_offset >= end {
        return Err(ReadError::Offset {
            offset: f.toc_offset,
            size,
        });
    }
    if end - f.toc_offset > MAX_TOC {
        return Err(ReadError::TooBig(end - f.toc_offset));
    }
    Ok(f.toc_offset..end)
}

/// The TOC from the bytes of its member, which starts at `toc_offset`: read as they come
/// (inflated while the rest arrives, when `member` is fed from a fetch).
pub fn parse_member(toc_offset: u64, member: impl Read) -> Result<TocInfo, ReadError> {
    let json = json_from_member(member)?;
    // the digest (a few ms for a big TOC) on a second thread while the JSON parses
    let (toc, digest) = std::thread::scope(|s| {
        let digest = s.spawn(|| toc::digest(&json));
        let toc = toc::parse(&json);
        let digest = digest
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (toc, digest)
    });
    Ok(TocInfo {
        toc_offset,
        digest,
        json,
        toc: toc?,
    })
}

/// The `stargz.index.json` bytes inside a TOC gzip member.
pub fn json_from_member(member: impl Read) -> Result<Vec<u8>, ReadError> {
    let bad = |m: String| ReadError::Member(m);
    let mut ar = tar::Archive::new(GzDecoder::new(member));
    let mut entries = ar.entries().map_err(|e| bad(e.to_string()))?;
    let mut first = entries
        .next()
        .ok_or_else(|| bad("no tar entry".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let name = first
        .path()
        .map_err(|e| bad(e.to_string()))?
        .to_string_lossy()
        .into_owned();
    if name != TOC_TAR_NAME {
        return Err(bad(format!("first entry is {name:?}, not {TOC_TAR_NAME}")));
    }
    let len = first.header().size().map_err(|e| bad(e.to_string()))?;
    if len > MAX_TOC {
        return Err(ReadError::TooBig(len));
    }
    let mut json = Vec::with_capacity(len as usize);
    first
        .read_to_end(&mut json)
        .map_err(|e| bad(e.to_string()))?;
    if json.len() as u64 != len {
        return Err(bad("truncated TOC JSON".into()));
    }
    Ok(json)
}
