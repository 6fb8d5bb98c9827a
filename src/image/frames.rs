//! One length-prefixed JSON frame per libp2p stream, as the swarm-wide tables (`names_sync`,
//! `copies`) exchange them: a 4-byte big-endian length, then that many bytes of JSON. Sizes are
//! bounded before anything is read or sent, and JSON is (de)serialized off the async workers.

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::sync::Arc;

/// Reads one frame of at most `max` bytes from `stream`.
pub async fn read<T: DeserializeOwned + Send + 'static>(
    mut stream: libp2p::Stream,
    max: usize,
) -> anyhow::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    anyhow::ensure!(len <= max, "a frame of {len} bytes (at most {max})");
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(tokio::task::spawn_blocking(move || serde_json::from_slice(&buf)).await??)
}

/// Opens a `protocol` stream to `peer` and sends `value` in one frame of at most `max` bytes.
pub async fn send<T: Serialize + Send + 'static>(
    net: &cidfs_p2p::Client,
    peer: libp2p::PeerId,
    protocol: &'static str,
    value: T,
    max: usize,
) -> anyhow::Result<()> {
    let bytes = tokio::task::spawn_blocking(move || serde_json::to_vec(&value)).await??;
    anyhow::ensure!(bytes.len() <= max, "a frame over {max} bytes");
    let mut stream = net.open_stream(peer, protocol).await?;
    stream
        .write_all(&(bytes.len() as u32).to_be_bytes())
        .await?;
    stream.write_all(&bytes).await?;
    stream.close().await?;
    Ok(())
}

/// Runs `handle` on each inbound stream of `incoming` in a task of its own, at most `at_once` at
/// a time: a stream past that is dropped (`what` names the protocol in the log).
pub async fn each_inbound<F, Fut>(
    incoming: impl futures::Stream<Item = (libp2p::PeerId, libp2p::Stream)>,
    at_once: usize,
    what: &'static str,
    handle: F,
) where
    F: Fn(libp2p::PeerId, libp2p::Stream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let turns = Arc::new(tokio::sync::Semaphore::new(at_once));
    futures::pin_mut!(incoming);
    while let Some((peer, stream)) = incoming.next().await {
        let Ok(turn) = turns.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "{what}: too many streams at once; dropped one");
            continue;
        };
        let work = handle(peer, stream);
        tokio::spawn(async move {
            let _turn = turn;
            work.await
        });
    }
}
