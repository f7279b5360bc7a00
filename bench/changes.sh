#!/usr/bin/env bash
# Change benchmark: loads ROWS generated well_production rows, then measures in one run:
#  - GET /health at 64 clients (what the HTTP stack alone does: the reference for requests/s);
#  - PATCH by key (oil_production_kbd, random existing keys) and DELETE by key (each request a
#    distinct existing key from 1990 on), 64 clients, against in-process DuckDB single-row
#    UPDATE/DELETE statements by the composite key (one connection, autocommit);
#  - a bulk on_conflict=merge of 1,000,000 Arrow rows over stored keys (all columns, and the key
#    plus oil_production_kbd only) against the same file with on_conflict=upsert, each on a fresh
#    server process for its peak RSS;
#  - the retention delete `DELETE .../records?production_period=lt.1990-01-01` of the whole table
#    (516 of every well's 924 generated months, 56% of the rows; the deletes by key took only later
#    months, so none of these) on a fresh server process, against the same DELETE in-process on a
#    table of the same layout loaded from the same Arrow files.
# The server runs the phases in this order so that the merge and upsert find every key stored and
# the retention delete finds every row before 1990.
#
# Usage: bench/changes.sh [ROWS]     (default 10000000)
# Needs: curl, wrk, bc. Prints a Markdown report.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rows=${1:-10000000}
work=${BENCH_DIR:-/tmp/dataforge-changes-bench}
port=8767
base="http://127.0.0.1:$port"
wp="$base/v1/datasets/well_production"
threads=2
clients=64
merge_rows=$((rows < 1000000 ? rows : 1000000))
server_memory_limit=${DATAFORGE_DATABASE__MEMORY_LIMIT:-256MiB}

cargo build --release --quiet
cargo build --release --quiet -p dataforge-duckdb --example raw_changes
bin="$CARGO_TARGET_DIR/release/dataforge"
raw="$CARGO_TARGET_DIR/release/examples/raw_changes"
rm -rf "$work" && mkdir -p "$work"
db="$work/bench.duckdb"
schemas="$work/schemas"
source bench/schemas.sh
bench_schemas "$schemas" "${INDEX:-0}"

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
ratio() { printf '%.3f' "$(echo "scale=6; $1 / $2" | bc)"; }
count() { curl -sf "$wp/count" | sed 's/.*"count":\([0-9]*\).*/\1/'; }
# wrk run: prints "requests/s p50 p99 non2xx socket_errors" (a 30 s timeout rather than wrk's 2 s,
# so slow answers count in the latencies instead of as socket errors)
load() {
  local script=$1 target=$2
  ROWS=$rows THREADS=$threads wrk -t$threads -c$clients -d10s --timeout 30s --latency ${script:+-s "$script"} "$target" >"$work/wrk.txt"
  awk '/Requests\/sec/ {rps=$2} $1 == "50%" {p50=$2} $1 == "99%" {p99=$2} /Non-2xx/ {bad=$5}
       /Socket errors/ {gsub(",", ""); socket=$4 + $6 + $8 + $10}
       END {printf "%s %s %s %s %s\n", rps, p50, p99, bad + 0, socket + 0}' "$work/wrk.txt"
}
# the server's own latency (log line) of the last request matching METHOD and PATH, in seconds
server_latency_s() {
  grep "method=$1 path=\"$2\" status=" "$work/server.log" | tail -1 |
    sed 's/.*latency_us=\([0-9]*\).*/\1/' | xargs -I{} echo "scale=6; {} / 1000000" | bc | xargs printf '%.2f'
}

echo "## Change benchmark: $rows rows, $(nproc) cores, $(date -u +%Y-%m-%d)$([ "${INDEX:-0}" = 1 ] && echo ", index declared")"
echo

# load: generated rows through the same use case as HTTP (`dataforge import`), files of 1,000,000
# rows, each one write; the in-process reference loads the same files
mkdir -p "$work/load"
for ((start = 0; start < rows; start += 1000000)); do
  n=$((rows - start < 1000000 ? rows - start : 1000000))
  "$bin" generate --dataset well_production --start "$start" --rows "$n" --format arrow -o "$work/load/$(printf '%012d' "$start").arrow"
