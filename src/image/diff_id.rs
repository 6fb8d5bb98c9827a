//! A gzip layer blob's two digests, fed in pieces as the blob arrives: the blob's own
//! (`sha256` of the compressed bytes, the manifest's `digest`) and its DiffID (`sha256` of the
//! bytes gunzipped, the config's `rootfs.diff_ids` entry, from which containerd derives the
//! chain IDs that name snapshots). Pure: the caller fetches the bytes and keeps this off the
//! async workers (gunzip and two hashes are about 3 CPU-seconds per GiB here).

use sha2::{Digest as _, Sha256};
use std::io::Write;

/// What a whole blob hashed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// `sha256:<hex>` of the blob.
    pub blob: String,
    /// Bytes of the blob.
    pub len: u64,
    /// `sha256:<hex>` of the blob gunzipped (every gzip member, in order).
    pub diff_id: String,
}

/// Sink of the gunzipped bytes.
struct Hashing(Sha256);

impl Write for Hashing {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Feed the blob with [`LayerDigests::update`], then [`LayerDigests::finish`].
pub struct LayerDigests {
    blob: Sha256,
    len: u64,
    tar: flate2::write::MultiGzDecoder<Hashing>,
}

impl Default for LayerDigests {
    fn default() -> Self {
        LayerDigests {
            blob: Sha256::new(),
            len: 0,
            tar: flate2::write::MultiGzDecoder::new(Hashing(Sha256::new())),
        }
    }
}

impl LayerDigests {
    /// The next bytes of the blob. An error: the blob is not gzip.
    pub fn update(&mut self, piece: &[u8]) -> std::io::Result<()> {
        self.blob.update(piece);
        self.len += piece.len() as u64;
        self.tar.write_all(piece)
    }

    /// The digests of everything fed. An error: the blob ends inside a gzip member.
    pub fn finish(self) -> std::io::Result<Digests> {
        let tar = self.tar.finish()?;
        Ok(Digests {
            blob: format!("sha256:{}", hex::encode(self.blob.finalize())),
            len: self.len,
            diff_id: format!("sha256:{}", hex::encode(tar.0.finalize())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sha(b: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(b)))
    }

    /// Several members fed in odd pieces give the digest of the blob and of all members
    /// gunzipped, as `gzip -dc | sha256sum` would.
    #[test]
    fn digests_of_a_multi_member_blob_fed_in_pieces() {
        let (a, b) = (vec![7u8; 100_000], b"second member".to_vec());
        let blob = [gz(&a), gz(&b)].concat();
        let mut d = LayerDigests::default();
        for piece in blob.chunks(977) {
            d.update(piece).unwrap();
        }
        let got = d.finish().unwrap();
        assert_eq!(got.blob, sha(&blob));
        assert_eq!(got.len, blob.len() as u64);
        assert_eq!(got.diff_id, sha(&[a, b].concat()));
    }

    /// Bytes that are not gzip, or a blob cut inside a member, are errors, not a digest.
    #[test]
    fn not_gzip_or_truncated_is_an_error() {
        let mut d = LayerDigests::default();
        assert!(d.update(b"plain tar, not gzip at all....").is_err());
        let blob = gz(&[1u8; 10_000]);
        let mut d = LayerDigests::default();
        d.update(&blob[..blob.len() / 2]).unwrap();
        assert!(d.finish().is_err());
    }
}
