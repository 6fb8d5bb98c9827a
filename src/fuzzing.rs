//! Entry points of the fuzz targets (`fuzz/`, run by `scripts/fuzz.sh`; feature `fuzzing`).
//! Each feeds arbitrary bytes to the parsers of one kind of outside input. None may panic,
//! hang or allocate without bound: every crash found becomes a regression test beside the
//! parser it hit.

use bytes::Bytes;

/// Bitswap messages as peers send them (protobuf, then every CID and block checked).
pub fn bitswap_message(data: &[u8]) {
    let _ = cidfs_p2p::bitswap::message::Message::decode_bytes(Bytes::copy_from_slice(data));
}

/// An eStargz footer, and a TOC: parsed, indexed against a blob size, and built into the mount
/// tree (plain and in overlayfs lower-dir form), as a mount does with a layer from the swarm.
pub fn estargz_toc(data: &[u8]) {
    use crate::image::estargz::{footer, index, toc};
    use crate::mount::inode::{overlay_form, Table};
    let _ = footer::parse_footer(data);
    let Ok(t) = toc::parse(data) else { return };
    let size = (data.len() as u64).saturating_mul(1031);
    let _ = index::index(&t, size);
    let _ = Table::build(std::slice::from_ref(&t)).map(|tb| tb.walk().len());
    // the overlay form built in place is the overlay form built from a copy of the TOC
    let reference = Table::build(&[overlay_form(&t)]).ok();
    assert_eq!(Table::build_overlay(&t).ok(), reference);
    // member-aligned leaves: increasing, each 1..=MAX_LEAF bytes, the last at the blob's end
    use crate::image::estargz::cuts::{leaf_ends, MAX_LEAF};
    let ends = leaf_ends(&t, size / 2, size);
    let mut at = 0;
    for e in &ends {
        assert!(*e > at && *e - at <= MAX_LEAF, "leaf {at}..{e}");
        at = *e;
    }
    assert_eq!(at, size);
    // and the adder takes the plan (what `image push` sends as `leaf-ends`)
    assert!(crate::unixfs::Adder::with_leaf_ends(ends).is_ok());
}

/// A layer's tar stream, as `image push` converts it.
pub fn tar_stream(data: &[u8]) {
    crate::image::estargz::fuzz_tar_stream(data);
}

/// A chunk's compressed bytes from the swarm, inflated whole (libdeflate, where its bounds
/// allow) and as a stream (flate2): where the stream gives bytes, the whole inflater gives the
/// same; where it fails, the whole inflater fails the same way, or (libdeflate accepts a few
/// encodings zlib refuses) gives bytes that match the member's CRC32. Where the stream gives
/// bytes, both take their digest and refuse another, also from 1 MiB up, where the stream hashes
/// beside its inflater. The first four bytes are the chunk's inner offset and length (two
/// little-endian u16; a length with its top bit set counts units of 64 bytes, up to 2 MiB), the
/// rest its gzip bytes.
pub fn chunk_inflate(data: &[u8]) {
    use crate::mount::reader::{inflate_and_check, inflate_whole_and_check, ChunkError};
    use bytes::Bytes;
    use sha2::Digest;
    use std::sync::Arc;
    let Some((head, z)) = data.split_first_chunk::<4>() else {
        return;
    };
    let skip = u64::from(u16::from_le_bytes([head[0], head[1]]));
    let len = match u16::from_le_bytes([head[2], head[3]]) {
        l if l & 0x8000 != 0 => u64::from(l & 0x7fff) << 6,
        l => u64::from(l),
    };
    let whole = inflate_whole_and_check(z, skip, len, None);
    let stream = match inflate_and_check(z, skip, len, None) {
        Ok(stream) => {
            assert_eq!(whole.as_ref(), Ok(&stream));
            stream
        }
        Err(e) if whole.is_err() => return assert_eq!(whole, Err(e)),
        Err(_) => {
            // only from libdeflate, which checked the member's CRC32 and length
            let mut all = vec![0u8; (skip + len) as usize + (2 << 20)];
            let n = libdeflater::Decompressor::new().gzip_decompress(z, &mut all);
            assert!(n.is_ok_and(|n| n as u64 >= skip + len), "{whole:?}");
            return;
        }
    };
    let right: Arc<str> = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&stream))).into();
    let wrong: Arc<str> = format!("sha256:{}", "0".repeat(64)).into();
    type Inflate = fn(&[u8], u64, u64, Option<Arc<str>>) -> Result<Bytes, ChunkError>;
    let paths: [Inflate; 2] = [
        |z, skip, len, want| inflate_and_check(z, skip, len, want),
        inflate_whole_and_check,
    ];
    for inflate in paths {
        assert_eq!(
            inflate(z, skip, len, Some(right.clone())),
            Ok(stream.clone())
        );
        let refused = inflate(z, skip, len, Some(wrong.clone()));
        assert!(
            matches!(refused, Err(ChunkError::Digest { .. })),
            "{refused:?}"
        );
    }
}

