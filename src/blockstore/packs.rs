//! [`Packs`]: where the bytes of large blocks live — appended to pack files, indexed by sled
//! (`sled.rs`), their space given back by punching holes.
//!
//! sled keeps values inside its B-tree leaves and rewrites them whenever a leaf is consolidated or
//! a segment cleaned: 256 KiB blocks cost 1.6–2.9× their size on disk, and sled's page cache grew
//! with every block read or written. A file per block costs its size but an inode each, and ext4's
//! inode allocation took a third of a receiving node's CPU (measured with `PROFILE=1
//! scripts/bench-transfer.sh`). Pack files cost neither; the kernel's page cache holds hot blocks.
//!
//! - Layout: `<root>/<n>.pack`. A block starts on a [`ALIGN`] boundary of the current pack, so
//!   freeing it (a punched hole) gives back all of its filesystem blocks. A pack is sealed at
//!   [`PACK_SIZE`] and the next one started.
//! - A writer reserves its range under a short lock, then writes it with `pwrite` outside it; the
//!   caller records the range in the index only after the write, so the index never names bytes
//!   that were not written. It holds the [`Written`] guard until then: [`Packs::sweep`] (run by
//!   gc) waits for every such guard, then punches out of sealed packs what the index does not
//!   name (the unnamed ranges a crash between write and index leaves).
//! - [`Packs::sync`] makes every write so far durable (syncfs), before an index that names them is
//!   flushed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

/// A block's place: pack number and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub pack: u32,
    pub offset: u64,
}

/// Blocks start on this boundary (the filesystem block), so a hole punched over a block frees
/// every filesystem block it used.
pub(super) const ALIGN: u64 = 4096;
/// A pack is sealed once it reaches this size.
const PACK_SIZE: u64 = 1 << 30;
const SUFFIX: &str = ".pack";

/// The directory of pack files.
#[derive(Debug)]
pub(super) struct Packs {
    root: PathBuf,
    /// The pack being appended to and where its next block goes.
    tail: Mutex<(u32, u64)>,
    /// Pack and offset up to which writeback was last started ([`Packs::start_writeback`]).
    kicked: Mutex<(u32, u64)>,
    files: RwLock<HashMap<u32, Arc<File>>>,
    /// Held shared from a write until its index entry is in place ([`Written`]), and alone by
    /// [`Packs::sweep`], so a sweep never punches a range that is about to be named.
    naming: RwLock<()>,
    /// Whether the file system takes reads that must not wait (`RWF_NOWAIT`; tmpfs does not).
    nowait: AtomicBool,
}

/// A range written and not yet named by the index: keep it until the index entry is in place.
pub(super) type Written<'a> = RwLockReadGuard<'a, ()>;

