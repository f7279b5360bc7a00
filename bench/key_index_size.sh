#!/usr/bin/env bash
# Key index size benchmark: for each dataforge binary given (default: this tree's release build),
# in turn and ROUNDS times over (alternating, so that a drift of the machine shows), loads ROWS
# generated well_production rows with `dataforge import` into a new database, then reports:
#  - the DuckDB file's size and the key index's (`du` of `<db>.keys/`), in MiB and bytes a record;
#  - GET /health at 16 clients (the HTTP stack alone: the reference for requests/s);
#  - get by key, random existing keys, 16 clients: requests/s and p99;
#  - single-record POSTs, 16 clients: requests/s and p99;
#  - the key index's size again once it is rebuilt from the table (its directory deleted, a start).
#
# Usage: bench/key_index_size.sh [ROWS] [BIN...]   (default 1000000 rows)
#   INDEX=1 declares on well_production the index on (field_code, production_period) (default 0).
#   ROUNDS=N runs every binary N times (default 1). PORT (default 8767), BENCH_DIR (default
#   /tmp/dataforge-key-index-bench) keep two runs apart.
# Needs: curl, wrk, bc. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rows=${1:-1000000}
shift || true
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  cargo build --release --quiet -p dataforge
  bins=("$CARGO_TARGET_DIR/release/dataforge")
fi
work=${BENCH_DIR:-/tmp/dataforge-key-index-bench}
port=${PORT:-8767}
base="http://127.0.0.1:$port"
rm -rf "$work" && mkdir -p "$work"
schemas="$work/schemas"
source bench/schemas.sh
bench_schemas "$schemas" "${INDEX:-0}"
data="$work/rows.arrow"
"${bins[0]}" generate --dataset well_production --schemas "$schemas" --rows "$rows" --format arrow -o "$data" >/dev/null

server_pid=""
start_server() {
  local bin=$1 db=$2
  "$bin" serve --schemas "$schemas" --db "$db" --listen "127.0.0.1:$port" 2>>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 1200); do curl -sf "$base/health" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; tail "$work/server.log" >&2; exit 1
}
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
# wrk run: prints "requests/s p99 non2xx"
load() {
  local script=$1 target=$2
  ROWS=$rows RUN=${RUN:-0} wrk -t2 -c16 -d10s --latency ${script:+-s "$script"} "$target" >"$work/wrk.txt"
  awk '/Requests\/sec/ {rps=$2} $1 == "99%" {p99=$2} /Non-2xx/ {bad=$5}
       END {printf "%s %s %s\n", rps, p99, bad + 0}' "$work/wrk.txt"
}
mib() { du -sm "$1" | cut -f1; }
per_record() { echo "$(du -sb "$1" | cut -f1) / $rows" | bc; }

echo "## Key index size: $rows well_production rows, declared index ${INDEX:-0}, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| binary | DuckDB MiB (B/record) | key index MiB (B/record) | /health req/s | get by key req/s, p99 | single POST req/s, p99 | key index rebuilt MiB |"
echo "|---|---|---|---|---|---|---|"
for ((round = 1; round <= ${ROUNDS:-1}; round++)); do
  for bin in "${bins[@]}"; do
    db="$work/bench.duckdb"
    rm -rf "$db" "$db".*
    "$bin" import --schemas "$schemas" --dataset well_production --db "$db" "$data" >"$work/import.log" 2>&1
    duck="$(mib "$db") ($(per_record "$db"))"
    keys="$(mib "$db.keys") ($(per_record "$db.keys"))"
    start_server "$bin" "$db"
    read -r health_rps _ _ < <(load "" "$base/health")
    read -r key_rps key_p99 key_bad < <(load bench/get_by_key.lua "$base")
    read -r post_rps post_p99 post_bad < <(RUN=$round load bench/single_record.lua "$base")
    stop_server
    rm -rf "$db.keys"
    start_server "$bin" "$db"
    stop_server
    rebuilt=$(mib "$db.keys")
    [ "$key_bad$post_bad" = 00 ] || echo "non-2xx answers: get $key_bad, post $post_bad" >&2
    echo "| $bin | $duck | $keys | $health_rps | $key_rps, $key_p99 | $post_rps, $post_p99 | $rebuilt |"
  done
done
