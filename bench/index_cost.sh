#!/usr/bin/env bash
# What a declared index costs writes: imports ROWS generated well_production rows (Arrow files of
# 1,000,000 rows) into a fresh database with the shipped schemas and with
# `indexes = [["field_code", "production_period"]]` declared, alternating, PAIRS times; prints
# rows/s, peak RSS and the key index's size on disk for each import.
#
# Usage: bench/index_cost.sh [ROWS] [PAIRS]     (defaults 10000000 and 2)
# Needs: bc and /usr/bin/time (Debian package `time`). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rows=${1:-10000000}
pairs=${2:-2}
work=${BENCH_DIR:-/tmp/dataforge-index-cost}
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/dataforge"
rm -rf "$work" && mkdir -p "$work/load"
source bench/schemas.sh
bench_schemas "$work/indexed" 1
for ((start = 0; start < rows; start += 1000000)); do
  n=$((rows - start < 1000000 ? rows - start : 1000000))
  "$bin" generate --dataset well_production --start "$start" --rows "$n" --format arrow -o "$work/load/$(printf '%012d' "$start").arrow"
done

echo "| schemas | rows/s | peak RSS (MiB) | key index on disk (MiB) |"
echo "| --- | ---: | ---: | ---: |"
for ((pair = 0; pair < pairs; pair++)); do
  for variant in shipped indexed; do
    dir=schemas
    [ "$variant" = indexed ] && dir="$work/indexed"
    rm -rf "$work"/db*
    began=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$work/rss.txt" "$bin" import --schemas "$dir" --dataset well_production \
      --db "$work/db.duckdb" "$work"/load/*.arrow >/dev/null 2>&1
    seconds=$(echo "$(date +%s.%N) - $began" | bc)
    echo "| $variant | $(echo "$rows / $seconds" | bc) | $(($(cat "$work/rss.txt") / 1024)) | $(du -sm "$work/db.duckdb.keys" | cut -f1) |"
  done
done
rm -rf "$work"
