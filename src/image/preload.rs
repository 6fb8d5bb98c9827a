//! The `[[preload]]` worker: when a name appears or moves, or the swarm's copies change, this
//! node works out which named images it holds fully, tells its peers ([`super::copies`]), and
//! fetches and pins in the background those its rules give it ([`super::placement`]): every
//! image a rule with `all = true` covers, and those a `replicas = N` rule places here. The fetch
//! is a `pin add` of the image's blobs, so nodes that preload one image at once share the work
//! (the seed sends each block about once); `lazy = true` pins the index, manifests and configs
//! and reads each eStargz layer's table of contents.
//!
//! What it found out about each image (size, whether it is held) is kept for `image ls`
//! ([`Catalog`]). At most [`FETCHES`] images are fetched at once; a failed one is tried again
//! after [`RETRY_AFTER`].
//!
//! **Eviction.** With `store.gc_target_mb`, every [`EVICT_EVERY`] a store over its target is
//! collected down to it: unpinned blocks first (`repo gc --target`), then the images this node
//! preloaded that the rules no longer ask of it, oldest first: an image no rule covers any more
//! (its name moved on), or an extra copy of a `replicas = N` image (more than N live holders;
//! of the holders that could let it go, the lowest-ranked goes first, so two nodes do not drop
//! the same extra copy at once). The copies a rule asks for (every `all = true` image, the last
//! N of a `replicas` one) are never evicted. Each preload records the pins it added (the tree
//! [`TREE`]), and an eviction takes back only those, and none another held image needs.
//!
//! A preloaded image that no name stands for any more (its name moved on or went) is released
//! at once the same way: its pins go, and `repo gc` (or the gc target) frees its blocks.

use cid::Cid;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::blob_store::BlobStore as _;
use super::copies::{Copies, RuleSummary, Status};
use super::names::Names;
use super::placement::{self, Rule, Want};
use super::pull;
use crate::blockservice::BlockService;

/// Images fetched at once.
pub const FETCHES: usize = 2;
/// A failed preload is tried again after this.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Plans are made at least this often (besides every change).
pub const TICK: Duration = Duration::from_secs(3);
/// Plans are at least this far apart ([`Pace`]): the first change after a quiet spell is planned
/// at once (a push reaches the nodes that preload it without waiting), and a burst of changes
/// made within this of a plan waits for one more (each plan reads the whole name table).
pub const SETTLE: Duration = Duration::from_millis(200);

/// When the next plan may start: [`SETTLE`] after the last.
#[derive(Default)]
struct Pace {
    last: Option<std::time::Instant>,
}

impl Pace {
    /// How long a change that came at `now` waits before it is planned.
    fn wait(&self, now: std::time::Instant) -> Duration {
        self.last
            .map_or(Duration::ZERO, |last| SETTLE.saturating_sub(now - last))
    }

    fn planned(&mut self, at: std::time::Instant) {
        self.last = Some(at);
    }
}

/// Images whose facts are remembered.
const MAX_FACTS: usize = 10_000;
/// How often a store over `store.gc_target_mb` is brought back to it.
pub const EVICT_EVERY: Duration = Duration::from_secs(10);
/// The store tree of the preloads' records: image CID → [`Preloaded`].
pub const TREE: &str = "preloaded";

/// What a preload pinned, so that an eviction takes back only that.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Preloaded {
    /// The CIDs it pinned that were not pinned before.
    pinned: Vec<String>,
    /// When, seconds since the epoch.
    at: u64,
}

/// What this node knows of an image.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Bytes of its blobs (of the platforms kept), once its index and manifests are here.
    pub size: Option<u64>,
    /// Its blobs' CIDs and sizes (layers included), once known.
    blobs: Option<Vec<(Cid, u64)>>,
    /// Whether this node preloads it, and how.
    pub preload: Option<String>,
}

/// The facts of every named image, shared with the API; cheap to clone.
#[derive(Clone, Default)]
pub struct Catalog(Arc<Mutex<HashMap<String, Facts>>>);

impl Catalog {
    /// What is known of `image`.
    pub fn get(&self, image: &str) -> Option<Facts> {
        crate::sync::lock(&self.0).get(image).cloned()
    }
}

