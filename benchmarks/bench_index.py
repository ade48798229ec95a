"""Vector index benchmark: recall@10 vs exact search, single-query latency p50/p99, build time,
bytes per object, for each index kind and catalogue size.

    python -m benchmarks.bench_index --sizes 10000 100000 1000000 --kinds flat hnsw ivf_sq8
    python -m benchmarks.bench_index --vectors fingerprints.npy   # real (n, 64) float32 fingerprints

Synthetic data (default): 64-d mixture of 20 anisotropic Gaussian clusters whose means depend on
one of 7 classes, L2-normalised — closer to learned fingerprints than uniform noise.
"""

from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np

from indexing.vector_index import IndexConfig, VectorIndex, configure_faiss

N_CLASSES, N_CLUSTERS = 7, 20
CLASS_NAMES = ["SNIa", "SNcc", "CV", "AGN", "TDE", "SLSN", "Other"]


def synthetic(n: int, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, class index) from a class-dependent anisotropic Gaussian mixture."""
    rng = np.random.default_rng(1234)  # the mixture itself is fixed; ``seed`` draws samples
    class_means = rng.standard_normal((N_CLASSES, dim)) * 1.5
    cluster_class = rng.integers(0, N_CLASSES, N_CLUSTERS)
    means = class_means[cluster_class] + rng.standard_normal((N_CLUSTERS, dim)) * 0.8
    rot = [np.linalg.qr(rng.standard_normal((dim, dim)))[0] for _ in range(N_CLUSTERS)]
    scales = [np.exp(rng.uniform(np.log(0.05), np.log(1.0), dim)) for _ in range(N_CLUSTERS)]
    weights = rng.dirichlet(np.ones(N_CLUSTERS) * 2)
    r = np.random.default_rng(seed)
    comp = r.choice(N_CLUSTERS, n, p=weights)
    x = np.empty((n, dim), np.float32)
    for c in range(N_CLUSTERS):
        idx = np.flatnonzero(comp == c)
        x[idx] = means[c] + (r.standard_normal((len(idx), dim)) * scales[c]) @ rot[c]
    faiss.normalize_L2(x)
    return x, cluster_class[comp]


def bench(kind: str, x: np.ndarray, cls: np.ndarray, q: np.ndarray, gt: np.ndarray, cfg: dict, k: int = 10) -> dict:
    n = len(x)
    vi = VectorIndex(x.shape[1], IndexConfig(kind=kind, **cfg))
    ids = [f"ZTF{i:09d}" for i in range(n)]
    t0 = time.perf_counter()
    vi.build(ids, x, labels=[CLASS_NAMES[c] for c in cls], anomaly_scores=np.random.default_rng(0).random(n))
    build_s = time.perf_counter() - t0
    faiss_bytes = len(faiss.serialize_index(vi._core.index))
    attr_bytes = sum(
        a.nbytes for a in (vi._core.alive, vi._core.cls, vi._core.anomaly, vi._core.last_jd, vi._core.ndet)
    )
    pos = {o: i for i, o in enumerate(ids)}
    for i in range(20):  # warm-up
        vi.search(q[i], k)
    lat, hits = [], 0
    for i in range(len(q)):
        t = time.perf_counter()
        res = vi.search(q[i], k)
        lat.append(time.perf_counter() - t)
        hits += len({pos[r.object_id] for r in res} & set(gt[i, :k].tolist()))
    flat_lat, f_hits, members = [], 0, {c: np.flatnonzero(cls == c) for c in range(N_CLASSES)}
    for i in range(min(len(q), 300)):  # filtered: one class (~1/7 of the catalogue)
        c = i % N_CLASSES
        t = time.perf_counter()
        res = vi.search(q[i], k, classes=[CLASS_NAMES[c]])
        flat_lat.append(time.perf_counter() - t)
        assert len(res) == k
        exact_f = members[c][np.argsort(-(x[members[c]] @ q[i]), kind="stable")[:k]]
        f_hits += len({pos[r.object_id] for r in res} & set(exact_f.tolist()))
    t = time.perf_counter()
    vi.search_batch(q, k)
    batch_s = time.perf_counter() - t
    lat_ms, f_ms = np.array(lat) * 1e3, np.array(flat_lat) * 1e3
    return {
        "kind": vi.kind,
        "n": n,
        "build_s": round(build_s, 2),
        "bytes_per_object": round((faiss_bytes + attr_bytes) / n, 1),
        "recall@10": round(hits / (len(q) * k), 4),
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 3),
        "filtered_recall@10": round(f_hits / (len(flat_lat) * k), 4),
        "filtered_p50_ms": round(float(np.percentile(f_ms, 50)), 3),
        "filtered_p99_ms": round(float(np.percentile(f_ms, 99)), 3),
        "batch_qps": round(len(q) / batch_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivf_sq8"])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--vectors", help=".npy (n, dim) float32 fingerprints instead of synthetic data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hnsw-m", type=int, default=IndexConfig.hnsw_m)
    ap.add_argument("--ef-construction", type=int, default=IndexConfig.hnsw_ef_construction)
    ap.add_argument("--ef-search", type=int, default=IndexConfig.hnsw_ef_search)
    ap.add_argument("--nprobe", type=int, default=IndexConfig.ivf_nprobe)
    ap.add_argument("--blas-sweep", action="store_true", help="also time batched flat search vs BLAS threshold")
    ap.add_argument("--json", help="append results as JSON lines to this file")
    a = ap.parse_args()
    cfg = {
        "omp_threads": a.threads,
        "hnsw_m": a.hnsw_m,
        "hnsw_ef_construction": a.ef_construction,
        "hnsw_ef_search": a.ef_search,
        "ivf_nprobe": a.nprobe,
        "ivf_min_train": 1000,
    }
    configure_faiss(IndexConfig(omp_threads=a.threads))
    default_blas = faiss.cvar.distance_compute_blas_threshold
    if a.vectors:
        pool = np.load(a.vectors).astype(np.float32)
        pool = pool[np.linalg.norm(pool, axis=1) > 0]
        faiss.normalize_L2(pool)
        rng = np.random.default_rng(0)
        perm = rng.permutation(len(pool))
        q_all, pool = pool[perm[: a.queries]], pool[perm[a.queries :]]
        cls_pool = rng.integers(0, N_CLASSES, len(pool))
    print(f"faiss {faiss.__version__}, omp threads {faiss.omp_get_max_threads()}")
    for n in a.sizes:
        if a.vectors:
            if n > len(pool):
                print(f"skip {n}: only {len(pool)} vectors")
                continue
            x, cls, q = pool[:n], cls_pool[:n], q_all
        else:
            x, cls = synthetic(n, seed=1)
            q, _ = synthetic(a.queries, seed=2)
        exact = faiss.IndexFlatIP(x.shape[1])
        exact.add(x)
        t = time.perf_counter()
        _, gt = exact.search(q, 10)
        print(f"n={n}: exact ground truth {time.perf_counter() - t:.2f}s for {len(q)} queries")
        if a.blas_sweep:
            for thr in (20, 128_000):
                faiss.cvar.distance_compute_blas_threshold = thr
                for nq in (32, 256, 1000):
                    t = time.perf_counter()
                    exact.search(q[:nq], 10)
                    print(f"  blas_threshold={thr} nq={nq}: {(time.perf_counter() - t) / nq * 1e6:.0f} us/query")
            faiss.cvar.distance_compute_blas_threshold = default_blas
        del exact
        for kind in a.kinds:
            r = bench(kind, x, cls, q, gt, cfg)
            print(json.dumps(r), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
