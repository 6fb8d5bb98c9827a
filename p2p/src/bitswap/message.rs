//! Bitswap wire messages (REFERENCE §4) and their domain form.
//!
//! The protobuf schema is small, so it is encoded by hand and decoded with quick-protobuf's
//! bounds-checked reader; no generated code. Decoding is pure and never panics on peer input:
//! every block payload is hashed with its CID prefix, so a [`Block`] always carries the CID its
//! bytes really have. A peer cannot label bytes with a CID they do not hash to.

use bytes::Bytes;
use cid::{multihash::Multihash, Cid};
use quick_protobuf::BytesReader;
use sha2::{Digest, Sha256};

/// Largest CID accepted in a wantlist entry or presence (boxo's `MaximumAllowedCid`).
pub const MAX_CID_LEN: usize = 168;
use crate::codes::{DAG_PB, IDENTITY, SHA2_256};

/// What a wantlist entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WantType {
    /// Send the block.
    Block,
    /// Say whether you have the block.
    Have,
}

/// Answer to a want-have (or a want-block with `send_dont_have`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Have,
    DontHave,
}

/// One wantlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub cid: Cid,
    pub priority: i32,
    pub cancel: bool,
    pub want_type: WantType,
    pub send_dont_have: bool,
}

impl Want {
    pub fn block(cid: Cid) -> Self {
        Want {
            cid,
            priority: 1,
            cancel: false,
            want_type: WantType::Block,
            send_dont_have: true,
        }
    }
    pub fn have(cid: Cid) -> Self {
        Want {
            want_type: WantType::Have,
            ..Want::block(cid)
        }
    }
    pub fn cancel(cid: Cid) -> Self {
        Want {
            cancel: true,
            send_dont_have: false,
            ..Want::block(cid)
        }
    }
}

/// A block whose CID was computed from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub cid: Cid,
    pub data: Bytes,
}

