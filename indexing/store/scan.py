"""A consistent streaming read of a model version's fingerprints (the index is built from it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Connection, or_, select

from indexing.classes import class_key
from indexing.models import (
    FingerprintRecord,
    ObjectRecord,
)
from indexing.store.engine import _nan
from indexing.store.records import FingerprintBatch

if TYPE_CHECKING:
    from indexing.store.reads import Reads


class FingerprintScan:
    """Consistent streaming read of all fingerprints of a model version (one read snapshot).

    ``marker`` and ``total`` belong to the same snapshot as the rows; iterate for batches.
    Use as a context manager (or exhaust it) so the connection is released.
    """

    def __init__(
        self, store: Reads, model_version: str, batch_size: int, updated_since: datetime | None = None
    ) -> None:
        self._store = store
        self.model_version = model_version
        self.batch_size = int(batch_size)
        self.updated_since = updated_since
        conn = store.engine.connect()
        if store.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        self._conn: Connection | None = conn
        conn.begin()
        self.marker, self.total = store._marker_and_count(conn, model_version)

    def __iter__(self) -> Iterator[FingerprintBatch]:
        conn = self._conn
        if conn is None:
            raise RuntimeError("the scan is closed (a scan is read once)")
        f, o = FingerprintRecord.__table__.c, ObjectRecord.__table__.c
        last = -1
        try:
            while True:
                q = (
                    select(f.id, f.object_id, f.vector, f.dim, f.label, f.anomaly_score, o.last_jd, o.n_detections,
                           f.fine_label)
                    .join_from(FingerprintRecord.__table__, ObjectRecord.__table__, f.object_id == o.object_id)
                    .where(f.model_version == self.model_version, f.id > last)
                    .order_by(f.id)
                    .limit(self.batch_size)
                )
                if self.updated_since is not None:
                    q = q.where(or_(f.updated_at >= self.updated_since, o.updated_at >= self.updated_since))
                rows = conn.execute(q).all()
                if not rows:
                    break
                last = rows[-1][0]
                dims = {r[3] for r in rows}
                if len(dims) != 1:
                    raise ValueError(f"mixed fingerprint dims {sorted(dims)} for model {self.model_version}")
                dim = dims.pop()
                vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), dim)
                yield FingerprintBatch(
                    object_ids=[r[1] for r in rows],
                    vectors=vectors.astype(np.float32, copy=False),
                    labels=[class_key(r[4], r[8]) for r in rows],
                    anomaly_score=np.array([_nan(r[5]) for r in rows], dtype=np.float64),
                    last_jd=np.array([_nan(r[6]) for r in rows], dtype=np.float64),
                    n_detections=np.array([r[7] or 0 for r in rows], dtype=np.int64),
                )
                if len(rows) < self.batch_size:
                    break
        finally:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn = None

    def __enter__(self) -> FingerprintScan:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
