#!/usr/bin/env bash
# Checks (and on Debian, as root, installs) what the build needs beyond Rust:
# a C++ compiler and libclang, for the rocksdb crate's bindings.
# Sourced by the other scripts; sets CARGO_TARGET_DIR to a cache outside the
# clone (unless already set) so RocksDB's C++ is built once per machine.
set -euo pipefail

have_libclang() {
  compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null ||
    compgen -G "/usr/lib/*/libclang*.so*" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if ! command -v clang >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1 || ! have_libclang; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing clang, libclang-dev and g++ (needed by the rocksdb crate)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-dev g++ >/dev/null
  else
    echo "setup: the build needs clang, libclang and a C++ compiler;" >&2
    echo "       on Debian/Ubuntu: sudo apt-get install -y clang libclang-dev g++" >&2
    exit 1
  fi
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dedup-target}"
