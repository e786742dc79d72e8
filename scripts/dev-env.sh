#!/usr/bin/env bash
# Use the library straight from the build tree, without installing it. `cargo build
# --release` leaves target/release/librmqraft.so but not the SONAME link librmqraft.so.0
# that programs load; this makes it, and a target/release/pkgconfig/rmqraft.pc whose Libs
# carry an rpath to target/release (so programs run without LD_LIBRARY_PATH).
#
#   eval "$(scripts/dev-env.sh)"       # or: source scripts/dev-env.sh
#   cc app.c $(pkg-config --cflags --libs rmqraft) -o app && ./app
#
# It exports PKG_CONFIG_PATH (target/release/pkgconfig first), LD_LIBRARY_PATH (for
# programs linked some other way, and for java -Djava.library.path users), RMQRAFT_CFLAGS
# and RMQRAFT_LIBS (the same flags as pkg-config gives). RMQRAFT_PROFILE=debug uses
# target/debug instead.
_rmqraft_dev_env() (
  set -euo pipefail
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  libdir="$root/target/${RMQRAFT_PROFILE:-release}"
  if [[ ! -f "$libdir/librmqraft.so" ]]; then
    echo "dev-env.sh: $libdir/librmqraft.so is missing: run 'cargo build --release' first" >&2
    exit 1
  fi
  ln -sfn librmqraft.so "$libdir/librmqraft.so.0"
  mkdir -p "$libdir/pkgconfig"
  "$root/scripts/write-pc.sh" "$libdir/pkgconfig/rmqraft.pc" "$libdir" "$libdir" "$root/include"
  lines=(
    "export PKG_CONFIG_PATH=\"$libdir/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}\""
    "export LD_LIBRARY_PATH=\"$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    "export RMQRAFT_CFLAGS=\"-I$root/include\""
    "export RMQRAFT_LIBS=\"-L$libdir -lrmqraft -Wl,-rpath,$libdir\""
  )
  printf '%s\n' "${lines[@]}"
)
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # Sourced: export into the caller's shell, leaving its options alone.
  if _rmqraft_dev_env_out="$(_rmqraft_dev_env)"; then eval "$_rmqraft_dev_env_out"; fi
  unset -f _rmqraft_dev_env
  unset _rmqraft_dev_env_out
else
  _rmqraft_dev_env
fi
