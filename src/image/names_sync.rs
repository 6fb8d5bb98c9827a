//! Carries the name table ([`Names`]) across the private swarm, so that a name pushed to any
//! node is known on every node within seconds.
//!
//! Protocol `/cidfs/names/1.0.0`: a stream carries one frame, a 4-byte big-endian length and that
//! many bytes of JSON `{"records": [Record…]}`, then closes. Each side merges what it receives
//! ([`Names::merge`]: the later value by (time, peer id) wins, so nodes agree whatever the order).
//! - **Changes**: every change of the local table (a push, a tag, a removal, or a value merged
//!   from a peer) goes to every connected peer. A merged value that changed nothing is not sent
//!   on, so a change floods the swarm once and stops. One frame at a time goes to a peer; the
//!   changes made while it is on its way go together in the next ([`Outboxes`]).
//! - **Catch-up**: on every new connection, and every [`RESYNC`] to every peer, the whole table
//!   (tombstones included) goes to the peer: a node that joins late learns everything, and a
//!   change lost on the way is repaired. A peer that a send failed to reach (a partition keeps
//!   its connection open but carries nothing) is tried again with the whole table every
//!   [`RETRY`] until a send gets through, so both sides of a healed partition agree within
//!   seconds. (A partition long enough that the connection stops answering pings closes it:
//!   the peer is dialled afresh and caught up as a new connection.)
//!
//! A frame is at most [`MAX_FRAME`] bytes and [`MAX_RECORDS`] records, read within [`TIMEOUT`];
//! merging (sled) runs on a blocking thread; at most [`MAX_INBOUND`] streams are handled at once,
//! [`super::frames::PER_PEER`] of one peer.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

use super::names::{Names, Record};

pub const PROTOCOL: &str = "/cidfs/names/1.0.0";
/// Largest frame, sent or taken.
pub const MAX_FRAME: usize = 16 << 20;
/// Most records in one frame.
pub const MAX_RECORDS: usize = super::names::MAX_NAMES;
/// An inbound stream must be read whole within this. Its sender has given up by then
/// ([`SEND_TIMEOUT`]), so a stream opened across a partition, which arrives when it heals and
/// may never finish, holds one of the [`MAX_INBOUND`] places no longer than that.
pub const TIMEOUT: Duration = SEND_TIMEOUT;
/// Inbound streams handled at once.
pub const MAX_INBOUND: usize = 8;
/// Every peer gets the whole table this often.
pub const RESYNC: Duration = Duration::from_secs(60);
/// A peer a send did not reach gets the whole table again this often.
pub const RETRY: Duration = Duration::from_secs(3);
/// Each send (opening the stream included) must be done within this (a frame of
/// [`MAX_FRAME`] needs 27 Mbit/s).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Peers a send did not reach, and whether a retry to each is under way.
type Behind = Arc<std::sync::Mutex<std::collections::HashMap<libp2p::PeerId, bool>>>;

#[derive(Serialize, Deserialize)]
struct Frame {
    records: Vec<Record>,
}

/// Starts carrying `names` over `net`; the tasks end when the node shuts down.
pub fn spawn(net: cidfs_p2p::Client, names: Names) -> anyhow::Result<()> {
    let incoming = net.accept(PROTOCOL)?;
    let behind = Behind::default();
    tokio::spawn(receive(incoming, names.clone()));
    tokio::spawn(send_changes(net.clone(), names.clone(), behind.clone()));
    tokio::spawn(catch_up(net, names, behind));
    Ok(())
}

/// Takes every inbound frame and merges it.
async fn receive(
    incoming: impl futures::Stream<Item = (libp2p::PeerId, libp2p::Stream)>,
    names: Names,
) {
    super::frames::each_inbound(incoming, MAX_INBOUND, "names", |peer, stream| {
        let names = names.clone();
        async move {
            match tokio::time::timeout(TIMEOUT, read_frame(stream)).await {
                Ok(Ok(frame)) => merge(&names, frame, peer).await,
                Ok(Err(e)) => tracing::debug!(%peer, "names: bad frame: {e:#}"),
                Err(_) => tracing::debug!(%peer, "names: a frame took over {TIMEOUT:?}"),
            }
        }
    })
    .await
}

