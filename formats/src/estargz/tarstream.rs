//! A checking reader of layer tar streams, shared by [`super::build::build`] and
//! [`super::build::scan`].
//!
//! [`TarStream::next`] reads one entry's header blocks (PAX `x` and GNU `L`/`K` extension
//! headers with their payloads, then the entry's own header) and returns them verbatim together
//! with the parsed [`Meta`]; the caller then takes the entry's padded payload with
//! [`TarStream::payload_into`] or [`TarStream::skip_payload`]. Every entry passes the
//! [`Checker`] before it is returned: no absolute names, no `..`, no relative symlink escaping
//! the layer root, nothing placed under a symlink of the same tar, only the typeflags eStargz
//! knows (REFERENCE §1.3). Header parsing follows Go's `archive/tar` reader, whose view the
//! eStargz TOC records.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, ErrorKind, Read};

/// Size of a tar block.
pub(super) const BLOCK: usize = 512;
/// Largest PAX or GNU long-name payload accepted (Go `maxSpecialFileSize`).
const MAX_SPECIAL: u64 = 1 << 20;
/// Bytes of headers (extension headers and their payloads) before one entry: a few
/// [`MAX_SPECIAL`]-sized ones (`x`, `L`, `K`), not an endless chain.
pub const MAX_HEADER_CHAIN: u64 = 4 * MAX_SPECIAL;

/// Entry types eStargz supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Reg,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

/// One entry as Go's `tar.Reader` would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Meta {
    pub name: String,
    pub link_name: String,
    pub kind: Kind,
    /// Logical size (payload bytes; 0 for header-only types).
    pub size: u64,
    /// Raw header mode field.
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub uname: String,
    pub gname: String,
    /// Modification time: Unix seconds (floor) and nanoseconds, as Go's `time.Unix(s, ns)` holds it.
    pub mtime: (i64, u32),
    pub dev_major: i64,
    pub dev_minor: i64,
    /// From PAX `SCHILY.xattr.*`.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Meta {
    /// Payload bytes in the stream including padding to the block size.
    pub fn padded(&self) -> u64 {
        padded(self.size)
    }
}

pub(super) fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// One entry: its header blocks verbatim and what they say.
#[derive(Debug)]
pub(super) struct Entry {
    pub raw: Vec<u8>,
    pub meta: Meta,
}

/// Go's `path.Clean("/" + name)` without the leading `/`.
pub(super) fn clean(name: &str) -> String {
    super::index::clean_name(name)
}

/// Reads and checks the entries of an uncompressed tar stream.
pub(super) struct TarStream<R> {
    r: R,
    /// Bytes consumed so far.
    pos: u64,
    checker: Checker,
    /// Name and padded size of the payload the caller still has to take.
    pending: Option<(String, u64)>,
    /// Name of the last entry returned.
    last: String,
}

/// Why a tar stream is refused: it could not be read (or ended early), or an entry is bad.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("reading the layer tar: {0}")]
    Read(#[source] io::Error),
    #[error("tar entry {name:?}: {reason}")]
    Entry { name: String, reason: Invalid },
}

/// What is wrong with an entry (a header field, an extension record, a name or a link).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(s: String) -> Self {
        Invalid(s)
    }
}

impl From<&str> for Invalid {
    fn from(s: &str) -> Self {
        Invalid(s.to_string())
    }
}

fn err(name: &str, reason: impl Into<Invalid>) -> TarError {
    TarError::Entry {
        name: name.to_string(),
        reason: reason.into(),
    }
}

impl<R: Read> TarStream<R> {
    pub fn new(r: R) -> Self {
        TarStream {
            r,
            pos: 0,
            checker: Checker::default(),
            pending: None,
            last: String::new(),
        }
    }

