//! eStargz: seekable gzip layer blobs (REFERENCE §1).
//!
//! A blob is a concatenation of gzip members that together decompress to one tar stream. Every
//! regular file's payload (and each of its chunks) starts a new member, the `stargz.index.json`
//! TOC sits in the next-to-last member, and a fixed-size empty gzip member (the footer) at the
//! very end records the TOC's compressed offset.
//!
//! Submodules, all pure: bytes or a `Read` in, values or a `Write` out; the caller does the
//! I/O (the builder spools a layer whose prefetch files it moves to the front into a file the
//! caller gives, so that a layer's size does not become memory):
//! - [`footer`]: build and parse the 51-byte footer (and read the 47-byte legacy one).
//! - [`toc`]: the TOC JSON types, parsing, Go-compatible serialization and its digest.
//! - [`index`]: the reader-side [`Index`] of cleaned names and chunks per regular file
//!   (also reachable as `toc::index`).
//!
//! - [`reader`]: a blob's TOC read through a caller's range-read function.
//! - [`build`]: layer tar → eStargz blob (and [`build::scan`], the same checks without converting).
//! - [`cuts`]: where a blob's UnixFS leaves end so that each member keeps its leaf CIDs in every
//!   blob that holds it (issue 24's member-aligned layout; not used by pushes yet).

pub mod build;
pub mod cuts;
pub mod footer;
pub mod index;
mod prefetch;
pub mod reader;
mod tarstream;
pub mod toc;

pub use footer::{Defect, Footer, FooterError, FooterKind, FOOTER_SIZE, LEGACY_FOOTER_SIZE};
pub use index::{Chunk, Index};
pub use toc::{EntryType, Toc, TocEntry, TocError, TOC_TAR_NAME, TOC_VERSION};

/// Fuzz entry (`fuzz/`, feature `fuzzing`): a tar stream of arbitrary bytes, read entry by
/// entry as the builder reads a layer, must end in an entry list or an error, never a panic.
#[cfg(feature = "fuzzing")]
pub fn fuzz_tar_stream(data: &[u8]) {
    let mut t = tarstream::TarStream::new(data);
    while let Ok(Some(e)) = t.next() {
        if t.skip_payload(e.meta.padded()).is_err() {
            break;
        }
    }
}
