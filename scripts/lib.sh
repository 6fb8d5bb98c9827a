# Shared by the scripts/bench-* benchmarks (sourced, not run, from the repo root).
# bench_setup builds the release binary and sets BIN (the cidfs binary), WORK (a scratch directory
# holding a fresh swarm.key) and PIDS; its EXIT trap kills every process in PIDS and removes WORK
# (KEEP=1 copies the daemon logs to /tmp first). BENCH_NO_BUILD=1 skips the build and uses the
# existing target/release/cidfs as it is.

bench_setup() {
    if [ -z "${BENCH_NO_BUILD:-}" ]; then cargo build --release --quiet; fi
    BIN=$PWD/target/release/cidfs
    [ -x "$BIN" ] || { echo "no $BIN: build it with cargo build --release" >&2; exit 1; }
    WORK=$(mktemp -d)
    PIDS=()
    trap bench_cleanup EXIT
    "$BIN" keygen > "$WORK/swarm.key"
    chmod 600 "$WORK/swarm.key"
}

bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then cp "$WORK"/*.log /tmp/ 2>/dev/null || true; fi
    rm -rf "$WORK"
}

now() { date +%s.%N; }

# start_cidfs NAME [daemon args...]: a daemon with repo $WORK/NAME on loopback; waits (bounded,
# 30 s) until it is ready; sets NAME_PID and NAME_ADDR (/ip4/127.0.0.1/tcp/P/p2p/ID).
start_cidfs() {
    local name=$1; shift
    mkdir -p "$WORK/$name"
    cp "$WORK/swarm.key" "$WORK/$name/swarm.key"
    RUST_LOG=${BENCH_LOG:-info} "$BIN" --repo "$WORK/$name" daemon --listen /ip4/127.0.0.1/tcp/0 \
        --api-listen 127.0.0.1:0 --registry-listen 127.0.0.1:0 --no-mdns "$@" 2> "$WORK/$name.log" &
    PIDS+=($!)
    eval "${name}_PID=$!"
    for _ in $(seq 1 300); do
        if grep -q "daemon is ready" "$WORK/$name.log" && grep -q "listening on /ip4/127.0.0.1" "$WORK/$name.log"; then
            eval "${name}_ADDR=$(grep -o "listening on /ip4/127.0.0.1/tcp/[0-9]*/p2p/[A-Za-z0-9]*" "$WORK/$name.log" | head -1 | cut -d' ' -f3)"
            return 0
        fi
        sleep 0.1
    done
    cat "$WORK/$name.log" >&2
    echo "cidfs node $name did not start" >&2
    exit 1
}

# oci_layout_of TAR DIR: an OCI layout in DIR (tag "bench") whose one layer is the uncompressed
# TAR (hard-linked, as `docker save` gives it).
oci_layout_of() {
    python3 - "$1" "$2" <<'PY'
import hashlib, json, os, sys, shutil
tar, out = sys.argv[1], sys.argv[2]
blobs = os.path.join(out, "blobs/sha256"); os.makedirs(blobs)
def put(b):
    d = hashlib.sha256(b).hexdigest(); open(os.path.join(blobs, d), "wb").write(b); return d
h = hashlib.sha256()
with open(tar, "rb") as f:
    for c in iter(lambda: f.read(1 << 20), b""): h.update(c)
ld = h.hexdigest(); size = os.path.getsize(tar)
os.link(tar, os.path.join(blobs, ld))
cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + ld]}}).encode()
cd = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cd, "size": len(cfg)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + ld, "size": size}]}).encode()
md = put(man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "sha256:" + md, "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]},
    open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
}
