#!/usr/bin/env bash
# Sequential reads through a lazy mount, by eStargz chunk size: node A holds a one-layer image of
# one 256 MiB random file, pushed once per chunk size in $CHUNKS (bytes; default 4 MiB and
# 1 MiB). For each chunk size and each of ROUNDS rounds, a fresh B (mount.background_fetch off)
# mounts it and `dd bs=1M` reads the file cold (every chunk fetched from A); then B restarts
# (its chunk cache empty, its store full), mounts it again and reads it with the page cache
# dropped (every chunk inflated and checked from B's own store); then once more, B restarted again
# (the second read of its packs from disk: on this VM the first read of just-written file data
# from disk can cost the kernel's copies more CPU than later ones). The baseline, in the same run:
# `dd` of the same file from local disk, page cache dropped. Prints the median and range of
# each and its ratio to the baseline; writes target/bench/mount-read.json.
#   Usage: scripts/bench-mount-read.sh [ROUNDS]        (run as root: FUSE, drop_caches)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (FUSE, drop_caches)" >&2; exit 1; }
ROUNDS=${1:-3}
CHUNKS=${CHUNKS:-4194304 1048576}
SIZE_MIB=256
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup
MNT=$WORK/mnt
cleanup() {
    set +e
    for m in $(mounted_under "$MNT"); do umount -l "$m"; done
    bench_cleanup
}
trap cleanup EXIT
mkdir -p "$MNT" "$WORK/root/data"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/root/data/seq.bin"
tar -C "$WORK/root" -cf "$WORK/layer.tar" data
oci_layout_of "$WORK/layer.tar" "$WORK/layout"

# dd_secs of $1, page cache dropped first
dd_cold() { drop_caches; dd_secs "$1"; }
mbs() { mbps $((SIZE_MIB << 20)) "$1"; }
declare -A R

start_cidfs a
declare -A CIDS
for c in $CHUNKS; do
    CIDS[$c]=$("$BIN" --repo "$WORK/a" image push -q --chunk-size "$c" "oci:$WORK/layout:bench")
done
# row KEY LABEL SECS...: the median and range of the reads as MB/s, and the median's ratio to
# the baseline's (LOCAL_MED), printed and kept in R
row() {
    local key=$1 label=$2 med lo hi; shift 2
    read -r med lo hi <<< "$(median_range "$@")"
    R[$key.secs]=$med; R[$key.secs_min]=$lo; R[$key.secs_max]=$hi
    printf '%-58s %6s %12s %8s\n' "$label" "$(mbs "$med")" "$(mbs "$hi")-$(mbs "$lo")" \
        "$(python3 -c "print(f'{${LOCAL_MED:-$med} / $med:.2f}')")"
}

# mount_read CID: starts B (on its repo as it is), mounts CID, sets READ to dd's seconds for the
# file with the page cache dropped, and stops B again
mount_read() {
    start_cidfs b --peer "$a_ADDR"
    wait_peer b "${a_ADDR##*/}"
    "$BIN" --repo "$WORK/b" mount "$1" "$MNT" 2> "$WORK/mount.err" || { cat "$WORK/mount.err" >&2; exit 1; }
    READ=$(dd_cold "$MNT/data/seq.bin")
    "$BIN" --repo "$WORK/b" umount "$MNT"
    stop_cidfs b
}
# read_once CID: sets COLD, STORE and AGAIN, dd's seconds through a fresh B, then a restarted
# one, then one restarted once more
read_once() {
    rm -rf "$WORK/b"; mkdir -p "$WORK/b"
    printf '[mount]\nbackground_fetch = false\n' > "$WORK/b/config.toml"
    mount_read "$1"; COLD=$READ
    mount_read "$1"; STORE=$READ
    mount_read "$1"; AGAIN=$READ
}

echo "cidfs bench-mount-read: $SIZE_MIB MiB random file, $ROUNDS rounds; MB = 10^6 bytes"
printf '%-58s %6s %12s %8s\n' "" "MB/s" "range" "÷ disk"
local_t=()
for _ in $(seq "$ROUNDS"); do local_t+=("$(dd_cold "$WORK/root/data/seq.bin")"); done
row local "dd from local disk, cold (baseline)" "${local_t[@]}"
LOCAL_MED=${R[local.secs]}
for c in $CHUNKS; do
    cold=(); store=(); again=()
    for _ in $(seq "$ROUNDS"); do
        read_once "${CIDS[$c]}"
        cold+=("$COLD"); store+=("$STORE"); again+=("$AGAIN")
    done
    row "cold_$c" "$((c >> 10)) KiB chunks: a fresh mount, chunks from A" "${cold[@]}"
    row "store_$c" "$((c >> 10)) KiB chunks: B restarted, chunks from its store" "${store[@]}"
    row "again_$c" "$((c >> 10)) KiB chunks: the same, B restarted once more" "${again[@]}"
done
R[size_mib]=$SIZE_MIB; R[rounds]=$ROUNDS
bench_json mount-read
