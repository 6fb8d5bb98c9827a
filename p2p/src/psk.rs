//! Kubo-format swarm key: the pre-shared key (PSK v1) of a libp2p private network.
//!
//! A swarm key file has three lines, each ending in `\n` or `\r\n`:
//!
//! ```text
//! /key/swarm/psk/1.0.0/
//! /base16/
//! 6189c5cf0b87fb800c1a9feeda73c6ab5e998db48fb9e6a978575c770ceef683
//! ```
//!
//! The second line names the encoding of the key: `/base16/` (64 hex digits, either case),
//! `/base64/` (standard alphabet, padded) or `/bin/` (the 32 raw bytes follow the encoding line).
//! The key must decode to exactly 32 bytes. Trailing whitespace after any text line and blank lines
//! after the key are accepted; anything else after the key is an error. (go-libp2p reads 32 bytes
//! and ignores the rest; we are stricter so that a damaged file is noticed.)
//!
//! [`SwarmKey`] never prints the key itself: its `Debug` shows the kubo fingerprint, which is what
//! kubo logs as `Swarm key fingerprint: <hex>`, so two nodes can compare keys without revealing them.
//! [`parse_bytes`](SwarmKey::parse_bytes) is pure; reading the file is the caller's job.

use std::fmt;

use base64::Engine as _;
use libp2p::pnet::PreSharedKey;
use rand::RngCore as _;

/// Size of a swarm key in bytes.
pub const KEY_SIZE: usize = 32;

/// First line of every PSK v1 swarm key file.
pub const HEADER: &str = "/key/swarm/psk/1.0.0/";

const BASE16: &str = "/base16/";
const BASE64: &str = "/base64/";
const BIN: &str = "/bin/";

/// Longest piece of an offending line echoed in an error message.
const MAX_ECHO: usize = 40;

/// The 32-byte pre-shared key of a private swarm.
#[derive(Clone, PartialEq, Eq)]
pub struct SwarmKey([u8; KEY_SIZE]);

/// Why a swarm key file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskError {
    /// The file holds nothing but whitespace.
    #[error("swarm key is empty")]
    Empty,
    /// The first line is not a header at all (for example the file starts with the key).
    #[error("swarm key has no header: the first line must be `{HEADER}`")]
    MissingHeader,
    /// The first line looks like a header but names another key type or version.
    #[error("swarm key has unsupported header `{found}`: the first line must be `{HEADER}`")]
    WrongHeader {
        /// The first line, shortened.
        found: String,
    },
    /// The file ends after the header.
    #[error("swarm key ends after the header: the second line must be `/base16/`, `/base64/` or `/bin/`")]
    MissingEncoding,
    /// The second line is not one of the known encodings.
    #[error("swarm key has unknown encoding `{found}`: the second line must be `/base16/`, `/base64/` or `/bin/`")]
    UnknownEncoding {
        /// The second line, shortened.
        found: String,
    },
    /// The file ends after the encoding line.
    #[error("swarm key has no key after the `{encoding}` line")]
    MissingKey {
        /// The encoding line.
        encoding: &'static str,
    },
    /// The `/base16/` key is not valid hex.
    #[error("swarm key is not valid base16: {reason}")]
    BadHex {
        /// What the hex decoder reported.
        reason: String,
    },
    /// The `/base64/` key is not valid standard base64.
    #[error("swarm key is not valid base64: {reason}")]
    BadBase64 {
        /// What the base64 decoder reported.
        reason: String,
    },
    /// The key decoded fine but has the wrong size.
    #[error("swarm key is {len} bytes after {encoding} decoding, expected {KEY_SIZE}")]
    WrongLength {
        /// The encoding line.
        encoding: &'static str,
        /// Number of decoded bytes.
        len: usize,
    },
    /// Something other than whitespace follows the key line.
    #[error("swarm key has extra content after the key line")]
    TrailingData,
    /// A text line of the file is not UTF-8.
    #[error("swarm key line {line} is not valid UTF-8 text")]
    NotText {
        /// 1-based line number.
        line: usize,
    },
}

