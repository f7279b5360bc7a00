#!/usr/bin/env bash
# The PostgreSQL store against raw PostgreSQL, in one run on the machine's PostgreSQL server:
#  - ingest: one Arrow POST of ROWS generated well_production rows, against psql's COPY of the same
#    rows (CSV) into the same keyed table (made by dataforge: same columns, key and indexes);
#  - get by key and the filtered page at 16 clients (wrk), against the same SELECTs through
#    pgbench with 16 clients on the same data; GET /health as the HTTP stack's own reference;
#  - single-record POSTs at 64 clients;
#  - the aggregate (sum of oil by field, 2000-2010) over HTTP against its SQL in psql;
#  - exports (Arrow, CSV) against COPY TO of the same rows.
# Usage: bench/postgres.sh [ROWS] [BIN]   (default 1000000 rows, this tree's release build)
#   BENCH_POSTGRES=postgres://user@host:port (default postgres://postgres@127.0.0.1:5432); PORT
#   (default 8768), BENCH_DIR and DB_PREFIX (databases PREFIX_raw and PREFIX_df, default bench) keep
#   two runs apart.
# Needs: curl, wrk, psql, pgbench (/usr/lib/postgresql/15/bin). Prints Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export PATH="$PATH:/usr/lib/postgresql/15/bin"

rows=${1:-1000000}
bin=${2:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet -p dataforge
  bin="$CARGO_TARGET_DIR/release/dataforge"
fi
server=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
work=${BENCH_DIR:-/tmp/dataforge-postgres-bench}
port=${PORT:-8768}
DB_PREFIX=${DB_PREFIX:-bench}
base="http://127.0.0.1:$port"
wp="$base/v1/datasets/well_production"
rm -rf "$work" && mkdir -p "$work"
schemas="$work/schemas"
source bench/schemas.sh
bench_schemas "$schemas" 0
"$bin" generate --dataset well_production --schemas "$schemas" --rows "$rows" --format arrow -o "$work/rows.arrow" >/dev/null
for format in csv ndjson parquet; do
  "$bin" generate --dataset well_production --schemas "$schemas" --rows "$rows" --format "$format" -o "$work/rows.$format" >/dev/null
done

fresh_database() {
  psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" 2>&1 | grep -v NOTICE || true
}
server_pid=""
start_server() {
  DATAFORGE_DATABASE__ENGINE=postgres DATAFORGE_DATABASE__URL="$server/$1" DATAFORGE_DATABASE__POOL_SIZE=32 \
    "$bin" serve --schemas "$schemas" --db "$work/$1" --listen "127.0.0.1:$port" 2>>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 600); do curl -sf "$base/health" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; tail "$work/server.log" >&2; exit 1
}
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""; }
# a failed step leaves no server behind on the port
trap '[ -z "$server_pid" ] || kill -TERM "$server_pid" 2>/dev/null || true' EXIT
seconds() { local start=$1; echo "scale=2; ($(date +%s%N) - $start) / 1000000000" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }
# wrk: "requests/s p99"
load() {
  local clients=$1 script=$2 target=$3
  ROWS=$rows wrk -t2 -c"$clients" -d10s --latency ${script:+-s "$script"} "$target" >"$work/wrk.txt"
  awk '/Requests\/sec/ {rps=$2} $1 == "99%" {p99=$2} END {printf "%s %s\n", rps, p99}' "$work/wrk.txt"
}
# pgbench: transactions/s of a script at 16 clients
bench_sql() {
  pgbench -n -c 16 -j 2 -T 10 -D rows="$rows" -f "$1" "$server/${DB_PREFIX}_raw" 2>/dev/null |
    awk '/^tps/ {printf "%d\n", $3}'
}

echo "## PostgreSQL store against raw PostgreSQL: $rows well_production rows, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo

# raw: the keyed table as dataforge makes it, then COPY
fresh_database ${DB_PREFIX}_raw
start_server ${DB_PREFIX}_raw
stop_server
start=$(date +%s%N)
psql "$server/${DB_PREFIX}_raw" -qc "\\copy well_production FROM '$work/rows.csv' WITH (FORMAT csv, HEADER true)"
raw_copy_s=$(seconds "$start")
psql "$server/${DB_PREFIX}_raw" -qc "ANALYZE well_production"