/// A whole bitswap message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// `true` replaces the receiver's copy of our wantlist instead of adding to it.
    pub full: bool,
    pub wants: Vec<Want>,
    pub blocks: Vec<Block>,
    pub presences: Vec<(Cid, Presence)>,
    pub pending_bytes: i32,
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed protobuf: {0}")]
    Protobuf(#[from] quick_protobuf::Error),
    #[error("invalid CID in {field}: {reason}")]
    Cid { field: &'static str, reason: String },
    #[error("CID of {len} bytes in {field} exceeds the {MAX_CID_LEN}-byte limit")]
    CidTooLong { field: &'static str, len: usize },
    #[error("invalid block prefix: {0}")]
    Prefix(String),
    #[error("block hashed with unsupported multihash code {0:#x}")]
    UnsupportedHash(u64),
}

impl Message {
    pub fn is_empty(&self) -> bool {
        self.wants.is_empty() && self.blocks.is_empty() && self.presences.is_empty() && !self.full
    }

    /// Approximate encoded size, used to batch messages under the size limits.
    pub fn approx_size(&self) -> usize {
        self.blocks.iter().map(|b| b.data.len() + 16).sum::<usize>()
            + (self.wants.len() + self.presences.len()) * 48
    }

    /// Appends `other` to `self` (used to coalesce queued messages).
    pub fn merge(&mut self, other: Message) {
        self.full |= other.full;
        self.wants.extend(other.wants);
        self.blocks.extend(other.blocks);
        self.presences.extend(other.presences);
        self.pending_bytes = other.pending_bytes;
    }

    /// Encodes for bitswap 1.1.0/1.2.0 (blocks as `payload` with CID prefix).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_parts().concat()
    }

    /// [`Message::encode`] as pieces that follow each other: each block's data is a piece of
    /// its own, the block's own bytes (not a copy), between the fields around it.
    pub fn encode_parts(&self) -> Vec<Bytes> {
        let mut parts = Vec::with_capacity(2 * self.blocks.len() + 2);
        let mut out = Vec::with_capacity(64);
        if !self.wants.is_empty() || self.full {
            let mut wl = Vec::with_capacity(self.wants.len() * 48);
            for w in &self.wants {
                let mut e = Vec::with_capacity(48);
                put_bytes(&mut e, 1, &w.cid.to_bytes());
                if w.priority != 0 {
                    put_varint_field(&mut e, 2, w.priority as i64 as u64);
                }
                if w.cancel {
                    put_varint_field(&mut e, 3, 1);
                }
                if w.want_type == WantType::Have {
                    put_varint_field(&mut e, 4, 1);
                }
                if w.send_dont_have {
                    put_varint_field(&mut e, 5, 1);
                }
                put_bytes(&mut wl, 1, &e);
            }
            if self.full {
                put_varint_field(&mut wl, 2, 1);
            }
            put_bytes(&mut out, 1, &wl);
        }
        for b in &self.blocks {
            let prefix = prefix_bytes(&b.cid);
            let mut head = Vec::with_capacity(prefix.len() + 16);
            put_bytes(&mut head, 1, &prefix);
            put_uvarint(&mut head, 2 << 3 | 2);
            put_uvarint(&mut head, b.data.len() as u64);
            put_uvarint(&mut out, 3 << 3 | 2);
            put_uvarint(&mut out, (head.len() + b.data.len()) as u64);
            out.extend_from_slice(&head);
            parts.push(Bytes::from(std::mem::take(&mut out)));
            parts.push(b.data.clone());
        }
        for (cid, p) in &self.presences {
            let mut bp = Vec::with_capacity(48);
            put_bytes(&mut bp, 1, &cid.to_bytes());
            if *p == Presence::DontHave {
                put_varint_field(&mut bp, 2, 1);
            }
            put_bytes(&mut out, 4, &bp);
        }
        if self.pending_bytes != 0 {
            put_varint_field(&mut out, 5, self.pending_bytes as i64 as u64);
        }
        if !out.is_empty() {
            parts.push(Bytes::from(out));
        }
        parts
    }

    /// Decodes any bitswap version's message; unknown fields are skipped.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        Message::decode_bytes(Bytes::copy_from_slice(buf))
    }

    /// Like [`Message::decode`], with block data sharing `whole`'s allocation.
    pub fn decode_bytes(whole: Bytes) -> Result<Message, DecodeError> {
        let buf: &[u8] = &whole;
        let mut msg = Message::default();
        let mut r = BytesReader::from_bytes(buf);
        while !r.is_eof() {
            match r.next_tag(buf)? {
                10 => {
                    let wl = r.read_bytes(buf)?;
                    decode_wantlist(wl, &mut msg)?;
                }
                18 => {
                    // bitswap 1.0.0: CIDv0 dag-pb sha2-256 implied
                    let data = r.read_bytes(buf)?;
                    let mh = Multihash::wrap(SHA2_256, &Sha256::digest(data))
                        .map_err(|e| DecodeError::Prefix(e.to_string()))?;
                    let cid = Cid::new_v0(mh).map_err(|e| DecodeError::Prefix(e.to_string()))?;
                    msg.blocks.push(Block {
                        cid,
                        data: whole.slice_ref(data),
                    });
                }
                26 => {
                    let blk = r.read_bytes(buf)?;
                    let (cid, data) = decode_payload(blk)?;
                    msg.blocks.push(Block {
                        cid,
                        data: whole.slice_ref(data),
                    });
                }
                34 => {
                    let bp = r.read_bytes(buf)?;
                    msg.presences.push(decode_presence(bp)?);
                }
                40 => msg.pending_bytes = r.read_int32(buf)?,
                tag => r.read_unknown(buf, tag)?,
            }
        }
        Ok(msg)
    }
}

fn decode_wantlist(buf: &[u8], msg: &mut Message) -> Result<(), DecodeError> {
    let mut r = BytesReader::from_bytes(buf);
    while !r.is_eof() {
        match r.next_tag(buf)? {
            10 => {
                let e = r.read_bytes(buf)?;
                msg.wants.push(decode_entry(e)?);
            }
            16 => msg.full = r.read_bool(buf)?,
            tag => r.read_unknown(buf, tag)?,
        }
    }
    Ok(())
}

fn decode_entry(buf: &[u8]) -> Result<Want, DecodeError> {
    let mut r = BytesReader::from_bytes(buf);
    let mut cid = None;
    // proto3: absent fields take their zero value
    let mut want = Want {
        cid: Cid::default(),
        priority: 0,
        cancel: false,
        want_type: WantType::Block,
        send_dont_have: false,
    };
    while !r.is_eof() {
        match r.next_tag(buf)? {
            10 => cid = Some(parse_cid(r.read_bytes(buf)?, "wantlist entry")?),
            16 => want.priority = r.read_int32(buf)?,
            24 => want.cancel = r.read_bool(buf)?,
            32 => {
                want.want_type = if r.read_int32(buf)? == 1 {
                    WantType::Have
                } else {
                    WantType::Block
                }
            }
            40 => want.send_dont_have = r.read_bool(buf)?,
            tag => r.read_unknown(buf, tag)?,
        }
    }
    want.cid = cid.ok_or(DecodeError::Cid {
        field: "wantlist entry",
        reason: "missing".into(),
    })?;
    Ok(want)
}

