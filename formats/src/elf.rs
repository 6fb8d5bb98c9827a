//! What an ELF program or shared library makes the dynamic loader read next: its interpreter
//! (`PT_INTERP`) and the libraries it names (`DT_NEEDED`), with their search path
//! (`DT_RUNPATH`, else `DT_RPATH`).
//!
//! Pure, in three steps, each on bytes the caller reads: [`program`] takes the file's first
//! [`HEAD`] bytes and says where the interpreter's path and the dynamic section are;
//! [`Program::dynamic`] takes the dynamic section and says where its string table is;
//! [`Dynamic::names`] takes the string table. The structures are read with `object`'s ELF
//! types (32 and 64 bit, either byte order). A file is hostile: every count and size has a
//! bound, and a file that breaks one yields an error or fewer names, never a big allocation.

use std::ops::Range;

use object::elf::{FileHeader32, FileHeader64, DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH};
use object::elf::{DT_STRSZ, DT_STRTAB, PT_DYNAMIC, PT_INTERP, PT_LOAD};
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _};
use object::Endianness;

/// The first bytes of every ELF file.
pub const MAGIC: [u8; 4] = object::elf::ELFMAG;
/// Bytes from the start of a file that must hold its ELF header and program headers.
pub const HEAD: u64 = 4096;
/// The most program headers read (a real program has about a dozen).
pub const MAX_PROGRAM_HEADERS: usize = 64;
/// The longest dynamic section read (a real one is under 1 KiB).
pub const MAX_DYNAMIC: u64 = 16 << 10;
/// The longest string table read (`python3.11`'s is about 150 KiB).
pub const MAX_STRINGS: u64 = 2 << 20;
/// The most libraries taken from one file.
pub const MAX_NEEDED: usize = 64;
/// The longest path (the interpreter's, a search path) or library name taken.
pub const MAX_NAME: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("not an ELF file")]
    NotElf,
    #[error("ELF header: {0}")]
    Header(object::Error),
    #[error("ELF class {0} (neither 32 nor 64 bit)")]
    Class(u8),
    #[error("{0} program headers (at most {MAX_PROGRAM_HEADERS})")]
    TooManyHeaders(usize),
}

/// A `PT_LOAD` segment: where its bytes are in memory and in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    vaddr: u64,
    offset: u64,
    filesz: u64,
}

/// What the program headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The file's bytes that hold the interpreter's path (`PT_INTERP`), at most [`MAX_NAME`].
    pub interp: Option<Range<u64>>,
    /// The file's bytes of the dynamic section (`PT_DYNAMIC`), at most [`MAX_DYNAMIC`].
    pub dynamic: Option<Range<u64>>,
    /// `e_machine`: the CPU (`EM_X86_64` is 62).
    pub machine: u16,
    loads: Vec<Load>,
    is_64: bool,
    endian: Endianness,
}

/// What the dynamic section says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// The file's bytes of the string table, at most [`MAX_STRINGS`].
    pub strings: Option<Range<u64>>,
    /// Offsets into the string table: the needed libraries, then the search path.
    needed: Vec<u64>,
    search: Option<u64>,
}

/// The libraries a file names and where it says to look for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// `DT_NEEDED`, in the file's order (a name, or a path when it holds a `/`).
    pub needed: Vec<String>,
    /// `DT_RUNPATH` (else `DT_RPATH`), split at `:`; may hold `$ORIGIN`.
    pub search: Vec<String>,
}

/// The program headers of a file whose first bytes are `head` (at least its first [`HEAD`]
/// bytes, or the whole file when it is shorter).
pub fn program(head: &[u8]) -> Result<Program, Error> {
    if !head.starts_with(&MAGIC) {
        return Err(Error::NotElf);
    }
    // e_ident[EI_CLASS]
    match head.get(4) {
        Some(&object::elf::ELFCLASS64) => program_of::<FileHeader64<Endianness>>(head, true),
        Some(&object::elf::ELFCLASS32) => program_of::<FileHeader32<Endianness>>(head, false),
        c => Err(Error::Class(c.copied().unwrap_or(0))),
    }
}

fn program_of<Elf: FileHeader<Endian = Endianness>>(
    head: &[u8],
    is_64: bool,
) -> Result<Program, Error> {
    let header = Elf::parse(head).map_err(Error::Header)?;
    let endian = header.endian().map_err(Error::Header)?;
    let count = header.phnum(endian, head).map_err(Error::Header)?;
    if count > MAX_PROGRAM_HEADERS {
        return Err(Error::TooManyHeaders(count));
    }
    let headers = header
        .program_headers(endian, head)
        .map_err(Error::Header)?;
    let mut p = Program {
        interp: None,
        dynamic: None,
        machine: header.e_machine(endian),
        loads: Vec::new(),
        is_64,
        endian,
    };
    for h in headers {
        let (offset, filesz) = (h.p_offset(endian).into(), h.p_filesz(endian).into());
        let range = |max: u64| Some(offset..offset.checked_add(filesz.min(max))?);
        match h.p_type(endian) {
            PT_INTERP => p.interp = p.interp.or(range(MAX_NAME as u64)),
            PT_DYNAMIC => p.dynamic = p.dynamic.or(range(MAX_DYNAMIC)),
            PT_LOAD => p.loads.push(Load {
                vaddr: h.p_vaddr(endian).into(),
                offset,
                filesz,
            }),
            _ => {}
        }
    }
    Ok(p)
}

