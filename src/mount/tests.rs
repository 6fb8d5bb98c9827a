//! The mount core without FUSE: real eStargz blobs (the builder), added to an in-memory store
//! with the real UnixFS adder, opened by [`layer::open`] and read through [`Reader`] as the
//! FUSE adapter would. Hostile TOCs are made by rewriting a built blob's TOC member and footer.
//! The same flows over real FUSE between two daemons are in `tests/mount.rs`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::cache::ChunkCache;
use super::inode::{Kind, Table};
use super::layer::{self, Blob, Layer};
use super::reader::Reader;
use crate::blockservice::BlockService;
use crate::blockstore::{Blocks, MemStore};
use crate::image::estargz::build::{build, BuildOptions};
use crate::image::estargz::reader::read_toc;
use crate::image::estargz::{footer, toc, EntryType, Toc, TOC_TAR_NAME};
use crate::image::oci::{self, Descriptor, ANNOTATION_TOC_DIGEST};
use crate::unixfs::{add_bytes, AddOptions};

/// A plain layer tar of `(name, content)` files, plus a symlink `link -> big`.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    crate::test_utils::tar_of(files, &[("link", "big")])
}

/// eStargz of `tar` with 64 KiB chunks.
fn estargz(tar: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = BuildOptions {
        chunk_size: 64 << 10,
        ..BuildOptions::default()
    };
    build(tar, &opts, &mut out, tempfile::tempfile).unwrap();
    out
}

/// The blob with its TOC replaced by `edit` of it (a new TOC member and footer).
fn rewrite_toc(blob: &[u8], edit: impl FnOnce(&mut Toc)) -> Vec<u8> {
    let info = read_toc(blob.len() as u64, |o, l| {
        Ok(blob[o as usize..(o + l) as usize].to_vec())
    })
    .unwrap();
    let mut t = info.toc;
    edit(&mut t);
    let json = toc::to_json(&t);
    let mut out = blob[..info.toc_offset as usize].to_vec();
    out.extend_from_slice(&toc_member(&json, json.len() as u64));
    out.extend_from_slice(&footer::build(info.toc_offset));
    out
}

/// A gzip TOC member holding `json` under a tar header that claims `claimed` bytes.
fn toc_member(json: &[u8], claimed: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(TOC_TAR_NAME).unwrap();
    h.set_size(claimed);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(json);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

struct Fixture {
    store: Arc<MemStore>,
    blocks: BlockService,
    spool: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let store = Arc::new(MemStore::default());
        Fixture {
            blocks: BlockService::new(store.clone(), None),
            store,
            spool: tempfile::tempdir().unwrap(),
        }
    }

    /// Adds `blob` as a layer; the descriptor carries its CID and, if given, a TOC digest.
    fn add(&self, blob: &[u8], media_type: &str, toc_digest: Option<String>) -> Descriptor {
        let added = add_bytes(&*self.store, blob, &AddOptions::default()).unwrap();
        let mut d = Descriptor::of(media_type, blob);
        d.set_cid(&added.root);
        if let Some(t) = toc_digest {
            d.annotations.insert(ANNOTATION_TOC_DIGEST.into(), t);
        }
        d
    }

    async fn open(&self, d: &Descriptor, diff_id: &str) -> anyhow::Result<(Layer, Toc)> {
        layer::open(&self.blocks, d, diff_id, self.spool.path(), true).await
    }

    fn reader(&self, layers: Vec<Layer>) -> Reader {
        self.reader_with(Arc::new(ChunkCache::new(1 << 20)), layers)
    }

    /// A reader of `layers` over `cache` (which the test looks into).
    fn reader_with(&self, cache: Arc<ChunkCache>, layers: Vec<Layer>) -> Reader {
        Reader::new(
            self.blocks.clone(),
            Arc::new(layers),
            cache,
            Duration::from_secs(5),
        )
    }
}

fn toc_digest(blob: &[u8]) -> String {
    read_toc(blob.len() as u64, |o, l| {
        Ok(blob[o as usize..(o + l) as usize].to_vec())
    })
    .unwrap()
    .digest
}

fn big() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

/// Reads `path` of a one-layer mount through the reader.
async fn read(t: &Table, r: &Reader, path: &str, offset: u64, len: u64) -> Vec<u8> {
    let n = t.resolve(path).unwrap_or_else(|| panic!("{path} missing"));
    let Kind::File(f) = &n.kind else {
        panic!("{path} is not a file")
    };
    r.read(f, n.size, offset, len).await.unwrap().to_vec()
}

