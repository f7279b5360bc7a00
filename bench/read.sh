#!/usr/bin/env bash
# Read benchmark: loads ROWS generated well_production rows, then measures in one run:
#  - GET /health at 16 clients (what the HTTP stack alone does: the reference for requests/s);
#  - get by key, random existing keys, 16 clients;
#  - a filtered page (one field_code, periods from 2000, ordered by period, 100 rows), 16 clients;
#  - the aggregate sum(oil) by field_code over 2000-2010, against the same SQL in-process;
#  - a full export in each format against an in-process DuckDB Arrow scan, with the server's peak
#    RSS (for 1,000,000 rows and for all of them, each on a fresh server process);
#  - get-by-key p99 while 1,000,000 more rows are ingested.
#
# Usage: bench/read.sh [ROWS]     (default 10000000)
# Needs: curl, wrk, bc. Prints a Markdown report.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rows=${1:-10000000}
work=${BENCH_DIR:-/tmp/dataforge-read-bench}
port=8766
base="http://127.0.0.1:$port"
wp="$base/v1/datasets/well_production"

cargo build --release --quiet
cargo build --release --quiet -p dataforge-duckdb --example raw_read
bin="$CARGO_TARGET_DIR/release/dataforge"
rm -rf "$work" && mkdir -p "$work"
db="$work/bench.duckdb"
# The shipped schemas, with the index a filtered page of one field by period is read from declared
# on well_production (INDEX=0 leaves it out; docs/read-path.md has what it costs writes).
schemas="$work/schemas"
source bench/schemas.sh
bench_schemas "$schemas" "${INDEX:-1}"

server_pid=""
start_server() {
  "$bin" serve --schemas "$schemas" --db "$db" --listen "127.0.0.1:$port" 2>>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 600); do curl -sf "$base/health" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; tail "$work/server.log" >&2; exit 1
}
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
now() { date +%s.%N; }
# wrk run: prints "requests/s p50 p99 non2xx"
load() {
  local script=$1 target=$2
  ROWS=$rows wrk -t2 -c16 -d10s --latency ${script:+-s "$script"} "$target" >"$work/wrk.txt"
  awk '/Requests\/sec/ {rps=$2} $1 == "50%" {p50=$2} $1 == "99%" {p99=$2} /Non-2xx/ {bad=$5}
       END {printf "%s %s %s %s\n", rps, p50, p99, bad + 0}' "$work/wrk.txt"
}

echo "## Read benchmark: $rows rows, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo

# load: generated rows through the same use case as HTTP (`dataforge import`)
# (files of 1,000,000 rows, each one write)
mkdir -p "$work/load"
for ((start = 0; start < rows; start += 1000000)); do
  n=$((rows - start < 1000000 ? rows - start : 1000000))
  "$bin" generate --dataset well_production --start "$start" --rows "$n" --format arrow -o "$work/load/$(printf '%012d' "$start").arrow"
