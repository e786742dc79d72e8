#!/usr/bin/env bash
# The host tools ./test.sh needs beyond a Rust toolchain, and where to get them (Debian).
#
#   scripts/host-tools.sh check      names each missing tool once, with how to get it;
#                                    exits 1 if any is missing
#   scripts/host-tools.sh packages   prints the Debian packages of the missing tools
#   scripts/host-tools.sh nextest    exits 0 when cargo-nextest is installed
set -euo pipefail
# command  Debian package  what needs it
tools=(
  "cc build-essential the C linker cargo uses (even for 'cargo build')"
  "gcc build-essential the C host tests"
  "g++ g++ the C++ host tests"
  "nm binutils the export check of librmqraft.so"
  "readelf binutils the SONAME check"
  "pkg-config pkg-config the install check"
  "valgrind valgrind the C suite under memcheck"
  "javac openjdk-17-jdk-headless the Java (JNI) host tests"
  "java openjdk-17-jdk-headless the Java (JNI) host tests"
  "jar openjdk-17-jdk-headless rmqraft.jar (scripts/install.sh, the install check)"
  "node nodejs the ali-ons interop test (interop/ons)"
  "npm npm the ali-ons interop test (npm ci in interop/ons)"
)
have_nextest() { cargo nextest --version >/dev/null 2>&1; }

case "${1:-check}" in
  check)
    missing=() packages=()
    for t in "${tools[@]}"; do
      read -r cmd pkg why <<<"$t"
      if ! command -v "$cmd" >/dev/null 2>&1; then
        missing+=("$cmd ($why)")
        [[ " ${packages[*]} " == *" $pkg "* ]] || packages+=("$pkg")
      fi
    done
    for m in "${missing[@]}"; do echo "missing: $m" >&2; done
    if [[ ${#packages[@]} -gt 0 ]]; then
      echo "  get it with: sudo apt-get install ${packages[*]}   (or run .ci/run as root)" >&2
    fi
    if ! have_nextest; then
      echo "missing: cargo-nextest (runs the Rust tests)" >&2
      echo "  get it with: cargo install --locked cargo-nextest" >&2
      missing+=(cargo-nextest)
    fi
    [[ ${#missing[@]} -eq 0 ]]
    ;;
  packages)
    packages=()
    for t in "${tools[@]}"; do
      read -r cmd pkg _ <<<"$t"
      command -v "$cmd" >/dev/null 2>&1 || [[ " ${packages[*]} " == *" $pkg "* ]] || packages+=("$pkg")
    done
    echo "${packages[*]}"
    ;;
  nextest) have_nextest ;;
  *) echo "usage: $0 check|packages|nextest" >&2; exit 2 ;;
esac