/// Starts the worker; it runs until the process ends. Its records are in `preloaded` (the
/// store's [`TREE`]); `gc_target` is `store.gc_target_mb` in bytes (None: no eviction).
pub fn spawn(
    blocks: BlockService,
    names: Names,
    copies: Copies,
    rules: &[crate::config::PreloadRule],
    preloaded: sled::Tree,
    gc_target: Option<u64>,
) -> anyhow::Result<Catalog> {
    let compiled = rules
        .iter()
        .map(Rule::compile)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let summaries = rules
        .iter()
        .zip(&compiled)
        .map(|(r, c)| RuleSummary {
            name: r.name.clone(),
            want: c.want,
        })
        .collect();
    let catalog = Catalog::default();
    let worker = Worker {
        local: blocks.local_only(),
        blocks,
        names,
        copies,
        rules: compiled,
        summaries,
        catalog: catalog.clone(),
        running: Arc::default(),
        failed: Arc::default(),
        turns: Arc::new(tokio::sync::Semaphore::new(FETCHES)),
        done: tokio::sync::watch::channel(()).0,
        preloaded,
        gc_target,
        last_evict: Mutex::new(None),
    };
    tokio::spawn(worker.run());
    Ok(catalog)
}

/// A named image as the name table has it now.
#[derive(Default)]
struct Entry {
    names: Vec<String>,
    /// When it was last named (ns).
    named_ns: u64,
}

/// How much of an image this node holds ([`Worker::holding`]).
enum Holding {
    Fully(u64),
    Partly(u64),
    Not,
}

struct Worker {
    blocks: BlockService,
    /// The local store alone: checking what is held never fetches.
    local: BlockService,
    names: Names,
    copies: Copies,
    rules: Vec<Rule>,
    summaries: Vec<RuleSummary>,
    catalog: Catalog,
    running: Arc<Mutex<BTreeSet<String>>>,
    failed: Arc<Mutex<HashMap<String, Instant>>>,
    turns: Arc<tokio::sync::Semaphore>,
    /// Bumped when a fetch ends.
    done: tokio::sync::watch::Sender<()>,
    preloaded: sled::Tree,
    gc_target: Option<u64>,
    last_evict: Mutex<Option<Instant>>,
}

