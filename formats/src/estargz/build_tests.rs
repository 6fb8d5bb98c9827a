//! Unit tests of [`super::build`] and [`super::scan`]: every blob is checked end to end
//! (gunzip, tar, footer → TOC, index, every chunk from its offset).

use super::*;
use crate::estargz::{index, reader};
use flate2::read::{GzDecoder, MultiGzDecoder};
use std::collections::BTreeMap;

const MTIME: u64 = 1_700_000_000;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(MTIME);
    h
}

fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o644);
    b.append_data(&mut h, name, data).unwrap();
}

fn dir(b: &mut tar::Builder<Vec<u8>>, name: &str) {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    b.append_data(&mut h, name, &[][..]).unwrap();
}

/// An entry whose header bytes are set directly (the `tar` crate refuses hostile names).
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::new(kind), data.len() as u64, 0o644);
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname = [0; 100];
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn tar_of(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // half compressible: text-like runs mixed with noise
            if i % 64 < 32 {
                b'a' + (i % 26) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

fn opts(chunk_size: u64) -> BuildOptions {
    BuildOptions {
        chunk_size,
        ..BuildOptions::default()
    }
}

/// A checked build: returns the blob, what was built, the TOC and the uncompressed tar.
struct Checked {
    blob: Vec<u8>,
    built: Built,
    toc: Toc,
    tar: Vec<u8>,
}

fn build_checked(input: &[u8], o: &BuildOptions, batch: usize) -> Checked {
    let mut blob = Vec::new();
    let built = build_batched(input, o, &mut blob, tempfile::tempfile, batch).unwrap();
    let mut tar = Vec::new();
    MultiGzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(built.size, blob.len() as u64);
    assert_eq!(built.digest, sha(&blob));
    assert_eq!(built.diff_id, sha(&tar));
    assert_eq!(built.uncompressed_size, tar.len() as u64);
    assert!(tar.ends_with(&[0; 1024]));
    let info = reader::read_toc(blob.len() as u64, |off, len| {
        Ok(blob[off as usize..(off + len) as usize].to_vec())
    })
    .unwrap();
    assert_eq!(info.digest, built.toc_digest);
    assert_eq!(built.prefetch_end, prefetch_end(&info.toc));
    // the TOC member is the only thing between its offset and the footer
    let toc_member = gz_len(&blob[info.toc_offset as usize..]);
    assert_eq!(
        info.toc_offset as usize + toc_member + footer::FOOTER_SIZE,
        blob.len()
    );
    let idx = index::index(&info.toc, blob.len() as u64).unwrap();
    // every chunk inflates from its own member start to its bytes
    let contents = contents(&tar);
    for (name, chunks) in &idx.files {
        let data = &contents[name];
        for c in chunks {
            assert_eq!(c.inner_offset, 0);
            let mut d = GzDecoder::new(&blob[c.offset as usize..]);
            let mut got = vec![0u8; c.chunk_size as usize];
            d.read_exact(&mut got).unwrap();
            let want = &data[c.chunk_offset as usize..(c.chunk_offset + c.chunk_size) as usize];
            assert!(got == want, "{name} chunk at {}", c.chunk_offset);
            assert_eq!(c.chunk_digest.as_deref(), Some(sha(want).as_str()));
        }
    }
    for e in info.toc.entries.iter().filter(|e| e.kind == EntryType::Reg) {
        assert_eq!(
            e.digest,
            sha(&contents[&tarstream::clean(&e.name)]),
            "{}",
            e.name
        );
    }
    Checked {
        blob,
        built,
        toc: info.toc,
        tar,
    }
}

/// Compressed length of the first gzip member of `b`.
fn gz_len(b: &[u8]) -> usize {
    let mut d = flate2::bufread::GzDecoder::new(b);
    std::io::copy(&mut d, &mut std::io::sink()).unwrap();
    b.len() - d.into_inner().len()
}

/// Cleaned name → content of every regular file in `tar` (parsed with the `tar` crate).
fn contents(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(tar).entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let name = tarstream::clean(&e.path().unwrap().to_string_lossy());
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            out.insert(name, v);
        }
    }
    out
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn long_name() -> String {
    format!("usr/share/{}/file.txt", "d".repeat(150))
}

/// A layer with every entry type and the header features the TOC records.
fn rich_layer() -> Vec<u8> {
    tar_of(|b| {
        dir(b, "./");
        dir(b, "./etc/");
        file(b, "./etc/empty", b"");
        file(b, "./etc/small", b"0123456789");
        file(b, "./bin/big", &pseudo_random(3500, 1));
        file(b, "./bin/exact", &pseudo_random(3000, 2));
        let mut h = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut h, "./bin/link", "big").unwrap();
        let mut h = header(tar::EntryType::Link, 0, 0o644);
        b.append_link(&mut h, "./bin/hard", "./bin/big").unwrap();
        let mut h = header(tar::EntryType::Char, 0, 0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        b.append_data(&mut h, "./dev/null", &[][..]).unwrap();
        let mut h = header(tar::EntryType::Fifo, 0, 0o600);
        b.append_data(&mut h, "./run/fifo", &[][..]).unwrap();
        b.append_pax_extensions([
            ("SCHILY.xattr.user.k", &b"v\0\x01"[..]),
            ("SCHILY.xattr.security.capability", &b"\x01\x02"[..]),
        ])
        .unwrap();
        file(b, "./bin/caps", b"#!/bin/sh\n");
        file(b, &long_name(), b"long");
        for (name, uid, uname, gname) in [
            ("./home/a1", 1000, "alice", "users"),
            ("./home/a2", 1000, "alice", "users"),
            ("./home/a3", 1000, "bob", "users"),
            ("./home/a4", 1001, "alice", "staff"),
            ("./home/a5", 1000, "bob", "users"),
        ] {
            let mut h = header(tar::EntryType::Regular, 1, 0o600);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_username(uname).unwrap();
            h.set_groupname(gname).unwrap();
            b.append_data(&mut h, name, &b"x"[..]).unwrap();
        }
        let mut h = header(tar::EntryType::Regular, 2, 0o644);
        h.set_mtime(0);
        b.append_data(&mut h, "./epoch", &b"ab"[..]).unwrap();
        // the tar crate drops "./"; names are kept as stored
        raw(b, "./raw/dotted", b'0', "", b"dot");
        // entries the builder writes itself are dropped
        file(b, "stargz.index.json", b"{}");
        file(b, "./.prefetch.landmark", b"\x0f");
        file(b, ".no.prefetch.landmark", b"\x0f");
    })
}

fn entry<'a>(toc: &'a Toc, name: &str) -> &'a TocEntry {
    toc.entries
        .iter()
        .find(|e| e.name == name && e.kind != EntryType::Chunk)
        .unwrap_or_else(|| panic!("no TOC entry {name}"))
}

