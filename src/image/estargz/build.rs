//! Building eStargz blobs from a layer tar (REFERENCE §1.1–§1.5). TO BE WRITTEN (helper A).

use std::io::{Read, Write};

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
            chunk_size: 4 << 20,
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
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading the layer tar: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing the eStargz blob: {0}")]
    Write(#[source] std::io::Error),
    #[error("tar entry {name:?}: {reason}")]
    Entry { name: String, reason: String },
    #[error("prefetch file {0:?} is not in the layer")]
    PrefetchMissing(String),
}

/// Convert an uncompressed layer tar into an eStargz blob written to `out`.
pub fn build(_tar: impl Read, _opts: &BuildOptions, _out: impl Write) -> Result<Built, BuildError> {
    unimplemented!("helper A")
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub diff_id: String,
    pub size: u64,
}

/// Check every entry of a layer tar and hash it.
pub fn scan(_tar: impl Read) -> Result<Scanned, BuildError> {
    unimplemented!("helper A")
}
