#!/usr/bin/env bash
# The main job in one command: build dedup (release), ingest the given
# folders into the default repository ($DEDUP_REPO, else your data folder),
# and print the dedup report.
#   scripts/run.sh DIR...
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  echo "usage: scripts/run.sh DIR..." >&2
  exit 2
fi
source scripts/setup.sh
cargo build --release --locked --quiet
bin="$CARGO_TARGET_DIR/release/dedup"
status=0
"$bin" ingest "$@" || status=$?
# 1 means some entries were skipped (listed above); the snapshot exists.
[ "$status" -le 1 ] || exit "$status"
"$bin" report
exit "$status"