#[test]
fn a_rich_layer_becomes_a_readable_estargz_blob() {
    let input = rich_layer();
    let c = build_checked(&input, &opts(1000), BATCH);
    let names: Vec<&str> = c
        .toc
        .entries
        .iter()
        .filter(|e| e.kind != EntryType::Chunk)
        .map(|e| e.name.as_str())
        .collect();
    let long = long_name();
    let mut want = vec![
        ".no.prefetch.landmark",
        "./",
        "etc/",
        "etc/empty",
        "etc/small",
        "bin/big",
        "bin/exact",
        "bin/link",
        "bin/hard",
        "dev/null",
        "run/fifo",
        "bin/caps",
        long.as_str(),
    ];
    want.extend(["home/a1", "home/a2", "home/a3", "home/a4", "home/a5"]);
    want.extend(["epoch", "./raw/dotted"]);
    assert_eq!(names, want);
    // the tar holds the same entries plus the TOC, headers copied verbatim
    let mut tar_want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    tar_want.push(TOC_TAR_NAME.into());
    assert_eq!(tar_names(&c.tar), tar_want);
    let input_tail = &input[BLOCK..BLOCK * 2]; // "etc/" header
    assert!(c.tar.windows(BLOCK).any(|w| w == input_tail));

    let t = &c.toc;
    let lm = entry(t, ".no.prefetch.landmark");
    assert_eq!((lm.size, lm.mode, lm.mod_time.as_str()), (1, 0, ""));
    assert_eq!(lm.digest, sha(&[LANDMARK_CONTENTS]));
    assert_eq!(prefetch_end(t), None, "nothing to prefetch");
    let d = entry(t, "etc/");
    assert_eq!((d.kind, d.mode), (EntryType::Dir, 0o755));
    assert_eq!(d.mod_time, "2023-11-14T22:13:20Z");
    let e = entry(t, "etc/empty");
    assert_eq!((e.size, e.offset, e.chunk_digest.as_str()), (0, 0, ""));
    assert_eq!(e.digest, EMPTY_DIGEST);
    let s = entry(t, "etc/small");
    assert_eq!((s.size, s.chunk_size), (10, 0));
    assert_eq!(s.digest, s.chunk_digest);

    // 3500 bytes in chunks of 1000: chunkSize set except on the 500-byte tail
    let big: Vec<_> = t.entries.iter().filter(|e| e.name == "bin/big").collect();
    let shape: Vec<_> = big
        .iter()
        .map(|e| (e.kind, e.chunk_offset, e.chunk_size))
        .collect();
    assert_eq!(
        shape,
        [
            (EntryType::Reg, 0, 1000),
            (EntryType::Chunk, 1000, 1000),
            (EntryType::Chunk, 2000, 1000),
            (EntryType::Chunk, 3000, 0),
        ]
    );
    assert_ne!(big[0].digest, big[0].chunk_digest);
    assert!(big[1..].iter().all(|e| e.digest.is_empty() && e.mode == 0));
    // an exact multiple keeps chunkSize on its last chunk
    let exact: Vec<_> = t
        .entries
        .iter()
        .filter(|e| e.name == "bin/exact")
        .map(|e| (e.chunk_offset, e.chunk_size))
        .collect();
    assert_eq!(exact, [(0, 1000), (1000, 1000), (2000, 1000)]);
    // offsets strictly increase, one member per chunk
    let offsets: Vec<i64> = t
        .entries
        .iter()
        .filter(|e| e.offset > 0)
        .map(|e| e.offset)
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");

    let l = entry(t, "bin/link");
    assert_eq!((l.kind, l.link_name.as_str()), (EntryType::Symlink, "big"));
    let h = entry(t, "bin/hard");
    assert_eq!(
        (h.kind, h.link_name.as_str()),
        (EntryType::Hardlink, "./bin/big")
    );
    let n = entry(t, "dev/null");
    assert_eq!((n.kind, n.dev_major, n.dev_minor), (EntryType::Char, 1, 3));
    assert_eq!(entry(t, "run/fifo").kind, EntryType::Fifo);
    let caps = entry(t, "bin/caps");
    assert_eq!(caps.xattrs["user.k"], "dgAB");
    assert_eq!(caps.xattrs["security.capability"], "AQI=");
    assert_eq!(entry(t, &long).size, 4);
    let owners: Vec<_> = (1..=5)
        .map(|i| {
            let e = entry(t, &format!("home/a{i}"));
            (e.uid, e.user_name.as_str(), e.group_name.as_str())
        })
        .collect();
    assert_eq!(
        owners,
        [
            (1000, "alice", "users"),
            (1000, "", ""),
            (1000, "bob", ""),
            (1001, "alice", "staff"),
            (1000, "", ""),
        ]
    );
    assert_eq!(entry(t, "epoch").mod_time, "");
}

