//! The fuser adapter: a read-only filesystem over the immutable inode table. Metadata requests
//! are answered from the table on the FUSE thread (no locks, no I/O); `read` moves its reply
//! into a task on the daemon's runtime and returns at once, so a slow fetch never blocks other
//! requests. Errors become errno values only here.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, KernelConfig,
    LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyXattr, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::inode::{Inode, Kind, Table, ROOT};
use super::reader::Reader;
use crate::metrics::FuseReads;

/// The image never changes: the kernel may cache attributes and names for long.
pub const TTL: Duration = Duration::from_secs(3600);
/// Largest readahead asked of the kernel (it may grant less).
const MAX_READAHEAD: u32 = 1 << 20;

/// One merged tree and its reader: every request as a function of inode numbers that returns
/// `Result<_, Errno>`. [`Fs`] serves one tree as a mount; the additional layer store serves many
/// (one per layer `diff`) under its own inode numbers.
pub struct Tree {
    table: Arc<Table>,
    reader: Reader,
    /// Parent of every directory, for `..`.
    parents: HashMap<u64, u64>,
}

impl Tree {
    pub fn new(table: Arc<Table>, reader: Reader) -> Self {
        let mut parents = HashMap::from([(ROOT, ROOT)]);
        for (_, node) in table.walk() {
            if let Kind::Dir { children } = &node.kind {
                for child in children.values() {
                    if matches!(table.get(*child).map(|c| &c.kind), Some(Kind::Dir { .. })) {
                        parents.insert(*child, node.ino);
                    }
                }
            }
        }
        Tree {
            table,
            reader,
            parents,
        }
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
        let reader = self.reader.clone();
        Ok(async move {
            reader
                .read(&file, file_size, offset, size as u64)
                .await
                .map_err(|e| Errno::from_i32(e.errno()))
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

    pub fn access(&self, ino: u64, mask: fuser::AccessFlags) -> Result<(), Errno> {
        self.inode(ino)?;
        if mask.contains(fuser::AccessFlags::W_OK) {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    /// `statfs`: (blocks of 4 KiB, inodes).
    pub fn usage(&self) -> (u64, u64) {
        let (files, blocks) = self.table.totals();
        (blocks.div_ceil(8), files)
    }
}

/// Answers a `read` from a task on `rt`, so the FUSE thread never waits for the data.
/// `counts` records the read (latency, bytes, error).
pub fn spawn_read_reply(
    rt: &tokio::runtime::Handle,
    read: Result<
        impl std::future::Future<Output = Result<bytes::Bytes, Errno>> + Send + 'static,
        Errno,
    >,
    reply: ReplyData,
    counts: &FuseReads,
) {
    let started = std::time::Instant::now();
    match read {
        Ok(read) => {
            let counts = counts.clone();
            rt.spawn(async move {
                match read.await {
                    Ok(data) => {
                        counts.record(started, Ok(data.len()));
                        reply.data(&data)
                    }
                    Err(e) => {
                        counts.record(started, Err(()));
                        reply.error(e)
                    }
                }
            });
        }
        Err(e) => {
            counts.record(started, Err(()));
            reply.error(e)
        }
    }
}

/// Answers a `readdir` with `entries` from `offset` on (each entry's offset is its index + 1).
pub fn reply_entries<N: AsRef<OsStr>>(
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

/// A mount of one merged tree.
pub struct Fs {
    tree: Tree,
    rt: tokio::runtime::Handle,
    counts: FuseReads,
}

impl Fs {
    pub fn new(
        table: Arc<Table>,
        reader: Reader,
        rt: tokio::runtime::Handle,
        counts: FuseReads,
    ) -> Self {
        Fs {
            tree: Tree::new(table, reader),
            rt,
            counts,
        }
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
pub fn xattr_reply(reply: ReplyXattr, data: &[u8], size: u32) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() <= size as usize {
        reply.data(data);
    } else {
        reply.error(Errno::ERANGE);
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(max) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.tree.lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &a, fuser::Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree.readlink(ino.0) {
            Ok(t) => reply.data(t),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.tree.open(ino.0, flags) {
            Ok(f) => reply.opened(FileHandle(0), f),
            Err(e) => reply.error(e),
        }
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
        spawn_read_reply(
            &self.rt,
            self.tree.read(ino.0, offset, size),
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
        match self.tree.entries(ino.0) {
            Ok(entries) => reply_entries(reply, entries, offset),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (blocks, files) = self.tree.usage();
        reply.statfs(blocks, 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.tree.xattr(ino.0, name) {
            Ok(v) => xattr_reply(reply, v, size),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.tree.xattr_names(ino.0) {
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
        match self.tree.access(ino.0, mask) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