#[tokio::test]
async fn ranges_across_chunks_read_back_exactly() {
    let fx = Fixture::new();
    let big = big();
    let tar = tar_of(&[("big", &big), ("etc/small", b"hello\n"), ("empty", b"")]);
    let blob = estargz(&tar);
    let d = fx.add(&blob, oci::OCI_LAYER_GZIP, Some(toc_digest(&blob)));
    let (l, toc) = fx.open(&d, &oci::sha256_digest(&tar)).await.unwrap();
    assert!(
        matches!(l.blob, Blob::Remote),
        "an eStargz layer is read in place"
    );
    assert!(l.index.files["big"].len() > 4, "several chunks");
    let t = Table::build(&[toc]).unwrap();
    let r = fx.reader(vec![l]);
    for (off, len) in [
        (0, 10),
        (65_530, 20),      // across a chunk boundary
        (0, 300_000),      // the whole file, every chunk
        (131_072, 65_536), // exactly one chunk
        (299_990, 100),    // past the end: clipped
        (400_000, 10),     // beyond the end: empty
    ] {
        let end = (off + len).min(big.len() as u64) as usize;
        let want = big.get(off as usize..end).unwrap_or_default();
        assert_eq!(read(&t, &r, "big", off, len).await, want, "{off}+{len}");
    }
    assert_eq!(read(&t, &r, "etc/small", 0, 4096).await, b"hello\n");
    assert_eq!(read(&t, &r, "empty", 0, 4096).await, b"");
    assert!(matches!(
        &t.resolve("link").unwrap().kind,
        Kind::Symlink { target } if target == "big"
    ));
}

