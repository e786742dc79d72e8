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
#   $PREFIX/lib/pkgconfig/rmqraft.pc  (outside /usr and /usr/local its Libs carry
#                                      -Wl,-rpath,$LIBDIR: programs run without LD_LIBRARY_PATH)
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
"$root/scripts/write-pc.sh" "$DESTDIR$LIBDIR/pkgconfig/rmqraft.pc" "$PREFIX" "$LIBDIR" "$INCLUDEDIR"
echo "installed librmqraft $version under $DESTDIR$PREFIX"
case "${PREFIX%/}" in
  /usr | /usr/local)
    if [[ -z "$DESTDIR" && "$(id -u)" == 0 ]] && command -v ldconfig >/dev/null; then
      ldconfig # the loader's cache: $LIBDIR is found without LD_LIBRARY_PATH
    elif [[ -z "$DESTDIR" ]]; then
      echo "run 'sudo ldconfig' so that programs find librmqraft.so.$major in $LIBDIR"
    fi
    ;;
  *)
    echo "programs built with 'pkg-config --libs rmqraft' (PKG_CONFIG_PATH=$LIBDIR/pkgconfig) load it from $LIBDIR (rpath)"
    ;;
esac
