"""Bounded HTTP load test of the RTF service on loopback.

A thread pool of ``--concurrency`` clients sends a mix of POST /v1/fingerprints (one light
curve), GET /v1/objects/{id}/neighbors, POST /v1/alerts (small batches of new objects) and
POST /v1/classify for ``--duration`` seconds (at most ``--max-requests``), then reports
throughput, p50/p99 latency per endpoint and the error count. Afterwards it measures the
single-request latency (one client, sequential) of an encode and of a neighbours-by-id query
against the targets (p99 <= 20 ms and <= 10 ms).

    python -m benchmarks.load_test --duration 60 --concurrency 8            # starts its own server
    python -m benchmarks.load_test --url http://127.0.0.1:8000 --duration 30   # an existing one

Only loopback URLs are accepted.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

from tests._server import Server, as_json, synth_lightcurves

MIX = {"fingerprints": 4, "neighbors": 4, "alerts": 1, "classify": 2}
TARGETS_MS = {"encode p99": 20.0, "neighbors p99": 10.0}


class Load:
    def __init__(self, url: str, pool: list, catalogue_ids: list[str], alerts_batch: int, seed: int):
        self.url = url
        self.pool = [as_json([lc])["lightcurves"][0] for lc in pool]
        self.raw_pool = pool
        self.ids = catalogue_ids
        self.alerts_batch = alerts_batch
        self.rng = random.Random(seed)
        self.counter = itertools.count()
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.error_samples: list[str] = []

    def _request(self, client: httpx.Client, kind: str) -> tuple[int, str]:
        with self.lock:
            pick = self.rng.randrange(len(self.pool))
            oid = self.rng.choice(self.ids)
            n = next(self.counter)
        if kind == "fingerprints":
            r = client.post("/v1/fingerprints", json={"lightcurves": [self.pool[pick]]})
        elif kind == "classify":
            r = client.post("/v1/classify", json={"lightcurves": [self.pool[pick]]})
        elif kind == "neighbors":
            r = client.get(f"/v1/objects/{oid}/neighbors", params={"k": 10})
        else:  # new objects each time: the ingest path re-encodes and writes SQL + index
            lcs = [
                dataclasses.replace(self.raw_pool[(pick + i) % len(self.raw_pool)], object_id=f"load-{n}-{i}")
                for i in range(self.alerts_batch)
            ]
            r = client.post("/v1/alerts", json=as_json(lcs))
        return r.status_code, r.text[:200]

    def worker(self, deadline: float, budget: list[int]) -> None:
        kinds, weights = list(MIX), list(MIX.values())
        rng = random.Random(self.rng.random())
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while time.monotonic() < deadline:
                with self.lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                kind = rng.choices(kinds, weights)[0]
                t0 = time.perf_counter()
                try:
                    status, text = self._request(client, kind)
                except httpx.HTTPError as exc:
                    status, text = 0, f"{type(exc).__name__}: {exc}"
                dt = time.perf_counter() - t0
                with self.lock:
                    self.lat[kind].append(dt)
                    if status != 200:
                        self.errors[kind] += 1
                        if len(self.error_samples) < 5:
                            self.error_samples.append(f"{kind}: {status} {text}")

    def run(self, duration: float, concurrency: int, max_requests: int) -> float:
        deadline = time.monotonic() + duration
        budget = [max_requests]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for f in [pool.submit(self.worker, deadline, budget) for _ in range(concurrency)]:
                f.result()
        return time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q)) if xs else float("nan")


LONG_DETECTIONS = 100


def single_request_latency(url: str, load: Load, n: int) -> dict[str, list[float]]:
    """One client, sequential: the end-to-end latency of one encode and one neighbours query."""
    out: dict[str, list[float]] = {"encode": [], "neighbors": [], "encode_short": [], "encode_long": []}
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(10):  # warm up
            client.post("/v1/fingerprints", json={"lightcurves": [load.pool[i % len(load.pool)]]})
            client.get(f"/v1/objects/{load.ids[i % len(load.ids)]}/neighbors", params={"k": 10})
        for i in range(n):
            body = {"lightcurves": [load.pool[i % len(load.pool)]]}
            content = json.dumps(body).encode()  # the client's own JSON encoding is not the service's latency
            t0 = time.perf_counter()
            r = client.post("/v1/fingerprints", content=content, headers={"content-type": "application/json"})
            out["encode"].append(time.perf_counter() - t0)
            # split by length: is the tail the long light curves?
            long = len(body["lightcurves"][0]["detections"]) > LONG_DETECTIONS
            out["encode_long" if long else "encode_short"].append(out["encode"][-1])
            assert r.status_code == 200, r.text
            t0 = time.perf_counter()
            r = client.get(f"/v1/objects/{load.ids[i % len(load.ids)]}/neighbors", params={"k": 10})
            out["neighbors"].append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    return out


def catalogue_ids(url: str, limit: int = 500) -> list[str]:
    items = httpx.get(url + "/v1/anomalies", params={"limit": limit}, timeout=30).json()["items"]
    return [x["object_id"] for x in items]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running service (loopback only); default: start one")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of mixed load (default 60)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-requests", type=int, default=100_000, help="hard cap on mixed-load requests")
    ap.add_argument("--alerts-batch", type=int, default=5, help="light curves per POST /v1/alerts")
    ap.add_argument("--latency-requests", type=int, default=300, help="sequential requests per latency probe")
    ap.add_argument("--demo-n", type=int, default=1000, help="catalogue size of a self-started server")
    ap.add_argument("--threads", type=int, default=2, help="RTF_THREADS of a self-started server")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    srv = None
    tmp = Path(tempfile.mkdtemp(prefix="rtf-load-"))
    if args.url:
        host = urlsplit(args.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            ap.error("only loopback URLs: this tool must not send load anywhere else")
        url = args.url.rstrip("/")
    else:
        from training.synthetic import write_parquet

        demo = tmp / "demo.parquet"
        print(f"making a {args.demo_n}-object demo catalogue ...", file=sys.stderr)
        write_parquet(synth_lightcurves(args.demo_n, seed=args.seed), demo)
        srv = Server(
            {
                "RTF_DATABASE_URL": f"sqlite:///{tmp / 'rtf.db'}",
                "RTF_INDEX_DIR": str(tmp / "index"),
                "RTF_DEMO": "1",
                "RTF_DEMO_FILE": str(demo),
                "RTF_THREADS": str(args.threads),
            },
            log_path=tmp / "server.log",
            ready_timeout=600,
        )
        srv.start()
        url = srv.url
    try:
        ids = catalogue_ids(url)
        load = Load(url, synth_lightcurves(200, seed=args.seed + 1), ids, args.alerts_batch, args.seed)
        single_request_latency(url, load, 10)  # warm up
        wall = load.run(args.duration, args.concurrency, args.max_requests)
        total = sum(len(v) for v in load.lat.values())
        n_err = sum(load.errors.values())
        rows = []
        for kind in MIX:
            xs = load.lat.get(kind, [])
            rows.append(
                {
                    "endpoint": kind,
                    "requests": len(xs),
                    "rps": len(xs) / wall,
                    "p50_ms": pct(xs, 50),
                    "p99_ms": pct(xs, 99),
                    "max_ms": pct(xs, 100),
                    "errors": load.errors.get(kind, 0),
                }
            )
        probe = single_request_latency(url, load, args.latency_requests)
        single = {k: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "n": len(v)} for k, v in probe.items()}

        print(
            f"\nmixed load: {total} requests in {wall:.1f} s at concurrency {args.concurrency}: "
            f"{total / wall:.1f} req/s, {n_err} errors\n"
        )
        print("| endpoint | requests | req/s | p50 ms | p99 ms | max ms | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        names = {
            "fingerprints": "POST /v1/fingerprints (1 LC)",
            "neighbors": "GET /v1/objects/{id}/neighbors k=10",
            "alerts": f"POST /v1/alerts ({args.alerts_batch} new LCs)",
            "classify": "POST /v1/classify (1 LC)",
        }
        for r in rows:
            print(
                f"| {names[r['endpoint']]} | {r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['errors']} |"
            )
        print(f"| **all** | {total} | {total / wall:.1f} | | | | {n_err} |")
        print("\nsingle request, one client, sequential:\n")
        print("| request | n | p50 ms | p99 ms | target p99 |")
        print("|---|---:|---:|---:|---:|")
        print(
            f"| encode: POST /v1/fingerprints (1 LC) | {single['encode']['n']} | {single['encode']['p50_ms']:.1f} | "
            f"{single['encode']['p99_ms']:.1f} | <= {TARGETS_MS['encode p99']:.0f} |"
        )
        for part in ("short", "long"):
            st = single[f"encode_{part}"]
            print(
                f"| encode, {part} (<= / > {LONG_DETECTIONS} detections) | {st['n']} | {st['p50_ms']:.1f} | "
                f"{st['p99_ms']:.1f} | |"
            )
        print(
            f"| GET /v1/objects/{{id}}/neighbors k=10 | {single['neighbors']['n']} | "
            f"{single['neighbors']['p50_ms']:.1f} | {single['neighbors']['p99_ms']:.1f} | "
            f"<= {TARGETS_MS['neighbors p99']:.0f} |"
        )
        for s in load.error_samples:
            print("error:", s, file=sys.stderr)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "wall_s": wall,
                        "concurrency": args.concurrency,
                        "rows": rows,
                        "single": single,
                        "errors": n_err,
                        "catalogue": len(ids),
                    },
                    indent=1,
                )
            )
        return 1 if n_err else 0
    finally:
        if srv is not None:
            srv.stop()


if __name__ == "__main__":
    sys.exit(main())