impl Program {
    /// What the dynamic section (the bytes of [`Program::dynamic`]) says; entries past the
    /// bytes given, or past `DT_NULL`, are not read.
    pub fn dynamic(&self, bytes: &[u8]) -> Dynamic {
        if self.is_64 {
            self.dynamic_of::<FileHeader64<Endianness>>(bytes)
        } else {
            self.dynamic_of::<FileHeader32<Endianness>>(bytes)
        }
    }

    fn dynamic_of<Elf: FileHeader<Endian = Endianness>>(&self, bytes: &[u8]) -> Dynamic {
        let count = bytes.len() / std::mem::size_of::<Elf::Dyn>();
        let Ok((entries, _)) = object::pod::slice_from_bytes::<Elf::Dyn>(bytes, count) else {
            return Dynamic::default();
        };
        let (mut d, mut table, mut size, mut runpath, mut rpath) =
            (Dynamic::default(), None, None, None, None);
        for e in entries {
            let value: u64 = e.d_val(self.endian).into();
            match e.tag32(self.endian) {
                Some(DT_NULL) => break,
                Some(DT_NEEDED) if d.needed.len() < MAX_NEEDED => d.needed.push(value),
                Some(DT_STRTAB) => table = Some(value),
                Some(DT_STRSZ) => size = Some(value),
                Some(DT_RUNPATH) => runpath = Some(value),
                Some(DT_RPATH) => rpath = Some(value),
                _ => {}
            }
        }
        d.search = runpath.or(rpath);
        d.strings = table.zip(size).and_then(|(vaddr, size)| {
            let size = size.min(MAX_STRINGS);
            let at = self.file_offset(vaddr, size)?;
            Some(at..at + size)
        });
        d
    }

    /// Where the `len` bytes at `vaddr` are in the file, if one load segment holds them all.
    fn file_offset(&self, vaddr: u64, len: u64) -> Option<u64> {
        self.loads.iter().find_map(|l| {
            let into = vaddr.checked_sub(l.vaddr)?;
            (into.checked_add(len)? <= l.filesz).then_some(l.offset.checked_add(into)?)
        })
    }
}

