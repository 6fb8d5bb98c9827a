#!/usr/bin/env bash
# Draws the benchmarks' figures: each scripts/bench-*.sh writes target/bench/<bench>.json beside
# its text table; this turns every one present into PNGs in docs/img/ (what the README shows).
# matplotlib (pinned) goes into target/venv from PyPI on first use.
# Usage: bash scripts/plot.sh [OUT_DIR]        (default docs/img)
# Today: dedup.json (scripts/bench-dedup.sh) → bench-dedup.png (bytes a node fetches for an image
# sharing most files with one it holds, by DAG layout) and bench-lazy-start.png (a lazy start of
# a Debian image against pull + unpack + run).
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


PLOTS = {"dedup": [("bench-dedup.png", dedup), ("bench-lazy-start.png", lazy)]}
for f in files:
    r = json.load(open(f))
    for name, draw in PLOTS.get(r.get("bench"), []):
        fig = draw(r)
        if fig is None:
            continue
        path = os.path.join(out, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print(f"{f} -> {path}")
PY