#[tokio::test]
async fn a_layer_that_is_not_estargz_is_spooled_and_served() {
    let fx = Fixture::new();
    let big = big();
    let tar = tar_of(&[("big", &big), ("etc/small", b"hi\n")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let d = fx.add(&gz, oci::OCI_LAYER_GZIP, None);
    let (l, toc) = fx.open(&d, &oci::sha256_digest(&tar)).await.unwrap();
    assert!(matches!(l.blob, Blob::Local(_)));
    assert_eq!(
        std::fs::read_dir(fx.spool.path()).unwrap().count(),
        0,
        "the spool file is unlinked once open"
    );
    let t = Table::build(&[toc]).unwrap();
    let r = fx.reader(vec![l]);
    assert_eq!(
        read(&t, &r, "big", 1000, 200_000).await,
        &big[1000..201_000]
    );
    assert_eq!(read(&t, &r, "etc/small", 0, 10).await, b"hi\n");
    // a layer claiming more than the spool's filesystem holds is refused before any fetch
    let mut huge = fx.add(&gz, oci::OCI_LAYER_GZIP, None);
    huge.size = 1 << 50;
    let err = fx.open(&huge, "").await.unwrap_err();
    assert!(format!("{err:#}").contains("claims"), "{err:#}");
    // a plain tar whose content is not what the config says is refused
    let d = fx.add(&tar, oci::OCI_LAYER, None);
    let err = fx.open(&d, "sha256:0000").await.unwrap_err();
    assert!(format!("{err:#}").contains("config says"), "{err:#}");
}

/// A layer of `big` and `etc/small` ("hello\n") whose TOC gives `etc/small` a wrong digest:
/// the file's content, the layer's tar and its descriptor.
fn lying_small(fx: &Fixture) -> (Vec<u8>, Vec<u8>, Descriptor) {
    let big = big();
    let tar = tar_of(&[("big", &big), ("etc/small", b"hello\n")]);
    let blob = rewrite_toc(&estargz(&tar), |t| {
        for e in &mut t.entries {
            if e.name == "etc/small" {
                e.chunk_digest = format!("sha256:{}", "0".repeat(64));
            }
        }
    });
    let d = fx.add(&blob, oci::OCI_LAYER_GZIP, Some(toc_digest(&blob)));
    (big, tar, d)
}

#[tokio::test]
async fn chunk_digest_mismatch_is_eio_and_intact_blocks_stay() {
    let fx = Fixture::new();
    let (big, _, d) = lying_small(&fx);
    let (l, toc) = fx.open(&d, "").await.unwrap();
    let t = Table::build(&[toc]).unwrap();
    let r = fx.reader(vec![l]);
    assert_eq!(read(&t, &r, "big", 0, 5).await, &big[..5]);
    let before = fx.store.stat().unwrap().blocks;
    let n = t.resolve("etc/small").unwrap();
    let Kind::File(f) = &n.kind else { panic!() };
    let err = r.read(f, n.size, 0, 100).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(err.to_string().contains("etc/small"), "{err}");
    assert_eq!(
        fx.store.stat().unwrap().blocks,
        before,
        "blocks that match their CIDs are not corrupt: the TOC is, and they stay"
    );
    // the kernel's immediate retry fails at once with the same error
    let again = r.read(f, n.size, 0, 100).await.unwrap_err();
    assert_eq!(again.to_string(), err.to_string());
}

/// A block that rotted in the store (its bytes no longer match its CID) makes its chunk fail
/// its digest; that block, and only it, is dropped, so the next read fetches it anew.
#[tokio::test]
async fn a_rotten_block_under_a_bad_chunk_is_dropped() {
    let fx = Fixture::new();
    let tar = tar_of(&[("big", &noise(600_000)), ("etc/small", b"hello\n")]);
    let blob = estargz(&tar);
    let d = fx.add(&blob, oci::OCI_LAYER_GZIP, Some(toc_digest(&blob)));
    let root = d.cid().unwrap();
    let (l, toc) = fx.open(&d, "").await.unwrap();
    let t = Table::build(&[toc]).unwrap();
    let leaves = crate::blockstore::links(&root, &fx.store.get(&root).unwrap().unwrap()).unwrap();
    let first = leaves[0];
    let good = fx.store.get(&first).unwrap().unwrap();
    let mut rotten = good.to_vec();
    let at = l.index.files["big"][0].offset as usize + 1000;
    assert!(at < good.len(), "big's first chunk is in the first leaf");
    rotten[at] ^= 0xff;
    fx.store.rot(&first, &rotten);
    let r = fx.reader(vec![l]);
    let n = t.resolve("big").unwrap();
    let Kind::File(f) = &n.kind else { panic!() };
    let err = r.read(f, n.size, 0, 10).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert!(
        !fx.store.has(&first).unwrap(),
        "the rotten block is dropped"
    );
    for other in &leaves[1..] {
        assert!(fx.store.has(other).unwrap(), "{other} is intact and stays");
    }
    assert!(fx.store.has(&root).unwrap());
}

/// A hostile layer whose DAG reuses another image's pinned leaves (fixed-size leaves: the same
/// prefix of bytes gives the same leaf CIDs) and whose TOC gives wrong chunk digests: its reads
/// fail, and every block of the other image stays (finding C3: they were deleted once).
#[tokio::test]
async fn a_hostile_layer_cannot_drop_another_images_pinned_blocks() {
    let fx = Fixture::new();
    let data = noise(1 << 20);
    let victim = estargz(&tar_of(&[("big", &data)]));
    let v = fx.add(&victim, oci::OCI_LAYER_GZIP, Some(toc_digest(&victim)));
    fx.store.pin(&v.cid().unwrap()).unwrap();
    let pinned = fx.store.cids().unwrap();
    // the same gzip members (so the same first leaves), a TOC with wrong digests
    let hostile = rewrite_toc(&victim, |t| {
        for e in &mut t.entries {
            if !e.chunk_digest.is_empty() {
                e.chunk_digest = format!("sha256:{}", "0".repeat(64));
            }
        }
    });
    let h = fx.add(&hostile, oci::OCI_LAYER_GZIP, Some(toc_digest(&hostile)));
    let hroot = h.cid().unwrap();
    let hleaves =
        crate::blockstore::links(&hroot, &fx.store.get(&hroot).unwrap().unwrap()).unwrap();
    assert!(
        hleaves.iter().filter(|c| pinned.contains(c)).count() >= 3,
        "the hostile DAG links the pinned leaves"
    );
    let (l, toc) = fx.open(&h, "").await.unwrap();
    let t = Table::build(&[toc]).unwrap();
    let r = fx.reader(vec![l]);
    let n = t.resolve("big").unwrap();
    let Kind::File(f) = &n.kind else { panic!() };
    for off in (0..data.len() as u64).step_by(64 << 10) {
        assert!(r.read(f, n.size, off, 10).await.is_err(), "chunk at {off}");
    }
    for c in &pinned {
        assert!(fx.store.has(c).unwrap(), "pinned block {c} was deleted");
    }
}

/// Two layers that claim one digest but are different blobs (a lie the manifest can tell: a
/// remote blob is never hashed whole) share one chunk cache: each reads its own bytes, never
/// the other's (finding C2: the cache was keyed by the claimed digest).
#[tokio::test]
async fn a_layer_claiming_another_layers_digest_reads_its_own_bytes() {
    let fx = Fixture::new();
    let mine = vec![b'a'; 3000];
    let theirs = vec![b'b'; 3000];
    let a = estargz(&tar_of(&[("motd", &mine)]));
    let b = estargz(&tar_of(&[("motd", &theirs)]));
    let da = fx.add(&a, oci::OCI_LAYER_GZIP, Some(toc_digest(&a)));
    let mut db = fx.add(&b, oci::OCI_LAYER_GZIP, Some(toc_digest(&b)));
    db.digest = da.digest.clone(); // the lie
    let cache = Arc::new(ChunkCache::new(1 << 20));
    let mut got = Vec::new();
    for d in [&da, &db] {
        let (l, toc) = fx.open(d, "").await.unwrap();
        let first = l.index.files["motd"][0].clone();
        got.push((first.offset, first.inner_offset));
        let t = Table::build(&[toc]).unwrap();
        let r = Reader::new(
            fx.blocks.clone(),
            Arc::new(vec![l]),
            cache.clone(),
            Duration::from_secs(5),
        );
        let want = if std::ptr::eq(d, &da) { &mine } else { &theirs };
        assert_eq!(&read(&t, &r, "motd", 0, 3000).await, want);
    }
    assert_eq!(
        got[0], got[1],
        "the chunks sit at the same offsets in both blobs"
    );
}

/// `n` bytes that do not compress (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn a_toc_that_does_not_match_the_manifest_is_refused() {
    let fx = Fixture::new();
    let blob = estargz(&tar_of(&[("a", b"x")]));
    let d = fx.add(
        &blob,
        oci::OCI_LAYER_GZIP,
        Some(format!("sha256:{}", "1".repeat(64))),
    );
    let err = fx.open(&d, "").await.unwrap_err();
    assert!(format!("{err:#}").contains("TOC hashes to"), "{err:#}");
}

#[tokio::test]
async fn hostile_names_and_links_stay_inside_the_mount() {
    let fx = Fixture::new();
    let tar = tar_of(&[("a", b"inside"), ("b", b"first"), ("c", b"second")]);
    let blob = rewrite_toc(&estargz(&tar), |t| {
        for e in &mut t.entries {
            match e.name.as_str() {
                "a" => e.name = "../../../etc/passwd".into(),
                "b" => e.name = "/abs/../../dup".into(),
                "c" => e.name = "dup".into(),
                "link" => e.link_name = "/../../../etc/shadow".into(),
                _ => {}
            }
        }
    });
    let d = fx.add(&blob, oci::OCI_LAYER_GZIP, Some(toc_digest(&blob)));
    let (l, toc) = fx.open(&d, "").await.unwrap();
    let t = Table::build(std::slice::from_ref(&toc)).unwrap();
    let paths: Vec<String> = t.walk().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["", "dup", "etc", "etc/passwd", "link"]);
    let r = fx.reader(vec![l]);
    assert_eq!(read(&t, &r, "etc/passwd", 0, 100).await, b"inside");
    assert_eq!(
        read(&t, &r, "dup", 0, 100).await,
        b"second",
        "a later entry of the same name replaces the earlier one"
    );
    // a symlink target is data: it is shown as stored and resolved by the reader's own root
    assert!(matches!(
        &t.resolve("link").unwrap().kind,
        Kind::Symlink { target } if target == "/../../../etc/shadow"
    ));
    // a hardlink whose target cleans to nothing earlier in the image is refused, naming it
    let mut bad = toc;
    let mut h = crate::image::estargz::TocEntry::new("h", EntryType::Hardlink);
    h.link_name = "../../../outside".into();
    bad.entries.push(h);
    let err = Table::build(&[bad]).unwrap_err();
    assert!(err.to_string().contains("\"h\""), "{err}");
}

