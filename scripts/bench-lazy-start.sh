#!/usr/bin/env bash
# Lazy container start benchmark: starting a container from a lazy `cidfs mount` of an image vs a
# full `cidfs image pull` + unpack, between two nodes A and B on loopback in a private swarm.
# Usage: scripts/bench-lazy-start.sh [FILLER_MIB]      (run as root: debootstrap, chroot, FUSE)
#
# The image (an OCI layout, both layers uncompressed tars; `image push` converts them to eStargz):
#   layer 1  a Debian bookworm rootfs: `debootstrap --variant=minbase --include=python3`, from the
#            mirror of this machine's apt sources ($MIRROR overrides it), tarred with numeric owners
#            and xattrs. The tar is cached in $BENCH_CACHE (default /var/tmp/cidfs-bench-lazy-start,
#            file rootfs-bookworm-minbase-python3.tar), so reruns skip debootstrap; delete the file
#            to rebuild it. debootstrap is installed with apt-get if it is missing.
#   layer 2  FILLER_MIB MiB of incompressible random data under /filler: seq-256m.bin (256 MiB) and
#            blob-N.bin (64 MiB each). The default FILLER_MIB makes the image about 1 GiB in all.
# Node B's config.toml has `[mount] background_fetch = false`, so a mount fetches only what is read.
# Measured (MB = 10^6 bytes):
#   push     `cidfs image push` on A.
#   (i)      full start on B: `image pull` into an OCI layout + `tar -x` of every layer into a
#            directory + `chroot DIR python3 -c 'print("hello")'`.
#   (ii)     lazy start on a fresh B (daemon stopped, repo wiped, restarted): `cidfs mount CID MNT`
#            + the same chroot run in MNT.
#            For both: seconds, and the bytes B fetched from A (BytesFetched of repo/stat).
#   podman   (iii) `podman run IMAGE python3 …` by B's registry endpoint with B's additional layer
#            store, under trust.unverified_layers = verify-first (each layer read whole and proven
#            first: the default) and (iii') trust (lazy), and (iv) the same without it (podman pulls every layer from the endpoint);
#            both on a fresh B and fresh podman storage; skipped without podman.
#   containerd  (v) `ctr-remote image rpull --snapshotter=cidfs` + `ctr run` through B's registry
#            endpoint and B's snapshotter, under verify-first (each layer read whole and proven
#            before it is committed: the default) and (v') trust (served lazily), and (vi) `ctr pull` + `ctr run`
#            with containerd's overlayfs snapshotter (every layer downloaded and unpacked); both on
#            a fresh B and a fresh containerd; skipped without containerd and ctr-remote.
#   reads    `dd bs=1M` of /filler/seq-256m.bin through a fresh mount (cold: fetched from A over
#            bitswap; warm: read again, best of 3; then B restarted, every chunk in its store, page
#            cache dropped), and of the same file in the directory unpacked
#            in (i) (the same way); times are dd's own.
# Before each cold step the kernel page cache is dropped when /proc/sys/vm/drop_caches is writable
# (the daemons' own caches stay). BENCH_NO_BUILD=1 uses target/release/cidfs without building.
# Writes the figures to target/bench/lazy-start.json (scripts/plot.sh draws them).
# Targets (the lazy-mount issue): (ii) >= 25x faster than (i), with <= 3 % of the image's bytes;
# warm read through the mount >= 5 GB/s.
# If the binary has no `mount` command yet, only push and (i) run; the lazy rows print n/a.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot, FUSE)" >&2; exit 1; }
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup

CACHE_DIR=${BENCH_CACHE:-/var/tmp/cidfs-bench-lazy-start}
ROOTFS_TAR=$CACHE_DIR/rootfs-bookworm-minbase-python3.tar
TAG=bench
SEQ_MIB=256
SEQ=filler/seq-256m.bin
SEQ_BYTES=$((SEQ_MIB << 20))
MNT=$WORK/mnt
BOOTSTRAP_TMP=

# The best of three `dd_secs` reads of $1 (warm reads of 256 MiB take ~50 ms: one run is noisy).
best_of_3() { for _ in 1 2 3; do dd_secs "$1"; done | sort -g | head -1; }

