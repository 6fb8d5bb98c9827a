#!/usr/bin/env bash
# Regenerates the Rust of the containerd snapshots service (src/snapshotter/proto/*.rs) from
# src/snapshotter/proto/*.proto. The generated files are committed, so building cidfs needs
# neither protoc nor tonic-prost-build; run this only after changing a .proto file.
# Needs protoc (Debian: protobuf-compiler) and crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."
proto=$PWD/src/snapshotter/proto
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<'TOML'
[package]
name = "cidfs-protogen"
version = "0.0.0"
edition = "2021"
[dependencies]
tonic-prost-build = { version = "0.14", default-features = false, features = ["transport"] }
[workspace]
TOML
cat >"$work/src/main.rs" <<'RS'
fn main() {
    let mut args = std::env::args().skip(1);
    let (dir, out) = (args.next().unwrap(), args.next().unwrap());
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&out)
        .compile_protos(&[format!("{dir}/snapshots.proto")], &[dir])
        .expect("generating the snapshots service");
}
RS
cargo run --quiet --release --manifest-path "$work/Cargo.toml" -- "$proto" "$proto"
echo "regenerated $(ls "$proto"/*.rs | tr '\n' ' ')"
