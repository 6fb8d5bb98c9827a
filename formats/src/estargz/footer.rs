//! The eStargz footer: a fixed-size, empty gzip member at the end of the blob whose gzip
//! extra field records where the TOC member starts (REFERENCE §1.4).
//!
//! eStargz footer, [`FOOTER_SIZE`] = 51 bytes:
//!
//! | bytes  | content |
//! |--------|---------|
//! | 0..10  | gzip header `1f 8b 08 04 00000000 00 ff` (CM=deflate, FLG=FEXTRA, OS=255) |
//! | 10..12 | XLEN = 26 (LE) |
//! | 12..16 | subfield id `S` `G`, subfield LEN = 22 (LE) |
//! | 16..38 | `format!("{toc_offset:016x}STARGZ")` |
//! | 38..43 | deflate: empty final stored block `01 00 00 ff ff` |
//! | 43..51 | gzip trailer: CRC32 = 0, ISIZE = 0 |
//!
//! The legacy (google/crfs) footer, [`LEGACY_FOOTER_SIZE`] = 47 bytes, is the same member with
//! XLEN = 22 and the 22 ASCII bytes as the whole extra field (no subfield header).
//!
//! [`parse`] checks the gzip header and extra field only, as the Go reader does
//! (`GzipDecompressor.ParseFooter` reads the header and never inflates the body). Checking that
//! the offset lies inside the blob is the caller's job.

/// Size of the eStargz footer in bytes.
pub const FOOTER_SIZE: usize = 51;
/// Size of the legacy stargz (google/crfs) footer in bytes.
pub const LEGACY_FOOTER_SIZE: usize = 47;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const CM_DEFLATE: u8 = 8;
const FLG_FEXTRA: u8 = 0x04;
/// RFC 1952: bits 5-7 of FLG are reserved and must be zero.
const FLG_RESERVED: u8 = 0xe0;
const OS_UNKNOWN: u8 = 0xff;
const SUBFIELD_ID: [u8; 2] = *b"SG";
const SUFFIX: &[u8; 6] = b"STARGZ";
/// 16 hex digits + "STARGZ".
const PAYLOAD_LEN: usize = 22;
const ESTARGZ_XLEN: usize = 4 + PAYLOAD_LEN;
const LEGACY_XLEN: usize = PAYLOAD_LEN;
/// Empty final stored deflate block, then CRC32 = 0 and ISIZE = 0.
const EMPTY_BODY: [u8; 13] = [0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
const HEADER_LEN: usize = 10;

/// Which footer layout a blob ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FooterKind {
    /// The 51-byte eStargz footer.
    Estargz,
    /// The 47-byte legacy stargz footer.
    Legacy,
}

impl FooterKind {
    /// Length of this footer in bytes; the TOC member ends where the footer starts.
    pub fn size(self) -> usize {
        match self {
            FooterKind::Estargz => FOOTER_SIZE,
            FooterKind::Legacy => LEGACY_FOOTER_SIZE,
        }
    }
}

/// A parsed footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Compressed offset of the TOC member in the blob.
    pub toc_offset: u64,
    /// Which layout was found (gives the footer size).
    pub kind: FooterKind,
}

/// What is wrong with one candidate footer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    #[error("only {have} bytes available, the footer needs {need}")]
    TooShort { have: usize, need: usize },
    #[error("gzip magic is {0:02x?}, expected [1f, 8b]")]
    BadMagic([u8; 2]),
    #[error("gzip compression method is {0}, expected 8 (deflate)")]
    BadMethod(u8),
    #[error("gzip flags {0:#04x} do not have FEXTRA set")]
    NoExtraField(u8),
    #[error("gzip flags {0:#04x} set reserved bits")]
    ReservedFlags(u8),
    #[error("gzip extra field length (XLEN) is {found}, expected {expected}")]
    BadExtraLen { found: usize, expected: usize },
    #[error("extra subfield id is {0:?}, expected \"SG\"")]
    BadSubfieldId([u8; 2]),
    #[error("extra subfield length is {0}, expected 22")]
    BadSubfieldLen(usize),
    #[error("extra data does not end with \"STARGZ\"")]
    BadSuffix,
    #[error("TOC offset {0:?} is not 16 hex digits")]
    BadHex(String),
    #[error("TOC offset {0:#x} does not fit in a signed 64-bit integer")]
    OffsetTooLarge(u64),
}

