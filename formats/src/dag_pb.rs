//! The links of a dag-pb node: the few protobuf reads that listing them needs. Pure and
//! panic-free.
//!
//! rust-unixfs decodes links of UnixFS files and directories but has no public decoder for an
//! arbitrary dag-pb node, so this reads the two fields of the dag-pb schema it needs
//! (`PBNode.Links = 2`, `PBLink.Hash = 1`, `PBLink.Tsize = 3`) and rejects anything else.

use cid::Cid;

/// One link of a dag-pb node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PbLink {
    /// Target of the link.
    pub cid: Cid,
    /// Cumulative size of the target (dag-pb `Tsize`), when the link records it.
    pub tsize: Option<u64>,
}

/// Tag of `PBNode.Data` / `PBLink.Hash` (field 1, length-delimited).
const TAG_1_BYTES: u64 = 0x0a;
/// Tag of `PBNode.Links` / `PBLink.Name` (field 2, length-delimited).
const TAG_2_BYTES: u64 = 0x12;
/// Tag of `PBLink.Tsize` (field 3, varint).
const TAG_3_VARINT: u64 = 0x18;

/// The links of the dag-pb node `buf`, in order, or what is wrong with it.
pub fn links(mut buf: &[u8]) -> Result<Vec<PbLink>, &'static str> {
    let mut links = Vec::new();
    let mut seen_data = false;
    while !buf.is_empty() {
        match varint(&mut buf)? {
            TAG_2_BYTES => links.push(link(bytes(&mut buf)?)?),
            TAG_1_BYTES if !seen_data => {
                seen_data = true;
                bytes(&mut buf)?;
            }
            TAG_1_BYTES => return Err("duplicate Data field"),
            _ => return Err("unknown field in PBNode"),
        }
    }
    Ok(links)
}

fn link(mut buf: &[u8]) -> Result<PbLink, &'static str> {
    let (mut hash, mut tsize) = (None, None);
    while !buf.is_empty() {
        match varint(&mut buf)? {
            TAG_1_BYTES => hash = Some(bytes(&mut buf)?),
            TAG_2_BYTES => {
                bytes(&mut buf)?;
            }
            TAG_3_VARINT => tsize = Some(varint(&mut buf)?),
            _ => return Err("unknown field in PBLink"),
        }
    }
    let hash = hash.ok_or("link without Hash")?;
    let cid = Cid::try_from(hash).map_err(|_| "link Hash is not a CID")?;
    Ok(PbLink { cid, tsize })
}

fn varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes")
}

fn bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
    let len = usize::try_from(varint(buf)?).map_err(|_| "field length overflows")?;
    if len > buf.len() {
        return Err("truncated field");
    }
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(tag: u8, body: &[u8]) -> Vec<u8> {
        [&[tag, body.len() as u8][..], body].concat()
    }

    /// A node's links come out in order with their sizes; anything outside the schema, a
    /// second Data field or a truncated field is refused, never a panic.
    #[test]
    fn links_in_order_and_malformed_nodes_refused() {
        let cid =
            Cid::try_from("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku").unwrap();
        let link = [field(0x0a, &cid.to_bytes()), vec![0x18, 5]].concat();
        let node = [
            field(0x12, &link),
            field(0x12, &field(0x0a, &cid.to_bytes())),
            field(0x0a, b"data"),
        ]
        .concat();
        assert_eq!(
            links(&node).unwrap(),
            vec![
                PbLink {
                    cid,
                    tsize: Some(5)
                },
                PbLink { cid, tsize: None }
            ]
        );
        let twice = [field(0x0a, b"a"), field(0x0a, b"b")].concat();
        assert_eq!(links(&twice), Err("duplicate Data field"));
        assert_eq!(links(&[0x12, 10, 1]), Err("truncated field"));
        assert_eq!(links(&[0x22, 0]), Err("unknown field in PBNode"));
        assert_eq!(
            links(&field(0x12, &field(0x0a, b"not a cid"))),
            Err("link Hash is not a CID")
        );
    }
}
