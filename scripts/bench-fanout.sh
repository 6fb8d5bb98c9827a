#!/usr/bin/env bash
# Fan-out benchmark: HOSTS cidfs hosts (default 8), each in its own network namespace on one
# bridge (scripts/cluster.sh), every link shaped to RATE (default 100mbit) in both directions,
# one private swarm (peers by mDNS, plus the seed as a static peer). Host 1, the seed, adds
# SIZE_MIB MiB (default 512) of random data. Then, in the same run:
#   single   host 2 fetches it alone (`cidfs pin add`), timed; host 2 is then wiped and restarted;
#   fan-out  hosts 2..HOSTS all start `cidfs pin add` at once.
# Prints each fetcher's time, the makespan (last fetcher done), the ratio makespan / single, the
# bytes the seed sent (and its ratio to the file), and the duplicate blocks received.
# Targets (issue 9): makespan <= 2x single, seed upload <= 2x the file.
# BENCH_CONFIG (printf %b text) is written to every host's config.toml, to compare settings.
# SCREENSHOT=PNG: host 2's dashboard, open in Chromium (Playwright) from before the fan-out
# starts until it ends, is saved to PNG: the transfer view, bytes received from each peer.
# Writes the figures to target/bench/fanout-FETCH-N.json (N fetchers; scripts/plot.sh draws them).
# FETCH says how the fetchers read (default pin): pin (`cidfs pin add`), cat (`cidfs cat` to
# /dev/null) or pull (`cidfs image pull` of a one-layer image whose layer is a tar holding the
# random file, pushed with --estargz=false, into an OCI layout).
# Usage: [FETCH=pin|cat|pull] scripts/bench-fanout.sh [SIZE_MIB] [HOSTS] [RATE]   (root)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, tc)" >&2; exit 1; }
SIZE_MIB=${1:-512}
HOSTS=${2:-8}
RATE=${3:-100mbit}
FETCH=${FETCH:-pin}
case $FETCH in pin|cat|pull) ;; *) echo "FETCH must be pin, cat or pull" >&2; exit 1 ;; esac
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup
NAME=cfo$$
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    bash scripts/cluster.sh down "$NAME"
    bench_cleanup
}
trap cleanup EXIT
bash scripts/cluster.sh up "$NAME" "$HOSTS" "$RATE"

cli() { local i=$1; shift; ip netns exec "$NAME-$i" "$BIN" --repo "$WORK/h$i" "$@"; }
stat_of() { cli "$1" repo stat | awk -v k="$2:" '$1 == k {print $2}'; }
# start_host I [args]: the daemon of host I in its namespace; waits (bounded) until ready
start_host() {
    local i=$1; shift
    mkdir -p "$WORK/h$i"; cp "$WORK/swarm.key" "$WORK/h$i/swarm.key"
    if [ -n "${BENCH_CONFIG:-}" ]; then printf '%b' "$BENCH_CONFIG" > "$WORK/h$i/config.toml"; fi
    RUST_LOG=${BENCH_LOG:-info} ip netns exec "$NAME-$i" "$BIN" --repo "$WORK/h$i" daemon \
        --listen /ip4/0.0.0.0/tcp/4001 --api-listen 127.0.0.1:0 --registry-listen 127.0.0.1:0 \
        "$@" 2> "$WORK/h$i.log" &
    PIDS+=($!); eval "H${i}_PID=$!"
    for _ in $(seq 1 300); do grep -q "daemon is ready" "$WORK/h$i.log" && return 0; sleep 0.1; done
    cat "$WORK/h$i.log" >&2; echo "host $i did not start" >&2; exit 1
}
stop_host() {
    local pid; eval "pid=\$H${1}_PID"
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}
# wait_peers I N: host I has at least N connected peers (bounded, 60 s)
wait_peers() {
    local deadline=$(( $(date +%s) + 60 ))
    until [ "$(cli "$1" swarm peers 2>/dev/null | wc -l)" -ge "$2" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "host $1 has fewer than $2 peers" >&2; exit 1; }
        sleep 0.2
    done
}

start_host 1
SEED_ID=$(grep -o "peer id [A-Za-z0-9]*" "$WORK/h1.log" | head -1 | cut -d' ' -f3)
SEED=/ip4/$(bash scripts/cluster.sh addr 1)/tcp/4001/p2p/$SEED_ID
for i in $(seq 2 "$HOSTS"); do start_host "$i" --peer "$SEED"; done
head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/data"
BYTES=$((SIZE_MIB << 20))
if [ "$FETCH" = pull ]; then
    tar -C "$WORK" -cf "$WORK/layer.tar" data
    oci_layout_of "$WORK/layer.tar" "$WORK/layout"
    CID=$(cli 1 image push -q --estargz=false "oci:$WORK/layout:bench")
    rm -rf "$WORK/layout" "$WORK/layer.tar"
