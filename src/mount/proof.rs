//! Proving a layer before its bytes may stand for its DiffID (containerd's chain IDs,
//! containers/storage's layer lookups): the whole blob read through the
//! node (the CID in its `ipfs://` URL), its digest and size checked against the manifest's
//! descriptor and its DiffID against the config's. The hashing ([`crate::image::diff_id`]) runs
//! on a blocking thread fed as blocks arrive; nothing is kept but the blocks in the store.
//!
//! Why: containerd names a committed snapshot by the chain ID of the DiffIDs an image's config
//! *claims*, and any later image with that chain ID uses the snapshot without looking at its
//! bytes. A layer served lazily has not been read, so its DiffID is a claim until proven.

use anyhow::anyhow;
use futures::StreamExt as _;

use crate::blockservice::BlockService;
use crate::image::diff_id::LayerDigests;
use crate::image::oci::Descriptor;

/// Why a layer is not proven.
enum Unproven {
    /// The bytes are not what the image says they are: the layer must never be served.
    Mismatch(String),
    /// The bytes could not be read (yet): nothing is known.
    Unreachable(anyhow::Error),
}

/// What a full read found of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Proven,
    Refused(String),
}

/// What a verdict is recorded under: the blob's CID (its bytes) and the DiffID claimed for
/// them.
pub fn key(desc: &Descriptor, diff_id: &str) -> String {
    let cid = desc.cid().map(|c| c.to_string()).unwrap_or_default();
    format!("{cid} {diff_id}")
}

/// Verdicts kept in memory (the layer store's), at most [`Verdicts::MAX`]: past that a layer
/// is proven again when next looked up.
#[derive(Default)]
pub struct Verdicts(std::sync::Mutex<std::collections::HashMap<String, Verdict>>);

impl Verdicts {
    pub const MAX: usize = 65_536;

    pub fn get(&self, key: &str) -> Option<Verdict> {
        crate::sync::lock(&self.0).get(key).cloned()
    }

    pub fn set(&self, key: String, v: Verdict) {
        let mut m = crate::sync::lock(&self.0);
        if m.len() >= Self::MAX {
            // refusals are worth more than proofs: a proof can be redone
            m.retain(|_, v| *v != Verdict::Proven);
        }
        if m.len() < Self::MAX {
            m.insert(key, v);
        }
    }
}

/// Reads layer `desc` whole, giving up after `timeout`: [`Verdict::Proven`], or
/// [`Verdict::Refused`] with the reason, or an error when it could not be read (then nothing
/// is known).
pub async fn judge(
    blocks: &BlockService,
    desc: &Descriptor,
    diff_id: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<Verdict> {
    match tokio::time::timeout(timeout, prove(blocks, desc, diff_id)).await {
        Err(_) => Err(anyhow!(
            "reading the layer whole: no full read within {timeout:?}"
        )),
        Ok(Ok(())) => Ok(Verdict::Proven),
        Ok(Err(Unproven::Mismatch(why))) => Ok(Verdict::Refused(why)),
        Ok(Err(Unproven::Unreachable(e))) => Err(e.context("reading the layer whole")),
    }
}

/// Pieces in flight between the fetch and the hashing thread.
const IN_FLIGHT: usize = 8;

/// Reads layer `desc` whole and checks it against its descriptor and against `diff_id`.
async fn prove(blocks: &BlockService, desc: &Descriptor, diff_id: &str) -> Result<(), Unproven> {
    let unreachable = |e: anyhow::Error| Unproven::Unreachable(e);
    let cid = desc.cid().map_err(|e| unreachable(anyhow!("{e}")))?;
    let claimed = u64::try_from(desc.size)
        .map_err(|_| Unproven::Mismatch(format!("layer {}: negative size", desc.digest)))?;
    // one byte past the claimed size is enough to tell a longer blob apart
    let pieces = crate::unixfs::io::cat(blocks, blocks.session_for(cid), cid, 0, Some(claimed + 1));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(IN_FLIGHT);
    let hashing = tokio::task::spawn_blocking(move || {
        let mut d = LayerDigests::default();
        while let Some(piece) = rx.blocking_recv() {
            d.update(&piece)?;
        }
        d.finish()
    });
    futures::pin_mut!(pieces);
    let mut fetched = Ok(());
    while let Some(piece) = pieces.next().await {
        match piece {
            Ok(p) => {
                if tx.send(p).await.is_err() {
                    break; // the hasher stopped: not gzip
                }
            }
            Err(e) => {
                fetched = Err(e);
                break;
            }
        }
    }
    drop(tx);
    let hashed = hashing
        .await
        .map_err(|e| unreachable(anyhow!("the hashing thread failed: {e}")))?;
    fetched.map_err(|e| unreachable(e.into()))?;
    let got = hashed.map_err(|e| {
        Unproven::Mismatch(format!("layer {}: its blob is not gzip: {e}", desc.digest))
    })?;
    if got.len != claimed || got.blob != desc.digest {
        return Err(Unproven::Mismatch(format!(
            "layer {}: the blob {cid} is {} bytes hashing to {}, not the {claimed} bytes the manifest says",
            desc.digest, got.len, got.blob
        )));
    }
    if got.diff_id != diff_id {
        return Err(Unproven::Mismatch(format!(
            "layer {}: its bytes gunzip to DiffID {}, but the image's config claims {diff_id}",
            desc.digest, got.diff_id
        )));
    }
    Ok(())
}
