//! `cidfs stats`: a live summary of the daemon's `/metrics` page, refreshed in place on a
//! terminal. Rates are the difference between two scrapes over the time between them.

use indicatif::HumanBytes;
use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use super::args::StatsArgs;
use super::client::ApiClient;

pub async fn run(api: &ApiClient, args: &StatsArgs) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(args.interval);
    let tty = std::io::stdout().is_terminal();
    let mut before = (Instant::now(), Page::parse(&api.metrics().await?));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let now = (Instant::now(), Page::parse(&api.metrics().await?));
        let text = summary(&before.1, &now.1, now.0 - before.0, args.peers);
        if tty {
            // clear the screen and home the cursor, then redraw
            print!("\x1b[2J\x1b[H");
        }
        println!("{text}");
        if args.once {
            return Ok(());
        }
        before = now;
    }
}

/// A sample's labels, `(name, value)` pairs in page order.
type Labels = Vec<(String, String)>;

/// One scrape: every sample by name, each with its labels.
#[derive(Debug, Default)]
struct Page(BTreeMap<String, Vec<(Labels, f64)>>);

impl Page {
    /// Reads the Prometheus text format; comments and lines it cannot read are skipped.
    fn parse(text: &str) -> Page {
        let mut page = Page::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            page.0
                .entry(name.to_string())
                .or_default()
                .push((labels, value));
        }
        page
    }

    /// The sum over every label set of `name` (0 when absent).
    fn total(&self, name: &str) -> f64 {
        self.0
            .get(name)
            .map_or(0.0, |v| v.iter().map(|s| s.1).sum())
    }

    /// The sum of `name` over the samples whose label `key` is `value`.
    fn with(&self, name: &str, key: &str, value: &str) -> f64 {
        self.0.get(name).map_or(0.0, |v| {
            v.iter()
                .filter(|(l, _)| l.iter().any(|(k, v)| k == key && v == value))
                .map(|s| s.1)
                .sum()
        })
    }

    /// `name` by the value of its label `key`.
    fn by(&self, name: &str, key: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (labels, v) in self.0.get(name).into_iter().flatten() {
            if let Some((_, val)) = labels.iter().find(|(k, _)| k == key) {
                *out.entry(val.clone()).or_default() += v;
            }
        }
        out
    }

    /// The upper bound of the histogram bucket that holds quantile `q` of `name` (all label
    /// sets together), or `None` with no observations.
    fn quantile(&self, name: &str, q: f64) -> Option<f64> {
        let buckets = self.by(&format!("{name}_bucket"), "le");
        let mut bounds: Vec<(f64, f64)> = buckets
            .iter()
            .map(|(le, n)| (le.parse().unwrap_or(f64::INFINITY), *n))
            .collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = bounds.last()?.1;
        if count <= 0.0 {
            return None;
        }
        bounds
            .into_iter()
            .find(|(_, n)| *n >= q * count)
            .map(|(le, _)| le)
    }
}

/// `a="x",b="y"` → pairs (backslash escapes kept simple: `\"`, `\\`, `\n`).
fn labels(text: &str) -> Labels {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    out
}

