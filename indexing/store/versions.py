"""Model versions in the store (part of :class:`indexing.store.Store`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from indexing.models import (
    FingerprintRecord,
    LightCurveRecord,
    ModelRecord,
    ObjectRecord,
    utcnow,
)
from indexing.store.base import _StoreBase
from indexing.store.engine import (
    _aware,
)
from indexing.store.records import (
    FingerprintRow,
    IngestBatch,
    IngestResult,
    ModelInfo,
    StaleVersion,
    StoredObject,
)
from indexing.store.rows import _Rows


class ModelVersions(_StoreBase):
    """Model versions: registration, stale objects, re-encoded fingerprints, the switch, dropping."""

    def register_model(
        self,
        version: str,
        *,
        path: str,
        sha256: str,
        dim: int,
        class_names: Sequence[str],
        metrics: dict[str, Any] | None = None,
        active: bool = False,
    ) -> ModelInfo:
        """Insert or update a model (a known model keeps its active flag unless ``active``);
        ``active=True`` deactivates every other model."""

        def run(conn: Connection) -> None:
            m = ModelRecord.__table__
            ins = self._insert(m)
            row = {
                "version": version,
                "path": str(path),
                "sha256": sha256,
                "dim": int(dim),
                "class_names": list(class_names),
                "metrics": metrics,
                "registered_at": utcnow(),
                "active": bool(active),
            }
            keep = {k: getattr(ins.excluded, k) for k in ("path", "sha256", "dim", "class_names", "metrics")}
            if active:
                keep["active"] = ins.excluded.active
            conn.execute(ins.on_conflict_do_update(index_elements=[m.c.version], set_=keep), [row])
            if active:
                conn.execute(update(m).where(m.c.version != version).values(active=False))

        self._write(run)
        return next(m for m in self.list_models() if m.version == version)

    def list_models(self) -> list[ModelInfo]:
        """All registered models, newest first."""
        m = ModelRecord.__table__.c
        q = select(m.version, m.path, m.sha256, m.dim, m.class_names, m.metrics, m.registered_at, m.active)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(m.registered_at.desc(), m.version)).all()
        return [ModelInfo(*r[:6], _aware(r[6]), bool(r[7])) for r in rows]

    def _active_version(self, conn: Connection) -> str | None:
        m = ModelRecord.__table__.c
        return conn.scalar(select(m.version).where(m.active.is_(True)))

    def active_version(self) -> str | None:
        """The version the service answers with (None before any model is registered as active)."""
        with self.engine.connect() as conn:
            return self._active_version(conn)

    def fingerprint_counts(self) -> dict[str, int]:
        """Fingerprints stored per model version."""
        f = FingerprintRecord.__table__.c
        with self.engine.connect() as conn:
            return dict(conn.execute(select(f.model_version, func.count()).group_by(f.model_version)).all())

    def _stale_query(self, model_version: str):
        o, lc, f = ObjectRecord.__table__.c, LightCurveRecord.__table__.c, FingerprintRecord.__table__.c
        return (
            select(o.object_id)
            .join_from(ObjectRecord.__table__, LightCurveRecord.__table__, lc.object_id == o.object_id)
            .outerjoin(FingerprintRecord.__table__, and_(f.object_id == o.object_id, f.model_version == model_version))
            .where(or_(f.id.is_(None), f.source_revision.is_distinct_from(o.revision)))
        )

    def count_stale(self, model_version: str) -> int:
        """Objects with a light curve but no fingerprint of ``model_version`` computed from it as it is."""
        q = select(func.count()).select_from(self._stale_query(model_version).subquery())
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def stale_object_ids(self, model_version: str, *, after: str = "", limit: int = 1000) -> list[str]:
        """The next ``limit`` stale objects (see :meth:`count_stale`) after ``after``, by object id."""
        o = ObjectRecord.__table__.c
        q = self._stale_query(model_version).where(o.object_id > after).order_by(o.object_id).limit(limit)
        with self.engine.connect() as conn:
            return list(conn.scalars(q))

    def write_fingerprints(
        self, model_version: str, rows: Sequence[FingerprintRow], revisions: dict[str, int]
    ) -> IngestResult:
        """Store fingerprints computed from the objects at ``revisions`` (what :meth:`read_objects`
        returned); one whose object changed since is skipped (it is stale, and found again)."""
        batch = _Rows(IngestBatch(model_version=model_version, fingerprints=rows))
        batch.bare = []  # never create objects: a deleted object stays deleted

        def run(conn: Connection) -> IngestResult:
            self._hold(conn, [r["object_id"] for r in batch.fingerprints])
            return self._apply(conn, batch, expected=revisions)

        return self._write(run)

    def activate(
        self, model_version: str, finish: Callable[[dict[str, StoredObject]], Sequence[FingerprintRow]] | None = None
    ) -> int:
        """Make ``model_version`` the active version, atomically. Ingest is held off meanwhile; the
        objects still stale are handed to ``finish`` (which encodes them) and written first, so the
        version is complete when it becomes active. Without ``finish`` a stale object refuses the
        switch (:class:`StaleVersion`). Returns how many objects ``finish`` encoded."""

        def run(conn: Connection) -> int:
            self._hold(conn, [], version_lock="exclusive")
            m = ModelRecord.__table__
            if conn.scalar(select(func.count()).select_from(m).where(m.c.version == model_version)) == 0:
                raise KeyError(model_version)
            stale = list(conn.scalars(self._stale_query(model_version)))
            if stale:
                if finish is None:
                    raise StaleVersion(model_version, len(stale))
                stored = self._read_objects(conn, stale)
                rows = _Rows(IngestBatch(model_version=model_version, fingerprints=finish(stored)))
                rows.bare = []
                res = self._apply(conn, rows, expected={k: v.revision for k, v in stored.items()})
                if res.fingerprints_written != len(stale):
                    raise RuntimeError(f"finish encoded {res.fingerprints_written} of {len(stale)} stale objects")
            conn.execute(update(m).values(active=m.c.version == model_version))
            return len(stale)

        return self._write(run)

    def drop_model(self, model_version: str) -> int:
        """Delete a version that is not active with all its fingerprints; returns how many."""

        def run(conn: Connection) -> int:
            self._hold(conn, [], version_lock="exclusive")
            m, f = ModelRecord.__table__, FingerprintRecord.__table__
            if conn.scalar(select(m.c.active).where(m.c.version == model_version)):
                raise ValueError(f"{model_version!r} is the active version; activate another first")
            n = conn.execute(f.delete().where(f.c.model_version == model_version)).rowcount
            conn.execute(m.delete().where(m.c.version == model_version))
            return n

        return self._write(run)

