#!/usr/bin/env bash
# A LAN of N hosts in network namespaces, for the swarm tests (tests/cluster.rs) and
# scripts/bench-fanout.sh. Needs root and iproute2.
#
#   scripts/cluster.sh up NAME N [RATE]   namespaces NAME-br (holding bridge br0) and NAME-1 … NAME-N;
#                                         host I has eth0 = 10.78.0.I/24 on a veth pair whose other
#                                         end is port hI of br0; with RATE (tc units: 1gbit,
#                                         200mbit…) both directions of every host's link are shaped
#                                         by a token bucket (tbf) to RATE
#   scripts/cluster.sh down NAME          deletes the namespaces (and with them the links)
#   scripts/cluster.sh cut NAME I         partitions host I: its bridge port goes down
#   scripts/cluster.sh heal NAME I        brings it back
#   scripts/cluster.sh addr I             prints host I's address
#
# Nothing is routed outside the namespaces: the bridge has no uplink and no address. Link delay
# is not emulated: this kernel has no netem (CONFIG_NET_SCH_NETEM is off); only rate shaping (tbf)
# is available, and veth latency is tens of microseconds.
set -euo pipefail

addr() { echo "10.78.0.$1"; }

shape() { # NS DEV RATE
    ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$3" burst 256kb latency 50ms
}

up() {
    local name=$1 n=$2 rate=${3:-} i tmp
    [ "$n" -ge 1 ] && [ "$n" -le 250 ] || { echo "N must be 1..250" >&2; exit 2; }
    ip netns add "$name-br"
    ip -n "$name-br" link add br0 type bridge
    ip -n "$name-br" link set br0 up
    ip -n "$name-br" link set lo up
    for i in $(seq 1 "$n"); do
        ip netns add "$name-$i"
        # created inside the host's namespace, so the names cannot clash with anything else
        ip -n "$name-$i" link add eth0 type veth peer name "h$i"
        ip -n "$name-$i" link set "h$i" netns "$name-br"
        ip -n "$name-br" link set "h$i" master br0
        ip -n "$name-br" link set "h$i" up
        ip -n "$name-$i" addr add "$(addr "$i")/24" dev eth0
        ip -n "$name-$i" link set eth0 up
        ip -n "$name-$i" link set lo up
        if [ -n "$rate" ]; then
            shape "$name-$i" eth0 "$rate"
            shape "$name-br" "h$i" "$rate"
        fi
    done
    # wait (bounded) until every link is up on both sides
    for i in $(seq 1 "$n"); do
        for _ in $(seq 1 100); do
            ip -n "$name-$i" link show eth0 | grep -q "state UP" && break
            sleep 0.05
        done
    done
    tmp=$(ip -n "$name-1" link show eth0 | grep -c "state UP" || true)
    [ "$tmp" = 1 ] || { echo "links did not come up" >&2; exit 1; }
}

down() {
    local name=$1 ns
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$name-(br|[0-9]+)$" || true); do
        ip netns delete "$ns" || true
    done
}

case "${1:-}" in
    up) up "$2" "$3" "${4:-}" ;;
    down) down "$2" ;;
    cut) ip -n "$2-br" link set "h$3" down ;;
    heal) ip -n "$2-br" link set "h$3" up ;;
    addr) addr "$2" ;;
    *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