impl SwarmKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_SIZE]) -> SwarmKey {
        SwarmKey(bytes)
    }

    /// Parses a swarm key file given as text (`/base16/` or `/base64/`; `/bin/` keys are
    /// rarely valid UTF-8, read those with [`parse_bytes`](Self::parse_bytes)).
    pub fn parse(text: &str) -> Result<SwarmKey, PskError> {
        SwarmKey::parse_bytes(text.as_bytes())
    }

    /// Parses the bytes of a swarm key file in any of the three encodings.
    pub fn parse_bytes(data: &[u8]) -> Result<SwarmKey, PskError> {
        if data.iter().all(u8::is_ascii_whitespace) {
            return Err(PskError::Empty);
        }
        let (header, rest) = split_line(data);
        let header = text_line(header, 1)?;
        if header != HEADER {
            return Err(
                if header.starts_with('/') && encoding_of(header).is_none() {
                    PskError::WrongHeader {
                        found: shorten(header),
                    }
                } else {
                    // An encoding line or key material where the header belongs. The line is not
                    // echoed: it may be the key itself.
                    PskError::MissingHeader
                },
            );
        }
        let Some(rest) = rest else {
            return Err(PskError::MissingEncoding);
        };
        let (encoding, rest) = split_line(rest);
        let encoding = text_line(encoding, 2)?;
        if encoding.is_empty() {
            return Err(PskError::MissingEncoding);
        }
        let Some(encoding) = encoding_of(encoding) else {
            return Err(PskError::UnknownEncoding {
                found: shorten(encoding),
            });
        };
        let rest = rest.unwrap_or_default();
        if rest.iter().all(u8::is_ascii_whitespace) && (encoding != BIN || rest.is_empty()) {
            return Err(PskError::MissingKey { encoding });
        }
        let decoded = if encoding == BIN {
            decode_bin(rest)?
        } else {
            let (key, tail) = split_line(rest);
            if !tail.unwrap_or_default().iter().all(u8::is_ascii_whitespace) {
                return Err(PskError::TrailingData);
            }
            let key = text_line(key, 3)?;
            if encoding == BASE16 {
                hex::decode(key).map_err(|e| PskError::BadHex {
                    reason: e.to_string(),
                })?
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(key)
                    .map_err(|e| PskError::BadBase64 {
                        reason: e.to_string(),
                    })?
            }
        };
        let len = decoded.len();
        let bytes: [u8; KEY_SIZE] = decoded
            .try_into()
            .map_err(|_| PskError::WrongLength { encoding, len })?;
        Ok(SwarmKey(bytes))
    }

    /// A new random key from the thread-local CSPRNG (seeded from the OS).
    pub fn generate() -> SwarmKey {
        let mut bytes = [0u8; KEY_SIZE];
        rand::rng().fill_bytes(&mut bytes);
        SwarmKey(bytes)
    }

    /// The raw key. Handle with care: this is the network's secret.
    pub fn bytes(&self) -> [u8; KEY_SIZE] {
        self.0
    }

    /// Kubo's fingerprint of the key as 32 lowercase hex digits (safe to log).
    pub fn fingerprint(&self) -> String {
        self.pre_shared_key().fingerprint().to_string()
    }

    /// The key in the form the libp2p pnet transport takes.
    pub fn pre_shared_key(&self) -> PreSharedKey {
        PreSharedKey::new(self.0)
    }

    /// The file form kubo's tools write: header, `/base16/`, lowercase hex, trailing newline.
    pub fn to_file_string(&self) -> String {
        format!("{HEADER}\n{BASE16}\n{}\n", hex::encode(self.0))
    }
}

impl fmt::Debug for SwarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwarmKey")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Splits off the first line; the line loses its `\n` but keeps any `\r` (see [`text_line`]).
/// The rest is `None` when there was no newline.
fn split_line(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}

/// A text line without its `\r` and surrounding whitespace.
fn text_line(line: &[u8], number: usize) -> Result<&str, PskError> {
    std::str::from_utf8(line)
        .map(str::trim)
        .map_err(|_| PskError::NotText { line: number })
}

