#!/usr/bin/env bash
# What an open dashboard costs: the same bitswap transfer (SIZE_MIB of random data added on A,
# `cidfs cat` on a fresh B fetching it from A, loopback, private swarm), ROUNDS times watched and
# unwatched, alternating (and swapping which goes first) so the VM's drift hits both alike.
# Watched: a poller GETs /ui/state of both daemons every POLL seconds (default 0.25: four open
# dashboards each). Prints every round, the medians, the ratio watched / unwatched and B's
# CPU-seconds per GiB both ways; writes target/bench/dashboard.json.
#   Usage: scripts/bench-dashboard.sh [SIZE_MIB] [ROUNDS]        (default 1024 MiB, 5 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
ROUNDS=${2:-5}
POLL=${POLL:-0.25}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup
POLLER=
cleanup() {
    set +e
    [ -n "$POLLER" ] && kill "$POLLER" 2>/dev/null
    bench_cleanup
}
trap cleanup EXIT

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/data"
start_cidfs a
A_ID=${a_ADDR##*/}
CID=$("$BIN" --repo "$WORK/a" add -q "$WORK/data")

# one_round MODE: a fresh B cats CID from A; sets RS (seconds) and RC (B's CPU-seconds)
one_round() {
    local mode=$1 t0 t1 c0 c1
    fresh_node b "$a_ADDR"
    if [ "$mode" = watched ]; then
        local ua ub
        ua="http://$(api_of a)/ui/state"; ub="http://$(api_of b)/ui/state"
        (while :; do
            curl -sf -o /dev/null "$ua" || true
            curl -sf -o /dev/null "$ub" || true
            sleep "$POLL"
        done) &
        POLLER=$!
    fi
    c0=$(cpu_s "$b_PID"); t0=$(now)
    "$BIN" --repo "$WORK/b" cat "$CID" > /dev/null
    t1=$(now); c1=$(cpu_s "$b_PID")
    if [ -n "$POLLER" ]; then kill "$POLLER"; wait "$POLLER" 2>/dev/null || true; POLLER=; fi
    stop_cidfs b
    RS=$(secs "$t0" "$t1"); RC=$(python3 -c "print(f'{$c1 - $c0:.2f}')")
}

declare -A T C
echo "cidfs bench-dashboard: cat of $SIZE_MIB MiB on a fresh B from A, with /ui/state polled every ${POLL}s on both (watched) or not"
printf '%-6s %-10s %8s %8s %10s\n' round mode seconds "MB/s" "B CPU-s"
for r in $(seq 1 "$ROUNDS"); do
    order="unwatched watched"
    [ $((r % 2)) -eq 0 ] && order="watched unwatched"
    for mode in $order; do
        one_round "$mode"
        T[$mode]="${T[$mode]:-} $RS"; C[$mode]="${C[$mode]:-} $RC"
        printf '%-6s %-10s %8s %8s %10s\n' "$r" "$mode" "$RS" "$(mbps $((SIZE_MIB << 20)) "$RS")" "$RC"
    done
done
# shellcheck disable=SC2086
{ tu=$(median ${T[unwatched]}); tw=$(median ${T[watched]}); cu=$(median ${C[unwatched]}); cw=$(median ${C[watched]}); }
gib=$(python3 -c "print($SIZE_MIB / 1024)")
echo "median: unwatched $tu s ($(mbps $((SIZE_MIB << 20)) "$tu") MB/s), watched $tw s ($(mbps $((SIZE_MIB << 20)) "$tw") MB/s): watched / unwatched = $(python3 -c "print(f'{$tw / $tu:.3f}')")"
echo "B's CPU per GiB: unwatched $(python3 -c "print(f'{$cu / $gib:.2f}')") s, watched $(python3 -c "print(f'{$cw / $gib:.2f}')") s"
declare -A R=([size_mib]=$SIZE_MIB [poll_secs]=$POLL [unwatched_secs]=$tu [watched_secs]=$tw
    [unwatched_cpu]=$cu [watched_cpu]=$cw)
bench_json dashboard
