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
* GPU: with faiss-gpu and ``faiss.get_num_gpus() > 0`` (``use_gpu=None`` = auto), flat and
  ivf_sq8 indexes keep a GPU replica used for unfiltered searches without tombstones; writes
  drop it and :meth:`VectorIndex.refresh_gpu` (also called by build/compaction) rebuilds it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import faiss
import numpy as np

from indexing.classes import ClassFilter
from indexing.filters import active, index_mask
from indexing.partitions import ClassGraphs

__all__ = ["KINDS", "IndexConfig", "Neighbor", "RWLock", "VectorIndex", "configure_faiss", "normalize"]

KINDS = ("auto", "flat", "hnsw", "ivf_sq8")
_UNSET: Any = object()


@dataclass(frozen=True)
class IndexConfig:
    """Tuning knobs. Defaults meet recall@10 >= 0.99 at 1M clustered 64-d vectors (docs/benchmarks.md)."""

    kind: str = "auto"
    flat_max: int = 50_000  # auto: exact search up to this many vectors
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    hnsw_regrow_fraction: float = 0.2  # rebuild HNSW once upserts added this fraction of its size
    ivf_nlist: int | None = None  # None: 2 * sqrt(n), within [16, 65536]
    ivf_nprobe: int = 48
    ivf_min_train: int = 10_000
    max_tombstone_fraction: float = 0.25
    exact_subset_max: int = 20_000  # filtered search: brute force when at most this many match
    exact_scan_max: int = 250_000  # filtered search: brute force on flat/HNSW storage up to this many vectors
    max_overfetch: int = 1024  # filtered HNSW/IVF search: largest unfiltered k before brute force
    class_graphs_min: int = 200_000  # HNSW indexes this large keep one graph per class (indexing.partitions)
    omp_threads: int | None = None  # faiss.omp_set_num_threads (None: leave faiss' default)
    # faiss uses BLAS (instead of its SIMD loop) for batches of >= this many queries. faiss 1.15
    # defaults to 128000 (practically never); the old default 20 was 2.5-5x SLOWER for batched
    # flat search on the 2-core box (docs/benchmarks.md), so None keeps faiss' default.
    blas_threshold: int | None = None
    use_gpu: bool | None = None  # None: when faiss-gpu and a GPU are available

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")


@dataclass(frozen=True, slots=True)
class Neighbor:
    object_id: str
    score: float  # cosine similarity


def configure_faiss(config: IndexConfig) -> None:
    """Apply the process-wide FAISS settings (threads, BLAS threshold)."""
    if config.omp_threads:
        faiss.omp_set_num_threads(int(config.omp_threads))
    if config.blas_threshold is not None:
        faiss.cvar.distance_compute_blas_threshold = int(config.blas_threshold)


def normalize(vectors: np.ndarray, dim: int) -> np.ndarray:
    """float32 C-contiguous (n, dim) copy with unit rows; raises ValueError on zero/non-finite rows."""
    x = np.array(vectors, dtype=np.float32, copy=True, order="C")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of dim {dim}, got shape {np.shape(vectors)}")
    if not np.isfinite(x).all():
        raise ValueError("non-finite values in vector")
    norms = np.linalg.norm(x, axis=1)
    if (norms < 1e-12).any():
        raise ValueError("zero vector cannot be normalised")
    x /= norms[:, None]
    return x


