#!/usr/bin/env bash
# Runs the whole test suite (no fuzzing) again and again, to find tests that
# fail only sometimes, and prints each run's time and failures, then every
# test that failed with how often.
#   scripts/soak.sh [--load] RUNS [cargo test options]
# --load keeps both cores busy the whole time with stress-ng (Debian's
# stress-ng package; installed here as root), as a busy CI machine would.
# The logs of runs that failed are kept in the folder it names at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

load=0
if [ "${1:-}" = --load ]; then
  load=1
  shift
fi
runs="${1:?usage: scripts/soak.sh [--load] RUNS [cargo test options]}"
shift
case "$runs" in '' | *[!0-9]*) echo "soak: RUNS must be a number, not '$runs'" >&2; exit 2 ;; esac

if [ -z "${DEDUP_S3S_FS:-}" ] && [ -x "$HOME/.cache/dedup-tools/bin/s3s-fs" ]; then
  export DEDUP_S3S_FS="$HOME/.cache/dedup-tools/bin/s3s-fs"
fi

# Built once, before the clock starts.
cargo test --locked --no-run "$@" >/dev/null 2>&1 || {
  echo "soak: the tests do not build; run scripts/test.sh to see why" >&2
  exit 2
}

logs="$(mktemp -d /tmp/dedup-soak.XXXXXX)"
stress_pid=
stop_load() { [ -z "$stress_pid" ] || kill "$stress_pid" 2>/dev/null || true; }
trap stop_load EXIT
if [ "$load" = 1 ]; then
  if ! command -v stress-ng >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "soak: installing stress-ng (keeps the cores busy)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null || true
  fi
  if ! command -v stress-ng >/dev/null; then
    echo "soak: --load needs stress-ng (sudo apt-get install -y stress-ng)" >&2
    exit 2
  fi
  stress-ng --cpu "$(nproc)" --quiet &
  stress_pid=$!
fi

mode=idle
[ "$load" = 0 ] || mode="loaded ($(nproc) stress-ng CPU workers)"
echo "soak: $runs runs of the suite, $mode" >&2
failed_runs=0
for i in $(seq 1 "$runs"); do
  log="$logs/run-$i.log"
  start=$(date +%s)
  status=0
  cargo test --locked --no-fail-fast "$@" >"$log" 2>&1 || status=$?
  took=$(($(date +%s) - start))
  failures="$(awk -f scripts/failures.awk "$log")"
  if [ "$status" = 0 ]; then
    echo "run $i/$runs: ${took} s, passed" >&2
    rm -f "$log"
  else
    failed_runs=$((failed_runs + 1))
    echo "run $i/$runs: ${took} s, FAILED (log: $log)" >&2
    [ -z "$failures" ] || printf '%s\n' "$failures" | sed 's/^/  /' >&2
    printf '%s\n' "$failures" >>"$logs/failures"
  fi
done

echo "soak: $runs runs, $failed_runs failed, $mode" >&2
if [ -s "$logs/failures" ]; then
  sort "$logs/failures" | uniq -c | sort -rn >&2
  echo "soak: logs of the failed runs are in $logs" >&2
  exit 1
fi
rm -rf "$logs"
