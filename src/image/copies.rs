//! Who holds which image: every node tells its peers which named images it holds fully or
//! partly and which `[[preload]]` rules it has, so `image ls` shows each image's copies and the preload
//! worker can place `replicas = N` copies ([`super::placement`]).
//!
//! Protocol `/cidfs/copies/1.0.0`: a stream carries one [`Status`] in one frame
//! ([`super::frames`]) and closes. A node sends its status to each peer when it connects, to
//! every peer when the status changes, and to every peer every [`ANNOUNCE`]. One status at a
//! time goes to a peer; a change made while one is on its way goes in the next
//! ([`super::frames::Outboxes`]), and a status older than the one a node has of that peer
//! ([`Status::made_ns`]) is ignored, so a burst of changes leaves every peer with the latest. A
//! peer's status counts while the peer is connected and for at most [`EXPIRE`] after it was last
//! heard, so a node that leaves (or is cut off) stops counting as a holder within seconds.
//!
//! A frame is at most [`MAX_FRAME`] bytes, [`MAX_HELD`] images and `MAX_PRELOAD_RULES` rules of
//! at most `MAX_PATTERN` bytes each; at most [`MAX_INBOUND`] streams are read at once,
//! [`super::frames::PER_PEER`] of one peer.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::placement::{self, Want};
use crate::config::{MAX_PATTERN, MAX_PRELOAD_RULES};

pub const PROTOCOL: &str = "/cidfs/copies/1.0.0";
/// Largest frame.
pub const MAX_FRAME: usize = 8 << 20;
/// Most images a status may list as held.
pub const MAX_HELD: usize = 100_000;
/// Every peer gets this node's status this often.
pub const ANNOUNCE: Duration = Duration::from_secs(5);
/// A peer's status counts for this long after it was last heard.
pub const EXPIRE: Duration = Duration::from_secs(16);
/// A peer that has sent no status this long after it connected is not a cidfs node (kubo, Helia):
/// placement stops waiting for it.
pub const GRACE: Duration = Duration::from_secs(6);
/// Each send (opening the stream included) must be done within this.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Inbound streams read at once.
pub const MAX_INBOUND: usize = 8;

/// One `[[preload]]` rule as peers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSummary {
    pub name: String,
    pub want: Want,
}

/// What the swarm's preload rules ask for one image ([`Copies::policy`]).
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    /// The nodes whose rule wants a copy on every node with the rule.
    pub every: BTreeSet<String>,
    /// The most replicas a rule asks for (0: none does).
    pub replicas: u32,
}

/// What a node tells its peers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// CIDs of the named images it holds fully (every blob pinned), with their sizes.
    pub held: BTreeMap<String, u64>,
    /// CIDs of the named images it holds partly (their index and manifests, some blobs), with
    /// the bytes of their blobs it has pinned.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partial: BTreeMap<String, u64>,
    /// Its `[[preload]]` rules.
    pub rules: Vec<RuleSummary>,
    /// The latest time (ns) of the names it had when it made this status: a peer whose status
    /// is older than a name has not yet counted that name's image among what it holds.
    #[serde(default)]
    pub names_ns: u64,
    /// When (ns since the Unix epoch) the node made this status, increasing with each change
    /// ([`Copies::set_mine`] sets it): of two statuses of one node, the later counts, in
    /// whichever order they arrive. 0 from nodes before it, whose statuses count as they come.
    #[serde(default)]
    pub made_ns: u64,
}

impl Status {
    /// Checks a status from a peer and compiles its rules.
    fn check(self) -> anyhow::Result<(Status, Vec<(glob::Pattern, Want)>)> {
        anyhow::ensure!(
            self.held.len() + self.partial.len() <= MAX_HELD,
            "{} held images (at most {MAX_HELD})",
            self.held.len() + self.partial.len()
        );
        anyhow::ensure!(
            self.rules.len() <= MAX_PRELOAD_RULES,
            "{} rules (at most {MAX_PRELOAD_RULES})",
            self.rules.len()
        );
        let mut rules = Vec::with_capacity(self.rules.len());
        for r in &self.rules {
            anyhow::ensure!(
                r.name.len() <= MAX_PATTERN,
                "a rule over {MAX_PATTERN} bytes"
            );
            if let Want::Replicas(n) = r.want {
                anyhow::ensure!(n > 0, "a rule of 0 replicas");
            }
            rules.push((glob::Pattern::new(&r.name)?, r.want));
        }
        Ok((self, rules))
    }
}