/// The blob tail carries neither footer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FooterError {
    #[error(
        "blob tail is {0} bytes, shorter than the smallest footer ({LEGACY_FOOTER_SIZE} bytes)"
    )]
    Truncated(usize),
    #[error("no eStargz footer ({estargz}) and no legacy stargz footer ({legacy})")]
    NotFound { estargz: Defect, legacy: Defect },
}

/// Build the 51-byte eStargz footer pointing at `toc_offset`.
pub fn build(toc_offset: u64) -> [u8; FOOTER_SIZE] {
    let mut out = [0u8; FOOTER_SIZE];
    let payload = format!("{toc_offset:016x}STARGZ");
    let parts: [&[u8]; 6] = [
        &[
            GZIP_MAGIC[0],
            GZIP_MAGIC[1],
            CM_DEFLATE,
            FLG_FEXTRA,
            0,
            0,
            0,
            0,
            0,
            OS_UNKNOWN,
        ],
        &(ESTARGZ_XLEN as u16).to_le_bytes(),
        &SUBFIELD_ID,
        &(PAYLOAD_LEN as u16).to_le_bytes(),
        // A u64 never needs more than 16 hex digits, so this is always 22 bytes.
        payload.as_bytes(),
        &EMPTY_BODY,
    ];
    let mut at = 0;
    for part in parts {
        for (dst, src) in out.iter_mut().skip(at).zip(part) {
            *dst = *src;
        }
        at += part.len();
    }
    debug_assert_eq!(at, FOOTER_SIZE);
    out
}

/// Parse the footer from the last bytes of a blob and return the TOC offset.
///
/// `tail` must end where the blob ends; at least [`FOOTER_SIZE`] bytes should be given (47 is
/// enough for a legacy footer). The eStargz footer is tried first, then the legacy one.
pub fn parse(tail: &[u8]) -> Result<u64, FooterError> {
    parse_footer(tail).map(|f| f.toc_offset)
}

/// Like [`parse`], but also say which footer was found, so the caller knows where the TOC
/// member ends (`blob_size - kind.size()`).
pub fn parse_footer(tail: &[u8]) -> Result<Footer, FooterError> {
    if tail.len() < LEGACY_FOOTER_SIZE {
        return Err(FooterError::Truncated(tail.len()));
    }
    let estargz = match last(tail, FOOTER_SIZE).and_then(parse_estargz) {
        Ok(toc_offset) => {
            return Ok(Footer {
                toc_offset,
                kind: FooterKind::Estargz,
            })
        }
        Err(defect) => defect,
    };
    match last(tail, LEGACY_FOOTER_SIZE).and_then(parse_legacy) {
        Ok(toc_offset) => Ok(Footer {
            toc_offset,
            kind: FooterKind::Legacy,
        }),
        Err(legacy) => Err(FooterError::NotFound { estargz, legacy }),
    }
}

/// The last `n` bytes of `tail`.
fn last(tail: &[u8], n: usize) -> Result<&[u8], Defect> {
    tail.len()
        .checked_sub(n)
        .and_then(|start| tail.get(start..))
        .ok_or(Defect::TooShort {
            have: tail.len(),
            need: n,
        })
}