impl Dynamic {
    /// The names, from the bytes of [`Dynamic::strings`]. A name that is not in them, not
    /// UTF-8, empty or longer than [`MAX_NAME`] is left out.
    pub fn names(&self, strings: &[u8]) -> Names {
        let name = |at: u64| -> Option<String> {
            let rest = strings.get(usize::try_from(at).ok()?..)?;
            let end = rest.iter().take(MAX_NAME + 1).position(|&b| b == 0)?;
            let s = std::str::from_utf8(&rest[..end]).ok()?;
            (!s.is_empty()).then(|| s.to_owned())
        };
        Names {
            needed: self.needed.iter().filter_map(|&at| name(at)).collect(),
            search: self
                .search
                .and_then(name)
                .map(|s| {
                    s.split(':')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The interpreter's path from the bytes of [`Program::interp`] (NUL-terminated).
pub fn interpreter(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end])
        .ok()
        .filter(|s| !s.is_empty())
}

/// The Debian multiarch triplet of an ELF machine (where Debian and Ubuntu put its libraries:
/// `/usr/lib/TRIPLET`).
pub fn multiarch(machine: u16) -> Option<&'static str> {
    use object::elf::*;
    Some(match machine {
        EM_X86_64 => "x86_64-linux-gnu",
        EM_AARCH64 => "aarch64-linux-gnu",
        EM_386 => "i386-linux-gnu",
        EM_ARM => "arm-linux-gnueabihf",
        EM_PPC64 => "powerpc64le-linux-gnu",
        EM_S390 => "s390x-linux-gnu",
        EM_RISCV => "riscv64-linux-gnu",
        _ => return None,
    })
}

/// A small x86-64 ELF file (little-endian, 64 bit) as a linker lays one out: its header,
/// three program headers (interpreter, one load segment, dynamic), the interpreter's path, a
/// string table and a dynamic section naming `needed` and `runpath`. For tests and fuzz seeds.
#[cfg(any(test, feature = "testing"))]
pub fn sample(interp: &str, needed: &[&str], runpath: Option<&str>) -> Vec<u8> {
    let interp = [interp.as_bytes(), b"\0"].concat();
    let mut strings = vec![0u8];
    let at = |s: &str, strings: &mut Vec<u8>| {
        let o = strings.len() as u64;
        strings.extend_from_slice(s.as_bytes());
        strings.push(0);
        o
    };
    let needed: Vec<u64> = needed.iter().map(|n| at(n, &mut strings)).collect();
    let runpath = runpath.map(|r| at(r, &mut strings));
    let (phoff, phnum) = (64u64, 3u64);
    let interp_at = phoff + 56 * phnum;
    let strings_at = interp_at + interp.len() as u64;
    let dynamic_at = (strings_at + strings.len() as u64).next_multiple_of(8);
    let vaddr = 0x40_0000u64; // the file is loaded at this address
    let mut dynamic = Vec::new();
    let mut entry = |tag: u32, val: u64| {
        dynamic.extend_from_slice(&(tag as u64).to_le_bytes());
        dynamic.extend_from_slice(&val.to_le_bytes());
    };
    for n in &needed {
        entry(DT_NEEDED, *n);
    }
    if let Some(r) = runpath {
        entry(DT_RUNPATH, r);
    }
    entry(DT_STRTAB, vaddr + strings_at);
    entry(DT_STRSZ, strings.len() as u64);
    entry(DT_NULL, 0);
    let end = dynamic_at + dynamic.len() as u64;

    let mut f = Vec::new();
    f.extend_from_slice(&object::elf::ELFMAG);
    f.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V
    f.resize(16, 0);
    f.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    f.extend_from_slice(&62u16.to_le_bytes()); // x86-64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // entry
    f.extend_from_slice(&phoff.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    f.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, phnum as u16, 64, 0, 0] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    let mut ph = |kind: u32, offset: u64, size: u64| {
        f.extend_from_slice(&kind.to_le_bytes());
        f.extend_from_slice(&4u32.to_le_bytes());
        for v in [offset, vaddr + offset, vaddr + offset, size, size, 8] {
            f.extend_from_slice(&v.to_le_bytes());
        }
    };
    ph(PT_INTERP, interp_at, interp.len() as u64);
    ph(PT_LOAD, 0, end);
    ph(PT_DYNAMIC, dynamic_at, dynamic.len() as u64);
    f.extend_from_slice(&interp);
    f.extend_from_slice(&strings);
    f.resize(dynamic_at as usize, 0);
    f.extend_from_slice(&dynamic);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const LD: &str = "/lib64/ld-linux-x86-64.so.2";

    fn names_of(f: &[u8]) -> (Option<String>, Names) {
        let p = program(&f[..f.len().min(HEAD as usize)]).expect("program headers");
        let interp = p
            .interp
            .clone()
            .and_then(|r| interpreter(&f[r.start as usize..r.end as usize]).map(str::to_owned));
        let r = p.dynamic.clone().expect("a dynamic section");
        let d = p.dynamic(&f[r.start as usize..r.end as usize]);
        let s = d.strings.clone().expect("a string table");
        (interp, d.names(&f[s.start as usize..s.end as usize]))
    }

    #[test]
    fn the_interpreter_libraries_and_runpath_are_read_in_three_steps() {
        let f = sample(
            LD,
            &["libm.so.6", "libc.so.6"],
            Some("$ORIGIN/../lib:/opt/x"),
        );
        let (interp, names) = names_of(&f);
        assert_eq!(interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(names.needed, ["libm.so.6", "libc.so.6"]);
        assert_eq!(names.search, ["$ORIGIN/../lib", "/opt/x"]);
    }

    #[test]
    fn a_real_program_the_test_itself_names_its_loader_and_libc() {
        let f = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let (interp, names) = names_of(&f);
        assert!(interp.is_some_and(|i| i.contains("ld-linux")), "{names:?}");
        assert!(
            names.needed.iter().any(|n| n.starts_with("libc.so")),
            "{names:?}"
        );
    }

    #[test]
    fn what_is_not_an_elf_file_or_is_cut_short_is_an_error() {
        assert_eq!(program(b"#!/bin/sh\n"), Err(Error::NotElf));
        let f = sample(LD, &["libc.so.6"], None);
        assert!(matches!(program(&f[..70]), Err(Error::Header(_))));
        let mut bad = f.clone();
        bad[4] = 9; // no such class
        assert!(program(&bad).is_err());
    }

    #[test]
    fn counts_and_sizes_from_the_file_are_bounded() {
        let many: Vec<String> = (0..200).map(|i| format!("lib{i}.so")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let f = sample(LD, &many, None);
        let p = program(&f).unwrap();
        let r = p.dynamic.clone().unwrap();
        assert!(r.end - r.start <= MAX_DYNAMIC);
        let d = p.dynamic(&f[r.start as usize..r.end as usize]);
        let s = d.strings.clone().unwrap();
        assert_eq!(
            d.names(&f[s.start as usize..s.end as usize]).needed.len(),
            MAX_NEEDED
        );
        // a string table said to be past the file's loaded bytes is not read
        let mut d = d;
        d.strings = None;
        assert_eq!(p.file_offset(u64::MAX - 1, 8), None);
        // names past the bytes given, or without their NUL, are left out
        assert!(d.names(b"libc.so.6").needed.is_empty());
        // too many program headers
        let mut f = sample(LD, &["libc.so.6"], None);
        f[56..58].copy_from_slice(&1000u16.to_le_bytes());
        assert!(program(&f).is_err());
    }
}