#[tokio::test]
async fn toc_offsets_outside_the_blob_and_huge_tocs_are_refused() {
    let fx = Fixture::new();
    let blob = estargz(&tar_of(&[("a", b"x")]));
    let body = &blob[..blob.len() - footer::FOOTER_SIZE];
    // footer pointing past the end
    let mut past = body.to_vec();
    past.extend_from_slice(&footer::build(10 << 30));
    let d = fx.add(&past, oci::OCI_LAYER_GZIP, None);
    let err = fx.open(&d, "").await.unwrap_err();
    assert!(format!("{err:#}").contains("outside"), "{err:#}");
    // a TOC entry claiming 100 MB (its member is small): refused before reading it
    let mut huge = body.to_vec();
    let at = huge.len() as u64;
    huge.extend_from_slice(&toc_member(b"{}", 100_000_000));
    huge.extend_from_slice(&footer::build(at));
    let d = fx.add(&huge, oci::OCI_LAYER_GZIP, None);
    let err = fx.open(&d, "").await.unwrap_err();
    assert!(
        format!("{err:#}").contains("more than the limit"),
        "{err:#}"
    );
    // a TOC member of more than 64 MiB is refused from the footer alone, before any fetch
    let tail = footer::build(0);
    let err = crate::image::estargz::reader::toc_member(100 << 20, &tail).unwrap_err();
    assert!(err.to_string().contains("more than the limit"), "{err}");
    // chunk offsets past the TOC: the index refuses the layer
    let bad = rewrite_toc(&blob, |t| {
        for e in &mut t.entries {
            if e.name == "a" {
                e.offset = 1 << 40;
            }
        }
    });
    let d = fx.add(&bad, oci::OCI_LAYER_GZIP, Some(toc_digest(&bad)));
    let err = fx.open(&d, "").await.unwrap_err();
    assert!(format!("{err:#}").contains("\"a\""), "{err:#}");
}

