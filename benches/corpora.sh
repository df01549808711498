# Sourced by compare.sh and ab.sh: builds dedup and the corpus generator
# (release) and makes the corpora named in $CORPORA in $WORK/base: the
# seeded synthetic ones (small, shift, huge; scaled by $SCALE) and the real
# ones (trees, tars; see realcorpus.sh). Sets DEDUP and GEN.
source scripts/setup.sh
source benches/realcorpus.sh
cargo build --release --locked --quiet --bin dedup --example gen_corpus
DEDUP="$CARGO_TARGET_DIR/release/dedup"
GEN="$CARGO_TARGET_DIR/release/examples/gen_corpus"
read -r -a CORPORA <<<"${CORPORA:-trees tars small shift huge}"

scaled() { python3 -c "print(max(1, int($1 * $SCALE)))" 2>/dev/null || echo "$1"; }
rm -rf "$WORK"
mkdir -p "$WORK/base"
echo "making corpora ${CORPORA[*]} in $WORK (SCALE=$SCALE) ..." >&2
for corpus in "${CORPORA[@]}"; do
  case $corpus in
    small) "$GEN" small "$WORK/base/small" "$(scaled 50000)" ;;
    shift) "$GEN" large "$WORK/base/shift" 4 "$(scaled 256)" ;;
    huge) "$GEN" huge "$WORK/base/huge" "$(scaled 2048)" ;;
    trees | tars) [ -d "$WORK/base/$corpus" ] || real_corpus ;;
    *) echo "unknown corpus $corpus (trees tars small shift huge)" >&2; exit 1 ;;
  esac
done
