"""Experts' answers and the anomaly ranking's reads and writes (part of :class:`indexing.store.Store`).

The ranking itself is computed outside SQL (``encoder.rarity``, ``app.ranking``); the store gives it
its inputs (:meth:`Feedback.ranking_inputs`), tells when they changed (:meth:`Feedback.ranking_marker`:
fingerprints and answers, not the scores the ranking writes back) and takes its scores
(:meth:`Feedback.set_anomaly_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import bindparam, func, select, update

from indexing.models import FeedbackRecord, FingerprintRecord, ObjectRecord, utcnow
from indexing.store.base import _StoreBase
from indexing.store.engine import _aware, _check_id, _chunks, _nan
from indexing.store.records import FeedbackAnswer

FEEDBACK_LABELS = ("anomaly", "not_anomaly")
USER_MAX = 128


@dataclass(slots=True)
class RankingInputs:
    """What the ranking of one model version is computed from, one row per fingerprint (by id)."""

    object_ids: list[str]
    vectors: np.ndarray  # (n, dim) float32
    fine_labels: list[str | None]
    model_score: np.ndarray  # (n,) float64, nan: none
    anomaly_score: np.ndarray  # (n,) float64: the stored ranking scores, nan: none
    source_revision: np.ndarray  # (n,) int64: the object revision each fingerprint is of
    n_detections: np.ndarray  # (n,) int64: the object's detections (0: not known)


class Feedback(_StoreBase):
    """Experts' answers about objects, and the anomaly ranking's reads and writes."""

    def add_feedback(self, answer: FeedbackAnswer) -> FeedbackAnswer:
        """Record an answer; KeyError for an unknown object, ValueError for a label that is not one of
        :data:`FEEDBACK_LABELS` or a user name over :data:`USER_MAX` characters."""
        _check_id(answer.object_id)
        if answer.label not in FEEDBACK_LABELS:
            raise ValueError(f"label must be one of {list(FEEDBACK_LABELS)}, not {answer.label!r}")
        if answer.user is not None and len(answer.user) > USER_MAX:
            raise ValueError(f"user: at most {USER_MAX} characters")
        t, o = FeedbackRecord.__table__, ObjectRecord.__table__.c
        now = utcnow()

        def run(conn) -> int:
            if conn.scalar(select(o.object_id).where(o.object_id == answer.object_id)) is None:
                raise KeyError(answer.object_id)
            row = {"object_id": answer.object_id, "label": answer.label, "user": answer.user, "created_at": now}
            return int(conn.execute(t.insert().values(**row).returning(t.c.id)).scalar_one())

        new_id = self._write(run)
        return FeedbackAnswer(answer.object_id, answer.label, answer.user, now, new_id)

    def feedback(self, object_id: str | None = None, limit: int = 100) -> list[FeedbackAnswer]:
        """Answers, newest first (of one object when given)."""
        t = FeedbackRecord.__table__.c
        q = select(t.object_id, t.label, t.user, t.created_at, t.id).order_by(t.id.desc()).limit(limit)
        if object_id is not None:
            q = q.where(t.object_id == object_id)
        with self.engine.connect() as conn:
            return [FeedbackAnswer(r[0], r[1], r[2], _aware(r[3]), r[4]) for r in conn.execute(q)]

    def latest_answers(self, object_ids: Sequence[str] | None = None) -> dict[str, str]:
        """The answer that counts for each answered object (of ``object_ids`` when given): its latest."""
        t = FeedbackRecord.__table__.c
        latest = select(func.max(t.id)).group_by(t.object_id)
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            if object_ids is None:
                return dict(conn.execute(select(t.object_id, t.label).where(t.id.in_(latest.scalar_subquery()))).all())
            for part in _chunks(list(object_ids)):
                ids = latest.where(t.object_id.in_(list(part))).scalar_subquery()
                out.update(conn.execute(select(t.object_id, t.label).where(t.id.in_(ids))).all())
        return out

    def ranking_marker(self, model_version: str) -> str:
        """Changes when what the ranking of ``model_version`` depends on changes: its fingerprints (added,
        removed, re-encoded from a new light curve) and the answers; not the scores written back."""
        f, t = FingerprintRecord.__table__.c, FeedbackRecord.__table__.c
        fp = select(func.count(), func.coalesce(func.sum(f.source_revision), 0), func.coalesce(func.max(f.id), 0))
        with self.engine.connect() as conn:
            a = conn.execute(fp.where(f.model_version == model_version)).one()
            b = conn.execute(select(func.count(), func.coalesce(func.max(t.id), 0))).one()
        return f"{a[0]}:{a[1]}:{a[2]}:{b[0]}:{b[1]}"

    def count_unranked(self, model_version: str) -> int:
        """Fingerprints of ``model_version`` without a ranking score (re-encoded, or from before the ranking)."""
        f = FingerprintRecord.__table__.c
        q = select(func.count()).where(f.model_version == model_version, f.anomaly_score.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def ranking_inputs(self, model_version: str, batch_size: int = 50_000) -> RankingInputs:
        """Every fingerprint of ``model_version`` with its fine class, scores and its object's detection
        count, in id order."""
        f, o = FingerprintRecord.__table__.c, ObjectRecord.__table__.c
        ids: list[str] = []
        blobs: list[bytes] = []
        fine: list[str | None] = []
        model: list[float] = []
        stored: list[float] = []
        revisions: list[int] = []
        detections: list[int] = []
        dim, last = 0, -1
        with self.engine.connect() as conn:
            while True:
                q = (
                    select(
                        f.id,
                        f.object_id,
                        f.vector,
                        f.dim,
                        f.fine_label,
                        f.model_score,
                        f.anomaly_score,
                        f.source_revision,
                        o.n_detections,
                    )
                    .join_from(FingerprintRecord, ObjectRecord, o.object_id == f.object_id, isouter=True)
                    .where(f.model_version == model_version, f.id > last)
                    .order_by(f.id)
                    .limit(batch_size)
                )
                rows = conn.execute(q).all()
                for r in rows:
                    ids.append(r[1])
                    blobs.append(r[2])
                    dim = r[3]
                    fine.append(r[4])
                    model.append(_nan(r[5]))
                    stored.append(_nan(r[6]))
                    revisions.append(-1 if r[7] is None else r[7])
                    detections.append(r[8] or 0)
                if len(rows) < batch_size:
                    break
                last = rows[-1][0]
        vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(ids), dim).astype(np.float32)
        return RankingInputs(
            ids, vectors, fine, np.array(model, np.float64), np.array(stored, np.float64),
            np.array(revisions, np.int64), np.array(detections, np.int64),
        )  # fmt: skip

    def set_anomaly_scores(self, model_version: str, scores: dict[str, tuple[float, int]]) -> int:
        """Write ranking scores of ``model_version``'s fingerprints, ``{object_id: (score, source revision)}``:
        a fingerprint re-encoded since (another source revision) keeps the score its ingest gave it. Each
        write is a new revision, so every process's index takes it at its next sync. Returns how many."""
        if not scores:
            return 0
        t = FingerprintRecord.__table__
        now = utcnow()
        stmt = (
            update(t)
            .where(
                t.c.model_version == model_version,
                t.c.object_id == bindparam("b_oid"),
                func.coalesce(t.c.source_revision, -1) == bindparam("b_rev"),
            )
            .values(anomaly_score=bindparam("b_score"), revision=t.c.revision + 1, updated_at=now)
        )
        rows = [{"b_oid": oid, "b_score": float(s), "b_rev": int(rev)} for oid, (s, rev) in sorted(scores.items())]

        def run(conn) -> int:
            # a driver that cannot count an executemany says -1: every row named exists or was deleted since
            return sum(max(conn.execute(stmt, list(part)).rowcount, 0) for part in _chunks(rows))

        return self._write(run)