else
    CID=$(cli 1 add -q "$WORK/data")
fi
rm -f "$WORK/data"
# fetch I: host I reads the data the FETCH way
fetch() {
    case $FETCH in
        pin) cli "$1" pin add "$CID" > /dev/null ;;
        cat) cli "$1" cat "$CID" > /dev/null ;;
        pull) cli "$1" image pull -q "$CID" --to "oci:$WORK/out-$1:bench" > /dev/null
              rm -rf "$WORK/out-$1" ;;
    esac
}

# ---- single fetch: host 2 alone
wait_peers 2 1
S0=$(stat_of 1 BytesSent)
t0=$(now); fetch 2; t1=$(now)
SINGLE_T=$(python3 -c "print(f'{$t1-$t0:.2f}')")
SINGLE_SENT=$(( $(stat_of 1 BytesSent) - S0 ))
stop_host 2; rm -rf "$WORK/h2"; start_host 2 --peer "$SEED"

# ---- fan-out: hosts 2..HOSTS at once, once all of them see every other host
for i in $(seq 2 "$HOSTS"); do wait_peers "$i" $((HOSTS - 1)); done
if [ -n "${SCREENSHOT:-}" ]; then
    playwright_venv
    ip netns exec "$NAME-2" target/venv/bin/python scripts/dashboard-shot.py \
        "http://$(api_of h2)/ui/" "$SCREENSHOT" "$WORK/fanout-done" > "$WORK/shot.log" 2>&1 &
    SHOT=$!; PIDS+=("$SHOT")
    for _ in $(seq 1 600); do grep -q '^loaded' "$WORK/shot.log" && break; alive "$SHOT" || break; sleep 0.1; done
    grep -q '^loaded' "$WORK/shot.log" || { cat "$WORK/shot.log" >&2; echo "the dashboard did not load" >&2; exit 1; }
fi
S0=$(stat_of 1 BytesSent)
t0=$(now)
for i in $(seq 2 "$HOSTS"); do
    ( fetch "$i" && now > "$WORK/done-$i" ) &
    FETCHER_PID[i]=$!
done
for i in $(seq 2 "$HOSTS"); do wait "${FETCHER_PID[i]}" || { echo "host $i failed to fetch" >&2; exit 1; }; done
if [ -n "${SCREENSHOT:-}" ]; then
    touch "$WORK/fanout-done"
    wait "$SHOT" || { cat "$WORK/shot.log" >&2; echo "the screenshot failed" >&2; exit 1; }
    cat "$WORK/shot.log"
fi
t_end=0
echo "cidfs bench-fanout: $HOSTS hosts, links $RATE (tbf, both ways), $SIZE_MIB MiB ($BYTES bytes), FETCH=$FETCH, CID $CID"
printf "%-34s %8s s   (seed sent %s bytes)\n" "single $FETCH (host 2 alone)" "$SINGLE_T" "$SINGLE_SENT"
DUP=0; RECV=0
for i in $(seq 2 "$HOSTS"); do
    t=$(cat "$WORK/done-$i"); d=$(stat_of "$i" DuplicateBlocks); r=$(stat_of "$i" BlocksFetched)
    DUP=$((DUP + d)); RECV=$((RECV + r))
    printf "%-34s %8s s   (%s blocks received, %s duplicates)\n" "fan-out: host $i" "$(python3 -c "print(f'{$t-$t0:.2f}')")" "$r" "$d"
    t_end=$(python3 -c "print(max($t_end, $t))")
done
MAKESPAN=$(python3 -c "print(f'{$t_end-$t0:.2f}')")
SEED_SENT=$(( $(stat_of 1 BytesSent) - S0 ))
printf "%-34s %8s s\n" "fan-out makespan ($((HOSTS - 1)) fetchers)" "$MAKESPAN"
echo "ratio makespan / single: $(python3 -c "print(f'{$MAKESPAN/$SINGLE_T:.2f}')") (target <= 2)"
echo "seed sent during the fan-out: $SEED_SENT bytes = $(python3 -c "print(f'{$SEED_SENT/$BYTES:.2f}')")x the file (target <= 2)"
echo "duplicate blocks received (all fetchers): $DUP of $RECV = $(python3 -c "print(f'{100*$DUP/max($RECV,1):.1f}')") %"
declare -A R=([fetch]=$FETCH [hosts]=$HOSTS [fetchers]=$((HOSTS - 1)) [rate]=$RATE
    [size_mib]=$SIZE_MIB [single_secs]=$SINGLE_T [makespan_secs]=$MAKESPAN [seed_sent]=$SEED_SENT
    [duplicates]=$DUP [received]=$RECV)
bench_json "fanout-$FETCH-$((HOSTS - 1))"
