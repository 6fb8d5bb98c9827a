#!/usr/bin/env bash
# Draws the benchmarks' figures: each scripts/bench-*.sh writes target/bench/<bench>.json beside
# its text table; this turns every one present into PNGs in docs/img/ (what the README shows).
# matplotlib (pinned) goes into target/venv from PyPI on first use.
# Usage: bash scripts/plot.sh [OUT_DIR]        (default docs/img)
# What each JSON becomes:
#   transfer.json (bench-transfer.sh) + interop.json (bench-interop.sh) → bench-transfer.png:
#       MB/s between two nodes against the stack's ceiling here, and with kubo and Helia peers
#   lazy-start.json (bench-lazy-start.sh) → bench-lazy-containers.png: a container start through
#       the mount, Podman's layer store and containerd's snapshotter against a full pull; and
#       bench-mount-reads.png: a sequential read through the mount, cold / warm, against disk
#   fanout-FETCH-N.json (bench-fanout.sh, one per run) → bench-fanout.png: makespan by fetchers
#   dedup.json (bench-dedup.sh) → bench-dedup.png (bytes a node fetches for an image sharing most
#       files with one it holds, by DAG layout) and bench-lazy-start.png (a lazy start of a Debian
#       image against pull + unpack + run) and bench-lazy-debian.png (that start through the mount,
#       podman and containerd, lazy against each one's full pull and its own start of the pulled
#       image)
# A figure whose JSON is missing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/img}
mkdir -p "$OUT"
if ! target/venv/bin/python -c 'import matplotlib' 2>/dev/null; then
    python3 -m venv target/venv
    target/venv/bin/pip install -q --disable-pip-version-check matplotlib==3.10.8 </dev/null
