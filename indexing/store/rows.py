"""A batch of writes as checked SQL rows, and the write steps of one transaction."""

from __future__ import annotations

from typing import Any

import numpy as np

from indexing.models import (
    utcnow,
)
from indexing.store.engine import _check_id, _f
from indexing.store.records import IngestBatch


class _Rows:
    """An :class:`IngestBatch` as checked, de-duplicated and sorted SQL rows (sorted: every
    transaction takes row locks in the same order, which avoids deadlocks)."""

    def __init__(self, batch: IngestBatch) -> None:
        if batch.fingerprints and not batch.model_version:
            raise ValueError("fingerprints need a model_version")
        self.now = now = utcnow()
        self.objects: dict[str, dict[str, Any]] = {}
        for s in batch.objects:
            _check_id(s.object_id)
            self.objects[s.object_id] = {
                "object_id": s.object_id,
                "survey": s.survey,
                "ra": _f(s.ra),
                "dec": _f(s.dec),
                "first_jd": _f(s.first_jd),
                "last_jd": _f(s.last_jd),
                "n_detections": int(s.n_detections or 0),
                "known_label": s.known_label,
                "revision": 1,
                "updated_at": now,
            }
        self.histories: list[dict[str, Any]] = []
        for oid in sorted(batch.histories):
            _check_id(oid)
            h = batch.histories[oid]
            row = self.objects.setdefault(
                oid,
                {
                    "object_id": oid,
                    "survey": None,
                    "ra": None,
                    "dec": None,
                    "known_label": None,
                    "revision": 1,
                    "updated_at": now,
                },
            )
            row.update(first_jd=h.first_jd, last_jd=h.last_jd, n_detections=len(h))
            self.histories.append(
                {"object_id": oid, "n_detections": len(h), "n_upper_limits": len(h.ul_jd), "data": h.to_bytes()}
            )
        self.fingerprints: list[dict[str, Any]] = []
        for fp in sorted({f.object_id: f for f in batch.fingerprints}.values(), key=lambda f: f.object_id):
            _check_id(fp.object_id)
            v = np.asarray(fp.vector, dtype="<f4").reshape(-1)
            if not np.all(np.isfinite(v)):
                raise ValueError(f"non-finite fingerprint for {fp.object_id!r}")
            self.fingerprints.append(
                {
                    "object_id": fp.object_id,
                    "model_version": batch.model_version,
                    "vector": v.tobytes(),
                    "dim": int(v.shape[0]),
                    "label": fp.label,
                    "fine_label": fp.fine_label,
                    "probabilities": {k: float(x) for k, x in fp.probabilities.items()} if fp.probabilities else None,
                    "anomaly_score": _f(fp.anomaly_score),
                    "model_score": _f(fp.model_score),
                    "source_revision": None,
                    "revision": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        self.bare = sorted({f["object_id"] for f in self.fingerprints} - self.objects.keys())
