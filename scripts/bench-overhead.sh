#!/usr/bin/env bash
# What the observability of issue 10 costs: the same bitswap transfer (SIZE_MIB of random data,
# A → B on loopback, private swarm) and the same /metrics scrape with this tree's binary and with
# BASE_REV's (default 3531950, the last commit before per-peer counters and the FUSE and registry
# instruments), ROUNDS times each, alternating (and swapping which goes first) so that the VM's
# drift hits both alike. Prints every round, the medians and the ratio HEAD / BASE. BASE_REV is
# built from this repo's own history into target/bench-base (a git worktree); later runs reuse it.
# Writes target/bench/overhead.json.
#   Usage: scripts/bench-overhead.sh [BASE_REV] [SIZE_MIB] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_REV=${1:-3531950}
SIZE_MIB=${2:-256}
ROUNDS=${3:-3}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup
HEAD_BIN=$BIN

BASE_BIN=$(base_bin "$BASE_REV")

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/data"
BYTES=$((SIZE_MIB << 20))
# one round with binary $1: sets R_XFER (transfer MB/s) and R_SCRAPE (ms per /metrics scrape)
round() {
    BIN=$1
    rm -rf "$WORK/a" "$WORK/b"
    start_cidfs a
    start_cidfs b --peer "$a_ADDR"
    local cid t0 t1 api
    cid=$("$BIN" --repo "$WORK/a" add -q "$WORK/data")
    t0=$(now); "$BIN" --repo "$WORK/b" cat "$cid" > /dev/null; t1=$(now)
    R_XFER=$(mbps "$BYTES" "$t0" "$t1")
    api=$(rev < "$WORK/b/api" | cut -d/ -f1 | rev)
    t0=$(now)
    for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$api/metrics" > /dev/null; done
    t1=$(now)
    R_SCRAPE=$(python3 -c "print(f'{($t1-$t0)/50*1e3:.2f}')")
    kill "$a_PID" "$b_PID"; wait "$a_PID" "$b_PID" 2>/dev/null || true
    PIDS=()
}

echo "cidfs bench-overhead: $SIZE_MIB MiB transfer and /metrics scrape, HEAD vs $BASE_REV, $ROUNDS rounds"
printf "%-6s %-5s %14s %16s\n" round bin "transfer MB/s" "scrape ms"
declare -a HX HS BX BS
run() { # NAME: one round of that binary, recorded and printed
    if [ "$1" = base ]; then
        round "$BASE_BIN"; BX+=("$R_XFER"); BS+=("$R_SCRAPE")
    else
        round "$HEAD_BIN"; HX+=("$R_XFER"); HS+=("$R_SCRAPE")
    fi
    printf "%-6s %-5s %14s %16s\n" "$r" "$1" "$R_XFER" "$R_SCRAPE"
}
# odd rounds run base first, even rounds head first: neither always gets the warmer machine
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then run base; run head; else run head; run base; fi
done
mbx=$(median "${BX[@]}"); mhx=$(median "${HX[@]}"); mbs=$(median "${BS[@]}"); mhs=$(median "${HS[@]}")
echo "median transfer: base $mbx MB/s, head $mhx MB/s, ratio head/base $(python3 -c "print(f'{$mhx/$mbx:.3f}')")"
echo "median scrape:   base $mbs ms, head $mhs ms, ratio head/base $(python3 -c "print(f'{$mhs/$mbs:.2f}')")"
declare -A R=([base_rev]=$BASE_REV [size_mib]=$SIZE_MIB [rounds]=$ROUNDS [base_mbps]=$mbx
    [head_mbps]=$mhx [base_scrape_ms]=$mbs [head_scrape_ms]=$mhs)
bench_json overhead
