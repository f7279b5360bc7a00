#!/usr/bin/env bash
# Encoder benchmark: our hand-written Arrow-to-NDJSON and Arrow-to-CSV encoders (dataforge-formats,
# what exports use) against arrow-json and arrow-csv on ROWS generated well_production rows, held in
# memory so that only encoding is timed, best of RUNS; says whether each pair writes the same bytes.
#
# Usage: bench/encoders.sh [ROWS] [RUNS]     (default 1000000 and 5)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rows=${1:-1000000}
runs=${2:-5}
work=${BENCH_DIR:-/tmp/dataforge-encoders-bench}

# generating is not timed: the debug binary does
cargo build --quiet -p dataforge
cargo build --release --quiet -p dataforge-formats --example encoders
mkdir -p "$work"
"$CARGO_TARGET_DIR/debug/dataforge" generate --dataset well_production --rows "$rows" --format arrow \
  -o "$work/rows.arrow" --schemas schemas
"$CARGO_TARGET_DIR/release/examples/encoders" "$work/rows.arrow" "$runs"
