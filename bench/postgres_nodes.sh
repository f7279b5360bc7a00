#!/usr/bin/env bash
# Scale-out figures of the PostgreSQL store: reads by key per second with one node on the primary
# alone, two nodes on the primary, and two nodes reading from a streaming replica, all on a
# throwaway primary and replica of their own (scripts/pg-cluster, fsync off). On a machine with few
# cores every process competes for them: the figures show overheads, not speed-ups.
# Usage: bench/postgres_nodes.sh [ROWS] [BIN]   (default 200000 rows, this tree's release build)
# Needs: curl, wrk, psql, root (the servers run as the postgres user). Prints Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rows=${1:-200000}
bin=${2:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet -p dataforge
  bin="$CARGO_TARGET_DIR/release/dataforge"
fi
work=$(mktemp -d /tmp/dataforge-nodes-bench.XXXXXX)
chmod 755 "$work"
cluster="$work/cluster"
mkdir -p "$cluster"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/pg-cluster stop-all "$cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(scripts/pg-cluster start "$cluster" | grep '_PORT=')"
primary="postgres://postgres@127.0.0.1:$PRIMARY_PORT"
replica="postgres://postgres@127.0.0.1:$REPLICA_PORT"
psql "$primary/postgres" -qc "CREATE DATABASE bench"
schemas="$work/schemas"
source bench/schemas.sh
bench_schemas "$schemas" 0
"$bin" generate --dataset well_production --schemas "$schemas" --rows "$rows" --format arrow -o "$work/rows.arrow" >/dev/null

# start_node PORT [REPLICA_URLS]
start_node() {
  local port=$1 replicas=${2:-[]}
  DATAFORGE_DATABASE__ENGINE=postgres DATAFORGE_DATABASE__URL="$primary/bench" \
    DATAFORGE_DATABASE__REPLICA_URLS="$replicas" DATAFORGE_DATABASE__POOL_SIZE=16 \
    "$bin" serve --schemas "$schemas" --db "$work/node$port" --listen "127.0.0.1:$port" 2>>"$work/nodes.log" &
  pids+=($!)
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && return; sleep 0.1; done
  echo "node on $port did not start" >&2; tail "$work/nodes.log" >&2; exit 1
}
stop_nodes() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}
# reads by key for 10 s, CLIENTS connections on each node given; prints the sum of requests/s
reads() {
  local clients=$1
  shift
  local outs=() runs=()
  for port in "$@"; do
    ROWS=$rows wrk -t1 -c"$clients" -d10s -s bench/get_by_key.lua "http://127.0.0.1:$port" >"$work/wrk-$port.txt" &
    runs+=($!)
    outs+=("$work/wrk-$port.txt")
  done
  wait "${runs[@]}"
  awk '/Requests\/sec/ {sum += $2} END {printf "%d\n", sum}' "${outs[@]}"
}

start_node 8781
curl -sf -o /dev/null -X POST "http://127.0.0.1:8781/v1/datasets/well_production/records" \
  -H 'Content-Type: application/vnd.apache.arrow.stream' --data-binary @"$work/rows.arrow"
one=$(reads 16 8781)
start_node 8782
two=$(reads 8 8781 8782)
stop_nodes
start_node 8781 "[\"$replica/bench\"]"
start_node 8782 "[\"$replica/bench\"]"
for _ in $(seq 1 100); do
  curl -s http://127.0.0.1:8781/health/ready | grep -q '"ok"' && curl -s http://127.0.0.1:8782/health/ready | grep -q '"ok"' && break
  sleep 0.2
done
replicated=$(reads 8 8781 8782)
served=$(curl -s -D - -o /dev/null "http://127.0.0.1:8781/v1/datasets/well_production/count" | tr -d '\r' | awk -F': ' 'tolower($1) == "dataforge-served-by" {print $2}')
echo "## Reads by key, $rows rows, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| setup | requests/s (16 clients in all) |"
echo "| --- | ---: |"
echo "| one node, the primary alone | $one |"
echo "| two nodes, the primary alone | $two |"
echo "| two nodes reading from the replica (a read served by: $served) | $replicated |"
