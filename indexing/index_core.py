"""The parts of the vector index every other part uses: its configuration, a neighbour, the
readers-writer lock, the core arrays a search reads (swapped atomically by compaction), and
vector normalisation."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from indexing.classes import ClassFilter
from indexing.partitions import ClassPartitions

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
    class_partitions_min: int = 200_000  # HNSW indexes this large keep each class apart (indexing.partitions)
    class_partition_max: int = 400_000  # ... and scan a class filter's classes when they hold at most this many
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
    partitions: ClassPartitions | None = None  # each class's vectors apart (large HNSW indexes)
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
    raise AssertionError("the class filter is the partitions' own")


def _bitmap_selector(mask: np.ndarray) -> faiss.IDSelectorBitmap:
    bits = np.packbits(mask, bitorder="little")
    sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
    # keep the buffer alive as long as the selector (a SWIG object takes any attribute; the stubs declare none)
    sel.bits_ref = bits  # type: ignore[attr-defined]
    return sel
