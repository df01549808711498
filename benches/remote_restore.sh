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
# from the cluster, and dedup cluster / dedup local), the GET requests
# each tool's restore made, and the link's own speed: every pack object of
# dedup's repository fetched whole by curl, 8 at once (the floor for a
# restore that needs all of them). Then `ls -R` of each snapshot, from the
# cluster with nothing cached and from local shards.
#
#   benches/remote_restore.sh [WORKDIR]     (default /dev/shm/dedup-remote)
#
# Needs restic and curl (apt-get install -y restic curl) and Garage 2.5.0 (installed into
# the tools folder when missing, about 9 minutes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
tools=${DEDUP_TOOLS:-$HOME/.cache/dedup-tools}
garage=$tools/bin/garage
work=${1:-/dev/shm/dedup-remote}
source scripts/setup.sh
for tool in restic curl; do
    command -v $tool >/dev/null || {
        echo "remote_restore: needs $tool (apt-get install -y $tool)" >&2
        exit 1
    }
done
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

# Seconds curl takes to fetch every pack object under the bucket's
# prefix $1, 8 at once (one listing page: up to 1 000 packs).
s3curl() { curl -sf -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
raw_gets() {
    s3curl "$AWS_ENDPOINT/dedup?list-type=2&prefix=$1%2F" | grep -o '<Key>[^<]*\.pack</Key>' |
        sed 's/<[^>]*>//g' >"$work/pack-keys"
    local t0
    t0=$(now)
    xargs -P 8 -I{} curl -sf -o /dev/null -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        "$AWS_ENDPOINT/dedup/{}" <"$work/pack-keys"
    secs "$t0" "$(now)"
}

# The median of its arguments.
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
rounds=${ROUNDS:-3}

printf '%-6s %8s %8s %8s %13s %14s %11s %11s %9s %9s %9s\n' corpus dedup restic local restic/dedup cluster/local "dedup GETs" "restic GETs" "raw GET" "ls -R" "ls local"
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
    dedup_s=() restic_s=() local_s=() raw_s=() ls_s=() ls_local_s=()
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

        raw_s+=("$(raw_gets "dedup-$corpus")")
        rm -rf "$work/cache-out"
        ls_s+=("$(timed "$dedup" --quiet --repo "$home" --cache "$work/cache-out" ls -R latest)")
        ls_local_s+=("$(timed "$dedup" --quiet --repo "$local_repo" --cache "$work/cache-local" ls -R latest)")
    done
    rm -rf "$local_repo"
    t_dedup=$(median "${dedup_s[@]}") t_restic=$(median "${restic_s[@]}") t_local=$(median "${local_s[@]}")

    printf '%-6s %8s %8s %8s %13s %14s %11s %11s %9s %9s %9s\n' "$corpus" "$t_dedup" "$t_restic" "$t_local" \
        "$(echo "scale=2; $t_restic / $t_dedup" | bc)" "$(echo "scale=2; $t_dedup / $t_local" | bc)" \
        "$g_dedup" "$g_restic" "$(median "${raw_s[@]}")" "$(median "${ls_s[@]}")" "$(median "${ls_local_s[@]}")"
done
