#!/usr/bin/env bash
# Add benchmark: ROUNDS (default 8) fresh random files of SIZE_MIB (default 1024) each are added
# to one daemon, one after another, so the store grows to ROUNDS × SIZE_MIB. Each round prints
# add MB/s, the daemon's CPU-seconds per GiB and its RSS after the add, beside the baseline of
# the same run: `cp` of the same file into the same filesystem followed by `sync -f` (a pinned
# add is durable when it returns: both must get the bytes to disk). Writes target/bench/add.json.
# Usage: scripts/bench-add.sh [ROUNDS] [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-8}
SIZE_MIB=${2:-1024}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup

rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
secs() { python3 -c "print($2-$1)"; }
BYTES=$((SIZE_MIB << 20))

start_cidfs a
declare -A R=([rounds]=$ROUNDS [size_mib]=$SIZE_MIB)
echo "cidfs bench-add: $ROUNDS rounds of $SIZE_MIB MiB (fresh random data each)"
printf "%-6s %10s %12s %14s %10s %12s\n" round "add MB/s" "cp+sync MB/s" "add / cp+sync" "CPU-s/GiB" "RSS after"
for r in $(seq 1 "$ROUNDS"); do
    head -c "$BYTES" /dev/urandom > "$WORK/data"
    sync -f "$WORK"
    t0=$(now); cp "$WORK/data" "$WORK/copy"; sync -f "$WORK/copy"; t1=$(now)
    CP_T=$(secs "$t0" "$t1"); rm -f "$WORK/copy"
    c0=$(cpu_s "$a_PID")
    t0=$(now); CID=$("$BIN" --repo "$WORK/a" add -q "$WORK/data"); t1=$(now)
    c1=$(cpu_s "$a_PID")
    ADD_T=$(secs "$t0" "$t1")
    R[round_$r.add_secs]=$ADD_T; R[round_$r.cp_secs]=$CP_T
    R[round_$r.cpu]=$(python3 -c "print(f'{$c1-$c0:.2f}')"); R[round_$r.rss_mib]=$(rss_mib "$a_PID")
    python3 -c "
b=$BYTES; a=$ADD_T; c=$CP_T; cpu=$c1-$c0
print(f'{$r:<6} {b/a/1e6:10.0f} {b/c/1e6:12.0f} {c/a:14.2f} {cpu*(1<<30)/b:10.2f} {$(rss_mib "$a_PID"):9} MiB')"
done
echo "repo disk use: $(du -sm "$WORK/a" | cut -f1) MiB (data $((ROUNDS * SIZE_MIB)) MiB)"
# a restart, then `cat` of the last file from the store: the daemon's memory must stay flat
kill "$a_PID"; wait "$a_PID" 2>/dev/null || true
start_cidfs a
R0=$(rss_mib "$a_PID")
t0=$(now); "$BIN" --repo "$WORK/a" cat "$CID" > /dev/null; t1=$(now)
echo "after a restart: RSS $R0 MiB; cat of the last $SIZE_MIB MiB from the store $(mbps "$BYTES" "$t0" "$t1") MB/s, RSS then $(rss_mib "$a_PID") MiB"
R[disk_mib]=$(du -sm "$WORK/a" | cut -f1); R[restart_rss_mib]=$R0
R[restart_cat_secs]=$(secs "$t0" "$t1"); R[after_cat_rss_mib]=$(rss_mib "$a_PID")
bench_json add
