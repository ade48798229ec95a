"""FAISS cosine-similarity index over fingerprints, keyed by string object ids, with filters.

Design (the service codes against this):

* Cosine = inner product of L2-normalised vectors; vectors are normalised on add and on query,
  zero / non-finite vectors raise ``ValueError``. Scores are cosine similarities (higher = closer).
* Kinds: ``flat`` (exact), ``hnsw`` (IndexHNSWFlat, graph), ``ivf_sq8`` (IVF + 8-bit scalar
  quantiser, 4x smaller). ``auto`` = flat up to ``flat_max`` vectors, HNSW above (decided at
  build / compaction; an auto flat index that grows past 1.25 * flat_max is rebuilt as HNSW).
  ``ivf_sq8`` needs training data: below ``ivf_min_train`` vectors it runs as flat.
* Every stored vector has an int64 *label*. flat and HNSW are append-only (label == position):
  an upsert of a known object adds the new vector under a new label and tombstones the old one;
  delete tombstones. Searches exclude tombstones (IDSelectorBitmap). When tombstones exceed
  ``max_tombstone_fraction`` the index is compacted (rebuilt from its live vectors, readers keep
  using the old one meanwhile). IVF removes vectors in place (``remove_ids``).
* Filter attributes live beside the vectors in numpy arrays indexed by label: class label
  (string -> int16 code), anomaly score, last detection JD, number of detections. A filtered
  search builds the boolean match mask (vectorised numpy, ~1 ms per million objects per
  condition), then: brute force over the matching subset when it has at most
  ``exact_subset_max`` members or the flat/HNSW index holds at most ``exact_scan_max`` vectors
  (one matrix-vector product over the raw storage, ~1 ms per 100K); otherwise for flat a FAISS search restricted by an
  IDSelectorBitmap (exact), for HNSW/IVF an unfiltered search for ~1.5 k / selectivity
  neighbours post-filtered by the mask, grown 4x up to ``max_overfetch``, with an exact
  fallback for any query that still has fewer than ``min(k, matches)`` hits. So a search never returns fewer than k
  results when at least k objects match.
* Thread safety: any number of concurrent readers, one writer at a time (RW lock). FAISS releases
  the GIL during searches, so threads really search in parallel.
* Class filters on large HNSW indexes (``class_partitions_min``) scan each matching class's own
  vectors exactly (:mod:`indexing.partitions`) when those classes hold at most
  ``class_partition_max`` objects; larger ones are common enough for the over-fetch above.
* GPU: with faiss-gpu and ``faiss.get_num_gpus() > 0`` (``use_gpu=None`` = auto), flat and
  ivf_sq8 indexes keep a GPU replica used for unfiltered searches without tombstones; writes
  drop it and :meth:`VectorIndex.refresh_gpu` (also called by build/compaction) rebuilds it.

The module, by part: :mod:`indexing.index_core` (config, lock, core arrays), this module (building,
writes, persistence hooks), :mod:`indexing.index_search` (searches), :mod:`indexing.filters`
(the filters, declared once), :mod:`indexing.classes` (class keys) and :mod:`indexing.partitions`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, cast

import faiss
import numpy as np

from indexing.index_core import (
    _UNSET,
    KINDS,
    IndexConfig,
    Neighbor,
    RWLock,
    _Core,
    configure_faiss,
    normalize,
)
from indexing.index_search import IndexSearch
from indexing.partitions import ClassPartitions

__all__ = ["KINDS", "IndexConfig", "Neighbor", "RWLock", "VectorIndex", "configure_faiss", "normalize"]


class VectorIndex(IndexSearch):
    """Cosine k-NN over object fingerprints with attribute filters (see the module doc)."""

    def __init__(self, dim: int, config: IndexConfig | None = None) -> None:
        self.dim = int(dim)
        self.config = config or IndexConfig()
        configure_faiss(self.config)
        self._rw = RWLock()
        self._writer = threading.RLock()  # serialises writers (compaction builds outside _rw)
        self._class_codes: dict[str, int] = {}
        self._class_names: list[str] = []
        kind = self._resolve_kind(0)
        self._core = _Core.empty(kind, self._new_index(kind, None))

    # ----------------------------------------------------------------- introspection
    @property
    def kind(self) -> str:
        """The kind actually in use (``auto`` resolved)."""
        return self._core.kind

    def __len__(self) -> int:
        return len(self._core.label_of)

    def __contains__(self, object_id: str) -> bool:
        return object_id in self._core.label_of

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def stats(self) -> dict[str, Any]:
        c = self._core
        return {
            "kind": c.kind,
            "count": len(c.label_of),
            "labels": c.n_labels,
            "tombstones": c.n_dead,
            "ntotal": int(c.index.ntotal),
            "gpu": c.gpu is not None,
            "config": asdict(self.config),
        }

    def object_ids(self) -> list[str]:
        return list(self._core.label_of)

    def get_vector(self, object_id: str) -> np.ndarray | None:
        """The stored (normalised; SQ8-decoded for ivf_sq8) vector of an object."""
        with self._rw.read():
            c = self._core
            lab = c.label_of.get(object_id)
            return None if lab is None else self._vectors_of(c, np.array([lab]))[0]

    def get_attributes(self, object_id: str) -> dict[str, Any] | None:
        with self._rw.read():
            c = self._core
            lab = c.label_of.get(object_id)
            if lab is None:
                return None
            code = int(c.cls[lab])
            return {
                "label": self._class_names[code] if code >= 0 else None,
                "anomaly_score": None if math.isnan(c.anomaly[lab]) else float(c.anomaly[lab]),
                "last_jd": None if math.isnan(c.last_jd[lab]) else float(c.last_jd[lab]),
                "n_detections": int(c.ndet[lab]),
            }

    # ----------------------------------------------------------------- construction
    def _resolve_kind(self, n: int) -> str:
        k = self.config.kind
        if k == "auto":
            return "flat" if n <= self.config.flat_max else "hnsw"
        if k == "ivf_sq8" and n < self.config.ivf_min_train:
            return "flat"
        return k

    def _nlist(self, n: int) -> int:
        if self.config.ivf_nlist:
            return int(self.config.ivf_nlist)
        return int(min(65536, max(16, 2 * math.sqrt(max(n, 1)))))

    def _new_index(self, kind: str, train: np.ndarray | None):
        d = self.dim
        if kind == "flat":
            return faiss.IndexFlatIP(d)
        if kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(d, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = self.config.hnsw_ef_construction
            hnsw.hnsw.efSearch = self.config.hnsw_ef_search
            return hnsw
        if kind == "ivf_sq8":
            assert train is not None and len(train) > 0
            nlist = min(self._nlist(len(train)), max(1, len(train) // 39))
            quantizer = faiss.IndexFlatIP(d)
            ivf = faiss.IndexIVFScalarQuantizer(
                quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
            # faiss's way to keep the quantizer alive with the index; the stubs don't declare it
            ivf.referenced_objects = [quantizer]  # type: ignore[attr-defined]
            rng = np.random.default_rng(0)
            # 64 points per centroid: k-means on all of 1M takes ~7 min on 2 cores, this ~20 s
            per = 64
            sample = train if len(train) <= nlist * per else train[rng.choice(len(train), nlist * per, replace=False)]
            ivf.train(sample)
            ivf.nprobe = min(self.config.ivf_nprobe, nlist)
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # not in faiss's stubs
            return ivf
        raise ValueError(kind)

    def _gpu_wanted(self, kind: str) -> bool:
        if kind not in ("flat", "ivf_sq8") or self.config.use_gpu is False:
            return False
        ok = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
        if self.config.use_gpu and not ok:
            raise RuntimeError("use_gpu=True but faiss-gpu or a GPU is missing")
        return ok

    def refresh_gpu(self) -> None:
        """(Re)build the GPU replica of a flat / ivf_sq8 index (no-op without GPU)."""
        with self._writer:
            c = self._core
            if not self._gpu_wanted(c.kind) or c.n_dead:
                return
            if not hasattr(self, "_gpu_res"):
                self._gpu_res = faiss.StandardGpuResources()
            gpu = faiss.index_cpu_to_gpu(self._gpu_res, 0, c.index)
            with self._rw.write():
                c.gpu = gpu

    def _build_core(
        self,
        object_ids: list[str],
        vectors: np.ndarray,
        cls: np.ndarray,
        anomaly: np.ndarray,
        last_jd: np.ndarray,
        ndet: np.ndarray,
        progress: Callable[[int], Any] | None = None,
        chunk: int = 50_000,
    ) -> _Core:
        """A new core from normalised vectors (no duplicate ids); labels 0..n-1."""
        n = len(object_ids)
        kind = self._resolve_kind(n)
        index = self._new_index(kind, vectors if kind == "ivf_sq8" else None)
        core = _Core.empty(kind, index, capacity=max(1024, n))
        if kind == "hnsw":
            # one add() call: faiss 1.15 HNSW built by chunked add() calls loses recall badly
            # (300k in 20k chunks: recall@10 0.88 vs 0.998 in one call, docs/benchmarks.md)
            chunk = max(n, 1)
        for s in range(0, n, chunk):
            part = vectors[s : s + chunk]
            if kind == "ivf_sq8":
                index.add_with_ids(part, np.arange(s, s + len(part), dtype=np.int64))
            else:
                index.add(part)
            if progress:
                progress(len(part))
        core.ids = list(object_ids)
        core.label_of = {oid: i for i, oid in enumerate(object_ids)}
        core.n_labels = core.n_built = n
        core.alive[:n] = True
        core.cls[:n], core.anomaly[:n], core.last_jd[:n], core.ndet[:n] = cls, anomaly, last_jd, ndet
        if kind == "hnsw" and n >= self.config.class_partitions_min:
            core.partitions = self._class_partitions(cls, vectors)
        return core

    def _class_partitions(self, cls: np.ndarray, vectors: np.ndarray) -> ClassPartitions:
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), min(len(vectors), 20_000), replace=False)]
        partitions = ClassPartitions(self.dim, sample, lambda labels: self._vectors_of(self._core, labels))
        partitions.add(np.asarray(cls), vectors, np.arange(len(vectors), dtype=np.int64))
        return partitions

    def _codes(self, labels: Iterable[str | None]) -> np.ndarray:
        out = []
        for lab in labels:
            if lab is None:
                out.append(-1)
                continue
            code = self._class_codes.get(lab)
            if code is None:
                if len(self._class_names) >= 32767:
                    raise ValueError("too many distinct class labels")
                code = self._class_codes[lab] = len(self._class_names)
                self._class_names.append(lab)
            out.append(code)
        return np.asarray(out, dtype=np.int16)

    def build(
        self,
        object_ids: Sequence[str],
        vectors: np.ndarray,
        *,
        labels: Sequence[str | None] | None = None,
        anomaly_scores: Sequence[float | None] | np.ndarray | None = None,
        last_jd: Sequence[float | None] | np.ndarray | None = None,
        n_detections: Sequence[int] | np.ndarray | None = None,
        progress: Callable[[int], Any] | None = None,
    ) -> None:
        """Replace the whole content (bulk load; the kind is chosen for this size).

        ``progress(n_added)`` is called after each chunk of 50k vectors.
        """
        with self._writer:
            ids, x, cls, an, jd, nd = self._prepare(object_ids, vectors, labels, anomaly_scores, last_jd, n_detections)
            core = self._build_core(ids, x, cls, an, jd, nd, progress)
            with self._rw.write():
                self._core = core
        self.refresh_gpu()

    def _prepare(self, object_ids, vectors, labels, anomaly_scores, last_jd, n_detections):
        ids = [str(o) for o in object_ids]
        n = len(ids)
        for o in ids:
            if not o or "\n" in o:
                raise ValueError(f"bad object id {o!r}")
        x = normalize(vectors, self.dim) if n else np.zeros((0, self.dim), np.float32)
        if len(x) != n:
            raise ValueError(f"{n} ids but {len(x)} vectors")
        if len(set(ids)) != n:  # keep the last occurrence of each id
            last = {o: i for i, o in enumerate(ids)}
            keep = np.array(sorted(last.values()), dtype=np.int64)
        else:
            keep = None

        def col(values, dtype, fill):
            if values is None:
                return np.full(n, fill, dtype)
            arr = np.array([fill if v is None else v for v in values], dtype=dtype)
            if len(arr) != n:
                raise ValueError("attribute length differs from the number of ids")
            return arr

        cls = self._codes(labels) if labels is not None else np.full(n, -1, np.int16)
        if len(cls) != n:
            raise ValueError("labels length differs from the number of ids")
        an, jd, nd = (
            col(anomaly_scores, np.float64, np.nan),
            col(last_jd, np.float64, np.nan),
            col(n_detections, np.int64, 0),
        )
        if keep is not None:
            ids = [ids[i] for i in keep]
            x, cls, an, jd, nd = x[keep], cls[keep], an[keep], jd[keep], nd[keep]
        return ids, x, cls, an, jd, nd

    # ----------------------------------------------------------------- writes
    def upsert(
        self,
        object_ids: Sequence[str],
        vectors: np.ndarray,
        *,
        labels: Sequence[str | None] | None = None,
        anomaly_scores: Sequence[float | None] | None = None,
        last_jd: Sequence[float | None] | None = None,
        n_detections: Sequence[int] | None = None,
    ) -> None:
        """Add or replace vectors. An attribute argument left as None keeps a known object's
        stored attributes (and leaves a new object's unset). A known object whose vector is the one
        stored keeps its place (flat, HNSW): only its attributes change."""
        with self._writer:
            ids, x, cls, an, jd, nd = self._prepare(object_ids, vectors, labels, anomaly_scores, last_jd, n_detections)
            if not ids:
                return
            c = self._core
            old = np.array([c.label_of.get(o, -1) for o in ids], dtype=np.int64)
            known = old >= 0
            if known.any():  # carry attributes that were not given
                ol = old[known]
                if labels is None:
                    cls[known] = c.cls[ol]
                if anomaly_scores is None:
                    an[known] = c.anomaly[ol]
                if last_jd is None:
                    jd[known] = c.last_jd[ol]
                if n_detections is None:
                    nd[known] = c.ndet[ol]
                if c.kind != "ivf_sq8":  # (SQ8 decodes approximately: never "the same vector")
                    same = np.zeros(len(ids), dtype=bool)
                    same[known] = (self._vectors_of(c, ol) == x[known]).all(axis=1)
                    if same.any():  # an unchanged vector: only its attributes change, in place
                        self._set_attributes(c, old[same], cls[same], an[same], jd[same], nd[same])
                        rest = ~same
                        ids = [o for o, r in zip(ids, rest.tolist(), strict=True) if r]
                        x, cls, an, jd, nd, old = x[rest], cls[rest], an[rest], jd[rest], nd[rest], old[rest]
                        known = known[rest]
                        if not ids:
                            return
            start = c.n_labels
            new = np.arange(start, start + len(ids), dtype=np.int64)
            c.reserve(start + len(ids))
            with self._rw.write():
                if known.any():
                    self._remove_labels(c, old[known])
                if c.kind == "ivf_sq8":
                    c.index.add_with_ids(x, new)
                else:
                    c.index.add(x)
                c.ids.extend(ids)
                for o, lab in zip(ids, new.tolist(), strict=True):
                    c.label_of[o] = lab
                c.alive[new] = True
                c.cls[new], c.anomaly[new], c.last_jd[new], c.ndet[new] = cls, an, jd, nd
                if c.partitions is not None:
                    c.partitions.add(cls, x, new)
                c.n_labels = start + len(ids)
                c._alive_sel = None
                c.gpu = None  # stale; refresh_gpu() rebuilds it
            self._maybe_compact()

    def _set_attributes(
        self, c: _Core, labs: np.ndarray, cls: np.ndarray, an: np.ndarray, jd: np.ndarray, nd: np.ndarray
    ) -> None:
        """The filter attributes of live labels, in place (a re-ranking rewrites many scores, not vectors)."""
        with self._rw.write():
            moved = c.cls[labs] != cls
            if c.partitions is not None and moved.any():
                c.partitions.add(cls[moved], self._vectors_of(c, labs[moved]), labs[moved])
            c.cls[labs], c.anomaly[labs], c.last_jd[labs], c.ndet[labs] = cls, an, jd, nd

    def _remove_labels(self, c: _Core, labels: np.ndarray) -> None:
        """Under the write lock: forget labels (tombstone, or remove from IVF)."""
        for lab in labels.tolist():
            oid = c.ids[lab]
            if oid is not None and c.label_of.get(oid) == lab:
                del c.label_of[oid]
            c.ids[lab] = None
        c.alive[labels] = False
        if c.kind == "ivf_sq8":
            arr = np.ascontiguousarray(labels, dtype=np.int64)
            c.index.remove_ids(faiss.IDSelectorArray(len(arr), faiss.swig_ptr(arr)))
        else:
            c.n_dead += len(labels)
        c._alive_sel = None
        c.gpu = None

    def delete(self, object_ids: Iterable[str]) -> int:
        """Remove objects; returns how many were present."""
        with self._writer:
            c = self._core
            labs = np.array(sorted({c.label_of[o] for o in object_ids if o in c.label_of}), dtype=np.int64)
            if len(labs):
                with self._rw.write():
                    self._remove_labels(c, labs)
                self._maybe_compact()
            return len(labs)

    def update_attributes(
        self,
        object_id: str,
        *,
        label: str | None = _UNSET,
        anomaly_score: float | None = _UNSET,
        last_jd: float | None = _UNSET,
        n_detections: int | None = _UNSET,
    ) -> bool:
        """Change filter attributes without touching the vector (omitted = unchanged, None = unset).
        Returns False for an unknown object."""
        with self._writer:
            c = self._core
            lab = c.label_of.get(object_id)
            if lab is None:
                return False
            code = int(self._codes([label])[0]) if label is not _UNSET else None
            with self._rw.write():
                if code is not None and code != int(c.cls[lab]) and c.partitions is not None:
                    c.partitions.add(np.array([code]), self._vectors_of(c, np.array([lab])), np.array([lab]))
                if code is not None:
                    c.cls[lab] = code
                if anomaly_score is not _UNSET:
                    c.anomaly[lab] = np.nan if anomaly_score is None else float(anomaly_score)
                if last_jd is not _UNSET:
                    c.last_jd[lab] = np.nan if last_jd is None else float(last_jd)
                if n_detections is not _UNSET:
                    c.ndet[lab] = 0 if n_detections is None else int(n_detections)
            return True

    def set_anomaly_scores(self, scores: Mapping[str, float]) -> int:
        """Set the anomaly scores of known objects (a re-ranking); returns how many were known."""
        with self._writer:
            c = self._core
            pairs = [(c.label_of[o], s) for o, s in scores.items() if o in c.label_of]
            if pairs:
                labs, values = zip(*pairs, strict=True)
                with self._rw.write():
                    c.anomaly[list(labs)] = values
            return len(pairs)

    def _maybe_compact(self) -> None:
        c = self._core
        n_live = len(c.label_of)
        grow = c.kind == "flat" and self._resolve_kind(n_live) != "flat"
        if grow and self.config.kind == "auto":
            grow = n_live > 1.25 * self.config.flat_max
        dead_labels = c.n_labels - n_live
        too_dead = c.n_labels > 1000 and dead_labels > self.config.max_tombstone_fraction * c.n_labels
        # HNSW grown by many incremental add() calls loses recall (see _build_core): rebuild
        regrow = c.kind == "hnsw" and (c.n_labels - c.n_built) > self.config.hnsw_regrow_fraction * max(
            c.n_built, self.config.flat_max
        )
        if grow or too_dead or regrow:
            self.compact()

    def compact(self, progress: Callable[[int], Any] | None = None) -> None:
        """Rebuild from the live vectors (drops tombstones, renumbers labels, may change kind).
        Readers keep searching the old index meanwhile; writers wait."""
        with self._writer:
            c = self._core
            with self._rw.read():
                live = np.flatnonzero(c.alive[: c.n_labels])
                vecs = self._vectors_of(c, live) if len(live) else np.zeros((0, self.dim), np.float32)
            ids = cast(list[str], [c.ids[i] for i in live.tolist()])  # live labels have ids (None: tombstones)
            core = self._build_core(
                ids, vecs, c.cls[live], c.anomaly[live], c.last_jd[live], c.ndet[live], progress=progress
            )
            with self._rw.write():
                self._core = core
        self.refresh_gpu()

    # ----------------------------------------------------------------- persistence hooks
    def export_state(self) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
        """(faiss index, arrays, json-able info) for :mod:`indexing.persistence`; hold no writes meanwhile."""
        c = self._core
        n = c.n_labels
        ids_blob = "\n".join(o or "" for o in c.ids).encode()
        arrays = {
            "ids": np.frombuffer(ids_blob, dtype=np.uint8),
            "alive": c.alive[:n].copy(),
            "cls": c.cls[:n].copy(),
            "anomaly": c.anomaly[:n].copy(),
            "last_jd": c.last_jd[:n].copy(),
            "ndet": c.ndet[:n].copy(),
        }
        info = {"kind": c.kind, "n_labels": n, "n_dead": c.n_dead, "class_names": list(self._class_names)}
        return c.index, arrays, info

    @contextmanager
    def frozen(self):
        """Block writers (readers continue) — used while saving."""
        with self._writer:
            yield

    @classmethod
    def from_state(
        cls, dim: int, config: IndexConfig | None, index: Any, arrays: dict[str, np.ndarray], info: dict[str, Any]
    ) -> VectorIndex:
        self = cls(dim, config)
        n = int(info["n_labels"])
        ids_raw = arrays["ids"].tobytes().decode()
        ids: list[str | None] = [o or None for o in ids_raw.split("\n")] if n else []
        alive = arrays["alive"].astype(bool)
        if len(ids) != n or len(alive) != n or index.d != dim:
            raise ValueError("index state is inconsistent")
        ids = [o if a else None for o, a in zip(ids, alive.tolist(), strict=True)]
        core = _Core.empty(info["kind"], index, capacity=max(1024, n))
        core.ids = ids
        core.label_of = {o: i for i, o in enumerate(ids) if o is not None}
        core.n_labels = n
        core.n_dead = int(info.get("n_dead", 0))
        core.alive[:n] = alive
        core.cls[:n], core.anomaly[:n], core.last_jd[:n], core.ndet[:n] = (
            arrays["cls"],
            arrays["anomaly"],
            arrays["last_jd"],
            arrays["ndet"],
        )
        expected = n if core.kind != "ivf_sq8" else len(core.label_of)
        if int(index.ntotal) != expected:
            raise ValueError(f"faiss index holds {index.ntotal} vectors, expected {expected}")
        self._class_names = list(info.get("class_names", []))
        self._class_codes = {name: i for i, name in enumerate(self._class_names)}
        self._core = core
        self.refresh_gpu()
        if core.kind == "hnsw" and n >= self.config.class_partitions_min:
            threading.Thread(target=self._attach_class_partitions, args=(core,), daemon=True).start()
        return self

    def _attach_class_partitions(self, core: _Core) -> None:
        """Build the class partitions of a loaded index without holding readers or writers up for long:
        from a copy of the labels there are, then (under the writer lock) the labels added meanwhile.
        Until they are attached, class-filtered searches take the mask route."""
        with self._rw.read():
            n0 = core.n_labels
            cls, vectors = core.cls[:n0].copy(), np.array(self._storage(core)[:n0])
        partitions = self._class_partitions(cls, vectors)
        with self._writer:
            if self._core is not core:  # compacted meanwhile: the new core built its own
                return
            with self._rw.write():
                n1 = core.n_labels
                if n1 > n0:
                    partitions.add(core.cls[n0:n1], np.array(self._storage(core)[n0:n1]), np.arange(n0, n1))
                changed = np.flatnonzero(core.cls[:n0] != cls)  # a class set meanwhile
                if len(changed):
                    partitions.add(core.cls[changed], self._vectors_of(core, changed), changed)
                core.partitions = partitions