impl Packs {
    /// Opens every pack in `root` (created if missing); appending goes on at the end of the last.
    pub(super) fn open(root: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&root)?;
        let mut files = HashMap::new();
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let file = File::options().read(true).write(true).open(entry.path())?;
            files.insert(n, Arc::new(file));
        }
        let last = files.keys().copied().max();
        let tail = match last {
            Some(n) => (n, files[&n].metadata()?.len().next_multiple_of(ALIGN)),
            None => {
                files.insert(0, Arc::new(create(&root, 0)?));
                (0, 0)
            }
        };
        Ok(Packs {
            root,
            tail: Mutex::new(tail),
            kicked: Mutex::new(tail),
            files: RwLock::new(files),
            naming: RwLock::new(()),
            nowait: AtomicBool::new(true),
        })
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    fn path(root: &Path, pack: u32) -> PathBuf {
        root.join(format!("{pack}{SUFFIX}"))
    }

    fn file(&self, pack: u32) -> io::Result<Arc<File>> {
        let files = crate::sync::read(&self.files);
        files.get(&pack).cloned().ok_or_else(|| {
            io::Error::new(ErrorKind::NotFound, format!("pack {pack} does not exist"))
        })
    }

    /// Appends `data` and returns where it went, with the guard to hold until the index names it.
    pub(super) fn write(&self, data: &[u8]) -> io::Result<(Location, Written<'_>)> {
        let naming = crate::sync::read(&self.naming);
        let len = data.len() as u64;
        let at = {
            let mut tail = crate::sync::lock(&self.tail);
            if tail.1 > 0 && tail.1 + len > PACK_SIZE {
                let next = tail.0 + 1;
                let file = create(&self.root, next)?;
                crate::sync::write(&self.files).insert(next, Arc::new(file));
                *tail = (next, 0);
            }
            let at = Location {
                pack: tail.0,
                offset: tail.1,
            };
            tail.1 = (tail.1 + len).next_multiple_of(ALIGN);
            at
        };
        self.file(at.pack)?.write_all_at(data, at.offset)?;
        Ok((at, naming))
    }

    /// The `len` bytes at `at`; `None` when the pack or the range is missing (truncated). A
    /// range past the pack's end is missing before anything is allocated for it, so a rotten
    /// index entry cannot ask for more memory than the pack holds.
    pub(super) fn read(&self, at: Location, len: u64) -> io::Result<Option<Vec<u8>>> {
        match self.read_with(at, len, 0)? {
            Read::Done(data) => Ok(Some(data)),
            Read::Missing => Ok(None),
            // only a read that must not wait is told EAGAIN; were this one, it is an error
            Read::WouldBlock => Err(ErrorKind::WouldBlock.into()),
        }
    }

    /// [`Packs::read`] if every byte is in the page cache: `preadv2(RWF_NOWAIT)` never waits
    /// for the disk, so it may run on an async worker and spare the hand-off to a blocking
    /// thread and back. `None` when some byte is not cached, the range is missing or the read
    /// failed: then [`Packs::read`] it on a blocking thread, which reports what is wrong.
    pub(super) fn read_cached(&self, at: Location, len: u64) -> Option<Vec<u8>> {
        if !self.nowait.load(Relaxed) {
            return None;
        }
        match self.read_with(at, len, libc::RWF_NOWAIT) {
            Ok(Read::Done(data)) => Some(data),
            Ok(Read::Missing | Read::WouldBlock) => None,
            Err(e) => {
                if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                    self.nowait.store(false, Relaxed);
                }
                None
            }
        }
    }

    fn read_with(&self, at: Location, len: u64, flags: libc::c_int) -> io::Result<Read> {
        let file = match self.file(at.pack) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Read::Missing),
            Err(e) => return Err(e),
        };
        if at.offset.saturating_add(len) > file.metadata()?.len() {
            return Ok(Read::Missing);
        }
        let len = usize::try_from(len).map_err(io::Error::other)?;
        // read into spare capacity: zeroing it first cost as much as a page cache copy
        let mut data: Vec<u8> = Vec::with_capacity(len);
        while data.len() < len {
            let done = data.len();
            let offset =
                libc::off_t::try_from(at.offset + done as u64).map_err(io::Error::other)?;
            let iov = libc::iovec {
                // SAFETY: in bounds: `done <= len`, the capacity
                iov_base: unsafe { data.as_mut_ptr().add(done) }.cast(),
                iov_len: len - done,
            };
            // SAFETY: the iovec points into `data`'s spare capacity, `len - done` bytes, and
            // preadv2(2) writes at most that many
            let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, flags) };
            match n {
                0 => return Ok(Read::Missing), // the pack ends before the block does
                n if n < 0 => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        ErrorKind::Interrupted => {}
                        ErrorKind::WouldBlock => return Ok(Read::WouldBlock),
                        _ => return Err(e),
                    }
                }
                // SAFETY: preadv2 initialised these `n` bytes past the old length
                n => unsafe { data.set_len(done + n as usize) },
            }
        }
        Ok(Read::Done(data))
    }

    /// Gives back the space of the `len` bytes at `at` (a punched hole; the pack keeps its size).
    pub(super) fn free(&self, at: Location, len: u64) -> io::Result<()> {
        punch(
            &*self.file(at.pack)?,
            at.offset,
            len.next_multiple_of(ALIGN),
        )
    }

    /// Starts writing to disk what was appended since the last call, without waiting for it
    /// (`sync_file_range`), so that a [`Packs::sync`] soon after finds little left: an `add`
    /// of 1 GiB ended in a `syncfs` of 0.5-0.6 s here, the disk idle until then.
    pub(super) fn start_writeback(&self) -> io::Result<()> {
        let tail = *crate::sync::lock(&self.tail);
        let mut kicked = crate::sync::lock(&self.kicked);
        if let Some((pack, from, len)) = unkicked(*kicked, tail) {
            start_writeback(&*self.file(pack)?, from, len)?;
        }
        *kicked = tail;
        Ok(())
    }

    /// Makes every write so far durable: one `syncfs` of the filesystem holding the packs.
    pub(super) fn sync(&self) -> io::Result<()> {
        let dir = File::open(&self.root)?;
        // SAFETY: syncfs(2) on a file descriptor we own for the duration of the call
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Punches out of every sealed pack what no index entry names (`used`: pack, offset and
    /// length of every indexed block, read while the sweep holds off writers), and removes sealed
    /// packs that hold nothing. Waits for every write still waiting for its index entry, and
    /// keeps new ones waiting until it is done. The pack being appended to is left alone.
    /// Returns the bytes of the ranges it punched (a range punched before counts again).
    pub(super) fn sweep(&self, used: impl Iterator<Item = (Location, u64)>) -> io::Result<u64> {
        let _alone = crate::sync::write(&self.naming);
        let tail = crate::sync::lock(&self.tail).0;
        let mut ranges: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
        for (at, len) in used {
            ranges.entry(at.pack).or_default().push((at.offset, len));
        }
        let packs: Vec<(u32, Arc<File>)> = crate::sync::read(&self.files)
            .iter()
            .filter(|(n, _)| **n != tail)
            .map(|(n, f)| (*n, f.clone()))
            .collect();
        let mut freed = 0;
        for (n, file) in packs {
            let mut live = ranges.remove(&n).unwrap_or_default();
            if live.is_empty() {
                crate::sync::write(&self.files).remove(&n);
                freed += allocated(&file)?;
                fs::remove_file(Self::path(&self.root, n))?;
                continue;
            }
            live.sort_unstable();
            let mut at = 0;
            for (offset, len) in live.into_iter().chain([(file.metadata()?.len(), 0)]) {
                if offset > at {
                    punch(&file, at, offset - at)?;
                    freed += offset - at;
                }
                at = at.max((offset + len).next_multiple_of(ALIGN));
            }
        }
        Ok(freed)
    }
}

/// The range whose writeback is to start, `(pack, offset, len)`, when the tail has moved on from
/// `kicked` (both pack and offset). In a pack started since, from its beginning; what the
/// sealed pack got after `kicked` is left to the next sync (at most one block per GiB).
fn unkicked(kicked: (u32, u64), tail: (u32, u64)) -> Option<(u32, u64, u64)> {
    let from = if kicked.0 == tail.0 { kicked.1 } else { 0 };
    (tail.1 > from).then(|| (tail.0, from, tail.1 - from))
}

fn create(root: &Path, pack: u32) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(Packs::path(root, pack))
}

