#!/usr/bin/env bash
# The whole test suite in one command (unit, property, CLI, golden, crash and
# object-store tests), then every fuzz target for a short while.
#   scripts/test.sh [cargo test options]
# DEDUP_FUZZ_SECONDS sets the fuzzing time per target (default 15; 0 skips).
# The object-store tests run a real S3 server, s3s-fs; the first run installs
# it into ~/.cache/dedup-tools (a few minutes, once per machine).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

tools="$HOME/.cache/dedup-tools"
if [ -z "${DEDUP_S3S_FS:-}" ]; then
  if [ ! -x "$tools/bin/s3s-fs" ]; then
    echo "test: installing s3s-fs 0.14.1 (S3 server for the object-store tests) into $tools" >&2
    env -u CARGO_TARGET_DIR cargo install s3s-fs@0.14.1 --features binary --locked --root "$tools"
  fi
  export DEDUP_S3S_FS="$tools/bin/s3s-fs"
fi

# The mount test needs /dev/fuse, and, unless it runs as root (which
# mounts directly), a fusermount from Debian's fuse3 (or fuse) package;
# the attribute tests need root to own files as others and make devices.
# Without them those tests say they did not run and pass.
if [ ! -e /dev/fuse ]; then
  echo "test: no /dev/fuse: the mount test will not run" >&2
elif [ "$(id -u)" != 0 ] && ! command -v fusermount3 >/dev/null && ! command -v fusermount >/dev/null; then
  echo "test: no fusermount: the mount test will not run (sudo apt-get install -y fuse3)" >&2
fi
if [ "$(id -u)" != 0 ]; then
  echo "test: not root: the owner and device-node tests will not run" >&2
fi

# The HTML report is checked in a real browser: Debian's chromium, run
# headless. Installed here as the C++ toolchain is; without it that one
# test says it did not run and passes.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing chromium (renders the HTML report in a browser test)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      echo "test: could not install chromium: the browser test will not run" >&2
  else
    echo "test: no chromium: the browser test will not run (sudo apt-get install -y chromium)" >&2
  fi
fi

# The output is kept, so that the failures (from every test binary, under
# --no-fail-fast) can be listed together at the end.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
tests_status=0
cargo test --locked "$@" 2>&1 | tee "$log" || tests_status=$?

fuzz_status=0
fuzz_seconds="${DEDUP_FUZZ_SECONDS:-15}"
if [ "$fuzz_seconds" != 0 ]; then
  scripts/fuzz.sh "$fuzz_seconds" || fuzz_status=$?
fi

if [ "$tests_status" != 0 ] || [ "$fuzz_status" != 0 ]; then
  echo >&2
  echo "test: FAILED" >&2
  awk -f scripts/failures.awk "$log" | sed 's/^/  /' >&2
  [ "$fuzz_status" = 0 ] || echo "  fuzzing (scripts/fuzz.sh) failed" >&2
  exit 1
fi
