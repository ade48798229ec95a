"""Neighbours-by-id latency end to end over HTTP on a large catalogue (the service's 100K target).

    python -m benchmarks.bench_neighbors_http --n 100000 --workdir var/bench100k   # builds once, then reuses
    python -m benchmarks.bench_neighbors_http --workdir var/bench100k --measure-only

1. Build (skipped when the workdir's database already holds ``--n`` objects): synthetic ZTF light
   curves (``iter_survey``, seed ``--seed``) go through ``Catalog.ingest`` in batches, as a bulk
   ingest would, with a progress bar; the index is saved.
2. Start the real service (uvicorn, one process, ``RTF_THREADS=1``) on that database and index.
3. One sequential client (httpx, keep-alive) asks ``GET /v1/objects/{id}/neighbors?k=10`` for random
   catalogue ids, unfiltered and with a class filter, after a warm-up; report p50/p99/max.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np
from tqdm import tqdm

from tests._server import Server

ROOT = Path(__file__).resolve().parents[1]


def build(url: str, index_dir: Path, checkpoint: Path | None, n: int, seed: int, batch: int) -> None:
    from app.catalog import Catalog
    from app.settings import Settings
    from training.synthetic import SurveyConfig
    from training.synthetic.survey import iter_survey

    settings = Settings(database_url=url, index_dir=index_dir, checkpoint=checkpoint, threads=2, sync_interval=0)
    catalog = Catalog.open(settings)
    try:
        have = catalog.store.count_objects()
        if have >= n:
            return
        stream = iter_survey(SurveyConfig(survey="ztf", n_objects=n, seed=seed, min_detections=3))
        stream = itertools.islice(stream, have, None)  # a resumed build skips what is stored
        with tqdm(total=n, initial=have, desc="ingest", unit="LC") as bar:
            while chunk := list(itertools.islice(stream, batch)):
                catalog.ingest(chunk)
                bar.update(len(chunk))
        catalog.save_index()
    finally:
        catalog.close()


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def measure(srv: Server, ids: list[str], requests: int, warmup: int, cls: str | None) -> dict[str, float]:
    rng = random.Random(7)
    lat = []
    params = {"k": 10} | ({"class": cls} if cls else {})
    with httpx.Client(base_url=srv.url, timeout=30.0) as client:
        for i in range(warmup + requests):
            oid = rng.choice(ids)
            t0 = time.perf_counter()
            r = client.get(f"/v1/objects/{oid}/neighbors", params=params)
            dt = (time.perf_counter() - t0) * 1e3
            if r.status_code != 200 or len(r.json()["neighbors"]) != 10:
                raise RuntimeError(f"{r.status_code} for {oid}: {r.text[:300]}")
            if i >= warmup:
                lat.append(dt)
    return percentiles(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="catalogue size to build")
    ap.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench100k")
    ap.add_argument("--measure-only", action="store_true", help="use the workdir's catalogue as it is")
    ap.add_argument("--checkpoint", type=Path, help="model of the catalogue (default: the bundled one)")
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--batch", type=int, default=1000, help="light curves per Catalog.ingest call")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    url, index_dir = f"sqlite:///{a.workdir / 'rtf.db'}", a.workdir / "index"
    if not a.measure_only:
        build(url, index_dir, a.checkpoint, a.n, a.seed, a.batch)
    env = {"RTF_DATABASE_URL": url, "RTF_INDEX_DIR": str(index_dir), "RTF_SYNC_INTERVAL": "0"}
    if a.checkpoint:
        env["RTF_CHECKPOINT"] = str(a.checkpoint.resolve())
    with Server(env) as srv:
        ready = httpx.get(srv.url + "/readyz").json()
        with sqlite3.connect(a.workdir / "rtf.db") as db:
            ids = [r[0] for r in db.execute("SELECT object_id FROM objects ORDER BY random() LIMIT 5000")]
        res = {
            "readyz": ready,
            "unfiltered": measure(srv, ids, a.requests, a.warmup, None),
            "class=SNcc": measure(srv, ids, a.requests, a.warmup, "SNcc"),
        }
    print(json.dumps(res, indent=2))
    print("\n| query | n | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|")
    for name in ("unfiltered", "class=SNcc"):
        r = res[name]
        print(f"| neighbors k=10, {name} | {r['n']} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.1f} |")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
