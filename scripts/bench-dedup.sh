#!/usr/bin/env bash
# Dedup benchmark: how many bytes a node that already holds one image fetches for another that
# shares most of its files, with layer DAGs cut at gzip members (`--dag-layout members`, the
# default) and every 256 KiB (`--dag-layout fixed`, the CIDs of `ipfs add --cid-version=1`).
# Usage: scripts/bench-dedup.sh            (run as root: debootstrap, FUSE)
#
# The images, each one uncompressed layer that `image push` converts to eStargz:
#   v1     a Debian bookworm rootfs, `debootstrap --variant=minbase --include=$PACKAGES` (default
#          python3, perl, numpy, gcc, g++, git, clang: ~1.2 GB of real files, the size of the
#          image issue 24 measured), cached in $BENCH_CACHE (default /var/tmp/cidfs-bench-dedup)
#          like bench-lazy-start's, by package list; rewritten through Python's tarfile.
#   v2     v1 rebuilt: the same tar with three files of 20-100 KB changed in place (at a quarter,
#          half and three quarters of the layer), every other byte identical, same order.
#   other  a second image sharing most files: v1 without /usr/share/doc and /usr/share/man, with
#          8 MiB of new files in /opt/app in the middle of the tar (every later file moves).
# For each layout, nodes A and B on loopback in a private swarm (B: mount.background_fetch off).
# A pushes the three images. B pulls v1 (`image pull`), then v2, then other, and a fresh B pulls
# v1 and then reads every file of v2 through a lazy `cidfs mount` (tar of the mount to
# /dev/null). Reported: the bytes B fetched (BytesFetched of repo/stat) for each, against the
# image's layer bytes and the changed bytes, and the growth of B's stored block bytes.
# Targets (issue 24): v2 after v1 <= 5 % of v2's layer bytes; other shares most blocks.
# Then a lazy start of v1 for each eStargz chunk size in $CHUNKS (bytes): a fresh B mounts it
# and runs $WORKLOAD in a chroot of the mount, against a fresh B that pulls v1, unpacks it and
# runs the same; reported: bytes fetched, bytes the mount served the kernel (the workload's
# reads and the kernel's readahead), the seconds of the `cidfs mount` command alone, the seconds
# to the workload's end and the speedup.
# Each lazy start runs $STARTS times and each pull baseline $PULLS times (default 3 each), each on
# a fresh B: a row gives the median (a speed-up is one median over another) and the range.
# Writes the figures as JSON to target/bench/dedup.json. BENCH_NO_BUILD=1 skips the build;
# LAYOUTS= (empty) skips the dedup part. Then the same start through podman (B's layer store)
# and containerd (B's snapshotter) against their own pulls, when they are installed (RUNTIMES=
# (empty) skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, FUSE)" >&2; exit 1; }
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup

CACHE_DIR=${BENCH_CACHE:-/var/tmp/cidfs-bench-dedup}
PACKAGES=${PACKAGES:-python3,perl,python3-numpy,gcc,g++,git,clang}
ROOTFS_TAR=$CACHE_DIR/rootfs-bookworm-$(echo "$PACKAGES" | md5sum | cut -c1-8).tar
MNT=$WORK/mnt
BOOTSTRAP_TMP=
cleanup() {
    set +e
    if is_mounted "$MNT/dev"; then umount -l "$MNT/dev"; fi
    if is_mounted "$MNT"; then
        timeout 20 "$BIN" --repo "$WORK/b" umount "$MNT" 2>/dev/null || umount -l "$MNT"
    fi
    [ -n "$BOOTSTRAP_TMP" ] && safe_rm "$BOOTSTRAP_TMP"
    for d in "$WORK"/p-*; do [ -d "$d" ] && pod "$d" system reset -f > /dev/null 2>&1; done
    bench_cleanup
    for m in $(mounted_under "$WORK"); do umount -l "$m"; done
}
trap cleanup EXIT
mkdir -p "$MNT"

debian_rootfs "$ROOTFS_TAR" "$PACKAGES"

# ---- the three images, one OCI layout with tags v1, v2, other
python3 - "$ROOTFS_TAR" "$WORK" <<'PY' > "$WORK/changed"
import hashlib, io, json, os, sys, tarfile
src, work = sys.argv[1], sys.argv[2]
with tarfile.open(src) as t:
    members = t.getmembers()
    data = {m.name: t.extractfile(m).read() for m in members if m.isreg()}
