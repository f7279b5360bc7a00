#!/usr/bin/env bash
# The explorer on a big dataset: loads ROWS generated well_production rows (`dataforge import`),
# serves them, and times in Debian's Chromium (web/bench/first-page.mjs) the first page of records
# shown after opening /datasets/well_production (target: under 1 s), a filtered and ordered first
# page, and paging forward and back (target: under 100 ms a page), with a `/health` fetch from the
# page as the same run's reference. Prints a Markdown table row.
#
# Usage: bench/explorer.sh [ROWS] [BIN]   (default 10000000 rows, this tree's release build)
#   ROUNDS (default 5), PORT (default 8768), BENCH_DIR (default /tmp/dataforge-explorer-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
rows=${1:-10000000}
bin=${2:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet --locked -p dataforge
  bin="$CARGO_TARGET_DIR/release/dataforge"
fi
work=${BENCH_DIR:-/tmp/dataforge-explorer-bench}
port=${PORT:-8768}
base="http://127.0.0.1:$port"
rm -rf "$work" && mkdir -p "$work"
db="$work/bench.duckdb"
started=$(date +%s)
"$bin" generate --dataset well_production --schemas schemas --rows "$rows" --format arrow -o "$work/rows.arrow" >/dev/null
"$bin" import --schemas schemas --dataset well_production --db "$db" "$work/rows.arrow" >"$work/import.log" 2>&1
rm -f "$work/rows.arrow"
echo "loaded $rows rows in $(($(date +%s) - started)) s" >&2
"$bin" serve --schemas schemas --db "$db" --listen "127.0.0.1:$port" 2>>"$work/server.log" &
server=$!
trap 'kill -TERM $server; wait $server || true' EXIT
for _ in $(seq 1 1200); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
web=crates/adapters/dataforge-explorer/web
[ -d "$web/node_modules" ] || (cd "$web" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
result=$(cd "$web" && node bench/first-page.mjs "$base")
echo "$result" >&2
echo "| $rows | $(echo "$result" | python3 -c '
import json, sys
r = json.load(sys.stdin)
f = lambda k: "%s (max %s)" % (r[k]["median"], r[k]["max"])
print(" | ".join([f("first_page_ms"), f("filtered_first_page_ms"), f("page_request_ms"), f("page_click_to_shown_ms"), str(r["health_fetch_ms"]["median"])]))
') |"