cleanup() {
    set +e
    if [ -n "${MNT:-}" ] && is_mounted "$MNT"; then
        timeout 20 "$BIN" --repo "$WORK/b" umount "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || umount -l "$MNT"
    fi
    for m in $(mounted_under "$WORK"); do umount -l "$m"; done
    [ -n "$BOOTSTRAP_TMP" ] && safe_rm "$BOOTSTRAP_TMP"
    bench_cleanup
}
trap cleanup EXIT

# ---- 1. the rootfs (cached)
debian_rootfs "$ROOTFS_TAR" python3
ROOTFS_BYTES=$(stat -c %s "$ROOTFS_TAR")
FILLER_MIB=${1:-$(( 1024 - (ROOTFS_BYTES >> 20) ))}
if ! [[ $FILLER_MIB =~ ^[0-9]+$ ]] || [ "$FILLER_MIB" -lt "$SEQ_MIB" ]; then
    echo "FILLER_MIB must be at least $SEQ_MIB (it holds the $SEQ_MIB MiB sequential-read file)" >&2
    exit 1
fi

# ---- 2. the OCI layout: rootfs layer + random filler layer
python3 - "$WORK/filler.tar" "$FILLER_MIB" "$SEQ_MIB" <<'PY'
import os, sys, tarfile
out, total, seq = sys.argv[1], int(sys.argv[2]) << 20, int(sys.argv[3]) << 20
class Random:
    def __init__(self, n): self.n = n
    def read(self, k=-1):
        k = self.n if k < 0 else min(k, self.n)
        self.n -= k
        return os.urandom(k)
def info(name, size, kind=tarfile.REGTYPE, mode=0o644):
    i = tarfile.TarInfo(name); i.size, i.type, i.mode, i.mtime = size, kind, mode, 1700000000
    return i
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20) as t:
    t.addfile(info("filler", 0, tarfile.DIRTYPE, 0o755))
    t.addfile(info("filler/seq-256m.bin", seq), Random(seq))
    left, n = total - seq, 0
    while left > 0:
        size = min(left, 64 << 20)
        t.addfile(info(f"filler/blob-{n}.bin", size), Random(size))
        left -= size; n += 1
PY
FILLER_BYTES=$(stat -c %s "$WORK/filler.tar")
IMAGE_TAR_BYTES=$((ROOTFS_BYTES + FILLER_BYTES))
python3 - "$WORK/layout" "$TAG" "$ROOTFS_TAR" "$WORK/filler.tar" <<'PY'
import hashlib, json, os, shutil, sys
layout, tag, layers = sys.argv[1], sys.argv[2], sys.argv[3:]
blobs = os.path.join(layout, "blobs", "sha256"); os.makedirs(blobs)
def put(b):
    d = hashlib.sha256(b).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f: f.write(b)
    return {"digest": "sha256:" + d, "size": len(b)}
descs = []
for path in layers:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for c in iter(lambda: f.read(1 << 20), b""): h.update(c)
    d = h.hexdigest(); dst = os.path.join(blobs, d)
    try: os.link(path, dst)
    except OSError: shutil.copyfile(path, dst)
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + d,
                  "size": os.path.getsize(path)})
cfg = json.dumps({"architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/bash"]},
    "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in descs]},
    "history": [{"created_by": "debootstrap --variant=minbase --include=python3 bookworm"},
                {"created_by": "random filler"}]}).encode()
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(cfg)},
    "layers": descs}).encode()
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(man),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
with open(os.path.join(layout, "index.json"), "w") as f: json.dump(index, f)
with open(os.path.join(layout, "oci-layout"), "w") as f: f.write('{"imageLayoutVersion":"1.0.0"}')
PY
if command -v skopeo > /dev/null; then
    skopeo inspect "oci:$WORK/layout:$TAG" > /dev/null || { echo "skopeo rejects the OCI layout" >&2; exit 1; }
fi

