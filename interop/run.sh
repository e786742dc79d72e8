#!/usr/bin/env bash
# Real RocketMQ clients against the release rmqraft binary: rocketmq-client-rust (crates.io)
# and ali-ons (npm). Builds this crate once (release, its own Cargo.lock), installs ali-ons
# from package-lock.json, and runs the tests. The library's target/release/rmqraft must
# be built first (test.sh does).
#   interop/run.sh           the tests
#   interop/run.sh bench     the send benchmark, one group then three (SYNC_FLUSH)
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target/interop}"
export RMQRAFT_BIN="${RMQRAFT_BIN:-$PWD/../target/release/rmqraft}"
[ -x "$RMQRAFT_BIN" ] || { echo "interop: $RMQRAFT_BIN is missing: run 'cargo build --release' in the library" >&2; exit 1; }
case "${1:-test}" in
  test)
    (cd ons && npm ci --no-audit --no-fund --loglevel=error)
    cargo build --release --locked --all-targets
    cargo nextest run --release --locked --no-fail-fast
    ;;
  bench)
    shift
    cargo build --release --locked --bin send_bench
    "$CARGO_TARGET_DIR/release/send_bench" --groups 1 "$@"
    "$CARGO_TARGET_DIR/release/send_bench" --groups 3 "$@"
    ;;
  *) echo "usage: interop/run.sh [test|bench [send_bench options]]" >&2; exit 2 ;;
esac