/// A layer of `big` (64 KiB chunks) and `etc/small`, pushed with `etc/small` to prefetch (so
/// before the landmark, and `big` after it).
fn prefetching_layer(fx: &Fixture) -> Descriptor {
    let tar = tar_of(&[("big", &big()), ("etc/small", b"first\n")]);
    layer_prefetching(fx, &tar, "etc/small")
}

/// The layer of `tar` in 64 KiB chunks, pushed with `file` to prefetch.
fn layer_prefetching(fx: &Fixture, tar: &[u8], file: &str) -> Descriptor {
    let mut blob = Vec::new();
    let opts = BuildOptions {
        chunk_size: 64 << 10,
        prefetch: vec![file.into()],
        ..BuildOptions::default()
    };
    build(tar, &opts, &mut blob, tempfile::tempfile).unwrap();
    fx.add(&blob, oci::OCI_LAYER_GZIP, Some(toc_digest(&blob)))
}

#[tokio::test]
async fn prefetch_fills_the_cache_and_background_fetch_pins_the_image() {
    let fx = Fixture::new();
    let d = prefetching_layer(&fx);
    let (l, _) = fx.open(&d, "").await.unwrap();
    let end = l.prefetch_end.expect("a .prefetch.landmark");
    let small = l.index.files["etc/small"][0].clone();
    let first_big = l.index.files["big"][0].clone();
    assert!(small.offset < end && first_big.offset > end);
    let cache = Arc::new(ChunkCache::new(1 << 20));
    let r = fx.reader_with(cache.clone(), vec![l]);
    let cid = d.cid().unwrap();
    let plan = super::prefetch::Plan {
        prefetch: true,
        pin: Some(vec![cid]),
    };
    let (background, prefetched) = super::prefetch::start(r.clone(), fx.blocks.clone(), plan);
    background
        .await
        .expect("the background task runs to its end");
    assert_eq!(prefetched.await, Ok(()), "the end of the prefetch is told");
    let layer = &r.layers()[0];
    let key = |c: &crate::image::estargz::Chunk| super::reader::key(layer, c);
    assert!(cache.contains(&key(&small)), "the prefetch file is cached");
    assert!(
        !cache.contains(&key(&first_big)),
        "nothing after the landmark"
    );
    assert_eq!(fx.store.pins().unwrap(), vec![cid]);
}

/// A prefetch fetches many chunks at once from peers, but only one per core when the layer's
/// blocks before the landmark are fetched early (its manifest names where they end): then it
/// is inflating, CPU work.
#[tokio::test]
async fn a_prefetch_of_blocks_fetched_early_runs_one_chunk_per_core() {
    use super::prefetch::{parallel, PREFETCH_PARALLEL};
    let fx = Fixture::new();
    let mut d = prefetching_layer(&fx);
    let (l, _) = fx.open(&d, "").await.unwrap();
    let end = l.prefetch_end.expect("a .prefetch.landmark");
    assert!(!l.warming());
    assert_eq!(parallel(&fx.reader(vec![l])), PREFETCH_PARALLEL);
    d.annotations
        .insert(oci::ANNOTATION_PREFETCH_END.into(), end.to_string());
    let (l, _) = fx.open(&d, "").await.unwrap();
    assert!(l.warming());
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(parallel(&fx.reader(vec![l])), cores.min(PREFETCH_PARALLEL));
}

/// The chunks before the landmark of a layer fetched early are gathered whole and inflated in
/// one piece (libdeflate); those after it as they arrive: the file reads back exactly, across
/// the landmark.
#[tokio::test]
async fn chunks_of_blocks_fetched_early_inflate_whole_and_read_back_exactly() {
    let fx = Fixture::new();
    let big = big();
    let tar = tar_of(&[("big", &big), ("late", &big[..100_000])]);
    let mut d = layer_prefetching(&fx, &tar, "big");
    let (l, _) = fx.open(&d, "").await.unwrap();
    let end = l.prefetch_end.expect("a .prefetch.landmark");
    d.annotations
        .insert(oci::ANNOTATION_PREFETCH_END.into(), end.to_string());
    let (l, toc) = fx.open(&d, "").await.unwrap();
    assert!(l.warming());
    let chunks = &l.index.files["big"];
    assert!(chunks.len() > 1 && chunks.iter().all(|c| c.offset < end));
    assert!(l.index.files["late"].iter().all(|c| c.offset > end));
    let t = Table::build(&[toc]).unwrap();
    let r = fx.reader(vec![l]);
    assert_eq!(read(&t, &r, "big", 0, big.len() as u64).await, big);
    assert_eq!(read(&t, &r, "big", 70_000, 100).await, &big[70_000..70_100]);
    assert_eq!(read(&t, &r, "late", 0, 100_000).await, &big[..100_000]);
}