#[test]
fn the_blob_does_not_depend_on_threads_or_batches() {
    let input = tar_of(|b| {
        for i in 0..40 {
            file(b, &format!("f{i}"), &pseudo_random(i * 3001, i as u32 + 7));
        }
    });
    let mut first: Option<Checked> = None;
    for (threads, batch) in [(1, BATCH), (2, 10_000), (4, 1), (0, 100_000)] {
        let o = BuildOptions {
            threads,
            ..opts(4096)
        };
        let c = build_checked(&input, &o, batch);
        if let Some(f) = &first {
            assert!(f.blob == c.blob, "threads {threads} batch {batch}");
            assert_eq!(f.built, c.built);
        } else {
            first = Some(c);
        }
    }
}

#[test]
fn members_are_what_gzbuilder_writes() {
    // (levels 0 and 1 (stored, quick) depend on how the input is fed, so only levels that compress)
    for level in [6, 9] {
        let data = pseudo_random(100_000, level);
        let lvl = Compression::new(level);
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Vec::new(), lvl);
        gz.write_all(&data).unwrap();
        let want = gz.finish().unwrap();
        let m = Member { data, chunk_len: 0 };
        let mut c = Compress::new(lvl, false);
        let _ = pack(&mut c, lvl, &m).unwrap();
        assert!(pack(&mut c, lvl, &m).unwrap().gz == want, "level {level}");
    }
}

