#!/usr/bin/env bash
# A/B of two builds on any benchmark: runs `scripts/bench-NAME.sh ARGS…` ROUNDS times with this
# tree's binary (head) and ROUNDS times with BASE_REV's (base), alternating and swapping which goes
# first each round, so that the VM's drift (single runs swing ±10–15 % here) hits both alike. Each
# run's JSON (the file the benchmark writes to target/bench/) is kept as
# target/bench/ab/NAME-{base,head}-N.json; then every number present in both is printed: the
# median of each side, head ÷ base, and the range of each side.
# BASE_REV is built from this repo's history into target/bench-base (reused by later runs).
#   Usage: scripts/bench-ab.sh BASE_REV ROUNDS NAME [ARGS...]
#   e.g.   scripts/bench-ab.sh 87d0b1f 3 transfer 256
#          scripts/bench-ab.sh HEAD~3 2 push
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
BASE_REV=$1 ROUNDS=$2 NAME=$3
shift 3
SCRIPT=scripts/bench-$NAME.sh
[ -f "$SCRIPT" ] || { echo "no $SCRIPT" >&2; exit 2; }
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
cargo build --release --quiet
HEAD_BIN=$PWD/target/release/cidfs
BASE_BIN=$(base_bin "$BASE_REV")
OUT=target/bench/ab
mkdir -p "$OUT"
rm -f "$OUT/$NAME"-*.json

# run SIDE BIN N ARGS…: one run of the benchmark with BIN, its JSON kept as $OUT/NAME-SIDE-N.json
run() {
    local side=$1 bin=$2 n=$3 mark json
    shift 3
    mark=$(mktemp)
    echo "== round $n: $side ($bin)"
    CIDFS_BIN=$bin BENCH_NO_BUILD=1 bash "$SCRIPT" "$@" 2>&1 | sed 's/^/   /'
    json=$(find target/bench -maxdepth 1 -name '*.json' -newer "$mark" | head -1)
    rm -f "$mark"
    [ -n "$json" ] || { echo "$SCRIPT wrote no JSON in target/bench" >&2; exit 1; }
    cp "$json" "$OUT/$NAME-$side-$n.json"
}
args=("$@")
for n in $(seq 1 "$ROUNDS"); do
    if [ $((n % 2)) -eq 1 ]; then
        run base "$BASE_BIN" "$n" "${args[@]}"; run head "$HEAD_BIN" "$n" "${args[@]}"
    else
        run head "$HEAD_BIN" "$n" "${args[@]}"; run base "$BASE_BIN" "$n" "${args[@]}"
    fi
done

python3 - "$OUT" "$NAME" "$BASE_REV" "$(git rev-parse --short HEAD)" <<'PY'
import glob, json, statistics, sys
out, name, base_rev, head_rev = sys.argv[1:]
def numbers(d, prefix=""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            yield key, float(v)
        elif isinstance(v, str):
            try:
                yield key, float(v)
            except ValueError:
                pass
        elif isinstance(v, dict):
            yield from numbers(v, key + ".")
sides = {}
for side in ("base", "head"):
    runs = [dict(numbers(json.load(open(f)))) for f in sorted(glob.glob(f"{out}/{name}-{side}-*.json"))]
    sides[side] = runs
keys = [k for k in sides["head"][0] if all(k in r for s in sides.values() for r in s)]
print(f"\nbench-{name}: base {base_rev} vs head {head_rev}, {len(sides['head'])} runs each (medians; ranges)")
print(f"{'figure':40} {'base':>12} {'head':>12} {'head/base':>10}   base range / head range")
for k in keys:
    b = [r[k] for r in sides["base"]]
    h = [r[k] for r in sides["head"]]
    mb, mh = statistics.median(b), statistics.median(h)
    ratio = f"{mh / mb:.3f}" if mb else "-"
    print(f"{k[:40]:40} {mb:12.4g} {mh:12.4g} {ratio:>10}   {min(b):.4g}–{max(b):.4g} / {min(h):.4g}–{max(h):.4g}")
PY
