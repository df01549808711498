#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of on-disk data, on stable Rust:
# each target in fuzz/ runs for SECONDS (default 20), starting from the
# valid encodings in fuzz/seeds/ (written by `DEDUP_WRITE_FUZZ_SEEDS=1
# cargo test --test properties fuzz_seeds`). A crash or a failed assertion
# stops it with the input that caused it, saved under the work folder.
#   scripts/fuzz.sh [SECONDS]
# The targets are built with the SanitizerCoverage flags cargo-fuzz uses,
# minus AddressSanitizer (nightly only); the decoders are safe Rust, so
# panics, overflows and runaway allocations are what there is to find.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
seconds="${1:-20}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="$CARGO_TARGET_DIR/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps the flags off build scripts, which cannot link them.
(cd fuzz && cargo build --release --locked --target "$triple" --target-dir "$target_dir")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in pack_trailer tree snapshot_record index_values bloom_and_config index_family; do
  mkdir -p "$work/$t/corpus" "$work/$t/crashes"
  echo "fuzz: $t for ${seconds}s" >&2
  # A fixed seed: the same build explores the same inputs every run.
  if ! "$target_dir/$triple/release/$t" -seed=1 -max_total_time="$seconds" -rss_limit_mb=2048 \
      -timeout=10 -print_final_stats=1 -artifact_prefix="$work/$t/crashes/" \
      "$work/$t/corpus" "fuzz/seeds/$t" >"$work/$t/log" 2>&1; then
    tail -n 40 "$work/$t/log" >&2
    kept="/tmp/dedup-fuzz-$t-crashes"
    rm -rf "$kept" && cp -r "$work/$t/crashes" "$kept"
    echo "fuzz: $t failed; the input is in $kept" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$work/$t/log" \
    | sed "s/^/fuzz: $t: /" >&2
done