impl Worker {
    async fn run(self) {
        let mut names = self.names.changes();
        let mut view = self.copies.view_changes();
        let mut done = self.done.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pace = Pace::default();
        loop {
            tokio::select! {
                r = names.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                    return;
                },
                _ = view.changed() => {}
                _ = done.changed() => {}
                _ = tick.tick() => {}
            }
            // a burst of changes (a peer's whole table merged, statuses from many peers) makes
            // a plan per SETTLE: what came meanwhile is taken together
            tokio::time::sleep(pace.wait(std::time::Instant::now())).await;
            loop {
                match names.try_recv() {
                    Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::TryRecvError::Closed) => return,
                    Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                }
            }
            view.mark_unchanged();
            done.mark_unchanged();
            pace.planned(std::time::Instant::now());
            if let Err(e) = self.plan().await {
                tracing::warn!("preload: {e:#}");
            }
        }
    }

    /// One round: what is held, told to the peers; what to fetch, started.
    async fn plan(&self) -> anyhow::Result<()> {
        let names = self.names.clone();
        let all = tokio::task::spawn_blocking(move || names.all()).await??;
        // each named image, its names, and when it was last named; the latest name of all
        let mut images: BTreeMap<String, Entry> = BTreeMap::new();
        let mut names_ns = 0;
        for (name, named) in all {
            names_ns = names_ns.max(named.time_ns);
            let e = images.entry(named.cid).or_default();
            e.named_ns = e.named_ns.max(named.time_ns);
            e.names.push(name);
        }
        let pins: BTreeSet<Cid> = self
            .blocks
            .with_store(|s| s.pins())
            .await?
            .into_iter()
            .collect();
        let (mut held, mut partial) = (BTreeMap::new(), BTreeMap::new());
        let mut covered = Vec::new();
        for (image, e) in &images {
            let rule = placement::first_covering(&self.rules, &e.names);
            match self.holding(image, rule, &pins).await {
                Holding::Fully(size) => _ = held.insert(image.clone(), size),
                Holding::Partly(bytes) => _ = partial.insert(image.clone(), bytes),
                Holding::Not => {}
            }
            if let Some(rule) = rule {
                covered.push((image, e, rule));
            }
        }
        {
            let mut facts = crate::sync::lock(&self.catalog.0);
            facts.retain(|k, _| images.contains_key(k));
        }
        self.copies.set_mine(Status {
            held: held.clone(),
            partial,
            rules: self.summaries.clone(),
            names_ns,
            made_ns: 0, // set_mine sets it
        });
        for (image, e, rule) in covered {
            if !held.contains_key(image) && self.wants(image, &e.names, e.named_ns, rule) {
                self.start(image, &e.names, rule);
            }
        }
        self.release_unnamed(&images, &held).await?;
        self.evict_if_due(&images, &held).await
    }

    /// Brings the store back to its gc target when it is over it and [`EVICT_EVERY`] passed.
    async fn evict_if_due(
        &self,
        images: &BTreeMap<String, Entry>,
        held: &BTreeMap<String, u64>,
    ) -> anyhow::Result<()> {
        let Some(target) = self.gc_target else {
            return Ok(());
        };
        {
            let mut last = crate::sync::lock(&self.last_evict);
            if last.is_some_and(|l| l.elapsed() < EVICT_EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let bytes = self.blocks.with_store(|s| s.stat()).await?.bytes;
        if bytes <= target {
            return Ok(());
        }
        let gc = move |s: &dyn crate::blockstore::Blocks| crate::blockstore::gc_to(s, Some(target));
        let mut left = self.blocks.collect(gc).await?.left_bytes;
        tracing::info!("store: {bytes} bytes, over its gc target of {target}: garbage collected down to {left}");
        if left <= target {
            return Ok(());
        }
        let records = self.records().await?;
        for (image, _) in &records {
            if left <= target {
                break;
            }
            let names = images.get(image).map(|e| e.names.as_slice());
            if !held.contains_key(image) || !self.may_evict(image, names) {
                continue;
            }
            self.release(image, &records, held).await?;
            left = self.blocks.collect(gc).await?.left_bytes;
            tracing::info!(
                "preload: evicted {image} ({} live holders), the store is down to {left} bytes",
                self.copies.holders(image).len()
            );
        }
        if left > target {
            tracing::warn!(
                "store: {left} bytes, over store.gc_target_mb ({target} bytes): the rest is pinned, or the copies the [[preload]] rules ask for"
            );
        }
        Ok(())
    }

    /// The preloads' records, oldest first.
    async fn records(&self) -> anyhow::Result<Vec<(String, Preloaded)>> {
        let tree = self.preloaded.clone();
        let mut records = tokio::task::spawn_blocking(move || {
            tree.iter()
                .filter_map(|e| {
                    let (k, v) = e.ok()?;
                    let rec: Preloaded = serde_json::from_slice(&v).ok()?;
                    Some((String::from_utf8_lossy(&k).into_owned(), rec))
                })
                .collect::<Vec<_>>()
        })
        .await?;
        records.sort_by_key(|(_, r)| r.at);
        Ok(records)
    }

    /// Takes back the pins the preload of `image` added (of `records`), but those another held
    /// image or another preload still needs, and forgets the record.
    async fn release(
        &self,
        image: &str,
        records: &[(String, Preloaded)],
        held: &BTreeMap<String, u64>,
    ) -> anyhow::Result<()> {
        let Some((_, rec)) = records.iter().find(|(i, _)| i == image) else {
            return Ok(());
        };
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for other in held.keys().filter(|o| *o != image) {
            if let Some(blobs) = self.catalog.get(other).and_then(|f| f.blobs) {
                keep.extend(blobs.iter().map(|(c, _)| c.to_string()));
            }
        }
        for (other, r) in records.iter().filter(|(o, _)| o != image) {
            if held.contains_key(other) {
                keep.extend(r.pinned.iter().cloned());
            }
        }
        let unpin: Vec<Cid> = rec
            .pinned
            .iter()
            .filter(|c| !keep.contains(*c))
            .filter_map(|c| Cid::try_from(c.as_str()).ok())
            .collect();
        let (tree, key) = (self.preloaded.clone(), image.to_string());
        self.blocks
            .with_store(move |s| {
                for c in &unpin {
                    s.unpin(c)?;
                }
                let _ = tree.remove(key.as_bytes());
                Ok(())
            })
            .await
    }

    /// Releases the preloads of images no name stands for any more (a name that moved on, or
    /// went): the rules no longer ask for them, and `repo gc` (or the gc target) frees them.
    async fn release_unnamed(
        &self,
        images: &BTreeMap<String, Entry>,
        held: &BTreeMap<String, u64>,
    ) -> anyhow::Result<()> {
        if self.preloaded.is_empty() {
            return Ok(());
        }
        let records = self.records().await?;
        for (image, _) in records.iter().filter(|(i, _)| !images.contains_key(i)) {
            self.release(image, &records, held).await?;
            tracing::info!("preload: released {image}: no name stands for it any more");
        }
        Ok(())
    }

    /// Whether this node may let its preloaded copy of `image` (named `names`) go.
    fn may_evict(&self, image: &str, names: Option<&[String]>) -> bool {
        let Some(rule) = names.and_then(|n| placement::first_covering(&self.rules, n)) else {
            // no rule asks for it any more (the name moved on, or went)
            return true;
        };
        let Want::Replicas(n) = rule.want else {
            return false;
        };
        let names = names.unwrap_or_default();
        let me = self.copies.me().to_string();
        let holders = self.copies.holders(image);
        if holders.len() <= n as usize || !self.copies.settled() {
            tracing::debug!(
                "preload: keeping {image}: {} holders, the rule asks for {n}",
                holders.len()
            );
            return false;
        }
        // of the holders that may let it go, the lowest-ranked first
        let mut evictors: BTreeSet<String> = self
            .copies
            .replica_candidates(names)
            .intersection(&holders)
            .cloned()
            .collect();
        evictors.insert(me.clone());
        evictors.iter().min_by_key(|p| placement::score(image, p)) == Some(&me)
    }

    /// How much of `image` is here. Fully: its root and every blob (of the rule's platform)
    /// pinned; its size. Partly: its index and manifests are here (a lazy mount, a pull cut
    /// short, a pin of some of its blobs); the bytes of its blobs that are pinned.
    async fn holding(&self, image: &str, rule: Option<&Rule>, pins: &BTreeSet<Cid>) -> Holding {
        let Ok(root) = Cid::try_from(image) else {
            return Holding::Not;
        };
        let known = self
            .catalog
            .get(image)
            .and_then(|f| Some((f.blobs?, f.size?)));
        let (blobs, size) = match known {
            Some(b) => b,
            None => {
                // only what is here: a missing block fails at once
                let platforms: Vec<_> = rule.and_then(|r| r.platform.clone()).into_iter().collect();
                let Ok(r) = pull::resolve(&self.local, root, &platforms).await else {
                    return Holding::Not;
                };
                let Ok(blobs) = r.sized_blobs(true) else {
                    return Holding::Not;
                };
                let mut facts = crate::sync::lock(&self.catalog.0);
                if facts.len() >= MAX_FACTS {
                    facts.clear();
                }
                let f = facts.entry(image.to_string()).or_default();
                f.size = Some(r.size());
                f.blobs = Some(blobs.clone());
                (blobs, r.size())
            }
        };
        // a lazy preload pins the metadata alone: the node holds it the way its rule asks
        let lazy = rule.is_some_and(|r| r.lazy);
        if pins.contains(&root) && (lazy || blobs.iter().all(|(c, _)| pins.contains(c))) {
            return Holding::Fully(size);
        }
        // the metadata was here when the facts were learnt; a gc may have taken it since
        match self.local.with_store(move |s| s.has(&root)).await {
            Ok(true) => Holding::Partly(
                blobs
                    .iter()
                    .filter(|(c, _)| pins.contains(c))
                    .map(|(_, n)| n)
                    .sum(),
            ),
            _ => Holding::Not,
        }
    }

    /// Whether `rule` gives `image` (named at `named_ns`) to this node now.
    fn wants(&self, image: &str, names: &[String], named_ns: u64, rule: &Rule) -> bool {
        if crate::sync::lock(&self.running).contains(image) {
            return false;
        }
        if let Some(at) = crate::sync::lock(&self.failed).get(image) {
            if at.elapsed() < RETRY_AFTER {
                return false;
            }
        }
        match rule.want {
            Want::All => true,
            Want::Replicas(n) => {
                // every peer must have told its status, made since it knew of the image: the
                // pusher's copy counts only once its status says so
                if !self.copies.settled() || !self.copies.caught_up(named_ns) {
                    return false;
                }
                let me = self.copies.me().to_string();
                let mut candidates = self.copies.replica_candidates(names);
                candidates.insert(me.clone());
                let holders = self.copies.holders(image);
                placement::should_hold(image, &me, n, &candidates, &holders)
            }
        }
    }

    /// Fetches and pins `image` in the background.
    fn start(&self, image: &str, names: &[String], rule: &Rule) {
        let Ok(root) = Cid::try_from(image) else {
            return;
        };
        crate::sync::lock(&self.running).insert(image.to_string());
        let how = match (rule.want, rule.lazy) {
            (Want::All, false) => "all".to_string(),
            (Want::All, true) => "all, lazy".to_string(),
            (Want::Replicas(n), lazy) => {
                format!("one of {n} replicas{}", if lazy { ", lazy" } else { "" })
            }
        };
        if let Some(f) = crate::sync::lock(&self.catalog.0).get_mut(image) {
            f.preload = Some(how.clone());
        }
        let (blocks, rule, tree) = (self.blocks.clone(), rule.clone(), self.preloaded.clone());
        let (running, failed, done) =
            (self.running.clone(), self.failed.clone(), self.done.clone());
        let turns = self.turns.clone();
        let (image, name) = (image.to_string(), names.join(", "));
        tokio::spawn(async move {
            let Ok(_turn) = turns.acquire_owned().await else {
                return;
            };
            let started = Instant::now();
            tracing::info!("preload: fetching {name} ({image}; {how})");
            match fetch(&blocks, root, &rule, tree).await {
                Ok(n) => {
                    tracing::info!(
                        "preload: {name} ({image}) fetched and pinned: {n} blobs in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                    crate::sync::lock(&failed).remove(&image);
                }
                Err(e) => {
                    tracing::warn!(
                        "preload: {name} ({image}): {e:#}; trying again in {RETRY_AFTER:?}"
                    );
                    crate::sync::lock(&failed).insert(image.clone(), Instant::now());
                }
            }
            crate::sync::lock(&running).remove(&image);
            done.send_replace(());
        });
    }
}

/// Fetches and pins the image `root` as `rule` asks, and records in `tree` the pins it added;
/// returns the number of blobs pinned.
async fn fetch(
    blocks: &BlockService,
    root: Cid,
    rule: &Rule,
    tree: sled::Tree,
) -> anyhow::Result<usize> {
    let platforms: Vec<_> = rule.platform.clone().into_iter().collect();
    let resolved = pull::resolve(blocks, root, &platforms).await?;
    let cids = resolved.blob_cids(!rule.lazy)?;
    let before: BTreeSet<Cid> = blocks.with_store(|s| s.pins()).await?.into_iter().collect();
    blocks.fetch_and_pin(&cids, blocks.readahead()).await?;
    let added = Preloaded {
        pinned: cids
            .iter()
            .filter(|c| !before.contains(c))
            .map(Cid::to_string)
            .collect(),
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let record = serde_json::to_vec(&added)?;
    tokio::task::spawn_blocking(move || {
        tree.insert(root.to_string().as_bytes(), record)?;
        tree.flush()
    })
    .await??;
    if rule.lazy {
        for image in &resolved.images {
            for layer in &image.manifest.layers {
                if let Err(e) = read_toc(blocks, layer).await {
                    tracing::debug!("preload: no TOC read for layer {}: {e:#}", layer.digest);
                }
            }
        }
    }
    if let Some(net) = blocks.net() {
        net.provide(cids.clone()).await?;
    }
    Ok(cids.len())
}

/// Reads an eStargz layer's footer and table of contents, so their blocks are here when a lazy
/// mount opens the layer.
async fn read_toc(blocks: &BlockService, layer: &super::oci::Descriptor) -> anyhow::Result<()> {
    use super::estargz::reader;
    let cid = layer.cid().map_err(|e| anyhow::anyhow!(e))?;
    let size = u64::try_from(layer.size)?;
    let tail = reader::tail_range(size);
    let tail = blocks
        .cat_bytes(&cid, tail.start, Some(tail.end - tail.start))
        .await?;
    let toc = reader::toc_member(size, &tail)?;
    blocks
        .cat_bytes(&cid, toc.start, Some(toc.end - toc.start))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first change is planned at once; one within SETTLE of a plan waits for the rest of
    /// it; one after it, at once again.
    #[test]
    fn plans_are_a_settle_apart_and_the_first_is_not_delayed() {
        let mut pace = Pace::default();
        let t0 = std::time::Instant::now();
        assert_eq!(pace.wait(t0), Duration::ZERO, "nothing planned yet");
        pace.planned(t0);
        assert_eq!(pace.wait(t0), SETTLE);
        assert_eq!(pace.wait(t0 + SETTLE / 4), SETTLE - SETTLE / 4);
        assert_eq!(pace.wait(t0 + SETTLE), Duration::ZERO);
        assert_eq!(pace.wait(t0 + 10 * SETTLE), Duration::ZERO);
    }
}