fn encoding_of(line: &str) -> Option<&'static str> {
    [BASE16, BASE64, BIN].into_iter().find(|&e| e == line)
}

/// `/bin/`: the key is the next 32 raw bytes; only whitespace may follow them.
fn decode_bin(rest: &[u8]) -> Result<Vec<u8>, PskError> {
    let too_short = || PskError::WrongLength {
        encoding: BIN,
        len: rest.len(),
    };
    let key = rest.get(..KEY_SIZE).ok_or_else(too_short)?;
    let tail = rest.get(KEY_SIZE..).unwrap_or_default();
    if !tail.iter().all(u8::is_ascii_whitespace) {
        return Err(too_short());
    }
    Ok(key.to_vec())
}

fn shorten(line: &str) -> String {
    match line.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_HEX: &str = "6189c5cf0b87fb800c1a9feeda73c6ab5e998db48fb9e6a978575c770ceef683";
    const VECTOR_FINGERPRINT: &str = "45fc986bbc9388a11d939df26f730f0c";

    fn vector() -> [u8; KEY_SIZE] {
        let mut key = [0u8; KEY_SIZE];
        hex::decode_to_slice(VECTOR_HEX, &mut key).expect("test vector is hex");
        key
    }

    fn base16_file(key: &str) -> String {
        format!("{HEADER}\n/base16/\n{key}\n")
    }

    #[test]
    fn fingerprint_matches_kubo_vector() {
        let key = SwarmKey::parse(&base16_file(VECTOR_HEX)).expect("valid key");
        assert_eq!(key.bytes(), vector());
        assert_eq!(key.fingerprint(), VECTOR_FINGERPRINT);
    }

    #[test]
    fn base16_accepts_uppercase_crlf_and_trailing_whitespace() {
        let upper = format!("{HEADER}\r\n/base16/\r\n{}\r\n", VECTOR_HEX.to_uppercase());
        assert_eq!(SwarmKey::parse(&upper).expect("crlf").bytes(), vector());
        let padded = format!("{HEADER}  \n/base16/\t\n{VECTOR_HEX}   \n\n  \n");
        assert_eq!(SwarmKey::parse(&padded).expect("padded").bytes(), vector());
        let no_final_newline = format!("{HEADER}\n/base16/\n{VECTOR_HEX}");
        assert_eq!(
            SwarmKey::parse(&no_final_newline)
                .expect("no newline")
                .bytes(),
            vector()
        );
    }

    #[test]
    fn base64_file() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(vector());
        let text = format!("{HEADER}\r\n/base64/\r\n{b64}\r\n");
        assert_eq!(SwarmKey::parse(&text).expect("base64").bytes(), vector());
    }

    #[test]
    fn bin_file_including_newline_bytes_in_key() {
        let mut key = vector();
        key[31] = b'\n';
        key[0] = b'\r';
        for ending in ["\n", "\r\n"] {
            let mut data = format!("{HEADER}{ending}/bin/{ending}").into_bytes();
            data.extend_from_slice(&key);
            assert_eq!(SwarmKey::parse_bytes(&data).expect("bin").bytes(), key);
            data.push(b'\n');
            assert_eq!(SwarmKey::parse_bytes(&data).expect("bin+nl").bytes(), key);
        }
    }

    #[test]
    fn round_trips_through_file_string() {
        let key = SwarmKey::generate();
        let text = key.to_file_string();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 3);
        assert_eq!(text.lines().nth(2), Some(hex::encode(key.bytes()).as_str()));
        assert_eq!(SwarmKey::parse(&text), Ok(key.clone()));
        assert_ne!(SwarmKey::generate(), key);
        // libp2p's own parser agrees with the file we write.
        let theirs: PreSharedKey = text.parse().expect("libp2p parses our file");
        assert_eq!(theirs.fingerprint().to_string(), key.fingerprint());
    }

    #[test]
    fn debug_prints_fingerprint_not_key() {
        let key = SwarmKey::from_bytes(vector());
        let shown = format!("{key:?}");
        assert!(shown.contains(VECTOR_FINGERPRINT), "{shown}");
        assert!(!shown.contains(&VECTOR_HEX[..16]), "{shown}");
    }

    fn err(data: &[u8]) -> PskError {
        SwarmKey::parse_bytes(data).expect_err("must be rejected")
    }

    #[test]
    fn empty_and_header_errors() {
        assert_eq!(err(b""), PskError::Empty);
        assert_eq!(err(b" \r\n\n"), PskError::Empty);
        // Key alone, or encoding line first: header missing, and the key is not echoed.
        let e = err(format!("{VECTOR_HEX}\n").as_bytes());
        assert_eq!(e, PskError::MissingHeader);
        assert!(!e.to_string().contains(VECTOR_HEX));
        assert_eq!(
            err(format!("/base16/\n{VECTOR_HEX}\n").as_bytes()),
            PskError::MissingHeader
        );
        let e = err(format!("/key/swarm/psk/2.0.0/\n/base16/\n{VECTOR_HEX}\n").as_bytes());
        assert_eq!(
            e,
            PskError::WrongHeader {
                found: "/key/swarm/psk/2.0.0/".into()
            }
        );
        assert!(e.to_string().contains("/key/swarm/psk/1.0.0/"), "{e}");
    }

    #[test]
    fn encoding_errors() {
        assert_eq!(err(HEADER.as_bytes()), PskError::MissingEncoding);
        assert_eq!(
            err(format!("{HEADER}\n\n").as_bytes()),
            PskError::MissingEncoding
        );
        let e = err(format!("{HEADER}\n/base32/\nabc\n").as_bytes());
        assert_eq!(
            e,
            PskError::UnknownEncoding {
                found: "/base32/".into()
            }
        );
        assert!(e.to_string().contains("/base32/"), "{e}");
        assert_eq!(
            err(format!("{HEADER}\n/base16/\n").as_bytes()),
            PskError::MissingKey {
                encoding: "/base16/"
            }
        );
        assert_eq!(
            err(format!("{HEADER}\n/bin/\n").as_bytes()),
            PskError::MissingKey { encoding: "/bin/" }
        );
        assert_eq!(
            err(b"/key/swarm/psk/1.0.0/\n\xff\xfe\n"),
            PskError::NotText { line: 2 }
        );
    }

    #[test]
    fn key_errors() {
        let bad_char = VECTOR_HEX.replace('c', "g");
        assert!(matches!(
            err(base16_file(&bad_char).as_bytes()),
            PskError::BadHex { .. }
        ));
        assert!(matches!(
            err(base16_file(&VECTOR_HEX[..63]).as_bytes()),
            PskError::BadHex { .. }
        ));
        let e = err(base16_file(&VECTOR_HEX[..62]).as_bytes());
        assert_eq!(
            e,
            PskError::WrongLength {
                encoding: "/base16/",
                len: 31
            }
        );
        assert!(e.to_string().contains("31 bytes"), "{e}");
        assert_eq!(
            err(base16_file(&format!("{VECTOR_HEX}00")).as_bytes()),
            PskError::WrongLength {
                encoding: "/base16/",
                len: 33
            }
        );
        assert!(matches!(
            err(format!("{HEADER}\n/base64/\n!!!notbase64\n").as_bytes()),
            PskError::BadBase64 { .. }
        ));
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert_eq!(
            err(format!("{HEADER}\n/base64/\n{short}\n").as_bytes()),
            PskError::WrongLength {
                encoding: "/base64/",
                len: 16
            }
        );
        assert_eq!(
            err(format!("{HEADER}\n/base16/\n{VECTOR_HEX}\nmore\n").as_bytes()),
            PskError::TrailingData
        );
        let mut bin = format!("{HEADER}\n/bin/\n").into_bytes();
        bin.extend_from_slice(&[1u8; 20]);
        assert_eq!(
            err(&bin),
            PskError::WrongLength {
                encoding: "/bin/",
                len: 20
            }
        );
        bin.extend_from_slice(&[1u8; 13]);
        assert_eq!(
            err(&bin),
            PskError::WrongLength {
                encoding: "/bin/",
                len: 33
            }
        );
    }
}
