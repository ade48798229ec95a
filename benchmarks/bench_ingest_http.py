"""Ingest over HTTP beside the in-process encoder, on the same light curves, in one run.

    python -m benchmarks.bench_ingest_http --data ../shared/data/ztf_bts_dev.parquet
    python -m benchmarks.bench_ingest_http --n 3000        # a synthetic survey instead
    python -m benchmarks.bench_ingest_http --data ... --database-url postgresql+psycopg://postgres@127.0.0.1:5432/DB

1. the encoder alone: ``Encoder.encode`` of the light curves in batches of ``--batch`` (the service's
   settings: bundled checkpoint, ``precision=auto``, 2 threads);
2. the service (``python -m app.server``, a fresh SQLite database unless ``--database-url``): batch
   ``POST /v1/alerts`` of the same light curves as JSON, ``--clients`` at a time; each request is
   answered after its SQL commit. The bodies are serialised before the clock starts.

Prints light curves per second of both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks._service import running_service


def load(a) -> list:
    if a.data:
        from training.data import load_source

        return load_source(a.data)[: a.n]
    from training.synthetic import SurveyConfig, generate_survey

    return generate_survey(SurveyConfig(survey="ztf", n_objects=a.n, seed=31337, min_detections=3))


def encoder_rate(lcs: list, batch: int, threads: int) -> float:
    from encoder.inference import Encoder

    enc = Encoder.load(None, threads=threads, precision="auto")
    enc.encode(lcs[:batch])  # warm-up
    t0 = time.perf_counter()
    for s in range(0, len(lcs), batch):
        enc.encode(lcs[s : s + batch])
    return len(lcs) / (time.perf_counter() - t0)


def http_rate(bodies: list[bytes], warm: bytes, n: int, url_db: str, tmp: Path, clients: int) -> float:
    env = {
        "RTF_DATABASE_URL": url_db,
        "RTF_INDEX_DIR": str(tmp / "index"),
        "RTF_DEMO": "0",
        "RTF_SYNC_INTERVAL": "0",
        "RTF_MAX_BODY_BYTES": str(64 * 2**20),
    }
    headers = {"Content-Type": "application/json"}
    with running_service(env, tmp / "server.log") as base, httpx.Client(timeout=600) as http:

        def post(body: bytes) -> None:
            r = http.post(base + "/v1/alerts", content=body, headers=headers)
            r.raise_for_status()

        post(warm)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, bodies))
        return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="light curves training.data.load_source reads (default: a synthetic survey)")
    p.add_argument("--n", type=int, default=3000, help="at most this many light curves")
    p.add_argument("--batch", type=int, default=250, help="light curves per request / encoder call")
    p.add_argument("--clients", type=int, default=2, help="requests in flight at once")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--database-url", help="default: a fresh SQLite file")
    a = p.parse_args()
    from app.jsonform import LightCurveIn

    lcs = load(a)
    n_det = sum(len(lc) for lc in lcs)
    bodies = [
        json.dumps(
            {
                "lightcurves": [
                    LightCurveIn.from_lightcurve(lc).model_dump(mode="json", exclude_none=True)
                    for lc in lcs[s : s + a.batch]
                ]
            }
        ).encode()
        for s in range(0, len(lcs), a.batch)
    ]
    # warm-up: a full batch of other objects (so the body-decoding worker has started, as in a running service)
    warm = json.dumps(
        {
            "lightcurves": [
                LightCurveIn.from_lightcurve(lc).model_dump(mode="json", exclude_none=True)
                | {"object_id": f"warm-up-{i}"}
                for i, lc in enumerate(lcs[: a.batch])
            ]
        }
    ).encode()
    tmp = Path(tempfile.mkdtemp(prefix="rtf-bench-"))
    enc = encoder_rate(lcs, a.batch, a.threads)
    http = http_rate(bodies, warm, len(lcs), a.database_url or f"sqlite:///{tmp / 'rtf.db'}", tmp, a.clients)
    db = (a.database_url or "sqlite").split(":")[0].split("+")[0]
    print(f"{len(lcs)} light curves, {n_det / len(lcs):.1f} detections each, batches of {a.batch}, {db}")
    print(f"encoder alone (in process)        : {enc:7.0f} light curves/s")
    print(
        f"POST /v1/alerts ({a.clients} clients, HTTP)   : {http:7.0f} light curves/s  ({http / enc:.2f}x the encoder)"
    )


if __name__ == "__main__":
    main()
