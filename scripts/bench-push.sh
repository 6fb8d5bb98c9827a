#!/usr/bin/env bash
# Push/pull benchmark: an image with one ~SIZE_MB (default 500) layer tarred from this machine's
# /usr. Prints MB/s (uncompressed tar bytes per second) of `cidfs image push` on node A (eStargz
# conversion at the default level 6 and with --estargz=false), the ratio to `gzip -6` of the same
# tar measured in the same run, and the MB/s of `cidfs image pull` on node B from node A (ROUNDS
# pulls, default 3, each to a fresh B, the median and range, with each process's CPU). Then the
# registry side: `skopeo copy` of the same image to A's registry endpoint by name (A converts it
# as `image push` does) against the same copy to Debian's distribution registry (stores it as
# it is), and how long after that push C, with `[[preload]] all = true`, holds the image pinned.
# The pull is held against the swarm stack's ceiling for the layer's size, measured in the same
# run (stack_ceiling in lib.sh). Writes target/bench/push.json.
# Usage: scripts/bench-push.sh [SIZE_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-500}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
bench_setup

# The layer: regular files of /usr (skipping unreadable ones) until SIZE_MB, as one tar.
python3 - "$WORK/layer.tar" "$SIZE_MB" <<'PY'
import os, sys, tarfile
out, limit = sys.argv[1], int(sys.argv[2]) * 10**6
total = 0
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for root, dirs, files in os.walk("/usr"):
        dirs.sort(); files.sort()
        for f in files:
            p = os.path.join(root, f)
            try:
                st = os.lstat(p)
                t.add(p, arcname=p.lstrip("/"), recursive=False)
            except OSError:
                continue
            total += st.st_size if not os.path.islink(p) else 0
            if total >= limit:
                sys.exit(0)
PY
BYTES=$(stat -c %s "$WORK/layer.tar")
# An OCI layout around it (uncompressed layer, as `docker save` gives).
oci_layout_of "$WORK/layer.tar" "$WORK/layout"

cat "$WORK/layer.tar" > /dev/null
t0=$(now); gzip -6 -c "$WORK/layer.tar" > "$WORK/layer.tar.gz"; t1=$(now)
GZ_T0=$t0; GZ_T1=$t1
GZ_SIZE=$(stat -c %s "$WORK/layer.tar.gz"); rm "$WORK/layer.tar.gz"

start_cidfs a
start_cidfs b --peer "$a_ADDR"
# C holds nothing of the image until it preloads what the registry push names
mkdir -p "$WORK/c"
printf '[[preload]]\nname = "bench/*"\nall = true\n' > "$WORK/c/config.toml"
start_cidfs c --peer "$a_ADDR"

t0=$(now); CID=$("$BIN" --repo "$WORK/a" image push -q "oci:$WORK/layout:bench"); t1=$(now)
P_T0=$t0; P_T1=$t1
t0=$(now); CID_RAW=$("$BIN" --repo "$WORK/a" image push -q --estargz=false "oci:$WORK/layout:bench"); t1=$(now)
R_T0=$t0; R_T1=$t1
LAYER=$("$BIN" --repo "$WORK/a" image inspect --json "$CID" | python3 -c "import json,sys; r=json.load(sys.stdin); print(r['images'][0]['layers'][0]['size'])")

# ROUNDS (default 3) pulls, each to a fresh B, the median reported (single pulls swing by
# 10-15 % here), with the CPU of A, B and the pulling client
ROUNDS=${ROUNDS:-3}
ROUND_SECS=() ROUND_CPU_A=() ROUND_CPU_B=() ROUND_CPU_CLI=()
for round in $(seq 1 "$ROUNDS"); do
    if [ "$round" -gt 1 ]; then
        rm -rf "$WORK/pulled"
        fresh_node b "$a_ADDR"
    else
        wait_peer b "${a_ADDR##*/}"
    fi
    timed_client "$BIN" --repo "$WORK/b" image pull -q "$CID" --to "oci:$WORK/pulled:bench"
done
read -r PULL_T PULL_MIN PULL_MAX <<< "$(median_range "${ROUND_SECS[@]}")"
round_cpu

# the stack alone, for as many MiB as the layer (nothing of cidfs above it)
stack_ceiling $(( (LAYER + (1 << 20) - 1) >> 20 ))

# The registry side. The baseline: Debian's distribution registry, which stores what it gets.
mkdir -p "$WORK/registry"
cat > "$WORK/registry/config.yml" <<EOF
version: 0.1
log: {level: info, formatter: text}
storage: {filesystem: {rootdirectory: $WORK/registry/data}}
http: {addr: 127.0.0.1:0, secret: bench}
EOF
docker-registry serve "$WORK/registry/config.yml" > /dev/null 2> "$WORK/registry.log" &
PIDS+=($!)
REG=""
for _ in $(seq 1 300); do
    REG=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$WORK/registry.log" | head -1 | cut -d' ' -f3 || true)
    [ -n "$REG" ] && break
    sleep 0.1
