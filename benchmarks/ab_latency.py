"""Single-request latency of two checkouts of RTF side by side, requests alternating between them.

On a shared, noisy VM two runs an hour apart differ by more than most changes do, so a change
is measured against its parent at the same time: each checkout serves the same demo catalogue
from its own uvicorn process, and one client sends every request first to one server and then
to the other (the order flips every request). Reports p50 / p99 / max per server for
POST /v1/fingerprints (one light curve of the load test's pool, short and long separately) and
GET /v1/objects/{id}/neighbors.

    git worktree add /tmp/rtf_old HEAD
    python -m benchmarks.ab_latency --a /tmp/rtf_old --b . --requests 600
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.load_test import LONG_DETECTIONS, catalogue_ids
from tests._server import Server, as_json, synth_lightcurves

ROOT = Path(__file__).resolve().parents[1]


def start(checkout: Path, demo: Path, work: Path, threads: int) -> Server:
    env = {
        "PYTHONPATH": str(checkout),
        "RTF_DATABASE_URL": f"sqlite:///{work / 'rtf.db'}",
        "RTF_INDEX_DIR": str(work / "index"),
        "RTF_DEMO": "1",
        "RTF_DEMO_FILE": str(demo),
        "RTF_THREADS": str(threads),
        "RTF_CACHE_DIR": str(ROOT / "var" / "cache"),
    }
    srv = Server(env, log_path=work / "server.log", ready_timeout=600, cwd=checkout)
    return srv.start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="checkout A (e.g. a worktree of the parent commit)")
    ap.add_argument("--b", type=Path, required=True, help="checkout B")
    ap.add_argument("--requests", type=int, default=600, help="sequential requests per server and kind")
    ap.add_argument("--demo-n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="rtf-ab-"))
    from training.synthetic import write_parquet

    demo = tmp / "demo.parquet"
    write_parquet(synth_lightcurves(args.demo_n, seed=args.seed), demo)
    names = {"A": args.a.resolve(), "B": args.b.resolve()}
    servers = {}
    try:
        for name, checkout in names.items():
            (tmp / name).mkdir()
            print(f"starting {name}: {checkout}", file=sys.stderr)
            servers[name] = start(checkout, demo, tmp / name, args.threads)
        pool = as_json(synth_lightcurves(200, seed=args.seed + 1))["lightcurves"]
        bodies = [(json.dumps({"lightcurves": [lc]}).encode(), len(lc["detections"])) for lc in pool]
        ids = catalogue_ids(servers["A"].url)
        clients = {n: httpx.Client(base_url=s.url, timeout=30) for n, s in servers.items()}
        lat: dict[tuple[str, str], list[float]] = {}
        for i in range(args.requests + 20):  # the first 20 warm up
            body, n_det = bodies[i % len(bodies)]
            kind = "encode, long" if n_det > LONG_DETECTIONS else "encode, short"
            for name in ("A", "B") if i % 2 == 0 else ("B", "A"):
                c = clients[name]
                t0 = time.perf_counter()
                r = c.post("/v1/fingerprints", content=body, headers={"content-type": "application/json"})
                dt = time.perf_counter() - t0
                assert r.status_code == 200, r.text
                t1 = time.perf_counter()
                r = c.get(f"/v1/objects/{ids[i % len(ids)]}/neighbors", params={"k": 10})
                dn = time.perf_counter() - t1
                assert r.status_code == 200, r.text
                if i >= 20:
                    for k, v in (("encode", dt), (kind, dt), ("neighbors", dn)):
                        lat.setdefault((name, k), []).append(v * 1e3)
        print("| request | server | n | p50 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|---:|")
        for k in ("encode", "encode, short", "encode, long", "neighbors"):
            for name in ("A", "B"):
                x = np.array(lat.get((name, k), [np.nan]))
                print(f"| {k} | {name} | {len(x)} | {np.median(x):.1f} | {np.percentile(x, 99):.1f} | {x.max():.1f} |")
        return 0
    finally:
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    raise SystemExit(main())
