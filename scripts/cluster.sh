#!/usr/bin/env bash
# Many machines, one repository, on a real distributed store: a 3-node
# Garage cluster on 127.0.0.1 (replication factor 3), a repository whose
# home is a bucket there, and two writers ingesting overlapping trees at
# the same time while one Garage node is killed and started again. Both
# ingests must succeed and both snapshots restore byte for byte from a
# machine with nothing cached. Prints: one writer vs two writers (MiB/s),
# the time to open the repository with a cold cache, the restore time.
# Then the lock cases on the real store: a writer suspended past the
# staleness while another machine collects records nothing, and a lock of
# a clone with this hostname keeps gc out.
#
#   scripts/cluster.sh [WORKDIR]      (default /dev/shm/dedup-cluster)
#
# Installs Garage 2.5.0 into the tools folder beside s3s-fs when missing
# (about 9 minutes to build). Not part of scripts/test.sh for that reason.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
tools=${DEDUP_TOOLS:-$HOME/.cache/dedup-tools}
garage=$tools/bin/garage
work=${1:-/dev/shm/dedup-cluster}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dedup-target}

(cd "$root" && cargo build --release --locked --quiet)
dedup=$CARGO_TARGET_DIR/release/dedup
source "$here/garage.sh"

# Two overlapping trees: C headers and a shared random file in both, and
# a random file of each one's own.
for t in a b; do
    mkdir -p "$work/src-$t"
    cp -r /usr/include "$work/src-$t/include"
done
head -c $((96 << 20)) /dev/urandom > "$work/src-a/shared.bin"
cp "$work/src-a/shared.bin" "$work/src-b/shared.bin"
head -c $((64 << 20)) /dev/urandom > "$work/src-a/own.bin"
head -c $((64 << 20)) /dev/urandom > "$work/src-b/own.bin"
mib() { du -sm --apparent-size "$1" | cut -f1; }
size_a=$(mib "$work/src-a")
size_b=$(mib "$work/src-b")
now() { date +%s.%N; }
rate() { echo "scale=1; $1 / ($3 - $2)" | bc; }
run() { "$dedup" --quiet --repo "$1" "${@:2}"; }

# One writer alone.
one=s3://dedup/one
run "$one" --cache "$work/cache-one" init > /dev/null
t0=$(now)
run "$one" --cache "$work/cache-one" ingest "$work/src-a" > /dev/null
t1=$(now)
echo "one writer:  ${size_a} MiB in $(echo "$t1 - $t0" | bc) s: $(rate "$size_a" "$t0" "$t1") MiB/s"

# Two writers at once, all nodes up.
both=s3://dedup/both
run "$both" --cache "$work/cache-both" init > /dev/null
t0=$(now)
run "$both" --cache "$work/cache-both-a" ingest "$work/src-a" > /dev/null &
wa=$!
run "$both" --cache "$work/cache-both-b" ingest "$work/src-b" > /dev/null &
wb=$!
wait $wa
wait $wb
t1=$(now)
echo "two writers: $((size_a + size_b)) MiB in $(echo "$t1 - $t0" | bc) s: $(rate $((size_a + size_b)) "$t0" "$t1") MiB/s together"

# Two writers at once, node 3 killed a second in and started again after.
two=s3://dedup/two
run "$two" --cache "$work/cache-init" init > /dev/null
t0=$(now)
run "$two" --cache "$work/cache-a" ingest "$work/src-a" > "$work/a.out" &
wa=$!
run "$two" --cache "$work/cache-b" ingest "$work/src-b" > "$work/b.out" &
wb=$!
sleep 1
kill -9 "${pids[3]}"
wait "${pids[3]}" 2>/dev/null || true
echo "node 3 killed during the ingests"
wait $wa
wait $wb
t1=$(now)
start_node 3
echo "two writers, node 3 killed: $((size_a + size_b)) MiB in $(echo "$t1 - $t0" | bc) s: $(rate $((size_a + size_b)) "$t0" "$t1") MiB/s together"
snap_a=$(awk '/^snapshot/ {print $2}' "$work/a.out")
snap_b=$(awk '/^snapshot/ {print $2}' "$work/b.out")

