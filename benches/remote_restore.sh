#!/usr/bin/env bash
# Restore from a real multi-node object store: a 3-node Garage cluster on
# 127.0.0.1 (replication factor 3, scripts/garage.sh), and two corpora:
#   trees: ten Django releases unpacked (about 67 000 small files);
#   large: four 256 MiB files of random bytes.
# Each is stored by dedup (the repository's home in the cluster) and by
# restic (its repository in the same cluster), then restored by each with
# nothing cached; dedup also restores the same data from local shards.
# Each restore runs ROUNDS times (default 3), interleaved. Prints the
# median seconds of each, the ratios the goal is put in (restic / dedup
# from the cluster, and dedup cluster / dedup local) and the GET requests
# each tool's restore made.
#
#   benches/remote_restore.sh [WORKDIR]     (default /dev/shm/dedup-remote)
#
# Needs restic (apt-get install -y restic) and Garage 2.5.0 (installed into
# the tools folder when missing, about 9 minutes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
tools=${DEDUP_TOOLS:-$HOME/.cache/dedup-tools}
garage=$tools/bin/garage
work=${1:-/dev/shm/dedup-remote}
source scripts/setup.sh
command -v restic >/dev/null || {
    echo "remote_restore: needs restic (apt-get install -y restic)" >&2
    exit 1
}
cargo build --release --locked --quiet --bin dedup
dedup=$CARGO_TARGET_DIR/release/dedup
source scripts/garage.sh

WORK=$work
source benches/realcorpus.sh
real_corpus >/dev/null
mkdir -p "$work/base/large"
for i in 1 2 3 4; do head -c $((256 << 20)) /dev/urandom >"$work/base/large/part-$i.bin"; done

export RESTIC_PASSWORD=bench
now() { date +%s.%N; }
secs() { echo "scale=2; ($2 - $1) / 1" | bc; }
# GET requests node 1 (the one clients talk to) has logged so far.
gets() { grep -c ' GET /' "$work/node1/log" || true; }
# Seconds `$@` takes, its output dropped; the GETs it made go to $work/gets.
timed() {
    local t0 g0
    t0=$(now)
    g0=$(gets)
    "$@" >/dev/null
    secs "$t0" "$(now)"
    echo $(($(gets) - g0)) >"$work/gets"
}

# The median of its arguments.
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
rounds=${ROUNDS:-3}

printf '%-6s %8s %8s %8s %13s %14s %11s %11s\n' corpus dedup restic local restic/dedup cluster/local "dedup GETs" "restic GETs"
for corpus in trees large; do
    src=$work/base/$corpus
    home=s3://dedup/dedup-$corpus
    "$dedup" --quiet --repo "$home" --cache "$work/cache-in" init >/dev/null
    "$dedup" --quiet --repo "$home" --cache "$work/cache-in" ingest "$src" >/dev/null
    local_repo=$work/local-$corpus
    "$dedup" --quiet --repo "$local_repo" --cache "$work/cache-local" init >/dev/null
    "$dedup" --quiet --repo "$local_repo" --cache "$work/cache-local" ingest "$src" >/dev/null
    repo=s3:$AWS_ENDPOINT/dedup/restic-$corpus
    restic -r "$repo" --quiet init >/dev/null
    restic -r "$repo" --quiet --cache-dir "$work/restic-in" backup "$src" >/dev/null

    # Each restore $rounds times, interleaved; the cluster ones with
    # nothing cached (dedup builds its index from the home's segments,
    # restic downloads its index and tree packs).
    dedup_s=() restic_s=() local_s=()
    for _ in $(seq "$rounds"); do
        rm -rf "$work/cache-out" "$work/out"
        dedup_s+=("$(timed "$dedup" --quiet --repo "$home" --cache "$work/cache-out" restore latest "$work/out")")
        g_dedup=$(cat "$work/gets")
        diff -r --no-dereference "$src" "$work/out"
        rm -rf "$work/out"

        local_s+=("$(timed "$dedup" --quiet --repo "$local_repo" --cache "$work/cache-local" restore latest "$work/out")")
        diff -r --no-dereference "$src" "$work/out"
        rm -rf "$work/out" "$work/restic-out"

        restic_s+=("$(timed restic -r "$repo" --quiet --cache-dir "$work/restic-out" restore latest --target "$work/out")")
        g_restic=$(cat "$work/gets")
        diff -r --no-dereference "$src" "$work/out$src"
        rm -rf "$work/out"
    done
    rm -rf "$local_repo"
    t_dedup=$(median "${dedup_s[@]}") t_restic=$(median "${restic_s[@]}") t_local=$(median "${local_s[@]}")

    printf '%-6s %8s %8s %8s %13s %14s %11s %11s\n' "$corpus" "$t_dedup" "$t_restic" "$t_local" \
        "$(echo "scale=2; $t_restic / $t_dedup" | bc)" "$(echo "scale=2; $t_dedup / $t_local" | bc)" \
        "$g_dedup" "$g_restic"
done