/// A chunk is checked against its digest once per node: a good chunk of a blob named by its CID
/// is recorded, and the record stands in for the check on later reads; a chunk that fails its
/// check, and any chunk of a local spool, is never recorded.
#[tokio::test]
async fn a_chunk_is_checked_once_per_node_and_a_failed_check_is_never_recorded() {
    use super::verified::{Verified, TREE};
    let fx = Fixture::new();
    let (big, tar, d) = lying_small(&fx);
    let db = sled::Config::new().temporary(true).open().unwrap();
    let reader = |l: Layer| {
        let cache =
            ChunkCache::new(1 << 20).with_verified(Verified::new(db.open_tree(TREE).unwrap()));
        Reader::new(
            fx.blocks.clone(),
            Arc::new(vec![l]),
            Arc::new(cache),
            Duration::from_secs(5),
        )
    };
    let (l, toc) = fx.open(&d, "").await.unwrap();
    let t = Table::build(&[toc]).unwrap();
    let r = reader(l);
    let memo = Verified::new(db.open_tree(TREE).unwrap());
    let chunk_key = |name: &str| {
        let l = &r.layers()[0];
        super::reader::key(l, &l.index.files[name][0])
    };
    assert_eq!(read(&t, &r, "big", 0, 5).await, &big[..5]);
    assert!(memo.contains(&chunk_key("big")));
    let n = t.resolve("etc/small").unwrap();
    let Kind::File(f) = &n.kind else { panic!() };
    assert_eq!(
        r.read(f, n.size, 0, 100).await.unwrap_err().errno(),
        libc::EIO
    );
    assert!(!memo.contains(&chunk_key("etc/small")));
    // the record is what a later reader (a new cache, as after a restart) goes by
    memo.insert(&chunk_key("etc/small"));
    let (l, _) = fx.open(&d, "").await.unwrap();
    let again = reader(l);
    assert_eq!(read(&t, &again, "etc/small", 0, 100).await, b"hello\n");

    // a spool's offsets are this daemon's own conversion: never recorded
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let d = fx.add(&gz.finish().unwrap(), oci::OCI_LAYER_GZIP, None);
    let (l, toc) = fx.open(&d, &oci::sha256_digest(&tar)).await.unwrap();
    assert!(matches!(l.blob, Blob::Local(_)));
    let before = memo.records();
    let t = Table::build(&[toc]).unwrap();
    assert_eq!(read(&t, &reader(l), "big", 0, 5).await, &big[..5]);
    assert_eq!(memo.records(), before);
}

/// A read no peer answered in time is `ETIMEDOUT` (worth retrying), unlike bytes that fail their
/// digest or a failed fetch (`EIO`): a caller can tell "slow swarm" from "bad image".
#[test]
fn a_timeout_and_a_bad_chunk_answer_different_errnos() {
    let timeout = super::reader::ReadError::Timeout {
        cid: "bafy".into(),
        start: 0,
        end: 1,
        secs: 30,
    };
    let corrupt = super::reader::ReadError::Corrupt {
        cid: "bafy".into(),
        name: "f".into(),
        chunk_offset: 0,
        reason: super::reader::ChunkError::Length { got: 1, want: 2 },
    };
    assert_eq!(timeout.errno(), libc::ETIMEDOUT);
    assert_eq!(corrupt.errno(), libc::EIO);
}

/// Where a layer's prefetched files end is a hint from the manifest: only a number of bytes
/// within the layer starts an early fetch; anything else (none, garbage, 0, past the end) is
/// ignored, and the mount prefetches from its TOC as before.
#[test]
fn only_a_prefetch_end_within_the_layer_is_fetched_early() {
    let mut d = Descriptor::of(oci::OCI_LAYER_GZIP, b"x");
    assert_eq!(layer::warm_end(&d, 1000), None);
    for (hint, want) in [
        ("400", Some(400)),
        ("1000", Some(1000)),
        ("1001", None),
        ("0", None),
        ("-5", None),
        ("4e2", None),
        ("18446744073709551616", None),
    ] {
        d.annotations
            .insert(oci::ANNOTATION_PREFETCH_END.into(), hint.into());
        assert_eq!(layer::warm_end(&d, 1000), want, "{hint}");
    }
}