fn prefetch_layer() -> Vec<u8> {
    tar_of(|b| {
        dir(b, "./");
        dir(b, "./a/");
        file(b, "./c", b"c");
        file(b, "./a/b", b"b");
        file(b, "./a/d", b"d");
        let mut h = header(tar::EntryType::Link, 0, 0o644);
        b.append_link(&mut h, "./e", "./a/d").unwrap();
        file(b, "./f", b"");
    })
}

#[test]
fn prefetch_files_go_first_with_their_parents_then_the_landmark() {
    let o = BuildOptions {
        prefetch: vec!["/a/b".into(), "e".into()],
        ..opts(1000)
    };
    let c = build_checked(&prefetch_layer(), &o, BATCH);
    let names: Vec<&str> = c.toc.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "./",
            "a/",
            "a/b",
            "a/d",
            "e",
            ".prefetch.landmark",
            "c",
            "f"
        ]
    );
    let lm = entry(&c.toc, ".prefetch.landmark");
    assert_eq!(lm.size, 1);
    assert!(lm.offset > entry(&c.toc, "a/d").offset);
    // where the prefetched files end, for the layer's annotation: the landmark's member
    assert_eq!(prefetch_end(&c.toc), Some(lm.offset as u64));
    assert!(!c.tar.windows(21).any(|w| w == b".no.prefetch.landmark"));
}

#[test]
fn a_missing_prefetch_file_fails() {
    let o = BuildOptions {
        prefetch: vec!["./a/b".into(), "./nope".into()],
        ..opts(1000)
    };
    let e = build(&prefetch_layer()[..], &o, Vec::new(), tempfile::tempfile).unwrap_err();
    assert!(
        matches!(&e, BuildError::PrefetchMissing(p) if p == "./nope"),
        "{e}"
    );
}

#[test]
fn reading_stops_at_the_end_of_the_archive() {
    let mut input = prefetch_layer();
    let tar_len = input.len();
    input.extend_from_slice(b"trailing bytes");
    let mut r = &input[..];
    build(&mut r, &opts(1000), Vec::new(), tempfile::tempfile).unwrap();
    assert!(r.len() >= 14 && r.len() <= tar_len, "{}", r.len());
    let s = scan(&input[..]).unwrap();
    assert_eq!(s.size, input.len() as u64);
    assert_eq!(s.diff_id, sha(&input));
}