/// Check the 10-byte gzip header and XLEN; return the extra field of length `xlen`.
fn extra_field(footer: &[u8], xlen: usize) -> Result<&[u8], Defect> {
    let too_short = Defect::TooShort {
        have: footer.len(),
        need: HEADER_LEN + 2 + xlen,
    };
    let (header, rest) = footer
        .split_at_checked(HEADER_LEN)
        .ok_or(too_short.clone())?;
    let &[m0, m1, cm, flg, ..] = header else {
        return Err(too_short);
    };
    if [m0, m1] != GZIP_MAGIC {
        return Err(Defect::BadMagic([m0, m1]));
    }
    if cm != CM_DEFLATE {
        return Err(Defect::BadMethod(cm));
    }
    if flg & FLG_RESERVED != 0 {
        return Err(Defect::ReservedFlags(flg));
    }
    if flg & FLG_FEXTRA == 0 {
        return Err(Defect::NoExtraField(flg));
    }
    let (len, rest) = rest.split_at_checked(2).ok_or(too_short.clone())?;
    let found = match len {
        &[lo, hi] => usize::from(u16::from_le_bytes([lo, hi])),
        _ => return Err(too_short),
    };
    if found != xlen {
        return Err(Defect::BadExtraLen {
            found,
            expected: xlen,
        });
    }
    rest.get(..xlen).ok_or(too_short)
}

fn parse_estargz(footer: &[u8]) -> Result<u64, Defect> {
    let extra = extra_field(footer, ESTARGZ_XLEN)?;
    let (head, payload) = extra.split_at_checked(4).ok_or(Defect::TooShort {
        have: footer.len(),
        need: FOOTER_SIZE,
    })?;
    let &[si1, si2, l0, l1] = head else {
        return Err(Defect::BadSubfieldLen(head.len()));
    };
    if [si1, si2] != SUBFIELD_ID {
        return Err(Defect::BadSubfieldId([si1, si2]));
    }
    let len = usize::from(u16::from_le_bytes([l0, l1]));
    if len != PAYLOAD_LEN {
        return Err(Defect::BadSubfieldLen(len));
    }
    parse_payload(payload)
}

fn parse_legacy(footer: &[u8]) -> Result<u64, Defect> {
    parse_payload(extra_field(footer, LEGACY_XLEN)?)
}

