#!/usr/bin/env bash
# Single-record POSTs on a loaded database (issue 15 item 6): for each release binary given, in turn
# and ROUNDS times over (alternating, so that a drift of the machine shows), a fresh database is
# loaded with ROWS generated well_production rows (one Arrow POST through the server), then single
# records are POSTed by wrk at 16 and then at 64 clients. Reports per run the load's time and, for
# each client count, requests/s, p50 and p99 (and non-2xx answers, which should be 0). Requests that
# arrive while the writer appends deferred writes to DuckDB wait for it: on a loaded table that is
# what the p99 shows. The p99 in brackets is the server's own (from its request log: from the
# request's arrival to its answer), which leaves out the time wrk and the kernel add on a loaded
# machine. A binary outside the target directory needs libduckdb.so beside it.
#
# Usage: bench/loaded_posts.sh BIN... (at least one)
#   ROWS=N rows loaded first (default 1000000); ROUNDS=N (default 2); SECS=N per wrk run (default 10)
#   INDEX=1 declares on well_production the index on (field_code, production_period) (default 0).
# Needs: curl, wrk, bc. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-1000000}
rounds=${ROUNDS:-2}
secs=${SECS:-10}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || { echo "usage: $0 BIN..." >&2; exit 2; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
source bench/schemas.sh
bench_schemas "$work/schemas" "${INDEX:-0}"
"${bins[0]}" generate --dataset well_production --schemas "$work/schemas" --rows "$rows" \
  --format arrow -o "$work/rows.arrow" >/dev/null
port=$((20000 + RANDOM % 20000))
base="http://127.0.0.1:$port"

# wrk at $1 clients with bench/single_record.lua (RUN=$2 keeps keys apart): "req/s p50 p99 non2xx"
posts() {
  RUN=$2 wrk -t2 -c"$1" -d"${secs}s" --latency -s bench/single_record.lua "$base" >"$work/wrk.txt"
  awk '/Requests\/sec/ {rps=$2} $1 == "50%" {p50=$2} $1 == "99%" {p99=$2} /Non-2xx/ {bad=$5}
       END {printf "%s %s %s %s\n", rps, p50, p99, bad + 0}' "$work/wrk.txt"
}

one() { # binary round
  local db="$work/db" pid t0 t1
  rm -rf "$db" && mkdir -p "$db"
  "$1" serve --listen "127.0.0.1:$port" --db "$db/db.duckdb" --schemas "$work/schemas" 2>"$db/log" &
  pid=$!
  for _ in $(seq 200); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
  t0=$(date +%s.%N)
  curl -sf -X POST "$base/v1/datasets/well_production/records" \
    -H 'Content-Type: application/vnd.apache.arrow.stream' --data-binary @"$work/rows.arrow" >/dev/null
  t1=$(date +%s.%N)
  local from16 from64 end
  from16=$(wc -l <"$db/log")
  read -r r16 m16 p16 bad16 < <(posts 16 $(($2 * 2 + 100)))
  from64=$(wc -l <"$db/log")
  read -r r64 m64 p64 bad64 < <(posts 64 $(($2 * 2 + 101)))
  end=$(wc -l <"$db/log")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [ "$bad16$bad64" = 00 ] || echo "non-2xx answers: c16 $bad16, c64 $bad64" >&2
  printf '| %s | %s | %.2f s | %s | %s | %s (%s) | %s | %s | %s (%s) |\n' "$1" "$2" "$(echo "$t1 - $t0" | bc)" \
    "$r16" "$m16" "$p16" "$(server_p99 "$db/log" "$from16" "$from64")" \
    "$r64" "$m64" "$p64" "$(server_p99 "$db/log" "$from64" "$end")"
}

# p99 of the latencies the server logged for lines $2+1..$3 of log $1 (its request log lines)
server_p99() {
  sed -n "$(($2 + 1)),$3p" "$1" | grep -o 'latency_us=[0-9]*' | cut -d= -f2 | sort -n |
    awk '{a[NR] = $1} END {if (NR) printf "%.2fms", a[int(NR * 0.99) + 1] / 1000}'
}

echo "## Single POSTs after loading $rows rows, declared index ${INDEX:-0}, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| binary | round | load POST | c16 req/s | c16 p50 | c16 p99 (server) | c64 req/s | c64 p50 | c64 p99 (server) |"
echo "|---|---|---|---|---|---|---|---|---|"
for ((round = 1; round <= rounds; round++)); do
  if ((round % 2)); then order=("${bins[@]}"); else order=(); for ((i = ${#bins[@]} - 1; i >= 0; i--)); do order+=("${bins[i]}"); done; fi
  for bin in "${order[@]}"; do one "$bin" "$round"; done
done
