//! Where the UnixFS leaves of an eStargz blob end, so that a file's gzip member gets the same
//! leaf CIDs in every blob that holds it, whatever its offset (pure; the leaves are built by
//! [`crate::unixfs::LeafAdder`]).
//!
//! The blob is cut at the members its TOC lists (each entry's `offset`), and:
//! - a member of at least [`MIN_ALONE`] bytes is a leaf run of its own, cut every
//!   [`MAX_LEAF`] bytes from its start;
//! - smaller members are grouped, so a layer of 10,000 small files is not 10,000 blocks of
//!   300 bytes. A group ends after a member whose content hash (its `chunkDigest`, else its
//!   `digest`, else its name) ends in [`GROUP_BITS`] zero bits, before a member of its own, or
//!   before it would pass [`MAX_GROUP`]: the ends depend on the members' content, not on where
//!   they sit, so after a changed file the groups fall back into step;
//! - the TOC and footer (from `toc_offset` to the end) are the last run.

use super::toc::Toc;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// Largest leaf: kubo's chunk size. Leaves of 1 MiB made a swarm share worse: with a quarter as
/// many blocks, the seed of a 7-host preload sent 1.64 copies instead of 1.1-1.3.
pub const MAX_LEAF: u64 = 256 << 10;
/// A member this large is cut alone.
pub const MIN_ALONE: u64 = 64 << 10;
/// Largest group of small members: a lazy read of one small file fetches its whole group.
/// Measured on a 313 MB Debian image (bench-dedup): groups of up to 256 KiB made a python3 +
/// perl start fetch 3.8 % of the layer bytes, 64 KiB 3.1 %, 32 KiB 2.9 %.
pub const MAX_GROUP: u64 = 32 << 10;
/// A group of small members ends after one whose content hash ends in this many zero bits (a
/// group holds about 2^GROUP_BITS members).
pub const GROUP_BITS: u32 = 4;

/// The ends of the leaves of a `size`-byte eStargz blob whose TOC member starts at
/// `toc_offset`, increasing, the last one `size`. Offsets outside the blob are ignored.
pub fn leaf_ends(toc: &Toc, toc_offset: u64, size: u64) -> Vec<u64> {
    let toc_offset = toc_offset.min(size);
    // each member start, with what identifies its content
    let mut starts: BTreeMap<u64, &str> = BTreeMap::new();
    starts.insert(0, "");
    for e in &toc.entries {
        let Ok(off) = u64::try_from(e.offset) else {
            continue;
        };
        if off == 0 || off >= toc_offset {
            continue;
        }
        let id = [&e.chunk_digest, &e.digest, &e.name]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or("", String::as_str);
        starts.entry(off).or_insert(id);
    }
    let members: Vec<(u64, u64, &str)> = starts
        .iter()
        .zip(starts.keys().skip(1).chain(std::iter::once(&toc_offset)))
        .map(|((&start, &id), &end)| (start, end, id))
        .filter(|(start, end, _)| end > start)
        .collect();
    let mut ends = Vec::new();
    let mut group_start: Option<u64> = None;
    for (start, end, id) in members {
        let len = end - start;
        if len >= MIN_ALONE {
            if group_start.take().is_some() {
                ends.push(start);
            }
            split(start, end, &mut ends);
            continue;
        }
        if let Some(g) = group_start {
            if end - g > MAX_GROUP {
                ends.push(start);
                group_start = Some(start);
            }
        } else {
            group_start = Some(start);
        }
        if ends_group(id) {
            ends.push(end);
            group_start = None;
        }
    }
    if group_start.is_some() {
        ends.push(toc_offset);
    }
    split(toc_offset, size, &mut ends);
    ends.dedup();
    ends
}

/// Cuts `start..end` every [`MAX_LEAF`] bytes.
fn split(start: u64, end: u64, ends: &mut Vec<u64>) {
    let mut at = start;
    while at < end {
        at = (at + MAX_LEAF).min(end);
        ends.push(at);
    }
}

fn ends_group(id: &str) -> bool {
    let h = Sha256::digest(id.as_bytes());
    let low = u32::from_be_bytes([h[28], h[29], h[30], h[31]]);
    low.trailing_zeros() >= GROUP_BITS
}

#[cfg(test)]
mod tests {
    use super::super::toc::{EntryType, TocEntry};
    use super::*;

