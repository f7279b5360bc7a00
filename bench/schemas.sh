#!/usr/bin/env bash
# Sourced by the bench scripts. bench_schemas DIR INDEX: copies the shipped schemas into DIR and,
# when INDEX is 1, declares on well_production the index a filtered page of one field by period
# is read from (docs/read-path.md has what it gains and costs).
bench_schemas() {
  local dir=$1 index=$2
  mkdir -p "$dir" && cp schemas/*.toml "$dir/"
  if [ "$index" = 1 ]; then
    sed -i '/^cluster_by = /a indexes = [["field_code", "production_period"]]' "$dir/well_production.toml"
  fi
}
