#!/usr/bin/env bash
# Ingest benchmark: raw in-process DuckDB as the limit, then dataforge's HTTP ingest of generated
# well_production rows in 100,000-row requests for each format, 64 concurrent single-record
# clients, and the server's peak RSS (during each format's load and during one large CSV upload).
#
# Usage: bench/ingest.sh [ROWS] [BIG_CSV_GB]     (defaults: 10000000 rows, 5 GB)
# INDEX=1 declares `indexes = [["field_code", "production_period"]]` on well_production (the index
# bench/read.sh declares), to measure what it costs writes.
# Needs: curl, and wrk for the single-record part (apt-get install wrk). Prints a Markdown report.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rows=${1:-10000000}
big_csv_gb=${2:-5}
per_request=100000
work=${BENCH_DIR:-/tmp/dataforge-bench}
port=8765
base="http://127.0.0.1:$port"

cargo build --release --quiet
cargo build --release --quiet -p dataforge-duckdb --example raw_load
bin="$CARGO_TARGET_DIR/release/dataforge"
rm -rf "$work" && mkdir -p "$work"
schemas="$work/schemas"
source bench/schemas.sh
bench_schemas "$schemas" "${INDEX:-0}"

server_pid=""
start_server() {
  rm -rf "$work/db" && mkdir -p "$work/db"
  "$bin" serve --schemas "$schemas" --db "$work/db/bench.duckdb" --listen "127.0.0.1:$port" 2>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; cat "$work/server.log" >&2; exit 1
}
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
now() { date +%s.%N; }

echo "## Ingest benchmark: $rows rows, $(nproc) cores, $(date -u +%Y-%m-%d)$([ "${INDEX:-0}" = 1 ] && echo ", index declared")"
echo

# (a) the limit: raw DuckDB appending the same rows (Arrow appender)
"$bin" generate --dataset well_production --rows "$rows" --format arrow -o "$work/all.arrow"
read -r _ _ raw_s raw_rate < <("$CARGO_TARGET_DIR/release/examples/raw_load" "$work/all.arrow" "$work" | grep raw_unkeyed)
read -r _ _ keyed_s keyed_rate < <("$CARGO_TARGET_DIR/release/examples/raw_load" "$work/all.arrow" "$work" | grep raw_keyed)
rm -f "$work/all.arrow" "$work"/raw_*.duckdb*
# the limit, as the issue defines it: the same rows into the same keyed table (composite PRIMARY
# KEY); the ratio to an unkeyed table (no uniqueness at all) is shown beside it
echo "| load | rows/s | ratio to the limit (keyed table) | ratio to an unkeyed table | peak RSS (MiB) |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| (a) raw DuckDB, Arrow appender, composite PRIMARY KEY (the limit) | $keyed_rate | 1.00 | $(echo "scale=2; $keyed_rate / $raw_rate" | bc) | |"
echo "| raw DuckDB, Arrow appender, no key constraint | $raw_rate | $(echo "scale=2; $raw_rate / $keyed_rate" | bc) | 1.00 | |"

# (b) dataforge HTTP ingest, 100,000-row requests, per format
declare -A media=([arrow]="application/vnd.apache.arrow.stream" [parquet]="application/vnd.apache.parquet"
  [csv]="text/csv" [ndjson]="application/x-ndjson" [json]="application/json")
for format in arrow parquet csv ndjson json; do
  mkdir -p "$work/chunks"
  for ((start = 0; start < rows; start += per_request)); do
    "$bin" generate --dataset well_production --start "$start" --rows "$per_request" --format "$format" -o "$work/chunks/$start.$format"
  done
  start_server
  began=$(now)
  for ((start = 0; start < rows; start += per_request)); do
    curl -sf -X POST --data-binary "@$work/chunks/$start.$format" -H "Content-Type: ${media[$format]}" \
      "$base/v1/datasets/well_production/records" >/dev/null
  done
  seconds=$(echo "$(now) - $began" | bc)
  rate=$(echo "$rows / $seconds" | bc)
  echo "| (b) dataforge HTTP, $format | $rate | $(echo "scale=2; $rate / $keyed_rate" | bc) | $(echo "scale=2; $rate / $raw_rate" | bc) | $(peak_rss_mib) |"
  stop_server
  rm -rf "$work/chunks"
done
echo

# (c) 64 concurrent clients POSTing single records for 10 s; beside it, GET /health with the same
# clients as the reference for the HTTP stack alone, and the same POSTs with deferred appends off
# (every group committed to DuckDB before it is answered)
if command -v wrk >/dev/null; then
  start_server
  wrk -t2 -c64 -d10s "$base/health" >"$work/wrk.txt"
  stop_server
  health=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  echo "(c) reference: 64 clients, GET /health, 10 s: $health requests/s"
  for deferred_ms in 200 0; do
    DATAFORGE_DATABASE__DEFERRED_APPEND_MS=$deferred_ms start_server
    wrk -t2 -c64 -d10s --latency -s bench/single_record.lua "$base" >"$work/wrk.txt"
    stop_server
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
    errors=$(awk '/Non-2xx/ {print $5}' "$work/wrk.txt")
    echo "(c) 64 clients, single-record POST, 10 s, deferred_append_ms=$deferred_ms: $rps requests/s ($(echo "scale=2; $rps / $health" | bc) of /health), p50 $p50, p99 $p99, non-2xx: ${errors:-0}"
  done
else
  echo "(c) skipped: wrk is not installed"
fi
echo

# (d) peak RSS during one large CSV upload, streamed from disk
if [ "$big_csv_gb" != 0 ]; then
  big_rows=$((big_csv_gb * 1000000000 / 168))
  "$bin" generate --dataset well_production --rows "$big_rows" --format csv -o "$work/big.csv"
  size_mib=$(( $(stat -c %s "$work/big.csv") / 1048576 ))
  start_server
  began=$(now)
  curl -sf -X POST -T "$work/big.csv" -H "Content-Type: text/csv" "$base/v1/datasets/well_production/records" >/dev/null
  seconds=$(echo "$(now) - $began" | bc)
  echo "(d) one CSV upload of $size_mib MiB ($big_rows rows): $(echo "$big_rows / $seconds" | bc) rows/s, server peak RSS $(peak_rss_mib) MiB"
  stop_server
  rm -f "$work/big.csv"
fi
