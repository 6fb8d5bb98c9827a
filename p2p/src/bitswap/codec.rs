//! Framing of bitswap messages on a stream: unsigned-varint length, then the protobuf bytes.
//! Frames over [`MAX_MESSAGE_SIZE`] are refused before any of their bytes are read.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;

use super::message::{DecodeError, Message};

/// Largest message accepted or sent (`network.MessageSizeMax`, 4 MiB).
pub const MAX_MESSAGE_SIZE: usize = 4 << 20;
/// Largest block served or accepted (`chunker.BlockSizeLimit`, 2 MiB).
pub const MAX_BLOCK_SIZE: usize = 2 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("stream closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_SIZE}-byte limit")]
    TooLarge(usize),
    #[error("bad length prefix: {0}")]
    Varint(String),
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    #[error("block of {0} bytes exceeds the {MAX_BLOCK_SIZE}-byte limit")]
    BlockTooLarge(usize),
}

/// Reads one message. Cancel-safe only between frames (do not drop it mid-frame).
pub async fn read_message<R: AsyncRead + Unpin>(io: &mut R) -> Result<Message, ReadError> {
    let len = match unsigned_varint::aio::read_usize(&mut *io).await {
        Ok(len) => len,
        Err(unsigned_varint::io::ReadError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(ReadError::Closed)
        }
        Err(unsigned_varint::io::ReadError::Io(e)) => return Err(ReadError::Io(e)),
        Err(e) => return Err(ReadError::Varint(e.to_string())),
    };
    if len > MAX_MESSAGE_SIZE {
        return Err(ReadError::TooLarge(len));
    }
    // half of the message (at least FIRST_READ) before the whole buffer: a peer that stalls
    // holds at most twice what it sent, as when the buffer grew with the bytes; then the rest
    // at once (read_to_end zeroed and reallocated as it grew, several times over the message:
    // 5 % of a receiver's CPU)
    let first = len.min(FIRST_READ.max(len / 2));
    let mut buf = vec![0u8; first];
    io.read_exact(&mut buf).await?;
    if len > first {
        buf.resize(len, 0);
        io.read_exact(&mut buf[first..]).await?;
    }
    // blocks are slices of this one buffer: no copy per block
    let msg = Message::decode_bytes(bytes::Bytes::from(buf))?;
    if let Some(b) = msg.blocks.iter().find(|b| b.data.len() > MAX_BLOCK_SIZE) {
        return Err(ReadError::BlockTooLarge(b.data.len()));
    }
    Ok(msg)
}

/// Bytes of a message read before its whole buffer is allocated, at least (see read_message).
const FIRST_READ: usize = 64 << 10;

/// Writes one message given as pieces that follow each other ([`Message::encode_parts`]), behind
/// one length prefix, and flushes: a block's bytes go to the stream without being copied into a
/// whole message first.
pub async fn write_parts<W: AsyncWrite + Unpin>(
    io: &mut W,
    parts: &[impl AsRef<[u8]>],
) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.as_ref().len()).sum();
    if len > MAX_MESSAGE_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {len} bytes exceeds the limit"),
        ));
    }
    let mut b = unsigned_varint::encode::usize_buffer();
    io.write_all(unsigned_varint::encode::usize(len, &mut b))
        .await?;
    for part in parts {
        io.write_all(part.as_ref()).await?;
    }
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn frame_round_trip_and_limits() {
        let msg = Message {
            pending_bytes: 7,
            ..Default::default()
        };
        let mut wire = Cursor::new(Vec::new());
        write_parts(&mut wire, &msg.encode_parts()).await.unwrap();
        write_parts(&mut wire, &[msg.encode()]).await.unwrap();
        let mut r = Cursor::new(wire.into_inner());
        assert_eq!(read_message(&mut r).await.unwrap(), msg);
        assert_eq!(read_message(&mut r).await.unwrap(), msg);
        assert!(matches!(read_message(&mut r).await, Err(ReadError::Closed)));

        // a length prefix over 4 MiB is refused without reading the body
        let mut b = unsigned_varint::encode::usize_buffer();
        let big = unsigned_varint::encode::usize(MAX_MESSAGE_SIZE + 1, &mut b).to_vec();
        let mut r = Cursor::new(big);
        assert!(matches!(
            read_message(&mut r).await,
            Err(ReadError::TooLarge(_))
        ));

        // truncated body
        let mut r = Cursor::new(vec![10, 1, 2]);
        assert!(matches!(read_message(&mut r).await, Err(ReadError::Io(_))));

        // a message of several blocks, past the first read, whole and cut short
        let blocks: Vec<_> = (0..5u8)
            .map(|i| {
                let data = bytes::Bytes::from(vec![i; 256 << 10]);
                let cid = cid::Cid::new_v1(0x55, super::super::message::hash(0x12, &data).unwrap());
                super::super::message::Block { cid, data }
            })
            .collect();
        let m = Message {
            blocks,
            ..Default::default()
        };
        let mut wire = Cursor::new(Vec::new());
        write_parts(&mut wire, &m.encode_parts()).await.unwrap();
        let wire = wire.into_inner();
        assert_eq!(
            wire[3..],
            m.encode()[..],
            "the pieces make the whole message"
        );
        assert!(wire.len() > FIRST_READ * 16);
        let mut r = Cursor::new(wire.clone());
        assert_eq!(read_message(&mut r).await.unwrap(), m);
        for cut in [
            FIRST_READ / 2,
            FIRST_READ + 3,
            wire.len() / 2 + 7,
            wire.len() - 1,
        ] {
            let mut r = Cursor::new(wire[..cut].to_vec());
            assert!(matches!(read_message(&mut r).await, Err(ReadError::Io(_))));
        }

        // an oversize block inside a legal message
        let data = bytes::Bytes::from(vec![7u8; MAX_BLOCK_SIZE + 1]);
        let cid = cid::Cid::new_v1(0x55, super::super::message::hash(0x12, &data).unwrap());
        let m = Message {
            blocks: vec![super::super::message::Block { cid, data }],
            ..Default::default()
        };
        let mut wire = Cursor::new(Vec::new());
        write_parts(&mut wire, &m.encode_parts()).await.unwrap();
        let mut r = Cursor::new(wire.into_inner());
        assert!(matches!(
            read_message(&mut r).await,
            Err(ReadError::BlockTooLarge(_))
        ));

        // pieces that add up past the limit are refused, and nothing is written
        let piece = vec![0u8; MAX_MESSAGE_SIZE / 2 + 1];
        let mut wire = Cursor::new(Vec::new());
        let refused = write_parts(&mut wire, &[&piece[..], &piece[..]]).await;
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(wire.into_inner().is_empty());
    }
}
