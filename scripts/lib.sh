# Shared by the scripts/bench-* benchmarks (sourced, not run, from the repo root).
# bench_setup builds the release binary and sets BIN (the cidfs binary), WORK (a scratch directory
# holding a fresh swarm.key) and PIDS; its EXIT trap kills every process in PIDS and removes WORK
# (KEEP=1 copies the daemon logs to /tmp first). BENCH_NO_BUILD=1 skips the build and uses the
# existing target/release/cidfs as it is; CIDFS_BIN=PATH (with it) runs another binary, for
# A/B runs against an older build. BENCH_API=tcp: the CLI reaches each daemon over loopback TCP
# instead of its API socket.

bench_setup() {
    if [ -z "${BENCH_NO_BUILD:-}" ]; then cargo build --release --quiet; fi
    BIN=${CIDFS_BIN:-$PWD/target/release/cidfs}
    [ -x "$BIN" ] || { echo "no $BIN: build it with cargo build --release" >&2; exit 1; }
    WORK=$(mktemp -d)
    PIDS=()
    trap bench_cleanup EXIT
    "$BIN" keygen > "$WORK/swarm.key"
    chmod 600 "$WORK/swarm.key"
    VM_SHA256_START=$(sha256_speed)
}

# sha256_speed: this VM's SHA-256 speed now, GB/s on one core (openssl, 16 KiB blocks, one
# second); empty without openssl. This VM's speed swings by up to 1.5x between hours, so every
# benchmark's JSON records it at its start and end (bench_json), beside its figures.
sha256_speed() {
    command -v openssl > /dev/null || return 0
    openssl speed -seconds 1 -bytes 16384 -evp sha256 2> /dev/null |
        awk '$1 == "sha256" { sub(/k$/, "", $2); printf "%.2f", $2 * 1000 / 1e9 }'
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
            # BENCH_API=tcp: the CLI talks to this daemon over loopback TCP, as before the API
            # socket (without its socket file the CLI goes to the api file's address)
            if [ "${BENCH_API:-}" = tcp ]; then rm -f "$WORK/$name/api.sock"; fi
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

# Seconds from $1 to $2 (two `now`s).
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }
# cpu_s PID: the user + system CPU-seconds process PID has used so far
cpu_s() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
# mbps BYTES T0 T1: MB/s of BYTES between two `now`s; mbps BYTES SECS: in SECS seconds (a number
# or an expression such as "$t1-$t0").
mbps() {
    if [ $# -eq 3 ]; then python3 -c "print(f'{$1/($3-$2)/1e6:.0f}')"
    else python3 -c "print(f'{$1/($2)/1e6:.0f}')"; fi
}
# median X...: the median of the numbers given, as awk prints it (six significant digits)
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
# median2 X...: their median, two decimals (CPU-seconds)
median2() { printf '%.2f' "$(median "$@")"; }
# median_range X...: "median min max" of the numbers given, three decimals (for values under
# 1000, which is what the benchmarks give it: seconds, and MB/s of the stack's ceiling)
median_range() {
    local sorted; sorted=$(printf '%s\n' "$@" | sort -g)
    printf '%.3f %.3f %.3f\n' "$(median "$@")" "${sorted%%$'\n'*}" "${sorted##*$'\n'}"
}
# timed_client CMD...: runs CMD, a client of node b fetching from node a, and appends its
# seconds to ROUND_SECS and the CPU-seconds a, b and the client spent over it to ROUND_CPU_A,
# ROUND_CPU_B and ROUND_CPU_CLI (the arrays the caller starts empty); round_cpu then sets CPU_A,
# CPU_B and CPU_CLI to their medians
timed_client() {
    local a0 b0 t0 t1
    a0=$(cpu_s "$a_PID"); b0=$(cpu_s "$b_PID")
    t0=$(now); /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" "$@"; t1=$(now)
    ROUND_SECS+=("$(python3 -c "print($t1-$t0)")")
    ROUND_CPU_CLI+=("$(awk '{printf "%.2f", $1 + $2}' "$WORK/client.cpu")")
    ROUND_CPU_A+=("$(secs "$a0" "$(cpu_s "$a_PID")")")
    ROUND_CPU_B+=("$(secs "$b0" "$(cpu_s "$b_PID")")")
}
round_cpu() {
    CPU_A=$(median2 "${ROUND_CPU_A[@]}")
    CPU_B=$(median2 "${ROUND_CPU_B[@]}")
    CPU_CLI=$(median2 "${ROUND_CPU_CLI[@]}")
}
# dd_secs FILE: the seconds dd itself reports for reading FILE with 1 MiB requests (no process
# start-up in it)
dd_secs() { LC_ALL=C dd if="$1" of=/dev/null bs=1M 2>&1 | awk '/copied/ {for (i = 1; i <= NF; i++) if ($i == "s,") print $(i - 1)}'; }

# Directories with nothing mounted under them can be removed; anything still mounted there is
# detached first, and rm never crosses into another filesystem.
mounted_under() { awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r; }
is_mounted() { awk -v d="$1" '$5 == d {f = 1} END {exit !f}' /proc/self/mountinfo; }
safe_rm() {
    local m
    for m in $(mounted_under "$1"); do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$1"
}
# Process alive and not a zombie.
alive() { [ -r "/proc/$1/status" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }

# Drops the kernel page cache when it can (sets DROPPED to 1 if it did, else 0).
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && DROPPED=1 || DROPPED=0; }
DROPPED=0

# The first Debian mirror of the machine's apt sources serving bookworm main (deb822 .sources files
# first, then one-line .list files).
apt_mirror() {
    python3 - <<'PY'
import glob, re, sys
suite = "bookworm"
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(f).read()):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, v = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = v.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split() \
                and "main" in fields.get("components", "").split() and fields.get("uris"):
            print(fields["uris"].split()[0]); sys.exit(0)
for f in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(f).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line.split("#", 1)[0].strip())
        if m and m.group(2) == suite and "main" in m.group(3).split():
            print(m.group(1)); sys.exit(0)
