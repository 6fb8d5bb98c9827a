//! The swarm at scale (issue 9), on a LAN of network namespaces made by `scripts/cluster.sh`
//! (the benchmark's own harness): one namespace per host, all on one bridge, links shaped by
//! tbf; peers find each other by mDNS, with the seed as a static peer. Each test fans a file out
//! from a seed to several fetchers (`cidfs pin add`) and breaks something on the way: the seed
//! dies halfway, a host is cut off for 5 s, a peer serves corrupt blocks. Every fetcher must end
//! with the right bytes, and duplicates must stay rare.
//!
//! The tests decide on events, never on timing, so they hold on a loaded 2-core machine (CI runs
//! them beside nothing else, but they must not need that): "halfway" is made, not waited for
//! (each fetcher first reads a chosen range with `cat --offset --length`, which fetches only the
//! blocks under it), a peer is frozen (SIGSTOP) or cut off before the step it must miss, and a
//! fault is undone only once its effect has been counted. Quality figures that move with CPU
//! load (the seed's upload, duplicates, makespan) belong to `scripts/bench-fanout.sh`; here
//! they get only bounds that any working swarm meets.

use std::time::{Duration, Instant};

use crate::util::{eventually, random_bytes, sha256, swarm_key, swarm_turn, Cluster, Daemon, Opts};

/// Longest wait for a fan-out to finish.
const FETCH_BOUND: Duration = Duration::from_secs(180);