regs = [i for i, m in enumerate(members) if m.isreg() and 20_000 <= m.size <= 100_000]
picks = [regs[len(regs) * k // 4] for k in (1, 2, 3)]
def write(path, entries):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as out:
        for m, body in entries:
            out.addfile(m, io.BytesIO(body) if m.isreg() else None)
v1 = [(m, data.get(m.name)) for m in members]
write(f"{work}/v1.tar", v1)
v2, changed = [], 0
for i, (m, body) in enumerate(v1):
    if i in picks:
        body = bytes(b ^ 0x5A for b in body[:4096]) + body[4096:]
        changed += m.size
    v2.append((m, body))
write(f"{work}/v2.tar", v2)
drop = ("./usr/share/doc/", "./usr/share/man/")
other = [(m, b) for m, b in v1 if not m.name.startswith(drop)]
app = []
d = tarfile.TarInfo("./opt/app"); d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1700000000
app.append((d, None))
for k in range(32):
    f = tarfile.TarInfo(f"./opt/app/lib{k}.so"); f.mode, f.mtime = 0o644, 1700000000
    body = os.urandom(256 << 10); f.size = len(body)
    app.append((f, body))
half = len(other) // 2
write(f"{work}/other.tar", other[:half] + app + other[half:])
print(changed)
PY
CHANGED=$(cat "$WORK/changed")
python3 - "$WORK/layout" "$WORK/v1.tar" "$WORK/v2.tar" "$WORK/other.tar" <<'PY'
import hashlib, json, os, sys
layout, tars = sys.argv[1], sys.argv[2:]
blobs = os.path.join(layout, "blobs", "sha256"); os.makedirs(blobs)
def put(b):
    d = hashlib.sha256(b).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f: f.write(b)
    return {"digest": "sha256:" + d, "size": len(b)}
manifests = []
for path in tars:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for c in iter(lambda: f.read(1 << 20), b""): h.update(c)
    d = h.hexdigest(); os.link(path, os.path.join(blobs, d))
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + d,
             "size": os.path.getsize(path)}
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/bash"]}, "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(cfg)},
        "layers": [layer]}).encode()
    tag = os.path.basename(path)[:-4]
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(man),
        "annotations": {"org.opencontainers.image.ref.name": tag}})
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": manifests}, f)
with open(os.path.join(layout, "oci-layout"), "w") as f: f.write('{"imageLayoutVersion":"1.0.0"}')
PY
rm -f "$WORK/v1.tar" "$WORK/v2.tar" "$WORK/other.tar"

repo_stat() {
    curl -sf -X POST "http://$(api_of "$1")/api/v0/repo/stat" \
        | python3 -c "import json, sys; print(json.load(sys.stdin)[\"$2\"])"
}
layer_bytes() {
    "$BIN" --repo "$WORK/a" image inspect --json "$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(sum(l["size"] for i in r["images"] for l in i["layers"]))'
}
# fresh_b [DAEMON ARGS]: a fresh B (B_TRUST: its trust.unverified_layers); REG is its endpoint
fresh_b() {
    local config
    config=$(printf '[mount]\nbackground_fetch = false\n')
    if [ -n "${B_TRUST:-}" ]; then config+=$(printf '\n[trust]\nunverified_layers = "%s"' "$B_TRUST"); fi
    FRESH_CONFIG=$config fresh_node b "$a_ADDR" "$@"
    REG=$(cat "$WORK/b/registry")
}
# pull IMAGE on B into a throwaway layout; prints the bytes B fetched for it
pull_b() {
    local f0; f0=$(bytes_fetched b)
    "$BIN" --repo "$WORK/b" image pull -q "$1" --to "oci:$WORK/out:x" > /dev/null
    rm -rf "$WORK/out"
    echo $(( $(bytes_fetched b) - f0 ))
}
pct() { python3 -c "print(f'{100*$1/$2:.1f}')"; }
mb() { python3 -c "print(f'{$1/1e6:.1f}')"; }