sys.exit("no apt source for bookworm main found in /etc/apt/sources.list{,.d/}")
PY
}

# debian_rootfs TAR PACKAGES: a Debian bookworm rootfs, `debootstrap --variant=minbase
# --include=PACKAGES` from $MIRROR (default: apt_mirror), tarred with numeric owners and xattrs into
# TAR, unless TAR already exists (delete it to rebuild). Installs debootstrap when missing.
debian_rootfs() {
    local tar=$1 packages=$2 tmp t0
    [ -s "$tar" ] && return 0
    if ! command -v debootstrap > /dev/null; then
        apt-get update -q > /dev/null && apt-get install -y -q debootstrap > /dev/null
    fi
    MIRROR=${MIRROR:-$(apt_mirror)}
    echo "building the rootfs with debootstrap from $MIRROR (cached in $tar)" >&2
    mkdir -p "$(dirname "$tar")"
    tmp=$(mktemp -d /var/tmp/cidfs-debootstrap.XXXXXX)
    BOOTSTRAP_TMP=$tmp
    t0=$(now)
    if ! debootstrap --variant=minbase --include="$packages" bookworm "$tmp/root" "$MIRROR" \
            > "$WORK/debootstrap.log" 2>&1; then
        tail -30 "$WORK/debootstrap.log" >&2
        echo "debootstrap failed (full log above, last 30 lines)" >&2
        exit 1
    fi
    if [ -n "$(mounted_under "$tmp")" ]; then
        echo "debootstrap left mounts: $(mounted_under "$tmp")" >&2; exit 1
    fi
    rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*_Packages
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$tmp/root" -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
    safe_rm "$tmp"; BOOTSTRAP_TMP=
    echo "debootstrap + tar: $(secs "$t0" "$(now)") s" >&2
}

