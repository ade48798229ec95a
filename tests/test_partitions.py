"""Class partitions: a class-filtered search over the partitions of the classes asked for (8-bit
scans, candidates re-scored exactly) finds what an exact search over the matching objects finds,
other filters included."""

from __future__ import annotations

import numpy as np

from indexing.classes import ClassFilter
from indexing.partitions import ClassPartitions


def _data(n: int = 6000, dim: int = 16, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim)) * 2
    x = centres[rng.integers(0, 12, n)] + rng.standard_normal((n, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x, rng.integers(0, classes, n), rng.random(n)


def _exact(x, q, ok, k):
    sims = q @ x.T
    sims[:, ~ok] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_class_partitions_find_the_exact_neighbours_of_the_classes_asked_for():
    x, codes, score = _data()
    labels = np.arange(len(x)) + 100  # main-index labels need not be rows
    parts = ClassPartitions(x.shape[1], x, lambda labs: x[labs - 100])
    parts.add(codes[:4000], x[:4000], labels[:4000])
    parts.add(codes[4000:], x[4000:], labels[4000:])  # grown in two steps, as upserts do
    assert len(parts) == len(x) and parts.size([0, 2]) == int(np.isin(codes, [0, 2]).sum())
    q = x[np.random.default_rng(1).choice(len(x), 50, replace=False)]
    for wanted, bound in (([1], None), ([0, 2], None), ([3], 0.7)):
        ok = np.isin(codes, wanted) & (score >= (bound or 0))

        def passes(labs, ok=ok):
            return ok[labs - 100]

        sims, got = parts.search(q, 10, wanted, passes, max_fetch=1024)
        want = _exact(x, q, ok, 10) + 100
        recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got.tolist(), want.tolist(), strict=True)])
        assert recall == 1.0, (wanted, bound, recall)  # exact
        assert ok[got[got >= 0] - 100].all()  # only objects that pass
        assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first


def test_a_class_without_members_or_too_few_passing_gives_what_there_is():
    x, codes, _ = _data(n=500)
    parts = ClassPartitions(x.shape[1], x, lambda labs: x[labs])
    parts.add(codes, x, np.arange(len(x)))
    sims, labs = parts.search(x[:3], 10, [7], lambda labs: np.ones(len(labs), bool), max_fetch=256)
    assert (labs == -1).all()
    only = np.flatnonzero(codes == 1)[:4]  # four objects pass
    sims, labs = parts.search(x[:3], 10, [1], lambda labs: np.isin(labs, only), max_fetch=4096)
    assert all(set(row[row >= 0].tolist()) == set(only.tolist()) for row in labs)


def _recall(got, want) -> float:
    return float(np.mean([len(set(g) & set(w)) / max(len(w), 1) for g, w in zip(got, want, strict=True)]))


def test_a_large_hnsw_index_answers_class_filters_from_its_class_partitions(tmp_path):
    import time

    from indexing.persistence import load_index, save_index
    from indexing.vector_index import IndexConfig, VectorIndex

    x, codes, score = _data(n=12_000, dim=16, classes=4, seed=3)
    names = ["SNIa/SNIa", "SNcc/SNII", "SNcc/SNIIn", "AGN/AGN"]
    ids = [f"o{i}" for i in range(len(x))]
    cfg = IndexConfig(kind="hnsw", class_partitions_min=5_000, exact_subset_max=500, exact_scan_max=1_000)
    vi = VectorIndex(16, cfg)
    vi.build(ids[:10_000], x[:10_000], labels=[names[c] for c in codes[:10_000]], anomaly_scores=score[:10_000])
    assert vi._core.partitions is not None and len(vi._core.partitions) == 10_000
    vi.upsert(ids[10_000:], x[10_000:], labels=[names[c] for c in codes[10_000:]], anomaly_scores=score[10_000:])
    vi.update_attributes("o7", label="AGN/AGN")  # moves class: found under its new one
    codes = codes.copy()
    codes[7] = 3
    q = x[np.random.default_rng(4).choice(len(x), 40, replace=False)]

    def check(index):
        mixed = ClassFilter(frozenset({"SNIa"}), frozenset({"SNIIn"}))  # a coarse class and a fine one
        for wanted, kw in ((["SNcc"], {}), (["AGN"], {"anomaly_min": 0.5}), (mixed, {})):
            cf = ClassFilter.of(wanted)
            want_codes = [i for i, n in enumerate(names) if n in cf.keys(names)]
            ok = np.isin(codes, want_codes) & (score >= kw.get("anomaly_min", 0))
            want = [[f"o{j}" for j in row] for row in _exact(x, q, ok, 10)]
            got = [[h.object_id for h in row] for row in index.search_batch(q, 10, classes=wanted, **kw)]
            assert _recall(got, want) >= 0.99, (wanted, kw)
            assert all(ok[int(o[1:])] for row in got for o in row)

    masks = []
    real_mask = vi._match_mask
    vi._match_mask = lambda *a: masks.append(1) or real_mask(*a)  # the route that scans every label
    check(vi)
    assert masks == []  # every query was answered from the class partitions
    assert vi.search(x[7], 3, classes=["AGN"])[0].object_id == "o7"
    save_index(vi, tmp_path, model_version="m1", sql_marker="marker")
    loaded, _ = load_index(tmp_path, model_version="m1", sql_marker="marker", dim=16, config=cfg)
    deadline = time.monotonic() + 60
    while loaded._core.partitions is None and time.monotonic() < deadline:  # built in the background
        time.sleep(0.1)
    assert loaded._core.partitions is not None and len(loaded._core.partitions) >= len(x)
    check(loaded)
