"""Store benchmark: SQL ingest throughput (SQLite and PostgreSQL) and the rebuild of the vector
index from N fingerprints stored in SQLite.

    python -m benchmarks.bench_store                              # SQLite + local PostgreSQL
    python -m benchmarks.bench_store --rebuild-n 1000000 --rebuild-kind hnsw
    python -m benchmarks.bench_store --postgres-admin-url postgresql+psycopg://user@host/postgres

PostgreSQL: a throwaway database is created through the admin URL and dropped afterwards
(skipped when no server answers).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._postgres import temporary_database
from indexing.history import History
from indexing.store import FingerprintRow, IngestBatch, ObjectState, Store
from indexing.sync import rebuild_from_store
from indexing.vector_index import IndexConfig

CLASSES = ["SNIa", "SNcc", "CV", "AGN", "TDE", "SLSN", "Other"]


def batches(n_objects: int, alerts_per: int, batch: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for s in range(0, n_objects, batch):
        objs, histories, fps = [], {}, []
        for i in range(s, min(n_objects, s + batch)):
            oid = f"ZTF{i:09d}"
            jd = 2460000.0 + np.sort(rng.uniform(0, 100, alerts_per))
            objs.append(ObjectState(oid, survey="ztf", ra=float(rng.uniform(0, 360)), dec=float(rng.uniform(-30, 90))))
            histories[oid] = History(
                jd,
                np.arange(alerts_per, dtype=np.uint8) % 2,
                np.full(alerts_per, 1e3),
                np.full(alerts_per, 30.0),
                ("g", "r"),
            )
            fps.append(
                FingerprintRow(
                    oid,
                    rng.standard_normal(dim).astype(np.float32),
                    CLASSES[i % 7],
                    {c: 1 / 7 for c in CLASSES},
                    float(rng.random()),
                )
            )
        yield IngestBatch(objs, histories, "bench", fps)


def bench_ingest(url: str, name: str, a) -> None:
    store = Store(url)
    store.migrate()
    n_alerts = a.objects * a.alerts_per_object
    for label in ("new", "duplicate"):
        t = time.perf_counter()
        for batch in batches(a.objects, a.alerts_per_object, a.batch, a.dim):
            store.write(batch)
        dt = time.perf_counter() - t
        print(
            f"{name:10s} write {label:9s}: {a.objects} objects ({n_alerts} detections) with their light curves and "
            f"fingerprints in {dt:.2f}s = {a.objects / dt:,.0f} objects/s, {n_alerts / dt:,.0f} detections/s, "
            f"{3 * a.objects / dt:,.0f} rows/s (batch {a.batch} objects)",
            flush=True,
        )
    store.close()


def bench_rebuild(a) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'rebuild.db'}")
        store.migrate()
        rng = np.random.default_rng(1)
        t = time.perf_counter()
        chunk = 20_000
        for s in range(0, a.rebuild_n, chunk):
            m = min(chunk, a.rebuild_n - s)
            ids = [f"ZTF{i:09d}" for i in range(s, s + m)]
            vec = rng.standard_normal((m, a.dim)).astype(np.float32)
            fps = [FingerprintRow(o, vec[i], CLASSES[i % 7], None, float(i % 1000) / 1000) for i, o in enumerate(ids)]
            store.write(IngestBatch(model_version="bench", fingerprints=fps))
        fill = time.perf_counter() - t
        print(f"sqlite fill {a.rebuild_n:,} objects+fingerprints: {fill:.1f}s ({2 * a.rebuild_n / fill:,.0f} rows/s)")
        t = time.perf_counter()
        n = sum(len(b.object_ids) for b in store.iter_fingerprints("bench", batch_size=50_000))
        read = time.perf_counter() - t
        print(f"sqlite stream {n:,} fingerprints (batch 50k): {read:.1f}s ({n / read:,.0f} rows/s)")
        t = time.perf_counter()
        index, _ = rebuild_from_store(
            store, "bench", config=IndexConfig(kind=a.rebuild_kind, omp_threads=2), progress=False
        )
        total = time.perf_counter() - t
        print(f"rebuild {len(index):,} fingerprints from SQLite into {index.kind}: {total:.1f}s", flush=True)
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=20_000)
    ap.add_argument("--alerts-per-object", type=int, default=10)
    ap.add_argument("--batch", type=int, default=500, help="objects per ingest() call")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--postgres-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--rebuild-n", type=int, default=1_000_000, help="0 to skip the rebuild benchmark")
    ap.add_argument("--rebuild-kind", default="flat", choices=["auto", "flat", "hnsw", "ivf_sq8"])
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bench_ingest(f"sqlite:///{Path(tmp) / 'bench.db'}", "sqlite", a)
    if not a.skip_postgres:
        with temporary_database(a.postgres_admin_url) as url:
            if url is not None:
                bench_ingest(url, "postgresql", a)
    if a.rebuild_n:
        bench_rebuild(a)


if __name__ == "__main__":
    main()