/// Starts writing `len` bytes at `offset` of `file` to disk and does not wait for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): a later `fsync` or `syncfs` finds less to write.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let offset = libc::off64_t::try_from(offset).map_err(io::Error::other)?;
    let len = libc::off64_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: sync_file_range(2) on the descriptor of `file`, open for the call; it reads no
    // memory of ours
    if unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) }
        != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes the filesystem has allocated to `file`.
fn allocated(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.blocks() * 512)
}

/// Deallocates `len` bytes at `offset` of `file`, keeping its size.
fn punch(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::other("range past the largest file offset"));
    };
    // SAFETY: fallocate(2) on a descriptor we own for the duration of the call
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a read of a pack found.
enum Read {
    Done(Vec<u8>),
    /// The pack or the range is not there.
    Missing,
    /// Some of it is not in the page cache (a read that must not wait).
    WouldBlock,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writeback starts once per appended range: from where it last started, from the start
    /// of a pack begun since, and not at all when nothing was appended.
    #[test]
    fn writeback_covers_each_appended_range_once() {
        assert_eq!(
            unkicked((0, 4096), (0, 3 * 4096)),
            Some((0, 4096, 2 * 4096))
        );
        assert_eq!(unkicked((0, 4096), (0, 4096)), None);
        assert_eq!(unkicked((0, 1 << 30), (1, 8192)), Some((1, 0, 8192)));
        assert_eq!(unkicked((2, 0), (2, 0)), None);
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::open(dir.path().to_owned()).unwrap();
        packs.start_writeback().unwrap();
        let (at, written) = packs.write(&[5u8; 10_000]).unwrap();
        drop(written);
        packs.start_writeback().unwrap();
        assert_eq!(*crate::sync::lock(&packs.kicked), (at.pack, 3 * 4096));
        assert_eq!(packs.read(at, 10_000).unwrap().unwrap(), vec![5u8; 10_000]);
    }

    #[test]
    fn write_read_free_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::open(dir.path().join("packs")).unwrap();
        let a = packs.write(&[1u8; 10_000]).unwrap().0;
        let b = packs.write(&[2u8; 5]).unwrap().0;
        assert_eq!(a, Location { pack: 0, offset: 0 });
        assert_eq!(b.offset % ALIGN, 0, "blocks start aligned");
        assert_eq!(packs.read(b, 5).unwrap(), Some(vec![2u8; 5]));
        packs.free(a, 10_000).unwrap();
        assert_eq!(packs.read(a, 10_000).unwrap(), Some(vec![0u8; 10_000]));
        assert_eq!(
            packs.read(b, 5).unwrap(),
            Some(vec![2u8; 5]),
            "a neighbour survives"
        );
        assert_eq!(
            packs.read(Location { pack: 9, offset: 0 }, 5).unwrap(),
            None
        );
        assert_eq!(packs.read(b, 1 << 20).unwrap(), None, "past the end");
        packs.sync().unwrap();
        drop(packs);
        let packs = Packs::open(dir.path().join("packs")).unwrap();
        let c = packs.write(b"after").unwrap().0;
        assert!(c.offset > b.offset, "appends after what is there");
    }
}
