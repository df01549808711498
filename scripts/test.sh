#!/usr/bin/env bash
# The whole test suite in one command (unit, property, CLI and golden tests).
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --locked "$@"
