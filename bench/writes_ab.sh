#!/usr/bin/env bash
# Two release binaries, alternating (A B, then B A), each round on a fresh database: GET /health (the
# reference), single-record POSTs at 16 and 64 clients (req/s and p99), and one 1M-row Arrow POST.
# For before/after comparisons of the write path; needs wrk, curl, bc. A binary outside the target
# directory needs libduckdb.so beside it (its run path).
#
#   bench/writes_ab.sh BIN_A BIN_B [ROUNDS]      (default 3 rounds of each order)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
a=$1; b=$2; rounds=${3:-3}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$a" generate --dataset well_production --rows 1000000 --format arrow -o "$work/rows.arrow" --schemas "$here/schemas" >/dev/null

one() { # binary label round
  local db; db=$(mktemp -d -p "$work"); local port=$((20000 + RANDOM % 20000))
  "$1" serve --listen 127.0.0.1:$port --db "$db/db.duckdb" --schemas "$here/schemas" 2>"$db/log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "localhost:$port/health" >/dev/null && break; sleep 0.1; done
  local base="http://127.0.0.1:$port" h p16 p64 t0 t1
  h=$(wrk -t2 -c16 -d8s "$base/health" | awk '/Requests\/sec/{print $2}')
  p16=$(cd "$here" && RUN=$(($3 * 2)) wrk -t2 -c16 -d8s --latency -s bench/single_record.lua "$base" | awk '/Requests\/sec/{r=$2} / 99%/{p=$2} END{print r" p99="p}')
  p64=$(cd "$here" && RUN=$(($3 * 2 + 1)) wrk -t2 -c64 -d8s --latency -s bench/single_record.lua "$base" | awk '/Requests\/sec/{r=$2} / 99%/{p=$2} END{print r" p99="p}')
  t0=$(date +%s.%N)
  curl -sf -X POST "$base/v1/datasets/well_production/records?on_conflict=ignore" \
    -H 'Content-Type: application/vnd.apache.arrow.stream' --data-binary @"$work/rows.arrow" >/dev/null
  t1=$(date +%s.%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$2 round $3: health $h; POST c16 $p16; POST c64 $p64; 1M Arrow POST $(echo "$t1 - $t0" | bc) s"
}
for r in $(seq 1 "$rounds"); do one "$a" A "$r"; one "$b" B "$r"; done
for r in $(seq $((rounds + 1)) $((2 * rounds))); do one "$b" B "$r"; one "$a" A "$r"; done
