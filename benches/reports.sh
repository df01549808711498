#!/usr/bin/env bash
# How long the reports take, and whether `estimate` agrees with ingest.
#
#   benches/reports.sh [WORKDIR]     (default /dev/shm/dedup-reports: a tmpfs)
#
# 1. Many snapshots: a tree of $FILES small files in 40 folders, ingested
#    $SNAPSHOTS times (default 2000), a few files changed between each;
#    then the time of `snapshots --sizes`, `report --json` (which carries
#    every snapshot's exclusive bytes), `report latest --by-dir`,
#    `explain latest:...` and `report --html`.
# 2. The chunker advisor on a real corpus (ten Django releases unpacked,
#    fetched once per machine by pip; see realcorpus.sh): `estimate` with
#    six configurations in one pass, then a real ingest with each, side by
#    side: dedup ratio estimated and stored, and seconds.
# Uses the release binary (built first). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
WORK="${1:-/dev/shm/dedup-reports}"
SNAPSHOTS="${SNAPSHOTS:-2000}"
FILES="${FILES:-2000}"
cargo build --release --locked --quiet
BIN="$CARGO_TARGET_DIR/release/dedup"
rm -rf "$WORK"
mkdir -p "$WORK"
export DEDUP_CACHE="$WORK/cache"

secs() { # secs COMMAND...: runs it, prints its wall-clock seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

echo "== $SNAPSHOTS snapshots of $FILES files"
src="$WORK/src"
python3 - "$src" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
for i in range(n):
    d = os.path.join(root, f"dir{i % 40:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}.bin"), "wb") as f:
        f.write(rng.randbytes(rng.randrange(1000, 40000)))
EOF
repo="$WORK/repo"
"$BIN" --repo "$repo" init --quiet >/dev/null
t0=$(date +%s)
for s in $(seq 1 "$SNAPSHOTS"); do
  # Three files change per snapshot, at places that move.
  for k in 0 1 2; do
    i=$(((s * 37 + k * 11) % FILES))
    printf 'snapshot %d\n' "$s" >>"$src/dir$(printf %02d $((i % 40)))/f$(printf %05d $i).bin"
  done
  "$BIN" --repo "$repo" ingest --quiet "$src" >/dev/null
done
echo "ingests: $(($(date +%s) - t0)) s"
file="dir07/f00007.bin"
echo "snapshots --sizes:        $(secs "$BIN" --repo "$repo" snapshots --sizes) s"
echo "report --json:            $(secs "$BIN" --repo "$repo" report --json) s"
echo "report latest --by-dir:   $(secs "$BIN" --repo "$repo" report latest --by-dir) s"
echo "explain latest:/$file: $(secs "$BIN" --repo "$repo" explain "latest:$file") s"
echo "report --html:            $(secs "$BIN" --repo "$repo" --quiet report --html "$WORK/report.html") s ($(stat -c %s "$WORK/report.html") bytes)"
echo "snapshots, per-snapshot exclusive bytes summed: $("$BIN" --repo "$repo" snapshots --sizes --json |
  python3 -c 'import json,sys; print(sum(s["cost"]["exclusive_stored_bytes"] for s in json.load(sys.stdin)))')"
rm -rf "$repo" "$src" "$DEDUP_CACHE"

echo "== estimate against ingest: ten Django releases"
source benches/realcorpus.sh
real_corpus
trees="$WORK/base/trees"
chunkers=(fastcdc:8K,16K,32K,64K,128K fixed:64K)
echo "estimate, one pass, six configurations: $(secs "$BIN" estimate --quiet "$trees" --chunkers "${chunkers[@]}" --json) s"
"$BIN" estimate --quiet "$trees" --chunkers "${chunkers[@]}" --json >"$WORK/estimate.json"
"$BIN" estimate --quiet "$trees" --chunkers "${chunkers[@]}"
printf '%-13s %10s %10s %12s %12s %9s\n' chunker "est. dedup" "dedup" "est. stored" "stored" "ingest s"
for c in fastcdc:8K fastcdc:16K fastcdc:32K fastcdc:64K fastcdc:128K fixed:64K; do
  mode=${c%%:*}
  size=${c##*:}
  repo="$WORK/repo-$mode-$size"
  if [ "$mode" = fixed ]; then
    "$BIN" --repo "$repo" init --quiet --chunker fixed --size "$size" >/dev/null
  else
    "$BIN" --repo "$repo" init --quiet --avg-size "$size" >/dev/null
  fi
  s=$(secs "$BIN" --repo "$repo" ingest --quiet "$trees")
  read -r est est_stored < <(python3 -c "import json; c = next(c for c in json.load(open('$WORK/estimate.json'))['configurations'] if c['label'] == '$c'); print(round(c['dedup_ratio'], 4), c['stored_bytes'])")
  read -r real stored < <("$BIN" --repo "$repo" report --json | python3 -c 'import json,sys; r = json.load(sys.stdin); print(round(r["dedup_ratio"], 4), r["stored_bytes"])')
  printf '%-13s %10s %10s %12s %12s %9s\n' "$c" "$est" "$real" "$est_stored" "$stored" "$s"
  rm -rf "$repo"
done