/// Merges a peer's records (on a blocking thread: sled).
async fn merge(names: &Names, frame: Frame, peer: libp2p::PeerId) {
    let names = names.clone();
    let merged = tokio::task::spawn_blocking(move || {
        let mut taken = 0usize;
        for r in frame.records {
            let name = r.name.clone();
            match names.merge(r) {
                Ok(true) => {
                    tracing::info!(%peer, "names: {name} updated from the swarm");
                    taken += 1;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(%peer, "names: {e}"),
            }
        }
        taken
    })
    .await;
    if let Err(e) = merged {
        tracing::warn!("names: merging failed: {e}");
    }
}

async fn read_frame(stream: libp2p::Stream) -> anyhow::Result<Frame> {
    let frame: Frame = super::frames::read(stream, MAX_FRAME).await?;
    anyhow::ensure!(
        frame.records.len() <= MAX_RECORDS,
        "{} records in a frame (at most {MAX_RECORDS})",
        frame.records.len()
    );
    Ok(frame)
}

/// Sends `records` to `peer` in one frame; whether it got through. A peer it did not reach is
/// marked behind (to get the whole table later), one it reached is not.
async fn send(
    net: &cidfs_p2p::Client,
    peer: libp2p::PeerId,
    records: Vec<Record>,
    behind: &Behind,
) -> bool {
    let sent = send_frame(net, peer, records).await;
    let mut b = crate::sync::lock(behind);
    if sent {
        b.remove(&peer);
    } else {
        b.insert(peer, false);
    }
    sent
}

async fn send_frame(net: &cidfs_p2p::Client, peer: libp2p::PeerId, records: Vec<Record>) -> bool {
    let write = super::frames::send(net, peer, PROTOCOL, Frame { records }, MAX_FRAME);
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "names: sending failed: {e:#}");
            false
        }
        Err(_) => {
            tracing::debug!(%peer, "names: sending took over {SEND_TIMEOUT:?}");
            false
        }
    }
}

/// Changes waiting for one peer, by name, the latest of each. One frame at a time goes to a
/// peer ([`super::frames::Outboxes`]): the changes made while one is on its way go together in
/// the next, so a burst of changes is a few frames, not a stream each (a peer takes only a few
/// streams at once: [`super::frames::PER_PEER`]).
#[derive(Default)]
struct Queue(std::collections::HashMap<String, Record>);

impl super::frames::Pending for Queue {
    type Change = Record;
    type Frame = Vec<Record>;