done
began=$(now)
"$bin" import --schemas "$schemas" --dataset well_production --db "$db" "$work"/load/*.arrow >"$work/import.log" 2>&1
echo "Loaded $rows rows with \`dataforge import\` in $(echo "$(now) - $began" | bc | xargs printf '%.0f') s."
if [ "${CLUSTER:-1}" = 1 ]; then
  began=$(now)
  "$bin" cluster --schemas "$schemas" --dataset well_production --db "$db" >/dev/null 2>>"$work/import.log"
  echo "Clustered by (field_code, production_period) with \`dataforge cluster\` in $(echo "$(now) - $began" | bc | xargs printf '%.1f') s (CLUSTER=0 skips it)."
fi
rm -rf "$work/load"
echo "Disk: DuckDB file $(du -sm "$db" | cut -f1) MiB, key index (keys and records) $(du -sm "$db.keys" | cut -f1) MiB."
echo

# in-process references (the server is stopped: DuckDB allows one process per file)
"$CARGO_TARGET_DIR/release/examples/raw_read" "$db" >"$work/raw.txt"
read -r _ _ _ raw_scan_rate < <(grep raw_scan "$work/raw.txt")
read -r _ raw_aggregate_s < <(grep raw_aggregate "$work/raw.txt")
# the same aggregate in process with the server's DuckDB memory_limit (like for like; the figure
# above lets DuckDB cache up to 1 GiB of the table)
server_memory_limit=${DATAFORGE_DATABASE__MEMORY_LIMIT:-256MiB}
read -r _ raw_aggregate_same_s < <("$CARGO_TARGET_DIR/release/examples/raw_read" "$db" "$server_memory_limit" | grep raw_aggregate)
read -r _ raw_point_rate < <(grep raw_point_select "$work/raw.txt")

start_server
read -r health_rps health_p50 health_p99 _ < <(load "" "$base/health")
read -r key_rps key_p50 key_p99 key_bad < <(load bench/get_by_key.lua "$base")
read -r page_rps page_p50 page_p99 page_bad < <(load bench/filtered_page.lua "$base")
read -r sql_rps sql_p50 sql_p99 sql_bad < <(EXTRA='&oil_production_kbd=gte.0' load bench/filtered_page.lua "$base")
ratio() { echo "scale=2; $1 / $2" | bc; }
echo "| 16 clients, 10 s | requests/s | p50 | p99 | ratio to /health | non-2xx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
echo "| GET /health (reference) | $health_rps | $health_p50 | $health_p99 | 1.00 | 0 |"
echo "| get by key, random keys | $key_rps | $key_p50 | $key_p99 | $(ratio "$key_rps" "$health_rps") | $key_bad |"
echo "| filtered page (field_code, period >= 2000, 100 rows), from the declared index | $page_rps | $page_p50 | $page_p99 | $(ratio "$page_rps" "$health_rps") | $page_bad |"
echo "| the same page from DuckDB (plus oil_production_kbd >= 0, outside the index) | $sql_rps | $sql_p50 | $sql_p99 | $(ratio "$sql_rps" "$health_rps") | $sql_bad |"
echo "| in-process DuckDB point SELECT by key (one client) | $raw_point_rate | | | | |"
echo

# the aggregate, median of 5 after one warm-up run (the in-process figure is a median of 5 warm runs)
aggregate="$wp/aggregate?group_by=field_code&metrics=sum(oil_production_kbd)&production_period=between.(2000-01-01,2010-12-31)&limit=10000"
curl -sf -o /dev/null "$aggregate"
times=()
for _ in 1 2 3 4 5; do
  times+=("$(curl -sf -o /dev/null -w '%{time_total}' "$aggregate")")
done
http_aggregate_s=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "Aggregate sum(oil_production_kbd) by field_code, 2000-2010: HTTP $http_aggregate_s s; in-process with the server's memory_limit ($server_memory_limit) $raw_aggregate_same_s s, ratio $(ratio "$http_aggregate_s" "$raw_aggregate_same_s"); in-process with 1 GiB $raw_aggregate_s s, ratio $(ratio "$http_aggregate_s" "$raw_aggregate_s") (medians of 5)."
echo
stop_server

# exports: each on a fresh server so its peak RSS is the export's own
echo "| export (curl to /dev/null) | rows | rows/s | ratio to in-process Arrow scan | MiB sent | server peak RSS (MiB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
echo "| in-process DuckDB Arrow scan (reference) | $rows | $raw_scan_rate | 1.00 | | |"
for format in arrow parquet csv ndjson; do
  for limit in 1000000 "$rows"; do
    start_server
    began=$(now)
    bytes=$(curl -sf -o /dev/null -w '%{size_download}' "$wp/records?format=$format&limit=$limit")
    seconds=$(echo "$(now) - $began" | bc)
    rate=$(echo "$limit / $seconds" | bc)
    echo "| $format | $limit | $rate | $(ratio "$rate" "$raw_scan_rate") | $((bytes / 1048576)) | $(peak_rss_mib) |"
    stop_server
  done
done
echo

# point reads while 1,000,000 more rows are ingested (100,000-row CSV requests)
mkdir -p "$work/chunks"
for ((start = rows; start < rows + 1000000; start += 100000)); do
  "$bin" generate --dataset well_production --start "$start" --rows 100000 --format csv -o "$work/chunks/$start.csv"
done
start_server
(
  for file in "$work"/chunks/*.csv; do
    curl -sf -X POST --data-binary "@$file" -H "Content-Type: text/csv" "$wp/records" >/dev/null
  done
) &
ingest_pid=$!
read -r busy_rps busy_p50 busy_p99 busy_bad < <(load bench/get_by_key.lua "$base")
wait "$ingest_pid"
echo "Get by key during a 1,000,000-row ingest: $busy_rps requests/s, p50 $busy_p50, p99 $busy_p99, non-2xx $busy_bad."
count=$(curl -sf "$wp/count" | sed 's/.*"count":\([0-9]*\).*/\1/')
echo "Rows after the ingest: $count (expected $((rows + 1000000)))."
stop_server
rm -rf "$work/chunks"
