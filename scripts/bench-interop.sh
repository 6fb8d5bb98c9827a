#!/usr/bin/env bash
# Interop transfer benchmark: SIZE_MIB (default 256) of random data over loopback in a private
# swarm (one fresh swarm.key), in one run, for each pair of implementations:
#   Helia→Helia, cidfs→cidfs, Helia→cidfs, cidfs→Helia, and with a real kubo 0.22 node
#   (tests/interop/kubo_peer.py over the kubo-python wheel in target/venv, installed if missing;
#   flatfs without fsync on the kubo side): kubo→kubo, kubo→cidfs, cidfs→kubo.
# The sender adds the file (kubo --cid-version=1 layout on both sides, so the CID is the same;
# kubo 0.22's library adds only CIDv0 with dag-pb leaves, which cidfs fetches as such),
# a fresh receiver fetches it over bitswap 1.2.0; the time is the receiver's fetch only, checked
# byte for byte afterwards. Prints a MB/s table and writes it to target/bench/interop.json. Helia is
# tests/interop/peer.mjs (npm ci if needed).
# Usage: scripts/bench-interop.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-256}
BYTES=$((SIZE_MIB << 20))
PEER=$PWD/tests/interop/peer.mjs
[ -d tests/interop/node_modules ] || npm ci --prefix tests/interop --no-audit --no-fund </dev/null
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup
head -c "$BYTES" /dev/urandom > "$WORK/data"

fail() { echo "bench-interop: $*" >&2; exit 1; }

# start_helia NAME [peer.mjs args...]: a Helia peer on two fifos; sets NAME_IN, NAME_OUT, NAME_ADDR
start_helia() {
    local name=$1; shift
    mkfifo "$WORK/$name.in" "$WORK/$name.out"
    node "$PEER" --key "$WORK/swarm.key" --listen 127.0.0.1:0 "$@" \
        < "$WORK/$name.in" > "$WORK/$name.out" 2> "$WORK/$name.log" &
    PIDS+=($!)
    local in out line
    exec {in}> "$WORK/$name.in"
    exec {out}< "$WORK/$name.out"
    eval "${name}_IN=$in ${name}_OUT=$out"
    read -r -t 60 line <&"$out" || { cat "$WORK/$name.log" >&2; fail "Helia peer $name did not start"; }
    [[ $line == listening\ * ]] || fail "Helia peer $name: $line"
    eval "${name}_ADDR=${line#listening }"
}

# helia NAME COMMAND...: sends one command, prints the answer after `ok` (bounded wait)
helia() {
    local name=$1; shift
    local in out line
    in=$(eval echo "\$${name}_IN"); out=$(eval echo "\$${name}_OUT")
    echo "$*" >&"$in"
    read -r -t 900 line <&"$out" || { cat "$WORK/$name.log" >&2; fail "Helia peer $name: no answer to $*"; }
    [[ $line == ok* ]] || { cat "$WORK/$name.log" >&2; fail "Helia peer $name: $* -> $line"; }
    echo "${line#ok }"
}

stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

declare -A RESULT
CID_ALL=$("$BIN" add -n -q "$WORK/data")

