#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (nextest), then the C, C++ and JNI hosts.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --lib --bins
cargo nextest run --release --no-fail-fast
