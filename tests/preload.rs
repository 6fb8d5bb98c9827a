//! `[[preload]]` rules (issue 23): images named in the swarm are fetched and pinned in the
//! background by the nodes whose rules cover them, `replicas = N` keeps N full copies (the
//! pusher's counting) and replaces a holder that leaves, `lazy = true` pins only the image's
//! metadata. The swarm-scale case (7 hosts, `all = true`, the seed sending each block about once)
//! is in `cluster.rs`.

use crate::util::{eventually, swarm_key, swarm_turn, Daemon, Opts};
use std::collections::BTreeSet;
use std::time::Duration;

/// Longest wait for a preload to be done and known to the pusher.
const BOUND: Duration = Duration::from_secs(90);

fn node(key: &str, peers: Vec<String>, config: Option<&str>) -> Daemon {
    Daemon::start(Opts {
        swarm_key: Some(key.to_string()),
        peers,
        config: config.map(str::to_string),
        ..Default::default()
    })
}

/// The peer ids that `d` says hold the image named `name` fully.
fn holders(d: &Daemon, name: &str) -> BTreeSet<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&d.ok(&["image", "ls", "--json"])).expect("json");
    v["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["Name"] == name)
        .flat_map(|n| n["Holders"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect()
}

fn pins(d: &Daemon) -> Vec<String> {
    String::from_utf8(d.ok(&["pin", "ls"]))
        .expect("utf-8")
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Waits until every node in `nodes` is connected to `n` peers.
fn mesh(nodes: &[&Daemon], n: usize) {
    for d in nodes {
        let seen = eventually(Duration::from_secs(30), || {
            let out = d.cli(&["swarm", "peers"]);
            (String::from_utf8_lossy(&out.stdout).lines().count() >= n).then_some(())
        });
        assert!(seen.is_some(), "{} sees fewer than {n} peers", d.peer_id);
    }
}

/// A pushes `team/app:1.0`; B, C and D have `replicas = 2` for `team/*`. The pusher's copy
/// counts, so exactly one of them fetches and pins the image, and the others leave it alone;
/// when that one is killed, exactly one of the two left replaces it. `image ls` on A shows the
/// copies and who holds them.
#[test]
fn replicas_are_kept_and_a_holder_that_leaves_is_replaced() {
    let _turn = swarm_turn();
    let key = swarm_key();
    let rule = "[[preload]]\nname = \"team/*\"\nreplicas = 2\n";
    let a = node(&key, vec![], None);
    let b = node(&key, vec![a.addr.clone()], Some(rule));
    let c = node(&key, vec![a.addr.clone(), b.addr.clone()], Some(rule));
    let d = node(
        &key,
        vec![a.addr.clone(), b.addr.clone(), c.addr.clone()],
        Some(rule),
    );
    mesh(&[&a, &b, &c, &d], 3);
    let pushed = crate::push::push_busybox(&a);
    let name = "team/app:1.0";
    let two = |from: &Daemon| {
        eventually(BOUND, || {
            let h = holders(from, name);
            (h.len() == 2).then_some(h)
        })
    };
    let first = two(&a).unwrap_or_else(|| {
        panic!(
            "not 2 copies within {BOUND:?}: {:?}\n--- B ---\n{}",
            holders(&a, name),
            b.log()
        )
    });
    assert!(
        first.contains(&a.peer_id),
        "the pusher holds a copy: {first:?}"
    );
    let mut fetchers = vec![b, c, d];
    let chosen = fetchers
        .iter()
        .position(|n| first.contains(&n.peer_id))
        .expect("one of B, C, D holds it");
    let ls = String::from_utf8(a.ok(&["image", "ls", "--holders"])).expect("utf-8");
    assert!(
        ls.contains(&pushed.cid) && ls.contains(&format!("held by {}", fetchers[chosen].peer_id)),
        "{ls}"
    );
    for (i, n) in fetchers.iter().enumerate() {
        if i != chosen {
            assert!(
                pins(n).is_empty(),
                "{} pinned without being chosen",
                n.peer_id
            );
        }
    }
    // the holder leaves (killed by PID when dropped); one of the other two replaces it
    let gone = fetchers.remove(chosen);
    let gone_id = gone.peer_id.clone();
    drop(gone);
    let again = eventually(BOUND, || {
        let h = holders(&a, name);
        (h.len() == 2 && !h.contains(&gone_id)).then_some(h)
    })
    .unwrap_or_else(|| panic!("the copy was not replaced: {:?}", holders(&a, name)));
    let replaced: Vec<&Daemon> = fetchers
        .iter()
        .filter(|n| again.contains(&n.peer_id))
        .collect();
    assert_eq!(replaced.len(), 1, "{again:?}");
    assert!(replaced[0].wait_log("fetched and pinned", Duration::from_secs(10)));
    // its copy is whole: with the pusher gone too, it pulls the image by name from its store
    drop(a);
    let out = pushed.work.path().join("replica");
    replaced[0].ok(&[
        "image",
        "pull",
        name,
        "--to",
        &format!("oci:{}:v1", out.display()),
    ]);
}

/// `lazy = true`: the node pins the image's index, manifests and configs, not its layers, and
/// counts as holding it the way its rule asks. When the name goes, the preload is released.
#[test]
fn a_lazy_preload_pins_the_metadata_alone() {
    let _turn = swarm_turn();
    let key = swarm_key();
    let a = node(&key, vec![], None);
    let rule = "[[preload]]\nname = \"team/*\"\nall = true\nlazy = true\n";
    let b = node(&key, vec![a.addr.clone()], Some(rule));
    mesh(&[&a, &b], 1);
    let pushed = crate::push::push_busybox(&a);
    let held = eventually(BOUND, || {
        holders(&a, "team/app:1.0")
            .contains(&b.peer_id)
            .then_some(())
    });
    assert!(held.is_some(), "B did not preload:\n{}", b.log());
    let (on_a, on_b) = (pins(&a), pins(&b));
    assert!(on_b.contains(&pushed.cid), "{on_b:?}");
    assert!(
        !on_b.is_empty() && on_b.len() < on_a.len(),
        "B pinned {on_b:?}, A (whole image) {on_a:?}"
    );
    assert!(on_b.iter().all(|c| on_a.contains(c)));
    // the name goes (A keeps its pins): B's preload is released, its pins with it
    a.ok(&["image", "rm", "--keep", "team/app:1.0"]);
    let released = eventually(BOUND, || pins(&b).is_empty().then_some(()));
    assert!(
        released.is_some(),
        "B still pins {:?}:\n{}",
        pins(&b),
        b.log()
    );
    assert!(b.wait_log("no name stands for it any more", Duration::from_secs(5)));
    assert_eq!(pins(&a), on_a, "A's pins are its own");
}

/// Disk pressure (`store.gc_target_mb`, far below what B holds): B keeps the copy its
/// `replicas = 2` rule asks for (the pusher's and B's are the only two) through its eviction
/// rounds; once C (`all = true`) holds a third copy, B's is an extra one, and B lets it go: its
/// pins are taken back and gc reclaims the blocks, while A and C still hold the image.
#[test]
fn a_node_over_its_gc_target_keeps_the_copies_its_rule_asks_for() {
    let _turn = swarm_turn();
    let key = swarm_key();
    let a = node(&key, vec![], None);
    let b = node(
        &key,
        vec![a.addr.clone()],
        Some("[store]\ngc_target_mb = 1\n\n[[preload]]\nname = \"team/*\"\nreplicas = 2\n"),
    );
    mesh(&[&a, &b], 1);
    let name = "team/app:1.0";
    crate::push::push_busybox(&a);
    let both = eventually(BOUND, || (holders(&a, name).len() == 2).then_some(()));
    assert!(both.is_some(), "B did not preload:\n{}", b.log());
    assert!(
        b.wait_log(
            "the copies the [[preload]] rules ask for",
            Duration::from_secs(30)
        ),
        "no eviction round on B over its target:\n{}",
        b.log()
    );
    assert!(
        holders(&a, name).contains(&b.peer_id),
        "B dropped a copy its rule asks for"
    );
    assert!(!pins(&b).is_empty());

    let c = node(
        &key,
        vec![a.addr.clone(), b.addr.clone()],
        Some("[[preload]]\nname = \"team/*\"\nall = true\n"),
    );
    let want: BTreeSet<String> = [a.peer_id.clone(), c.peer_id.clone()].into();
    let moved = eventually(BOUND, || (holders(&a, name) == want).then_some(()));
    assert!(
        moved.is_some(),
        "holders {:?}, want A and C:\n--- B ---\n{}",
        holders(&a, name),
        b.log()
    );
    assert!(b.wait_log("preload: evicted", Duration::from_secs(5)));
    assert!(pins(&b).is_empty(), "B still pins {:?}", pins(&b));
}

/// A multi-platform index pushed with `skopeo copy --all`: A converts both images; B, whose rule
/// says `platform = "linux/arm64"`, pins the index and the arm64 image only, holds it as its rule
/// asks, and pulls that platform by name.
#[test]
fn a_platform_rule_preloads_one_platform_of_a_pushed_index() {
    let _turn = swarm_turn();
    let key = swarm_key();
    let a = node(&key, vec![], None);
    let rule = "[[preload]]\nname = \"team/*\"\nall = true\nplatform = \"linux/arm64\"\n";
    let b = node(&key, vec![a.addr.clone()], Some(rule));
    mesh(&[&a, &b], 1);
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("multi");
    crate::images::gen::build_multi_platform_layout(
        &layout,
        &crate::images::gen::GenSpec {
            big_file_size: 1 << 20,
            ..Default::default()
        },
    );
    crate::images::runtimes::skopeo_ok(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{}/team/multi:1", a.registry),
    ]);
    let inspect: serde_json::Value =
        serde_json::from_slice(&a.ok(&["image", "inspect", "--json", "team/multi:1"]))
            .expect("json");
    assert_eq!(
        inspect["images"].as_array().map(Vec::len),
        Some(2),
        "{inspect}"
    );
    let held = eventually(BOUND, || {
        holders(&a, "team/multi:1")
            .contains(&b.peer_id)
            .then_some(())
    });
    assert!(held.is_some(), "B did not preload:\n{}", b.log());
    let (on_a, on_b) = (pins(&a), pins(&b));
    // A: index, 2 manifests, 2 configs, 4 layers; B: index, the arm64 manifest, config, 2 layers
    assert_eq!(on_b.len() + 4, on_a.len(), "A {on_a:?}\nB {on_b:?}");
    assert!(on_b.iter().all(|c| on_a.contains(c)));
    let out = work.path().join("arm64");
    b.ok(&[
        "image",
        "pull",
        "--platform",
        "linux/arm64",
        "team/multi:1",
        "--to",
        &format!("oci:{}:v1", out.display()),
    ]);
}
