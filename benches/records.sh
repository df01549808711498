#!/usr/bin/env bash
# What an open costs with many snapshot records, before and after a
# compaction folds them into the record catalog: N snapshots (default
# 1000) of a small folder, each ingest changing one file, into a home on
# tmpfs and into one on s3s-fs (an S3 server on 127.0.0.1). For each home,
# prints the seconds `dedup snapshots` takes with a new cache (it reads
# every record) and with a warm one (it lists the records), the files left
# in snapshots/, then the same after `dedup gc` folded them.
#
#   benches/records.sh [N] [WORKDIR]     (default 1000, /dev/shm/dedup-records)
#
# DEDUP_BIN=path runs that binary instead of a release build (the test
# profile is optimised too, and a cold release build is 14 minutes of
# RocksDB).
# Needs s3s-fs (scripts/test.sh installs it into the tools folder).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
n=${1:-1000}
work=${2:-/dev/shm/dedup-records}
tools=${DEDUP_TOOLS:-$HOME/.cache/dedup-tools}
s3s=${DEDUP_S3S_FS:-$tools/bin/s3s-fs}
source scripts/setup.sh
if [ -n "${DEDUP_BIN:-}" ]; then
    dedup=$DEDUP_BIN
else
    cargo build --release --locked --quiet --bin dedup
    dedup=$CARGO_TARGET_DIR/release/dedup
fi
rm -rf "$work"
mkdir -p "$work/src" "$work/s3/bench"
for i in $(seq 1 20); do head -c 4096 /dev/urandom >"$work/src/f$i"; done

RUST_LOG=s3s_fs=info "$s3s" --host 127.0.0.1 --port 0 --access-key bench --secret-key bench-secret-key \
    "$work/s3" >"$work/s3.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    port=$(grep -oE '127\.0\.0\.1:[0-9]+' "$work/s3.log" | head -1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "records: s3s-fs did not start" >&2; exit 1; }
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
export AWS_ENDPOINT=http://127.0.0.1:$port AWS_ALLOW_HTTP=true

seconds() { # the wall seconds of "$@", its output dropped
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}

measure() { # HOME_URL RECORDS_FOLDER LABEL
    local repo=$1 folder=$2 label=$3
    local cold warm files
    cold=$(seconds env DEDUP_CACHE="$work/cache-$RANDOM$RANDOM" "$dedup" --repo "$repo" snapshots)
    warm=$(seconds env DEDUP_CACHE="$work/cache" "$dedup" --repo "$repo" snapshots)
    files=$(find "$folder" -type f 2>/dev/null | wc -l)
    printf '%-28s %8s %8s %8s\n' "$label" "$cold" "$warm" "$files"
}

printf '%-28s %8s %8s %8s\n' "$n snapshots" "new s" "warm s" "files"
for kind in folder s3; do
    if [ $kind = folder ]; then
        repo=$work/repo
        folder=$repo/snapshots
    else
        repo=s3://bench/repo
        folder=$work/s3/bench/repo/snapshots
    fi
    DEDUP_CACHE=$work/cache "$dedup" --repo "$repo" init --shards 1 >/dev/null
    for i in $(seq 1 "$n"); do
        echo "$i" >"$work/src/changing"
        DEDUP_CACHE=$work/cache "$dedup" --repo "$repo" --quiet ingest "$work/src" >/dev/null
    done
    measure "$repo" "$folder" "$kind, records as files"
    DEDUP_CACHE=$work/cache "$dedup" --repo "$repo" gc >/dev/null
    measure "$repo" "$folder" "$kind, folded by gc"
    rm -rf "$work/cache"
done