    /// The underlying reader (positioned after whatever was consumed).
    pub fn into_inner(self) -> R {
        self.r
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on EOF before the first byte, `Err(Eof)`
    /// on EOF after it.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, Fill> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    self.pos += got as u64;
                    return Err(Fill::Eof);
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Fill::Io(e)),
            }
        }
        self.pos += got as u64;
        Ok(true)
    }

    /// Reads a header block; `Ok(false)` on a clean EOF before it when `eof_ok`.
    fn block(&mut self, buf: &mut [u8; BLOCK], eof_ok: bool) -> Result<bool, TarError> {
        match self.fill(buf) {
            Ok(true) => Ok(true),
            Ok(false) if eof_ok => Ok(false),
            Ok(false) | Err(Fill::Eof) => Err(self.truncated(false)),
            Err(Fill::Io(e)) => Err(TarError::Read(e)),
        }
    }

    /// The error for an EOF inside a payload or a header.
    fn truncated(&self, in_payload: bool) -> TarError {
        let what = match (&self.pending, in_payload) {
            (Some((name, _)), true) => format!("the payload of entry {name:?}"),
            _ if self.last.is_empty() => "the first header".to_string(),
            _ => format!("a header after entry {:?}", self.last),
        };
        TarError::Read(io::Error::new(
            ErrorKind::UnexpectedEof,
            format!(
                "truncated tar: it ends inside {what} (at byte {})",
                self.pos
            ),
        ))
    }

    /// Fills `buf` from the pending payload.
    fn payload_fill(&mut self, buf: &mut [u8]) -> Result<(), TarError> {
        match self.fill(buf) {
            Ok(true) => Ok(()),
            Ok(false) | Err(Fill::Eof) => Err(self.truncated(true)),
            Err(Fill::Io(e)) => Err(TarError::Read(e)),
        }
    }

    /// Appends `len` bytes of the pending payload to `out`.
    pub fn payload_into(&mut self, out: &mut Vec<u8>, len: usize) -> Result<(), TarError> {
        let start = out.len();
        out.resize(start + len, 0);
        let r = self.payload_fill(&mut out[start..]);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Passes `len` bytes of the pending payload to `f`, piece by piece.
    pub fn payload_with<E: From<TarError>>(
        &mut self,
        len: u64,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut buf = vec![0u8; len.min(1 << 20) as usize];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            self.payload_fill(&mut buf[..n])?;
            f(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Skips `len` payload bytes.
    pub fn skip_payload(&mut self, len: u64) -> Result<(), TarError> {
        self.payload_with(len, |_| Ok(()))
    }

    /// The next entry, or `None` at the end-of-archive marker (or a clean EOF).
    /// The previous entry's payload must have been taken.
    pub fn next(&mut self) -> Result<Option<Entry>, TarError> {
        self.pending = None;
        let mut raw = Vec::with_capacity(BLOCK);
        let mut pax: Vec<PaxRecord> = Vec::new();
        let mut long_name: Option<String> = None;
        let mut long_link: Option<String> = None;
        let mut blk = [0u8; BLOCK];
        loop {
            let first = raw.is_empty();
            if !self.block(&mut blk, first)? {
                return Ok(None);
            }
            if first && blk.iter().all(|&b| b == 0) {
                // end of archive: a second zero block (or EOF) must follow, as Go's reader wants
                let mut second = [0u8; BLOCK];
                return match self.fill(&mut second) {
                    Ok(true) if second.iter().any(|&b| b != 0) => Err(err(
                        "",
                        "a zero block followed by a non-zero block (not a tar archive?)",
                    )),
                    Ok(_) | Err(Fill::Eof) => Ok(None),
                    Err(Fill::Io(e)) => Err(TarError::Read(e)),
                };
            }
            let h = Header(&blk);
            let raw_name = h.raw_name();
            h.check_sum().map_err(|r| err(&raw_name, r))?;
            // a chain of extension headers before one entry is bounded as each of them is:
            // a gzip bomb of PAX headers once grew this buffer without limit (H1)
            if raw.len() as u64 + BLOCK as u64 > MAX_HEADER_CHAIN {
                return Err(err(
                    &raw_name,
                    format!("extension headers before one entry pass {MAX_HEADER_CHAIN} bytes"),
                ));
            }
            raw.extend_from_slice(&blk);
            let flag = blk[156];
            match flag {
                b'x' | b'L' | b'K' => {
                    let size = h.num(124, 12).map_err(|r| err(&raw_name, r))?;
                    if size < 0 || size as u64 > MAX_SPECIAL {
                        return Err(err(
                            &raw_name,
                            format!("extension header of {size} bytes is too large"),
                        ));
                    }
                    let size = size as usize;
                    let start = raw.len();
                    self.pending = Some((raw_name.clone(), padded(size as u64)));
                    self.payload_into(&mut raw, padded(size as u64) as usize)?;
                    let data = &raw[start..start + size];
                    match flag {
                        b'x' => pax.extend(parse_pax(data).map_err(|r| err(&raw_name, r))?),
                        b'L' => long_name = Some(c_string(data)),
                        _ => long_link = Some(c_string(data)),
                    }
                }
                _ => {
                    let mut meta = h.meta().map_err(|r| err(&raw_name, r))?;
                    apply_pax(&mut meta, &pax).map_err(|r| err(&meta.name, r))?;
                    if let Some(n) = long_name {
                        meta.name = n;
                    }
                    if let Some(l) = long_link {
                        meta.link_name = l;
                    }
                    if flag == 0 && meta.name.ends_with('/') {
                        // old tars mark directories with a trailing slash (Go checks the final name)
                        meta.kind = Kind::Dir;
                    }
                    if meta.kind != Kind::Reg && meta.size != 0 {
                        // Go skips no payload for these, other readers (the tar crate) skip `size`
                        // bytes: refuse a stream that readers would split differently
                        return Err(err(
                            &meta.name,
                            format!(
                                "a {:?} entry with a non-zero size ({}) is ambiguous",
                                meta.kind, meta.size
                            ),
                        ));
                    }
                    self.checker.check(&meta)?;
                    self.pending = Some((meta.name.clone(), meta.padded()));
                    self.last.clone_from(&meta.name);
                    return Ok(Some(Entry { raw, meta }));
                }
            }
        }
    }
}

/// The safety rules every entry must pass.
#[derive(Default)]
pub(super) struct Checker {
    /// Cleaned names of the symlinks seen so far.
    symlinks: HashSet<String>,
}

impl Checker {
    pub fn check(&mut self, m: &Meta) -> Result<(), TarError> {
        let bad = |r: String| err(&m.name, r);
        check_path(&m.name).map_err(|r| bad(format!("name {r}")))?;
        let cleaned = clean(&m.name);
        self.no_symlink_parent(&cleaned)
            .map_err(|p| bad(format!("its parent {p:?} is a symlink of this layer")))?;
        match m.kind {
            Kind::Hardlink => {
                check_path(&m.link_name).map_err(|r| bad(format!("hardlink target {r}")))?;
                self.no_symlink_parent(&clean(&m.link_name)).map_err(|p| {
                    bad(format!(
                        "hardlink target {:?} lies under the symlink {p:?}",
                        m.link_name
                    ))
                })?;
            }
            Kind::Symlink if !m.link_name.starts_with('/') => {
                let mut depth = cleaned.split('/').filter(|c| !c.is_empty()).count() as i64 - 1;
                for c in m.link_name.split('/') {
                    match c {
                        "" | "." => {}
                        ".." => depth -= 1,
                        _ => depth += 1,
                    }
                    if depth < 0 {
                        return Err(bad(format!(
                            "symlink target {:?} points outside the layer",
                            m.link_name
                        )));
                    }
                }
            }
            _ => {}
        }
        if m.kind == Kind::Symlink {
            self.symlinks.insert(cleaned);
        } else if !self.symlinks.is_empty() {
            self.symlinks.remove(&cleaned);
        }
        Ok(())
    }

    /// `Err(parent)` when a proper ancestor of `cleaned` is a known symlink.
    fn no_symlink_parent<'a>(&self, cleaned: &'a str) -> Result<(), &'a str> {
        if self.symlinks.is_empty() {
            return Ok(());
        }
        for (i, b) in cleaned.bytes().enumerate() {
            if b == b'/' && self.symlinks.contains(&cleaned[..i]) {
                return Err(&cleaned[..i]);
            }
        }
        Ok(())
    }
}

