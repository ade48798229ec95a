"""The anomaly ranking at catalogue scale: rebuild time, experts' answers and re-ranked pages over HTTP.

    python -m benchmarks.bench_anomalies --n 100000 --workdir var/bench-anomalies100k

1. Build (skipped when the workdir's database holds ``--n`` objects): ``--n`` objects written straight
   into SQL (no light curves, no encoder: what is timed is the ranking and the pages), fingerprints drawn
   around 13 class centres with the class shares of a synthetic ZTF survey and served as the bundled
   checkpoint serves them (the model's numbers, then 2 x fine-class probabilities drawn around the class),
   detection counts drawn geometric (median 5), and the model's score drawn uniform; every fingerprint
   unranked, as after a re-encoding.
2. The full ranking in-process (``app.ranking.AnomalyRanking.rebuild``): read from SQL, rank, write back.
3. The real service (uvicorn, one process, ``RTF_THREADS=1``) on that database: ``--answers`` expert
   answers (``POST /v1/anomalies/{id}/feedback``, on the top unanswered object each time, alternating
   labels), then ``GET /v1/anomalies`` pages of 50 of the re-ranked list: the first page, pages deep in
   the list (by cursor) and pages filtered by class. Target: p99 <= 50 ms at 100K objects.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import httpx
import numpy as np

from tests._server import Server

ROOT = Path(__file__).resolve().parents[1]
SHARES = {  # a synthetic ZTF survey's (rtf-synth --n 3000 --seed 2026)
    "SNIa": 1295, "SNII": 447, "AGN": 381, "CV": 309, "SNIbc": 208, "Periodic": 123, "SNIIn": 96,
    "SLSN": 66, "TDE": 24, "Flare": 19, "Microlensing": 16, "PISN": 8, "KN": 3,
}  # fmt: skip
COARSE = {"SNIbc": "SNcc", "SNII": "SNcc", "SNIIn": "SNcc", "KN": "Other", "Microlensing": "Other",
          "Flare": "Other", "PISN": "Other", "Periodic": "Other"}  # fmt: skip


def build(url: str, n: int, seed: int, version: str, dim: int, latent_dim: int, classes: list[str]) -> None:
    from tqdm import tqdm

    from indexing.store import FingerprintRow, IngestBatch, ObjectState, Store

    store = Store(url)
    store.migrate()
    if store.count_objects() >= n:
        return
    rng = np.random.default_rng(seed)
    names = list(SHARES)
    p = np.array([SHARES[k] for k in names], float)
    centres = rng.normal(size=(len(names), dim)).astype(np.float32)
    for start in tqdm(range(0, n, 5000), desc="write", unit="batch"):
        m = min(5000, n - start)
        kind = rng.choice(len(names), m, p=p / p.sum())
        vec = centres[kind] + rng.normal(0, 0.6, (m, dim)).astype(np.float32)
        if latent_dim < dim:  # the class-aware metric's appendix: 2 x probabilities, mostly on the class
            column = np.array([classes.index(names[k]) for k in kind])
            alpha = np.full((m, dim - latent_dim), 0.3) + 6.0 * np.eye(dim - latent_dim)[column]
            vec[:, latent_dim:] = 2 * _dirichlet(rng, alpha)
        detections = rng.geometric(0.13, m)
        ids = [f"obj{start + i:07d}" for i in range(m)]
        objects = [
            ObjectState(o, survey="ztf", last_jd=2460000.0 + (start + i) % 300, n_detections=int(detections[i]))
            for i, o in enumerate(ids)
        ]
        fps = [
            FingerprintRow(o, vec[i], COARSE.get(names[kind[i]], names[kind[i]]), None, None, names[kind[i]],
                           float(rng.random()))
            for i, o in enumerate(ids)
        ]  # fmt: skip
        store.write(IngestBatch(objects=objects, model_version=version, fingerprints=fps))
    store.close()


def _dirichlet(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """One Dirichlet draw per row of ``alpha``."""
    g = rng.gamma(alpha)
    return g / g.sum(axis=1, keepdims=True)


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench-anomalies100k")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--answers", type=int, default=20)
    ap.add_argument("--pages", type=int, default=300, help="requests of each kind of page")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    from app.ranking import AnomalyRanking
    from encoder.checkpoint import DEFAULT_CHECKPOINT
    from encoder.inference import describe
    from indexing.store import Store

    a.workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{a.workdir / 'rtf.db'}"
    info = describe(DEFAULT_CHECKPOINT)  # the service serves the bundled checkpoint: its version and dims
    build(url, a.n, a.seed, info.version, info.dim, info.latent_dim or info.dim, info.fine_classes)
    store = Store(url)
    t0 = time.perf_counter()
    moved = len(AnomalyRanking(store, info.version, info.latent_dim, info.fine_classes).rebuild())
    rebuild_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = len(AnomalyRanking(store, info.version, info.latent_dim, info.fine_classes).rebuild())
    rerank_s = time.perf_counter() - t0
    store.close()
    env = {"RTF_DATABASE_URL": url, "RTF_INDEX_DIR": str(a.workdir / "index"), "RTF_THREADS": "1"}
    rng = random.Random(a.seed)
    with Server(env, ready_timeout=900) as srv, httpx.Client(base_url=srv.url, timeout=120) as c:
        answer_ms, pages = [], {"first page": [], "deep pages (cursor)": [], "class filter": []}
        for i in range(a.answers):
            top = next(x for x in c.get("/v1/anomalies", params={"limit": 50}).json()["items"] if x["answer"] is None)
            t0 = time.perf_counter()
            r = c.post(f"/v1/anomalies/{top['object_id']}/feedback", json={"label": ["anomaly", "not_anomaly"][i % 2]})
            answer_ms.append((time.perf_counter() - t0) * 1e3)
            r.raise_for_status()
        cursors = []
        cursor = None
        for _ in range(40):  # cursors of pages 2..41
            cursor = c.get("/v1/anomalies", params={"limit": 50, "cursor": cursor}).json()["next_cursor"]
            cursors.append(cursor)
        for _ in range(a.pages):
            for name, params in (
                ("first page", {"limit": 50}),
                ("deep pages (cursor)", {"limit": 50, "cursor": rng.choice(cursors)}),
                ("class filter", {"limit": 50, "class": rng.choice(["TDE", "SNcc", "Other", "CV"])}),
            ):
                t0 = time.perf_counter()
                r = c.get("/v1/anomalies", params=params)
                pages[name].append((time.perf_counter() - t0) * 1e3)
                if r.status_code != 200 or not r.json()["items"]:
                    raise RuntimeError(f"{r.status_code}: {r.text[:300]}")
        objects = c.get("/readyz").json()["objects"]
    res = {
        "objects": objects,
        "rebuild from SQL, all scores new (s)": rebuild_s,
        "scores written": moved,
        "rebuild again, nothing moved (s)": rerank_s,
        "scores rewritten": again,
        "answer (POST feedback)": stats(answer_ms[1:]),  # the first one also built the service's ranking
        "first answer, ranking built on the way (ms)": answer_ms[0],
        **{f"GET /v1/anomalies, {k}": stats(v) for k, v in pages.items()},
    }
    print(json.dumps(res, indent=2))
    print("\n| request | n | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|")
    for name, r in res.items():
        if isinstance(r, dict):
            print(f"| {name} | {r['n']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} |")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
