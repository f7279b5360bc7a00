#!/usr/bin/env python3
"""A first, single-client look at the foundation's speed (not the ingest or read benchmark of later
issues): JSON ingest in 10,000-row requests and sequential filtered pages, next to GET /health as the
reference measured in the same run. Usage: start `scripts/dataforge serve --db /tmp/bench.duckdb`,
then `python3 bench/json_smoke.py [http://127.0.0.1:8000]`. Uses only the standard library."""

import json
import sys
import time
import urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
ROWS, PER_REQUEST = 200_000, 10_000


def row(i):
    """Row i of the generator described in the ingest issue (rates fixed here)."""
    well = 100_000 + i // 924
    month = i % 924
    return {
        "field_code": 1 + (well * 7919) % 2000, "field_name": f"FIELD-{1 + (well * 7919) % 2000}",
        "well_code": well, "well_reference": f"REF-{well}", "well_name": f"WELL-{well}",
        "production_period": f"{1947 + month // 12:04d}-{month % 12 + 1:02d}-01",
        "days_on_production": 1 + (i * 7) % 31, "oil_production_kbd": 1.0, "gas_production_mmcfd": 2.0,
        "liquids_production_kbd": 0.5, "water_production_kbd": 3.0, "data_source": "ANP",
        "source_data": '{"src":"anp"}', "partition_0": f"p{i % 10}",
    }


def timed_gets(paths):
    start = time.perf_counter()
    for path in paths:
        urllib.request.urlopen(BASE + path).read()
    return (time.perf_counter() - start) / len(paths) * 1000


bodies = [json.dumps([row(i) for i in range(k, k + PER_REQUEST)]).encode() for k in range(0, ROWS, PER_REQUEST)]
start = time.perf_counter()
for body in bodies:
    request = urllib.request.Request(f"{BASE}/v1/datasets/well_production/records", data=body,
                                     headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(request).status == 201
elapsed = time.perf_counter() - start
print(f"JSON ingest: {ROWS} rows in {len(bodies)} requests: {elapsed:.2f} s, {ROWS / elapsed:,.0f} rows/s")
health = timed_gets(["/health"] * 500)
page = timed_gets([f"/v1/datasets/well_production/records?field_code=eq.{1 + k * 7}&limit=100" for k in range(200)])
print(f"GET /health (reference): {health:.2f} ms per request, sequential")
print(f"filtered page of 100: {page:.2f} ms per request, sequential ({page / health:.1f}x /health)")