/// dag-pb nodes (and UnixFS data in them) under a dag-pb CIDv1 and a CIDv0.
pub fn dag_pb(data: &[u8]) {
    use cid::multihash::Multihash;
    let mh = Multihash::wrap(0x12, &[0u8; 32]).expect("a sha2-256 multihash");
    for cid in [
        cid::Cid::new_v1(crate::blockstore::DAG_PB, mh),
        cid::Cid::new_v0(mh).expect("CIDv0"),
    ] {
        let _ = crate::blockstore::links(&cid, data);
        let _ = crate::blockstore::dag_pb_links(&cid, data);
    }
    // as the root of a file: its UnixFS data read whole and by a range (links lead nowhere)
    use crate::blockstore::Blocks as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(data);
    let Ok(mh) = Multihash::wrap(0x12, &digest) else {
        return;
    };
    let root = cid::Cid::new_v1(crate::blockstore::DAG_PB, mh);
    let store = std::sync::Arc::new(crate::blockstore::MemStore::default());
    if store.put(&root, data).is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        use futures::StreamExt as _;
        let _ = crate::unixfs::stat(&store, root).await;
        for (offset, len) in [(0, None), (1 << 20, Some(4096))] {
            let s = crate::unixfs::cat(store.clone(), root, offset, len, 4);
            futures::pin_mut!(s);
            while let Some(Ok(_)) = s.next().await {}
        }
    });
}

/// CIDs, `ipfs://` and registry references, image references and platforms, as typed by
/// users or found in manifests.
pub fn references(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::cidref::parse(&text);
    let _ = crate::cidref::parse_registry_ref(&text);
    let _ = crate::cidref::parse_image(&text);
    let _ = crate::cidref::parse_registry_image(&text);
    let _ = text.parse::<crate::image::registry_client::reference::Reference>();
    let _ = crate::image::oci::Platform::parse(&text);
    let _ = crate::mount::inode::parse_rfc3339(&text);
    let _ = crate::image::progress::short(&text);
}

/// Registry paths and `Range` headers.
pub fn registry_request(data: &[u8]) {
    crate::registry_server::fuzz_request(data);
}

/// containerd's snapshot filters, one per line.
pub fn snapshotter_filters(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let filters: Vec<String> = text.lines().map(str::to_string).collect();
    let _ = crate::snapshotter::filter::Filter::parse(&filters);
}

/// What peers and operators send the swarm's tables: a peer's copies status, an htpasswd file.
pub fn swarm_records(data: &[u8]) {
    crate::image::copies::fuzz_status(data);
    let _ = crate::registry_server::htpasswd::Htpasswd::parse(&String::from_utf8_lossy(data));
}

/// An ELF file from a mounted image, as the mount's follower of loads reads it: the program
/// headers from its head, the dynamic section and the string table where they say (within the
/// input), each name bounded.
pub fn elf_loads(data: &[u8]) {
    use cidfs_formats::elf;
    let slice = |r: std::ops::Range<u64>| {
        let end = (r.end.min(data.len() as u64)) as usize;
        data.get(r.start as usize..end).unwrap_or_default()
    };
    let Ok(p) = elf::program(slice(0..elf::HEAD)) else {
        return;
    };
    if let Some(r) = p.interp.clone() {
        assert!(elf::interpreter(slice(r)).is_none_or(|s| s.len() <= elf::MAX_NAME));
    }
    let Some(r) = p.dynamic.clone() else { return };
    assert!(r.end - r.start <= elf::MAX_DYNAMIC);
    let d = p.dynamic(slice(r));
    let Some(s) = d.strings.clone() else { return };
    assert!(s.end - s.start <= elf::MAX_STRINGS);
    let names = d.names(slice(s));
    assert!(names.needed.len() <= elf::MAX_NEEDED);
    assert!(names
        .needed
        .iter()
        .chain(&names.search)
        .all(|n| n.len() <= elf::MAX_NAME));
}