# Helia → Helia
start_helia hsrc
CID=$(helia hsrc add "$WORK/data"); [ "$CID" = "$CID_ALL" ] || fail "Helia CID $CID != cidfs CID $CID_ALL"
start_helia hdst --dial "$hsrc_ADDR"
ANSWER=$(helia hdst cat "$CID" "$WORK/out"); MS=${ANSWER#* }
cmp -s "$WORK/out" "$WORK/data" || fail "Helia→Helia corrupted the data"
RESULT[helia-helia]=$(mbps "$BYTES" "$MS/1000"); stop_all; rm -f "$WORK/out" "$WORK"/h*.in "$WORK"/h*.out

# cidfs → cidfs
start_cidfs csrc
"$BIN" --repo "$WORK/csrc" add -q "$WORK/data" > /dev/null
start_cidfs cdst --peer "$csrc_ADDR"
t0=$(now); "$BIN" --repo "$WORK/cdst" cat "$CID" > /dev/null; t1=$(now)
"$BIN" --repo "$WORK/cdst" cat "$CID" | cmp -s - "$WORK/data" || fail "cidfs→cidfs corrupted the data"
RESULT[cidfs-cidfs]=$(mbps "$BYTES" "$t1-$t0"); stop_all; rm -rf "$WORK/csrc" "$WORK/cdst"

# Helia → cidfs (Helia dials the cidfs node, then adds)
start_cidfs cdst
start_helia hsrc --dial "$cdst_ADDR"
helia hsrc add "$WORK/data" > /dev/null
t0=$(now); "$BIN" --repo "$WORK/cdst" cat "$CID" > /dev/null; t1=$(now)
"$BIN" --repo "$WORK/cdst" cat "$CID" | cmp -s - "$WORK/data" || fail "Helia→cidfs corrupted the data"
RESULT[helia-cidfs]=$(mbps "$BYTES" "$t1-$t0"); stop_all; rm -rf "$WORK/cdst" "$WORK"/h*.in "$WORK"/h*.out

# cidfs → Helia
start_cidfs csrc
"$BIN" --repo "$WORK/csrc" add -q "$WORK/data" > /dev/null
start_helia hdst --dial "$csrc_ADDR"
ANSWER=$(helia hdst cat "$CID" "$WORK/out"); MS=${ANSWER#* }
cmp -s "$WORK/out" "$WORK/data" || fail "cidfs→Helia corrupted the data"
RESULT[cidfs-helia]=$(mbps "$BYTES" "$MS/1000"); stop_all

# kubo: serve (adds, JSON lines) and fetch (prints its own fetch time)
KUBO_PY=target/venv/bin/python
if ! "$KUBO_PY" -c 'import importlib.util as u, sys; sys.exit(not u.find_spec("libkubo"))' 2>/dev/null; then
    python3 -m venv target/venv
    target/venv/bin/pip install -q --disable-pip-version-check kubo-python==0.1.5 cffi==2.1.1 cryptography==50.0.2 </dev/null
fi
KUBO=$PWD/tests/interop/kubo_peer.py
# start_kubo NAME [FILE]: a serving kubo node; sets NAME_ADDR and (with FILE) NAME_CID
start_kubo() {
    local name=$1 file=${2:-}
    LIBP2P_FORCE_PNET=1 "$KUBO_PY" "$KUBO" serve --repo "$WORK/$name" --key "$WORK/swarm.key" \
        --port 0 --nosync ${file:+--add "$file"} > "$WORK/$name.json" 2> "$WORK/$name.log" &
    PIDS+=($!)
    for _ in $(seq 1 1200); do
        grep -q '"ready"' "$WORK/$name.json" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '"ready"' "$WORK/$name.json" || { cat "$WORK/$name.log" >&2; fail "kubo $name did not start"; }
    eval "${name}_ADDR=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["multiaddrs"][0])' "$WORK/$name.json")"
    eval "${name}_CID=$(python3 -c 'import json,sys; print(next((json.loads(l)["cid"] for l in open(sys.argv[1]) if "added" in l), ""))' "$WORK/$name.json")"
}
# kubo_fetch PEER CID: a fresh kubo fetches CID from PEER; prints its fetch seconds
kubo_fetch() {
    local out
    out=$(LIBP2P_FORCE_PNET=1 "$KUBO_PY" "$KUBO" fetch --repo "$WORK/kfetch" --key "$WORK/swarm.key" \
        --port 0 --nosync --peer "$1" --cid "$2" --out "$WORK/out" --timeout 900 --sha256) \
        || fail "kubo fetch of $2 failed: $out"
    rm -rf "$WORK/kfetch"
    cmp -s "$WORK/out" "$WORK/data" || fail "the data kubo fetched differs"
    echo "$out" | python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin if "\"fetch\"" in l][0]["seconds"])'
}

# kubo → kubo
start_kubo ksrc "$WORK/data"
RESULT[kubo-kubo]=$(mbps "$BYTES" "$(kubo_fetch "$ksrc_ADDR" "$ksrc_CID")")

# kubo → cidfs (the same kubo, a fresh cidfs that connects first)
start_cidfs cdst
"$BIN" --repo "$WORK/cdst" swarm connect "$ksrc_ADDR" > /dev/null
t0=$(now); "$BIN" --repo "$WORK/cdst" cat "$ksrc_CID" > /dev/null; t1=$(now)
"$BIN" --repo "$WORK/cdst" cat "$ksrc_CID" | cmp -s - "$WORK/data" || fail "kubo→cidfs corrupted the data"
RESULT[kubo-cidfs]=$(mbps "$BYTES" "$t1-$t0"); stop_all; rm -rf "$WORK/cdst" "$WORK/ksrc"

# cidfs → kubo
start_cidfs csrc
"$BIN" --repo "$WORK/csrc" add -q "$WORK/data" > /dev/null
RESULT[cidfs-kubo]=$(mbps "$BYTES" "$(kubo_fetch "$csrc_ADDR" "$CID")"); stop_all; rm -rf "$WORK/csrc"

echo "cidfs bench-interop: $SIZE_MIB MiB over loopback, private swarm, CID $CID"
echo "| sender → receiver | MB/s |"
echo "|---|---:|"
echo "| Helia → Helia | ${RESULT[helia-helia]} |"
echo "| cidfs → cidfs | ${RESULT[cidfs-cidfs]} |"
echo "| Helia → cidfs | ${RESULT[helia-cidfs]} |"
echo "| cidfs → Helia | ${RESULT[cidfs-helia]} |"
echo "| kubo → kubo | ${RESULT[kubo-kubo]} |"
echo "| kubo → cidfs | ${RESULT[kubo-cidfs]} |"
echo "| cidfs → kubo | ${RESULT[cidfs-kubo]} |"
echo "cidfs→cidfs / Helia→Helia: $(python3 -c "print(f'{${RESULT[cidfs-cidfs]}/${RESULT[helia-helia]}:.1f}')")x"
echo "kubo→cidfs / kubo→kubo: $(python3 -c "print(f'{${RESULT[kubo-cidfs]}/${RESULT[kubo-kubo]}:.2f}')")x (target >= 1)"
declare -A R=([size_mib]=$SIZE_MIB)
for k in "${!RESULT[@]}"; do R[$k]=${RESULT[$k]}; done
bench_json interop
