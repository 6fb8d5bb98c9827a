//! One layer on its way into the swarm: checked (every tar entry, and its uncompressed digest
//! against the config's DiffID), converted to eStargz unless it already is one or conversion is
//! off, and described in OCI terms. Blocking; callers run it off the async workers.

use anyhow::{anyhow, bail, Context};
use flate2::read::MultiGzDecoder;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::estargz::build::{self, BuildOptions};
use super::estargz::{cuts, reader};
use super::oci::{
    self, Descriptor, Kind, ANNOTATION_PREFETCH_END, ANNOTATION_TOC_DIGEST,
    ANNOTATION_UNCOMPRESSED_SIZE,
};

/// A layer ready to be added.
pub struct Layer {
    /// The descriptor for the new manifest (OCI media type; annotations set for eStargz).
    pub desc: Descriptor,
    /// The blob to add: the source file, or the converted blob in the work directory.
    pub path: PathBuf,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// Whether the blob was built here (else the source bytes are kept).
    pub converted: bool,
    /// TOC digest when the blob is eStargz.
    pub toc_digest: Option<String>,
}

/// Opens the uncompressed tar stream of a layer blob.
fn uncompressed(path: &Path, gzip: bool) -> anyhow::Result<Box<dyn Read + Send>> {
    let f = BufReader::with_capacity(1 << 20, fs::File::open(path)?);
    Ok(if gzip {
        Box::new(MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

/// Prepare the layer `desc` whose verified bytes are in `src`. `opts` is `None` when eStargz
/// conversion is off; with `reconvert`, a layer that already is eStargz is converted again (its
/// TOC and landmarks are dropped and rebuilt), else it is kept as it is. `expected_diff_id` is
/// the config's entry for this layer.
pub fn prepare(
    src: &Path,
    desc: &Descriptor,
    expected_diff_id: &str,
    opts: Option<&BuildOptions>,
    reconvert: bool,
    work: &Path,
) -> anyhow::Result<Layer> {
    let (oci_type, kind) =
        oci::classify(&desc.media_type).map_err(|e| anyhow!("layer {}: {e}", desc.digest))?;
    let Kind::Layer { gzip } = kind else {
        bail!(
            "layer {} has the media type {} of a non-layer",
            desc.digest,
            desc.media_type
        );
    };
    let what = || format!("layer {}", desc.digest);
    let existing = if gzip && !(reconvert && opts.is_some()) {
        read_toc_file(src).ok()
    } else {
        None
    };
    let mut out = desc.clone();
    out.media_type = oci_type.to_string();
    out.urls.clear();
    let layer = match (opts, existing) {
        (Some(opts), None) => {
            let tmp = tempfile::Builder::new()
                .prefix("layer-")
                .tempfile_in(work)
                .context("creating a temporary file for the eStargz blob")?;
            let w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
            let mut input = Hashing::new(uncompressed(src, gzip)?);
            let spool = || tempfile::tempfile_in(work);
            let built = build::build(&mut input, opts, w, spool).with_context(what)?;
            // the DiffID covers everything up to EOF, including padding after the tar's end
            std::io::copy(&mut input, &mut std::io::sink()).with_context(what)?;
            let source_diff_id = input.digest();
            if source_diff_id != expected_diff_id {
                bail!(
                    "layer {}: its uncompressed content hashes to {source_diff_id}, but the image config says {expected_diff_id}",
                    desc.digest
                );
            }
            let (_, path) = tmp
                .keep()
                .map_err(|e| anyhow!("keeping the eStargz blob: {e}"))?;
            out.media_type = oci::OCI_LAYER_GZIP.into();
            out.digest = built.digest;
            out.size = built.size as i64;
            out.annotations
                .insert(ANNOTATION_TOC_DIGEST.into(), built.toc_digest.clone());
            out.annotations.insert(
                ANNOTATION_UNCOMPRESSED_SIZE.into(),
                built.uncompressed_size.to_string(),
            );
            set_prefetch_end(&mut out, built.prefetch_end);
            Layer {
                desc: out,
                path,
                diff_id: built.diff_id,
                converted: true,
                toc_digest: Some(built.toc_digest),
            }
        }
        (_, existing) => {
            let scanned = build::scan(uncompressed(src, gzip)?).with_context(what)?;
            let prefetch_end = existing.as_ref().and_then(|t| build::prefetch_end(&t.toc));
            let toc_digest = existing.map(|t| t.digest);
            set_prefetch_end(&mut out, prefetch_end);
            if let Some(d) = &toc_digest {
                out.annotations
                    .insert(ANNOTATION_TOC_DIGEST.into(), d.clone());
                out.annotations.insert(
                    ANNOTATION_UNCOMPRESSED_SIZE.into(),
                    scanned.size.to_string(),
                );
            }
            Layer {
                desc: out,
                path: src.to_path_buf(),
                diff_id: scanned.diff_id,
                converted: false,
                toc_digest,
            }
        }
    };
    // The source's uncompressed content must be what its config says (a converted layer's
    // input was checked above).
    if !layer.converted && layer.diff_id != expected_diff_id {
        bail!(
            "layer {}: its uncompressed content hashes to {}, but the image config says {expected_diff_id}",
            desc.digest,
            layer.diff_id
        );
    }
    Ok(layer)
}

/// Records where `desc`'s prefetched files end ([`ANNOTATION_PREFETCH_END`]), or that there
/// are none (a stale annotation of a re-converted layer goes).
fn set_prefetch_end(desc: &mut Descriptor, end: Option<u64>) {
    match end {
        Some(end) => desc
            .annotations
            .insert(ANNOTATION_PREFETCH_END.into(), end.to_string()),
        None => desc.annotations.remove(ANNOTATION_PREFETCH_END),
    };
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: sha2::Digest::new(),
        }
    }
    fn digest(self) -> String {
        format!(
            "sha256:{}",
            hex::encode(sha2::Digest::finalize(self.hasher))
        )
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

/// Where the UnixFS leaves of the eStargz file at `path` end: at its gzip members
/// ([`cuts::leaf_ends`]).
pub fn member_leaf_ends(path: &Path) -> anyhow::Result<Vec<u64>> {
    let size = fs::metadata(path)?.len();
    let info =
        read_toc_file(path).with_context(|| format!("reading the TOC of {}", path.display()))?;
    Ok(cuts::leaf_ends(&info.toc, info.toc_offset, size))
}

/// The TOC of the eStargz file at `path` ([`reader::read_toc`] over the file).
pub fn read_toc_file(path: &std::path::Path) -> Result<reader::TocInfo, reader::ReadError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    reader::read_toc(size, |off, len| {
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, off)?;
        Ok(buf)
    })
}
