"""ShardedIndex (in-process shards): the same answers as one VectorIndex on the same writes."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from indexing.shards import ShardedIndex, merge, shard_of
from indexing.vector_index import IndexConfig, VectorIndex

DIM = 32
FILTERS = [
    {},
    {"classes": ["A"]},
    {"classes": "B", "anomaly_min": 0.3},
    {"anomaly_min": 0.5, "min_detections": 10},
    {"since": 20.0, "until": 60.0},
    {"exclude_ids": "first50"},
    {"classes": ["A", "C"], "until": 50.0, "exclude_ids": "first50"},
    {"classes": ["C"], "anomaly_max": 0.004},  # few matches: fewer than k results
]
# default: filtered searches brute-force the subset; small limits: faiss with a selector, then over-fetch
CONFIGS = [IndexConfig(kind="flat"), IndexConfig(kind="flat", exact_scan_max=500, exact_subset_max=200)]


def _data(n: int, seed: int, duplicates: bool):
    rng = np.random.default_rng(seed)
    if duplicates:  # a quarter distinct vectors, the rest copies of them: exact score ties
        base = rng.standard_normal((n // 4, DIM)).astype(np.float32)
        x = np.concatenate([base, base[rng.integers(0, len(base), n - len(base))]])
    else:
        x = rng.standard_normal((n, DIM)).astype(np.float32)
    ids = [f"ZTF{i:08d}" for i in rng.permutation(10**7)[:n]]
    attrs = dict(
        labels=[["A", "B", "C", None][i % 4] for i in range(n)],
        anomaly_scores=np.round(rng.random(n), 2),
        last_jd=rng.uniform(0, 100, n),
        n_detections=rng.integers(1, 30, n),
    )
    q = np.concatenate([x[rng.integers(0, n, 25)], rng.standard_normal((25, DIM)).astype(np.float32)])
    return ids, x, attrs, q


def _twins(config: IndexConfig, ids, x, attrs, n_shards: int = 4):
    """One index and a sharded one after the same build, upserts (with and without attributes) and deletes."""
    one, sharded = VectorIndex(DIM, config), ShardedIndex(DIM, n_shards, config)
    for ix in (one, sharded):
        ix.build(ids, x, **attrs)
        ix.upsert(ids[:300], np.roll(x[300:600], 1, axis=1), labels=attrs["labels"][300:600])  # moved, new class
        ix.upsert(ids[600:700], x[700:800, ::-1])  # attributes kept
        ix.upsert(ids[:20], -2 * x[:20])  # upserted again
        ix.delete(ids[1000:1400] + ["no-such-object"])
    return one, sharded


def _filters(f: dict, ids: list[str]) -> dict:
    return f | {"exclude_ids": ids[:50]} if f.get("exclude_ids") == "first50" else f


@pytest.mark.parametrize("config", CONFIGS, ids=["exact-subset", "faiss-selector"])
def test_sharded_flat_returns_the_single_index_answer(config):
    ids, x, attrs, q = _data(4000, seed=1, duplicates=False)
    one, sharded = _twins(config, ids, x, attrs)
    assert len(one) == len(sharded) == 3600
    for f in FILTERS:
        f = _filters(f, ids)
        for k in (1, 10, 37):
            a, b = one.search_batch(q, k, **f), sharded.search_batch(q, k, **f)
            assert [[n.object_id for n in r] for r in a] == [[n.object_id for n in r] for r in b]
            # the scores agree to float32 rounding: where a shard and the single index take different
            # paths (numpy over a subset, over all rows, faiss with a selector) the dot products differ by an ulp
            for ra, rb in zip(a, b, strict=True):
                np.testing.assert_allclose([n.score for n in ra], [n.score for n in rb], rtol=0, atol=1e-6)
        assert [n.object_id for n in sharded.search(q[3], 10, **f)] == [n.object_id for n in one.search(q[3], 10, **f)]
    few = sharded.search_batch(q, 10, classes=["C"], anomaly_max=0.004)
    assert any(0 < len(r) < 10 for r in few)  # the few-matches case was exercised


@pytest.mark.parametrize("config", CONFIGS, ids=["exact-subset", "faiss-selector"])
def test_sharded_flat_with_ties(config):
    """Exact ties (duplicate vectors): a right answer, the same as the single index's up to the order
    of tied objects: the same scores; every object scoring above the k-th score in both; the rest
    objects of exactly the k-th score. (Which tied objects survive the cut at k is an accident of
    faiss' heap, or of numpy's partition, in the single index too.)"""
    ids, x, attrs, q = _data(4000, seed=2, duplicates=True)
    one, sharded = _twins(config, ids, x, attrs)
    eps = 1e-6  # float32 rounding between computation paths (see the test above)
    cut = 0
    for f in FILTERS:
        f = _filters(f, ids)
        a, b, wide = one.search_batch(q, 10, **f), sharded.search_batch(q, 10, **f), one.search_batch(q, 200, **f)
        for ra, rb, rw in zip(a, b, wide, strict=True):
            np.testing.assert_allclose([n.score for n in ra], [n.score for n in rb], rtol=0, atol=eps)
            if not ra:
                assert not rb
                continue
            true = {n.object_id: n.score for n in rw}  # every object matching the filter near the top
            last = ra[-1].score
            assert len({n.object_id for n in rb}) == len(rb) and all(n.object_id in true for n in rb)
            assert {o for o in true if true[o] > last + eps} == {
                n.object_id for n in rb if true[n.object_id] > last + eps
            }
            assert all(abs(true[n.object_id] - last) <= eps for n in rb if true[n.object_id] <= last + eps)
            cut += sum(abs(s - last) <= eps for s in true.values()) > sum(abs(n.score - last) <= eps for n in ra)
    assert cut > 20  # ties cut by k were there to break
    assert sharded.search_batch(q, 10) == sharded.search_batch(q, 10)  # deterministic


def test_merge_breaks_ties_by_the_later_write():
    rows = [[("a", 0.9, 5), ("b", 0.5, 1)], [("c", 0.9, 7), ("d", 0.5, 9)], []]
    assert [n.object_id for n in merge(rows, 3)] == ["c", "a", "d"]


def test_api_routing_and_validation():
    ids, x, attrs, _ = _data(800, seed=3, duplicates=False)
    one, sharded = _twins(IndexConfig(kind="flat"), ids, x, attrs, n_shards=3)
    assert shard_of("ZTF18abcdefg", 7) == zlib.crc32(b"ZTF18abcdefg") % 7  # stable across processes
    sizes = [s.size() for s in sharded._shards]
    assert sum(sizes) == len(sharded) == len(one) and min(sizes) > 0.2 * len(one)
    for o in ids[:30] + ids[1000:1010] + ["nope"]:
        assert (o in sharded) == (o in one)
        assert sharded.get_attributes(o) == one.get_attributes(o)
        va, vb = one.get_vector(o), sharded.get_vector(o)
        assert (va is None and vb is None) or np.array_equal(va, vb)
        if o in one:  # each object in exactly one shard: the one its hash names
            assert [s.contains(o) for s in sharded._shards] == [i == shard_of(o, 3) for i in range(3)]
    assert sharded.get_attributes(ids[650])["label"] == attrs["labels"][650]  # kept by an upsert without attributes
    assert set(sharded.class_names) == set(one.class_names) == {"A", "B", "C"}
    assert sharded.delete(ids[:5] + ids[:5] + ["nope"]) == 5 and len(sharded) == len(one) - 5
    before = len(sharded)
    bad = x[:3].copy()
    bad[2] = 0.0
    with pytest.raises(ValueError):
        sharded.upsert(["n1", "n2", "n3"], bad)
    with pytest.raises(ValueError):
        sharded.upsert(["n1", ""], x[:2])
    with pytest.raises(ValueError):
        sharded.upsert(["n1", "n2"], x[:2], labels=["A"])
    with pytest.raises(ValueError):
        sharded.search(np.zeros(DIM))
    assert len(sharded) == before and "n1" not in sharded  # a rejected batch changes nothing
    assert sharded.search_batch(x[:2], 0) == [[], []]
    assert sharded.stats()["count"] == before
    sharded.close()


def _clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((20, DIM)) * 1.5
    scales = np.exp(rng.uniform(np.log(0.05), np.log(1.0), (20, DIM)))
    comp = rng.integers(0, 20, n)
    x = (means[comp] + rng.standard_normal((n, DIM)) * scales[comp]).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_sharded_hnsw_recall_matches_one_hnsw():
    n, k = 30_000, 10
    x = _clustered(n + 300, seed=4)
    x, q = x[:n], x[n:]
    ids = [f"o{i}" for i in range(n)]
    truth = np.argsort(-(q @ x.T), axis=1)[:, :k]
    cfg = IndexConfig(kind="hnsw", hnsw_ef_search=32, hnsw_m=16)
    one, sharded = VectorIndex(DIM, cfg), ShardedIndex(DIM, 4, cfg)
    one.build(ids, x)
    sharded.build(ids, x)
    pos = {o: i for i, o in enumerate(ids)}

    def recall(ix) -> float:
        rows = ix.search_batch(q, k)
        return float(
            np.mean(
                [len({pos[nb.object_id] for nb in r} & set(t.tolist())) / k for r, t in zip(rows, truth, strict=True)]
            )
        )

    r1, r4 = recall(one), recall(sharded)
    assert r4 >= r1 - 0.005, (r1, r4)
    assert r1 > 0.8  # a real approximate index, not a degenerate one