/// A program's first read fetches what the dynamic loader will load: its interpreter (through
/// a symlinked directory), a library in the multiarch directory (through a relative symlink),
/// one found by the program's `$ORIGIN` run path, one in `/usr/local/lib` (as the official
/// `python` images keep `libpython`), and the library that library needs in turn; nothing
/// else, and nothing when the follower is off.
#[tokio::test]
async fn a_programs_first_read_fetches_its_interpreter_and_libraries() {
    use cidfs_formats::elf::sample;
    let prog = sample(
        "/lib64/ld.so",
        &["libfoo.so.1", "libbar.so", "liblocal.so.1"],
        Some("$ORIGIN/../private"),
    );
    let foo = sample("/lib64/ld.so", &["libbaz.so"], None);
    let files: [(&str, &[u8]); 7] = [
        ("usr/bin/prog", &prog),
        ("usr/lib64/ld.so", b"the loader"),
        ("usr/lib/x86_64-linux-gnu/libfoo.so.1.2", &foo),
        ("usr/private/libbar.so", b"bar"),
        ("usr/local/lib/liblocal.so.1", b"local"),
        ("usr/lib/libbaz.so", b"baz"),
        ("usr/lib/unrelated.so", b"never loaded"),
    ];
    let links = [
        ("lib64", "usr/lib64"),
        ("usr/lib/x86_64-linux-gnu/libfoo.so.1", "libfoo.so.1.2"),
    ];
    let tar = crate::test_utils::tar_of(&files, &links);
    let blob = estargz(&tar);
    let fx = Fixture::new();
    let d = fx.add(&blob, oci::OCI_LAYER_GZIP, Some(toc_digest(&blob)));
    for follow in [true, false] {
        let (l, toc) = fx.open(&d, "").await.unwrap();
        let table = Arc::new(Table::build(&[toc]).unwrap());
        let cache = Arc::new(ChunkCache::new(1 << 20));
        let reader = fx.reader_with(cache.clone(), vec![l]);
        let tree = super::fs::Tree::new(table.clone(), reader.clone()).following_loads(follow);
        let cached = |path: &str| {
            let Kind::File(f) = &table.resolve(path).unwrap().kind else {
                panic!("{path}")
            };
            let layer = &reader.layers()[f.layer];
            cache.contains(&super::reader::key(layer, &layer.index.files[&f.name][0]))
        };
        let ino = table.resolve("usr/bin/prog").unwrap().ino;
        let head = tree.read(ino, 0, 4096).unwrap().await.unwrap();
        assert_eq!(&head[..], &prog[..prog.len().min(4096)]);
        let loaded = [
            "usr/lib64/ld.so",
            "usr/lib/x86_64-linux-gnu/libfoo.so.1.2",
            "usr/private/libbar.so",
            "usr/local/lib/liblocal.so.1",
            "usr/lib/libbaz.so",
        ];
        if follow {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !loaded.iter().all(|p| cached(p)) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{:?}",
                    loaded.map(|p| (p, cached(p)))
                );
                tokio::task::yield_now().await;
            }
        } else {
            assert!(loaded.iter().all(|p| !cached(p)));
        }
        assert!(!cached("usr/lib/unrelated.so"));
    }
    // pushed with the program to prefetch (as `image optimize` does with what a start read),
    // it is left to the mount's prefetch; a library after the landmark is not
    let d = layer_prefetching(&fx, &tar, "usr/bin/prog");
    let (l, toc) = fx.open(&d, "").await.unwrap();
    let table = Arc::new(Table::build(&[toc]).unwrap());
    let loads = super::loads::Loads::new(table.clone(), fx.reader(vec![l]));
    let ino = |p: &str| table.resolve(p).unwrap().ino;
    assert!(loads.prefetched(ino("usr/bin/prog")));
    assert!(!loads.prefetched(ino("usr/private/libbar.so")));
}

/// The followers of layers served alone look through their image's layers, topmost first,
/// whichever image's mount serves each: a base layer mounted for one image serves another
/// stacked on it; a layer of neither is not looked in, nor one whose mount went.
#[tokio::test]
async fn layers_served_alone_know_their_images_other_layers() {
    let tar = crate::test_utils::tar_of(&[("a", b"a")], &[]);
    let blob = estargz(&tar);
    let fx = Fixture::new();
    let d = fx.add(&blob, oci::OCI_LAYER_GZIP, Some(toc_digest(&blob)));
    let (l, toc) = fx.open(&d, "").await.unwrap();
    let table = Arc::new(Table::build_overlay(&toc).unwrap());
    let reader = fx.reader(vec![l]);
    let follower = || super::loads::Loads::new(table.clone(), reader.clone());
    let (base, high, other, stray) = (follower(), follower(), follower(), follower());
    use super::loads::ImageLayers;
    let layers = ImageLayers::default();
    let layer = |name: &str| fx.add(name.as_bytes(), oci::OCI_LAYER_GZIP, None);
    let [l_base, l_high, l_other, l_stray] = ["base", "high", "other", "stray"].map(layer);
    let first = ImageLayers::cids([&l_base, &l_high]);
    layers.join(&l_base, first.clone(), &base);
    layers.join(&l_high, first, &high);
    // a second image on the same base, whose base is not mounted again
    layers.join(&l_other, ImageLayers::cids([&l_base, &l_other]), &other);
    layers.join(&l_stray, ImageLayers::cids([&l_stray]), &stray);
    let seen = |l: &Arc<super::loads::Loads>| {
        let list = l.layers();
        [&base, &high, &other, &stray].map(|x| list.iter().position(|y| Arc::ptr_eq(x, y)))
    };
    assert_eq!(seen(&high), [Some(1), Some(0), None, None]);
    assert_eq!(seen(&base), [Some(1), Some(0), None, None]);
    assert_eq!(seen(&other), [Some(1), None, Some(0), None]);
    assert_eq!(seen(&stray), [None, None, None, Some(0)]);
    drop(high);
    let list = base.layers();
    assert_eq!(list.len(), 1);
    assert!(Arc::ptr_eq(&list[0], &base));
}