fi
shopt -s nullglob
found=(target/bench/*.json)
[ "${#found[@]}" -gt 0 ] || { echo "no target/bench/*.json: run a scripts/bench-*.sh first" >&2; exit 1; }
MPLBACKEND=Agg target/venv/bin/python - "$OUT" "${found[@]}" <<'PY'
import json, os, sys

import matplotlib.pyplot as plt

out, files = sys.argv[1], sys.argv[2:]
MB = 1e6


def dedup(r):
    """Bytes fetched by a node that holds v1, for v2 (3 files changed) and another image."""
    steps = [("v2 after v1\n(image pull)", "fetch_v2", "bytes_v2"),
             ("v2 after v1\n(read through a mount)", "mount_v2", "bytes_v2"),
             ("other after v1, v2\n(image pull)", "fetch_other", "bytes_other")]
    layouts = [l for l in ("members", "fixed") if f"{l}.fetch_v2" in r]
    if not layouts:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(layouts)
    for i, l in enumerate(layouts):
        vals = [r[f"{l}.{k}"] / MB for _, k, _ in steps]
        xs = [j + i * width for j in range(len(steps))]
        bars = ax.bar(xs, vals, width, label=f"--dag-layout {l}")
        for b, (_, k, total) in zip(bars, steps):
            pct = 100 * r[f"{l}.{k}"] / r[f"{l}.{total}"]
            ax.annotate(f"{pct:.1f} %", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks([j + width * (len(layouts) - 1) / 2 for j in range(len(steps))])
    ax.set_xticklabels([s for s, _, _ in steps])
    ax.set_ylabel("MB fetched from the swarm")
    ax.set_title(f"Dedup across images: {r['members.bytes_v1'] / MB:.0f} MB Debian image, "
                 f"{r['changed_bytes'] / MB:.1f} MB changed")
    ax.legend()
    fig.tight_layout()
    return fig


def lazy(r):
    """A lazy start by chunk size (and after image optimize) against pull + unpack + run."""
    rows = sorted({k.split(".")[0][len("lazy_"):] for k in r if k.startswith("lazy_")},
                  key=lambda x: (not x.isdigit(), -int(x) if x.isdigit() else 0))
    if not rows or "lazy.full_secs" not in r:
        return None
    label = lambda x: f"{int(x) >> 20} MiB chunks" if x.isdigit() and int(x) >= 1 << 20 else (
        f"{int(x) >> 10} KiB chunks" if x.isdigit() else "after image optimize")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["pull + unpack\n+ run"] + [label(x) for x in rows]
    secs = [r["lazy.full_secs"]] + [r[f"lazy_{x}.secs"] for x in rows]
    bars = a1.bar(names, secs, color=["#999"] + ["#1565c0"] * len(rows))
    for b, s in zip(bars[1:], secs[1:]):
        a1.annotate(f"{s:.2f} s\n{secs[0] / s:.1f}×", (b.get_x() + b.get_width() / 2, s),
                    ha="center", va="bottom", fontsize=8)
    a1.set_ylabel("seconds to start")
    a1.set_title("Start: lazy mount vs pull + unpack")
    a1.tick_params(axis="x", labelsize=8)
    pct = [100 * r[f"lazy_{x}.fetched"] / r[f"lazy_{x}.bytes"] for x in rows]
    bars = a2.bar([label(x) for x in rows], pct, color="#2e7d32")
    a2.axhline(3, color="#c62828", linestyle="--", linewidth=1, label="target 3 %")
    for b, p in zip(bars, pct):
        a2.annotate(f"{p:.1f} %", (b.get_x() + b.get_width() / 2, p), ha="center",
                    va="bottom", fontsize=8)
    a2.set_ylim(0, max(pct + [3]) * 1.25)
    a2.set_ylabel("% of the image's layer bytes fetched")
    a2.set_title("Bytes a lazy start fetches")
    a2.tick_params(axis="x", labelsize=8)
    a2.legend(loc="lower right")
    fig.tight_layout()
    return fig


# The stack's ceiling on this machine (../shared/CEILINGS.md): TCP + PSK (SIMD XSalsa20) + noise
# + yamux between two processes, receiver framing 256 KiB blocks and SHA-256-checking them. A
# transfer.json that measured it in the same run (ceiling_stream_mbps) is drawn against its own.
CEILING_HASHED = 600


def transfer(runs):
    """MB/s between two cidfs nodes against the stack's ceiling; the pairs with kubo and Helia."""
    t, i = runs.get("transfer"), runs.get("interop")
    if not t and not i:
        return None
    fig, axes = plt.subplots(1, 2 if t and i else 1, figsize=(11 if t and i else 6, 4))
    axes = list(axes) if t and i else [axes]
    if t:
        ax = axes.pop(0)
        size = t["size_mib"] * (1 << 20)
        names = ["add on A", "cat on B\nfrom A (bitswap)", "cat on B\nfrom its store"]
        vals = [size / t[k] / MB for k in ("add_secs", "cat_secs", "store_secs")]
        bars = ax.bar(names, vals, color=["#999", "#1565c0", "#2e7d32"])
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        ceiling = t.get("ceiling_stream_mbps") or CEILING_HASHED
        where = "this run" if t.get("ceiling_stream_mbps") else "CEILINGS.md"
        ax.axhline(ceiling, color="#c62828", linestyle="--", linewidth=1,
                   label=f"stack ceiling, hashed 256 KiB frames ({ceiling:.0f}, {where})")
        gib = t["size_mib"] / 1024
        ax.set_title(f"{t['size_mib']} MiB between two nodes on loopback\n"
                     f"B's CPU {t['cpu_b'] / gib:.1f} s/GiB, peak RSS {t['rss_b_mib']} MiB", fontsize=10)
        ax.set_ylabel("MB/s")
        ax.set_ylim(0, max(vals + [ceiling]) * 1.15)
        ax.legend(loc="upper left", fontsize=8)
    if i:
        ax = axes.pop(0)
        pairs = [p for p in ("cidfs-cidfs", "kubo-cidfs", "helia-cidfs", "cidfs-kubo", "cidfs-helia",
                             "kubo-kubo", "helia-helia") if p in i]
        vals = [i[p] for p in pairs]
        colors = ["#1565c0" if p.endswith("cidfs") else "#999" for p in pairs]
        bars = ax.barh([p.replace("-", " → ").replace("helia", "Helia") for p in pairs], vals, color=colors)
        for b, v in zip(bars, vals):
            ax.annotate(f" {v:.0f}", (v, b.get_y() + b.get_height() / 2), va="center", fontsize=8)
        ceiling = (t or {}).get("ceiling_stream_mbps") or CEILING_HASHED
        ax.axvline(ceiling, color="#c62828", linestyle="--", linewidth=1, label="stack ceiling")
        ax.invert_yaxis()
        ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel("MB/s (blue: a cidfs receiver)")
        ax.set_title(f"sender → receiver, {i['size_mib']} MiB, fresh nodes per pair", fontsize=10)
    fig.tight_layout()
    return fig


def containers(runs):
    """Seconds to a running container: lazy paths against their full-pull baselines."""
    r = runs.get("lazy-start")
    if not r:
        return None
    groups = [("cidfs mount + chroot", "full_secs", "pull + unpack", [("lazy_secs", "lazy mount")])]
    if "podman_pull_secs" in r:
        groups.append(("podman run", "podman_pull_secs", "pull from the endpoint",
                       [("podman_als_verify_secs", "layer store, verify-first"),
                        ("podman_als_trust_secs", "layer store, trust (lazy)")]))
    if "ctr_overlay_secs" in r:
        groups.append(("containerd", "ctr_overlay_secs", "ctr pull, overlayfs",
                       [("ctr_cidfs_verify_secs", "cidfs snapshotter, verify-first"),
                        ("ctr_cidfs_trust_secs", "cidfs snapshotter, trust (lazy)")]))
    title = (f"Starting a container from a {r['image_bytes'] / MB:.0f} MB image on a fresh node "
             f"(lazy mount fetched {100 * r.get('lazy_bytes', 0) / r['image_bytes']:.1f} %)")
    return start_bars(r, groups, title)


def start_bars(r, groups, title):
    """Horizontal bars of seconds to a running container: each group's full-pull baseline (grey)
    and its lazy ways (blue), with their speed-up over that baseline, and a floor (light grey)
    where a tuple carries a third element."""
    labels, vals, colors, notes = [], [], [], []
    for group, base, base_label, lazy in groups:
        if base not in r:
            continue
        labels.append(f"{group}: {base_label}"); vals.append(r[base]); colors.append("#999"); notes.append("")
        for k, l, *floor in lazy:
            if k in r:
                labels.append(f"{group}: {l}"); vals.append(r[k])
                # a floor (the runtime's own start, image already pulled) is no lazy way
                colors.append("#ccc" if floor else "#1565c0")
                notes.append("  (no lazy start goes under it)" if floor else f"  {r[base] / r[k]:.1f}× faster")
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.2))
    bars = ax.barh(labels, vals, color=colors)
    for b, v, n in zip(bars, vals, notes):
        ax.annotate(f" {v:.2f} s{n}", (v, b.get_y() + b.get_height() / 2), va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(min(vals) / 2, max(vals) * 4)
    ax.set_xlabel("seconds to a running container (log scale)")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def debian_starts(runs):
    """bench-dedup's lazy start of the Debian image through the mount, podman and containerd."""
    r = runs.get("dedup")
    if not r or "lazy.full_secs" not in r:
        return None
    chunk = next((k.split(".")[0] for k in sorted(r) if k.startswith("lazy_4194304")), None)
    groups = [("cidfs mount + chroot", "lazy.full_secs", "pull + unpack",
               [(f"{chunk}.secs", "lazy mount"), ("lazy_optimized.secs", "lazy mount, optimized")])]
    for rt, name, lazy in (("podman", "podman run", "layer store"), ("containerd", "containerd", "cidfs snapshotter")):
        groups.append((name, f"rt_{rt}-pull_plain.secs", "pull from the endpoint",
                       [(f"rt_{rt}-lazy_plain.secs", f"{lazy}, lazy"),
                        (f"rt_{rt}-lazy_optimized.secs", f"{lazy}, lazy, optimized"),
                        (f"rt_{rt}_floor.secs", "image already pulled", True)]))
    return start_bars(r, groups, "A Debian image (313 MB of eStargz layers): python3 and perl imports, "
                      "lazy against a full pull")


def reads(runs):
    """Sequential read of one file through a lazy mount, against the same file on local disk."""
    r = runs.get("lazy-start")
    if not r or "mount_cold_secs" not in r:
        return None
    rows = [("mount, cold\n(chunks from a peer)", "mount_cold_secs", "#1565c0"),
            ("mount, chunks\nin the local store", "mount_store_secs", "#1565c0"),
            ("mount, warm\n(page cache)", "mount_warm_secs", "#1565c0"),
            ("local disk, cold", "local_cold_secs", "#999"),
            ("local disk, warm", "local_warm_secs", "#999")]
    vals = [r["seq_bytes"] / r[k] / MB for _, k, _ in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = ax.bar([n for n, _, _ in rows], vals, color=[c for _, _, c in rows])
    for b, v in zip(bars, vals):
        ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("MB/s (log scale)")
    ax.set_title(f"Reading {r['seq_bytes'] >> 20} MiB sequentially (dd bs=1M)", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig


def fanout(runs):
    """Makespan of N fetchers at once, by N, against one fetch alone."""
    fan = [r for b, r in runs.items() if b.startswith("fanout-")]
    if not fan:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, kind in enumerate(sorted({r["fetch"] for r in fan})):
        pts = sorted((r["fetchers"], r["makespan_secs"], r["single_secs"], r["seed_sent"] / (r["size_mib"] << 20))
                     for r in fan if r["fetch"] == kind)
        xs = [p[0] for p in pts]
        c = COLORS[i % len(COLORS)]
        ax.plot(xs, [p[1] for p in pts], "o-", color=c, label=f"{kind}: makespan, all at once")
        ax.plot(xs, [p[2] for p in pts], "s:", color=c, label=f"{kind}: one fetch alone")
        ax.plot(xs, [p[0] * p[2] for p in pts], "--", color="#999", linewidth=1,
                label=f"{kind}: N × alone (every copy from the seed's link)")
        for x, m, s1, up in pts:
            ax.annotate(f"{m / s1:.2f}×\nseed {up:.2f}×", (x, m), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
    r = fan[0]
    ax.set_xlabel("fetchers at once")
    ax.set_ylabel("seconds")
    ax.set_ylim(0, max(r["fetchers"] * r["single_secs"] for r in fan) * 1.1)
    ax.set_xlim(min(r["fetchers"] for r in fan) - 0.5, max(r["fetchers"] for r in fan) + 0.5)
    ax.set_title(f"Fan-out: {r['size_mib']} MiB to N hosts at once, links {r['rate']}\n"
                 f"(labels: makespan ÷ one alone, seed upload ÷ file)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


COLORS = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a"]
runs = {}
for f in files:
    r = json.load(open(f))
    runs[r.get("bench", os.path.basename(f)[:-5])] = r
PLOTS = [("bench-transfer.png", transfer), ("bench-lazy-containers.png", containers),
         ("bench-mount-reads.png", reads), ("bench-fanout.png", fanout),
         ("bench-dedup.png", lambda r: r.get("dedup") and dedup(r["dedup"])),
         ("bench-lazy-start.png", lambda r: r.get("dedup") and lazy(r["dedup"])),
         ("bench-lazy-debian.png", debian_starts)]
for name, draw in PLOTS:
    fig = draw(runs)
    if not fig:
        continue
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"-> {path}")
PY