fn check_path(p: &str) -> Result<(), Invalid> {
    if p.is_empty() {
        return Err("is empty".into());
    }
    if p.starts_with('/') {
        return Err(format!("{p:?} is absolute").into());
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("{p:?} has a \"..\" component").into());
    }
    Ok(())
}

/// Bytes up to the first NUL, as text.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A 512-byte tar header.
struct Header<'a>(&'a [u8; BLOCK]);

#[derive(PartialEq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

impl Header<'_> {
    fn field(&self, off: usize, len: usize) -> &[u8] {
        &self.0[off..off + len]
    }

    fn raw_name(&self) -> String {
        c_string(self.field(0, 100))
    }

    /// Go `parseNumeric`: base-256 when the top bit is set, else octal with spaces/NULs trimmed.
    fn num(&self, off: usize, len: usize) -> Result<i64, Invalid> {
        parse_numeric(self.field(off, len))
    }

    fn check_sum(&self) -> Result<(), Invalid> {
        let want = self.num(148, 8)?;
        let (mut unsigned, mut signed) = (0i64, 0i64);
        for (i, &b) in self.0.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += b as i64;
            signed += b as i8 as i64;
        }
        if want != unsigned && want != signed {
            return Err("bad header checksum (not a tar archive?)".into());
        }
        Ok(())
    }

    fn format(&self) -> Format {
        let magic = self.field(257, 6);
        let version = self.field(263, 2);
        if magic == b"ustar\0" && version == b"00" {
            if self.field(508, 4) == b"tar\0" {
                Format::Star
            } else {
                Format::Ustar
            }
        } else if magic == b"ustar " && version == b" \0" {
            Format::Gnu
        } else {
            Format::V7
        }
    }

    fn meta(&self) -> Result<Meta, Invalid> {
        let format = self.format();
        let mut name = c_string(self.field(0, 100));
        let prefix = match format {
            Format::Ustar => c_string(self.field(345, 155)),
            Format::Star => c_string(self.field(345, 131)),
            _ => String::new(),
        };
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        let flag = self.0[156];
        let kind = match flag {
            b'0' | 0 => Kind::Reg,
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            f => return Err(format!("unsupported tar entry type {}", describe_flag(f)).into()),
        };
        let size = self.num(124, 12)?;
        if size < 0 {
            return Err(format!("negative size {size}").into());
        }
        let (uname, gname, dev_major, dev_minor) = if format == Format::V7 {
            (String::new(), String::new(), 0, 0)
        } else {
            let dev = matches!(kind, Kind::Char | Kind::Block);
            (
                c_string(self.field(265, 32)),
                c_string(self.field(297, 32)),
                if dev { self.num(329, 8)? } else { 0 },
                if dev { self.num(337, 8)? } else { 0 },
            )
        };
        Ok(Meta {
            name,
            link_name: c_string(self.field(157, 100)),
            kind,
            size: size as u64,
            mode: self.num(100, 8)?,
            uid: self.num(108, 8)?,
            gid: self.num(116, 8)?,
            uname,
            gname,
            mtime: (self.num(136, 12)?, 0),
            dev_major,
            dev_minor,
            xattrs: BTreeMap::new(),
        })
    }
}

