#!/usr/bin/env bash
# Many machines, one repository, on a real distributed store: a 3-node
# Garage cluster on 127.0.0.1 (replication factor 3), a repository whose
# home is a bucket there, and two writers ingesting overlapping trees at
# the same time while one Garage node is killed and started again. Both
# ingests must succeed and both snapshots restore byte for byte from a
# machine with nothing cached. Prints: one writer vs two writers (MiB/s),
# the time to open the repository with a cold cache, the restore time.
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

if [ ! -x "$garage" ]; then
    echo "installing garage 2.5.0 into $tools (about 9 minutes)"
    cargo install garage@2.5.0 --locked --root "$tools"
fi
(cd "$root" && cargo build --release --locked --quiet)
dedup=$CARGO_TARGET_DIR/release/dedup

rm -rf "$work"
mkdir -p "$work"
pids=()
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all EXIT

secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
node_conf() { echo "$work/node$1/garage.toml"; }
for n in 1 2 3; do
    dir=$work/node$n
    mkdir -p "$dir/meta" "$dir/data"
    cat > "$(node_conf $n)" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:39${n}1"
rpc_public_addr = "127.0.0.1:39${n}1"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:39${n}0"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:39${n}3"
EOF
done

start_node() {
    "$garage" -c "$(node_conf "$1")" server > "$work/node$1/log" 2>&1 &
    pids[$1]=$!
}
g() { "$garage" -c "$(node_conf 1)" "$@"; }
for n in 1 2 3; do start_node $n; done
for _ in $(seq 100); do g status > /dev/null 2>&1 && break; sleep 0.2; done

ids=()
for n in 1 2 3; do
    ids[$n]=$("$garage" -c "$(node_conf $n)" node id -q 2>/dev/null)
done
g node connect "${ids[2]}" > /dev/null
g node connect "${ids[3]}" > /dev/null
for n in 1 2 3; do
    g layout assign -z dc1 -c 1G "${ids[$n]%%@*}" > /dev/null
done
g layout apply --version 1 > /dev/null
key=$(g key create dedup)
export AWS_ACCESS_KEY_ID=$(echo "$key" | awk '/Key ID:/ {print $3}')
export AWS_SECRET_ACCESS_KEY=$(echo "$key" | awk '/Secret key:/ {print $3}')
export AWS_REGION=garage AWS_ENDPOINT=http://127.0.0.1:3910
g bucket create dedup > /dev/null
g bucket allow --read --write --owner dedup --key dedup > /dev/null
echo "garage: 3 nodes on 127.0.0.1, replication factor 3; dedup talks to node 2"

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