declare -A R
LAYOUTS=${LAYOUTS-members fixed}
for LAYOUT in $LAYOUTS; do
    start_cidfs a
    A_ID=${a_ADDR##*/}
    for tag in v1 v2 other; do
        t0=$(now)
        cid=$("$BIN" --repo "$WORK/a" image push -q --dag-layout "$LAYOUT" "oci:$WORK/layout:$tag")
        R[$LAYOUT.push_$tag]=$(secs "$t0" "$(now)")
        R[$LAYOUT.cid_$tag]=$cid
        R[$LAYOUT.bytes_$tag]=$(layer_bytes "$cid")
    done
    R[$LAYOUT.blocks_a]=$(repo_stat a NumObjects)
    fresh_b
    R[$LAYOUT.fetch_v1]=$(pull_b "${R[$LAYOUT.cid_v1]}")
    disk0=$(repo_stat b BlockBytes)
    R[$LAYOUT.fetch_v2]=$(pull_b "${R[$LAYOUT.cid_v2]}")
    disk1=$(repo_stat b BlockBytes)
    R[$LAYOUT.fetch_other]=$(pull_b "${R[$LAYOUT.cid_other]}")
    R[$LAYOUT.disk_other]=$(( $(repo_stat b BlockBytes) - disk1 ))
    R[$LAYOUT.disk_v2]=$(( disk1 - disk0 ))
    # the lazy mount: v1 pulled, then every file of v2 read through a mount
    fresh_b
    pull_b "${R[$LAYOUT.cid_v1]}" > /dev/null
    f0=$(bytes_fetched b)
    "$BIN" --repo "$WORK/b" mount "${R[$LAYOUT.cid_v2]}" "$MNT" 2> "$WORK/mount.err" \
        || { cat "$WORK/mount.err" >&2; exit 1; }
    # through a pipe: GNU tar skips reading files when its archive is /dev/null
    tar -C "$MNT" -cf - . | wc -c > /dev/null
    R[$LAYOUT.mount_v2]=$(( $(bytes_fetched b) - f0 ))
    "$BIN" --repo "$WORK/b" umount "$MNT"
    stop_cidfs b; b_PID=
    stop_cidfs a
    rm -rf "$WORK/a" "$WORK/b"
done

echo "cidfs bench-dedup: a Debian bookworm image ($PACKAGES), rebuilt with 3 files changed ($(mb "$CHANGED") MB), and a second image sharing most files; MB = 10^6 bytes"
printf '%-8s %-36s %12s %12s %10s\n' layout step "layer MB" "fetched MB" "% of layer"
for LAYOUT in $LAYOUTS; do
    for row in "v1:v1 pulled on an empty node:fetch_v1" "v2:v2 pulled after v1:fetch_v2" \
            "v2:v2 read through a mount after v1:mount_v2" "other:other pulled after v1 and v2:fetch_other"; do
        IFS=: read -r tag what key <<< "$row"
        printf '%-8s %-36s %12s %12s %10s\n' "$LAYOUT" "$what" "$(mb "${R[$LAYOUT.bytes_$tag]}")" \
            "$(mb "${R[$LAYOUT.$key]}")" "$(pct "${R[$LAYOUT.$key]}" "${R[$LAYOUT.bytes_$tag]}")"
    done
    printf '%-8s store growth on B: v2 %s MB, other %s MB; A holds %s blocks; push of v1 %s s\n' "$LAYOUT" \
        "$(mb "${R[$LAYOUT.disk_v2]}")" "$(mb "${R[$LAYOUT.disk_other]}")" "${R[$LAYOUT.blocks_a]}" "${R[$LAYOUT.push_v1]}"
done
if [ "$LAYOUTS" = "members fixed" ]; then
    ratio=$(python3 -c "print(f'{${R[fixed.fetch_v2]}/max(1,${R[members.fetch_v2]}):.1f}')")
    echo "v2 after v1: members fetches ${ratio}x fewer bytes than fixed"
fi

# ---- lazy start of v1 by eStargz chunk size: a fresh B mounts v1 and runs the workload in it
# (chroot), against a fresh B that pulls v1, unpacks it and runs the same.
WORKLOAD='python3 -c "import json, sqlite3, email.mime.text" && perl -MPOSIX -e 1'
fuse_bytes() {
    curl -sf "http://$(api_of b)/metrics" | awk '$1 ~ /^cidfs_fuse_read_bytes_total\{fs="mount"\}/ {print $2}' | head -1
}
start_cidfs a
A_ID=${a_ADDR##*/}
cid=$("$BIN" --repo "$WORK/a" image push -q "oci:$WORK/layout:v1")
# full_once: a fresh B pulls v1, unpacks it and runs the workload; sets FULL_ONCE and PULL_ONCE
full_once() {
    local t0 t1 t2 blob
    fresh_b
    drop_caches
    t0=$(now)
    "$BIN" --repo "$WORK/b" image pull -q "$cid" --to "oci:$WORK/full:v1" > /dev/null
    t1=$(now)
    mkdir "$WORK/rootfs"
    for blob in $(python3 -c '
import json, os, sys
d = sys.argv[1]
blob = lambda x: os.path.join(d, "blobs", *x["digest"].split(":", 1))
m = json.load(open(os.path.join(d, "index.json")))["manifests"][0]
while "index" in m["mediaType"]:
    m = json.load(open(blob(m)))["manifests"][0]
print(" ".join(blob(l) for l in json.load(open(blob(m)))["layers"]))' "$WORK/full"); do
        tar --numeric-owner -C "$WORK/rootfs" -xzf "$blob" --exclude=stargz.index.json \
            --exclude=.prefetch.landmark --exclude=.no.prefetch.landmark
    done
    chroot "$WORK/rootfs" sh -c "$WORKLOAD"
    t2=$(now)
    FULL_ONCE=$(secs "$t0" "$t2"); PULL_ONCE=$(secs "$t0" "$t1")
    safe_rm "$WORK/rootfs"; rm -rf "$WORK/full"
}
# the baseline $PULLS times (default 3), each on a fresh B: the speed-ups are over its median
fulls=(); pulls=()
for _ in $(seq "${PULLS:-3}"); do
    full_once
    fulls+=("$FULL_ONCE"); pulls+=("$PULL_ONCE")
done
read -r FULL_T FULL_LO FULL_HI <<< "$(median_range "${fulls[@]}")"
read -r PULL_T _ _ <<< "$(median_range "${pulls[@]}")"
echo
echo "lazy start of v1 (workload: $WORKLOAD); pull + unpack + run on a fresh node: $FULL_T s (range $FULL_LO-$FULL_HI; pull $PULL_T s)"
printf '%-11s %10s %12s %12s %10s %8s %8s %12s %8s\n' "chunk size" "layer MB" "fetched MB" "% of layer" "served MB" "mount s" "start s" "range s" speedup
# lazy_once CID: a fresh B mounts CID and runs the workload; sets LZ_SECS, LZ_MOUNT, LZ_FETCHED
# and LZ_SERVED
lazy_once() {
    local cid=$1 f0 s0 t0 tm t1
    fresh_b
    drop_caches
    f0=$(bytes_fetched b); s0=$(fuse_bytes); s0=${s0:-0}
    t0=$(now)
    "$BIN" --repo "$WORK/b" mount "$cid" "$MNT" 2> "$WORK/mount.err" || { cat "$WORK/mount.err" >&2; exit 1; }
    tm=$(now)
    # the mount is nodev: the workload gets the host's /dev, as a runtime would give it one
    mount --bind /dev "$MNT/dev"
    chroot "$MNT" sh -c "$WORKLOAD"
    t1=$(now)
    umount "$MNT/dev"
    LZ_FETCHED=$(( $(bytes_fetched b) - f0 )); LZ_SERVED=$(fuse_bytes); LZ_SERVED=$(( ${LZ_SERVED:-0} - s0 ))
    "$BIN" --repo "$WORK/b" umount "$MNT"
    LZ_SECS=$(python3 -c "print(f'{$t1-$t0:.3f}')")
    LZ_MOUNT=$(python3 -c "print(f'{$tm-$t0:.3f}')")
}
# lazy_start LABEL CID: $STARTS (default 3) lazy starts of CID, each on a fresh B; prints a row
# with the median start and its range, and records them (.secs is the median)
lazy_start() {
    local label=$1 cid=$2 bytes starts=() mounts=() med lo hi mmed
    bytes=$(layer_bytes "$cid")
    for _ in $(seq "${STARTS:-3}"); do
        lazy_once "$cid"
        starts+=("$LZ_SECS"); mounts+=("$LZ_MOUNT")
    done
    read -r med lo hi <<< "$(median_range "${starts[@]}")"
    read -r mmed _ _ <<< "$(median_range "${mounts[@]}")"
    printf '%-11s %10s %12s %12s %10s %8s %8s %12s %8s\n' "$label" "$(mb "$bytes")" "$(mb "$LZ_FETCHED")" \
        "$(pct "$LZ_FETCHED" "$bytes")" "$(mb "$LZ_SERVED")" "$mmed" "$med" "$lo-$hi" \
        "$(python3 -c "print(f'{$FULL_T/$med:.1f}')")x"
    R[lazy_$label.fetched]=$LZ_FETCHED; R[lazy_$label.bytes]=$bytes; R[lazy_$label.served]=$LZ_SERVED
    R[lazy_$label.secs]=$med; R[lazy_$label.secs_min]=$lo; R[lazy_$label.secs_max]=$hi
    R[lazy_$label.mount_secs]=$mmed
}
for CHUNK in ${CHUNKS:-4194304 1048576 524288 262144}; do
    lazy_start "$CHUNK" "$("$BIN" --repo "$WORK/a" image push -q --chunk-size "$CHUNK" "oci:$WORK/layout:v1")"
done
R[lazy.full_secs]=$FULL_T; R[lazy.full_secs_min]=$FULL_LO; R[lazy.full_secs_max]=$FULL_HI
# the same start after `image optimize` recorded it (default chunk size)
cid=$("$BIN" --repo "$WORK/a" image push -q "oci:$WORK/layout:v1")
t0=$(now)
opt=$("$BIN" --repo "$WORK/a" image optimize -q "$cid" -- sh -c "$WORKLOAD")
R[optimize.secs]=$(secs "$t0" "$(now)")
lazy_start optimized "$opt"
echo "(image optimize of v1 took ${R[optimize.secs]} s)"

# ---- the same start through the container runtimes, when present: `podman run` through B's
# additional layer store, and `ctr-remote image rpull` + `ctr run` through B's snapshotter, with
# B under trust.unverified_layers = "trust" (lazy: verify-first reads each layer whole on its
# first use, bench-lazy-start.sh measures that), against `podman run` and `ctr images pull` +
# `ctr run` (overlayfs) that pull every layer from B's registry endpoint. Each on a fresh B and
# fresh runtime storage; v1 at the default chunk size, then v1 after `image optimize`. After
# each pull the same run again, the image now in the runtime's own storage ("pulled, again"):
# the runtime's own start, which no lazy start can beat. RUNTIMES= (empty) skips it.
# runtime_start KIND CID: KIND is podman-lazy, podman-pull, containerd-lazy or containerd-pull
runtime_start() {
    local kind=$1 cid=$2 d=$WORK/p-$1 f0 t0 out ref
    case $kind in
        podman-lazy) B_TRUST=trust fresh_b --layer-store "$WORK/store" ;;
        containerd-lazy) B_TRUST=trust fresh_b; start_containerd "$WORK/c-$kind" "$(cidfs_snapshotter "$WORK/b")" ;;
        podman-pull) fresh_b ;;
        containerd-pull) fresh_b; start_containerd "$WORK/c-$kind" ;;
    esac
    ref=$REG/ipfs/$cid:latest
    case $kind in podman-*) rm -rf "$d"; podman_env "$d" ;; esac
    drop_caches
    f0=$(bytes_fetched b); t0=$(now)
    case $kind in
        podman-lazy) out=$(pod "$d" --storage-opt "overlay.additionallayerstore=$WORK/store:ref" \
                          run --rm "$ref" sh -c "$WORKLOAD && echo hello") ;;
        podman-pull) out=$(pod "$d" run --rm "$ref" sh -c "$WORKLOAD && echo hello") ;;
        containerd-lazy)
            ctr-remote --address "$CTRD/c.sock" --namespace default image rpull --plain-http \
                --snapshotter=cidfs "$ref" > /dev/null
            out=$(ctrd run --rm --snapshotter cidfs --runc-root "$CTRD/runc" "$ref" start sh -c "$WORKLOAD && echo hello") ;;
        containerd-pull)
            ctrd images pull --plain-http --snapshotter overlayfs "$ref" > /dev/null
            out=$(ctrd run --rm --snapshotter overlayfs --runc-root "$CTRD/runc" "$ref" start sh -c "$WORKLOAD && echo hello") ;;
    esac
    RT_SECS=$(secs "$t0" "$(now)"); RT_FETCHED=$(( $(bytes_fetched b) - f0 ))
    [ "$out" = hello ] || { echo "$kind printed '$out'" >&2; exit 1; }
    # the runtime's own start, the floor under any lazy start: the same run again, the image
    # now in the runtime's storage (overlayfs), the page cache dropped as before
    case $kind in
        *-pull)
            drop_caches; t0=$(now)
            case $kind in
                podman-pull) out=$(pod "$d" run --rm "$ref" sh -c "$WORKLOAD && echo hello") ;;
                containerd-pull) out=$(ctrd run --rm --snapshotter overlayfs --runc-root "$CTRD/runc" "$ref" again sh -c "$WORKLOAD && echo hello") ;;
            esac
            RT_FLOOR=$(secs "$t0" "$(now)")
            [ "$out" = hello ] || { echo "$kind (again) printed '$out'" >&2; exit 1; } ;;
    esac
    case $kind in
        podman-*) pod "$d" system reset -f > /dev/null 2>&1 || true; rm -rf "$d" ;;
        containerd-*) stop_containerd; safe_rm "$WORK/c-$kind" ;;
    esac
}
RUNTIME_KINDS=()
if command -v podman > /dev/null; then RUNTIME_KINDS+=(podman-pull podman-lazy); fi
if command -v containerd > /dev/null && command -v ctr-remote > /dev/null; then
    RUNTIME_KINDS+=(containerd-pull containerd-lazy)
