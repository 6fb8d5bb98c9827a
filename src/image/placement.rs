//! Which node holds which image under the `[[preload]]` rules (pure: no I/O).
//!
//! A rule covers the names its glob matches. `all = true`: every node with the rule holds a
//! copy. `replicas = N`: the swarm keeps at least N full copies, and the nodes agree on who
//! holds them without a coordinator, by rendezvous hashing: every candidate (a node whose rule
//! covers the image) gets the score `SHA-256(image CID ‖ peer id)`, and when the live holders are
//! fewer than N, the best-scored candidates that do not hold it fetch it, as many as are
//! missing. Every node that sees the same candidates and holders picks the same nodes; when a
//! holder leaves, the next candidate in the order replaces it; a node that holds a copy keeps
//! it. Nodes that see the swarm differently for a moment may make an extra copy, never fewer.

use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;

use crate::config::PreloadRule;

/// What a rule asks of the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Want {
    /// Every node with the rule.
    All,
    /// At least this many full copies.
    Replicas(u32),
}

/// A `[[preload]]` rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: glob::Pattern,
    pub want: Want,
    pub platform: Option<cidfs_formats::oci::Platform>,
    pub lazy: bool,
}

impl Rule {
    /// The rule of the config (checked there; checked again here).
    pub fn compile(rule: &PreloadRule) -> anyhow::Result<Rule> {
        let want = match (rule.all, rule.replicas) {
            (true, None) => Want::All,
            (false, Some(n)) if n > 0 => Want::Replicas(n),
            _ => anyhow::bail!(
                "[[preload]] {:?}: `replicas = N` or `all = true`",
                rule.name
            ),
        };
        let platform = rule
            .platform
            .as_deref()
            .map(cidfs_formats::oci::Platform::parse)
            .transpose()?;
        Ok(Rule {
            pattern: rule.pattern()?,
            want,
            platform,
            lazy: rule.lazy,
        })
    }

    /// Whether the rule covers `name` (`repo:tag`): its glob matches the whole name or the repo.
    pub fn covers(&self, name: &str) -> bool {
        covers(&self.pattern, name)
    }
}

/// Whether `pattern` matches `name` (`repo:tag`) or its repo.
pub fn covers(pattern: &glob::Pattern, name: &str) -> bool {
    let repo = name.rsplit_once(':').map_or(name, |(repo, _)| repo);
    pattern.matches(name) || pattern.matches(repo)
}

/// The first of `rules` that covers any of `names` (an image's names).
pub fn first_covering<'r>(rules: &'r [Rule], names: &[String]) -> Option<&'r Rule> {
    rules.iter().find(|r| names.iter().any(|n| r.covers(n)))
}

/// The rendezvous score of `peer` for `image`: higher holds first.
pub fn score(image: &str, peer: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(image.as_bytes());
    h.update([0]);
    h.update(peer.as_bytes());
    h.finalize().into()
}

/// Whether `me` should hold a copy of `image` under `replicas = n`, given the nodes whose rule
/// covers it (`candidates`, `me` among them) and the live nodes that hold it fully
/// (`holders`, candidates or not).
pub fn should_hold(
    image: &str,
    me: &str,
    n: u32,
    candidates: &BTreeSet<String>,
    holders: &BTreeSet<String>,
) -> bool {
    if holders.contains(me) {
        return true;
    }
    let missing = (n as usize).saturating_sub(holders.len());
    let mut order: Vec<(&String, [u8; 32])> = candidates
        .iter()
        .filter(|c| !holders.contains(*c))
        .map(|c| (c, score(image, c)))
        .collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    order.iter().take(missing).any(|(c, _)| c.as_str() == me)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn rule(name: &str, replicas: Option<u32>) -> Rule {
        Rule::compile(&PreloadRule {
            name: name.into(),
            replicas,
            all: replicas.is_none(),
            platform: None,
            lazy: false,
        })
        .expect("rule")
    }

    #[test]
    fn globs_cover_names_and_repos() {
        let team = rule("team/*", None);
        assert!(team.covers("team/app:1.0"));
        assert!(team.covers("team/sub/app:latest"));
        assert!(!team.covers("teamx/app:1.0"));
        assert!(!team.covers("other/app:1.0"));
        let tags = rule("app:1.*", None);
        assert!(tags.covers("app:1.2"));
        assert!(!tags.covers("app:2.0"));
        let exact = rule("app", None);
        assert!(exact.covers("app:latest"));
        assert!(!exact.covers("app2:latest"));
        assert!(rule("*", None).covers("a/b/c:d"));
        let rules = [rule("x/*", Some(1)), rule("*", None)];
        let names = ["x/a:1".to_string(), "y:2".to_string()];
        assert_eq!(
            first_covering(&rules, &names).map(|r| r.want),
            Some(Want::Replicas(1))
        );
        assert!(first_covering(&rules[..1], &names[1..]).is_none());
    }

    /// Every node, given the same view, picks the same holders, exactly as many as missing.
    #[test]
    fn nodes_agree_on_exactly_the_missing_copies() {
        let nodes: Vec<String> = (0..9).map(|i| format!("12D3KooNode{i}")).collect();
        let candidates: BTreeSet<String> = nodes.iter().cloned().collect();
        for image in ["bafyA", "bafyB", "bafyC", "bafyD"] {
            for (n, holders) in [
                (3, set(&[])),
                (3, set(&["pusher"])),
                (2, set(&["12D3KooNode4"])),
            ] {
                let chosen: BTreeSet<String> = nodes
                    .iter()
                    .filter(|me| should_hold(image, me, n, &candidates, &holders))
                    .cloned()
                    .collect();
                let copies: BTreeSet<&String> = chosen.iter().chain(&holders).collect();
                assert_eq!(
                    copies.len(),
                    n as usize,
                    "{image} n={n} holders={holders:?}: {chosen:?}"
                );
                for h in holders.iter().filter(|h| candidates.contains(*h)) {
                    assert!(chosen.contains(h), "a holder keeps its copy");
                }
            }
        }
    }

    #[test]
    fn enough_holders_means_nobody_fetches() {
        let candidates = set(&["a", "b", "c"]);
        let holders = set(&["x", "y"]);
        for me in ["a", "b", "c"] {
            assert!(!should_hold("img", me, 2, &candidates, &holders));
        }
    }

    /// A holder that leaves is replaced by the next candidate in the order, and only by it.
    #[test]
    fn a_holder_that_leaves_is_replaced_by_the_next() {
        let all = set(&["a", "b", "c", "d", "e"]);
        let first: BTreeSet<String> = all
            .iter()
            .filter(|me| should_hold("img", me, 2, &all, &BTreeSet::new()))
            .cloned()
            .collect();
        assert_eq!(first.len(), 2);
        let gone = first.iter().next().expect("one").clone();
        let kept: BTreeSet<String> = first.iter().filter(|p| **p != gone).cloned().collect();
        let live: BTreeSet<String> = all.iter().filter(|p| **p != gone).cloned().collect();
        let now: Vec<&String> = live
            .iter()
            .filter(|me| should_hold("img", me, 2, &live, &kept))
            .collect();
        assert_eq!(now.len(), 2, "{now:?}");
        assert!(now.iter().any(|p| kept.contains(*p)));
        let new: Vec<&&String> = now.iter().filter(|p| !kept.contains(**p)).collect();
        assert_eq!(new.len(), 1);
        // the replacement is the best-scored of those that held nothing
        let best = live
            .iter()
            .filter(|p| !kept.contains(*p))
            .max_by_key(|p| score("img", p))
            .expect("some");
        assert_eq!(**new[0], *best);
    }
}
