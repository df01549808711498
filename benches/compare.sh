#!/usr/bin/env bash
# Side-by-side: dedup against restic and borg on the same corpora.
#
#   benches/compare.sh [--tmpfs] [WORKDIR]   (default WORKDIR: /tmp/dedup-compare,
#                                             with --tmpfs /dev/shm/dedup-compare)
#
# Needs restic, borg and GNU time; installs nothing. On Debian:
#   apt-get install -y restic borgbackup time
# --tmpfs puts the corpora, the repositories and every tool's cache on a
# tmpfs (it checks that WORKDIR is one), so a noisy disk cannot decide a
# ratio; everything is then read from memory by every tool alike.
# Corpora ($CORPORA, default all five, in this order):
#   trees : ten releases of Django's source (PyPI sdists, fetched once per
#           machine by pip into ~/.cache/dedup-tools/corpus), unpacked side
#           by side: about 67 000 files of real source;
#   tars  : the same ten releases as ten uncompressed tar files;
#   small : 50 000 small files of mixed sizes and kinds, then 3 more versions
#           (~2% of files edited, ~1% added, ~0.5% deleted each), changed in
#           place as a real backup source is;
#   shift : 4 files of 256 MiB, then 2 versions with blocks inserted and
#           deleted at random places (content shifts);
#   huge  : one 2 GiB file.
# The last three are seeded (examples/gen_corpus.rs) and scaled by SCALE
# (default 1).
# For each tool and corpus it prints: ingest seconds (all versions, new
# data), re-ingest seconds (the last version again, unchanged), restore
# seconds (last version), stored bytes, peak memory (largest RSS of any step),
# then dedup's ratio to each peer. Peers run with their defaults, encryption
# off where the tool allows (borg: --encryption none; restic cannot: a
# password is set). Before each tool starts on a corpus, the corpus is read
# once so every tool starts from a warm page cache.
#
# DEDUP_ENCRYPTION=repokey makes dedup's repositories encrypted (password
# "compare", the default key derivation of half a second per command), to
# compare with restic, which always encrypts.
# PEERS="restic borg" (the default) picks the peers. DEDUP_BASELINE=PATH adds
# another dedup binary (an earlier build, say) as the peer "baseline", run
# side by side with this one, to see what a change did to speed:
#   DEDUP_BASELINE=/tmp/dedup-before PEERS= benches/compare.sh --tmpfs
set -euo pipefail
cd "$(dirname "$0")/.."
TMPFS=
if [ "${1:-}" = --tmpfs ]; then
  TMPFS=1
  shift
fi
WORK="${1:-$([ -n "$TMPFS" ] && echo /dev/shm/dedup-compare || echo /tmp/dedup-compare)}"
if [ -n "$TMPFS" ]; then
  mkdir -p "$WORK"
  fs=$(stat -f -c %T "$WORK")
  [ "$fs" = tmpfs ] || { echo "compare.sh --tmpfs: $WORK is on $fs, not a tmpfs" >&2; exit 1; }
fi
SCALE="${SCALE:-1}"

read -r -a PEERS <<<"${PEERS-restic borg}"
missing=()
for peer in "${PEERS[@]}"; do
  case $peer in
    restic) command -v restic >/dev/null || missing+=(restic) ;;
    borg) command -v borg >/dev/null || missing+=(borgbackup) ;;
    *) echo "compare.sh: unknown peer $peer (restic, borg)" >&2; exit 1 ;;
  esac
done
if [ -n "${DEDUP_BASELINE:-}" ]; then
  [ -x "$DEDUP_BASELINE" ] || { echo "compare.sh: DEDUP_BASELINE=$DEDUP_BASELINE is not an executable" >&2; exit 1; }
  PEERS+=(baseline)
fi
TOOLS=(dedup "${PEERS[@]}")
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  echo "compare.sh needs: ${missing[*]} (Debian: apt-get install -y ${missing[*]})" >&2
  exit 1
fi
source benches/corpora.sh
export RESTIC_PASSWORD=compare BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export RESTIC_CACHE_DIR="$WORK/restic-cache" BORG_BASE_DIR="$WORK/borg-base"
export DEDUP_CACHE="$WORK/dedup-cache"
# Only for encrypted repositories: a plain one warns about a password it
# does not use.
[ "${DEDUP_ENCRYPTION:-none}" = none ] || export DEDUP_PASSWORD=compare
versions_trees=1
versions_tars=1
versions_small=4
versions_shift=3
versions_huge=1

# run CMD...: times CMD, adds its seconds to $secs, keeps the peak RSS in $peak.
run() {
  if ! /usr/bin/time -f "TIME %e %M" "$@" >/dev/null 2>"$WORK/last.err"; then
    echo "failed: $*" >&2
    cat "$WORK/last.err" >&2
    exit 1
  fi
  local s m
  read -r _ s m < <(grep '^TIME' "$WORK/last.err" | tail -1)
  secs=$(awk -v a="$secs" -v b="$s" 'BEGIN { print a + b }')
  if [ "$m" -gt "$peak" ]; then peak=$m; fi
}