fn decode_presence(buf: &[u8]) -> Result<(Cid, Presence), DecodeError> {
    let mut r = BytesReader::from_bytes(buf);
    let mut cid = None;
    let mut presence = Presence::Have;
    while !r.is_eof() {
        match r.next_tag(buf)? {
            10 => cid = Some(parse_cid(r.read_bytes(buf)?, "block presence")?),
            16 => {
                presence = if r.read_int32(buf)? == 1 {
                    Presence::DontHave
                } else {
                    Presence::Have
                }
            }
            tag => r.read_unknown(buf, tag)?,
        }
    }
    let cid = cid.ok_or(DecodeError::Cid {
        field: "block presence",
        reason: "missing".into(),
    })?;
    Ok((cid, presence))
}

fn decode_payload(buf: &[u8]) -> Result<(Cid, &[u8]), DecodeError> {
    let mut r = BytesReader::from_bytes(buf);
    let mut prefix: &[u8] = &[];
    let mut data: &[u8] = &[];
    while !r.is_eof() {
        match r.next_tag(buf)? {
            10 => prefix = r.read_bytes(buf)?,
            18 => data = r.read_bytes(buf)?,
            tag => r.read_unknown(buf, tag)?,
        }
    }
    let cid = cid_from_prefix(prefix, data)?;
    Ok((cid, data))
}

fn parse_cid(bytes: &[u8], field: &'static str) -> Result<Cid, DecodeError> {
    if bytes.len() > MAX_CID_LEN {
        return Err(DecodeError::CidTooLong {
            field,
            len: bytes.len(),
        });
    }
    if bytes.is_empty() {
        return Err(DecodeError::Cid {
            field,
            reason: "empty".into(),
        });
    }
    Cid::try_from(bytes).map_err(|e| DecodeError::Cid {
        field,
        reason: e.to_string(),
    })
}

/// The CID prefix of `cid`: uvarint version, codec, multihash code and digest length.
pub fn prefix_bytes(cid: &Cid) -> Vec<u8> {
    let mut p = Vec::with_capacity(8);
    put_uvarint(&mut p, u64::from(cid.version()));
    put_uvarint(&mut p, cid.codec());
    put_uvarint(&mut p, cid.hash().code());
    put_uvarint(&mut p, u64::from(cid.hash().size()));
    p
}

/// Rebuilds a block's CID by hashing `data` as its prefix says (REFERENCE §4: `prefix.Sum(data)`).
pub fn cid_from_prefix(prefix: &[u8], data: &[u8]) -> Result<Cid, DecodeError> {
    let (version, rest) = uvarint(prefix)?;
    let (codec, rest) = uvarint(rest)?;
    let (code, rest) = uvarint(rest)?;
    let (len, _) = uvarint(rest)?;
    let mh = hash(code, data)?;
    if u64::from(mh.size()) != len && code != IDENTITY {
        return Err(DecodeError::Prefix(format!(
            "digest length {len} does not fit hash {code:#x}"
        )));
    }
    match version {
        0 if codec == DAG_PB && code == SHA2_256 => {
            Cid::new_v0(mh).map_err(|e| DecodeError::Prefix(e.to_string()))
        }
        1 => Ok(Cid::new_v1(codec, mh)),
        v => Err(DecodeError::Prefix(format!(
            "unsupported CID version {v} with codec {codec:#x}"
        ))),
    }
}

/// Hashes `data` with the multihash `code` (sha2-256 or identity).
pub fn hash(code: u64, data: &[u8]) -> Result<Multihash<64>, DecodeError> {
    match code {
        SHA2_256 => Multihash::wrap(SHA2_256, &Sha256::digest(data)),
        IDENTITY => Multihash::wrap(IDENTITY, data),
        other => return Err(DecodeError::UnsupportedHash(other)),
    }
    .map_err(|e| DecodeError::Prefix(e.to_string()))
}

fn uvarint(buf: &[u8]) -> Result<(u64, &[u8]), DecodeError> {
    unsigned_varint::decode::u64(buf).map_err(|e| DecodeError::Prefix(e.to_string()))
}

