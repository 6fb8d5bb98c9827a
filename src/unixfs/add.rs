//! `add` into a store: [`add_bytes`] stores the blocks of the pure UnixFS encoder
//! ([`cidfs_formats::unixfs::Adder`], kubo's CIDs) in a [`Blocks`] store.

use cid::Cid;

use super::Error;
use crate::blockstore::Blocks;
pub use cidfs_formats::unixfs::{
    AddOptions, Adder, OptionsError, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_LINKS, MAX_CHUNK_SIZE,
    MAX_LINKS,
};

/// What [`add_bytes`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddResult {
    /// Root CID of the file.
    pub root: Cid,
    /// File size in bytes.
    pub size: u64,
    /// Cumulative size of the root (sum of all block lengths; kubo's `Size`).
    pub cumulative_size: u64,
    /// Number of blocks emitted and stored (a repeated leaf counts each time).
    pub blocks: usize,
}

/// Adds `data` as one file and stores its blocks in `store`. Pins nothing.
pub fn add_bytes(store: &dyn Blocks, data: &[u8], opts: &AddOptions) -> Result<AddResult, Error> {
    let mut adder = Adder::new(opts)?;
    let mut blocks = 0;
    for piece in data.chunks(opts.chunk_size) {
        for (cid, block) in adder.push(piece) {
            store.put(&cid, &block)?;
            blocks += 1;
        }
    }
    let size = adder.bytes_in();
    let mut cumulative_size = adder.cumulative_size();
    let (root, rest) = adder.finish();
    for (cid, block) in rest {
        store.put(&cid, &block)?;
        cumulative_size += block.len() as u64;
        blocks += 1;
    }
    Ok(AddResult {
        root,
        size,
        cumulative_size,
        blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockstore::{dag_pb_links, MemStore};

    fn mod251(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn cumulative_size_matches_root_tsizes() {
        let data = mod251(3 * DEFAULT_CHUNK_SIZE + 5);
        for opts in [AddOptions::default(), AddOptions::kubo_v0()] {
            let store = MemStore::default();
            let added = add_bytes(&store, &data, &opts).unwrap();
            assert_eq!(added.size, data.len() as u64);
            assert_eq!(added.blocks, 5);
            let root = store.get(&added.root).unwrap().unwrap();
            let links = dag_pb_links(&added.root, &root).unwrap();
            let tsizes: u64 = links.iter().map(|l| l.tsize.unwrap()).sum();
            assert_eq!(added.cumulative_size, root.len() as u64 + tsizes);
            assert_eq!(store.stat().unwrap().bytes, added.cumulative_size);
        }
    }
}
