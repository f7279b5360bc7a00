#!/usr/bin/env bash
# Reliability runs (not tests; bounded in time): the soak (mixed load with hostile and stalling
# clients, MINUTES long) and the crash loop (KILLS SIGKILLs under write load, each followed by a
# restart and a check of every acknowledged write). Prints Markdown for docs/reliability.md.
#
# Usage: bench/reliability/run.sh [MINUTES] [KILLS] [PRELOAD_ROWS]   (defaults 10, 50, 1000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
minutes=${1:-10}
kills=${2:-50}
preload=${3:-1000000}
work=${RELIABILITY_DIR:-/tmp/dataforge-reliability}
cargo build --release --quiet
rm -rf "$work" && mkdir -p "$work"
python3 bench/reliability/crash_loop.py "$work/crash" "$kills"
echo
python3 bench/reliability/soak.py "$work/soak" "$minutes" "$preload"