    /// A TOC of regular files, one member each, of the given compressed sizes; the members'
    /// content is named by `ids`. Returns it with the TOC's offset.
    fn toc_of(sizes: &[u64], ids: &[String]) -> (Toc, u64) {
        let mut entries = Vec::new();
        let mut off = 0;
        for (i, s) in sizes.iter().enumerate() {
            let mut e = TocEntry::new(format!("f{i}"), EntryType::Reg);
            e.offset = off as i64;
            e.chunk_digest = ids[i].clone();
            entries.push(e);
            off += s;
        }
        (
            Toc {
                version: 1,
                entries,
            },
            off,
        )
    }

    /// The leaves as (content ids of their members) lists, so two blobs can be compared by
    /// what their leaves hold.
    fn leaves(sizes: &[u64], ids: &[String]) -> Vec<Vec<String>> {
        let (toc, toc_offset) = toc_of(sizes, ids);
        let ends = leaf_ends(&toc, toc_offset, toc_offset + 500);
        assert_eq!(ends.last(), Some(&(toc_offset + 500)));
        assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
        let mut starts = vec![0];
        starts.extend(&ends[..ends.len() - 1]);
        let mut member_at = BTreeMap::new();
        let mut off = 0;
        for (i, s) in sizes.iter().enumerate() {
            member_at.insert(off, (ids[i].clone(), *s));
            off += s;
        }
        starts
            .iter()
            .zip(&ends)
            .map(|(s, e)| {
                assert!(e - s <= MAX_LEAF, "a leaf of {} bytes", e - s);
                let mut held: Vec<String> = member_at
                    .range(*s..*e)
                    .map(|(o, (id, len))| format!("{id}@{}+{}", o - s, len))
                    .collect();
                if held.is_empty() {
                    held.push(format!("inside+{}", e - s));
                }
                held
            })
            .collect()
    }

    fn ids(n: usize, salt: &str) -> Vec<String> {
        (0..n).map(|i| format!("sha256:{salt}{i}")).collect()
    }

    #[test]
    fn big_members_stand_alone_and_are_split_from_their_start() {
        let sizes = [100, 3 * MAX_LEAF + 7, 200, MIN_ALONE];
        let (toc, toc_offset) = toc_of(&sizes, &ids(4, "x"));
        let ends = leaf_ends(&toc, toc_offset, toc_offset + 10);
        let big_start = 100;
        for k in 1..=3 {
            assert!(ends.contains(&(big_start + k * MAX_LEAF)), "{ends:?}");
        }
        assert!(ends.contains(&big_start) && ends.contains(&(big_start + 3 * MAX_LEAF + 7)));
        let last_member = toc_offset - MIN_ALONE;
        assert!(ends.contains(&last_member) && ends.contains(&toc_offset));
        assert_eq!(ends.last(), Some(&(toc_offset + 10)));
    }

    /// Small members are grouped (far fewer leaves than members), and a changed member changes
    /// only the leaves around it: the others hold the same members at the same inner offsets,
    /// so they are the same blocks.
    #[test]
    fn groups_of_small_members_fall_back_into_step_after_a_change() {
        let n = 2000;
        let sizes: Vec<u64> = (0..n).map(|i| 300 + (i as u64 * 37) % 900).collect();
        let v1 = ids(n, "a");
        let l1 = leaves(&sizes, &v1);
        assert!(l1.len() * 4 < n, "{} leaves for {n} members", l1.len());
        let mut v2 = v1.clone();
        let mut sizes2 = sizes.clone();
        for i in [10, 900, 1500] {
            v2[i] = format!("sha256:changed{i}");
            sizes2[i] += 50;
        }
        let l2 = leaves(&sizes2, &v2);
        let old: std::collections::HashSet<&Vec<String>> = l1.iter().collect();
        let same = l2.iter().filter(|l| old.contains(l)).count();
        assert!(
            same + 8 >= l2.len(),
            "{same} of {} leaves unchanged after 3 changed members",
            l2.len()
        );
    }

    #[test]
    fn hostile_offsets_are_ignored() {
        let (mut toc, toc_offset) = toc_of(&[100, 100], &ids(2, "h"));
        let mut past = TocEntry::new("past", EntryType::Reg);
        past.offset = (toc_offset * 10) as i64;
        let mut negative = TocEntry::new("neg", EntryType::Reg);
        negative.offset = -5;
        toc.entries.push(past);
        toc.entries.push(negative);
        let ends = leaf_ends(&toc, toc_offset, toc_offset + 51);
        assert!(ends.iter().all(|e| *e <= toc_offset + 51));
        assert_eq!(ends.last(), Some(&(toc_offset + 51)));
        let empty = Toc {
            version: 1,
            entries: Vec::new(),
        };
        assert_eq!(leaf_ends(&empty, 0, 0), Vec::<u64>::new());
    }
}