/// Fuzz entry (`fuzz/`, feature `fuzzing`): a status as a peer sends it, parsed and checked,
/// and its rules matched against a name.
#[cfg(feature = "fuzzing")]
pub fn fuzz_status(data: &[u8]) {
    let Ok(status) = serde_json::from_slice::<Status>(data) else {
        return;
    };
    if let Ok((_, rules)) = status.check() {
        for (p, _) in &rules {
            let _ = placement::covers(p, "team/app:1.0");
        }
    }
}

/// The status waiting for each peer ([`super::frames::Outboxes`]): the latest replaces it.
type Outboxes = super::frames::Outboxes<super::frames::Latest<Status>>;

/// A peer's last status.
struct Seen {
    status: Status,
    rules: Vec<(glob::Pattern, Want)>,
    at: Instant,
}

#[derive(Default)]
struct State {
    mine: Status,
    peers: HashMap<String, Seen>,
    /// Connected peers, and since when.
    connected: HashMap<String, Instant>,
}

impl State {
    fn live(&self) -> impl Iterator<Item = (&String, &Seen)> {
        let now = Instant::now();
        self.peers
            .iter()
            .filter(move |(p, s)| self.connected.contains_key(*p) && now - s.at < EXPIRE)
    }
}

/// This node's view of the swarm's copies; cheap to clone.
#[derive(Clone)]
pub struct Copies {
    me: String,
    state: Arc<Mutex<State>>,
    /// Bumped when this node's status changes (to send it) or a peer's arrives (to re-plan).
    mine_changed: Arc<tokio::sync::Notify>,
    view_changed: tokio::sync::watch::Sender<()>,
}