# The API of node NAME, host:port, from its api file (/ip4/H/tcp/P).
api_of() { awk -F/ '{print $3 ":" $5}' "$WORK/$1/api"; }
bytes_fetched() {
    curl -sf -X POST "http://$(api_of "$1")/api/v0/repo/stat" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["BytesFetched"])'
}
# Wait (bounded) until node $1 lists peer id $2 among its connections.
wait_peer() {
    local deadline=$(( $(date +%s) + 30 ))
    until "$BIN" --repo "$WORK/$1" swarm peers 2>/dev/null | grep -q "$2"; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "node $1 did not connect to $2" >&2; exit 1; }
        sleep 0.1
    done
}
# fresh_node NAME PEER_ADDR [DAEMON ARGS]: node NAME again on an empty repo (no blocks, no
# connections, fresh counters; stopped first if running), with $FRESH_CONFIG, when set, as its
# config.toml, connected to PEER_ADDR before it returns
fresh_node() {
    local name=$1 peer=$2 pid
    shift 2
    eval "pid=\${${name}_PID:-}"
    if [ -n "$pid" ]; then stop_cidfs "$name"; fi
    rm -rf "${WORK:?}/$name"; mkdir -p "$WORK/$name"
    if [ -n "${FRESH_CONFIG:-}" ]; then printf '%s' "$FRESH_CONFIG" > "$WORK/$name/config.toml"; fi
    start_cidfs "$name" --peer "$peer" "$@"
    wait_peer "$name" "${peer##*/}"
}
# Stop node NAME (SIGTERM, then SIGKILL after 30 s) and forget its PID.
stop_cidfs() {
    local pid p keep=()
    eval "pid=\$${1}_PID"
    kill "$pid" 2>/dev/null || true
    local deadline=$(( $(date +%s) + 30 ))
    while alive "$pid"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then kill -9 "$pid" 2>/dev/null || true; break; fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# bench_json NAME: writes the associative array R (figure name → value; numbers stay numbers) to
# target/bench/NAME.json with "bench": NAME, which scripts/plot.sh draws.
bench_json() {
    local k v end
    mkdir -p target/bench
    end=$(sha256_speed)
    if [ -n "${VM_SHA256_START:-}" ] && [ -n "$end" ]; then
        R[vm_sha256_gbps_start]=$VM_SHA256_START; R[vm_sha256_gbps_end]=$end
        echo "this VM's SHA-256 (one core): $VM_SHA256_START GB/s at the start, $end at the end"
    fi
    {
        printf '{"bench": "%s"' "$1"
        for k in "${!R[@]}"; do
            v=${R[$k]}
            if [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then printf ', "%s": %s' "$k" "$v"
            else printf ', "%s": "%s"' "$k" "$v"; fi
        done
        printf '}\n'
    } > "target/bench/$1.json"
    echo "figures: target/bench/$1.json"
}

# playwright_venv: Playwright (pinned, as scripts/test.sh installs it) in target/venv, for the
# dashboard screenshots; the browser is the system Chromium.
playwright_venv() {
    target/venv/bin/python -c 'import playwright' 2>/dev/null && return 0
    [ -x target/venv/bin/python ] || python3 -m venv target/venv
    target/venv/bin/pip install -q --disable-pip-version-check playwright==1.65.3 </dev/null
}

# ---- container runtimes for the lazy-start benchmarks (podman and containerd on this machine:
# ../shared/CLIENTS.md). REG is the registry endpoint they pull from (plain HTTP).
# podman_env DIR: podman storage, configs and registries.conf (REG insecure) in DIR.
podman_env() {
    mkdir -p "$1/root" "$1/runroot" "$1/tmp"
    printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\nnetns = "none"\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' > "$1/containers.conf"
    printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/root"\nrunroot = "%s/runroot"\n' "$1" "$1" > "$1/storage.conf"
    printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REG" > "$1/registries.conf"
}
# pod DIR ARGS...: podman with the storage and configs of podman_env DIR.
pod() {
    local d=$1; shift
    CONTAINERS_CONF=$d/containers.conf CONTAINERS_STORAGE_CONF=$d/storage.conf \
        CONTAINERS_REGISTRIES_CONF=$d/registries.conf \
        podman --root "$d/root" --runroot "$d/runroot" --tmpdir "$d/tmp" --storage-driver overlay "$@"
}
# start_containerd DIR [CONFIG_TAIL]: a containerd of its own (root, state and socket in DIR,
# CRI off); sets CTRD (DIR) and CTRD_PID; waits (bounded) for it.
start_containerd() {
    CTRD=$1; mkdir -p "$CTRD"
    printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s/c.sock"\n[ttrpc]\n  address = "%s/c.sock.ttrpc"\n%s\n' \
        "$CTRD" "$CTRD" "$CTRD" "$CTRD" "${2:-}" > "$CTRD/config.toml"
    containerd --config "$CTRD/config.toml" 2> "$CTRD/containerd.log" &
    CTRD_PID=$!; PIDS+=("$CTRD_PID")
    local deadline=$(( $(date +%s) + 30 ))
    until ctr --address "$CTRD/c.sock" version > /dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || { cat "$CTRD/containerd.log" >&2; echo "containerd did not start" >&2; exit 1; }
        sleep 0.1
    done
}
stop_containerd() {
    kill "$CTRD_PID" 2>/dev/null || true; wait "$CTRD_PID" 2>/dev/null || true
    for m in $(mounted_under "$CTRD"); do umount -l "$m"; done
}
# the containerd's proxy_plugins stanza for the snapshotter of the cidfs node in DIR
cidfs_snapshotter() {
    printf '[proxy_plugins]\n  [proxy_plugins.cidfs]\n    type = "snapshot"\n    address = "%s/snapshotter.sock"' "$1"
}
ctrd() { ctr --address "$CTRD/c.sock" --namespace default "$@"; }

# stack_ceiling MIB: the swarm's stack alone, between two processes of the node's own code
# (p2p/examples/stack_ceiling.rs, the run's swarm.key, the daemon's allocator settings): MIB MiB
# on one stream of SHA-256-checked 256 KiB frames, and fetched by bitswap from blocks held in
# memory (no store, no API, no client), three times each. Sets CEIL_STREAM, CEIL_BITSWAP (the
# medians, MB/s) and their _MIN and _MAX; all 0 when the example is not built and
# BENCH_NO_BUILD=1 says not to build it.
stack_ceiling() {
    local mib=$1 bin=$PWD/target/release/examples/stack_ceiling pid addr s=() w=() i
    CEIL_STREAM=0 CEIL_STREAM_MIN=0 CEIL_STREAM_MAX=0 CEIL_BITSWAP=0 CEIL_BITSWAP_MIN=0 CEIL_BITSWAP_MAX=0
    if [ -z "${BENCH_NO_BUILD:-}" ]; then cargo build --release --quiet -p cidfs-p2p --example stack_ceiling; fi
    [ -x "$bin" ] || return 0
    local tunables=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728
    GLIBC_TUNABLES=$tunables "$bin" serve "$WORK/swarm.key" "$mib" > "$WORK/ceiling.addr" 2> "$WORK/ceiling.log" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 300); do [ -s "$WORK/ceiling.addr" ] && break; alive "$pid" || break; sleep 0.1; done
    [ -s "$WORK/ceiling.addr" ] || { cat "$WORK/ceiling.log" >&2; echo "stack_ceiling serve did not start" >&2; exit 1; }
    addr=$(cat "$WORK/ceiling.addr")
    for i in 1 2 3; do
        s+=("$(GLIBC_TUNABLES=$tunables timeout 120 "$bin" fetch "$WORK/swarm.key" "$addr" "$mib" stream | awk '{print $1}')")
        w+=("$(GLIBC_TUNABLES=$tunables timeout 120 "$bin" fetch "$WORK/swarm.key" "$addr" "$mib" bitswap | awk '{print $1}')")
    done
    kill "$pid"
    read -r CEIL_STREAM CEIL_STREAM_MIN CEIL_STREAM_MAX <<< "$(median_range "${s[@]}")"
    read -r CEIL_BITSWAP CEIL_BITSWAP_MIN CEIL_BITSWAP_MAX <<< "$(median_range "${w[@]}")"
}
# ceiling_report WIDTH WHAT MBPS: stack_ceiling's figures, labels padded to WIDTH, and WHAT's
# MBPS against each; nothing when it measured none
ceiling_report() {
    [ "$CEIL_STREAM" != 0 ] || return 0
    printf "%-${1}s %8.0f MB/s (%.0f-%.0f, 3 runs)\n" "ceiling: one stream, SHA-256 per frame" "$CEIL_STREAM" "$CEIL_STREAM_MIN" "$CEIL_STREAM_MAX"
    printf "%-${1}s %8.0f MB/s (%.0f-%.0f, 3 runs)\n" "ceiling: bitswap, blocks in memory" "$CEIL_BITSWAP" "$CEIL_BITSWAP_MIN" "$CEIL_BITSWAP_MAX"
    echo "ratio $2 / stream ceiling: $(python3 -c "print(f'{$3/$CEIL_STREAM:.3f}')"), / bitswap in memory: $(python3 -c "print(f'{$3/$CEIL_BITSWAP:.3f}')")"
}

# base_bin REV: the path of a release cidfs built from this repo's commit REV, into
# target/bench-base (a git worktree, removed after the build); later calls reuse the binary.
base_bin() {
    local rev dir
    rev=$(git rev-parse --short "$1")
    dir=$PWD/target/bench-base
    if [ ! -x "$dir/bin-$rev" ]; then
        rm -rf "$dir/src"
        git worktree prune
        git worktree add --detach "$dir/src" "$rev" >/dev/null
        (cd "$dir/src" && CARGO_TARGET_DIR=$dir/target cargo build --release --quiet --bin cidfs) >&2
        cp "$dir/target/release/cidfs" "$dir/bin-$rev"
        git worktree remove --force "$dir/src"
    fi
    echo "$dir/bin-$rev"
}
