//! Reader-side derivations from a parsed TOC (Go `initFields`, REFERENCE §1.3): cleaned entry
//! names and, for every regular file, its [`Chunk`]s with sizes and `nextOffset`s filled in.
//!
//! Checked here, so later layers can trust an [`Index`]: no negative numbers, chunks follow a
//! `reg` entry and tile the file exactly (in order, no gaps, no overlap), every payload starts
//! inside the blob and before its `nextOffset`, and only directories may clean to the root.
//! Re-exported from [`super::toc`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::toc::{EntryType, Toc, TocEntry, TocError};

/// Go's `path.Clean("/" + name)` without the leading `/`: `""` is the root.
pub fn clean_name(name: &str) -> String {
    clean(name).into_owned()
}

/// [`clean_name`], borrowing from `name` when it is clean but for a leading `./` or `/` and a
/// trailing `/`, as the names in TOCs are (tar's `./usr/bin/`): a mount cleans every name of
/// every TOC.
pub fn clean(name: &str) -> Cow<'_, str> {
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    let trimmed = trimmed
        .strip_prefix("./")
        .or_else(|| trimmed.strip_prefix('/'))
        .unwrap_or(trimmed);
    let is_clean = !trimmed.is_empty()
        && trimmed
            .split('/')
            .all(|part| !matches!(part, "" | "." | ".."));
    if is_clean {
        return Cow::Borrowed(trimmed);
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Cow::Owned(parts.join("/"))
}

/// One gzip-member-addressed piece of a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Compressed offset of the gzip member to start inflating at.
    pub offset: u64,
    /// Uncompressed bytes to skip in that member before this chunk's data.
    pub inner_offset: u64,
    /// Offset of this chunk in the file.
    pub chunk_offset: u64,
    /// Uncompressed length of this chunk (never 0 in an [`Index`]).
    pub chunk_size: u64,
    /// End of the compressed range to fetch: the next member start, or the blob size.
    pub next_offset: u64,
    /// `sha256:<hex>` of the chunk's bytes, when the TOC has one.
    pub chunk_digest: Option<std::sync::Arc<str>>,
}

/// Reader-side view of a TOC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// Chunks of every regular file by cleaned name; empty for empty files. A later entry with
    /// the same name replaces an earlier one, as in the Go reader.
    pub files: BTreeMap<String, Vec<Chunk>>,
}

fn non_negative(
    index: usize,
    e: &TocEntry,
    field: &'static str,
    value: i64,
) -> Result<u64, TocError> {
    u64::try_from(value).map_err(|_| TocError::Negative {
        index,
        name: e.name.clone(),
        field,
        value,
    })
}

/// The largest chunk a reader inflates into memory (eStargz builders cut files into 4 MiB
/// chunks; a TOC may leave a file whole, up to this size). Its compressed range may be at most
/// twice this (stored gzip blocks grow data a little; a chunk's member may be followed by the
/// headers of empty entries). Bigger chunks refuse the layer: a hostile TOC would otherwise
/// make every read of a 4 MiB gzip bomb inflate gigabytes.
pub const MAX_CHUNK_SIZE: u64 = 64 << 20;

/// The regular file whose chunks are being collected.
struct OpenFile {
    name: String,
    size: u64,
    chunks: Vec<Chunk>,
}

impl OpenFile {
    fn close(self, files: &mut BTreeMap<String, Vec<Chunk>>) -> Result<(), TocError> {
        let covered = self
            .chunks
            .last()
            .map_or(0, |c| c.chunk_offset + c.chunk_size);
        if covered != self.size {
            return Err(TocError::Incomplete {
                name: self.name,
                covered,
                size: self.size,
            });
        }
        files.insert(self.name, self.chunks);
        Ok(())
    }
}

