"""Soak: mixed load for a bounded time (bulk and single writes, reads by key, pages, counts,
aggregates, exports), about 5% hostile requests and clients that stall; records errors by kind,
p99 latency per endpoint every 10 s, and the server's memory over time.

A hostile request must get a 4xx; any 5xx or dropped connection is an error of its kind. A stalled
client opens an export or a chunked upload and stops; the server (its stall limit set to 10 s)
must end it: the upload answered 408, the export cut. The soak counts how each ended.

Usage: python3 soak.py WORKDIR [MINUTES] [PRELOAD_ROWS]   (bench/reliability/run.sh calls it)
"""

import collections
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

from common import WP, Server, binary, key_path, production

WINDOW = 10.0

#: The server's `stalled_client_ms` in the soak, in seconds.
STALL_S = 10


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = collections.defaultdict(list)   # (window, endpoint) -> seconds
        self.errors = collections.Counter()            # kind -> count
        self.requests = collections.Counter()          # endpoint -> count
        self.memory = []                               # (seconds, MiB)
        self.started = time.monotonic()
        self.normal = 0
        self.hostile = 0

    def record(self, endpoint, seconds, error=None):
        with self.lock:
            window = int((time.monotonic() - self.started) // WINDOW)
            self.latency[(window, endpoint)].append(seconds)
            self.requests[endpoint] += 1
            if error:
                self.errors[f"{endpoint}: {error}"] += 1
            if endpoint.startswith("hostile"):
                self.hostile += 1
            else:
                self.normal += 1


def timed(stats, endpoint, call, ok):
    started = time.monotonic()
    try:
        status, body = call()
        error = None if ok(status) else f"status {status}"
    except Exception as e:  # a dropped connection, or anything else: counted by kind
        error = type(e).__name__
    stats.record(endpoint, time.monotonic() - started, error)


def writers(server, stats, stop, kind, counter):
    while not stop.is_set():
        if kind == "single":
            with counter["lock"]:
                i = counter["next"]
                counter["next"] += 1
            timed(stats, "POST single", lambda: server.post_json(f"{WP}/records", production(i)),
                  lambda s: s == 201)
        else:
            with counter["lock"]:
                start = counter["next"]
                counter["next"] += 5000
            body = "\n".join(json.dumps(production(i)) for i in range(start, start + 5000)).encode()
            timed(stats, "POST bulk 5000", lambda: server.request(
                "POST", f"{WP}/records", body, {"Content-Type": "application/x-ndjson"}, 120),
                lambda s: s == 201)
            time.sleep(1)


def readers(server, stats, stop, counter, preload):
    rng = random.Random()
    while not stop.is_set():
        choice = rng.random()
        if choice < 0.5:
            record = production(rng.randrange(0, max(1, counter["next"])))
            timed(stats, "GET by key", lambda: server.request("GET", key_path(record)),
                  lambda s: s in (200, 404))
        elif choice < 0.75:
            field = rng.randint(1, 7)
            timed(stats, "GET page", lambda: server.request(
                "GET", f"{WP}/records?field_code=eq.{field}&limit=100"), lambda s: s == 200)
        elif choice < 0.9:
            timed(stats, "GET count", lambda: server.request("GET", f"{WP}/count?field_code=eq.3"),
                  lambda s: s == 200)
        else:
            timed(stats, "GET aggregate", lambda: server.request(
                "GET", f"{WP}/aggregate?group_by=field_code&metrics=sum(oil_production_kbd)"),
                lambda s: s == 200)


def exporter(server, stats, stop):
    while not stop.is_set():
        timed(stats, "GET export csv", lambda: server.request(
            "GET", f"{WP}/records?format=csv&field_code=eq.2", timeout=300), lambda s: s == 200)


HOSTILE = [
    ("POST", f"{WP}/records", b"{not json", {"Content-Type": "application/json"}),
    ("POST", f"{WP}/records", b'{"field_code": "x"}', {"Content-Type": "application/json"}),
    ("POST", f"{WP}/records", b"\xff\xff\xff\xff\xff\xff\xff\x7f",
     {"Content-Type": "application/vnd.apache.arrow.stream"}),
    ("POST", f"{WP}/records", os.urandom(4096), {"Content-Type": "application/vnd.apache.parquet"}),
    ("POST", f"{WP}/records", b"{}", {}),
    ("POST", f"{WP}/records", b"{}", {"Content-Type": "application/json", "Content-Encoding": "br"}),
    ("GET", f"{WP}/records?field_code=eq.1%27%3BDROP%20TABLE%20well_production%3B--", None, {}),
    ("GET", f"{WP}/records?cursor=AAAA", None, {}),
    ("GET", f"{WP}/records?limit=-1", None, {}),
    ("GET", "/v1/datasets/%FF/records", None, {}),
    ("GET", "/v1/datasets/../../etc/passwd", None, {}),
    ("POST", f"{WP}/query", b'{"limit": 1, "limit": 2}', {"Content-Type": "application/json"}),
    ("PATCH", f"{WP}/records/1/2/2020-01-01T00:00:00Z", b'{"field_code": 3}',
     {"Content-Type": "application/json"}),
]


def hostile(server, stats, stop):
    rng = random.Random()
    while not stop.is_set():
        # about one hostile request in twenty
        if stats.hostile * 19 > stats.normal:
            time.sleep(0.01)
            continue
        method, path, body, headers = rng.choice(HOSTILE)
        timed(stats, "hostile", lambda: server.request(method, path, body, headers),
              lambda s: 400 <= s < 500)


def ended_by_server(sock, upload):
    """How the server ended a stalled client: an upload must get its 408, an export must be cut
    (the connection closed before the answer's last chunk)."""
    sock.settimeout(5)
    seen = b""
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            seen += data if upload else data[-64:]
            if upload and b"\r\n\r\n" in seen:
                break
    except OSError:
        return "still open after the stall limit"
    if upload:
        return "answered 408" if seen.startswith(b"HTTP/1.1 408") else f"answered {seen[:12]!r}"
    return "export cut" if not seen.endswith(b"0\r\n\r\n") else "export completed"


def staller(server, stats, stop, stall_s):
    """Again and again: an export that is never read and a chunked upload that stops after one
    chunk; after the server's stall limit (and a little), each must have been ended by it."""
    while not stop.is_set():
        opened = []
        for upload, request in [
            (False, f"GET {WP}/records?format=ndjson HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            (True, f"POST {WP}/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
             "Transfer-Encoding: chunked\r\n\r\n10\r\n{\"field_code\":1,\r\n"),
        ]:
            s = socket.create_connection(("127.0.0.1", server.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(request.encode())
            opened.append((upload, s))
        if stop.wait(stall_s + 3):
            break
        for upload, s in opened:
            how = ended_by_server(s, upload)
            s.close()
            with stats.lock:
                stats.errors[f"stalled {'upload' if upload else 'export'}: {how} (informational)"] += 1


def memory(server, stats, stop):
    while not stop.is_set():
        stats.memory.append((time.monotonic() - stats.started, server.rss_mib()))
        stop.wait(WINDOW)


def p99(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0


def main():
    work = sys.argv[1]
    minutes = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    preload = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    os.makedirs(work, exist_ok=True)
    db = os.path.join(work, "soak.duckdb")
    # a preloaded table, so reads and exports have rows to work on
    rows = os.path.join(work, "preload.arrow")
    subprocess.run([binary(), "generate", "well_production", "--rows", str(preload), "--format",
                    "arrow", "-o", rows], check=True, cwd=os.path.join(os.path.dirname(__file__), "..", ".."))
    subprocess.run([binary(), "import", "--dataset", "well_production", "--db", db, rows],
                   check=True, cwd=os.path.join(os.path.dirname(__file__), "..", ".."))
    # a stall limit shorter than the default 30 s, so the soak sees stalled clients ended often
    server = Server(db, os.path.join(work, "soak.log"),
                    {"DATAFORGE_SERVER__STALLED_CLIENT_MS": str(STALL_S * 1000)})
    server.start()
    stats = Stats()
    stats.memory.append((0.0, server.rss_mib()))
    stop = threading.Event()
    counter = {"lock": threading.Lock(), "next": 0}
    jobs = ([(writers, (server, stats, stop, "single", counter))] * 4
            + [(writers, (server, stats, stop, "bulk", counter))]
            + [(readers, (server, stats, stop, counter, preload))] * 4
            + [(exporter, (server, stats, stop)), (hostile, (server, stats, stop)),
               (staller, (server, stats, stop, STALL_S)), (memory, (server, stats, stop))])
    threads = [threading.Thread(target=f, args=a, daemon=True) for f, a in jobs]
    for t in threads:
        t.start()
    stop.wait(minutes * 60)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    stats.memory.append((time.monotonic() - stats.started, server.rss_mib()))
    server.stop()

    endpoints = sorted({e for _, e in stats.latency})
    windows = sorted({w for w, _ in stats.latency})
    print(f"## Soak: {minutes:g} minutes, {preload:,} rows preloaded\n")
    print("| endpoint | requests | p99 over the run | worst 10 s p99 |")
    print("| --- | --- | --- | --- |")
    for e in endpoints:
        every = [v for (w, x), vs in stats.latency.items() if x == e for v in vs]
        worst = max(p99(stats.latency.get((w, e), [])) for w in windows)
        print(f"| {e} | {stats.requests[e]:,} | {p99(every) * 1000:.0f} ms | {worst * 1000:.0f} ms |")
    print("\n| error kind | count |\n| --- | --- |")
    for kind, count in sorted(stats.errors.items()):
        print(f"| {kind} | {count} |")
    if not stats.errors:
        print("| none | 0 |")
    print("\n| seconds | RSS MiB |\n| --- | --- |")
    every = max(1, len(stats.memory) // 12)
    shown = stats.memory[::every] + ([stats.memory[-1]] if (len(stats.memory) - 1) % every else [])
    for t, m in shown:
        print(f"| {t:.0f} | {m:.0f} |")
    with open(os.path.join(work, "soak.json"), "w") as f:
        json.dump({"windows": {f"{w}:{e}": p99(v) for (w, e), v in stats.latency.items()},
                   "errors": stats.errors, "memory": stats.memory}, f)


if __name__ == "__main__":
    main()
