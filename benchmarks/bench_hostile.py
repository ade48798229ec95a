"""Hostile requests against the real service: status, RSS growth and how long /healthz stalls.

Starts the service (``python -m app.server``, SQLite and, when it answers, PostgreSQL) with a small
demo catalogue and ``RTF_API_KEY`` set, then sends each case below alone while a second client
polls ``/healthz`` every 10 ms and a sampler reads the RSS of the server process and of its
children (the body-decoding worker) every 10 ms. Reports per case: status, seconds, peak RSS
growth of the main process and of the whole process tree, and the longest /healthz wait. Then
every object acknowledged by the extreme-value cases must read back, find itself first through
``POST /v1/search`` and post back as duplicates only.

    python -m benchmarks.bench_hostile                   # SQLite and PostgreSQL
    python -m benchmarks.bench_hostile --databases sqlite

Targets (issue 15): no request under the body limit grows RSS by more than 256 MB or blocks
/healthz for more than 100 ms; 0 x 5xx on both databases; every acknowledged object round-trips.
Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import io
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from benchmarks._postgres import temporary_database
from encoder.lightcurve import LightCurve
from encoder.readers import write_ztf_avro
from encoder.readers.avro_container import encode_long, raw_container
from tests._server import Server, as_json, synth_lightcurves

KEY = "bench-key-" + "x" * 20
PG_ADMIN = os.environ.get("RTF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


# ---------------------------------------------------------------------------- measuring
def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


class Watch:
    """Samples RSS (main, tree) and polls /healthz while a case runs."""

    def __init__(self, url: str, pid: int):
        self.url, self.pid = url, pid
        self.stop = threading.Event()
        self.peak_main = self.peak_tree = 0
        self.worst_health = 0.0
        self.base_main = rss_bytes(pid)
        self.base_tree = sum(rss_bytes(p) for p in tree(pid))

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.peak_main = max(self.peak_main, rss_bytes(self.pid))
            self.peak_tree = max(self.peak_tree, sum(rss_bytes(p) for p in tree(self.pid)))
            time.sleep(0.01)

    def _health(self) -> None:
        with httpx.Client(timeout=60) as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                c.get(self.url + "/healthz")
                self.worst_health = max(self.worst_health, time.perf_counter() - t0)
                time.sleep(0.01)

    def __enter__(self) -> Watch:
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._sample, self._health)]
        for t in self.threads:
            t.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.05)
        self.stop.set()
        for t in self.threads:
            t.join()


# ---------------------------------------------------------------------------- the cases
def _array_bomb(items) -> bytes:
    schema = {"type": "record", "name": "r", "fields": [{"name": "a", "type": {"type": "array", "items": items}}]}
    return raw_container(schema, [(1, encode_long(10**8) + encode_long(0))])


def _deflate_bomb() -> bytes:
    schema = {"type": "record", "name": "r", "fields": [{"name": "a", "type": "bytes"}]}
    return raw_container(schema, [(1, encode_long(1 << 30) + bytes(1 << 30))], codec="deflate")


def _many_packets(n: int) -> bytes:
    lc = synth_lightcurves(1, seed=3)[0].first(1)
    buf = io.BytesIO()
    write_ztf_avro([dataclasses.replace(lc, object_id=f"pk{i}") for i in range(n)], buf, history=False)
    return buf.getvalue()


def _json_body(target_bytes: int) -> bytes:
    """1,000 valid light curves, their histories repeated later in time up to ~target_bytes."""
    body = as_json(synth_lightcurves(1000, seed=8, min_detections=5))
    for item in body["lightcurves"]:
        item.pop("upper_limits", None)
    base = len(json.dumps(body))
    reps = target_bytes / base
    for item in body["lightcurves"]:
        dets = item["detections"]
        n = max(1, int(len(dets) * reps))
        item["detections"] = [
            dets[i % len(dets)] | {"jd": dets[i % len(dets)]["jd"] + 400 * (i // len(dets))}
            for i in range(min(n, 20_000))
        ]
    return json.dumps(body).encode()


def _slow(url: str, payload: bytes, delay: float, limit: float) -> str:
    """Send ``payload`` a byte every ``delay`` s; how the server ended it (closed or answered)."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    s.settimeout(limit)
    t0 = time.monotonic()
    try:
        for b in payload:
            s.sendall(bytes([b]))
            time.sleep(delay)
            if time.monotonic() - t0 > limit:
                return f"still open after {limit:.0f} s"
        return s.recv(200).split(b"\r\n")[0].decode()
    except (BrokenPipeError, ConnectionResetError):
        return f"closed by the server after {time.monotonic() - t0:.1f} s"
    finally:
        s.close()