fi
if [ -n "${RUNTIMES-1}" ] && [ "${#RUNTIME_KINDS[@]}" -gt 0 ]; then
    echo
    echo "the same start through the runtimes (B under trust.unverified_layers = trust for the lazy rows):"
    printf '%-30s %12s %12s %8s %12s %8s\n' "" "fetched MB" "% of layer" "start s" "range s" speedup
    bytes=$(layer_bytes "$cid")
    for img in plain optimized; do
        [ "$img" = plain ] && icid=$cid || icid=$opt
        for kind in "${RUNTIME_KINDS[@]}"; do
            # a pull $PULLS times, a lazy start $STARTS times (default 3 each; median and range)
            starts=(); floors=()
            for _ in $(seq "$([[ $kind == *-lazy ]] && echo "${STARTS:-3}" || echo "${PULLS:-3}")"); do
                runtime_start "$kind" "$icid"
                starts+=("$RT_SECS")
                [[ $kind == *-pull ]] && floors+=("$RT_FLOOR")
            done
            read -r med lo hi <<< "$(median_range "${starts[@]}")"
            R[rt_${kind}_$img.secs]=$med; R[rt_${kind}_$img.fetched]=$RT_FETCHED
            R[rt_${kind}_$img.secs_min]=$lo; R[rt_${kind}_$img.secs_max]=$hi
            base=${R[rt_${kind%-*}-pull_plain.secs]}
            printf '%-30s %12s %12s %8s %12s %8s\n' "$kind ($img)" "$(mb "$RT_FETCHED")" \
                "$(pct "$RT_FETCHED" "$bytes")" "$med" "$lo-$hi" "$(python3 -c "print(f'{$base/$med:.1f}')")x"
            if [ "${#floors[@]}" -gt 0 ]; then
                read -r med lo hi <<< "$(median_range "${floors[@]}")"
                R[rt_${kind%-*}_floor.secs]=$med; R[rt_${kind%-*}_floor.secs_min]=$lo
                R[rt_${kind%-*}_floor.secs_max]=$hi
                printf '%-30s %12s %12s %8s %12s\n' "${kind%-*} (pulled, again)" "" "" "$med" "$lo-$hi"
            fi
        done
        # the pull baselines do not depend on the image's prefetch list: measured once
        lazy_kinds=()
        for kind in "${RUNTIME_KINDS[@]}"; do [[ $kind == *-lazy ]] && lazy_kinds+=("$kind"); done
        RUNTIME_KINDS=("${lazy_kinds[@]}")
    done
    R[rt.layer_bytes]=$bytes
fi
R[changed_bytes]=$CHANGED
bench_json dedup
