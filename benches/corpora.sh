# Sourced by compare.sh and ab.sh: builds dedup and the corpus generator
# (release) and makes the three seeded corpora in $WORK/base, scaled by
# $SCALE. Sets DEDUP and GEN.
source scripts/setup.sh
cargo build --release --locked --quiet --bin dedup --example gen_corpus
DEDUP="$CARGO_TARGET_DIR/release/dedup"
GEN="$CARGO_TARGET_DIR/release/examples/gen_corpus"

scaled() { python3 -c "print(max(1, int($1 * $SCALE)))" 2>/dev/null || echo "$1"; }
rm -rf "$WORK"
mkdir -p "$WORK/base"
echo "generating corpora in $WORK (SCALE=$SCALE) ..." >&2
"$GEN" small "$WORK/base/small" "$(scaled 50000)"
"$GEN" large "$WORK/base/shift" 4 "$(scaled 256)"
"$GEN" huge "$WORK/base/huge" "$(scaled 2048)"
