//! The one fuser adapter of cidfs, and the tree it serves for a mount.
//!
//! - [`Requests`]: every request a cidfs filesystem answers, as a function of inode numbers that
//!   returns `Result<_, Errno>` (a future where it must fetch). [`Tree`] answers them for one
//!   merged tree (a mount, a snapshotter's layer); the additional layer store answers them for
//!   its many trees (the layer store's `Store`, a level above).
//! - [`Fs`]: the `fuser::Filesystem` over any [`Requests`]. Metadata requests are answered on
//!   the FUSE thread (no I/O), and so is a `read` whose bytes are in memory (its future's first
//!   poll finishes it); other reads, and lookups that fetch, move their reply into a task on the
//!   daemon's runtime and return at once, so a slow fetch never blocks other requests.
//!   Errors become errno values only in the `Requests` and here.

use bytes::Bytes;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, KernelConfig,
    LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio_util::task::AbortOnDropHandle;

use super::inode::{Inode, Kind, Table, ROOT};
use super::loads::Loads;
use super::reader::Reader;
use super::trace::Trace;
use crate::metrics::FuseReads;

/// The image never changes: the kernel may cache attributes and names for long.
pub const TTL: Duration = Duration::from_secs(3600);
/// Largest readahead asked of the kernel (it may grant less).
const MAX_READAHEAD: u32 = 1 << 20;

/// An answer now, or a future that gives it (run off the FUSE thread).
pub enum Answer<T> {
    Now(Result<T, Errno>),
    Later(BoxFuture<'static, Result<T, Errno>>),
}

/// A read's answer: the bytes, from a future run off the FUSE thread.
pub type ReadFuture = BoxFuture<'static, Result<Bytes, Errno>>;

/// Every request a cidfs filesystem answers, as a function of inode numbers; [`Fs`] puts the
/// answers in fuser's replies. Read-only: writes answer EROFS unless a filesystem says more.
pub trait Requests: Send + Sync + 'static {
    /// The tree never changes and is mounted read-only, so the kernel may keep what it learns
    /// without asking again, each where it can:
    /// - missing names: a lookup that finds nothing answers a negative entry for [`TTL`], not
    ///   ENOENT, which the kernel forgets at once (the loader and Python look for the same
    ///   missing files in several directories: a Debian start looked up 116 of its 223 missing
    ///   names more than once);
    /// - symlink targets (`FUSE_CACHE_SYMLINKS`): every path through Debian's `/lib` →
    ///   `usr/lib` asked for the link again;
    /// - opens of files and directories (`FUSE_NO_OPEN_SUPPORT`, `FUSE_NO_OPENDIR_SUPPORT`): the
    ///   first answers ENOSYS, and from then on the kernel opens without asking, keeping the
    ///   page cache (`FOPEN_KEEP_CACHE`, `FOPEN_CACHE_DIR` for listings), with no `release`
    ///   after. The read-only mount refuses writes in the kernel, before any open.
    ///
    /// That start sent 580 requests instead of 975, each a round trip to the daemon. False
    /// here: the layer store's tree grows as layers are asked for.
    fn immutable(&self) -> bool {
        false
    }
    fn lookup(&self, parent: u64, name: &OsStr) -> Answer<FileAttr>;
    fn attr(&self, ino: u64) -> Result<FileAttr, Errno>;
    fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno>;
    fn open(&self, ino: u64, flags: OpenFlags) -> Result<FopenFlags, Errno>;
    fn read(&self, ino: u64, offset: u64, size: u32) -> Result<ReadFuture, Errno>;
    /// `readdir`: `.`, `..` and the children, in order.
    fn entries(&self, ino: u64) -> Result<Vec<(u64, FileType, OsString)>, Errno>;
    fn xattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, Errno>;
    /// `listxattr`: NUL-terminated names.
    fn xattr_names(&self, ino: u64) -> Result<Vec<u8>, Errno>;
    /// `access`: any inode that exists, never for writing.
    fn access(&self, ino: u64, mask: fuser::AccessFlags) -> Result<(), Errno> {
        self.attr(ino)?;
        if mask.contains(fuser::AccessFlags::W_OK) {
            return Err(Errno::EROFS);
        }
        Ok(())
    }
    /// `statfs`: (blocks of 4 KiB, inodes).
    fn usage(&self) -> (u64, u64) {
        (0, 0)
    }
    /// `create` of `name` in `parent`: the error it answers.
    fn create(&self, _parent: u64, _name: &OsStr) -> Errno {
        Errno::EROFS
    }
    /// `rmdir` of `name` in `parent`: the error it answers.
    fn rmdir(&self, _parent: u64, _name: &OsStr) -> Errno {
        Errno::EROFS
    }
}