echo "| ingest | seconds | rows/s | ratio to raw COPY |"
echo "| --- | ---: | ---: | ---: |"
echo "| psql COPY (CSV) into the keyed table | $raw_copy_s | $(echo "$rows / $raw_copy_s" | bc) | 1.00 |"
# one POST per format into a fresh database; Arrow last, into the database the reads then use
for format in csv ndjson parquet arrow; do
  case $format in
    csv) type=text/csv ;;
    ndjson) type=application/x-ndjson ;;
    parquet) type=application/vnd.apache.parquet ;;
    arrow) type=application/vnd.apache.arrow.stream ;;
  esac
  fresh_database ${DB_PREFIX}_df
  start_server ${DB_PREFIX}_df
  start=$(date +%s%N)
  curl -sf -o /dev/null -X POST "$wp/records" -H "Content-Type: $type" -T "$work/rows.$format"
  ingest_s=$(seconds "$start")
  echo "| POST $format through dataforge | $ingest_s | $(echo "$rows / $ingest_s" | bc) | $(ratio "$raw_copy_s" "$ingest_s") |"
  [ "$format" = arrow ] || stop_server
done
echo

cat >"$work/get.sql" <<'SQL'
\set i random(0, :rows - 1)
\set well 100000 + :i / 924
\set field 1 + (:well * 7919) % 2000
\set month :i % 924
SELECT * FROM well_production WHERE field_code = :field AND well_code = :well AND production_period = make_timestamp(1947 + :month / 12, :month % 12 + 1, 1, 0, 0, 0);
SQL
cat >"$work/page.sql" <<'SQL'
\set field random(1, 2000)
SELECT * FROM well_production WHERE field_code = :field AND production_period >= '2000-01-01' ORDER BY production_period LIMIT 100;
SQL
read -r health_rps _ < <(load 16 "" "$base/health")
read -r get_rps get_p99 < <(load 16 bench/get_by_key.lua "$base")
raw_get=$(bench_sql "$work/get.sql")
read -r page_rps page_p99 < <(load 16 bench/filtered_page.lua "$base")
raw_page=$(bench_sql "$work/page.sql")
read -r post_rps post_p99 < <(load 64 bench/single_record.lua "$base")
echo "| read or write | dataforge requests/s (p99) | raw pgbench transactions/s | ratio |"
echo "| --- | ---: | ---: | ---: |"
echo "| GET /health (the HTTP stack alone), 16 clients | $health_rps | | |"
echo "| get by key, 16 clients | $get_rps ($get_p99) | $raw_get | $(ratio "$get_rps" "$raw_get") |"
echo "| filtered page (one field from 2000, by period, 100 rows), 16 clients | $page_rps ($page_p99) | $raw_page | $(ratio "$page_rps" "$raw_page") |"
echo "| single-record POST, 64 clients | $post_rps ($post_p99) | | |"
echo

aggregate="$wp/aggregate?group_by=field_code&metrics=sum(oil_production_kbd)&production_period=between.(2000-01-01,2010-12-31)&limit=10000"
curl -sf -o /dev/null "$aggregate"
http_aggregate_s=$(for _ in 1 2 3; do curl -sf -o /dev/null -w '%{time_total}\n' "$aggregate"; done | sort -n | sed -n 2p)
aggregate_sql="SELECT field_code, sum(oil_production_kbd) FROM well_production WHERE production_period BETWEEN '2000-01-01' AND '2010-12-31' GROUP BY 1 ORDER BY 1"
raw_aggregate_s=$(for _ in 1 2 3; do
  start=$(date +%s%N); psql "$server/${DB_PREFIX}_raw" -qc "$aggregate_sql" >/dev/null; seconds "$start"
done | sort -n | sed -n 2p)
echo "Aggregate sum(oil_production_kbd) by field_code, 2000-2010: HTTP $http_aggregate_s s, psql $raw_aggregate_s s (medians of 3)."
echo
echo "| export | seconds | raw COPY TO seconds | ratio |"
echo "| --- | ---: | ---: | ---: |"
start=$(date +%s%N)
psql "$server/${DB_PREFIX}_raw" -qc "\\copy (SELECT * FROM well_production ORDER BY 1, 2, 3) TO '/dev/null' WITH (FORMAT csv, HEADER true)"
raw_csv_s=$(seconds "$start")
start=$(date +%s%N)
psql "$server/${DB_PREFIX}_raw" -qc "\\copy (SELECT * FROM well_production ORDER BY 1, 2, 3) TO '/dev/null' WITH (FORMAT binary)"
raw_binary_s=$(seconds "$start")
for format in csv arrow; do
  start=$(date +%s%N)
  curl -sf -o /dev/null "$wp/records?format=$format"
  export_s=$(seconds "$start")
  raw=$raw_csv_s; [ "$format" = arrow ] && raw=$raw_binary_s
  echo "| $format | $export_s | $raw | $(ratio "$raw" "$export_s") |"
done
stop_server
