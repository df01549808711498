#!/usr/bin/env bash
# What each zstd level costs and saves: ingest time and stored bytes per
# level, on the corpora of compare.sh.
#
#   benches/levels.sh [WORKDIR]      (default WORKDIR: /dev/shm/dedup-levels)
#
# LEVELS (default "none -3 -1 1 2 3 6 9") and CORPORA (default "trees tars
# huge") pick what to run; each ingest starts from an empty repository and
# a warm page cache. Put WORKDIR on a tmpfs so the disk does not decide.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-/dev/shm/dedup-levels}"
SCALE="${SCALE:-1}"
CORPORA="${CORPORA:-trees tars huge}"
read -r -a LEVELS <<<"${LEVELS:-none -3 -1 1 2 3 6 9}"
[ -x /usr/bin/time ] || { echo "levels.sh needs GNU time (Debian: apt-get install -y time)" >&2; exit 1; }
source benches/corpora.sh
export DEDUP_CACHE="$WORK/dedup-cache"
printf '%-7s %6s %10s %14s %10s\n' corpus level "ingest s" "stored MiB" "peak MiB"
for corpus in "${CORPORA[@]}"; do
  tar -cf - -C "$WORK/base" "$corpus" | cat >/dev/null
  for level in "${LEVELS[@]}"; do
    rm -rf "$WORK/repo" "$DEDUP_CACHE"
    if [ "$level" = none ]; then
      "$DEDUP" --repo "$WORK/repo" init --compression none >/dev/null
    else
      "$DEDUP" --repo "$WORK/repo" init --compression-level "$level" >/dev/null
    fi
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$DEDUP" --repo "$WORK/repo" --quiet ingest "$WORK/base/$corpus" >/dev/null
    read -r secs peak <"$WORK/time"
    stored=$(du -sb "$WORK/repo" | cut -f1)
    printf '%-7s %6s %10.2f %14.1f %10d\n' "$corpus" "$level" "$secs" \
      "$(awk -v b="$stored" 'BEGIN{print b/1048576}')" $((peak / 1024))
  done
done
rm -rf "$WORK/repo" "$DEDUP_CACHE"