/// Where each layer is a tree of its own (the layer store's `diff`s), a program's first read
/// fetches the libraries that lower layers hold, from the topmost layer that has each, and not
/// one that a layer above hides with a whiteout.
#[tokio::test]
async fn a_programs_libraries_are_found_in_the_layers_below() {
    use cidfs_formats::elf::sample;
    let prog = sample("/lib64/ld.so", &["libfoo.so.1", "libgone.so"], None);
    let lower: [(&str, &[u8]); 4] = [
        ("usr/lib64/ld.so", b"the loader"),
        ("usr/lib/x86_64-linux-gnu/libfoo.so.1", b"old foo"),
        ("usr/lib/libgone.so", b"removed above"),
        ("usr/lib/unrelated.so", b"never loaded"),
    ];
    let upper: [(&str, &[u8]); 3] = [
        ("usr/bin/prog", &prog),
        ("usr/lib/x86_64-linux-gnu/libfoo.so.1", b"new foo"),
        ("usr/lib/.wh.libgone.so", b""),
    ];
    // the lower layer holds /lib64 -> usr/lib64, as a base image would
    let links: [&[(&str, &str)]; 2] = [&[("lib64", "usr/lib64")], &[]];
    let fx = Fixture::new();
    let cache = Arc::new(ChunkCache::new(1 << 20));
    let mut layers = Vec::new();
    for (files, links) in [&lower[..], &upper[..]].into_iter().zip(links) {
        let blob = estargz(&crate::test_utils::tar_of(files, links));
        let d = fx.add(&blob, oci::OCI_LAYER_GZIP, Some(toc_digest(&blob)));
        let (l, toc) = fx.open(&d, "").await.unwrap();
        let table = Arc::new(Table::build_overlay(&toc).unwrap());
        let reader = fx.reader_with(cache.clone(), vec![l]);
        let tree = super::fs::Tree::new(table.clone(), reader.clone()).following_loads(true);
        layers.push((table, reader, tree.loads().unwrap().clone(), tree, d));
    }
    // joined as the snapshotter joins its layer mounts (the upper one first here)
    use super::loads::ImageLayers;
    let images = ImageLayers::default();
    let image = ImageLayers::cids([&layers[0].4, &layers[1].4]);
    images.join(&layers[1].4, image.clone(), &layers[1].2);
    images.join(&layers[0].4, image, &layers[0].2);
    let ino = |layer: usize, path: &str| layers[layer].0.resolve(path).unwrap().ino;
    let cached = |layer: usize, path: &str| {
        let (table, reader) = (&layers[layer].0, &layers[layer].1);
        let Kind::File(f) = &table.resolve(path).unwrap().kind else {
            panic!("{path}")
        };
        let l = &reader.layers()[f.layer];
        cache.contains(&super::reader::key(l, &l.index.files[&f.name][0]))
    };
    let (lower, upper) = (0, 1);
    let head = layers[upper].3.read(ino(upper, "usr/bin/prog"), 0, 4096);
    head.unwrap().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(cached(lower, "usr/lib64/ld.so")
        && cached(upper, "usr/lib/x86_64-linux-gnu/libfoo.so.1"))
    {
        assert!(tokio::time::Instant::now() < deadline, "not followed");
        tokio::task::yield_now().await;
    }
    // taken to follow (and so to fetch) at once, with those two, if ever
    let followed = |layer: usize, path: &str| layers[layer].2.followed(ino(layer, path));
    assert!(followed(lower, "usr/lib64/ld.so"));
    assert!(
        !followed(lower, "usr/lib/x86_64-linux-gnu/libfoo.so.1"),
        "hidden by the upper one"
    );
    assert!(!followed(lower, "usr/lib/libgone.so"), "whited out");
    assert!(!followed(lower, "usr/lib/unrelated.so"));
    assert!(!cached(lower, "usr/lib/x86_64-linux-gnu/libfoo.so.1"));
}