backup() { # tool repo archive-name
  case $1 in
    dedup) run "$DEDUP" --repo "$2" --quiet ingest "$WORK/live" ;;
    baseline) run "$DEDUP_BASELINE" --repo "$2" --quiet ingest "$WORK/live" ;;
    restic) run restic -r "$2" --quiet backup "$WORK/live" ;;
    borg) run env -C "$WORK" borg create "$2::$3" live ;;
  esac
}

declare -A RESULT
for corpus in "${CORPORA[@]}"; do
  versions_var="versions_$corpus"
  versions=${!versions_var}
  for tool in "${TOOLS[@]}"; do
    repo="$WORK/repo-$tool-$corpus"
    rm -rf "$WORK/live" "$repo" "$DEDUP_CACHE" "$RESTIC_CACHE_DIR" "$BORG_BASE_DIR"
    cp -al "$WORK/base/$corpus" "$WORK/live"
    # A warm page cache for every tool alike.
    tar -cf - -C "$WORK" live | cat >/dev/null
    case $tool in
      dedup) "$DEDUP" --repo "$repo" init --encryption "${DEDUP_ENCRYPTION:-none}" >/dev/null ;;
      baseline) "$DEDUP_BASELINE" --repo "$repo" init --encryption "${DEDUP_ENCRYPTION:-none}" >/dev/null ;;
      restic) restic -r "$repo" --quiet init >/dev/null ;;
      borg) borg init --encryption none "$repo" ;;
    esac
    peak=0
    secs=0
    for v in $(seq 1 "$versions"); do
      if [ "$v" -gt 1 ]; then
        case $corpus in
          small) "$GEN" mutate "$WORK/live" "$v" ;;
          shift) "$GEN" shift "$WORK/live" "$v" ;;
        esac
      fi
      backup "$tool" "$repo" "v$v"
    done
    ingest=$secs
    secs=0
    backup "$tool" "$repo" again
    reingest=$secs
    stored=$(du -sb "$repo" | cut -f1)
    out="$WORK/out"
    rm -rf "$out"
    mkdir -p "$out"
    secs=0
    case $tool in
      dedup) run "$DEDUP" --repo "$repo" --quiet restore latest "$out/live" ;;
      baseline) run "$DEDUP_BASELINE" --repo "$repo" --quiet restore latest "$out/live" ;;
      restic) run restic -r "$repo" --quiet restore latest --target "$out" ;;
      borg) run env -C "$out" borg extract "$repo::again" ;;
    esac
    restore=$secs
    # Check the restore is the same tree (restic nests the absolute path).
    restored=$(find "$out" -type d -name live -print -quit)
    if ! diff -r -q "$WORK/live" "$restored" >/dev/null; then
      echo "WARNING: $tool restore of $corpus differs from the source" >&2
    fi
    rm -rf "$out"
    RESULT[$corpus,$tool]="$ingest $reingest $restore $stored $peak"
    echo "  $corpus/$tool: ingest ${ingest}s re-ingest ${reingest}s restore ${restore}s stored $stored B peak $((peak / 1024)) MiB" >&2
  done
  rm -rf "$WORK/live"
done

echo
printf '%-7s %-7s %10s %12s %10s %14s %10s\n' corpus tool "ingest s" "re-ingest s" "restore s" "stored MiB" "peak MiB"
for corpus in "${CORPORA[@]}"; do
  for tool in "${TOOLS[@]}"; do
    read -r i r s b p <<<"${RESULT[$corpus,$tool]}"
    printf '%-7s %-7s %10.2f %12.2f %10.2f %14.1f %10d\n' "$corpus" "$tool" "$i" "$r" "$s" "$(awk -v b="$b" 'BEGIN{print b/1048576}')" $((p / 1024))
  done
done
echo
echo "dedup's advantage (peer / dedup: above 1 means dedup is faster or smaller)"
printf '%-7s %-7s %10s %12s %10s %14s %10s\n' corpus peer ingest re-ingest restore stored peak
for corpus in "${CORPORA[@]}"; do
  read -r di dr ds db dp <<<"${RESULT[$corpus,dedup]}"
  for tool in "${PEERS[@]}"; do
    read -r i r s b p <<<"${RESULT[$corpus,$tool]}"
    awk -v c="$corpus" -v t="$tool" -v i="$i" -v r="$r" -v s="$s" -v b="$b" -v p="$p" \
        -v di="$di" -v dr="$dr" -v ds="$ds" -v db="$db" -v dp="$dp" 'function q(a, d) { return d > 0 ? a / d : 0 }
      BEGIN { printf "%-7s %-7s %9.1fx %11.1fx %9.1fx %13.2fx %9.2fx\n", c, t, q(i, di), q(r, dr), q(s, ds), q(b, db), q(p, dp) }'
  done
done