    /// In place of an older value of the same name; an older value replaces nothing.
    fn merge(&mut self, record: Record) {
        use std::collections::hash_map::Entry;
        match self.0.entry(record.name.clone()) {
            Entry::Occupied(mut e) if record.value.newer_than(&e.get().value) => {
                e.insert(record);
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(e) => {
                e.insert(record);
            }
        }
    }

    fn take(&mut self) -> Option<Vec<Record>> {
        (!self.0.is_empty()).then(|| self.0.drain().map(|(_, r)| r).collect())
    }
}

type Outboxes = super::frames::Outboxes<Queue>;

/// Sends every change of the local table to every connected peer.
async fn send_changes(net: cidfs_p2p::Client, names: Names, behind: Behind) {
    let outboxes = Arc::new(std::sync::Mutex::new(Outboxes::default()));
    let mut changes = names.changes();
    loop {
        let record = match changes.recv().await {
            Ok(r) => r,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                // the periodic catch-up repairs what was skipped
                tracing::debug!("names: {n} changes not sent on");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Ok(peers) = net.peers().await else { return };
        for p in peers {
            if crate::sync::lock(&outboxes).push(p.peer, record.clone()) {
                let (net, outboxes, behind) = (net.clone(), outboxes.clone(), behind.clone());
                tokio::spawn(async move {
                    let (net, behind) = (&net, &behind);
                    let sent = |batch| send(net, p.peer, batch, behind);
                    super::frames::drain(&outboxes, p.peer, sent).await
                });
            }
        }
    }
}

/// Sends the whole table to each peer as it connects, to every peer every [`RESYNC`], and to
/// the peers a send did not reach every [`RETRY`] (one retry per peer at a time).
async fn catch_up(net: cidfs_p2p::Client, names: Names, behind: Behind) {
    let mut connected = net.connected();
    let mut every = tokio::time::interval(RESYNC);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let peers: Vec<libp2p::PeerId> = tokio::select! {
            peer = connected.recv() => match peer {
                Ok(p) => vec![p],
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = every.tick() => match net.peers().await {
                Ok(peers) => peers.into_iter().map(|p| p.peer).collect(),
                Err(_) => return,
            },
            _ = retry.tick() => {
                // a peer that left gets the whole table when it connects again
                let Ok(now) = net.peers().await else { return };
                let mut b = crate::sync::lock(&behind);
                b.retain(|p, _| now.iter().any(|c| c.peer == *p));
                b.iter_mut()
                    .filter(|(_, trying)| !**trying)
                    .map(|(p, trying)| {
                        *trying = true;
                        *p
                    })
                    .collect()
            },
        };
        if peers.is_empty() {
            continue;
        }
        let table = names.clone();
        let records = match tokio::task::spawn_blocking(move || table.records()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!("names: reading the table: {e}");
                continue;
            }
            Err(_) => continue,
        };
        if records.is_empty() {
            crate::sync::lock(&behind).retain(|p, _| !peers.contains(p));
            continue;
        }
        for peer in peers {
            let (net, records, behind) = (net.clone(), records.clone(), behind.clone());
            tokio::spawn(async move { send(&net, peer, records, &behind).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value of `name` set at `time_ns`, pointing at `cid`.
    fn record(name: &str, cid: &str, time_ns: u64) -> Record {
        Record {
            name: name.to_string(),
            value: super::super::names::Named {
                cid: cid.to_string(),
                pushed_digest: String::new(),
                pushed_at: 0,
                time_ns,
                origin: "peer".into(),
                removed: false,
            },
        }
    }

    fn names(batch: &[Record]) -> Vec<(String, String)> {
        let mut v: Vec<_> = batch
            .iter()
            .map(|r| (r.name.clone(), r.value.cid.clone()))
            .collect();
        v.sort();
        v
    }

    /// The first change starts a sender; changes made meanwhile go together in the next frame,
    /// the latest of each name; the sender stops when nothing is left, and the next change
    /// starts one again.
    #[test]
    fn changes_made_while_a_frame_is_on_its_way_go_in_the_next_one() {
        let (a, b) = (libp2p::PeerId::random(), libp2p::PeerId::random());
        let mut o = Outboxes::default();
        assert!(
            o.push(a, record("x:1", "c1", 1)),
            "a's first change starts a sender"
        );
        assert!(o.push(b, record("x:1", "c1", 1)), "each peer has its own");
        assert_eq!(
            names(&o.next(a).expect("a frame")),
            [("x:1".into(), "c1".into())]
        );
        assert!(
            !o.push(a, record("x:1", "c2", 2)),
            "a's sender is still running"
        );
        assert!(!o.push(a, record("y:1", "c3", 3)));
        assert!(!o.push(a, record("x:1", "c4", 4)));
        assert!(
            !o.push(a, record("x:1", "old", 0)),
            "an older value replaces nothing"
        );
        assert_eq!(
            names(&o.next(a).expect("a frame")),
            [("x:1".into(), "c4".into()), ("y:1".into(), "c3".into())]
        );
        assert!(o.next(a).is_none(), "nothing left: the sender stops");
        assert!(
            o.push(a, record("z:1", "c5", 5)),
            "the next change starts a sender again"
        );
        o.give_up(a);
        assert!(o.next(a).is_none(), "a failed send drops what was queued");
        assert!(o.push(a, record("z:1", "c6", 6)));
        assert_eq!(
            names(&o.next(b).expect("b's frame")),
            [("x:1".into(), "c1".into())]
        );
    }
}
