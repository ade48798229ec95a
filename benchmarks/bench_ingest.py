"""Batch ingest throughput of the catalogue (read-merge-encode-write) on SQLite or PostgreSQL.

    python -m benchmarks.bench_ingest --n 5000 --batch 500 [--database-url postgresql+psycopg://...]
    python -m benchmarks.bench_ingest --data ../shared/data/ztf_alerts/alerts.parquet   # real alert packets

New objects first (every light curve is new), then the same batches again (all duplicates:
nothing new is stored, every object is re-read, merged and re-encoded).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

from app.catalog import Catalog
from app.settings import Settings
from training.synthetic import SurveyConfig, generate_survey


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--data", help="light curves from a source training.data.load_source reads (default: synthetic)")
    p.add_argument("--database-url")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    url = a.database_url or f"sqlite:///{tmp / 'bench.db'}"
    if a.data:
        from training.data import load_source

        lcs = load_source(a.data)[: a.n]
    else:
        lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=a.n, seed=31337, min_detections=3))
    n_alerts = sum(len(lc) for lc in lcs)
    catalog = Catalog.open(Settings(database_url=url, index_dir=tmp / "index", threads=a.threads, sync_interval=0))
    gc.collect()
    gc.freeze()  # as the service does once it has started (app/main.py)
    try:
        for label in ("new objects", "re-ingest (duplicates)"):
            t0 = time.perf_counter()
            for start in range(0, len(lcs), a.batch):
                catalog.ingest(lcs[start : start + a.batch])
            dt = time.perf_counter() - t0
            print(
                f"{label:24s}: {len(lcs) / dt:7.0f} light curves/s, {n_alerts / dt:8.0f} alerts/s "
                f"({len(lcs)} light curves, {n_alerts} alerts, batches of {a.batch}, {url.split(':')[0]})"
            )
    finally:
        catalog.close()


if __name__ == "__main__":
    main()
