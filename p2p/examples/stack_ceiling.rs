//! What the swarm's stack allows between two processes on this machine, measured beside a
//! benchmark in the same run (`scripts/bench-transfer.sh` runs it): the ceiling a transfer
//! between two cidfs nodes is held against.
//!
//! Both sides are a real [`Node`] (TCP, the PSK layer, noise, yamux; no mDNS, no Kademlia) on
//! 127.0.0.1 and tokio's multi-thread runtime as in the daemon, started in two processes:
//!
//! ```text
//! stack_ceiling serve SWARM_KEY MIB             # prints its address, then serves until killed
//! stack_ceiling fetch SWARM_KEY ADDR MIB MODE   # MODE: stream | bitswap; prints MB/s and CPU-s
//! ```
//!
//! - `stream`: the server writes MIB MiB on one stream in 256 KiB frames; the fetcher reads each
//!   frame and checks its SHA-256 (the stack with a block's hash, nothing else).
//! - `bitswap`: the server holds MIB MiB as 256 KiB raw blocks in memory; the fetcher gets each
//!   by CID through a bitswap session, 32 wanted at a time in order as `cidfs cat` reads (the
//!   node's bitswap, with no store and no API on either side).
//!
//! The frames are pseudo-random bytes from a fixed seed, so the fetcher knows their digests; in
//! bitswap mode it asks the server for its blocks' CIDs before the clock starts.

use bytes::Bytes;
use cid::{multihash::Multihash, Cid};
use cidfs_p2p::{
    identity::Keypair, psk::SwarmKey, BlockSource, Config, MemSource, Multiaddr, Node, Session,
};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use rand::{rngs::StdRng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::{sync::Arc, time::Instant};

const PROTOCOL: &str = "/cidfs-ceiling/1.0.0";
/// The server's block CIDs, 36 bytes each, for the bitswap mode.
const CIDS: &str = "/cidfs-ceiling/cids/1.0.0";
const BLOCK: usize = 256 << 10;
/// Distinct frames the stream mode cycles through.
const FRAMES: usize = 16;
/// Blocks wanted at once in bitswap mode: the block service's default readahead.
const WINDOW: usize = 32;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn blocks(n: usize) -> Vec<Bytes> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    (0..n)
        .map(|_| {
            let mut b = vec![0u8; BLOCK];
            rng.fill_bytes(&mut b);
            Bytes::from(b)
        })
        .collect()
}

fn cid_of(data: &[u8]) -> Cid {
    Cid::new_v1(
        0x55,
        Multihash::wrap(0x12, &Sha256::digest(data)).expect("32-byte digest"),
    )
}

fn node(key: &str, source: Arc<dyn BlockSource>) -> Res<cidfs_p2p::Client> {
    let mut config = Config::new(Keypair::generate_ed25519());
    config.swarm_key = Some(SwarmKey::parse(&std::fs::read_to_string(key)?)?);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    config.mdns = false;
    config.kademlia = false;
    // as the daemon runs it: on the multi-thread runtime that also runs the caller
    let (client, _task) = Node::spawn(config, source)?;
    Ok(client)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // the fields after the command's closing parenthesis; utime and stime are the 12th and 13th
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn serve(key: &str, mib: usize) -> Res<()> {
    let data = blocks(mib * (1 << 20) / BLOCK);
    let map = data.iter().map(|b| (cid_of(b), b.clone())).collect();
    let client = node(key, Arc::new(MemSource(map)))?;
    let mut incoming = client.accept(PROTOCOL)?;
    let mut lists = client.accept(CIDS)?;
    let addr = loop {
        if let Some(a) = client.listen_addrs().await?.into_iter().next() {
            break a;
        }
        tokio::task::yield_now().await;
    };
    println!("{addr}/p2p/{}", client.peer_id());
    let list: Vec<u8> = data.iter().flat_map(|b| cid_of(b).to_bytes()).collect();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = lists.next().await {
            let list = list.clone();
            tokio::spawn(async move {
                let _ = stream.write_all(&list).await;
                let _ = stream.close().await;
            });
        }
    });
    while let Some((_, mut stream)) = incoming.next().await {
        let frames = data[..FRAMES.min(data.len())].to_vec();
        tokio::spawn(async move {
            let mut want = [0u8; 8];
            if stream.read_exact(&mut want).await.is_err() {
                return;
            }
            let n = u64::from_be_bytes(want) as usize;
            for i in 0..n {
                if stream.write_all(&frames[i % frames.len()]).await.is_err() {
                    return;
                }
            }
            let _ = stream.close().await;
        });
    }
    Ok(())
}

async fn fetch(key: &str, addr: &str, mib: usize, mode: &str) -> Res<()> {
    let n = mib * (1 << 20) / BLOCK;
    let client = node(key, Arc::new(MemSource::default()))?;
    let addr: Multiaddr = addr.parse()?;
    let peer = client.dial(addr).await?;
    let mut cids = Vec::new();
    if mode == "bitswap" {
        let mut list = Vec::new();
        client
            .open_stream(peer, CIDS)
            .await?
            .read_to_end(&mut list)
            .await?;
        for bytes in list.chunks(36).take(n) {
            cids.push(Cid::try_from(bytes)?);
        }
        if cids.len() < n {
            return Err(format!("the server holds {} blocks, not {n}", cids.len()).into());
        }
    }
    let digests: Vec<_> = blocks(FRAMES.min(n)).iter().map(Sha256::digest).collect();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    match mode {
        "stream" => {
            let mut stream = client.open_stream(peer, PROTOCOL).await?;
            stream.write_all(&(n as u64).to_be_bytes()).await?;
            stream.flush().await?;
            let mut frame = vec![0u8; BLOCK];
            for i in 0..n {
                stream.read_exact(&mut frame).await?;
                if Sha256::digest(&frame) != digests[i % digests.len()] {
                    return Err(format!("frame {i}: wrong bytes").into());
                }
            }
        }
        "bitswap" => {
            let session = Session::new();
            session.add_peer(peer);
            let mut gets = futures::stream::iter(cids)
                .map(|cid| {
                    let (client, session) = (client.clone(), &session);
                    async move { client.get_block(cid, session).await }
                })
                .buffered(WINDOW);
            while let Some(block) = gets.next().await {
                block?;
            }
        }
        other => return Err(format!("unknown mode {other:?}: stream or bitswap").into()),
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!("{:.0} MB/s {cpu:.2} CPU-s", (n * BLOCK) as f64 / secs / 1e6);
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let mib = |i: usize| arg(i).parse::<usize>().map_err(|e| format!("MIB: {e}"));
    match arg(0) {
        "serve" => serve(arg(1), mib(2)?).await,
        "fetch" => fetch(arg(1), arg(2), mib(3)?, arg(4)).await,
        _ => Err(
            "usage: stack_ceiling serve SWARM_KEY MIB | fetch SWARM_KEY ADDR MIB stream|bitswap"
                .into(),
        ),
    }
}
