"""How the vector index searches (a part of :class:`indexing.vector_index.VectorIndex`): the
unfiltered fast path, the filter mask, exact scans, the over-fetch on approximate kinds, the class
partitions, and merging hits into :class:`~indexing.index_core.Neighbor` lists."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast

import faiss
import numpy as np

from indexing.classes import ClassFilter
from indexing.filters import active, index_mask
from indexing.index_core import IndexConfig, Neighbor, RWLock, _bitmap_selector, _Core, _no_classes, normalize


class IndexSearch:
    """Searches over ``self._core`` under ``self._rw`` (see :mod:`indexing.vector_index`)."""

    dim: int
    config: IndexConfig
    _rw: RWLock
    _core: _Core
    _class_codes: dict[str, int]
    _class_names: list[str]

    def _storage(self, c: _Core) -> np.ndarray:
        """(ntotal, dim) view of the raw vectors of a flat or HNSW index (no copy)."""
        # HNSWFlat keeps its vectors in a flat index too
        flat = cast(faiss.IndexFlat, c.index if c.kind == "flat" else faiss.downcast_index(c.index.storage))
        n = flat.ntotal
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)

    def _vectors_of(self, c: _Core, labels: np.ndarray) -> np.ndarray:
        if c.kind == "ivf_sq8":
            return c.index.reconstruct_batch(np.ascontiguousarray(labels, dtype=np.int64))
        return self._storage(c)[labels]  # fancy indexing copies

    def _match_mask(self, c: _Core, f: dict[str, Any]) -> np.ndarray:
        n = c.n_labels
        columns = {"anomaly_score": c.anomaly, "last_jd": c.last_jd, "n_detections": c.ndet}

        def classes(cf: ClassFilter) -> np.ndarray:
            # a lookup table by code (5x faster than np.isin); its extra last slot, False, is where
            # code -1 (no label) lands
            allowed = np.zeros(len(self._class_codes) + 1, dtype=bool)
            allowed[[self._class_codes[key] for key in cf.keys(self._class_names)]] = True
            return allowed[c.cls[:n]]

        filters = {k: v for k, v in f.items() if k != "exclude_ids"}
        m = c.alive[:n] & index_mask(filters, n, columns.__getitem__, classes)
        for oid in f.get("exclude_ids") or ():
            lab = c.label_of.get(oid)
            if lab is not None:
                m[lab] = False
        return m

    def _faiss_search(self, c: _Core, q: np.ndarray, k: int, sel=None, selectivity: float = 1.0):
        kw: dict[str, Any] = {}
        if sel is not None:
            kw["sel"] = sel
        if c.kind == "hnsw":
            ef = max(self.config.hnsw_ef_search, k)
            if selectivity < 1.0:
                ef = max(k, min(4096, int(ef / max(selectivity, 1e-6))))
            params = faiss.SearchParametersHNSW(efSearch=ef, **kw)  # type: ignore[attr-defined]  # not in faiss's stubs
        elif c.kind == "ivf_sq8":
            nlist = c.index.nlist
            nprobe = min(nlist, self.config.ivf_nprobe)
            if selectivity < 1.0:
                # a filter passes ~selectivity of each probed list; probe more lists (sqrt keeps
                # latency bounded) and let the exact fallback cover queries that come back short
                nprobe = min(nlist, int(math.ceil(nprobe / math.sqrt(max(selectivity, 1e-6)))))
            # faiss wraps the constructors of search parameters to take their fields (and keep references
            # to the objects among them); the stubs declare only the bare constructor
            params = faiss.SearchParametersIVF(nprobe=nprobe, **kw)  # type: ignore[call-arg]
        else:
            if sel is None and c.gpu is not None:
                return c.gpu.search(q, k)
            params = faiss.SearchParameters(**kw) if kw else None
        return c.index.search(q, k, params=params)

    def _exact(self, c: _Core, q: np.ndarray, k: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if c.kind != "ivf_sq8" and 8 * len(labels) > c.n_labels:  # many rows: one pass, no gather copy
            sims = (self._storage(c) @ q.T).T[:, labels]
        else:
            sims = q @ self._vectors_of(c, labels).T
        k = min(k, len(labels))
        if k < len(labels):
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(len(labels)), (len(q), len(labels)))
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), labels[np.take_along_axis(part, order, axis=1)]

    def search(
        self, vector: np.ndarray, k: int = 10, *, exclude_ids: Iterable[str] = (), **filters: Any
    ) -> list[Neighbor]:
        """The k most similar objects (cosine, best first) among those matching every filter
        (:data:`indexing.filters.FILTERS`: ``classes`` (names, or a ClassFilter), ``anomaly_min`` /
        ``anomaly_max``, ``since`` / ``until`` (last JD), ``min_detections``; a bound is inclusive and an
        object without a value fails it); ``exclude_ids``: objects to leave out (e.g. the query object).
        Returns ``min(k, number of matches)`` neighbours.
        """
        return self.search_batch(
            np.asarray(vector, dtype=np.float32).reshape(1, -1), k, exclude_ids=exclude_ids, **filters
        )[0]

    def search_batch(self, vectors: np.ndarray, k: int = 10, **filters: Any) -> list[list[Neighbor]]:
        """:meth:`search` for a (n, dim) batch of queries with the same filters."""
        q = normalize(vectors, self.dim)
        excl = set(filters.pop("exclude_ids", ()) or ())
        filters = active(filters)
        with self._rw.read():
            c = self._core
            n_live = len(c.label_of)
            if k <= 0 or n_live == 0:
                return [[] for _ in range(len(q))]
            if not filters:
                # fast path: over-fetch to drop excluded ids; tombstones are excluded by a selector
                excl_labels = {c.label_of[o] for o in excl if o in c.label_of}
                want = min(k, n_live - len(excl_labels))
                if want <= 0:
                    return [[] for _ in range(len(q))]
                kk = min(k + len(excl_labels), n_live)
                sel = None
                if c.n_dead:
                    if c._alive_sel is None:
                        c._alive_sel = _bitmap_selector(c.alive[: c.n_labels])
                    sel = c._alive_sel
                sims, labs = self._faiss_search(c, q, kk, sel, selectivity=n_live / max(c.n_labels, 1))
                out = self._collect(c, sims, labs, k, excl_labels)
                if all(len(r) >= want for r in out):
                    return out
                filters["exclude_ids"] = excl  # rare (HNSW came back short): take the mask route
            else:
                filters["exclude_ids"] = excl
            if "classes" in filters and c.partitions is not None:
                found = self._class_partition_search(c, q, k, filters)
                if found is not None:
                    return found
            mask = self._match_mask(c, filters)
            matching = np.flatnonzero(mask)
            m = len(matching)
            if m == 0:
                return [[] for _ in range(len(q))]
            want = min(k, m)
            scan = c.kind != "ivf_sq8" and c.n_labels <= self.config.exact_scan_max
            if m <= self.config.exact_subset_max or scan:
                sims, labs = self._exact(c, q, k, matching)
                return self._collect(c, sims, labs, k, set())
            selectivity = m / max(c.n_labels, 1)
            if c.kind == "flat":  # exact scan restricted by the selector
                sims, labs = self._faiss_search(c, q, want, _bitmap_selector(mask))
                out = self._collect(c, sims, labs, k, set())
            else:
                # approximate kinds: over-fetch unfiltered neighbours and keep the matching ones,
                # growing the fetch 4x for queries that come back short (cheaper and more
                # accurate than a selector-restricted graph walk at moderate selectivity)
                out = [[] for _ in range(len(q))]
                todo = np.arange(len(q))
                kk = min(c.n_labels, max(2 * k, int(math.ceil(1.5 * k / selectivity))))
                while len(todo) and kk <= self.config.max_overfetch:
                    sims, labs = self._faiss_search(c, q[todo], kk)
                    rows = self._collect(c, sims, labs, k, set(), mask)
                    for i, row in zip(todo.tolist(), rows, strict=True):
                        out[i] = row
                    todo = np.array([i for i in todo.tolist() if len(out[i]) < want], dtype=np.int64)
                    if kk >= c.n_labels:
                        break
                    kk = min(c.n_labels, kk * 4)
            short = [i for i, r in enumerate(out) if len(r) < want]
            if short:  # exact fallback for queries the approximate search under-served
                sims, labs = self._exact(c, q[short], k, matching)
                for i, row in zip(short, self._collect(c, sims, labs, k, set()), strict=True):
                    out[i] = row
            return out

    def _class_partition_search(
        self, c: _Core, q: np.ndarray, k: int, filters: dict[str, Any]
    ) -> list[list[Neighbor]] | None:
        """An exact class-filtered search over the partitions of the matching classes, the other
        filters checked on the candidates; None where the mask route does better (a class subset
        small enough to gather, or so large that over-fetching on the main graph works) or must
        decide (a query for which fewer than k pass)."""
        assert c.partitions is not None
        codes = [self._class_codes[key] for key in ClassFilter.of(filters["classes"]).keys(self._class_names)]
        size = c.partitions.size(codes)
        if size <= self.config.exact_subset_max or size > self.config.class_partition_max:
            return None
        allowed = np.zeros(len(self._class_codes) + 1, dtype=bool)
        allowed[codes] = True
        others = {name: v for name, v in filters.items() if name not in ("classes", "exclude_ids")}
        excluded = np.array([c.label_of[o] for o in filters.get("exclude_ids") or () if o in c.label_of], np.int64)
        columns = {"anomaly_score": c.anomaly, "last_jd": c.last_jd, "n_detections": c.ndet}

        def passes(labels: np.ndarray) -> np.ndarray:
            ok = c.alive[labels] & allowed[c.cls[labels]]
            if others:
                ok &= index_mask(others, len(labels), lambda a: columns[a][labels], _no_classes)
            if len(excluded):
                ok &= ~np.isin(labels, excluded)
            return ok

        sims, labs = c.partitions.search(q, k, codes, passes, max_fetch=max(self.config.max_overfetch, 4 * k))
        out = self._collect(c, sims, labs, k, set())
        return out if all(len(row) == k for row in out) else None

    @staticmethod
    def _collect(
        c: _Core, sims: np.ndarray, labs: np.ndarray, k: int, drop: set[int], mask: np.ndarray | None = None
    ) -> list[list[Neighbor]]:
        out = []
        ids, ok = c.ids, (c.alive if mask is None else mask)
        for srow, lrow in zip(sims.tolist(), labs.tolist(), strict=True):
            row = []
            for s, lab in zip(srow, lrow, strict=True):
                if lab < 0 or lab in drop or not ok[lab]:
                    continue
                row.append(Neighbor(ids[lab], float(s)))
                if len(row) == k:
                    break
            out.append(row)
        return out