done
began=$(now)
"$bin" import --schemas "$schemas" --dataset well_production --db "$db" "$work"/load/*.arrow >"$work/import.log" 2>&1
echo "Loaded $rows rows with \`dataforge import\` in $(echo "$(now) - $began" | bc | xargs printf '%.0f') s."

# in-process reference (its own database file; nothing else runs meanwhile), with the server's
# memory_limit
"$raw" "$work" "$server_memory_limit" "$work"/load/*.arrow >"$work/raw.txt"
read -r _ _ raw_update_rate < <(grep raw_point_update "$work/raw.txt")
read -r _ _ raw_delete_rate < <(grep raw_point_delete "$work/raw.txt")
read -r _ raw_retention_rows raw_retention_s < <(grep raw_retention "$work/raw.txt")
# the merge bodies: the first rows of the same generation (every key stored), all columns and the
# key plus oil_production_kbd
merge_file="$work/load/$(printf '%012d' 0).arrow"
"$raw" project "$work/merge_partial.arrow" "$merge_file" field_code well_code production_period oil_production_kbd
echo "Disk: DuckDB file $(du -sm "$db" | cut -f1) MiB, key index (keys and records) $(du -sm "$db.keys" | cut -f1) MiB; merge bodies $(( $(stat -c %s "$merge_file") / 1048576 )) MiB (all columns), $(( $(stat -c %s "$work/merge_partial.arrow") / 1048576 )) MiB (4 columns)."
echo

# 1. by key, 64 clients; the reference /health on the same server
start_server
read -r health_rps health_p50 health_p99 _ health_socket < <(load "" "$base/health")
read -r patch_rps patch_p50 patch_p99 patch_bad patch_socket < <(load bench/patch_by_key.lua "$base")
patch_rss=$(peak_rss_mib)
stop_server
echo "| $clients clients, 10 s | requests/s | p50 | p99 | ratio to /health | non-2xx | socket errors | server peak RSS (MiB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
echo "| GET /health (reference) | $health_rps | $health_p50 | $health_p99 | 1.00 | 0 | $health_socket | |"
echo "| PATCH by key (oil_production_kbd), random keys | $patch_rps | $patch_p50 | $patch_p99 | $(ratio "$patch_rps" "$health_rps") | $patch_bad | $patch_socket | $patch_rss |"
# (DELETE by key is run after the merge and upsert below, so that those find every key stored)

# 3. bulk merge and upsert over stored keys, each on a fresh server
bulk() {
  local file=$1 mode=$2
  start_server
  local began seconds status
  began=$(now)
  status=$(curl -s -o "$work/bulk.json" -w '%{http_code}' -X POST --data-binary "@$file" \
    -H "Content-Type: application/vnd.apache.arrow.stream" "$wp/records?on_conflict=$mode")
  seconds=$(echo "$(now) - $began" | bc)
  [ "$status" = 200 ] || [ "$status" = 201 ] || { echo "on_conflict=$mode answered $status: $(head -c 500 "$work/bulk.json")" >&2; }
  local rss
  rss=$(peak_rss_mib)
  # the line is printed once the server has exited: the caller starts the next one when it reads it
  stop_server
  echo "$(echo "$merge_rows / $seconds" | bc) $(printf '%.2f' "$seconds") $rss $status"
}
read -r merge_rate merge_s merge_rss merge_status < <(bulk "$merge_file" merge)
read -r partial_rate partial_s partial_rss partial_status < <(bulk "$work/merge_partial.arrow" merge)
read -r upsert_rate upsert_s upsert_rss upsert_status < <(bulk "$merge_file" upsert)

# DELETE by key, 64 clients, each request a distinct stored key from 1990 on
start_server
read -r delete_rps delete_p50 delete_p99 delete_bad delete_socket < <(load bench/delete_by_key.lua "$base")
delete_rss=$(peak_rss_mib)
stop_server
echo "| DELETE by key, distinct keys from 1990 on | $delete_rps | $delete_p50 | $delete_p99 | $(ratio "$delete_rps" "$health_rps") | $delete_bad | $delete_socket | $delete_rss |"
echo "| in-process DuckDB single-row UPDATE by key, 10,000 statements (one client, autocommit) | $raw_update_rate | | | | | | |"
echo "| in-process DuckDB single-row DELETE by key, 10,000 statements (one client, autocommit) | $raw_delete_rate | | | | | | |"
echo

echo "| bulk write over stored keys, Arrow, one request | rows | seconds | rows/s | ratio to upsert | HTTP status | server peak RSS (MiB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
echo "| on_conflict=upsert (reference) | $merge_rows | $upsert_s | $upsert_rate | 1.00 | $upsert_status | $upsert_rss |"
echo "| on_conflict=merge, all columns | $merge_rows | $merge_s | $merge_rate | $(ratio "$merge_rate" "$upsert_rate") | $merge_status | $merge_rss |"
echo "| on_conflict=merge, key + oil_production_kbd | $merge_rows | $partial_s | $partial_rate | $(ratio "$partial_rate" "$upsert_rate") | $partial_status | $partial_rss |"
echo

# 2. retention, on a fresh server
start_server
before=$(count)
retention_path="/v1/datasets/well_production/records"
began=$(now)
answer=$(curl -s -X DELETE "$wp/records?production_period=lt.1990-01-01")
retention_s=$(echo "$(now) - $began" | bc | xargs printf '%.2f')
retention_rss=$(peak_rss_mib)
retention_server_s=$(server_latency_s DELETE "$retention_path")
deleted=$(echo "$answer" | sed -n 's/.*"deleted":\([0-9]*\).*/\1/p')
after=$(count)
# the server logs the DuckDB transaction and the key index's part of a change by filter apart
parts=$(grep 'deleted records by filter' "$work/server.log" | tail -1)
retention_duckdb_s=$(echo "$parts" | sed 's/.*duckdb_ms=\([0-9]*\).*/\1/' | xargs -I{} echo "scale=3; {} / 1000" | bc | xargs printf '%.2f')
retention_index_s=$(echo "$parts" | sed 's/.*key_index_ms=\([0-9]*\).*/\1/' | xargs -I{} echo "scale=3; {} / 1000" | bc | xargs printf '%.2f')
stop_server
echo "| retention delete, production_period < 1990-01-01 | rows deleted | seconds | ratio to in-process | server peak RSS (MiB) |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| in-process DuckDB \`DELETE ... WHERE production_period < '1990-01-01'\` (reference, memory_limit $server_memory_limit) | $raw_retention_rows | $raw_retention_s | 1.00 | |"
echo "| dataforge HTTP \`DELETE .../records?production_period=lt.1990-01-01\` (server's own latency $retention_server_s s) | ${deleted:-"failed: $answer"} | $retention_s | $(ratio "$retention_s" "$raw_retention_s") | $retention_rss |"
echo
echo "The server's parts of the retention delete: DuckDB (select the keys, DELETE, commit) $retention_duckdb_s s, key index (remove $deleted keys) $retention_index_s s; DuckDB's part against the in-process DELETE: $(ratio "$retention_duckdb_s" "$raw_retention_s")."
echo
echo "Rows: $before before the retention delete, $after after (expected $((before - ${deleted:-0})))."