/// One merged tree and its reader: every request as a function of inode numbers that returns
/// `Result<_, Errno>`. [`Fs`] serves one tree as a mount; the additional layer store serves many
/// (one per layer `diff`) under its own inode numbers.
pub struct Tree {
    table: Arc<Table>,
    reader: Reader,
    /// Parent of every directory, for `..`.
    parents: HashMap<u64, u64>,
    /// Where the first read of each file is noted, if anywhere.
    trace: Option<Arc<Trace>>,
    /// The follower of programs' loads (`mount.prefetch_libraries`), if on.
    loads: Option<Arc<Loads>>,
    /// Work that lives as long as the tree (the layer store's prefetch), stopped with it.
    _background: Option<AbortOnDropHandle<()>>,
}

impl Tree {
    pub fn new(table: Arc<Table>, reader: Reader) -> Self {
        let parents = table.dir_parents();
        Tree {
            table,
            reader,
            parents,
            trace: None,
            loads: None,
            _background: None,
        }
    }

    /// Keeps `task` running as long as the tree lives.
    pub fn with_background(mut self, task: AbortOnDropHandle<()>) -> Self {
        self._background = Some(task);
        self
    }

    /// Notes the first read of each file in `trace`.
    pub fn traced(mut self, trace: Arc<Trace>) -> Self {
        self.trace = Some(trace);
        self
    }

    /// When a program or library is first read, reads what it loads at once ([`Loads`]).
    pub fn following_loads(mut self, on: bool) -> Self {
        self.loads = on.then(|| Loads::new(self.table.clone(), self.reader.clone()));
        self
    }

    /// The follower of the tree's loads, when on.
    pub fn loads(&self) -> Option<&Arc<Loads>> {
        self.loads.as_ref()
    }

    fn inode(&self, ino: u64) -> Result<&Inode, Errno> {
        self.table.get(ino).ok_or(Errno::ENOENT)
    }

