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
#   $PREFIX/share/java/rmqraft.jar     the Java package org.rmqraft (javac + jar)
#   $PREFIX/lib/librmqraft_jni.so      its JNI glue (cc), linked against librmqraft.so.$MAJOR
#
# The Java part needs a JDK (javac, jar, jni.h; JAVA_HOME or javac on PATH) and a C
# compiler (CC, default cc). RMQRAFT_JAVA=auto (default) skips it with a note when no JDK
# is found, RMQRAFT_JAVA=1 requires it, RMQRAFT_JAVA=0 skips it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="${PREFIX:-/usr/local}"
LIBDIR="${LIBDIR:-$PREFIX/lib}"
INCLUDEDIR="${INCLUDEDIR:-$PREFIX/include}"
JAVADIR="${JAVADIR:-$PREFIX/share/java}"
java_mode="${RMQRAFT_JAVA:-auto}"
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

install_java() {
  local javac_path java_home rpath=()
  if ! javac_path="$(command -v javac)" || ! command -v jar >/dev/null; then
    [[ "$java_mode" == 1 ]] && { echo "install.sh: no JDK (javac, jar) found; RMQRAFT_JAVA=1 requires one" >&2; exit 1; }
    echo "install.sh: no JDK found: rmqraft.jar and librmqraft_jni.so not built (RMQRAFT_JAVA=0 silences this)"
    return 0
  fi
  java_home="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$javac_path")")")}"
  [[ -f "$java_home/include/jni.h" ]] || { echo "install.sh: no jni.h under $java_home/include (set JAVA_HOME)" >&2; exit 1; }
  case "${PREFIX%/}" in /usr | /usr/local) ;; *) rpath=("-Wl,-rpath,$LIBDIR") ;; esac
  java_tmp="$(mktemp -d)"
  trap 'rm -rf "$java_tmp"' EXIT
  local tmp="$java_tmp"
  javac -d "$tmp/classes" "$root"/ffi-tests/jni/src/org/rmqraft/*.java
  jar --create --file "$tmp/rmqraft.jar" -C "$tmp/classes" .
  "${CC:-cc}" -std=c99 -O2 -fPIC -shared -pthread -I"$root/include" -I"$java_home/include" -I"$java_home/include/linux" \
    "$root/ffi-tests/jni/native/rmqraft_jni.c" -o "$tmp/librmqraft_jni.so" -L"$DESTDIR$LIBDIR" -lrmqraft "${rpath[@]}"
  install -d "$DESTDIR$JAVADIR"
  install -m 0644 "$tmp/rmqraft.jar" "$DESTDIR$JAVADIR/rmqraft.jar"
  install -m 0755 "$tmp/librmqraft_jni.so" "$DESTDIR$LIBDIR/librmqraft_jni.so"
  echo "installed $JAVADIR/rmqraft.jar and $LIBDIR/librmqraft_jni.so under $DESTDIR$PREFIX"
}
[[ "$java_mode" == 0 ]] || install_java

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
