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

/// The image never changes: the kernel may cache attributes and names for long.
const TTL: Duration = Duration::from_secs(3600);
/// Largest readahead asked of the kernel (it may grant less).
const MAX_READAHEAD: u32 = 1 << 20;

pub struct Fs {
    table: Arc<Table>,
    reader: Reader,
    /// Parent of every directory, for `..`.
    parents: HashMap<u64, u64>,
    rt: tokio::runtime::Handle,
}

impl Fs {
    pub fn new(table: Arc<Table>, reader: Reader, rt: tokio::runtime::Handle) -> Self {
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
        Fs {
            table,
            reader,
            parents,
            rt,
        }
    }

    fn inode(&self, ino: INodeNo) -> Result<&Inode, Errno> {
        self.table.get(ino.0).ok_or(Errno::ENOENT)
    }
}

fn file_type(kind: &Kind) -> FileType {
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

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(max) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.table.lookup(parent.0, name) {
            Some(n) => reply.entry(&TTL, &attr(n), fuser::Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inode(ino) {
            Ok(n) => reply.attr(&TTL, &attr(n)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inode(ino).map(|n| &n.kind) {
            Ok(Kind::Symlink { target }) => reply.data(target.as_bytes()),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.inode(ino).map(|n| &n.kind) {
            Ok(_) if flags.acc_mode() != OpenAccMode::O_RDONLY => reply.error(Errno::EROFS),
            Ok(Kind::Dir { .. }) => reply.error(Errno::EISDIR),
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
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
        let (file, file_size) = match self.inode(ino) {
            Ok(Inode {
                kind: Kind::File(f),
                size,
                ..
            }) => (f.clone(), *size),
            Ok(_) => return reply.error(Errno::EISDIR),
            Err(e) => return reply.error(e),
        };
        let reader = self.reader.clone();
        self.rt.spawn(async move {
            match reader.read(&file, file_size, offset, size as u64).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(Errno::from_i32(e.errno())),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.inode(ino).map(|n| &n.kind) {
            Ok(Kind::Dir { children }) => children,
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(e),
        };
        let parent = self.parents.get(&ino.0).copied().unwrap_or(ROOT);
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (parent, FileType::Directory, OsStr::new("..")),
        ];
        let entries = dots
            .into_iter()
            .chain(children.iter().filter_map(|(name, c)| {
                let kind = file_type(&self.table.get(*c)?.kind);
                Some((*c, kind, OsStr::from_bytes(name.as_bytes())))
            }));
        for (i, (child, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (files, blocks) = self.table.totals();
        reply.statfs(blocks.div_ceil(8), 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let n = match self.inode(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match name.to_str().and_then(|k| n.xattrs.get(k)) {
            Some(v) => xattr_reply(reply, v, size),
            None => reply.error(Errno::from_i32(libc::ENODATA)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let n = match self.inode(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mut names = Vec::new();
        for k in n.xattrs.keys() {
            names.extend_from_slice(k.as_bytes());
            names.push(0);
        }
        xattr_reply(reply, &names, size);
    }

    fn access(
        &self,
        _req: &Request,
        ino: INodeNo,
        mask: fuser::AccessFlags,
        reply: fuser::ReplyEmpty,
    ) {
        match self.inode(ino) {
            Ok(_) if mask.contains(fuser::AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
