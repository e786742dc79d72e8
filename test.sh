#!/usr/bin/env bash
# Runs every test: Rust unit, simulation, storage, network and cluster tests (nextest),
# then the C, C++ and JNI hosts against the release librmqraft.so.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --lib --bins
cargo nextest run --release --no-fail-fast
ffi-tests/run.sh