def cases(url: str) -> list[tuple[str, Callable[[httpx.Client], int | str]]]:
    avro = {"Content-Type": "avro/binary"}
    big_json, packets, deflate = _json_body(14 << 20), _many_packets(100_000), _deflate_bomb()
    plot_id = "bench-20k"

    def post(path: str, body: bytes, headers: dict) -> Callable[[httpx.Client], int]:
        return lambda c: c.post(url + path, content=body, headers=headers).status_code

    def plots(c: httpx.Client) -> str:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(24) as pool:
            codes = list(
                pool.map(lambda _: httpx.get(f"{url}/v1/objects/{plot_id}/plot", timeout=300).status_code, range(24))
            )
        return ",".join(sorted(set(map(str, codes))))

    return [
        (f"array<null> bomb, 10^8 items ({len(_array_bomb('null'))} B)", post("/v1/fingerprints", _array_bomb("null"), avro)),
        ("array<empty record> bomb", post("/v1/fingerprints", _array_bomb({"type": "record", "name": "e", "fields": []}), avro)),
        (f"deflate block inflating to 1 GiB ({len(deflate) / 1e6:.1f} MB)", post("/v1/fingerprints", deflate, avro)),
        (f"100,000 one-detection ZTF packets ({len(packets) / 2**20:.1f} MiB)", post("/v1/alerts", packets, avro | {"X-API-Key": KEY})),
        (f"classify: {len(big_json) / 1e6:.1f} MB of JSON (1,000 light curves)", post("/v1/classify", big_json, {"Content-Type": "application/json"})),
        ("24 concurrent plots of a 20,000-point object", plots),
        ("headers at 1 byte/s", lambda c: _slow(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 40, 1.0, 20)),
        ("body never sent / body at 1 byte/s", lambda c: _slow(url, b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", 0.0, 5)
         + " / " + _slow_body(url)),
    ]  # fmt: skip


def _slow_body(url: str) -> str:
    head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    s.settimeout(30)
    s.sendall(head)
    t0 = time.monotonic()
    try:
        for _ in range(100):
            s.sendall(b" ")
            time.sleep(1.0)
            if time.monotonic() - t0 > 25:
                return "body: still open after 25 s"
        return "body: " + s.recv(200).split(b"\r\n")[0].decode()
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        return f"body: closed after {time.monotonic() - t0:.1f} s"
    finally:
        s.close()


EXTREMES = [
    {"detections": [{"jd": 2459000.5, "band": "g", "mag": 40, "mag_err": 5e-324}]},
    {"detections": [{"jd": 2459000.5, "band": "g", "flux": 1e30, "flux_err": 1}]},
    {"detections": [{"jd": 2459000.5 + i * 1e-7, "band": "g", "mag": 19.0, "mag_err": 0.1} for i in range(3)]},
    {"detections": [{"jd": 2459000.5, "band": "g", "mag": 19.0, "mag_err": 0.1}], "ra": 360.0, "dec": 0.0},
    {"detections": [{"jd": 2459000.5, "band": "g", "mag": 19.0, "mag_err": 0.1}], "label": "SN\u0000Ia"},
    {"detections": [{"jd": 2459000.5 + i, "band": "r", "flux": -50.0 + 40 * i, "flux_err": 3.0} for i in range(6)]},
]


def text_cases(url: str, c: httpx.Client) -> list[tuple[str, int]]:
    bad_cursors = [base64.urlsafe_b64encode(raw).decode() for raw in (b'[Infinity,"a"]', b"[0.5,{}]", b'[0.5,"\\u0000"]')]
    out = [("GET /v1/anomalies?class=%00", c.get(url + "/v1/anomalies?class=%00").status_code)]
    out += [
        (f"cursor {base64.urlsafe_b64decode(k)!r}", c.get(url + "/v1/anomalies", params={"cursor": k}).status_code)
        for k in bad_cursors
    ]
    return out


def run(db: str, url_db: str, work: Path) -> dict:
    demo = work / "demo.parquet"
    if not demo.exists():
        from training.synthetic import SurveyConfig, generate_survey, write_parquet

        write_parquet(generate_survey(SurveyConfig(survey="ztf", n_objects=300, seed=5, min_detections=3)), demo)
    env = {
        "RTF_DATABASE_URL": url_db,
        "RTF_INDEX_DIR": str(work / f"index-{db}"),
        "RTF_DEMO": "1",
        "RTF_DEMO_FILE": str(demo),
        "RTF_API_KEY": KEY,
        "RTF_HEADER_TIMEOUT": "5",
        "RTF_BODY_TIMEOUT": "5",
        "RTF_PRECISION": "fp32",
    }
    report: dict = {"database": db, "cases": [], "text": [], "extremes": []}
    with Server(env) as srv, httpx.Client(timeout=300) as c:
        n = 20_000
        lc = LightCurve.build(
            "bench-20k",
            "ztf",
            2459000.5 + np.arange(n) * 0.01,
            np.where(np.arange(n) % 2, "g", "r"),
            mag=18 + np.sin(np.arange(n) / 50),
            mag_err=np.full(n, 0.05),
        )
        assert c.post(srv.url + "/v1/alerts", json=as_json([lc]), headers={"X-API-Key": KEY}).status_code == 200
        for name, fn in cases(srv.url):
            with Watch(srv.url, srv.proc.pid) as w:
                t0 = time.perf_counter()
                status = fn(c)
                seconds = time.perf_counter() - t0
            row = {
                "case": name,
                "status": status,
                "seconds": round(seconds, 2),
                "rss_main_mb": round((w.peak_main - w.base_main) / 2**20, 1),
                "rss_tree_mb": round((w.peak_tree - w.base_tree) / 2**20, 1),
                "healthz_worst_ms": round(w.worst_health * 1e3, 1),
            }
            report["cases"].append(row)
            print(row, flush=True)
        report["text"] = text_cases(srv.url, c)
        for body in EXTREMES:
            oid = f"extreme-{uuid.uuid4().hex[:8]}"
            r = c.post(
                srv.url + "/v1/alerts", json={"lightcurves": [body | {"object_id": oid}]}, headers={"X-API-Key": KEY}
            )
            row = {"input": json.dumps(body)[:90], "status": r.status_code}
            if r.status_code == 200:
                got = c.get(f"{srv.url}/v1/objects/{oid}")
                lcj = got.json()["lightcurve"]
                hit = c.post(srv.url + "/v1/search", json={"lightcurve": lcj, "k": 1}).json()["neighbors"][0]
                again = c.post(srv.url + "/v1/alerts", json={"lightcurves": [lcj]}, headers={"X-API-Key": KEY})
                row |= {
                    "read_back": got.status_code,
                    "finds_itself": hit["object_id"] == oid,
                    "repost": again.status_code,
                    "repost_new": again.json().get("new_alerts"),
                }
            report["extremes"].append(row)
        log = srv.log()
    report["server_5xx"] = log.count('" 500') + log.count('" 502') + log.count('" 503')
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    ap.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rtf-hostile-"))
    reports = []
    for db in args.databases:
        if db == "sqlite":
            reports.append(run(db, f"sqlite:///{work / 'rtf.db'}", work))
            continue
        with temporary_database(PG_ADMIN, prefix="rtf_hostile") as url:
            if url is not None:
                reports.append(run(db, url, work))
    print(json.dumps(reports, indent=1))
    if args.out:
        args.out.write_text(json.dumps(reports, indent=1))


if __name__ == "__main__":
    main()
