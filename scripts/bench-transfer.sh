#!/usr/bin/env bash
# Transfer benchmark: SIZE_MIB (default 256) of random data from node A to node B over loopback
# in a private swarm. Prints MB/s for `add` on A and `cat` on B (ROUNDS of it, default 3, each to
# a fresh B: the median and the range), the ratio of the transfer to
# `cat` of the same file from local disk (measured in the same run), and each daemon's peak RSS
# and repo disk use; writes the figures to target/bench/transfer.json (scripts/plot.sh draws them).
# Then the ceiling in the same run (p2p/examples/stack_ceiling.rs, two more processes with the
# same swarm key): the same bytes on one stream of the same stack, each 256 KiB frame SHA-256
# checked, and fetched by bitswap from blocks in memory (no store, no API, no CLI). The transfer
# is reported against both.
# Usage: scripts/bench-transfer.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-256}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup

wchar_mib() { awk '/^wchar/ {printf "%.0f", $2/1048576}' "/proc/$1/io"; }
rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/data"
# on disk before the add is timed: a pinned add ends with the pin's syncfs, which would also
# write out this input file (bench-add.sh does the same)
sync -f "$WORK"
BYTES=$((SIZE_MIB << 20))

start_cidfs a
start_cidfs b --peer "$a_ADDR"

t0=$(now); CID=$("$BIN" --repo "$WORK/a" add -q "$WORK/data"); t1=$(now)
ADD_T=$(python3 -c "print($t1-$t0)")

# baseline: the same bytes read from the local file (page cache warm, as the daemon's store is)
cat "$WORK/data" > /dev/null
t0=$(now); cat "$WORK/data" > /dev/null; t1=$(now)
LOCAL_T=$(python3 -c "print($t1-$t0)")

# ROUNDS (default 3) transfers, each to a fresh B, the median reported: single runs swing by
# 10-15 % here. PROFILE=1: the first records where both daemons spend CPU (perf, call graphs).
ROUNDS=${ROUNDS:-3}
ROUND_SECS=() ROUND_CPU_A=() ROUND_CPU_B=() ROUND_CPU_CLI=()
for round in $(seq 1 "$ROUNDS"); do
    if [ "$round" -gt 1 ]; then fresh_node b "$a_ADDR"; else wait_peer b "${a_ADDR##*/}"; fi
    if [ "${PROFILE:-0}" = 1 ] && [ "$round" = 1 ]; then
        perf record -F 1999 -g -o /tmp/cidfs-perf-b.data -p "$b_PID" 2>/dev/null & PERF_B=$!
        perf record -F 1999 -g -o /tmp/cidfs-perf-a.data -p "$a_PID" 2>/dev/null & PERF_A=$!
        sleep 1
    fi
    WCHAR_B0=$(wchar_mib "$b_PID")
    timed_client "$BIN" --repo "$WORK/b" cat "$CID" > /dev/null
    WCHAR_B=$(( $(wchar_mib "$b_PID") - WCHAR_B0 ))
    if [ "${PROFILE:-0}" = 1 ] && [ "$round" = 1 ]; then
        kill -INT $PERF_A $PERF_B; wait $PERF_A $PERF_B 2>/dev/null || true
        for n in a b; do
            echo "== perf top symbols, node $n"
            perf report -i "/tmp/cidfs-perf-$n.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | sed -n 1,25p
        done
    fi
done
read -r XFER_T XFER_MIN XFER_MAX <<< "$(median_range "${ROUND_SECS[@]}")"
round_cpu

# second read on B: served from B's own store; also proves the transfer stored the right bytes
t0=$(now); "$BIN" --repo "$WORK/b" cat "$CID" > /dev/null; t1=$(now)
LOCALSTORE_T=$(python3 -c "print($t1-$t0)")
"$BIN" --repo "$WORK/b" cat "$CID" | cmp -s - "$WORK/data" || { echo "transfer corrupted the data" >&2; exit 1; }

stack_ceiling "$SIZE_MIB"

echo "cidfs bench-transfer: $SIZE_MIB MiB, CID $CID"
printf "%-38s %8s MB/s\n" "add on A (chunk, hash, store, pin)" "$(mbps $BYTES $ADD_T)"
printf "%-38s %8s MB/s (%s-%s, %s runs, each to a fresh B)\n" "cat on B, fetched from A (bitswap)" "$(mbps $BYTES $XFER_T)" "$(mbps $BYTES $XFER_MAX)" "$(mbps $BYTES $XFER_MIN)" "$ROUNDS"
printf "%-38s %8s MB/s\n" "cat on B again (from B's store)" "$(mbps $BYTES $LOCALSTORE_T)"
printf "%-38s %8s MB/s\n" "baseline: cat of the local file" "$(mbps $BYTES $LOCAL_T)"
echo "ratio transfer / local file: $(python3 -c "print(f'{$LOCAL_T/$XFER_T:.3f}')")"
ceiling_report 38 transfer "$(mbps $BYTES $XFER_T)"
echo "CPU during the transfer ($(python3 -c "print(f'{$XFER_T:.2f}')") s; medians): A ${CPU_A} s, B ${CPU_B} s, the cat client ${CPU_CLI} s"
echo "B wrote ${WCHAR_B} MiB (files, sled, sockets) for the transfer"
echo "peak RSS: A $(rss_mib "$a_PID") MiB, B $(rss_mib "$b_PID") MiB"
echo "repo disk use: A $(du -sm "$WORK/a" | cut -f1) MiB, B $(du -sm "$WORK/b" | cut -f1) MiB (data $SIZE_MIB MiB)"
declare -A R=([size_mib]=$SIZE_MIB [add_secs]=$ADD_T [cat_secs]=$XFER_T [cat_secs_min]=$XFER_MIN [cat_secs_max]=$XFER_MAX [store_secs]=$LOCALSTORE_T
    [local_secs]=$LOCAL_T [cpu_a]=$CPU_A [cpu_b]=$CPU_B [cpu_client]=$CPU_CLI [rss_a_mib]=$(rss_mib "$a_PID")
    [rss_b_mib]=$(rss_mib "$b_PID") [disk_b_mib]=$(du -sm "$WORK/b" | cut -f1)
    [ceiling_stream_mbps]=$CEIL_STREAM [ceiling_bitswap_mbps]=$CEIL_BITSWAP)
bench_json transfer
