"""Reads of the store (part of :class:`indexing.store.Store`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, func, or_, select

from indexing.filters import sql_conditions
from indexing.history import History
from indexing.models import (
    FingerprintRecord,
    LightCurveRecord,
    ObjectRecord,
)
from indexing.store.base import _StoreBase
from indexing.store.engine import (
    _aware,
    _chunks,
    _decode_cursor,
    _decode_id_cursor,
    _encode_cursor,
    _encode_id_cursor,
)
from indexing.store.records import (
    FingerprintBatch,
    ObjectState,
    StoredObject,
)
from indexing.store.scan import FingerprintScan


class Reads(_StoreBase):
    """The store's reads: objects, light curves, listings, rankings, cone searches, change markers."""

    @staticmethod
    def _state(r, prediction=None) -> ObjectState:
        label, probabilities, score, fine, model = prediction if prediction is not None else (None,) * 5
        return ObjectState(
            object_id=r.object_id,
            survey=r.survey,
            ra=r.ra,
            dec=r.dec,
            first_jd=r.first_jd,
            last_jd=r.last_jd,
            n_detections=r.n_detections,
            label=label,
            probabilities=dict(probabilities or {}),
            anomaly_score=score,
            fine_label=fine,
            model_score=model,
            known_label=r.known_label,
            updated_at=_aware(r.updated_at),
        )

    def _read_objects(self, conn: Connection, ids: Sequence[str]) -> dict[str, StoredObject]:
        o_t, lc = ObjectRecord.__table__, LightCurveRecord.__table__.c
        out: dict[str, StoredObject] = {}
        for part in _chunks(list(ids)):
            for r in conn.execute(select(o_t).where(o_t.c.object_id.in_(list(part)))):
                out[r.object_id] = StoredObject(self._state(r), None, r.revision)
            for oid, data in conn.execute(select(lc.object_id, lc.data).where(lc.object_id.in_(list(part)))):
                out[oid].history = History.from_bytes(data)
        return out

    def read_objects(self, object_ids: Iterable[str]) -> dict[str, StoredObject]:
        """Rows, light curves and revisions of the stored objects among ``object_ids`` (one snapshot)."""
        with self.engine.connect() as conn:
            return self._read_objects(conn, list(dict.fromkeys(object_ids)))

    def get_object(self, object_id: str, model_version: str | None = None) -> ObjectState | None:
        """An object's row with the predictions of ``model_version`` (none when not given)."""
        return self.get_objects([object_id], model_version).get(object_id)

    def get_objects(self, object_ids: Iterable[str], model_version: str | None = None) -> dict[str, ObjectState]:
        """Bulk :meth:`get_object` (unknown ids are absent from the result)."""
        ids = list(dict.fromkeys(object_ids))
        o_t, f = ObjectRecord.__table__, FingerprintRecord.__table__.c
        out: dict[str, ObjectState] = {}
        with self.engine.connect() as conn:
            for part in _chunks(ids):
                rows = {r.object_id: r for r in conn.execute(select(o_t).where(o_t.c.object_id.in_(list(part))))}
                preds: dict[str, tuple] = {}
                if model_version is not None and rows:
                    q = select(
                        f.object_id, f.label, f.probabilities, f.anomaly_score, f.fine_label, f.model_score
                    ).where(f.model_version == model_version, f.object_id.in_(list(rows)))
                    preds = {r[0]: tuple(r[1:]) for r in conn.execute(q)}
                out.update((k, self._state(r, preds.get(k))) for k, r in rows.items())
        return out

    def get_history(self, object_id: str) -> History | None:
        lc = LightCurveRecord.__table__.c
        with self.engine.connect() as conn:
            data = conn.scalar(select(lc.data).where(lc.object_id == object_id))
        return None if data is None else History.from_bytes(data)

    def get_fingerprint(self, object_id: str, model_version: str) -> np.ndarray | None:
        q = select(FingerprintRecord.vector).where(
            FingerprintRecord.object_id == object_id, FingerprintRecord.model_version == model_version
        )
        with self.engine.connect() as conn:
            blob = conn.scalar(q)
        return None if blob is None else np.frombuffer(blob, dtype="<f4").astype(np.float32)

    def scan_fingerprints(
        self, model_version: str, batch_size: int = 50_000, updated_since: datetime | None = None
    ) -> FingerprintScan:
        """Streaming snapshot of the fingerprints of a version (only those whose fingerprint or
        object was written at or after ``updated_since`` when given); ``.marker``/``.total``
        describe the whole version."""
        return FingerprintScan(self, model_version, batch_size, updated_since)

    def iter_fingerprints(self, model_version: str, batch_size: int = 50_000) -> Iterator[FingerprintBatch]:
        """All fingerprints of a model version in insertion order, ``batch_size`` rows at a time."""
        with self.scan_fingerprints(model_version, batch_size) as scan:
            yield from scan

    def count_objects(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ObjectRecord)).scalar_one())

    def count_fingerprints(self, model_version: str) -> int:
        q = select(func.count()).select_from(FingerprintRecord).where(FingerprintRecord.model_version == model_version)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def anomalies(
        self,
        *,
        model_version: str,
        limit: int = 50,
        cursor: str | None = None,
        **filters: Any,
    ) -> tuple[list[ObjectState], str | None]:
        """Objects ranked by the anomaly score of ``model_version`` desc, object_id asc (objects
        without a score are left out).

        ``cursor`` is the opaque string returned by the previous page (None for the first);
        the second value is the next page's cursor, None on the last page. Keyset paging:
        pages never skip or repeat rows while the rows don't change. ``filters``: those of
        :data:`indexing.filters.FILTERS`, on the version's predictions.
        """
        if limit <= 0:
            raise ValueError("limit must be positive")
        o_t, f = ObjectRecord.__table__, FingerprintRecord.__table__.c
        q = (
            select(o_t, *_prediction_columns(f))
            .join_from(FingerprintRecord.__table__, o_t, f.object_id == o_t.c.object_id)
            .where(f.model_version == model_version, f.anomaly_score.is_not(None))
        )
        q = q.where(*sql_conditions(filters, _filter_columns(o_t, f)))
        if cursor:
            score, oid = _decode_cursor(cursor)
            q = q.where(or_(f.anomaly_score < score, and_(f.anomaly_score == score, f.object_id > oid)))
        q = q.order_by(f.anomaly_score.desc(), f.object_id.asc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        page = [self._state(r, _prediction(r)) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = page[-1]
            assert last.anomaly_score is not None  # the query leaves objects without a score out
            nxt = _encode_cursor(last.anomaly_score, last.object_id)
        return page, nxt

    def list_objects(
        self,
        *,
        model_version: str,
        limit: int = 100,
        cursor: str | None = None,
        **filters: Any,
    ) -> tuple[list[ObjectState], str | None]:
        """Objects by id, with the predictions of ``model_version``; keyset paging by object id
        (``cursor``: the previous page's, None for the first; the second value is the next page's).
        ``filters``: those of :data:`indexing.filters.FILTERS`, on the version's predictions."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        o_t, f = ObjectRecord.__table__, FingerprintRecord.__table__.c
        q = select(o_t, *_prediction_columns(f)).outerjoin(
            FingerprintRecord.__table__, and_(f.object_id == o_t.c.object_id, f.model_version == model_version)
        )
        q = q.where(*sql_conditions(filters, _filter_columns(o_t, f)))
        if cursor:
            q = q.where(o_t.c.object_id > _decode_id_cursor(cursor))
        q = q.order_by(o_t.c.object_id).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        page = [self._state(r, _prediction(r)) for r in rows[:limit]]
        nxt = _encode_id_cursor(page[-1].object_id) if len(rows) > limit else None
        return page, nxt

    def cone(
        self, ra: float, dec: float, radius_deg: float, *, model_version: str, limit: int = 100
    ) -> list[tuple[ObjectState, float]]:
        """Objects within ``radius_deg`` of (ra, dec) (degrees; coordinates as stored from packets
        and JSON), nearest first, with their separation in degrees. SQL narrows by a box in dec
        (indexed) and ra (wrapping at 0/360; none near a pole); the exact great-circle distance decides."""
        o_t, f = ObjectRecord.__table__, FingerprintRecord.__table__.c
        q = (
            select(o_t, *_prediction_columns(f))
            .outerjoin(
                FingerprintRecord.__table__, and_(f.object_id == o_t.c.object_id, f.model_version == model_version)
            )
            .where(o_t.c.dec >= dec - radius_deg, o_t.c.dec <= dec + radius_deg, o_t.c.ra.is_not(None))
        )
        if abs(dec) + radius_deg < 89.0:
            dra = radius_deg / math.cos(math.radians(abs(dec) + radius_deg))
            lo, hi = ra - dra, ra + dra
            if lo < 0:
                q = q.where(or_(o_t.c.ra >= lo + 360.0, o_t.c.ra <= hi))
            elif hi >= 360:
                q = q.where(or_(o_t.c.ra >= lo, o_t.c.ra <= hi - 360.0))
            else:
                q = q.where(o_t.c.ra >= lo, o_t.c.ra <= hi)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        if not rows:
            return []
        r_ra, r_dec = np.radians([r.ra for r in rows]), np.radians([r.dec for r in rows])
        ra0, dec0 = math.radians(ra), math.radians(dec)
        hav = np.sin((r_dec - dec0) / 2) ** 2 + math.cos(dec0) * np.cos(r_dec) * np.sin((r_ra - ra0) / 2) ** 2
        sep = np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0))))
        order = [i for i in np.argsort(sep, kind="stable") if sep[i] <= radius_deg][:limit]
        return [(self._state(rows[i], _prediction(rows[i])), float(sep[i])) for i in order]

    # ----------------------------------------------------------------- change tracking
    def _marker_and_count(self, conn: Connection, model_version: str) -> tuple[str, int]:
        f, o = FingerprintRecord, ObjectRecord
        n, max_id, rev = conn.execute(
            select(func.count(), func.max(f.id), func.sum(f.revision)).where(f.model_version == model_version)
        ).one()
        on, orev = conn.execute(select(func.count(), func.sum(o.revision))).one()
        marker = f"v2|{model_version}|fp:{n}:{max_id or 0}:{rev or 0}|obj:{on}:{orev or 0}"
        return marker, int(n)

    def state_marker(self, model_version: str) -> str:
        """Opaque string that changes whenever the fingerprints of ``model_version`` or any object change."""
        with self.engine.connect() as conn:
            return self._marker_and_count(conn, model_version)[0]


def _prediction_columns(f) -> list:
    """A version's predictions beside an object's row (read back by :func:`_prediction`)."""
    return [
        f.label.label("p_label"),
        f.probabilities.label("p_probs"),
        f.anomaly_score.label("p_score"),
        f.fine_label.label("p_fine"),
        f.model_score.label("p_model"),
    ]


def _prediction(r) -> tuple:
    """The predictions of a row selected with :func:`_prediction_columns`, as ``Reads._state`` takes them."""
    return r.p_label, r.p_probs, r.p_score, r.p_fine, r.p_model


def _filter_columns(objects, f) -> dict[str, Any]:
    """Where the filters' attributes are in SQL (see :func:`indexing.filters.sql_conditions`)."""
    return {
        "class": (f.label, f.fine_label),
        "anomaly_score": f.anomaly_score,
        "last_jd": objects.c.last_jd,
        "n_detections": objects.c.n_detections,
    }