fn summary(a: &Page, b: &Page, dt: Duration, peer_rows: usize) -> String {
    let secs = dt.as_secs_f64().max(1e-3);
    let rate = |name: &str| ((b.total(name) - a.total(name)) / secs).max(0.0);
    let store_requests = |p: &Page| p.with("cidfs_fuse_requests_total", "fs", "layer_store");
    let bytes = |v: f64| HumanBytes(v as u64).to_string();
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!(
        "peers       {} connected, {} CIDs wanted",
        b.total("cidfs_peers"),
        b.total("cidfs_wants")
    ));
    let received = b.total("cidfs_blocks_received_total");
    let dups = b.total("cidfs_duplicate_blocks_total");
    line(format!(
        "bitswap in  {} ({}/s), {received} blocks, {:.1} % duplicates, {} rejected",
        bytes(b.total("cidfs_bytes_received_total")),
        bytes(rate("cidfs_bytes_received_total")),
        100.0 * dups / (received + dups).max(1.0),
        b.total("cidfs_rejected_blocks_total"),
    ));
    line(format!(
        "bitswap out {} ({}/s), {} blocks",
        bytes(b.total("cidfs_bytes_sent_total")),
        bytes(rate("cidfs_bytes_sent_total")),
        b.total("cidfs_blocks_sent_total"),
    ));
    let (hits, misses) = (
        b.total("cidfs_chunk_cache_hits_total"),
        b.total("cidfs_chunk_cache_misses_total"),
    );
    let ms = |q: f64| {
        b.quantile("cidfs_fuse_read_seconds", q)
            .map_or("-".to_string(), |s| format!("≤{:.1} ms", s * 1e3))
    };
    line(format!(
        "fuse        {} reads ({:.0}/s), {} served ({}/s), {} errors; p50 {} p99 {}; chunk cache {:.0} % hits",
        b.total("cidfs_fuse_reads_total"),
        rate("cidfs_fuse_reads_total"),
        bytes(b.total("cidfs_fuse_read_bytes_total")),
        bytes(rate("cidfs_fuse_read_bytes_total")),
        b.total("cidfs_fuse_read_errors_total"),
        ms(0.5),
        ms(0.99),
        100.0 * hits / (hits + misses).max(1.0),
    ));
    let routes: Vec<String> = b
        .by("cidfs_registry_requests_total", "route")
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    line(format!(
        "registry    {} requests ({:.1}/s){}, {} of layers sent",
        b.total("cidfs_registry_requests_total"),
        rate("cidfs_registry_requests_total"),
        if routes.is_empty() {
            String::new()
        } else {
            format!(" [{}]", routes.join(", "))
        },
        bytes(b.total("cidfs_registry_layer_bytes_total")),
    ));
    line(format!(
        "layer store {} requests ({:.1}/s), {} reads",
        store_requests(b),
        ((store_requests(b) - store_requests(a)) / secs).max(0.0),
        b.with("cidfs_fuse_reads_total", "fs", "layer_store"),
    ));
    line(format!(
        "store       {} blocks, {} ({} on disk)",
        b.total("cidfs_store_blocks"),
        bytes(b.total("cidfs_store_bytes")),
        bytes(b.total("cidfs_repo_disk_bytes")),
    ));
    if peer_rows > 0 {
        let inb = b.by("cidfs_bitswap_peer_bytes_received_total", "peer");
        let outb = b.by("cidfs_bitswap_peer_bytes_sent_total", "peer");
        let dup = b.by("cidfs_bitswap_peer_duplicate_blocks_total", "peer");
        let mut peers: Vec<(&String, f64)> = inb
            .keys()
            .chain(outb.keys())
            .map(|p| (p, inb.get(p).unwrap_or(&0.0) + outb.get(p).unwrap_or(&0.0)))
            .collect();
        peers.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(y.0)));
        peers.dedup_by_key(|p| p.0);
        if !peers.is_empty() {
            line(format!(
                "\n{:<54} {:>11} {:>11} {:>6}",
                "peer", "received", "sent", "dups"
            ));
        }
        for (p, _) in peers.into_iter().take(peer_rows) {
            line(format!(
                "{p:<54} {:>11} {:>11} {:>6}",
                bytes(inb.get(p).copied().unwrap_or_default()),
                bytes(outb.get(p).copied().unwrap_or_default()),
                dup.get(p).copied().unwrap_or_default(),
            ));
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP x\n\
        cidfs_peers 2\n\
        cidfs_bytes_received_total 2048\n\
        cidfs_blocks_received_total 2\n\
        cidfs_bitswap_peer_bytes_received_total{peer=\"12D3A\"} 2048\n\
        cidfs_registry_requests_total{route=\"blob\",method=\"GET\",code=\"200\"} 3\n\
        cidfs_registry_requests_total{route=\"ping\",method=\"GET\",code=\"200\"} 1\n\
        cidfs_fuse_requests_total{fs=\"layer_store\",op=\"lookup\"} 6\n\
        cidfs_fuse_requests_total{fs=\"mount\",op=\"lookup\"} 100\n\
        cidfs_fuse_read_seconds_bucket{fs=\"mount\",le=\"0.001\"} 9\n\
        cidfs_fuse_read_seconds_bucket{fs=\"mount\",le=\"0.1\"} 10\n\
        cidfs_fuse_read_seconds_bucket{fs=\"mount\",le=\"+Inf\"} 10\n";

    #[test]
    fn parses_totals_labels_and_quantiles() {
        let p = Page::parse(PAGE);
        assert_eq!(p.total("cidfs_peers"), 2.0);
        assert_eq!(p.total("cidfs_registry_requests_total"), 4.0);
        assert_eq!(
            p.with("cidfs_registry_requests_total", "route", "blob"),
            3.0
        );
        assert_eq!(p.quantile("cidfs_fuse_read_seconds", 0.5), Some(0.001));
        assert_eq!(p.quantile("cidfs_fuse_read_seconds", 0.99), Some(0.1));
        assert_eq!(
            labels(r#"a="x\"y",b="z""#),
            vec![("a".into(), "x\"y".into()), ("b".into(), "z".into())]
        );
    }

    #[test]
    fn summary_shows_rates_and_the_busiest_peers() {
        let before = Page::parse("cidfs_bytes_received_total 0\n");
        let after = Page::parse(PAGE);
        let s = summary(&before, &after, Duration::from_secs(2), 5);
        assert!(s.contains("2 connected"), "{s}");
        assert!(s.contains("2.00 KiB (1.00 KiB/s)"), "{s}");
        assert!(s.contains("[blob 3, ping 1]"), "{s}");
        assert!(s.contains("12D3A"), "{s}");
        assert!(s.contains("p50 ≤1.0 ms"), "{s}");
        // the layer store's requests only, not a mount's
        assert!(s.contains("layer store 6 requests (3.0/s)"), "{s}");
    }
}
