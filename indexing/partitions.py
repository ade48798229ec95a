"""The vectors of each class apart: a class-filtered search scans only the classes it asks for.

A class filter keeps a fraction of a large index (one class of seven: ~15 %). On the main HNSW graph
such a search has to over-fetch unfiltered neighbours and post-filter them, or fall back to an exact
scan of every match gathered from the whole storage (``python -m benchmarks.bench_index --sizes
1000000``: 47 ms p50, 102 ms p99 on a loaded 2-core machine). An HNSW graph per class was tried and
refused: a query far from the class (the neighbours of an object of another class) reached recall@10
0.65 at 1M, and 0.97 only at efSearch 2048. So each class keeps its vectors apart, 8-bit scalar
quantised (64 B per 64-d object: a scan of 190K takes ~1.2 ms on one core), and the best 4k
candidates of the scan are re-scored with the exact vectors of the main index, so the answer is
the exact top k of the class whenever those are among the candidates. The other filters (anomaly,
last detection, detections) are checked on the candidates, the fetch growing until k pass. Classes
too large to scan fast are left to the main graph, where they are common enough for over-fetching.

Built beside the main index for large HNSW indexes
(:attr:`indexing.index_core.IndexConfig.class_partitions_min`). Labels are the main index's: a
partition maps its rows back to them; tombstoned labels are skipped like any other failing candidate.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np


class ClassPartitions:
    """8-bit scalar-quantised scans by class code over labels of a main index, their candidates
    re-scored exactly (not thread-safe: the index's lock guards it).

    ``reference``: normalised vectors whose per-dimension range trains every partition's quantiser.
    ``exact(labels)``: the float vectors of main-index labels, for the re-scoring."""

    def __init__(self, dim: int, reference: np.ndarray, exact: Callable[[np.ndarray], np.ndarray]) -> None:
        self.dim, self.exact = dim, exact
        self.reference = np.ascontiguousarray(reference[: 20_000], dtype=np.float32)
        self.parts: dict[int, faiss.IndexScalarQuantizer] = {}
        self.labels: dict[int, np.ndarray] = {}  # code -> main-index label of each partition row
        self.sizes: dict[int, int] = {}

    def __len__(self) -> int:
        return sum(self.sizes.values())

    def add(self, codes: np.ndarray, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Add normalised ``vectors`` (main-index ``labels``) to the partitions of their class ``codes``
        (code -1, no class, goes nowhere: a class filter never matches it)."""
        for code in np.unique(codes).tolist():
            if code < 0:
                continue
            rows = np.flatnonzero(codes == code)
            part = self.parts.get(code)
            if part is None:
                part = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
                part.train(self.reference)
                self.parts[code] = part
                self.labels[code], self.sizes[code] = np.empty(max(1024, len(rows)), np.int64), 0
            part.add(np.ascontiguousarray(vectors[rows], dtype=np.float32))
            n = self.sizes[code]
            if n + len(rows) > len(self.labels[code]):
                grown = np.empty(max(2 * len(self.labels[code]), n + len(rows)), np.int64)
                grown[:n] = self.labels[code][:n]
                self.labels[code] = grown
            self.labels[code][n : n + len(rows)] = labels[rows]
            self.sizes[code] = n + len(rows)

    def size(self, codes: list[int]) -> int:
        return sum(self.sizes.get(c, 0) for c in codes)

    def search(
        self, q: np.ndarray, k: int, codes: list[int], passes: Callable[[np.ndarray], np.ndarray], max_fetch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, labels), (n, k) best first (-1 where fewer pass), over the partitions of
        ``codes``; ``passes(labels)`` says which candidate labels pass the other filters (and are alive).
        Each partition's fetch (4k candidates by their quantised scores, then re-scored exactly) grows
        4x while fewer than k of its candidates pass, up to ``max_fetch``."""
        nq = len(q)
        sims = np.full((nq, k), -np.inf, np.float32)
        labs = np.full((nq, k), -1, np.int64)
        for code in codes:
            part, size = self.parts.get(code), self.sizes.get(code, 0)
            if part is None or size == 0:
                continue
            todo, fetch = np.arange(nq), min(size, max(4 * k, 64))
            while len(todo):
                _, rows = part.search(np.ascontiguousarray(q[todo]), fetch)
                cand = np.where(rows >= 0, self.labels[code][np.maximum(rows, 0)], -1)
                ok = (cand >= 0) & passes(np.maximum(cand, 0).ravel()).reshape(cand.shape)
                flat = np.maximum(cand, 0).ravel()
                vecs = self.exact(flat).reshape(len(todo), fetch, self.dim)
                d = np.einsum("qfd,qd->qf", vecs, q[todo]).astype(np.float32)  # exact cosine of each candidate
                d[~ok] = -np.inf
                order = np.argsort(-d, axis=1, kind="stable")
                d, cand, ok = (np.take_along_axis(a, order, axis=1) for a in (d, cand, ok))
                short = ok.sum(axis=1) < min(k, size)
                done = ~short | (fetch >= min(size, max_fetch))
                for i, qi in enumerate(todo.tolist()):
                    if done[i]:
                        s, lab = d[i][ok[i]][:k], cand[i][ok[i]][:k]
                        both_s = np.concatenate([sims[qi], s])
                        both_l = np.concatenate([labs[qi], lab])
                        top = np.argsort(-both_s, kind="stable")[:k]
                        sims[qi], labs[qi] = both_s[top], both_l[top]
                todo, fetch = todo[~done], min(size, fetch * 4)
        labs[~np.isfinite(sims)] = -1
        return sims, labs
