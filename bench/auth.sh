#!/usr/bin/env bash
# What access control costs: GET by key and single-record POST, 64 clients, on a server that
# requires a credential (an API key sent with every request) against the same server without auth,
# alternating ROUNDS times on one database of ROWS generated rows; /health of the same two as the
# reference of the HTTP stack alone.
#
# Usage: bench/auth.sh [ROWS] [ROUNDS]     (defaults 1000000, 3)
# Needs: curl, wrk (Debian: apt-get install wrk), bc. Prints a Markdown report.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rows=${1:-1000000}
rounds=${2:-3}
work=${BENCH_DIR:-/tmp/dataforge-auth-bench}
port=8768
base="http://127.0.0.1:$port"
clients=64

cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/dataforge"
rm -rf "$work" && mkdir -p "$work"
db="$work/bench.duckdb"
"$bin" generate --dataset well_production --rows "$rows" --format arrow -o "$work/rows.arrow" >/dev/null
"$bin" import --schemas schemas --dataset well_production --db "$db" "$work/rows.arrow" >/dev/null 2>&1
key=$("$bin" keys --db "$db" create --name bench --grant '*:read,write' 2>/dev/null | tail -1)

server_pid=""
start_server() { # $1: true|false (auth.required)
  DATAFORGE_AUTH__REQUIRED=$1 "$bin" serve --schemas schemas --db "$db" --listen "127.0.0.1:$port" 2>>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 600); do curl -sf "$base/health" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
# requests/s of one wrk run, and its non-2xx count
load() { # $1: script or "", $2: path, $3: auth header or ""
  ROWS=$rows RUN=$run wrk -t2 -c$clients -d8s ${1:+-s "$1"} ${3:+-H "$3"} "$base$2" >"$work/wrk.txt"
  awk '/Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$5} END {printf "%s %s\n", rps, bad + 0}' "$work/wrk.txt"
}
ratio() { printf '%.3f' "$(echo "scale=6; $1 / $2" | bc)"; }

echo "## Auth cost: $rows rows, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| round | endpoint | without auth (req/s) | with a key (req/s) | ratio |"
echo "| --- | --- | --- | --- | --- |"
run=0
for round in $(seq 1 "$rounds"); do
  for endpoint in health get post; do
    case $endpoint in
      health) script=""; path=/health ;;
      get) script=bench/get_by_key.lua; path=/ ;;
      post) script=bench/single_record.lua; path=/ ;;
    esac
    start_server false
    run=$((run + 1)); read -r open bad_open < <(load "$script" "$path" "")
    stop_server
    start_server true
    run=$((run + 1)); read -r keyed bad_keyed < <(load "$script" "$path" "Authorization: Bearer $key")
    stop_server
    [ "$bad_open" = 0 ] && [ "$bad_keyed" = 0 ] || echo "non-2xx answers: $bad_open without auth, $bad_keyed with a key" >&2
    echo "| $round | $endpoint | $open | $keyed | $(ratio "$keyed" "$open") |"
  done
done