fn hostile() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "absolute name",
            tar_of(|b| raw(b, "/etc/passwd", b'0', "", b"x")),
            "/etc/passwd",
        ),
        (
            "dot-dot name",
            tar_of(|b| raw(b, "a/../../x", b'0', "", b"x")),
            "a/../../x",
        ),
        (
            "absolute hardlink",
            tar_of(|b| raw(b, "h", b'1', "/etc/shadow", b"")),
            "/etc/shadow",
        ),
        (
            "dot-dot hardlink",
            tar_of(|b| raw(b, "h", b'1', "../x", b"")),
            "../x",
        ),
        (
            "escaping symlink",
            tar_of(|b| {
                raw(b, "a/ok", b'2', "../x", b"");
                raw(b, "a/bad", b'2', "../../x", b"");
            }),
            "a/bad",
        ),
        (
            "entry under a symlink",
            tar_of(|b| {
                raw(b, "lnk", b'2', "/etc", b"");
                raw(b, "lnk/passwd", b'0', "", b"x");
            }),
            "lnk/passwd",
        ),
        (
            "GNU sparse",
            tar_of(|b| raw(b, "sparse", b'S', "", b"")),
            "GNU sparse",
        ),
        (
            "PAX global header",
            tar_of(|b| raw(b, "g", b'g', "", b"")),
            "PAX global",
        ),
        (
            "contiguous file",
            tar_of(|b| raw(b, "c", b'7', "", b"")),
            "unsupported tar entry type '7'",
        ),
        (
            "symlink to the parent of the root",
            tar_of(|b| raw(b, "up", b'2', "..", b"")),
            "points outside the layer",
        ),
        (
            "hardlink target under a symlink",
            tar_of(|b| {
                raw(b, "lnk", b'2', "t", b"");
                raw(b, "h", b'1', "lnk/passwd", b"");
            }),
            "under the symlink \"lnk\"",
        ),
        (
            "PAX path made absolute",
            tar_of(|b| {
                b.append_pax_extensions([("path", &b"/etc/cron.d/x"[..])])
                    .unwrap();
                raw(b, "innocent", b'0', "", b"x");
            }),
            "\"/etc/cron.d/x\"",
        ),
        (
            "PAX linkpath escaping",
            tar_of(|b| {
                b.append_pax_extensions([("linkpath", &b"../../../etc"[..])])
                    .unwrap();
                raw(b, "d/l", b'2', "fine", b"");
            }),
            "points outside the layer",
        ),
        (
            "header-only entry with a payload",
            tar_of(|b| raw(b, "d/", b'5', "", b"hidden")),
            "non-zero size",
        ),
    ]
}

#[test]
fn hostile_entries_are_refused_by_build_and_scan() {
    for (what, input, needle) in hostile() {
        let e = build(&input[..], &opts(1000), Vec::new(), tempfile::tempfile).unwrap_err();
        assert!(
            matches!(e, BuildError::Tar(super::tarstream::TarError::Entry { .. })),
            "{what}: {e}"
        );
        assert!(e.to_string().contains(needle), "{what}: {e}");
        let e = scan(&input[..]).unwrap_err();
        assert!(e.to_string().contains(needle), "{what}: {e}");
    }
    // an absolute symlink target and a symlink replaced by a directory are fine
    let ok = tar_of(|b| {
        raw(b, "a", b'2', "/etc", b"");
        raw(b, "b", b'2', "x/../y", b"");
        raw(b, "a", b'5', "", b"");
        raw(b, "a/f", b'0', "", b"x");
    });
    build_checked(&ok, &opts(1000), BATCH);
    scan(&ok[..]).unwrap();
}

#[test]
fn truncated_tars_are_refused() {
    let input = tar_of(|b| file(b, "f", &pseudo_random(3000, 3)));
    for cut in [100, 512 + 1000, 512 + 3000] {
        let e = build(&input[..cut], &opts(1000), Vec::new(), tempfile::tempfile).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{cut}: {e}");
        let e = scan(&input[..cut]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{cut}: {e}");
    }
    let mut bad = input.clone();
    bad[148] ^= 1;
    let e = build(&bad[..], &opts(1000), Vec::new(), tempfile::tempfile).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[test]
fn helpers() {
    assert_eq!(rfc3339((MTIME as i64, 0)), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339((-1, 0)), "1969-12-31T23:59:59Z");
    assert_eq!(rfc3339((951_782_400, 0)), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339((0, 0)), "");
    assert_eq!(rfc3339((10, 500_000_000)), "1970-01-01T00:00:11Z");
    // the TOC header reads back through the tar crate with only name, type and size set
    let h = go_header(TOC_TAR_NAME, 1234);
    let th = tar::Header::from_byte_slice(&h);
    assert_eq!(th.path().unwrap().to_str(), Some(TOC_TAR_NAME));
    assert_eq!(th.size().unwrap(), 1234);
    assert_eq!(th.cksum().unwrap(), {
        let mut c = h;
        c[148..156].fill(b' ');
        c.iter().map(|&b| b as u32).sum::<u32>()
    });
    assert_eq!((th.mode().unwrap(), th.mtime().unwrap()), (0, 0));
}
