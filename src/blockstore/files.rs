//! [`BlockFiles`]: where the bytes of large blocks live — one file per block in sharded
//! directories (kubo's flatfs layout), indexed by sled (`sled.rs`).
//!
//! sled keeps values inside its B-tree leaves and rewrites them whenever a leaf is consolidated or
//! a segment cleaned: 256 KiB blocks cost 1.6–2.9× their size on disk, and sled's page cache grew
//! with every block read or written. A file per block costs its size (rounded up to the
//! filesystem block) and leaves hot blocks to the kernel's page cache.
//!
//! - A block is written to a temporary name and renamed into place, so a file under a block's
//!   name is always whole. The caller records it in the index only after the rename, so the index
//!   never names a file that was not written; a crash in between leaves an orphan that
//!   [`BlockFiles::sweep`] (run by gc) removes.
//! - Layout: `<root>/<shard>/<cid>`, where the shard is the next-to-last two characters of the
//!   CID's string form (as kubo's `next-to-last/2`): up to 1,024 directories for base32 CIDs.
//! - [`BlockFiles::sync`] makes every file written so far durable (syncfs), before the index
//!   that names them is flushed.

use std::fs;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cid::Cid;

/// Suffix of a block file being written.
const TMP_SUFFIX: &str = ".tmp";
/// Files younger than this are never swept: a put may have renamed its file and not yet
/// recorded it in the index.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(60);

/// The directory of block files.
#[derive(Debug)]
pub(super) struct BlockFiles {
    root: PathBuf,
    /// Makes temporary names unique within this process (one process opens a store: sled locks it).
    seq: AtomicU64,
}

impl BlockFiles {
    pub(super) fn open(root: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&root)?;
        Ok(BlockFiles {
            root,
            seq: AtomicU64::new(0),
        })
    }

    /// The path of a block's file.
    pub(super) fn path(&self, cid: &Cid) -> PathBuf {
        let name = cid.to_string();
        let shard = shard(&name);
        self.root.join(shard).join(name)
    }

    /// Writes the block's file whole (temporary name, then rename).
    pub(super) fn write(&self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        let path = self.path(cid);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".{seq}{TMP_SUFFIX}"));
        let tmp = PathBuf::from(tmp);
        match fs::write(&tmp, data) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                fs::write(&tmp, data)?;
            }
            other => other?,
        }
        fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// The block's bytes, or `None` when its file is missing.
    pub(super) fn read(&self, cid: &Cid) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(cid)) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the block's file; a missing file is not an error.
    pub(super) fn remove(&self, cid: &Cid) -> io::Result<()> {
        match fs::remove_file(self.path(cid)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Makes every file written so far durable: one `syncfs` of the filesystem holding them.
    pub(super) fn sync(&self) -> io::Result<()> {
        let dir = fs::File::open(&self.root)?;
        // SAFETY: syncfs(2) on a file descriptor we own for the duration of the call
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes files that `indexed` does not know (orphans of a crash between a write and its
    /// index entry, or of a delete) and abandoned temporary files, once they are older than
    /// [`SWEEP_MIN_AGE`]. Returns how many files it removed.
    pub(super) fn sweep(&self, indexed: impl Fn(&Cid) -> bool) -> io::Result<u64> {
        let now = SystemTime::now();
        let mut removed = 0;
        for shard in fs::read_dir(&self.root)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(shard.path())? {
                let file = file?;
                let name = file.file_name();
                let name = name.to_string_lossy();
                let orphan = name.ends_with(TMP_SUFFIX)
                    || Cid::try_from(name.as_ref()).map_or(true, |cid| !indexed(&cid));
                if !orphan {
                    continue;
                }
                let age = file
                    .metadata()?
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if age >= SWEEP_MIN_AGE {
                    tracing::debug!(file = %name, "removing an orphaned block file");
                    fs::remove_file(file.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }
}

/// The next-to-last two characters of a CID's string form.
fn shard(name: &str) -> &str {
    let end = name.len().saturating_sub(1);
    name.get(end.saturating_sub(2)..end).unwrap_or("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_is_the_next_to_last_two_characters() {
        assert_eq!(shard("bafkreiabcdefxyz"), "xy");
        assert_eq!(shard("ab"), "a");
        assert_eq!(shard(""), "");
    }

    #[test]
    fn write_read_remove_and_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path().join("files")).unwrap();
        let cid: Cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
            .parse()
            .unwrap();
        files.write(&cid, b"hello").unwrap();
        assert_eq!(files.read(&cid).unwrap().as_deref(), Some(&b"hello"[..]));
        files.sync().unwrap();
        // young orphans stay: a put may be between its rename and its index entry
        assert_eq!(files.sweep(|_| false).unwrap(), 0);
        files.remove(&cid).unwrap();
        files.remove(&cid).unwrap();
        assert_eq!(files.read(&cid).unwrap(), None);
    }
}