# A new machine: nothing cached.
rm -rf "$work/cache-new"
t0=$(now)
count=$(run "$two" --cache "$work/cache-new" snapshots --json | grep -c '"id"')
t1=$(now)
echo "cold cache open (snapshots): $(echo "$t1 - $t0" | bc) s, $count snapshots"
t0=$(now)
run "$two" --cache "$work/cache-new" restore "$snap_a" "$work/out-a" > /dev/null
run "$two" --cache "$work/cache-new" restore "$snap_b" "$work/out-b" > /dev/null
t1=$(now)
echo "restore both: $((size_a + size_b)) MiB in $(echo "$t1 - $t0" | bc) s: $(rate $((size_a + size_b)) "$t0" "$t1") MiB/s"
diff -r --no-dereference "$work/src-a" "$work/out-a"
diff -r --no-dereference "$work/src-b" "$work/out-b"
run "$two" --cache "$work/cache-new" verify --read-data > /dev/null
echo "both snapshots restore byte for byte; verify --read-data clean"

# What both writers stored at once is stored twice; gc gives it back.
freed=$(run "$two" --cache "$work/cache-new" gc --json | awk -F': ' '/"bytes_freed"/ {gsub(/,/, "", $2); print $2}')
echo "gc after the two writers: $((freed >> 20)) MiB freed (chunks both stored at the same time)"
run "$two" --cache "$work/cache-new" verify --read-data > /dev/null
rm -rf "$work/out-a"
run "$two" --cache "$work/cache-new" restore "$snap_a" "$work/out-a" > /dev/null
diff -r --no-dereference "$work/src-a" "$work/out-a"
echo "after gc: verify --read-data clean, restore identical"

# Locks on the real store. A laptop stores data that deduplicates against
# a snapshot, and is suspended (SIGSTOP) before it records. Another
# machine, taking locks unwritten for 6 s for stale, forgets that snapshot
# and collects 8 s later. The laptop, resumed, must record nothing.
fail() { echo "FAILED: $*"; exit 1; }
locks=s3://dedup/locks
mkdir -p "$work/src-l"
head -c $((8 << 20)) /dev/urandom > "$work/src-l/data.bin"
run "$locks" --cache "$work/cache-l" init > /dev/null
first=$(run "$locks" --cache "$work/cache-l" ingest "$work/src-l" | awk '/^snapshot/ {print $2}')
mkfifo "$work/feed"
DEDUP_LOCK_STALE_SECONDS=4 "$dedup" --repo "$locks" --cache "$work/cache-laptop" \
    ingest --stdin --stdin-name data.bin < "$work/feed" > /dev/null 2> "$work/laptop.err" &
laptop=$!
exec 3> "$work/feed"
cat "$work/src-l/data.bin" >&3
sleep 2
kill -STOP "$laptop"
sleep 8
DEDUP_LOCK_STALE_SECONDS=6 run "$locks" --cache "$work/cache-l" forget "$first" --prune > /dev/null
kill -CONT "$laptop"
exec 3>&-
status=0
wait "$laptop" || status=$?
[ "$status" = 2 ] && grep -q "may no longer be held" "$work/laptop.err" ||
    fail "the suspended writer exited $status: $(cat "$work/laptop.err")"
[ "$(run "$locks" --cache "$work/cache-l" snapshots --json | grep -c '"id"')" = 0 ] ||
    fail "the suspended writer recorded a snapshot"
run "$locks" --cache "$work/cache-l" verify --read-data > /dev/null
echo "a writer suspended past the staleness while another machine collected: exit 2, nothing recorded"
echo "  it said: $(cut -c1-160 "$work/laptop.err")"

# A clone of this machine (same hostname, machine id and pid namespace,
# another boot) holds a writer's lock whose pid is not running here: it
# is live until it ages, so gc stays out.
s3curl() { curl -sf -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
clone=$(printf '{"pid":%d,"host":"%s","boot":"00000000-1111-2222-3333-444444444444","since":"2026-01-01T00:00:00Z","machine":"%s","pidns":"%s"}' \
    4000000 "$(cat /proc/sys/kernel/hostname)" "$(cat /etc/machine-id 2>/dev/null)" "$(readlink /proc/self/ns/pid)")
s3curl -X PUT --data-binary "$clone" "$AWS_ENDPOINT/dedup/locks/locks/shared-0c10e0c10e0c10e0"
status=0
run "$locks" --cache "$work/cache-l" gc > /dev/null 2> "$work/gc.err" || status=$?
[ "$status" = 2 ] && grep -q "locked by" "$work/gc.err" || fail "gc beside a clone's lock exited $status"
s3curl -X DELETE "$AWS_ENDPOINT/dedup/locks/locks/shared-0c10e0c10e0c10e0"
run "$locks" --cache "$work/cache-l" gc > /dev/null
echo "a lock of a clone with this hostname, another boot: gc refused while it is fresh, ran once it was gone"
