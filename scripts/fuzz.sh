#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each (default 60), one
# after the other, and prints a table: target, executions, executions per second, new crashes.
# Each target feeds one parser of outside input (src/fuzzing.rs): bitswap messages, eStargz
# chunks inflated whole and streamed (which must agree), the eStargz footer + TOC + index +
# mount tree (and the member-aligned leaf plan), layer tar streams, dag-pb / UnixFS nodes, CID
# and image references, registry paths + Range headers, snapshotter filters, peers' copies
# statuses, htpasswd files and the ELF headers a mount follows to a program's libraries.
#
# The corpus of each target lives in fuzz/corpus/TARGET (kept between runs, not committed); it
# starts from fuzz/seeds/TARGET. A crash leaves its input in fuzz/artifacts/TARGET: turn it into a
# regression test beside the parser it hit, fix the parser, then run again.
#
# The toolchain here is stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly flags it
# needs. Built without a sanitizer (-s none): the code under test is safe Rust, and libFuzzer
# still finds panics, overflows (debug assertions are on), timeouts and runaway memory
# (-rss_limit_mb, -malloc_limit_mb).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/.."
EACH=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build -s none -O
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else mapfile -t TARGETS < <(cargo fuzz list); fi
mkdir -p logs
printf '%-22s %14s %10s %8s\n' target executions exec/s crashes
failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
    before=$(find "artifacts/$t" -type f | wc -l)
    set +e
    cargo fuzz run -s none -O "$t" "corpus/$t" -- \
        -max_total_time="$EACH" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 > "logs/$t.log" 2>&1
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
    [ "$crashes" -eq 0 ] || failed=1
    printf '%-22s %14s %10s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "$crashes"
done
[ "$failed" -eq 0 ] || { echo "crashes: see fuzz/artifacts and fuzz/logs" >&2; exit 1; }
