# The failures in the output of `cargo test`, one a line: each failed test
# with the file it is in ("tests/lock.rs: some_test"), cargo's line for
# each failed binary (how to run it again), a binary that died without
# naming a test (killed, crashed), and a build that failed. Used by scripts/test.sh and scripts/soak.sh:
#   awk -f scripts/failures.awk LOG
/^ *Running / { bin = $2; if (bin == "unittests") bin = $3 }
/^test .* \.\.\. FAILED$/ {
  sub(/^test /, ""); sub(/ \.\.\. FAILED$/, "")
  print bin ": " $0
}
/process didn.t exit successfully/ { print }
/^error: (could not compile|test failed, to rerun pass)/ { print }
