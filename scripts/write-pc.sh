#!/usr/bin/env bash
# Writes rmqraft.pc (used by install.sh and dev-env.sh, so both give the same flags):
#
#   scripts/write-pc.sh OUT_FILE PREFIX LIBDIR INCLUDEDIR
#
# Outside the system prefixes (/usr, /usr/local) Libs carries -Wl,-rpath,LIBDIR, so a
# program built with `pkg-config --libs rmqraft` finds librmqraft.so.0 without
# LD_LIBRARY_PATH.
set -euo pipefail
[[ $# -eq 4 ]] || { echo "usage: $0 OUT_FILE PREFIX LIBDIR INCLUDEDIR" >&2; exit 2; }
out="$1" prefix="$2" libdir="$3" includedir="$4"
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
[[ -n "$version" ]] || { echo "write-pc.sh: no version in Cargo.toml" >&2; exit 1; }
case "${prefix%/}" in
  /usr | /usr/local) rpath="" ;;
  *) rpath=' -Wl,-rpath,${libdir}' ;;
esac
cat > "$out" <<PC
prefix=$prefix
libdir=$libdir
includedir=$includedir

Name: rmqraft
Description: Embeddable replicated commitlog groups (Raft over TCP) with a C ABI
Version: $version
Libs: -L\${libdir} -lrmqraft$rpath
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