    pub fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        self.inode(ino).map(attr)
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        self.table
            .lookup(parent, name)
            .map(attr)
            .ok_or(Errno::ENOENT)
    }

    pub fn readlink(&self, ino: u64) -> Result<&[u8], Errno> {
        match &self.inode(ino)?.kind {
            Kind::Symlink { target } => Ok(target.as_bytes()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `open`: read-only files only.
    pub fn open(&self, ino: u64, flags: OpenFlags) -> Result<FopenFlags, Errno> {
        let n = self.inode(ino)?;
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return Err(Errno::EROFS);
        }
        match n.kind {
            Kind::Dir { .. } => Err(Errno::EISDIR),
            _ => Ok(FopenFlags::FOPEN_KEEP_CACHE),
        }
    }

    /// `read`: the future that answers it (run it off the FUSE thread).
    pub fn read(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
    ) -> Result<
        impl std::future::Future<Output = Result<bytes::Bytes, Errno>> + Send + 'static,
        Errno,
    > {
        let (file, file_size) = match self.inode(ino)? {
            Inode {
                kind: Kind::File(f),
                size,
                ..
            } => (f.clone(), *size),
            _ => return Err(Errno::EISDIR),
        };
        if let Some(t) = &self.trace {
            t.record(ino, file.layer, || file.name.clone());
        }
        let reader = self.reader.clone();
        let loads = if offset == 0 {
            self.loads.clone()
        } else {
            None
        };
        Ok(async move {
            let bytes = reader
                .read(&file, file_size, offset, size as u64)
                .await
                .map_err(|e| Errno::from_i32(e.errno()))?;
            if let Some(l) = loads {
                l.first_read(ino, &bytes);
            }
            Ok(bytes)
        })
    }

    /// `readdir`: `.`, `..` and the children, in order.
    pub fn entries(&self, ino: u64) -> Result<Vec<(u64, FileType, &OsStr)>, Errno> {
        let Kind::Dir { children } = &self.inode(ino)?.kind else {
            return Err(Errno::ENOTDIR);
        };
        let parent = self.parents.get(&ino).copied().unwrap_or(ROOT);
        let mut out = vec![
            (ino, FileType::Directory, OsStr::new(".")),
            (parent, FileType::Directory, OsStr::new("..")),
        ];
        out.extend(children.iter().filter_map(|(name, c)| {
            let kind = file_type(&self.table.get(*c)?.kind);
            Some((*c, kind, OsStr::from_bytes(name.as_bytes())))
        }));
        Ok(out)
    }

    pub fn xattr(&self, ino: u64, name: &OsStr) -> Result<&[u8], Errno> {
        let n = self.inode(ino)?;
        name.to_str()
            .and_then(|k| n.xattrs.get(k))
            .map(Vec::as_slice)
            .ok_or(Errno::from_i32(libc::ENODATA))
    }

    /// `listxattr`: NUL-terminated names.
    pub fn xattr_names(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let mut names = Vec::new();
        for k in self.inode(ino)?.xattrs.keys() {
            names.extend_from_slice(k.as_bytes());
            names.push(0);
        }
        Ok(names)
    }

    /// `statfs`: (blocks of 4 KiB, inodes).
    pub fn usage(&self) -> (u64, u64) {
        let (files, blocks) = self.table.totals();
        (blocks.div_ceil(8), files)
    }
}

impl Requests for Tree {
    fn immutable(&self) -> bool {
        true
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Answer<FileAttr> {
        Answer::Now(Tree::lookup(self, parent, name))
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        Tree::attr(self, ino)
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        Tree::readlink(self, ino).map(<[u8]>::to_vec)
    }

    fn open(&self, ino: u64, flags: OpenFlags) -> Result<FopenFlags, Errno> {
        Tree::open(self, ino, flags)
    }

    fn read(&self, ino: u64, offset: u64, size: u32) -> Result<ReadFuture, Errno> {
        Ok(Tree::read(self, ino, offset, size)?.boxed())
    }

    fn entries(&self, ino: u64) -> Result<Vec<(u64, FileType, OsString)>, Errno> {
        let list = Tree::entries(self, ino)?;
        Ok(list
            .into_iter()
            .map(|(c, kind, name)| (c, kind, name.to_owned()))
            .collect())
    }

    fn xattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, Errno> {
        Tree::xattr(self, ino, name).map(<[u8]>::to_vec)
    }

    fn xattr_names(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        Tree::xattr_names(self, ino)
    }

    fn usage(&self) -> (u64, u64) {
        Tree::usage(self)
    }
}

/// Answers a `read`: at once when its bytes are in memory (a chunk in the chunk cache: the
/// future's first poll finishes it), else from a task on `rt`, so the FUSE thread never waits
/// for the data ([`finish_here_or_spawn`]). `counts` records the read (latency, bytes, error).
fn answer_read(
    rt: &tokio::runtime::Handle,
    read: Result<ReadFuture, Errno>,
    reply: ReplyData,
    counts: &FuseReads,
) {
    let started = std::time::Instant::now();
    let counts = counts.clone();
    let answer = move |read: Result<Bytes, Errno>| match read {
        Ok(data) => {
            counts.record(started, Ok(data.len()));
            reply.data(&data)
        }
        Err(e) => {
            counts.record(started, Err(()));
            reply.error(e)
        }
    };
    match read {
        Ok(read) => finish_here_or_spawn(rt, read, answer),
        Err(e) => answer(Err(e)),
    }
}

/// Polls `work` once on this thread, in `rt`'s context (its timers and spawns work), and calls
/// `done` with the result here if it is ready; else `work` goes on in a task on `rt`, which
/// calls `done`. A read of a chunk already inflated was answered by a task all the same: a
/// wake-up of a worker and a hand-off per read, which an optimized start made about a hundred
/// times.
fn finish_here_or_spawn<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    mut work: BoxFuture<'static, T>,
    done: impl FnOnce(T) + Send + 'static,
) {
    // a waker that does nothing: a future not done by this poll goes to a new task, which is
    // polled at once with its own waker, so a wake-up sent here in between is not lost
    let first = {
        let _in_runtime = rt.enter();
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        work.as_mut().poll(&mut cx)
    };
    match first {
        std::task::Poll::Ready(result) => done(result),
        std::task::Poll::Pending => {
            rt.spawn(async move { done(work.await) });
        }
    }
}

/// Answers a `readdir` with `entries` from `offset` on (each entry's offset is its index + 1).
fn reply_entries<N: AsRef<OsStr>>(
    mut reply: ReplyDirectory,
    entries: Vec<(u64, FileType, N)>,
    offset: u64,
) {
    for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
        if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
            break;
        }
    }
    reply.ok();
}

