#!/usr/bin/env bash
# Are the swarm tests steady under load? Runs tests/cluster.rs ROUNDS times (default 10), one
# test at a time as scripts/test.sh does, while the rest of the release test suite (lib, p2p and
# every other integration test: podman, containerd, registry, the 64 MiB transfers) runs over and
# over beside it in its own process, so the two cores are always contended. Prints each round's
# result and time, then how many rounds passed; exits 1 if any failed. Logs: target/stress/.
# Usage: scripts/stress-swarm-tests.sh [ROUNDS]   (root: namespaces, tc, mounts; run
# scripts/test.sh once first, which installs what the tests need)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
OUT=target/stress
mkdir -p "$OUT"

# the test binaries, built once (cargo is not run twice at once: it locks the build directory)
mapfile -t BINS < <(cargo test --release --workspace --no-run --message-format=json 2>/dev/null \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')
INTEGRATION=
for b in "${BINS[@]}"; do
    case "$(basename "$b")" in integration-*) INTEGRATION=$b ;; esac
done
[ -n "$INTEGRATION" ] || { echo "no integration test binary" >&2; exit 1; }

# the load: every test binary but the swarm tests, in a loop, until the rounds are done (it then
# finishes the binary it is running, so that the tests clean up their daemons and namespaces)
STOP=$OUT/stop
rm -f "$STOP"
load() {
    local n=0 b
    while [ ! -e "$STOP" ]; do
        n=$((n + 1))
        for b in "${BINS[@]}"; do
            [ -e "$STOP" ] && break
            if "$b" --skip cluster:: >> "$OUT/load.log" 2>&1; then
                echo "load pass $n: $(basename "$b") ok" >> "$OUT/load.log"
            else
                echo "load pass $n: $(basename "$b") FAILED" >> "$OUT/load.log"
            fi
        done
    done
}
: > "$OUT/load.log"
load &
LOAD=$!
trap 'touch "$STOP"; wait "$LOAD" 2>/dev/null || true' EXIT

passed=0
for r in $(seq 1 "$ROUNDS"); do
    start=$(date +%s)
    if "$INTEGRATION" cluster:: --test-threads=1 > "$OUT/round-$r.log" 2>&1; then
        passed=$((passed + 1)); verdict=ok
    else
        verdict=FAILED
    fi
    echo "round $r: $verdict in $(( $(date +%s) - start )) s ($(grep -c ' ok$' "$OUT/round-$r.log") tests ok)"
done
echo "swarm tests: $passed of $ROUNDS rounds passed beside the rest of the suite"
touch "$STOP"
echo "waiting for the load to finish the binary it is running"
wait "$LOAD" || true
echo "load: $(grep -c '^load pass .* ok$' "$OUT/load.log" || true) binaries passed, $(grep -c '^load pass .*FAILED$' "$OUT/load.log" || true) failed (see $OUT/load.log)"
[ "$passed" = "$ROUNDS" ]