fn describe_flag(f: u8) -> String {
    let what = match f {
        b'g' => " (PAX global header)",
        b'S' => " (GNU sparse file)",
        b'7' => " (contiguous file)",
        b'D' => " (GNU dump directory)",
        b'M' => " (GNU multi-volume continuation)",
        b'V' => " (GNU volume header)",
        b'N' => " (GNU old long name)",
        _ => "",
    };
    if f.is_ascii_graphic() {
        format!("{:?}{what}", f as char)
    } else {
        format!("0x{f:02x}{what}")
    }
}

fn parse_numeric(b: &[u8]) -> Result<i64, Invalid> {
    if let Some(&first) = b.first() {
        if first & 0x80 != 0 {
            // base-256, two's complement; the top bit of the first byte is the marker
            let neg = first & 0x40 != 0;
            let mut v: i64 = 0;
            for (i, &c) in b.iter().enumerate() {
                let c = if i == 0 { c & 0x7f } else { c };
                let c = if neg { c ^ 0xff } else { c };
                let c = if i == 0 && neg { c & 0x7f } else { c };
                if v >> 55 != 0 {
                    return Err("numeric field overflows".into());
                }
                v = (v << 8) | c as i64;
            }
            return Ok(if neg { !v } else { v });
        }
    }
    let t = trim(b);
    if t.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(t).map_err(|_| "numeric field is not octal".to_string())?;
    i64::from_str_radix(s, 8).map_err(|_| Invalid(format!("numeric field {s:?} is not octal")))
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&c| c != b' ' && c != 0)
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != 0)
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// One PAX record: key and value.
type PaxRecord = (Vec<u8>, Vec<u8>);

