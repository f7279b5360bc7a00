# Sourced by the other scripts: links against the prebuilt DuckDB library instead of compiling DuckDB
# (about an hour on two cores), and keeps cargo's target directory outside the clone so builds are reused.
# Set DUCKDB_FROM_SOURCE=1 to compile DuckDB from source instead (the `bundled` feature).

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/dataforge"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
DATAFORGE_CARGO_FEATURES=()

if [ "${DUCKDB_FROM_SOURCE:-0}" = 1 ]; then
  DATAFORGE_CARGO_FEATURES=(--features dataforge/bundled)
else
  duckdb_npm_version="1.5.6-r.1"
  duckdb_dir="$cache_root/duckdb-$duckdb_npm_version"
  if [ ! -f "$duckdb_dir/libduckdb.so" ]; then
    echo "fetching the prebuilt DuckDB library (npm @duckdb/node-bindings-linux-x64@$duckdb_npm_version)" >&2
    mkdir -p "$duckdb_dir"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "@duckdb/node-bindings-linux-x64@$duckdb_npm_version" >/dev/null \
      && tar xzf ./*.tgz package/libduckdb.so) || { echo "could not fetch libduckdb.so with npm" >&2; rm -rf "$tmp"; return 1; }
    mv "$tmp/package/libduckdb.so" "$duckdb_dir/libduckdb.so"
    rm -rf "$tmp"
  fi
  export DUCKDB_LIB_DIR="$duckdb_dir"
  export LD_LIBRARY_PATH="$duckdb_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
