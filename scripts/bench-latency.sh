#!/usr/bin/env bash
# One block's round trip: nodes A and B on loopback in a private swarm; N random blocks of SIZE
# bytes (default 2000 × 16 KiB, the size of most chunks a lazy start misses) are put on A
# (`block/put`, raw); B then gets each once over one keep-alive HTTP connection (`block/get`:
# a want to A, A's answer, B's check against the CID, the HTTP answer), and gets them all again
# from its own store, the baseline in the same run. Prints the median and p90 of each, in µs,
# and the ratio of the medians; writes target/bench/latency.json.
#   Usage: scripts/bench-latency.sh [N] [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000} SIZE=${2:-16384}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup
start_cidfs A
start_cidfs B --peer "$A_ADDR"
wait_peer B "${A_ADDR##*/}"

eval "$(python3 - "$(api_of A)" "$(api_of B)" "$N" "$SIZE" <<'PY'
import http.client, json, os, statistics, sys, time
a, b, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def conn(hp):
    h, p = hp.split(":")
    return http.client.HTTPConnection(h, int(p), timeout=30)
ca, cids, bnd = conn(a), [], "cidfs-bench-boundary"
for i in range(0, n, 100):
    body = b"".join(
        f'--{bnd}\r\nContent-Disposition: form-data; name="file"; filename="b"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + os.urandom(size) + b"\r\n"
        for _ in range(min(100, n - i))) + f"--{bnd}--\r\n".encode()
    ca.request("POST", "/api/v0/block/put?cid-codec=raw", body,
               {"Content-Type": f"multipart/form-data; boundary={bnd}"})
    r = ca.getresponse(); text = r.read().decode()
    if r.status != 200:
        sys.exit(f"block/put on A: {r.status} {text}")
    cids += [json.loads(l)["Key"] for l in text.splitlines() if l.strip()]
cb = conn(b)
def get_all():
    lat = []
    for c in cids:
        t = time.perf_counter()
        cb.request("POST", f"/api/v0/block/get?arg={c}")
        r = cb.getresponse(); d = r.read()
        if r.status != 200 or len(d) != size:
            sys.exit(f"block/get {c} on B: {r.status}, {len(d)} bytes")
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.9)]
remote, local = get_all(), get_all()
print(f"REMOTE_MED={remote[0]:.0f} REMOTE_P90={remote[1]:.0f} LOCAL_MED={local[0]:.0f} LOCAL_P90={local[1]:.0f}")
PY
)"

printf '%s blocks of %s bytes, block/get on B (µs):\n' "$N" "$SIZE"
printf '  from A (bitswap)      median %6s   p90 %6s\n' "$REMOTE_MED" "$REMOTE_P90"
printf '  from B'"'"'s store (base) median %6s   p90 %6s\n' "$LOCAL_MED" "$LOCAL_P90"
RATIO=$(python3 -c "print(f'{$REMOTE_MED/$LOCAL_MED:.2f}')")
echo "  from A ÷ from B's store (medians): $RATIO"
declare -A R=([blocks]=$N [block_bytes]=$SIZE [remote_median_us]=$REMOTE_MED
    [remote_p90_us]=$REMOTE_P90 [local_median_us]=$LOCAL_MED [local_p90_us]=$LOCAL_P90
    [ratio]=$RATIO)
bench_json latency