/// A seed (host 1) and `fetchers` more hosts, all started; `env` goes to the hosts it names.
struct Swarm {
    // dropped in this order: daemons die before their namespaces go, and the turn ends last
    nodes: Vec<Daemon>,
    cluster: Cluster,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Swarm {
    fn start(fetchers: usize, rate: &str, env: &[(usize, &str, &str)]) -> Swarm {
        Swarm::start_with(fetchers, rate, env, None)
    }

    /// [`Swarm::start`], the fetchers with `config` as their config file.
    fn start_with(
        fetchers: usize,
        rate: &str,
        env: &[(usize, &str, &str)],
        config: Option<&str>,
    ) -> Swarm {
        let turn = swarm_turn();
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
            config: config.filter(|_| i > 1).map(str::to_string),
            ..Default::default()
        };
        let seed = Daemon::start(opts(1, Vec::new()));
        let mut nodes = vec![seed];
        for i in 2..=fetchers + 1 {
            let peers = vec![nodes[0].addr.clone()];
            nodes.push(Daemon::start(opts(i, peers)));
        }
        let s = Swarm {
            nodes,
            cluster,
            _turn: turn,
        };
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

    /// Hosts `hosts` (indexes into `nodes`) `pin add` `cid` at once.
    fn fan_out(&self, hosts: impl IntoIterator<Item = usize>, cid: &str) -> Vec<Fetch> {
        self.fan_out_with(hosts, &["pin", "add", cid])
    }

    /// Runs `cidfs <args>` on `hosts` at once, in the background.
    fn fan_out_with(&self, hosts: impl IntoIterator<Item = usize>, args: &[&str]) -> Vec<Fetch> {
        hosts
            .into_iter()
            .map(|i| (i, self.nodes[i].cli_in_background(args)))
            .collect()
    }

    /// Waits for the fetches; each must succeed, and each of those hosts must then hold the
    /// right bytes.
    fn finish(&self, fetches: Vec<Fetch>, f: &Seeded) {
        let hosts: Vec<usize> = fetches.iter().map(|(i, _)| *i).collect();
        for (i, fetch) in fetches {
            let out = fetch.join().expect("fetch thread");
            assert!(
                out.status.success(),
                "host {}: pin add failed: {}\n--- log ---\n{}",
                i + 1,
                String::from_utf8_lossy(&out.stderr),
                self.nodes[i].log()
            );
        }
        for i in hosts {
            // from the local store: the pin fetched every block
            let data = self.nodes[i].ok(&["cat", &f.cid]);
            assert_eq!(sha256(&data), f.digest, "host {}: wrong bytes", i + 1);
        }
    }
}

/// A `pin add` running in the background on host `.0 + 1`.
type Fetch = (usize, std::thread::JoinHandle<std::process::Output>);

/// The file a seed added.
struct Seeded {
    cid: String,
    digest: String,
    /// Blocks of its DAG (all the seed stores).
    blocks: u64,
    size: u64,
}

/// A fan-out from one seed to 5 fetchers: all get the file intact, and the fetchers serve each
/// other. What must hold under any load: the seed sends fewer copies than there are fetchers (it
/// would send one each if they did not share; `scripts/bench-fanout.sh` measures about 1 with
/// the session divided, up to 2.1 on a loaded machine, where slow fetchers time out on their
/// owners and fall back to the seed), and duplicates stay under one extra copy of the file across
/// all fetchers (the same fallbacks cause them; the benchmark sees well under 10 %).
#[test]
fn fan_out_spreads_over_the_swarm_with_few_duplicates() {
    const FETCHERS: u64 = 5;
    let s = Swarm::start(FETCHERS as usize, "200mbit", &[]);
    let f = s.seed(48);
    let fetches = s.fan_out(1..s.nodes.len(), &f.cid);
    s.finish(fetches, &f);
    let dups: u64 = (1..s.nodes.len())
        .map(|i| s.stat(i, "DuplicateBlocks"))
        .sum();
    let sent = s.stat(0, "BytesSent");
    eprintln!(
        "fan-out to {FETCHERS}: seed sent {:.2} copies, {dups} duplicate blocks of {}",
        sent as f64 / f.size as f64,
        f.blocks
    );
    assert!(
        dups < f.blocks,
        "{dups} duplicate blocks received in all, for a file of {} blocks",
        f.blocks
    );
    assert!(
        sent < FETCHERS * f.size,
        "the seed sent {sent} bytes ({:.2} copies) to {FETCHERS} fetchers: they did not share",
        sent as f64 / f.size as f64
    );
}

/// Every whole read shares a fan-out as `pin add` does (issue 20): 5 hosts `cat` one file at
/// once, each gets the right bytes, and the seed sends under 2.5 copies (measured: 1.00 shared,
/// 3.47 when each `cat` fetched on its own).
#[test]
fn a_fan_out_of_cat_is_shared_as_pin_add_is() {
    const FETCHERS: u64 = 5;
    let s = Swarm::start(FETCHERS as usize, "200mbit", &[]);
    let f = s.seed(48);
    for (i, fetch) in s.fan_out_with(1..s.nodes.len(), &["cat", &f.cid]) {
        let out = fetch.join().expect("fetch thread");
        assert!(
            out.status.success(),
            "host {}: cat failed: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sha256(&out.stdout), f.digest, "host {}: wrong bytes", i + 1);
    }
    let sent = s.stat(0, "BytesSent");
    eprintln!(
        "cat fan-out to {FETCHERS}: seed sent {:.2} copies",
        sent as f64 / f.size as f64
    );
    assert!(
        sent * 2 < 5 * f.size,
        "the seed sent {sent} bytes ({:.2} copies) to {FETCHERS} readers: they did not share",
        sent as f64 / f.size as f64
    );
}

/// The seed dies halfway through a fan-out: the fetchers finish from each other. Halfway is
/// made, not raced to: fetcher k first reads the half of the file that starts at quarter k
/// (so each holds half, and together they hold all of it); then the seed is frozen, the fan-out
/// starts, and once the fetchers have traded blocks the seed is killed. The seed sends nothing
/// after the freeze, so every block the fetchers still lacked came from each other.
#[test]
fn fetchers_finish_from_each_other_when_the_seed_dies_halfway() {
    let mut s = Swarm::start(4, "100mbit", &[]);
    let f = s.seed(96);
    let quarter = f.size / 4;
    for k in 0..4u64 {
        let host = &s.nodes[k as usize + 1];
        for (offset, length) in wrapping(k * quarter, 2 * quarter, f.size) {
            host.ok(&[
                "cat",
                &f.cid,
                "--offset",
                &offset.to_string(),
                "--length",
                &length.to_string(),
            ]);
        }
    }
    let staged: Vec<u64> = (1..s.nodes.len()).map(|i| s.blocks(i)).collect();
    assert!(
        staged.iter().all(|b| *b < f.blocks),
        "a fetcher holds the whole file after reading half of it: {staged:?} of {}",
        f.blocks
    );
    let mut held = std::collections::HashSet::new();
    for i in 1..s.nodes.len() {
        held.extend(s.refs(i));
    }
    let missing = s.refs(0).into_iter().filter(|c| !held.contains(c)).count();
    assert_eq!(missing, 0, "the fetchers together lack {missing} blocks");

    s.nodes[0].pause();
    let fetches = s.fan_out(1..s.nodes.len(), &f.cid);
    let traded = eventually(FETCH_BOUND, || {
        let now: u64 = (1..s.nodes.len()).map(|i| s.blocks(i)).sum();
        (now > staged.iter().sum()).then_some(())
    });
    assert!(
        traded.is_some(),
        "the fetchers traded no block in {FETCH_BOUND:?} with the seed frozen"
    );
    s.nodes[0].kill();
    eprintln!(
        "seed frozen at {staged:?} of {} blocks, then killed",
        f.blocks
    );
    s.finish(fetches, &f);
}

/// `(offset, length)` ranges covering `length` bytes from `start` in a file of `size`, wrapping
/// round its end.
fn wrapping(start: u64, length: u64, size: u64) -> Vec<(u64, u64)> {
    let first = length.min(size - start);
    let mut v = vec![(start, first)];
    if first < length {
        v.push((0, length - first));
    }
    v
}

/// A fetcher cut off from the LAN for 5 s in the middle of a fan-out gets back and finishes.
/// In the middle is made: it has read the first fifth of the file, the others' fetches are under
/// way, and it is cut off before its own fetch starts, so it cannot have finished before the cut.
#[test]
fn a_host_partitioned_for_five_seconds_recovers() {
    let s = Swarm::start(3, "100mbit", &[]);
    let f = s.seed(64);
    let cut = 2; // host 2, the first fetcher
    let fifth = (f.size / 5).to_string();
    s.nodes[cut - 1].ok(&["cat", &f.cid, "--length", &fifth]);
    let mut fetches = s.fan_out(cut..s.nodes.len(), &f.cid);
    s.cluster.cut(cut);
    let before = s.blocks(cut - 1);
    assert!(
        before < f.blocks,
        "host {cut} holds the file before its fetch"
    );
    fetches.extend(s.fan_out([cut - 1], &f.cid));
    std::thread::sleep(Duration::from_secs(5)); // the partition itself, not a synchronisation
    s.cluster.heal(cut);
    s.finish(fetches, &f);
}

/// One fetcher serves corrupt blocks (the test fault switch): the others drop it, finish from
/// the rest, and none of them stores a corrupt block (each `cat` from its own store matches).
/// The corrupt host first fetches the whole file (its own copy is fine: it verifies what it
/// receives; what it serves is not), then the seed is frozen, so the others' first blocks can
/// only come from the corrupt host or each other; the seed is thawed once they have rejected a
/// corrupt block.
#[test]
fn a_peer_serving_corrupt_blocks_is_dropped_and_nothing_corrupt_is_stored() {
    let bad = 2;
    let s = Swarm::start(4, "200mbit", &[(bad, "CIDFS_TEST_CORRUPT_BLOCKS", "1")]);
    let f = s.seed(48);
    s.nodes[bad - 1].ok(&["pin", "add", &f.cid]);
    s.nodes[0].pause();
    let good: Vec<usize> = (1..s.nodes.len()).filter(|i| i + 1 != bad).collect();
    let fetches = s.fan_out(good.iter().copied(), &f.cid);
    let rejected = || -> u64 { good.iter().map(|&i| s.stat(i, "RejectedBlocks")).sum() };
    let seen = eventually(FETCH_BOUND, || (rejected() > 0).then_some(()));
    s.nodes[0].resume();
    assert!(
        seen.is_some(),
        "no corrupt block was rejected in {FETCH_BOUND:?} with the seed frozen"
    );
    s.finish(fetches, &f);
    let from_bad = s.stat(bad - 1, "BlocksSent");
    assert!(from_bad > 0, "host {bad} sent no block");
    eprintln!(
        "corrupt host sent {from_bad} blocks; {} rejected",
        rejected()
    );
}

/// Names stay one table across a partition: while host 3 is cut off, host 1 sets two names and
/// host 3 then sets one of them to another image; once healed, every host agrees within seconds,
/// the later value of the contested name winning everywhere. Here the partition is short: the
/// connections stay open and the sends that failed across it are sent again.
#[test]
fn names_agree_after_a_partition_heals() {
    names_agree_across_a_partition(|_| {
        // the partition itself, not a synchronisation: longer than a send may take, so the
        // changes sent across it fail and must be sent again once it heals
        std::thread::sleep(Duration::from_secs(8));
    });
}

/// [`names_agree_after_a_partition_heals`] with a partition long enough that host 1 and host 3
/// close their connections to each other (no ping answered): once healed, they are dialled
/// afresh (TCP connections that carried nothing for that long would take up to minutes to
/// move again) and every host agrees within seconds.
#[test]
fn names_agree_after_a_partition_that_closed_the_connections() {
    names_agree_across_a_partition(|s| {
        let closed = "answered no ping";
        let bound = Duration::from_secs(60);
        for host in [0, 2] {
            assert!(
                s.nodes[host].wait_log(closed, bound),
                "host {} closed no connection in {bound:?} of partition",
                host + 1
            );
        }
    });
}

/// Host 3 is cut off, names are set on both sides, `partition` runs, host 3 is healed: every
/// host must agree within 30 s.
fn names_agree_across_a_partition(partition: impl FnOnce(&Swarm)) {
    const LOG: &str = "info,cidfs_p2p=debug,cidfs::image::names_sync=debug";
    let s = Swarm::start(
        2,
        "100mbit",
        &[
            (1, "RUST_LOG", LOG),
            (2, "RUST_LOG", LOG),
            (3, "RUST_LOG", LOG),
        ],
    );
    let first = s.seed(1).cid;
    let second = s.seed(1).cid;
    s.cluster.cut(3);
    s.nodes[0].ok(&["image", "tag", &first, "team/x:1"]);
    s.nodes[0].ok(&["image", "tag", &first, "team/only-a:1"]);
    s.nodes[2].ok(&["image", "tag", &second, "team/x:1"]);
    let agreed = |d: &Daemon| {
        let ls = String::from_utf8_lossy(&d.ok(&["image", "ls"])).into_owned();
        let has =
            |name: &str, cid: &str| ls.lines().any(|l| l.starts_with(name) && l.contains(cid));
        has("team/x:1 ", &second) && has("team/only-a:1 ", &first)
    };
    partition(&s);
    assert!(!agreed(&s.nodes[0]), "host 1 heard host 3 across the cut");
    s.cluster.heal(3);
    let healed = Instant::now();
    let all = eventually(Duration::from_secs(30), || {
        s.nodes.iter().all(&agreed).then_some(())
    });
    if all.is_some() {
        eprintln!("names agreed {:?} after the heal", healed.elapsed());
        return;
    }
    let tables = s
        .nodes
        .iter()
        .map(|d| String::from_utf8_lossy(&d.ok(&["image", "ls"])).into_owned());
    let logs = s.nodes.iter().map(|d| d.log());
    let mut report = String::new();
    for (i, (table, log)) in tables.zip(logs).enumerate() {
        report += &format!("--- host {} ---\n{table}\n{log}\n", i + 1);
    }
    panic!("the hosts disagree 30 s after the heal:\n{report}");
}

/// `[[preload]] all = true` on six fetchers: an image the seed pushes and names is fetched and
/// pinned by all six in the background, sharing the work, so the seed sends at most 1.5 copies
/// of it (the bound; measured: see the test's output).
#[test]
fn preload_all_gives_every_host_a_copy_and_the_seed_sends_few() {
    const FETCHERS: usize = 6;
    let rule = "[[preload]]\nname = \"team/*\"\nall = true\n";
    let s = Swarm::start_with(FETCHERS, "200mbit", &[], Some(rule));
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    crate::images::gen::build_oci_layout(
        &layout,
        &crate::images::gen::GenSpec {
            big_file_size: 48 << 20,
            ..Default::default()
        },
    );
    let seed = &s.nodes[0];
    let source = format!("oci:{}:latest", layout.display());
    let cid = String::from_utf8(seed.ok(&["image", "push", "--quiet", &source]))
        .expect("utf-8")
        .trim()
        .to_string();
    let before = s.stat(0, "BytesSent");
    seed.ok(&["image", "tag", &cid, "team/app:1"]);
    let held = eventually(FETCH_BOUND, || {
        let v: serde_json::Value =
            serde_json::from_slice(&seed.ok(&["image", "ls", "--json"])).expect("json");
        let n = v["Names"][0]["Holders"].as_array().map_or(0, Vec::len);
        let size = v["Names"][0]["Size"].as_u64().unwrap_or(0);
        (n == FETCHERS + 1).then_some(size)
    });
    let size = held.unwrap_or_else(|| {
        panic!(
            "not every host holds the image:\n{}\n--- host 2 ---\n{}",
            String::from_utf8_lossy(&seed.ok(&["image", "ls", "--holders"])),
            s.nodes[1].log()
        )
    });
    let sent = s.stat(0, "BytesSent") - before;
    eprintln!(
        "preload all to {FETCHERS}: seed sent {:.2} copies of {size} bytes",
        sent as f64 / size as f64
    );
    assert!(
        sent * 2 <= size * 3,
        "the seed sent {sent} bytes ({:.2} copies of {size}): the hosts did not share",
        sent as f64 / size as f64
    );
    for (i, d) in s.nodes.iter().enumerate().skip(1) {
        assert!(
            d.wait_log("fetched and pinned", Duration::from_secs(5)),
            "host {}: no preload in its log",
            i + 1
        );
    }
}
