//! The swarm at scale (issue 9), on a LAN of network namespaces made by `scripts/cluster.sh`
//! (the benchmark's own harness): one namespace per host, all on one bridge, links shaped by
//! tbf; peers find each other by mDNS, with the seed as a static peer. Each test fans a file out
//! from a seed to several fetchers (`cidfs pin add`) and breaks something on the way: the seed
//! dies halfway, a host is cut off for 5 s, a peer serves corrupt blocks. Every fetcher must end
//! with the right bytes, and duplicates must stay rare.

use std::time::{Duration, Instant};

use crate::util::{eventually, random_bytes, sha256, swarm_key, Cluster, Daemon, Opts};

/// Longest wait for a fan-out to finish.
const FETCH_BOUND: Duration = Duration::from_secs(180);

/// A seed (host 1) and `fetchers` more hosts, all started; `env` goes to the hosts it names.
struct Swarm {
    // dropped before the cluster: daemons die before their namespaces go
    nodes: Vec<Daemon>,
    cluster: Cluster,
}

impl Swarm {
    fn start(fetchers: usize, rate: &str, env: &[(usize, &str, &str)]) -> Swarm {
        let cluster = Cluster::up(fetchers + 1, rate);
        let key = swarm_key();
        let opts = |i: usize, peers: Vec<String>| Opts {
            swarm_key: Some(key.clone()),
            netns: Some(cluster.ns(i)),
            mdns: true,
            peers,
            env: env
                .iter()
                .filter(|(h, _, _)| *h == i)
                .map(|(_, k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let seed = Daemon::start(opts(1, Vec::new()));
        let mut nodes = vec![seed];
        for i in 2..=fetchers + 1 {
            let peers = vec![nodes[0].addr.clone()];
            nodes.push(Daemon::start(opts(i, peers)));
        }
        let s = Swarm { nodes, cluster };
        // a full mesh: every fetcher sees every other host (mDNS), so the fetch order is shared
        for (i, d) in s.nodes.iter().enumerate() {
            let n = eventually(Duration::from_secs(60), || {
                let out = d.cli(&["swarm", "peers"]);
                let n = String::from_utf8_lossy(&out.stdout).lines().count();
                (n >= fetchers).then_some(n)
            });
            assert!(
                n.is_some(),
                "host {} sees fewer than {fetchers} peers",
                i + 1
            );
        }
        s
    }

    /// The seed adds `mib` MiB of random data.
    fn seed(&self, mib: usize) -> Seeded {
        let data = random_bytes(mib << 20);
        let cid = self.nodes[0].add(&data);
        Seeded {
            digest: sha256(&data),
            blocks: self.blocks(0),
            size: data.len() as u64,
            cid,
        }
    }

    fn blocks(&self, i: usize) -> u64 {
        self.stat(i, "NumObjects")
    }

    /// The CIDs host `i + 1` stores (`cidfs repo ls`).
    fn refs(&self, i: usize) -> Vec<String> {
        let out = String::from_utf8(self.nodes[i].ok(&["repo", "ls"])).expect("utf-8");
        out.lines().map(str::to_string).collect()
    }

    fn stat(&self, i: usize, key: &str) -> u64 {
        self.nodes[i].stat_u64(key)
    }

    /// Every fetcher `pin add`s `cid` at once; returns their join handles.
    fn fan_out(&self, cid: &str) -> Vec<std::thread::JoinHandle<std::process::Output>> {
        self.nodes[1..]
            .iter()
            .map(|d| d.cli_in_background(&["pin", "add", cid]))
            .collect()
    }

    /// Waits for the fetches; each must succeed, and each fetcher must hold the right bytes.
    fn finish(&self, fetches: Vec<std::thread::JoinHandle<std::process::Output>>, f: &Seeded) {
        for (i, fetch) in fetches.into_iter().enumerate() {
            let out = fetch.join().expect("fetch thread");
            let host = i + 2;
            assert!(
                out.status.success(),
                "host {host}: pin add failed: {}\n--- log ---\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.nodes[i + 1].log()
            );
        }
        for (i, d) in self.nodes.iter().enumerate().skip(1) {
            // from the local store: the pin fetched every block
            let data = d.ok(&["cat", &f.cid]);
            assert_eq!(sha256(&data), f.digest, "host {}: wrong bytes", i + 1);
        }
    }
}

/// The file a seed added.
struct Seeded {
    cid: String,
    digest: String,
    /// Blocks of its DAG (all the seed stores).
    blocks: u64,
    size: u64,
}

/// A fan-out from one seed to 5 fetchers: all get the file, duplicates stay under 10 % of it,
/// and the fetchers serve each other: the seed sends under 2 copies (about 1 with the session
/// divided among them), not one per fetcher.
#[test]
fn fan_out_spreads_over_the_swarm_with_few_duplicates() {
    let s = Swarm::start(5, "200mbit", &[]);
    let f = s.seed(48);
    let fetches = s.fan_out(&f.cid);
    s.finish(fetches, &f);
    let dups: u64 = (1..s.nodes.len())
        .map(|i| s.stat(i, "DuplicateBlocks"))
        .sum();
    assert!(
        dups * 10 < f.blocks,
        "{dups} duplicate blocks received in all, for a file of {} blocks",
        f.blocks
    );
    let sent = s.stat(0, "BytesSent");
    assert!(
        sent < 2 * f.size,
        "the seed sent {sent} bytes ({:.2} copies) to 5 fetchers",
        sent as f64 / f.size as f64
    );
    eprintln!(
        "fan-out to 5: seed sent {:.2} copies, {dups} duplicates",
        sent as f64 / f.size as f64
    );
}

/// The seed dies (SIGKILL) once every fetcher holds half the file (and the fetchers together
/// hold all of it): they finish from each other.
#[test]
fn fetchers_finish_from_each_other_when_the_seed_dies_halfway() {
    let mut s = Swarm::start(4, "100mbit", &[]);
    let f = s.seed(96);
    let fetches = s.fan_out(&f.cid);
    // halfway: every fetcher holds half the blocks, and together they hold all of them (else
    // no swarm could finish without the seed)
    let all = s.refs(0);
    let deadline = Instant::now() + FETCH_BOUND;
    loop {
        let least = (1..s.nodes.len()).map(|i| s.blocks(i)).min().unwrap_or(0);
        if least * 2 >= f.blocks {
            let mut held = std::collections::HashSet::new();
            for i in 1..s.nodes.len() {
                held.extend(s.refs(i));
            }
            if all.iter().all(|c| held.contains(c)) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the fan-out never got halfway");
        std::thread::sleep(Duration::from_millis(50));
    }
    let progress: Vec<u64> = (1..s.nodes.len()).map(|i| s.blocks(i)).collect();
    assert!(
        progress.iter().any(|b| *b < f.blocks),
        "everyone had finished before the seed died: {progress:?}"
    );
    s.nodes[0].kill();
    eprintln!("seed killed at {progress:?} of {} blocks", f.blocks);
    s.finish(fetches, &f);
}

/// A fetcher cut off from the LAN for 5 s in the middle of a fan-out gets back and finishes.
#[test]
fn a_host_partitioned_for_five_seconds_recovers() {
    let s = Swarm::start(3, "100mbit", &[]);
    let f = s.seed(64);
    let fetches = s.fan_out(&f.cid);
    let cut = 2; // host 2, the first fetcher
    let started = eventually(FETCH_BOUND, || {
        (s.blocks(cut - 1) * 5 >= f.blocks).then_some(())
    });
    assert!(
        started.is_some(),
        "host {cut} never got a fifth of the file"
    );
    s.cluster.cut(cut);
    let before = s.blocks(cut - 1);
    std::thread::sleep(Duration::from_secs(5)); // the partition itself, not a synchronisation
    s.cluster.heal(cut);
    assert!(before < f.blocks, "host {cut} finished before the cut");
    s.finish(fetches, &f);
}

/// One fetcher serves corrupt blocks (the test fault switch): the others drop it, finish from
/// the rest, and none of them stores a corrupt block (each `cat` from its own store matches).
#[test]
fn a_peer_serving_corrupt_blocks_is_dropped_and_nothing_corrupt_is_stored() {
    let bad = 2;
    let s = Swarm::start(4, "200mbit", &[(bad, "CIDFS_TEST_CORRUPT_BLOCKS", "1")]);
    let f = s.seed(48);
    let fetches = s.fan_out(&f.cid);
    // the corrupt host's own copy is fine (it verifies what it receives); what it serves is not
    s.finish(fetches, &f);
    let rejected: u64 = (1..s.nodes.len())
        .filter(|i| i + 1 != bad)
        .map(|i| s.stat(i, "RejectedBlocks"))
        .sum();
    let from_bad = s.stat(bad - 1, "BlocksSent");
    assert!(
        from_bad > 0 && rejected > 0,
        "host {bad} sent {from_bad} corrupt blocks; the others rejected {rejected}"
    );
    eprintln!("corrupt host sent {from_bad} blocks; {rejected} rejected");
}