/// Derive cleaned names and per-file chunk lists (Go `initFields`); `blob_size` is the size of
/// the whole eStargz blob and ends the last chunk's compressed range.
pub fn index(toc: &Toc, blob_size: u64) -> Result<Index, TocError> {
    // nextOffset: the offset of the next entry with a non-zero offset and innerOffset 0.
    let mut next_offsets = vec![blob_size; toc.entries.len()];
    let mut next = blob_size;
    for (slot, e) in next_offsets.iter_mut().zip(&toc.entries).rev() {
        *slot = next;
        if e.offset > 0 && e.inner_offset == 0 {
            // an offset past the blob is refused when its own entry comes; until then it
            // must not make an earlier chunk's range look huge
            next = e.offset.unsigned_abs().min(blob_size);
        }
    }

    let mut out = Index::default();
    let mut open: Option<OpenFile> = None;
    for (index, (e, &next_offset)) in toc.entries.iter().zip(&next_offsets).enumerate() {
        let size = non_negative(index, e, "size", e.size)?;
        let offset = non_negative(index, e, "offset", e.offset)?;
        let inner_offset = non_negative(index, e, "innerOffset", e.inner_offset)?;
        let chunk_offset = non_negative(index, e, "chunkOffset", e.chunk_offset)?;
        let chunk_size = non_negative(index, e, "chunkSize", e.chunk_size)?;

        if e.kind != EntryType::Chunk {
            if let Some(file) = open.take() {
                file.close(&mut out.files)?;
            }
        }
        let file = match e.kind {
            EntryType::Chunk => open.as_mut().ok_or(TocError::OrphanChunk { index })?,
            kind => {
                let name = clean(&e.name);
                if name.is_empty() && kind != EntryType::Dir {
                    return Err(TocError::EmptyName {
                        index,
                        name: e.name.clone(),
                    });
                }
                if kind != EntryType::Reg {
                    continue;
                }
                if chunk_offset != 0 {
                    return Err(TocError::RegChunkOffset {
                        index,
                        name: e.name.clone(),
                        chunk_offset: e.chunk_offset,
                    });
                }
                open.insert(OpenFile {
                    name: name.into_owned(),
                    size,
                    chunks: Vec::new(),
                })
            }
        };
        if file.size == 0 {
            // Empty file: no payload, nothing to fetch. A chunk entry here is caught by close().
            if e.kind == EntryType::Chunk {
                return Err(TocError::ChunkLayout {
                    index,
                    name: file.name.clone(),
                    chunk_offset,
                    chunk_size,
                    expected: 0,
                    size: 0,
                });
            }
            continue;
        }
        let expected = file
            .chunks
            .last()
            .map_or(0, |c| c.chunk_offset + c.chunk_size);
        let layout_err = || TocError::ChunkLayout {
            index,
            name: file.name.clone(),
            chunk_offset,
            chunk_size,
            expected,
            size: file.size,
        };
        let chunk_size = match chunk_size {
            0 => file.size.checked_sub(chunk_offset).ok_or_else(layout_err)?,
            n => n,
        };
        let end = chunk_offset
            .checked_add(chunk_size)
            .ok_or_else(layout_err)?;
        if chunk_offset != expected || chunk_size == 0 || end > file.size {
            return Err(layout_err());
        }
        if offset >= blob_size {
            return Err(TocError::OffsetOutOfBlob {
                index,
                name: file.name.clone(),
                offset,
                blob_size,
            });
        }
        if next_offset <= offset {
            return Err(TocError::NextOffset {
                index,
                name: file.name.clone(),
                offset,
                next_offset,
            });
        }
        if chunk_size > MAX_CHUNK_SIZE || next_offset - offset > 2 * MAX_CHUNK_SIZE {
            return Err(TocError::ChunkTooBig {
                index,
                name: file.name.clone(),
                chunk_size,
                compressed: next_offset - offset,
                max: MAX_CHUNK_SIZE,
            });
        }
        file.chunks.push(Chunk {
            offset,
            inner_offset,
            chunk_offset,
            chunk_size,
            next_offset,
            chunk_digest: Some(e.chunk_digest.as_str())
                .filter(|d| !d.is_empty())
                .map(std::sync::Arc::from),
        });
    }
    if let Some(file) = open {
        file.close(&mut out.files)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estargz::toc::{parse, tests::FIXTURE};

    fn chunk(offset: u64, inner: u64, at: u64, size: u64, next: u64, digest: char) -> Chunk {
        Chunk {
            offset,
            inner_offset: inner,
            chunk_offset: at,
            chunk_size: size,
            next_offset: next,
            chunk_digest: Some(format!("sha256:{}", digest.to_string().repeat(64)).into()),
        }
    }

    fn reg(name: &str, size: i64, offset: i64, chunk_size: i64) -> TocEntry {
        let mut e = TocEntry::new(name, EntryType::Reg);
        (e.size, e.offset, e.chunk_size) = (size, offset, chunk_size);
        e
    }

    fn more(offset: i64, chunk_offset: i64, chunk_size: i64) -> TocEntry {
        let mut e = TocEntry::new("", EntryType::Chunk);
        (e.offset, e.chunk_offset, e.chunk_size) = (offset, chunk_offset, chunk_size);
        e
    }

    fn run(entries: Vec<TocEntry>, blob_size: u64) -> Result<Index, TocError> {
        index(
            &Toc {
                version: 1,
                entries,
            },
            blob_size,
        )
    }

    /// A chunk that would inflate past [`MAX_CHUNK_SIZE`], or whose compressed range is over
    /// twice that, refuses the layer (H1: a 4 MiB gzip bomb claiming 4 GiB was inflated).
    #[test]
    fn chunks_past_the_bound_are_refused() {
        let max = MAX_CHUNK_SIZE as i64;
        let err = run(vec![reg("whole", max + 1, 100, 0)], 1 << 40).unwrap_err();
        assert!(matches!(err, TocError::ChunkTooBig { .. }), "{err}");
        assert!(err.to_string().contains("whole"), "{err}");
        // at the bound, fine; a compressed range past twice it is not
        assert!(run(vec![reg("at", max, 100, 0)], 100 + MAX_CHUNK_SIZE).is_ok());
        let err = run(vec![reg("far", 10, 100, 0)], 101 + 2 * MAX_CHUNK_SIZE).unwrap_err();
        assert!(matches!(err, TocError::ChunkTooBig { .. }), "{err}");
    }

    #[test]
    fn clean_names() {
        for (raw, want) in [
            ("./", ""),
            ("", ""),
            ("/abs/x", "abs/x"),
            ("../../a/./b//c/..", "a/b"),
            ("a/../../b/", "b"),
            ("bin/app", "bin/app"),
            ("usr/lib/", "usr/lib"),
            ("a/.../..b/.c", "a/.../..b/.c"),
            ("a//b", "a/b"),
            ("a/./b/", "a/b"),
            ("a/b/..", "a"),
            ("/", ""),
            ("//", ""),
            ("./usr/bin/", "usr/bin"),
            ("./.", ""),
            ("././a", "a"),
            ("/./a", "a"),
            (".//a", "a"),
        ] {
            assert_eq!(clean_name(raw), want, "{raw}");
        }
        // the names tar and eStargz writers make are borrowed, not copied
        for raw in [
            "bin/app",
            "usr/lib/",
            "./usr/bin/",
            "/abs/x",
            "./a/.../..b/.c",
        ] {
            assert!(matches!(clean(raw), Cow::Borrowed(_)), "{raw}");
        }
    }

    #[test]
    fn fixture_index() {
        let idx = index(&parse(FIXTURE.as_bytes()).unwrap(), 2000).unwrap();
        let want: BTreeMap<String, Vec<Chunk>> = [
            (
                "bin/app",
                vec![
                    chunk(512, 0, 0, 4, 700, 'a'),
                    chunk(700, 0, 4, 4, 800, 'b'),
                    // Tail chunk: chunkSize 0 means "to the end of the file".
                    chunk(800, 0, 8, 2, 900, 'c'),
                ],
            ),
            (".prefetch.landmark", vec![chunk(900, 0, 0, 1, 1000, 'd')]),
            // Both files share the member at 1000; nextOffset skips innerOffset entries.
            ("etc/a&b", vec![chunk(1000, 0, 0, 3, 2000, 'e')]),
            ("etc/c", vec![chunk(1000, 1024, 0, 2, 2000, 'f')]),
            ("etc/empty", vec![]),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_owned(), c))
        .collect();
        assert_eq!(idx.files, want);
    }

    #[test]
    fn exact_multiple_and_missing_digest() {
        let idx = run(vec![reg("f", 8, 10, 4), more(20, 4, 4)], 30).unwrap();
        let chunks = &idx.files["f"];
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            (
                chunks[1].chunk_offset,
                chunks[1].chunk_size,
                chunks[1].next_offset
            ),
            (4, 4, 30)
        );
        assert_eq!(chunks[0].chunk_digest, None);
        // A later entry with the same name replaces the earlier one.
        let idx = run(vec![reg("f", 8, 10, 0), reg("./f", 1, 20, 0)], 30).unwrap();
        assert_eq!(idx.files["f"].len(), 1);
        assert_eq!(idx.files["f"][0].chunk_size, 1);
    }

    #[test]
    fn rejects_empty_names_except_dirs() {
        assert!(run(vec![TocEntry::new("./", EntryType::Dir)], 10).is_ok());
        let err = run(vec![reg("./", 0, 0, 0)], 10).unwrap_err();
        assert!(matches!(err, TocError::EmptyName { index: 0, .. }), "{err}");
        let err = run(vec![TocEntry::new("..", EntryType::Symlink)], 10).unwrap_err();
        assert!(matches!(err, TocError::EmptyName { .. }), "{err}");
    }

    #[test]
    fn rejects_orphan_chunks() {
        let err = run(vec![more(5, 0, 0)], 10).unwrap_err();
        assert!(matches!(err, TocError::OrphanChunk { index: 0 }), "{err}");
        let dir = TocEntry::new("d", EntryType::Dir);
        let err = run(vec![reg("f", 4, 2, 0), dir, more(5, 4, 0)], 10).unwrap_err();
        assert!(matches!(err, TocError::OrphanChunk { index: 2 }), "{err}");
    }

    #[test]
    fn rejects_negative_fields() {
        let err = run(vec![reg("f", -1, 2, 0)], 10).unwrap_err();
        assert!(
            matches!(
                err,
                TocError::Negative {
                    field: "size",
                    value: -1,
                    ..
                }
            ),
            "{err}"
        );
        let mut e = reg("f", 1, 2, 0);
        e.inner_offset = -3;
        let err = run(vec![e], 10).unwrap_err();
        assert!(
            matches!(
                err,
                TocError::Negative {
                    field: "innerOffset",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_chunk_layout() {
        // Gap: second chunk should start at 4.
        let err = run(vec![reg("f", 8, 2, 4), more(5, 5, 0)], 10).unwrap_err();
        assert!(
            matches!(err, TocError::ChunkLayout { expected: 4, .. }),
            "{err}"
        );
        // Past the end of the file.
        let err = run(vec![reg("f", 8, 2, 4), more(5, 4, 5)], 10).unwrap_err();
        assert!(matches!(err, TocError::ChunkLayout { .. }), "{err}");
        // Chunks stop short of the file size.
        let err = run(vec![reg("f", 8, 2, 4)], 10).unwrap_err();
        assert!(
            matches!(
                err,
                TocError::Incomplete {
                    covered: 4,
                    size: 8,
                    ..
                }
            ),
            "{err}"
        );
        // A chunk of an empty file.
        let err = run(vec![reg("f", 0, 0, 0), more(5, 0, 1)], 10).unwrap_err();
        assert!(
            matches!(err, TocError::ChunkLayout { size: 0, .. }),
            "{err}"
        );
        // A reg entry is always the first chunk.
        let mut e = reg("f", 8, 2, 0);
        e.chunk_offset = 1;
        let err = run(vec![e], 10).unwrap_err();
        assert!(
            matches!(
                err,
                TocError::RegChunkOffset {
                    chunk_offset: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_offsets_outside_the_blob_or_backwards() {
        let err = run(vec![reg("f", 1, 10, 0)], 10).unwrap_err();
        assert!(
            matches!(
                err,
                TocError::OffsetOutOfBlob {
                    offset: 10,
                    blob_size: 10,
                    ..
                }
            ),
            "{err}"
        );
        let err = run(vec![reg("f", 1, 8, 0), reg("g", 1, 4, 0)], 10).unwrap_err();
        assert!(
            matches!(
                err,
                TocError::NextOffset {
                    offset: 8,
                    next_offset: 4,
                    ..
                }
            ),
            "{err}"
        );
    }
}
