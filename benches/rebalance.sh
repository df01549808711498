#!/usr/bin/env bash
# One rebalance onto an S3-compatible shard and one drain back, measured.
#
#   benches/rebalance.sh [WORKDIR]      (default WORKDIR: /tmp/dedup-rebalance)
#
# Generates the small-file corpus of compare.sh (50 000 files, SCALE scales
# it), ingests it into a repository with 4 local shards, starts s3s-fs (an
# S3 server over a folder; scripts/test.sh installs it) on 127.0.0.1, adds
# it as a fifth shard, then prints: the dry run's plan, the rebalance (chunks
# moved against the ideal 1/5, seconds), every shard's share afterwards, and
# the seconds to drain the S3 shard again with `shard remove`.
# s3s-fs answers small ranged reads about 40 ms late (it does not set
# TCP_NODELAY), so the seconds are an upper bound, not a store's speed.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-/tmp/dedup-rebalance}"
SCALE="${SCALE:-1}"
S3S_FS="${DEDUP_S3S_FS:-$HOME/.cache/dedup-tools/bin/s3s-fs}"
if [ ! -x "$S3S_FS" ]; then
  echo "rebalance.sh needs s3s-fs: run scripts/test.sh once, or set DEDUP_S3S_FS" >&2
  exit 1
fi
source scripts/setup.sh
cargo build --release --locked --quiet --bin dedup --example gen_corpus
DEDUP="$CARGO_TARGET_DIR/release/dedup"
GEN="$CARGO_TARGET_DIR/release/examples/gen_corpus"

rm -rf "$WORK"
mkdir -p "$WORK/s3/bench"
files=$(python3 -c "print(max(1, int(50000 * $SCALE)))")
"$GEN" small "$WORK/corpus" "$files" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$S3S_FS" --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret "$WORK/s3" \
  >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

repo="$WORK/repo"
export XDG_CACHE_HOME="$WORK/cache"
"$DEDUP" --repo "$repo" init --shards 4 >/dev/null
"$DEDUP" --repo "$repo" --quiet ingest "$WORK/corpus" >/dev/null
"$DEDUP" --repo "$repo" shard add "s3://bench/shard" --option "endpoint=http://127.0.0.1:$port"

seconds() { python3 -c "import time; print(f'{time.time():.3f}')"; }
echo "== plan"
"$DEDUP" --repo "$repo" --quiet rebalance --dry-run
echo "== rebalance onto the S3 shard (ideal: 1/5 = 20.0% of the chunks)"
t0=$(seconds)
"$DEDUP" --repo "$repo" --quiet rebalance --json >"$WORK/rebalance.json"
t1=$(seconds)
python3 - "$WORK/rebalance.json" "$t0" "$t1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
secs = float(sys.argv[3]) - float(sys.argv[2])
print(f"moved {r['moved_objects']} of {r['total_objects']} chunks "
      f"({100 * r['moved_objects'] / r['total_objects']:.1f}%), "
      f"{r['moved_bytes'] / 2**20:.1f} MiB, in {secs:.1f} s")
for s in r["shards"]:
    print(f"  shard {s['id']}: {s['chunks_out']} out, {s['chunks_in']} in")
EOF
echo "== shards afterwards"
"$DEDUP" --repo "$repo" shard list
"$DEDUP" --repo "$repo" --quiet verify --read-data
echo "== drain the S3 shard (shard remove 4)"
t0=$(seconds)
"$DEDUP" --repo "$repo" --quiet shard remove 4
t1=$(seconds)
python3 -c "print(f'drained in {$t1 - $t0:.1f} s')"
left=$(find "$WORK/s3/bench" -name '*.pack' | wc -l)
echo "packs left in the bucket: $left"