# 4. schema changes at start on the table left: a new field with a default (appended in place; the
# key index is rebuilt, its records being encoded by position), then a declared index (built from
# the records): seconds from start to listening, and peak RSS
timed_start() {
  local began
  began=$(now)
  start_server
  local seconds rss
  seconds=$(echo "$(now) - $began" | bc | xargs printf '%.1f')
  rss=$(peak_rss_mib)
  # the line is printed once the server has exited: the caller starts the next one when it reads it
  stop_server >/dev/null 2>&1
  echo "$seconds $rss"
}
printf '\n[[datasets.fields]]\nname = "basin"\ntype = "string"\ndefault = "Campos"\n' >>"$schemas/well_production.toml"
read -r field_s field_rss < <(timed_start)
sed -i 's/^cluster_by = /indexes = [["field_code", "production_period"]]\ncluster_by = /' "$schemas/well_production.toml"
read -r index_s index_rss < <(timed_start)
read -r plain_s plain_rss < <(timed_start)
echo
echo "| start on the $after-row table | seconds to listening | server peak RSS (MiB) |"
echo "| --- | ---: | ---: |"
echo "| no change (reference) | $plain_s | $plain_rss |"
echo "| a new optional field with a default (and the key index rebuilt) | $field_s | $field_rss |"
echo "| a declared index on (field_code, production_period) | $index_s | $index_rss |"
errors=$(grep -cE ' (ERROR|WARN) ' "$work/server.log" || true)
server_errors=$(grep -c 'status=5[0-9][0-9]' "$work/server.log" || true)
echo "Server log: $errors ERROR/WARN lines, $server_errors 5xx answers."
rm -rf "$work/load" "$work/merge_partial.arrow"