fn put_uvarint(out: &mut Vec<u8>, v: u64) {
    let mut b = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(v, &mut b));
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_uvarint(out, u64::from(field << 3));
    put_uvarint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_uvarint(out, u64::from(field << 3 | 2));
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_cid(data: &[u8]) -> Cid {
        Cid::new_v1(crate::codes::RAW, hash(SHA2_256, data).unwrap())
    }

    #[test]
    fn round_trip_all_fields() {
        let data = Bytes::from_static(b"hello world\n");
        let cid = raw_cid(&data);
        assert_eq!(
            cid.to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
        let msg = Message {
            full: true,
            wants: vec![
                Want::block(cid),
                Want::have(cid),
                Want::cancel(cid),
                Want {
                    priority: -5,
                    ..Want::have(cid)
                },
            ],
            blocks: vec![Block {
                cid,
                data: data.clone(),
            }],
            presences: vec![(cid, Presence::Have), (cid, Presence::DontHave)],
            pending_bytes: 42,
        };
        let back = Message::decode(&msg.encode()).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn blocks_encode_as_nested_protobuf_messages() {
        // the bytes of the nested encoding (a Block message built, then embedded), for data
        // whose length varint takes one, two and three bytes
        for len in [12, 300, 262_144] {
            let data = Bytes::from(vec![7u8; len]);
            let cid = raw_cid(&data);
            let msg = Message {
                blocks: vec![Block {
                    cid,
                    data: data.clone(),
                }],
                ..Default::default()
            };
            let mut blk = Vec::new();
            put_bytes(&mut blk, 1, &prefix_bytes(&cid));
            put_bytes(&mut blk, 2, &data);
            let mut want = Vec::new();
            put_bytes(&mut want, 3, &blk);
            assert_eq!(msg.encode(), want, "{len} bytes");
            assert_eq!(Message::decode(&want).unwrap(), msg);
            // in pieces, the block's data is the block's own bytes, not a copy
            let parts = msg.encode_parts();
            assert_eq!(parts.len(), 2);
            assert_eq!(parts[1].as_ptr(), data.as_ptr());
        }
    }

    #[test]
    fn v0_prefix_round_trip() {
        let data = [0x0a, 0x04, 0x08, 0x02, 0x18, 0x00];
        let cid = Cid::new_v0(hash(SHA2_256, &data).unwrap()).unwrap();
        assert_eq!(prefix_bytes(&cid), [0, 0x70, 0x12, 0x20]);
        let got = cid_from_prefix(&prefix_bytes(&cid), &data).unwrap();
        assert_eq!(
            got.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
    }

    #[test]
    fn corrupted_payload_gets_a_different_cid() {
        let cid = raw_cid(b"abc");
        let msg = Message {
            blocks: vec![Block {
                cid,
                data: Bytes::from_static(b"abd"),
            }],
            ..Default::default()
        };
        let back = Message::decode(&msg.encode()).unwrap();
        assert_ne!(back.blocks[0].cid, cid);
    }

    #[test]
    fn rejects_malformed() {
        // truncated length-delimited field
        assert!(Message::decode(&[0x0a, 0x05, 0x01]).is_err());
        // wantlist entry with garbage CID
        let mut e = Vec::new();
        put_bytes(&mut e, 1, &[0xff, 0xff, 0x01]);
        let mut wl = Vec::new();
        put_bytes(&mut wl, 1, &e);
        let mut m = Vec::new();
        put_bytes(&mut m, 1, &wl);
        assert!(matches!(Message::decode(&m), Err(DecodeError::Cid { .. })));
        // oversize CID
        let mut e = Vec::new();
        put_bytes(&mut e, 1, &[1u8; 200]);
        let mut wl = Vec::new();
        put_bytes(&mut wl, 1, &e);
        let mut m = Vec::new();
        put_bytes(&mut m, 1, &wl);
        assert!(matches!(
            Message::decode(&m),
            Err(DecodeError::CidTooLong { len: 200, .. })
        ));
        // unsupported hash in a payload prefix
        let mut blk = Vec::new();
        put_bytes(&mut blk, 1, &[1, 0x55, 0x13, 0x40]);
        put_bytes(&mut blk, 2, b"x");
        let mut m = Vec::new();
        put_bytes(&mut m, 3, &blk);
        assert!(matches!(
            Message::decode(&m),
            Err(DecodeError::UnsupportedHash(0x13))
        ));
    }

    #[test]
    fn skips_unknown_fields() {
        let mut m = Vec::new();
        put_varint_field(&mut m, 9, 7);
        put_bytes(&mut m, 10, b"future");
        assert!(Message::decode(&m).unwrap().is_empty());
    }
}