class RWLock:
    """Many readers or one writer; writers are preferred (no writer starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self):
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self):
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class _Core:
    """Everything a reader needs, swapped atomically by compaction."""

    kind: str
    index: Any  # faiss index (labels == positions for flat/hnsw; explicit ids for ivf)
    ids: list[str | None]  # label -> object id (None: tombstone / removed)
    label_of: dict[str, int]
    alive: np.ndarray  # bool, capacity >= n_labels
    cls: np.ndarray  # int16, -1 = no label
    anomaly: np.ndarray  # float64, nan = none
    last_jd: np.ndarray  # float64, nan = none
    ndet: np.ndarray  # int64
    n_labels: int = 0
    n_dead: int = 0  # tombstones still inside the faiss index (flat/hnsw)
    n_built: int = 0  # labels added by the last bulk build (the rest came from upserts)
    gpu: Any = None
    graphs: ClassGraphs | None = None  # per-class HNSW graphs (large HNSW indexes)
    _alive_sel: Any = field(default=None, repr=False)

    @staticmethod
    def empty(kind: str, index: Any, capacity: int = 1024) -> _Core:
        return _Core(
            kind=kind,
            index=index,
            ids=[],
            label_of={},
            alive=np.zeros(capacity, bool),
            cls=np.full(capacity, -1, np.int16),
            anomaly=np.full(capacity, np.nan),
            last_jd=np.full(capacity, np.nan),
            ndet=np.zeros(capacity, np.int64),
        )

    def reserve(self, n: int) -> None:
        cap = len(self.alive)
        if n <= cap:
            return
        new = max(n, int(cap * 1.5) + 1024)
        for name, fill in (("alive", False), ("cls", -1), ("anomaly", np.nan), ("last_jd", np.nan), ("ndet", 0)):
            old = getattr(self, name)
            arr = np.full(new, fill, dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)


def _no_classes(_: ClassFilter) -> np.ndarray:
    raise AssertionError("the class filter is the graphs' own")


def _bitmap_selector(mask: np.ndarray) -> faiss.IDSelectorBitmap:
    bits = np.packbits(mask, bitorder="little")
    sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
    # keep the buffer alive as long as the selector (a SWIG object takes any attribute; the stubs declare none)
    sel.bits_ref = bits  # type: ignore[attr-defined]
    return sel


class VectorIndex:
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
        if kind == "hnsw" and n >= self.config.class_graphs_min:
            core.graphs = self._class_graphs(cls, vectors)
        return core

    def _class_graphs(self, cls: np.ndarray, vectors: np.ndarray) -> ClassGraphs:
        cfg = self.config
        graphs = ClassGraphs(self.dim, cfg.hnsw_m, cfg.hnsw_ef_construction, cfg.hnsw_ef_search)
        graphs.add(np.asarray(cls), vectors, np.arange(len(vectors), dtype=np.int64))
        return graphs

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
        stored attributes (and leaves a new object's unset)."""
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
                if c.graphs is not None:
                    c.graphs.add(cls, x, new)
                c.n_labels = start + len(ids)
                c._alive_sel = None
                c.gpu = None  # stale; refresh_gpu() rebuilds it
            self._maybe_compact()

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
                if code is not None and code != int(c.cls[lab]) and c.graphs is not None:
                    c.graphs.add(np.array([code]), self._vectors_of(c, np.array([lab])), np.array([lab]))
                if code is not None:
                    c.cls[lab] = code
                if anomaly_score is not _UNSET:
                    c.anomaly[lab] = np.nan if anomaly_score is None else float(anomaly_score)
                if last_jd is not _UNSET:
                    c.last_jd[lab] = np.nan if last_jd is None else float(last_jd)
                if n_detections is not _UNSET:
                    c.ndet[lab] = 0 if n_detections is None else int(n_detections)
            return True

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

    # ----------------------------------------------------------------- reads
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
            if "classes" in filters and c.graphs is not None:
                found = self._class_graph_search(c, q, k, filters)
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

    def _class_graph_search(self, c: _Core, q: np.ndarray, k: int, filters: dict[str, Any]
                            ) -> list[list[Neighbor]] | None:  # fmt: skip
        """A class-filtered search over the graphs of the matching classes, the other filters checked
        on the candidates; None where the mask route does better (a class subset small enough to
        scan exactly) or must decide (a query for which fewer than k pass)."""
        assert c.graphs is not None
        codes = [self._class_codes[key] for key in ClassFilter.of(filters["classes"]).keys(self._class_names)]
        if c.graphs.size(codes) <= self.config.exact_subset_max:
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

        sims, labs = c.graphs.search(q, k, codes, passes, max_fetch=max(self.config.max_overfetch, 4 * k))
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
        if core.kind == "hnsw" and n >= self.config.class_graphs_min:
            threading.Thread(target=self._attach_class_graphs, args=(core,), daemon=True).start()
        return self

    def _attach_class_graphs(self, core: _Core) -> None:
        """Build the class graphs of a loaded index without holding readers or writers up for long:
        from a copy of the labels there are, then (under the writer lock) the labels added meanwhile.
        Until they are attached, class-filtered searches take the mask route."""
        with self._rw.read():
            n0 = core.n_labels
            cls, vectors = core.cls[:n0].copy(), np.array(self._storage(core)[:n0])
        graphs = self._class_graphs(cls, vectors)
        with self._writer:
            if self._core is not core:  # compacted meanwhile: the new core built its own
                return
            with self._rw.write():
                n1 = core.n_labels
                if n1 > n0:
                    graphs.add(core.cls[n0:n1], np.array(self._storage(core)[n0:n1]), np.arange(n0, n1))
                changed = np.flatnonzero(core.cls[:n0] != cls)  # a class set meanwhile
                if len(changed):
                    graphs.add(core.cls[changed], self._vectors_of(core, changed), changed)
                core.graphs = graphs