/// PAX records `"%d %s=%s\n"`.
fn parse_pax(mut data: &[u8]) -> Result<Vec<PaxRecord>, Invalid> {
    let bad = || "malformed PAX extended header".to_string();
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&c| c == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad().into());
        }
        let kv = &data[sp + 1..len - 1];
        let eq = kv.iter().position(|&c| c == b'=').ok_or_else(bad)?;
        out.push((kv[..eq].to_vec(), kv[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

fn apply_pax(m: &mut Meta, pax: &[PaxRecord]) -> Result<(), Invalid> {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let int = |k: &str, v: &[u8]| -> Result<i64, Invalid> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Invalid(format!("PAX record {k} = {:?} is not a number", text(v))))
    };
    for (k, v) in pax {
        match k.as_slice() {
            b"path" => m.name = text(v),
            b"linkpath" => m.link_name = text(v),
            b"uname" => m.uname = text(v),
            b"gname" => m.gname = text(v),
            b"uid" => m.uid = int("uid", v)?,
            b"gid" => m.gid = int("gid", v)?,
            b"size" => {
                let s = int("size", v)?;
                if s < 0 {
                    return Err(format!("negative PAX size {s}").into());
                }
                m.size = s as u64;
            }
            b"mtime" => m.mtime = pax_time(v)?,
            k if k.starts_with(b"SCHILY.xattr.") => {
                m.xattrs.insert(text(&k[13..]), v.clone());
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err("unsupported GNU sparse file (PAX format)".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// A PAX time `[-]secs[.frac]` as Go's `parsePAXTime` reads it (at most 9 fraction digits),
/// normalized to floor seconds and nanoseconds.
fn pax_time(v: &[u8]) -> Result<(i64, u32), Invalid> {
    let s = std::str::from_utf8(v).map_err(|_| "bad PAX mtime".to_string())?;
    let bad = || format!("bad PAX mtime {s:?}");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad().into());
    }
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.as_bytes().get(i).map_or(0, |&c| u32::from(c - b'0'));
    }
    if int.starts_with('-') && nanos > 0 {
        Ok((secs - 1, 1_000_000_000 - nanos))
    } else {
        Ok((secs, nanos))
    }
}

/// Why [`TarStream::fill`] failed.
enum Fill {
    Eof,
    Io(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times() {
        assert_eq!(parse_numeric(b"0000644\0").unwrap(), 0o644);
        assert_eq!(parse_numeric(b"  \0\0").unwrap(), 0);
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
        assert_eq!(parse_numeric(&[0xff; 8]).unwrap(), -1);
        assert!(parse_numeric(b"0009\0").is_err());
        assert_eq!(pax_time(b"10.5").unwrap(), (10, 500_000_000));
        assert_eq!(pax_time(b"10.0000000019").unwrap(), (10, 1));
        assert_eq!(pax_time(b"-10.25").unwrap(), (-11, 750_000_000));
        assert_eq!(pax_time(b"-10").unwrap(), (-10, 0));
        assert!(pax_time(b"1.x").is_err());
    }

    /// An endless chain of PAX headers (a gzip bomb of them inflates to gigabytes) is refused
    /// once it passes [`MAX_HEADER_CHAIN`], having buffered no more than that.
    #[test]
    fn endless_pax_header_chains_are_refused() {
        let mut one = tar::Header::new_ustar();
        one.set_entry_type(tar::EntryType::XHeader);
        let record = b"30 comment=aaaaaaaaaaaaaaaaaa\n";
        one.set_size(record.len() as u64);
        one.set_cksum();
        let mut block = one.as_bytes().to_vec();
        block.extend_from_slice(record);
        block.resize(2 * BLOCK, 0);
        let n = (2 * MAX_HEADER_CHAIN as usize) / block.len();
        let chain: Vec<u8> = block
            .iter()
            .copied()
            .cycle()
            .take(n * block.len())
            .collect();
        let mut t = TarStream::new(&chain[..]);
        let e = t.next().unwrap_err().to_string();
        assert!(e.contains("extension headers"), "{e}");
    }

    #[test]
    fn pax_records() {
        let r = parse_pax(b"11 path=ab\n19 SCHILY.xattr.k=\n").unwrap();
        assert_eq!(r[0], (b"path".to_vec(), b"ab".to_vec()));
        assert!(parse_pax(b"99 path=ab\n").is_err());
    }
}
