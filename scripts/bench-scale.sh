#!/usr/bin/env bash
# Scale probe: NODES cidfs daemons (default 32) on loopback in one private swarm. Node 1 is the
# bootstrap peer of all others (mDNS off, Kademlia on, as configured by default), so whatever
# else a node learns of the swarm comes from identify and Kademlia. Measures, in one run:
#   - how many peers each node is connected to after the swarm settles (min / median / max),
#   - each daemon's resident memory when idle and after the fan-out (median / max),
#   - a fan-out of SIZE_MIB MiB (default 16) from node 1 to all the others at once
#     (`cidfs pin add`): makespan, node 1's upload ÷ the file, duplicates,
#     next to one node fetching it alone.
# Loopback is not shaped: the figures are CPU-bound on this machine (all daemons share its cores).
# Writes target/bench/scale-NODES.json.
# Usage: scripts/bench-scale.sh [NODES] [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${1:-32}
SIZE_MIB=${2:-16}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup
small_config() { # a small sled cache and chunk cache per node: many daemons share the RAM
    mkdir -p "$WORK/$1"
    printf '[store]\ncache_capacity_mb = 16\n[mount]\ncache_mb = 16\n' > "$WORK/$1/config.toml"
}
small_config n1
start_cidfs n1
# shellcheck disable=SC2154  # n1_ADDR is set by start_cidfs
BOOT=$n1_ADDR
t0=$(now)
for i in $(seq 2 "$NODES"); do small_config "n$i"; start_cidfs "n$i" --peer "$BOOT"; done
t1=$(now)
peers_of() { "$BIN" --repo "$WORK/$1" swarm peers 2>/dev/null | wc -l; }
rss_of() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$1/status"; }
stat_of() { "$BIN" --repo "$WORK/$1" repo stat | awk -v k="$2:" '$1 == k {print $2}'; }
summary() { sort -n | awk '{a[NR]=$1} END {printf "%s / %s / %s", a[1], a[int((NR+1)/2)], a[NR]}'; }
# let identify and Kademlia spread the peer tables (bounded: 20 s, or until nothing changes)
prev=
for _ in $(seq 1 20); do
    cur=$(for i in $(seq 1 "$NODES"); do peers_of "n$i"; done | summary)
    [ "$cur" = "$prev" ] && break
    prev=$cur; sleep 1
done
PEERS=$cur
RSS_IDLE=$(for p in "${PIDS[@]}"; do rss_of "$p"; done | summary)

head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/data"
BYTES=$((SIZE_MIB << 20))
CID=$("$BIN" --repo "$WORK/n1" add -q "$WORK/data")
s0=$(now); "$BIN" --repo "$WORK/n2" pin add "$CID" > /dev/null; s1=$(now)
S0=$(stat_of n1 BytesSent)
f0=$(now)
for i in $(seq 3 "$NODES"); do "$BIN" --repo "$WORK/n$i" pin add "$CID" > /dev/null & FETCH+=($!); done
for p in "${FETCH[@]}"; do wait "$p"; done
f1=$(now)
SENT=$(( $(stat_of n1 BytesSent) - S0 ))
DUP=0; for i in $(seq 3 "$NODES"); do DUP=$((DUP + $(stat_of "n$i" DuplicateBlocks))); done
RSS_AFTER=$(for p in "${PIDS[@]}"; do rss_of "$p"; done | summary)

echo "cidfs bench-scale: $NODES daemons on loopback, bootstrap node 1, $SIZE_MIB MiB file"
echo "start-up of $((NODES - 1)) daemons: $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
echo "connected peers per node (min / median / max): $PEERS"
echo "resident memory per daemon, MiB (min / median / max): idle $RSS_IDLE; after the fan-out $RSS_AFTER"
echo "one fetch alone (node 2): $(python3 -c "print(f'{$s1-$s0:.2f}')") s"
echo "fan-out to $((NODES - 2)) nodes at once: makespan $(python3 -c "print(f'{$f1-$f0:.2f}')") s; node 1 sent $(python3 -c "print(f'{$SENT/$BYTES:.2f}')")x the file; $DUP duplicate blocks"
declare -A R=([nodes]=$NODES [size_mib]=$SIZE_MIB [startup_secs]=$(secs "$t0" "$t1")
    [peers]="$PEERS" [rss_idle]="$RSS_IDLE" [rss_after]="$RSS_AFTER" [single_secs]=$(secs "$s0" "$s1")
    [makespan_secs]=$(secs "$f0" "$f1") [seed_sent]=$SENT [duplicates]=$DUP)
bench_json "scale-$NODES"
