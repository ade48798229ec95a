"""Start-up: load the saved index when it matches SQL, otherwise rebuild it from SQL.

Fingerprints in SQL are the source of truth; the index file is a cache.

    index, report = load_or_rebuild(store, "var/index", "v1")
    ...  # after applying ingests to the index (single-writer service):
    save_index(index, "var/index", model_version="v1", sql_marker=store.state_marker("v1"))
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from indexing.persistence import IndexLoadError, load_index, save_index
from indexing.store import Store
from indexing.vector_index import IndexConfig, VectorIndex

__all__ = ["LoadReport", "load_or_rebuild", "rebuild_from_store"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadReport:
    rebuilt: bool
    reason: str  # why a rebuild happened ("" when loaded)
    count: int
    seconds: float
    sql_marker: str


def rebuild_from_store(
    store: Store,
    model_version: str,
    *,
    dim: int | None = None,
    config: IndexConfig | None = None,
    batch_size: int = 50_000,
    progress: bool = True,
) -> tuple[VectorIndex, str]:
    """Build an index from every fingerprint of ``model_version``; returns (index, SQL marker of the
    snapshot that was read). Streams ``batch_size`` rows at a time into one preallocated array."""
    with store.scan_fingerprints(model_version, batch_size) as scan:
        total = scan.total
        ids: list[str] = []
        labels: list[str | None] = []
        vecs: np.ndarray | None = None  # allocated at the first batch, which tells the dim
        an, jd, nd = np.empty(total), np.empty(total), np.empty(total, np.int64)
        pos = 0
        with tqdm(total=total, desc=f"read fingerprints {model_version}", unit="fp", disable=not progress) as bar:
            for b in scan:
                if vecs is None:
                    d = b.vectors.shape[1]
                    if dim is not None and d != dim:
                        raise ValueError(f"fingerprints of {model_version} have dim {d}, expected {dim}")
                    dim = d
                    vecs = np.empty((total, d), np.float32)
                n = len(b.object_ids)
                if pos + n > total:  # cannot happen inside one snapshot; be defensive
                    raise RuntimeError("fingerprint count changed during the scan")
                vecs[pos : pos + n] = b.vectors
                an[pos : pos + n], jd[pos : pos + n], nd[pos : pos + n] = b.anomaly_score, b.last_jd, b.n_detections
                ids.extend(b.object_ids)
                labels.extend(b.labels)
                pos += n
                bar.update(n)
        marker = scan.marker
    index = VectorIndex(dim or 64, config)
    if pos and vecs is not None:
        zero = ~np.any(vecs[:pos], axis=1)
        if zero.any():
            log.warning("skipping %d zero fingerprints of %s", int(zero.sum()), model_version)
        keep = np.flatnonzero(~zero)
        with tqdm(total=len(keep), desc=f"build {index.config.kind} index", unit="vec", disable=not progress) as bar:
            index.build(
                [ids[i] for i in keep],
                vecs[keep],
                labels=[labels[i] for i in keep],
                anomaly_scores=an[keep],
                last_jd=jd[keep],
                n_detections=nd[keep],
                progress=bar.update,
            )
    return index, marker


def load_or_rebuild(
    store: Store,
    index_dir: str | Path,
    model_version: str,
    *,
    dim: int | None = None,
    config: IndexConfig | None = None,
    batch_size: int = 50_000,
    progress: bool = True,
    save: bool = True,
) -> tuple[VectorIndex, LoadReport]:
    """Load ``index_dir`` when its manifest matches SQL (model version, dim, state marker) and the
    files are intact; otherwise rebuild from SQL (tqdm progress) and save the result."""
    t0 = time.perf_counter()
    marker = store.state_marker(model_version)
    try:
        index, manifest = load_index(index_dir, model_version=model_version, sql_marker=marker, dim=dim, config=config)
        return index, LoadReport(False, "", len(index), time.perf_counter() - t0, marker)
    except IndexLoadError as exc:
        reason = str(exc)
        log.warning("rebuilding the %s index from SQL: %s", model_version, reason)
    index, marker = rebuild_from_store(
        store, model_version, dim=dim, config=config, batch_size=batch_size, progress=progress
    )
    if save:
        save_index(index, index_dir, model_version=model_version, sql_marker=marker)
    return index, LoadReport(True, reason, len(index), time.perf_counter() - t0, marker)