# ---- 3. nodes A and B; B's config turns background fetching off
HAVE_MOUNT=0
if "$BIN" mount --help > /dev/null 2>&1; then HAVE_MOUNT=1; fi
# B_TRUST: B's trust.unverified_layers (the default, verify-first, reads a layer whole before the
# layer store or the snapshotter hands it to a runtime the first time; trust never does)
B_TRUST=verify-first
HAVE_TRUST=0
if grep -q unverified_layers config/cidfs.toml 2>/dev/null; then HAVE_TRUST=1; fi
b_config() {
    if [ "$HAVE_MOUNT" = 1 ]; then printf '[mount]\nbackground_fetch = false\n'; fi
    if [ "$HAVE_TRUST" = 1 ]; then printf '[trust]\nunverified_layers = "%s"\n' "$B_TRUST"; fi
}
# `cidfs mount` on B, its "mounted ..." note (stderr) shown only if it fails.
mount_b() {
    "$BIN" --repo "$WORK/b" mount "$CID" "$MNT" 2> "$WORK/mount.err" || { cat "$WORK/mount.err" >&2; exit 1; }
}
start_cidfs a
# shellcheck disable=SC2154  # a_ADDR is set by start_cidfs (eval)
A_ID=${a_ADDR##*/}
mkdir -p "$WORK/b"
b_config > "$WORK/b/config.toml"
start_cidfs b --peer "$a_ADDR"

# ---- 4. push on A
t0=$(now); CID=$("$BIN" --repo "$WORK/a" image push -q "oci:$WORK/layout:$TAG"); t1=$(now)
PUSH_T0=$t0; PUSH_T1=$t1
IMAGE_BYTES=$("$BIN" --repo "$WORK/a" image inspect --json "$CID" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(sum(l["size"] for i in r["images"] for l in i["layers"]))')
rm -f "$WORK/filler.tar"; rm -rf "$WORK/layout"

# ---- 5. (i) full start on B: pull, unpack, run
wait_peer b "$A_ID"
drop_caches
F0=$(bytes_fetched b)
t0=$(now)
"$BIN" --repo "$WORK/b" image pull -q "$CID" --to "oci:$WORK/full:$TAG"
t1=$(now)
mkdir "$WORK/rootfs"
python3 - "$WORK/full" "$TAG" <<'PY' > "$WORK/layers.txt"
import json, os, sys
layout, tag = sys.argv[1], sys.argv[2]
def blob(d): return os.path.join(layout, "blobs", *d["digest"].split(":", 1))
def load(d): return json.load(open(blob(d)))
index = json.load(open(os.path.join(layout, "index.json")))
descs = [d for d in index["manifests"] if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag] or index["manifests"]
d = descs[0]
while "index" in d["mediaType"] or "manifest.list" in d["mediaType"]:
    ms = load(d)["manifests"]
    d = next((m for m in ms if m.get("platform", {}).get("architecture") == "amd64"), ms[0])
for l in load(d)["layers"]:
    print(("z " if "gzip" in l["mediaType"] else "- ") + blob(l))
PY
while read -r kind path; do
    z=; [ "$kind" = z ] && z=z
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$WORK/rootfs" -x${z}f "$path" \
        --exclude=stargz.index.json --exclude=.prefetch.landmark --exclude=.no.prefetch.landmark
done < "$WORK/layers.txt"
t2=$(now)
OUT=$(chroot "$WORK/rootfs" python3 -c 'print("hello")')
t3=$(now)
[ "$OUT" = hello ] || { echo "container (i) printed '$OUT'" >&2; exit 1; }
FULL_PULL_T=$(secs "$t0" "$t1"); FULL_UNPACK_T=$(secs "$t1" "$t2"); FULL_RUN_T=$(secs "$t2" "$t3")
FULL_T=$(secs "$t0" "$t3")
FULL_BYTES=$(( $(bytes_fetched b) - F0 ))
rm -rf "$WORK/full"

if [ "$HAVE_MOUNT" = 1 ]; then
    # B starts over: no blocks, no connections, fresh counters
    FRESH_CONFIG=$(b_config) fresh_node b "$a_ADDR"
    mkdir "$MNT"

    # ---- 6. (ii) lazy start on B: mount, run
    drop_caches
    F0=$(bytes_fetched b)
    t0=$(now)
    mount_b
    t1=$(now)
    OUT=$(chroot "$MNT" python3 -c 'print("hello")')
    t2=$(now)
    [ "$OUT" = hello ] || { echo "container (ii) printed '$OUT'" >&2; exit 1; }
    LAZY_MOUNT_T=$(secs "$t0" "$t1"); LAZY_RUN_T=$(secs "$t1" "$t2"); LAZY_T=$(secs "$t0" "$t2")
    LAZY_BYTES=$(( $(bytes_fetched b) - F0 ))
    "$BIN" --repo "$WORK/b" umount "$MNT"

    # ---- 7. sequential read of the 256 MiB file: fresh mount (cold: from A; warm: again), local
    mount_b
    drop_caches
    F0=$(bytes_fetched b)
    COLD_T0=0; COLD_T1=$(dd_secs "$MNT/$SEQ")
    COLD_BYTES=$(( $(bytes_fetched b) - F0 ))
    WARM_T0=0; WARM_T1=$(best_of_3 "$MNT/$SEQ")
    cmp -s "$MNT/$SEQ" "$WORK/rootfs/$SEQ" || { echo "$SEQ differs between the mount and (i)" >&2; exit 1; }
    "$BIN" --repo "$WORK/b" umount "$MNT"
    # cold again with every chunk in B's store: B restarted (its chunk cache empty), page cache
    # dropped; reads inflate and check chunks from local blocks
    stop_cidfs b
    start_cidfs b --peer "$a_ADDR"
    wait_peer b "$A_ID"
    mount_b
    drop_caches
    F0=$(bytes_fetched b)
    STORE_T0=0; STORE_T1=$(dd_secs "$MNT/$SEQ")
    STORE_BYTES=$(( $(bytes_fetched b) - F0 ))
    "$BIN" --repo "$WORK/b" umount "$MNT"
fi
# A fresh B (no blocks, no connections, fresh counters) started with "$@"; REG is its endpoint.
fresh_b() {
    FRESH_CONFIG=$(b_config) fresh_node b "$a_ADDR" "$@"
    REG=$(cat "$WORK/b/registry")
}
registry_layers() {
    curl -sf -X POST "http://$(api_of b)/api/v0/repo/stat" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["RegistryLayers"])'
}
# ---- 7b. podman: first start through B's additional layer store vs a plain pull from B's
# registry endpoint (both on a fresh B and a fresh podman storage)
HAVE_PODMAN=0
if [ "$HAVE_MOUNT" = 1 ] && command -v podman > /dev/null && "$BIN" daemon --help | grep -q -- --layer-store; then
    HAVE_PODMAN=1
fi
if [ "$HAVE_PODMAN" = 1 ]; then
    # (iii) the layer store: podman takes the layers from it; first under verify-first (the
    # default: each layer is read whole and proven before it is handed over), then under trust
    # (lazily, unproven)
    als_run() {
        B_TRUST=$1 fresh_b --layer-store "$WORK/store"
        rm -rf "$WORK/p-als"; podman_env "$WORK/p-als"
        drop_caches
        F0=$(bytes_fetched b)
        t0=$(now)
        OUT=$(pod "$WORK/p-als" --storage-opt "overlay.additionallayerstore=$WORK/store:ref" \
            run --rm "$REG/ipfs/$CID:latest" python3 -c 'print("hello")')
        t1=$(now)
        [ "$OUT" = hello ] || { echo "podman (iii, $1) printed '$OUT'" >&2; exit 1; }
        ALS_T=$(secs "$t0" "$t1"); ALS_BYTES=$(( $(bytes_fetched b) - F0 )); ALS_REG_LAYERS=$(registry_layers)
        pod "$WORK/p-als" system reset -f > /dev/null 2>&1 || true
    }
    als_run verify-first
    ALS_V_T=$ALS_T; ALS_V_BYTES=$ALS_BYTES; ALS_V_REG_LAYERS=$ALS_REG_LAYERS
    als_run trust
    # (iv) no layer store: podman pulls every layer from the endpoint, then runs
    fresh_b
    podman_env "$WORK/p-pull"
    drop_caches
    F0=$(bytes_fetched b)
    t0=$(now)
    OUT=$(pod "$WORK/p-pull" run --rm "$REG/ipfs/$CID:latest" python3 -c 'print("hello")')
    t1=$(now)
    [ "$OUT" = hello ] || { echo "podman (iv) printed '$OUT'" >&2; exit 1; }
    PULL_T=$(secs "$t0" "$t1"); PULL_BYTES=$(( $(bytes_fetched b) - F0 )); PULL_REG_LAYERS=$(registry_layers)
    for d in "$WORK/p-als" "$WORK/p-pull"; do pod "$d" system reset -f > /dev/null 2>&1 || true; done
fi

# ---- 7c. containerd: `ctr-remote image rpull` + `ctr run` through B's snapshotter (v) vs
# `ctr pull` + `ctr run` with containerd's overlayfs snapshotter (vi); each on a fresh B and a
# fresh containerd (its own root, state and socket under $WORK, CRI off)
HAVE_CTRD=0
if [ "$HAVE_MOUNT" = 1 ] && command -v containerd > /dev/null && command -v ctr-remote > /dev/null \
        && "$BIN" daemon --help | grep -q -- --snapshotter-socket; then
    HAVE_CTRD=1
fi
if [ "$HAVE_CTRD" = 1 ]; then
    ctrd_run() { ctrd run --rm --snapshotter "$1" --runc-root "$CTRD/runc" "$REG/ipfs/$CID:latest" "bench-$1" python3 -c 'print("hello")'; }
    # (v) rpull: B's snapshotter serves the layers; first under verify-first (the default: each
    # layer read whole and proven before it is committed), then (v') under trust (lazily, unproven)
    rpull_run() {
        B_TRUST=$1 fresh_b
        start_containerd "$WORK/ctrd-lazy-$1" "$(cidfs_snapshotter "$WORK/b")"
        drop_caches
        F0=$(bytes_fetched b)
        t0=$(now)
        ctr-remote --address "$CTRD/c.sock" --namespace default image rpull --plain-http --snapshotter=cidfs "$REG/ipfs/$CID:latest" > /dev/null
        t1=$(now)
        OUT=$(ctrd_run cidfs)
        t2=$(now)
        [ "$OUT" = hello ] || { echo "containerd (v, $1) printed '$OUT'" >&2; exit 1; }
        RPULL_PULL_T=$(secs "$t0" "$t1"); RPULL_RUN_T=$(secs "$t1" "$t2"); RPULL_T=$(secs "$t0" "$t2")
        RPULL_BYTES=$(( $(bytes_fetched b) - F0 )); RPULL_REG_LAYERS=$(registry_layers)
        stop_containerd
    }
    rpull_run verify-first
    RPULL_V_T=$RPULL_T; RPULL_V_PULL_T=$RPULL_PULL_T; RPULL_V_RUN_T=$RPULL_RUN_T
    RPULL_V_BYTES=$RPULL_BYTES; RPULL_V_REG_LAYERS=$RPULL_REG_LAYERS
    rpull_run trust
    # (vi) full pull into the overlayfs snapshotter
    fresh_b
    start_containerd "$WORK/ctrd-full"
    drop_caches
    F0=$(bytes_fetched b)
    t0=$(now)
    ctrd images pull --plain-http --snapshotter overlayfs "$REG/ipfs/$CID:latest" > /dev/null
    t1=$(now)
    OUT=$(ctrd_run overlayfs)
    t2=$(now)
    [ "$OUT" = hello ] || { echo "containerd (vi) printed '$OUT'" >&2; exit 1; }
    CPULL_PULL_T=$(secs "$t0" "$t1"); CPULL_RUN_T=$(secs "$t1" "$t2"); CPULL_T=$(secs "$t0" "$t2")
    CPULL_BYTES=$(( $(bytes_fetched b) - F0 )); CPULL_REG_LAYERS=$(registry_layers)
    stop_containerd
fi

drop_caches
LCOLD_T0=0; LCOLD_T1=$(dd_secs "$WORK/rootfs/$SEQ"); LCOLD_DROPPED=$DROPPED
LWARM_T0=0; LWARM_T1=$(best_of_3 "$WORK/rootfs/$SEQ")

# ---- 8. summary
NA=n/a
ratio() { python3 -c "print(f'{$1/$2:.$3f}')"; }
echo "cidfs bench-lazy-start: image $CID"
echo "layers: rootfs tar $ROOTFS_BYTES bytes + filler $FILLER_MIB MiB ($FILLER_BYTES bytes) = $IMAGE_TAR_BYTES bytes uncompressed; $IMAGE_BYTES bytes of eStargz layers"
[ "$DROPPED" = 1 ] && echo "page cache dropped before each cold step" || echo "page cache NOT dropped (drop_caches not writable)"
printf "%-50s %8s s %8s MB/s\n" "push on A (convert + add, uncompressed bytes)" "$(secs "$PUSH_T0" "$PUSH_T1")" "$(mbps "$IMAGE_TAR_BYTES" "$PUSH_T0" "$PUSH_T1")"
printf "%-50s %8s s %14s bytes\n" "(i) full: pull + unpack + run" "$FULL_T" "$FULL_BYTES"
printf "%-50s %8s s\n" "    pull / unpack / run" "$FULL_PULL_T / $FULL_UNPACK_T / $FULL_RUN_T"
if [ "$HAVE_MOUNT" = 1 ]; then
    printf "%-50s %8s s %14s bytes\n" "(ii) lazy: mount + run" "$LAZY_T" "$LAZY_BYTES"
    printf "%-50s %8s s\n" "    mount / run" "$LAZY_MOUNT_T / $LAZY_RUN_T"
    echo "ratio time (i) / (ii): $(ratio "$FULL_T" "$LAZY_T" 1)x (target >= 25x)"
    echo "bytes (ii) / image eStargz bytes: $(python3 -c "print(f'{100*$LAZY_BYTES/$IMAGE_BYTES:.2f}')") % (target <= 3 %); (ii) / (i): $(python3 -c "print(f'{100*$LAZY_BYTES/max($FULL_BYTES,1):.2f}')") %"
    printf "%-50s %8s s %8s MB/s  (B fetched %s bytes)\n" "read $SEQ_MIB MiB through a fresh mount, cold (from A)" "$(secs "$COLD_T0" "$COLD_T1")" "$(mbps "$SEQ_BYTES" "$COLD_T0" "$COLD_T1")" "$COLD_BYTES"
    printf "%-50s %8s s %8s MB/s\n" "read it again through the mount, warm" "$(secs "$WARM_T0" "$WARM_T1")" "$(mbps "$SEQ_BYTES" "$WARM_T0" "$WARM_T1")"
    printf "%-50s %8s s %8s MB/s  (B fetched %s bytes)\n" "the same, fresh B process, chunks in B's store" "$(secs "$STORE_T0" "$STORE_T1")" "$(mbps "$SEQ_BYTES" "$STORE_T0" "$STORE_T1")" "$STORE_BYTES"
else
    printf "%-50s %8s\n" "(ii) lazy: mount + run" "$NA (this cidfs has no mount command)"
fi
if [ "${HAVE_PODMAN:-0}" = 1 ]; then
    printf "%-50s %8s s %14s bytes  (%s layer blobs from the registry)\n" "(iii) podman via the layer store, verify-first" "$ALS_V_T" "$ALS_V_BYTES" "$ALS_V_REG_LAYERS"
    printf "%-50s %8s s %14s bytes  (%s layer blobs from the registry)\n" "(iii') podman via the layer store, trust (lazy)" "$ALS_T" "$ALS_BYTES" "$ALS_REG_LAYERS"
    printf "%-50s %8s s %14s bytes  (%s layer blobs from the registry)\n" "(iv) podman run, pulling from the endpoint" "$PULL_T" "$PULL_BYTES" "$PULL_REG_LAYERS"
    echo "ratio time (iv) / (iii): $(ratio "$PULL_T" "$ALS_V_T" 1)x; (iv) / (iii'): $(ratio "$PULL_T" "$ALS_T" 1)x"
fi
if [ "${HAVE_CTRD:-0}" = 1 ]; then
    printf "%-50s %8s s %14s bytes  (%s layer blobs from the registry)\n" "(v) rpull + run, cidfs snapshotter, verify-first" "$RPULL_V_T" "$RPULL_V_BYTES" "$RPULL_V_REG_LAYERS"
    printf "%-50s %8s s\n" "    rpull / run" "$RPULL_V_PULL_T / $RPULL_V_RUN_T"
    printf "%-50s %8s s %14s bytes  (%s layer blobs from the registry)\n" "(v') rpull + run, cidfs snapshotter, trust (lazy)" "$RPULL_T" "$RPULL_BYTES" "$RPULL_REG_LAYERS"
    printf "%-50s %8s s\n" "    rpull / run" "$RPULL_PULL_T / $RPULL_RUN_T"
    printf "%-50s %8s s %14s bytes  (%s layer blobs from the registry)\n" "(vi) ctr pull + ctr run, overlayfs snapshotter" "$CPULL_T" "$CPULL_BYTES" "$CPULL_REG_LAYERS"
    printf "%-50s %8s s\n" "    pull / run" "$CPULL_PULL_T / $CPULL_RUN_T"
    echo "ratio time (vi) / (v): $(ratio "$CPULL_T" "$RPULL_V_T" 1)x; (vi) / (v'): $(ratio "$CPULL_T" "$RPULL_T" 1)x"
fi
[ "$LCOLD_DROPPED" = 1 ] && cold=cold || cold="first read, cache not dropped"
printf "%-50s %8s s %8s MB/s\n" "baseline: the local file unpacked in (i), $cold" "$(secs "$LCOLD_T0" "$LCOLD_T1")" "$(mbps "$SEQ_BYTES" "$LCOLD_T0" "$LCOLD_T1")"
printf "%-50s %8s s %8s MB/s\n" "baseline: the local file, warm" "$(secs "$LWARM_T0" "$LWARM_T1")" "$(mbps "$SEQ_BYTES" "$LWARM_T0" "$LWARM_T1")"
if [ "$HAVE_MOUNT" = 1 ]; then
    echo "ratio mount / local: cold $(python3 -c "print(f'{($LCOLD_T1-$LCOLD_T0)/($COLD_T1-$COLD_T0):.3f}')"), warm $(python3 -c "print(f'{($LWARM_T1-$LWARM_T0)/($WARM_T1-$WARM_T0):.3f}')") (warm target >= 5 GB/s)"
fi
# the figures as JSON (scripts/plot.sh draws them); MB/s of the reads are SEQ_BYTES / seconds
d() { python3 -c "print(f'{$2-$1:.4f}')"; }
declare -A R=([image_bytes]=$IMAGE_BYTES [seq_bytes]=$SEQ_BYTES [full_secs]=$FULL_T
    [full_bytes]=$FULL_BYTES [local_cold_secs]=$(d "$LCOLD_T0" "$LCOLD_T1")
    [local_warm_secs]=$(d "$LWARM_T0" "$LWARM_T1") [cache_dropped]=$LCOLD_DROPPED)
if [ "$HAVE_MOUNT" = 1 ]; then
    R+=([lazy_secs]=$LAZY_T [lazy_bytes]=$LAZY_BYTES [mount_cold_secs]=$(d "$COLD_T0" "$COLD_T1")
        [mount_warm_secs]=$(d "$WARM_T0" "$WARM_T1") [mount_store_secs]=$(d "$STORE_T0" "$STORE_T1"))
fi
if [ "$HAVE_PODMAN" = 1 ]; then
    R+=([podman_als_verify_secs]=$ALS_V_T [podman_als_trust_secs]=$ALS_T [podman_pull_secs]=$PULL_T
        [podman_als_verify_bytes]=$ALS_V_BYTES [podman_als_trust_bytes]=$ALS_BYTES [podman_pull_bytes]=$PULL_BYTES)
fi
if [ "$HAVE_CTRD" = 1 ]; then
    R+=([ctr_cidfs_verify_secs]=$RPULL_V_T [ctr_cidfs_trust_secs]=$RPULL_T [ctr_overlay_secs]=$CPULL_T
        [ctr_cidfs_verify_bytes]=$RPULL_V_BYTES [ctr_cidfs_trust_bytes]=$RPULL_BYTES [ctr_overlay_bytes]=$CPULL_BYTES)
fi
bench_json lazy-start
