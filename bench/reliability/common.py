"""What the soak and the crash loop share: the server process, records, HTTP calls (stdlib only)."""

import http.client
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WP = "/v1/datasets/well_production"


def binary():
    """The release binary, built by the calling shell script (scripts/env.sh sets the target dir)."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "dataforge")


class Server:
    """`dataforge serve` on a free loopback port, its log in `log_path`."""

    def __init__(self, db, log_path, env=None):
        self.db, self.log_path = db, log_path
        self.env = dict(os.environ, RUST_LOG="warn,dataforge=info,dataforge_http=warn", **(env or {}))
        self.proc = None
        self.port = None

    def start(self, timeout=600):
        started = time.monotonic()
        log = open(self.log_path, "ab")
        seen = log.tell()
        self.proc = subprocess.Popen(
            [binary(), "serve", "--listen", "127.0.0.1:0", "--db", self.db,
             "--schemas", os.path.join(ROOT, "schemas")],
            stdout=subprocess.DEVNULL, stderr=log, env=self.env, cwd=os.path.dirname(self.db))
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log_path}")
            with open(self.log_path, "rb") as f:
                f.seek(seen)
                found = re.findall(rb"listening on http://127\.0\.0\.1:(\d+)", f.read())
            if found:
                self.port = int(found[-1])
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, body bytes); raises OSError on a connection failure."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def post_json(self, path, value, timeout=60):
        return self.request("POST", path, json.dumps(value).encode(),
                            {"Content-Type": "application/json"}, timeout)


def production(i):
    """A well_production record; `i` makes its key unique (as the Rust tests' `production`)."""
    well = 100_000 + i // 12
    month = i % 12 + 1
    year = 2030 + (i // 12) // 100_000
    return {
        "field_code": 1 + well % 7,
        "field_name": f"FIELD-{1 + well % 7}",
        "well_code": well,
        "well_reference": f"REF-{well}",
        "well_name": f"WELL-{well}",
        "production_period": f"{year}-{month:02}-01T00:00:00Z",
        "days_on_production": 1 + i % 31,
        "oil_production_kbd": (i % 100) / 10,
        "gas_production_mmcfd": 1.5,
        "liquids_production_kbd": 0.25,
        "water_production_kbd": 2.0,
        "data_source": "SOAK",
        "source_data": "{}",
        "partition_0": f"p{i % 10}",
    }


def key_of(record):
    return (record["field_code"], record["well_code"], record["production_period"])


def key_path(record):
    return "{}/records/{}/{}/{}".format(
        WP, record["field_code"], record["well_code"],
        urllib.parse.quote(record["production_period"], safe=""))


def stored_keys(server, source="SOAK"):
    """Every stored key of records written by these scripts, from one NDJSON export."""
    status, body = server.request(
        "GET", f"{WP}/records?format=ndjson&data_source=eq.{source}"
               "&select=field_code,well_code,production_period", timeout=600)
    if status != 200:
        raise RuntimeError(f"export answered {status}: {body[:300]!r}")
    keys = set()
    for line in body.splitlines():
        r = json.loads(line)
        keys.add((r["field_code"], r["well_code"], r["production_period"]))
    return keys