done
[ -n "$REG" ] || { cat "$WORK/registry.log" >&2; echo "docker-registry did not start" >&2; exit 1; }
A_REG=$(cat "$WORK/a/registry")
t0=$(now); skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/layout:bench" "docker://$REG/bench/app:1"; t1=$(now)
D_T0=$t0; D_T1=$t1
t0=$(now); skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/layout:bench" "docker://$A_REG/bench/app:1"; t1=$(now)
S_T0=$t0; S_T1=$t1
# C preloads what the push named: wait (bounded, 600 s) until C holds it
held() {
    "$BIN" --repo "$WORK/c" image ls --json | python3 -c "
import json, sys
v = json.load(sys.stdin)
me = v.get('Self')
print(any(n['Name'] == 'bench/app:1' and me in n['Holders'] for n in v['Names']))"
}
for _ in $(seq 1 6000); do
    [ "$(held)" = True ] && break
    sleep 0.1
done
[ "$(held)" = True ] || { tail -20 "$WORK/c.log" >&2; echo "C did not preload bench/app:1" >&2; exit 1; }
C_T1=$(now)

echo "cidfs bench-push: one layer of $BYTES bytes from /usr; image $CID"
printf "%-52s %6s s %6s MB/s\n" "gzip -6 of the tar (baseline, one core)" "$(secs $GZ_T0 $GZ_T1)" "$(mbps $BYTES $GZ_T0 $GZ_T1)"
printf "%-52s %6s s %6s MB/s\n" "image push, eStargz level 6 (convert + add)" "$(secs $P_T0 $P_T1)" "$(mbps $BYTES $P_T0 $P_T1)"
printf "%-52s %6s s %6s MB/s\n" "image push --estargz=false (check + add)" "$(secs $R_T0 $R_T1)" "$(mbps $BYTES $R_T0 $R_T1)"
printf "%-52s %6s s %6s MB/s (%s-%s, %s pulls, each to a fresh B)\n" "image pull on B from A (eStargz blob bytes)" \
    "$(printf %.2f "$PULL_T")" "$(mbps $LAYER "$PULL_T")" "$(mbps $LAYER "$PULL_MAX")" "$(mbps $LAYER "$PULL_MIN")" "$ROUNDS"
echo "CPU during the pull (medians): A $CPU_A s, B $CPU_B s, the pulling client $CPU_CLI s"
ceiling_report 52 pull "$(mbps $LAYER "$PULL_T")"
printf "%-52s %6s s %6s MB/s\n" "skopeo copy to distribution registry (baseline)" "$(secs $D_T0 $D_T1)" "$(mbps $BYTES $D_T0 $D_T1)"
printf "%-52s %6s s %6s MB/s\n" "skopeo copy to A's registry endpoint (converts)" "$(secs $S_T0 $S_T1)" "$(mbps $BYTES $S_T0 $S_T1)"
printf "%-52s %6s s %6s MB/s\n" "C holds it by [[preload]], after that push ended" "$(secs $S_T1 $C_T1)" "$(mbps $LAYER $S_T1 $C_T1)"
echo "ratio registry push to cidfs / to distribution registry: $(python3 -c "print(f'{($S_T1-$S_T0)/($D_T1-$D_T0):.2f}')") (time; the distribution registry stores the tar as it is)"
echo "ratio registry push / image push (eStargz): $(python3 -c "print(f'{($S_T1-$S_T0)/($P_T1-$P_T0):.2f}')") (time)"
echo "ratio push (eStargz) / gzip -6: $(python3 -c "print(f'{($GZ_T1-$GZ_T0)/($P_T1-$P_T0):.2f}')") (speed; >1 = faster than gzip -6)"
echo "sizes: gzip -6 $GZ_SIZE bytes, eStargz layer $LAYER bytes ($(python3 -c "print(f'{$LAYER/$GZ_SIZE:.3f}')") of gzip -6)"
declare -A R=([bytes]=$BYTES [layer_bytes]=$LAYER [gzip_bytes]=$GZ_SIZE
    [gzip_secs]=$(secs "$GZ_T0" "$GZ_T1") [push_estargz_secs]=$(secs "$P_T0" "$P_T1")
    [push_raw_secs]=$(secs "$R_T0" "$R_T1") [pull_secs]=$(printf %.3f "$PULL_T")
    [pull_secs_min]=$(printf %.3f "$PULL_MIN") [pull_secs_max]=$(printf %.3f "$PULL_MAX")
    [pull_cpu_a_secs]=$CPU_A [pull_cpu_b_secs]=$CPU_B [pull_cpu_client_secs]=$CPU_CLI
    [skopeo_distribution_secs]=$(secs "$D_T0" "$D_T1") [skopeo_cidfs_secs]=$(secs "$S_T0" "$S_T1")
    [preload_secs]=$(secs "$S_T1" "$C_T1") [ceiling_stream_mbps]=$CEIL_STREAM
    [ceiling_bitswap_mbps]=$CEIL_BITSWAP)
bench_json push