impl Copies {
    /// The view of the node with peer id `me`.
    pub fn new(me: impl Into<String>) -> Self {
        Copies {
            me: me.into(),
            state: Arc::default(),
            mine_changed: Arc::default(),
            view_changed: tokio::sync::watch::channel(()).0,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Sets this node's status (its `made_ns` is set here); peers hear of a change at once.
    pub fn set_mine(&self, mut status: Status) {
        let mut s = crate::sync::lock(&self.state);
        status.made_ns = s.mine.made_ns;
        if s.mine != status {
            status.made_ns = super::names::now_ns().max(s.mine.made_ns.saturating_add(1));
            s.mine = status;
            self.mine_changed.notify_one();
        }
    }

    /// Wakes when a peer's status arrives or a peer goes.
    pub fn view_changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.view_changed.subscribe()
    }

    /// The live nodes (this one included) that hold `image` fully.
    pub fn holders(&self, image: &str) -> BTreeSet<String> {
        let s = crate::sync::lock(&self.state);
        let mut out: BTreeSet<String> = s
            .live()
            .filter(|(_, seen)| seen.status.held.contains_key(image))
            .map(|(p, _)| p.clone())
            .collect();
        if s.mine.held.contains_key(image) {
            out.insert(self.me.clone());
        }
        out
    }

    /// The live nodes (this one included) that hold `image` partly, with the bytes of its
    /// blobs each has pinned.
    pub fn partial_holders(&self, image: &str) -> BTreeMap<String, u64> {
        let s = crate::sync::lock(&self.state);
        let mine = s.mine.partial.get(image).map(|b| (&self.me, b));
        s.live()
            .filter_map(|(p, seen)| Some((p, seen.status.partial.get(image)?)))
            .chain(mine)
            .map(|(p, b)| (p.clone(), *b))
            .collect()
    }

    /// What the live nodes' `[[preload]]` rules (this node's included) ask for the image named
    /// `name`: by each node's first rule that covers the name.
    pub fn policy(&self, name: &str) -> Policy {
        let s = crate::sync::lock(&self.state);
        let mine: Vec<(glob::Pattern, Want)> = s
            .mine
            .rules
            .iter()
            .filter_map(|r| Some((glob::Pattern::new(&r.name).ok()?, r.want)))
            .collect();
        let rules = s
            .live()
            .map(|(p, seen)| (p, seen.rules.as_slice()))
            .chain([(&self.me, mine.as_slice())]);
        let mut policy = Policy::default();
        for (peer, rules) in rules {
            match rules.iter().find(|(p, _)| placement::covers(p, name)) {
                Some((_, Want::All)) => _ = policy.every.insert(peer.clone()),
                Some((_, Want::Replicas(n))) => policy.replicas = policy.replicas.max(*n),
                None => {}
            }
        }
        policy
    }

    /// The live peers whose first rule that covers any of `names` asks for replicas.
    pub fn replica_candidates(&self, names: &[String]) -> BTreeSet<String> {
        let s = crate::sync::lock(&self.state);
        s.live()
            .filter(|(_, seen)| {
                seen.rules
                    .iter()
                    .find(|(p, _)| names.iter().any(|n| placement::covers(p, n)))
                    .is_some_and(|(_, w)| matches!(w, Want::Replicas(_)))
            })
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Whether every connected peer has told its status (or is past [`GRACE`] without one):
    /// until then, a placement could miss a candidate or a holder.
    pub fn settled(&self) -> bool {
        let s = crate::sync::lock(&self.state);
        let now = Instant::now();
        s.connected
            .iter()
            .all(|(p, since)| s.peers.contains_key(p) || now - *since >= GRACE)
    }

    /// The size of `image` as a live holder (this node included) tells it.
    pub fn size_of(&self, image: &str) -> Option<u64> {
        let s = crate::sync::lock(&self.state);
        s.mine
            .held
            .get(image)
            .or_else(|| s.live().find_map(|(_, seen)| seen.status.held.get(image)))
            .copied()
    }

    /// Whether every live peer's status was made after it knew the names of time `t_ns`, so
    /// that its holdings of their images are known.
    pub fn caught_up(&self, t_ns: u64) -> bool {
        crate::sync::lock(&self.state)
            .live()
            .all(|(_, seen)| seen.status.names_ns >= t_ns)
    }

    fn heard(&self, peer: String, status: Status, rules: Vec<(glob::Pattern, Want)>) {
        let mut s = crate::sync::lock(&self.state);
        // (a status that stopped counting does not hold back its node's next, even an earlier
        // one: a node whose clock went back is heard again within EXPIRE)
        if let Some(had) = s.peers.get(&peer) {
            if status.made_ns < had.status.made_ns && had.at.elapsed() < EXPIRE {
                tracing::debug!(%peer, "copies: a status older than the one held; ignored");
                return;
            }
        }
        s.peers.insert(
            peer,
            Seen {
                status,
                rules,
                at: Instant::now(),
            },
        );
        drop(s);
        self.view_changed.send_replace(());
    }

    /// Records which peers are connected now; returns those that were not before.
    fn connected_now(&self, now: &[String]) -> Vec<String> {
        let mut s = crate::sync::lock(&self.state);
        let before = s.connected.len();
        s.connected.retain(|p, _| now.contains(p));
        let gone = before != s.connected.len();
        let mut fresh = Vec::new();
        for p in now {
            if !s.connected.contains_key(p) {
                s.connected.insert(p.clone(), Instant::now());
                fresh.push(p.clone());
            }
        }
        let State {
            peers, connected, ..
        } = &mut *s;
        let expired = peers.len();
        peers.retain(|p, seen| connected.contains_key(p) && seen.at.elapsed() < EXPIRE);
        let dropped = expired != peers.len();
        drop(s);
        if gone || dropped {
            self.view_changed.send_replace(());
        }
        fresh
    }

    fn mine(&self) -> Status {
        crate::sync::lock(&self.state).mine.clone()
    }
}

/// Starts telling and hearing statuses over `net`; the tasks end when the node shuts down.
pub fn spawn(net: cidfs_p2p::Client, copies: Copies) -> anyhow::Result<()> {
    let incoming = net.accept(PROTOCOL)?;
    tokio::spawn(receive(incoming, copies.clone()));
    tokio::spawn(announce(net, copies));
    Ok(())
}

async fn receive(
    incoming: impl futures::Stream<Item = (libp2p::PeerId, libp2p::Stream)>,
    copies: Copies,
) {
    super::frames::each_inbound(incoming, MAX_INBOUND, "copies", |peer, stream| {
        let copies = copies.clone();
        async move {
            let read = tokio::time::timeout(
                SEND_TIMEOUT * 2,
                super::frames::read::<Status>(stream, MAX_FRAME),
            );
            match read.await.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(status) => match status.check() {
                    Ok((status, rules)) => copies.heard(peer.to_string(), status, rules),
                    Err(e) => tracing::debug!(%peer, "copies: bad status: {e:#}"),
                },
                Err(e) => tracing::debug!(%peer, "copies: bad frame: {e:#}"),
            }
        }
    })
    .await
}

/// Sends this node's status to new peers at once, to every peer when it changes and every
/// [`ANNOUNCE`].
async fn announce(net: cidfs_p2p::Client, copies: Copies) {
    let outboxes = Arc::new(Mutex::new(Outboxes::default()));
    let mut connected = net.connected();
    let mut every = tokio::time::interval(ANNOUNCE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let all = tokio::select! {
            peer = connected.recv() => match peer {
                Ok(_) => false,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => false,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = every.tick() => true,
            _ = copies.mine_changed.notified() => true,
        };
        let Ok(peers) = net.peers().await else { return };
        let ids: Vec<String> = peers.iter().map(|p| p.peer.to_string()).collect();
        let fresh = copies.connected_now(&ids);
        let status = copies.mine();
        for p in peers {
            if !all && !fresh.contains(&p.peer.to_string()) {
                continue;
            }
            if crate::sync::lock(&outboxes).push(p.peer, status.clone()) {
                let (net, outboxes) = (net.clone(), outboxes.clone());
                tokio::spawn(async move {
                    super::frames::drain(&outboxes, p.peer, |status| send(&net, p.peer, status))
                        .await
                });
            }
        }
    }
}

/// Sends `status` to `peer`; false when it failed (the next [`ANNOUNCE`] tries again).
async fn send(net: &cidfs_p2p::Client, peer: libp2p::PeerId, status: Status) -> bool {
    let send = super::frames::send(net, peer, PROTOCOL, status, MAX_FRAME);
    let failed = match tokio::time::timeout(SEND_TIMEOUT, send).await {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => "it took too long".into(),
    };
    tracing::debug!(%peer, "copies: sending failed: {failed}");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(held: &[&str], rules: &[(&str, Want)]) -> Status {
        Status {
            held: held.iter().map(|s| (s.to_string(), 1)).collect(),
            rules: rules
                .iter()
                .map(|(n, w)| RuleSummary {
                    name: n.to_string(),
                    want: *w,
                })
                .collect(),
            ..Status::default()
        }
    }

    fn hear(c: &Copies, peer: &str, s: Status) {
        let (s, rules) = s.check().expect("valid");
        c.heard(peer.into(), s, rules);
    }

    #[test]
    fn holders_and_candidates_count_connected_peers_only() {
        let c = Copies::new("me");
        c.set_mine(status(&["img"], &[]));
        c.connected_now(&["a".into(), "b".into()]);
        assert!(!c.settled(), "a and b have not told their status");
        hear(&c, "a", status(&["img"], &[("team/*", Want::Replicas(2))]));
        hear(&c, "b", status(&[], &[("*", Want::All)]));
        assert!(c.settled());
        hear(&c, "gone", status(&["img"], &[("*", Want::Replicas(2))]));
        let names = ["team/app:1".to_string()];
        assert_eq!(c.holders("img"), ["a", "me"].map(String::from).into());
        assert_eq!(c.replica_candidates(&names), ["a"].map(String::from).into());
        c.connected_now(&["b".into()]);
        assert_eq!(c.holders("img"), ["me"].map(String::from).into());
        let live: Vec<String> = crate::sync::lock(&c.state)
            .live()
            .map(|(p, _)| p.clone())
            .collect();
        assert_eq!(live, ["b"], "of the peers, b alone is live");
    }

    #[test]
    fn partial_holders_are_told_apart_and_older_statuses_still_parse() {
        let c = Copies::new("me");
        c.connected_now(&["a".into(), "b".into(), "old".into()]);
        let part = |bytes| Status {
            partial: [("img".to_string(), bytes)].into(),
            ..Status::default()
        };
        c.set_mine(part(0));
        hear(&c, "a", status(&["img"], &[]));
        hear(&c, "b", part(1234));
        // a node from before partial holders: no "partial" key at all
        let old: Status = serde_json::from_str(r#"{"held":{"img":5},"rules":[],"names_ns":0}"#)
            .expect("an older status parses");
        hear(&c, "old", old);
        assert_eq!(c.holders("img"), ["a", "old"].map(String::from).into());
        let partly: BTreeMap<String, u64> = [("b".to_string(), 1234), ("me".to_string(), 0)].into();
        assert_eq!(c.partial_holders("img"), partly);
        // and a status with nothing partly held says nothing of it to older nodes
        let json = serde_json::to_string(&status(&["img"], &[])).unwrap();
        assert!(!json.contains("partial"), "{json}");
        c.connected_now(&["a".into()]);
        assert!(c.partial_holders("img").keys().all(|p| p == "me"));
    }

    /// Two statuses of one peer may arrive in either order: the later one counts. Statuses of
    /// nodes from before `made_ns` (0) count as they come.
    #[test]
    fn of_two_statuses_of_a_peer_the_later_counts_whatever_arrives_last() {
        let c = Copies::new("me");
        c.connected_now(&["a".into(), "old".into()]);
        let made = |held: &[&str], made_ns| Status {
            made_ns,
            ..status(held, &[])
        };
        hear(&c, "a", made(&["v2"], 20));
        hear(&c, "a", made(&["v1"], 10));
        assert_eq!(c.holders("v2"), ["a"].map(String::from).into());
        assert!(c.holders("v1").is_empty(), "the earlier status came last");
        hear(&c, "a", made(&["v2"], 20));
        hear(&c, "a", made(&["v3"], 30));
        assert_eq!(c.holders("v3"), ["a"].map(String::from).into());
        let old = |held: &[&str]| -> Status {
            let json = format!(r#"{{"held":{{"{}":1}},"rules":[],"names_ns":0}}"#, held[0]);
            serde_json::from_str(&json).expect("an older status parses")
        };
        hear(&c, "old", old(&["x"]));
        hear(&c, "old", old(&["y"]));
        assert_eq!(c.holders("y"), ["old"].map(String::from).into());
    }

    /// Each change of this node's status is made later than the one before; setting the same
    /// status again changes nothing (and sends nothing).
    #[test]
    fn each_change_of_my_status_is_made_later() {
        let c = Copies::new("me");
        c.set_mine(status(&["a"], &[]));
        let first = c.mine().made_ns;
        assert!(first > 0);
        c.set_mine(status(&["a"], &[]));
        assert_eq!(c.mine().made_ns, first, "the same status is not a change");
        c.set_mine(status(&["a", "b"], &[]));
        assert!(c.mine().made_ns > first);
        let json = serde_json::to_string(&c.mine()).unwrap();
        assert!(json.contains("made_ns"), "{json}");
    }

    #[test]
    fn the_policy_of_a_name_is_every_live_nodes_first_covering_rule() {
        let c = Copies::new("me");
        c.set_mine(status(&[], &[("team/*", Want::All)]));
        c.connected_now(&["a".into(), "b".into()]);
        // a's first covering rule is the replicas one; its catch-all comes later
        hear(
            &c,
            "a",
            status(&[], &[("team/app", Want::Replicas(3)), ("*", Want::All)]),
        );
        hear(&c, "b", status(&[], &[("*", Want::Replicas(2))]));
        hear(&c, "gone", status(&[], &[("*", Want::Replicas(9))]));
        let p = c.policy("team/app:1.0");
        assert_eq!(p.every, ["me"].map(String::from).into());
        assert_eq!(p.replicas, 3, "gone is not live");
        let other = c.policy("other:1");
        assert_eq!(other.every, ["a"].map(String::from).into());
        assert_eq!(other.replicas, 2);
        c.connected_now(&[]);
        assert_eq!(c.policy("other:1"), Policy::default());
    }

    #[test]
    fn hostile_statuses_are_refused() {
        let many = Status {
            held: (0..=MAX_HELD).map(|i| (i.to_string(), 1)).collect(),
            ..Status::default()
        };
        assert!(many.check().is_err());
        // fully and partly held count together
        let half = |n: usize| (0..n).map(|i| (i.to_string(), 1)).collect();
        let both = Status {
            held: half(MAX_HELD / 2 + 1),
            partial: half(MAX_HELD / 2),
            ..Status::default()
        };
        assert!(both.check().is_err());
        let long = status(&[], &[(&"a".repeat(MAX_PATTERN + 1), Want::All)]);
        assert!(long.check().is_err());
        assert!(status(&[], &[("[x", Want::All)]).check().is_err());
        assert!(status(&[], &[("x", Want::Replicas(0))]).check().is_err());
        let rules = vec![("x", Want::All); MAX_PRELOAD_RULES + 1];
        assert!(status(&[], &rules).check().is_err());
    }
}
