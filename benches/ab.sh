#!/usr/bin/env bash
# Two builds of dedup, interleaved: did a change make ingest or restore
# faster or slower?
#
#   benches/ab.sh BASELINE_BINARY [WORKDIR]     (default WORKDIR: /dev/shm/dedup-ab)
#
# Builds this checkout (release), generates the corpora of compare.sh
# (scaled by SCALE, default 1) and, ROUNDS times (default 4) per corpus,
# ingests it into a fresh repository and restores it with each build. The
# order of the two builds alternates from round to round: on a tmpfs the
# first big write after a big delete is often slower, and a fixed order
# would charge that to one build. Prints each build's median and the ratio
# (baseline / this build: above 1 means this build is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${1:?usage: benches/ab.sh BASELINE_BINARY [WORKDIR]}"
WORK="${2:-/dev/shm/dedup-ab}"
SCALE="${SCALE:-1}"
ROUNDS="${ROUNDS:-4}"
[ -x "$BASE" ] || { echo "ab.sh: $BASE is not an executable" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "ab.sh needs GNU time (Debian: apt-get install -y time)" >&2; exit 1; }
source benches/corpora.sh
NEW="$DEDUP"
# The cache beside the repository, on the same file system.
export DEDUP_CACHE="$WORK/dedup-cache"

seconds() { # CMD...: prints the wall seconds CMD took
  /usr/bin/time -f "%e" -o "$WORK/time" "$@" >/dev/null
  cat "$WORK/time"
}

results="$WORK/results"
: >"$results"
for corpus in "${CORPORA[@]}"; do
  for round in $(seq 1 "$ROUNDS"); do
    order="new base"
    [ $((round % 2)) = 0 ] && order="base new"
    for build in $order; do
      bin="$NEW"
      [ "$build" = base ] && bin="$BASE"
      rm -rf "$WORK/repo" "$WORK/out" "$DEDUP_CACHE"
      "$bin" --repo "$WORK/repo" --quiet init >/dev/null
      i=$(seconds "$bin" --repo "$WORK/repo" --quiet ingest "$WORK/base/$corpus")
      r=$(seconds "$bin" --repo "$WORK/repo" --quiet restore latest "$WORK/out")
      echo "$corpus $build $i $r" >>"$results"
      echo "  $corpus round $round $build: ingest ${i}s restore ${r}s" >&2
    done
  done
done
rm -rf "$WORK/repo" "$WORK/out"

python3 - "$results" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
corpora = []
for line in open(sys.argv[1]):
    corpus, build, ingest, restore = line.split()
    if corpus not in corpora:
        corpora.append(corpus)
    runs[corpus, build, "ingest"].append(float(ingest))
    runs[corpus, build, "restore"].append(float(restore))
print(f"{'corpus':7} {'step':8} {'baseline s':>10} {'this s':>8} {'ratio':>6}")
for corpus in corpora:
    for step in ["ingest", "restore"]:
        base = statistics.median(runs[corpus, "base", step])
        new = statistics.median(runs[corpus, "new", step])
        print(f"{corpus:7} {step:8} {base:10.2f} {new:8.2f} {base / new:5.2f}x")
EOF