/// The filesystem FUSE talks to: the answers of `R`, put in fuser's replies.
pub struct Fs<R> {
    requests: R,
    rt: tokio::runtime::Handle,
    counts: FuseReads,
    /// Answer `open` / `opendir` with ENOSYS: the kernel opens without asking (set at init).
    no_open: bool,
    no_opendir: bool,
}

impl<R: Requests> Fs<R> {
    pub fn new(requests: R, rt: tokio::runtime::Handle, counts: FuseReads) -> Self {
        Fs {
            requests,
            rt,
            counts,
            no_open: false,
            no_opendir: false,
        }
    }
}

/// The answer to a lookup of a name that is not there and never will be: node 0, which the
/// kernel keeps as a negative entry for the entry timeout.
fn missing() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

pub fn file_type(kind: &Kind) -> FileType {
    match kind {
        Kind::Dir { .. } => FileType::Directory,
        Kind::File(_) => FileType::RegularFile,
        Kind::Symlink { .. } => FileType::Symlink,
        Kind::Char { .. } => FileType::CharDevice,
        Kind::Block { .. } => FileType::BlockDevice,
        Kind::Fifo => FileType::NamedPipe,
    }
}

/// The kernel's `new_encode_dev`, which FUSE uses for `rdev`.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

pub fn attr(n: &Inode) -> FileAttr {
    let mtime = if n.mtime >= 0 {
        UNIX_EPOCH + Duration::from_secs(n.mtime as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(n.mtime.unsigned_abs())
    };
    let rdev = match n.kind {
        Kind::Char { major, minor } | Kind::Block { major, minor } => encode_dev(major, minor),
        _ => 0,
    };
    FileAttr {
        ino: INodeNo(n.ino),
        size: n.size,
        blocks: n.blocks(),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind: file_type(&n.kind),
        perm: (n.perm & 0o7777) as u16,
        nlink: n.nlink,
        uid: n.uid,
        gid: n.gid,
        rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// Answers an xattr request: the size when `size` is 0, the bytes when they fit, else ERANGE.
fn xattr_reply(reply: ReplyXattr, data: &[u8], size: u32) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() <= size as usize {
        reply.data(data);
    } else {
        reply.error(Errno::ERANGE);
    }
}

impl<R: Requests> Filesystem for Fs<R> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(max) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        if self.requests.immutable() {
            use fuser::InitFlags;
            let kernel = config.capabilities();
            // a kernel without it asks for the link every time, as before
            let _ = config.add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS);
            self.no_open = kernel.contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
            self.no_opendir = kernel.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.counts.request("lookup");
        let keep_missing = self.requests.immutable();
        let entry = move |reply: ReplyEntry, found: Result<FileAttr, Errno>| match found {
            Ok(a) => reply.entry(&TTL, &a, fuser::Generation(0)),
            Err(Errno::ENOENT) if keep_missing => {
                reply.entry(&TTL, &missing(), fuser::Generation(0))
            }
            Err(e) => reply.error(e),
        };
        match self.requests.lookup(parent.0, name) {
            Answer::Now(found) => entry(reply, found),
            Answer::Later(found) => {
                self.rt.spawn(async move { entry(reply, found.await) });
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.counts.request("getattr");
        match self.requests.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.counts.request("readlink");
        match self.requests.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.counts.request("open");
        if self.no_open {
            return reply.error(Errno::ENOSYS);
        }
        match self.requests.open(ino.0, flags) {
            Ok(f) => reply.opened(FileHandle(0), f),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.counts.request("opendir");
        if self.no_opendir {
            return reply.error(Errno::ENOSYS);
        }
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.counts.request("read");
        answer_read(
            &self.rt,
            self.requests.read(ino.0, offset, size),
            reply,
            &self.counts,
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.counts.request("readdir");
        match self.requests.entries(ino.0) {
            Ok(entries) => reply_entries(reply, entries, offset),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.counts.request("statfs");
        let (blocks, files) = self.requests.usage();
        reply.statfs(blocks, 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.counts.request("getxattr");
        match self.requests.xattr(ino.0, name) {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.counts.request("listxattr");
        match self.requests.xattr_names(ino.0) {
            Ok(names) => xattr_reply(reply, &names, size),
            Err(e) => reply.error(e),
        }
    }

    fn access(
        &self,
        _req: &Request,
        ino: INodeNo,
        mask: fuser::AccessFlags,
        reply: fuser::ReplyEmpty,
    ) {
        self.counts.request("access");
        match self.requests.access(ino.0, mask) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.counts.request("create");
        reply.error(self.requests.create(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.counts.request("rmdir");
        reply.error(self.requests.rmdir(parent.0, name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Work done at its first poll is finished on the calling thread (a FUSE thread), before
    /// the call returns.
    #[test]
    fn work_done_at_once_is_finished_on_the_calling_thread() {
        let rt = runtime();
        let (tx, rx) = std::sync::mpsc::channel();
        finish_here_or_spawn(rt.handle(), async { 7 }.boxed(), move |v| {
            tx.send((v, std::thread::current().id())).unwrap()
        });
        assert_eq!(rx.try_recv(), Ok((7, std::thread::current().id())));
    }

    /// Work that waits goes on in a task: the call returns first, what it waits for wakes it,
    /// and its first poll may start the runtime's timers.
    #[test]
    fn work_that_waits_goes_on_in_a_task() {
        let rt = runtime();
        let (go, wait) = tokio::sync::oneshot::channel::<u32>();
        let work = async move {
            // a timer, created at the first poll (outside the runtime, this would panic)
            tokio::time::sleep(Duration::from_millis(1)).await;
            wait.await.expect("sent") + 1
        };
        let (tx, rx) = std::sync::mpsc::channel();
        finish_here_or_spawn(rt.handle(), work.boxed(), move |v| {
            tx.send((v, std::thread::current().id())).unwrap()
        });
        assert!(rx.try_recv().is_err(), "finished before what it waits for");
        go.send(41).unwrap();
        let (v, on) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("its task finished it");
        assert_eq!(v, 42);
        assert_ne!(on, std::thread::current().id());
    }
}
