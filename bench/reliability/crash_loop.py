"""Crash loop: SIGKILL the server at random moments under write load, restart it, and check that
every acknowledged write is stored and that no write is half there.

Writers (single records, 50-record bulk requests, PATCH by key, DELETE by key) run until the kill;
each remembers what the server acknowledged. After each restart the stored SOAK keys must equal the
acknowledged inserts less the acknowledged deletes, up to writes whose answer never came (the kill
cut them): such a write is either wholly there or wholly absent. Acknowledged PATCHes must hold.

Usage: python3 crash_loop.py WORKDIR [KILLS]   (bench/reliability/run.sh builds and calls it)
"""

import json
import os
import random
import sys
import threading
import time

from common import WP, Server, key_of, key_path, production, stored_keys


class Ledger:
    """What the server acknowledged, and what was in flight when it died."""

    def __init__(self):
        self.lock = threading.Lock()
        self.inserted = {}      # key -> oil rate as written (or patched)
        self.deleted = set()
        self.uncertain = []     # keys of each insert with no answer (wholly there or absent)
        self.maybe_oil = {}     # key -> oil rate of a PATCH with no answer
        self.maybe_deleted = set()
        self.next = 0

    def take(self, n):
        with self.lock:
            start = self.next
            self.next += n
            return start


def insert(server, ledger, records):
    keys = [key_of(r) for r in records]
    try:
        status, _ = server.post_json(f"{WP}/records", records if len(records) > 1 else records[0],
                                     timeout=30)
    except OSError:
        with ledger.lock:
            ledger.uncertain.append(keys)
        raise
    if status == 201:
        with ledger.lock:
            for r in records:
                ledger.inserted[key_of(r)] = r["oil_production_kbd"]


def change(server, ledger, kind, rng):
    with ledger.lock:
        keys = [k for k in ledger.inserted if k not in ledger.deleted
                and k not in ledger.maybe_deleted]
    if not keys:
        time.sleep(0.01)
        return
    key = rng.choice(keys)
    path = key_path({"field_code": key[0], "well_code": key[1], "production_period": key[2]})
    if kind == "patch":
        oil = round(rng.uniform(0, 99), 1)
        try:
            status, _ = server.request("PATCH", path, json.dumps({"oil_production_kbd": oil}).encode(),
                                       {"Content-Type": "application/json"}, timeout=30)
        except OSError:
            with ledger.lock:
                ledger.maybe_oil[key] = oil
            raise
        if status == 200:
            with ledger.lock:
                ledger.inserted[key] = oil
    else:
        try:
            status, _ = server.request("DELETE", path, timeout=30)
        except OSError:
            with ledger.lock:
                ledger.maybe_deleted.add(key)
            raise
        if status == 204:
            with ledger.lock:
                ledger.deleted.add(key)


def writer(server, ledger, kind, stop):
    rng = random.Random(kind + str(time.monotonic()))
    while not stop.is_set():
        try:
            if kind == "single":
                insert(server, ledger, [production(ledger.take(1))])
            elif kind == "bulk":
                start = ledger.take(50)
                insert(server, ledger, [production(i) for i in range(start, start + 50)])
            else:
                change(server, ledger, kind, rng)
        except OSError:
            if stop.is_set():
                return
            time.sleep(0.01)


def check(server, ledger):
    """(lost acknowledged, present unacknowledged, half-there writes, wrong values, stored) after
    a restart; what was in flight is then settled from what is stored."""
    stored = stored_keys(server)
    expected = {k for k in ledger.inserted if k not in ledger.deleted}
    in_flight = {k for keys in ledger.uncertain for k in keys}
    lost = [k for k in expected if k not in stored and k not in ledger.maybe_deleted]
    unexpected = [k for k in stored if k not in expected and k not in in_flight]
    half = [keys for keys in ledger.uncertain
            if 0 < sum(k in stored for k in keys) < len(keys)]
    wrong = 0
    sample = random.sample(sorted(expected & stored), min(200, len(expected & stored)))
    for key in sample:
        path = key_path({"field_code": key[0], "well_code": key[1], "production_period": key[2]})
        status, body = server.request("GET", path)
        oil = json.loads(body)["oil_production_kbd"] if status == 200 else None
        if oil not in (ledger.inserted[key], ledger.maybe_oil.get(key)):
            wrong += 1
    # settle what was in flight from what the read found
    for keys in ledger.uncertain:
        for k in keys:
            if k in stored and k not in ledger.inserted:
                ledger.inserted[k] = None
    for k in ledger.maybe_deleted:
        if k not in stored:
            ledger.deleted.add(k)
    for k in list(ledger.inserted):
        if k in stored and (ledger.inserted[k] is None or k in ledger.maybe_oil):
            path = key_path({"field_code": k[0], "well_code": k[1], "production_period": k[2]})
            status, body = server.request("GET", path)
            if status == 200:
                ledger.inserted[k] = json.loads(body)["oil_production_kbd"]
    ledger.uncertain.clear()
    ledger.maybe_oil.clear()
    ledger.maybe_deleted.clear()
    return lost, unexpected, half, wrong, len(stored)


def main():
    work = sys.argv[1]
    kills = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    os.makedirs(work, exist_ok=True)
    server = Server(os.path.join(work, "crash.duckdb"), os.path.join(work, "crash.log"))
    ledger = Ledger()
    rows = []
    server.start()
    for round_ in range(1, kills + 1):
        stop = threading.Event()
        threads = [threading.Thread(target=writer, args=(server, ledger, kind, stop))
                   for kind in ["single", "single", "single", "bulk", "patch", "delete"]]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.3, 3.0))
        server.kill()
        stop.set()
        for t in threads:
            t.join()
        restart = server.start()
        lost, unexpected, half, wrong, stored = check(server, ledger)
        rows.append((round_, restart, stored, len(lost), len(unexpected), len(half), wrong))
        print(f"kill {round_:2}: restart {restart:5.2f} s, {stored} stored, lost {len(lost)}, "
              f"unacknowledged present {len(unexpected)}, half-written {len(half)}, "
              f"wrong values {wrong}", flush=True)
    server.stop()
    restarts = sorted(r[1] for r in rows)
    print()
    print("| kills | records stored at the end | acknowledged lost | unacknowledged present | half-written | wrong values | restart p50 | restart max |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {len(rows)} | {rows[-1][2]} | {sum(r[3] for r in rows)} | {sum(r[4] for r in rows)} "
          f"| {sum(r[5] for r in rows)} | {sum(r[6] for r in rows)} "
          f"| {restarts[len(restarts) // 2]:.2f} s | {restarts[-1]:.2f} s |")
    sys.exit(1 if any(r[3] or r[4] or r[5] or r[6] for r in rows) else 0)


if __name__ == "__main__":
    main()
