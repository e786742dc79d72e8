#!/usr/bin/env bash
# Installs librmqraft under a prefix: the shared object with its version symlinks, the C
# and C++ headers, and a pkg-config file. Build first with `cargo build --release`.
#
#   PREFIX=/usr/local scripts/install.sh        (DESTDIR=... for staged installs)
#
# Result, with VERSION from Cargo.toml (e.g. 0.1.0) and MAJOR its first part:
#   $PREFIX/lib/librmqraft.so.$VERSION
#   $PREFIX/lib/librmqraft.so.$MAJOR -> librmqraft.so.$VERSION   (the SONAME)
#   $PREFIX/lib/librmqraft.so        -> librmqraft.so.$MAJOR       (for -lrmqraft)
#   $PREFIX/include/rmqraft.h, $PREFIX/include/rmqraft.hpp
#   $PREFIX/lib/pkgconfig/rmqraft.pc
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="${PREFIX:-/usr/local}"
LIBDIR="${LIBDIR:-$PREFIX/lib}"
INCLUDEDIR="${INCLUDEDIR:-$PREFIX/include}"
DESTDIR="${DESTDIR:-}"
lib="${RMQRAFT_LIB:-$root/target/release/librmqraft.so}"

if [[ ! -f "$lib" ]]; then
  echo "install.sh: $lib not found; run 'cargo build --release' first" >&2
  exit 1
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
major="${version%%.*}"
[[ -n "$version" ]] || { echo "install.sh: no version in Cargo.toml" >&2; exit 1; }

install -d "$DESTDIR$LIBDIR/pkgconfig" "$DESTDIR$INCLUDEDIR"
install -m 0755 "$lib" "$DESTDIR$LIBDIR/librmqraft.so.$version"
ln -sfn "librmqraft.so.$version" "$DESTDIR$LIBDIR/librmqraft.so.$major"
ln -sfn "librmqraft.so.$major" "$DESTDIR$LIBDIR/librmqraft.so"
install -m 0644 "$root/include/rmqraft.h" "$root/include/rmqraft.hpp" "$DESTDIR$INCLUDEDIR/"
cat > "$DESTDIR$LIBDIR/pkgconfig/rmqraft.pc" <<PC
prefix=$PREFIX
libdir=$LIBDIR
includedir=$INCLUDEDIR

Name: rmqraft
Description: Embeddable replicated commitlog groups (Raft over TCP) with a C ABI
Version: $version
Libs: -L\${libdir} -lrmqraft
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
echo "installed librmqraft $version under $DESTDIR$PREFIX"
