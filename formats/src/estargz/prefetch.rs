//! Prefetch ordering for [`super::build::build`] (REFERENCE §1.5): the input is spooled to a
//! file the caller gives ([`Spool`]) so that [`order`] can put the prioritized files, their parents
//! (and a hardlink's target) first, before `.prefetch.landmark` and the rest in input order.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use super::build::{dropped, BuildError, Payload};
use super::tarstream::{self, Entry, Kind, TarStream};

/// The input with its payloads in a file, for reordering.
pub(super) struct Spool {
    file: std::fs::File,
    /// Non-dropped entries and the offsets of their payloads in `file`.
    pub entries: Vec<(Entry, u64)>,
}

impl Spool {
    /// Spools the payloads of `ts` into `file` (empty, opened for reading and writing).
    pub fn read<R: Read>(ts: &mut TarStream<R>, file: std::fs::File) -> Result<Spool, BuildError> {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &file);
        let mut entries = Vec::new();
        let mut pos = 0u64;
        while let Some(e) = ts.next()? {
            let len = e.meta.padded();
            if dropped(&e.meta.name) {
                ts.skip_payload(len)?;
                continue;
            }
            ts.payload_with(len, |b| w.write_all(b).map_err(BuildError::Write))?;
            entries.push((e, pos));
            pos += len;
        }
        w.flush().map_err(BuildError::Write)?;
        drop(w);
        Ok(Spool { file, entries })
    }

    pub fn payload(&self, i: usize) -> impl Payload + '_ {
        let mut pos = self.entries[i].1;
        move |buf: &mut Vec<u8>, len: usize| {
            let start = buf.len();
            buf.resize(start + len, 0);
            self.file
                .read_exact_at(&mut buf[start..], pos)
                .map_err(BuildError::Read)?;
            pos += len as u64;
            Ok(())
        }
    }
}

/// Splits spooled entries into the prioritized ones (REFERENCE §1.5: each prefetch path after
/// its parents, the root and a hardlink's target) and the rest, both in output order.
pub(super) fn order(
    entries: &[(Entry, u64)],
    prefetch: &[String],
) -> Result<(Vec<usize>, Vec<usize>), BuildError> {
    let mut by_name: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    for (i, (e, _)) in entries.iter().enumerate() {
        by_name.insert(tarstream::clean(&e.meta.name), i);
    }
    // 0 = not moved, 1 = being moved, 2 = moved
    let mut state = vec![0u8; entries.len()];
    let mut first = Vec::new();
    for p in prefetch {
        let c = tarstream::clean(p);
        if c.is_empty() || !by_name.contains_key(&c) {
            return Err(BuildError::PrefetchMissing(p.clone()));
        }
        move_rec(&c, entries, &by_name, &mut state, &mut first);
    }
    let rest = (0..entries.len()).filter(|&i| state[i] == 0).collect();
    Ok((first, rest))
}

fn move_rec(
    name: &str,
    entries: &[(Entry, u64)],
    by_name: &HashMap<String, usize>,
    state: &mut [u8],
    out: &mut Vec<usize>,
) {
    if !name.is_empty() {
        let parent = name.rsplit_once('/').map_or("", |p| p.0);
        move_rec(parent, entries, by_name, state, out);
    }
    let Some(&i) = by_name.get(name) else {
        return;
    };
    if state[i] != 0 {
        return;
    }
    state[i] = 1;
    let meta = &entries[i].0.meta;
    if meta.kind == Kind::Hardlink {
        move_rec(
            &tarstream::clean(&meta.link_name),
            entries,
            by_name,
            state,
            out,
        );
    }
    state[i] = 2;
    out.push(i);
}
