#!/bin/bash
# A/B of two dedup binaries, /tmp/dedup-old and /tmp/dedup-new (say, the
# build before caches became overlays on the index families, 818e966,
# and one after), on /dev/shm/ab/src (any folder of files: the figures in
# docs/design.md used 40 files of 10 MB of random bytes). Each round, for
# each binary: a new repository's first ingest, a compaction, the same
# data ingested again from a new machine (nothing cached), and a restore
# from another new machine; prints the seconds of each.
set -euo pipefail
cd /dev/shm/ab
t() { local t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || echo "FAILED: $*" >&2; echo "$(date +%s.%N) - $t0" | bc; }
for round in 1 2; do
  for b in old new; do
    D=/tmp/dedup-$b; r=repo-$b-$round
    rm -rf $r c-$b-*
    DEDUP_CACHE=c-$b-1 $D --repo $r init >/dev/null
    a=$(t env DEDUP_CACHE=c-$b-1 $D --repo $r ingest src)
    DEDUP_CACHE=c-$b-1 $D --repo $r compact >/dev/null
    n=$(t env DEDUP_CACHE=c-$b-2 $D --repo $r ingest src)
    rm -rf out-$b
    rs=$(t env DEDUP_CACHE=c-$b-3 $D --repo $r restore latest out-$b)
    echo "round $round $b: ingest new data $a s; new machine ingest again $n s; new machine restore $rs s"
    rm -rf $r out-$b c-$b-*
  done
done