/// Parse `%016x` + "STARGZ".
fn parse_payload(payload: &[u8]) -> Result<u64, Defect> {
    let (digits, suffix) = payload.split_at_checked(16).ok_or(Defect::BadSuffix)?;
    if suffix != SUFFIX {
        return Err(Defect::BadSuffix);
    }
    let bad_hex = || Defect::BadHex(String::from_utf8_lossy(digits).into_owned());
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad_hex());
    }
    let text = std::str::from_utf8(digits).map_err(|_| bad_hex())?;
    let offset = u64::from_str_radix(text, 16).map_err(|_| bad_hex())?;
    // Go parses the offset with strconv.ParseInt(.., 16, 64).
    if offset > i64::MAX as u64 {
        return Err(Defect::OffsetTooLarge(offset));
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_0X1234: &str = "1f8b08040000000000ff1a00534716003030303030303030303030303132333453544152475a010000ffff0000000000000000";

    fn legacy(toc_offset: u64) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 22, 0];
        out.extend_from_slice(format!("{toc_offset:016x}STARGZ").as_bytes());
        out.extend_from_slice(&EMPTY_BODY);
        assert_eq!(out.len(), LEGACY_FOOTER_SIZE);
        out
    }

    fn err(tail: &[u8]) -> (Defect, Defect) {
        match parse(tail) {
            Err(FooterError::NotFound { estargz, legacy }) => (estargz, legacy),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    fn build_matches_verified_vector() {
        assert_eq!(hex::encode(build(0x1234)), VECTOR_0X1234);
    }

    #[test]
    fn round_trip() {
        for off in [0, 1, 0x1234, u64::from(u32::MAX) + 5, i64::MAX as u64] {
            let f = build(off);
            assert_eq!(parse(&f), Ok(off));
            // Extra leading bytes (a longer read of the blob tail) are fine.
            let mut longer = vec![0xaa; 100];
            longer.extend_from_slice(&f);
            assert_eq!(
                parse_footer(&longer),
                Ok(Footer {
                    toc_offset: off,
                    kind: FooterKind::Estargz
                })
            );
        }
    }

    #[test]
    fn legacy_round_trip() {
        for off in [0, 1, u64::from(u32::MAX) + 5] {
            let f = legacy(off);
            assert_eq!(
                parse_footer(&f),
                Ok(Footer {
                    toc_offset: off,
                    kind: FooterKind::Legacy
                })
            );
            // Preceded by blob bytes, as when the last 51 bytes are read.
            let mut tail = vec![0u8; 4];
            tail.extend_from_slice(&f);
            assert_eq!(tail.len(), FOOTER_SIZE);
            assert_eq!(parse(&tail), Ok(off));
            assert_eq!(FooterKind::Legacy.size(), LEGACY_FOOTER_SIZE);
        }
    }

    #[test]
    fn uppercase_hex_accepted() {
        let mut f = build(0xabcdef);
        for b in f.iter_mut().skip(16).take(16) {
            *b = b.to_ascii_uppercase();
        }
        assert_eq!(parse(&f), Ok(0xabcdef));
    }

    #[test]
    fn truncated() {
        let f = build(7);
        assert_eq!(parse(&f[..46]), Err(FooterError::Truncated(46)));
        assert_eq!(parse(&[]), Err(FooterError::Truncated(0)));
        // 47..51 bytes of an eStargz footer: too short for it, and not a legacy footer.
        let (estargz, _) = err(&f[4..]);
        assert_eq!(estargz, Defect::TooShort { have: 47, need: 51 });
        let (estargz, legacy) = err(&f[..50]);
        assert_eq!(estargz, Defect::TooShort { have: 50, need: 51 });
        assert!(matches!(legacy, Defect::BadMagic(_)), "{legacy:?}");
    }

    #[test]
    fn bad_magic_and_header() {
        let mut f = build(7);
        f[0] = 0x1e;
        assert_eq!(err(&f).0, Defect::BadMagic([0x1e, 0x8b]));

        let mut f = build(7);
        f[2] = 7;
        assert_eq!(err(&f).0, Defect::BadMethod(7));

        let mut f = build(7);
        f[3] = 0;
        assert_eq!(err(&f).0, Defect::NoExtraField(0));

        let mut f = build(7);
        f[3] = 0x24;
        assert_eq!(err(&f).0, Defect::ReservedFlags(0x24));

        let mut f = build(7);
        f[10] = 25;
        assert_eq!(
            err(&f).0,
            Defect::BadExtraLen {
                found: 25,
                expected: 26
            }
        );
    }

    #[test]
    fn wrong_subfield() {
        let mut f = build(7);
        f[12] = b'X';
        assert_eq!(err(&f).0, Defect::BadSubfieldId([b'X', b'G']));

        let mut f = build(7);
        f[14] = 21;
        assert_eq!(err(&f).0, Defect::BadSubfieldLen(21));

        let mut f = build(7);
        f[37] = b'z';
        assert_eq!(err(&f).0, Defect::BadSuffix);
    }

    #[test]
    fn non_hex_digits() {
        let mut f = build(7);
        f[20] = b'g';
        assert!(matches!(err(&f).0, Defect::BadHex(_)));
        let mut f = build(7);
        f[16] = b'-';
        assert!(matches!(err(&f).0, Defect::BadHex(_)));
        let mut l = legacy(7);
        l[12] = b' ';
        assert!(matches!(err(&l).1, Defect::BadHex(_)));
    }

    #[test]
    fn offset_beyond_i64_rejected() {
        let f = build(u64::MAX);
        assert_eq!(err(&f).0, Defect::OffsetTooLarge(u64::MAX));
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let mut f = build(7);
        f[12] = b'X';
        let msg = parse(&f).map(|_| ()).unwrap_err().to_string();
        assert!(msg.contains("subfield id"), "{msg}");
    }
}
