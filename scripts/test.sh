#!/usr/bin/env bash
# The one test command (README "Quick start", and CI through .ci/run):
#   1. installs the system tools the tests need when they are missing (fuse3 for FUSE mounts,
#      iproute2 for the network-namespace tests), with apt-get, non-interactively;
#   2. installs the pinned npm packages of the interop tests (tests/interop: Helia, kubo-rpc-client)
#      with `npm ci` when tests/interop/node_modules is missing;
#   3. cargo fmt --check, cargo clippy (warnings are errors), cargo test --release --workspace.
# Release mode keeps the 64 MiB transfer tests quick. Run from anywhere: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# Debian package providing each command the tests run.
declare -A NEEDED=([fusermount3]=fuse3 [ip]=iproute2)

install_missing() {
    local cmd missing=()
    for cmd in "${!NEEDED[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0

    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            log "missing ${missing[*]} and not root (no passwordless sudo): tests that need them may fail"
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing ${missing[*]} and no apt-get: install them by hand"
        return 0
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq </dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

install_missing

# The interop tests (tests/interop.rs) run Node.js; they also run `npm ci` themselves when needed.
if [ ! -d tests/interop/node_modules ]; then
    if command -v npm >/dev/null 2>&1; then
        log "npm ci in tests/interop"
        (cd tests/interop && npm ci --no-audit --no-fund </dev/null)
    else
        log "npm not found: the interop tests need Node.js 20+ and npm"
    fi
fi

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test --release --workspace"
cargo test --release --workspace
