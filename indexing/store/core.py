"""The store: its engine, schema migration and ingest (write transactions: :mod:`indexing.store.base`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Text, bindparam, cast, func, or_, select, update

from indexing.models import (
    MIGRATIONS,
    FingerprintRecord,
    LightCurveRecord,
    ObjectRecord,
)
from indexing.store.dead_letters import DeadLetters
from indexing.store.engine import (
    _chunks,
    make_engine,
)
from indexing.store.feedback import Feedback
from indexing.store.reads import Reads
from indexing.store.records import (
    IngestBatch,
    IngestResult,
    StoredObject,
)
from indexing.store.rows import _Rows
from indexing.store.versions import ModelVersions

T = TypeVar("T")


class Store(Reads, ModelVersions, DeadLetters, Feedback):
    """Metadata store. Thread-safe (one pooled connection per call); share one per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self.dialect!r} (sqlite or postgresql)")

    def close(self) -> None:
        self.engine.dispose()

    # ----------------------------------------------------------------- schema
    def migrate(self) -> None:
        """``alembic upgrade head`` on this database (safe to call at every start)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":  # several processes may start at once
                conn.exec_driver_sql("SELECT pg_advisory_lock(7270001)")
                conn.commit()
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if self.dialect == "postgresql":
                    conn.rollback()
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(7270001)")
                    conn.commit()

    # ----------------------------------------------------------------- writes
    def write(self, batch: IngestBatch) -> IngestResult:
        """Write a batch as ONE transaction without reading first (bulk loads): histories replace
        the stored ones; fingerprints are of the objects as they are after the batch."""
        rows = _Rows(batch)
        return self._write(lambda conn: self._apply(conn, rows))

    def ingest_merged(
        self, object_ids: Sequence[str], prepare: Callable[[dict[str, StoredObject], str | None], tuple[IngestBatch, T]]
    ) -> tuple[IngestResult, T]:
        """Read-merge-write of these objects as ONE transaction that holds them exclusively.

        The objects are locked first (PostgreSQL: transaction-level advisory locks in a fixed order;
        SQLite: the writer's database lock, ``BEGIN IMMEDIATE``), then their stored objects and the
        active model version are read and handed to ``prepare``, whose batch is written before the
        commit. ``prepare`` may raise to store nothing; it runs again if a PostgreSQL deadlock makes
        the transaction retry.
        """
        ids = sorted(set(object_ids))

        def run(conn: Connection) -> tuple[IngestResult, T]:
            self._hold(conn, ids)
            batch, payload = prepare(self._read_objects(conn, ids), self._active_version(conn))
            return self._apply(conn, _Rows(batch)), payload

        return self._write(run)

    def _apply(self, conn: Connection, rows: _Rows, expected: dict[str, int] | None = None) -> IngestResult:
        """The writes of one batch inside a write transaction, step by step. ``expected``: write a
        fingerprint only where its object is still at that revision (re-encoding)."""
        touched = self._upsert_objects(conn, [rows.objects[k] for k in sorted(rows.objects)])
        touched |= self._insert_bare_objects(conn, rows.bare, rows.now)
        touched |= self._write_histories(conn, rows.histories, touched, rows.now)
        written, skipped = self._write_fingerprint_rows(conn, rows.fingerprints, expected)
        return IngestResult(objects_touched=len(touched), fingerprints_written=written, fingerprints_skipped=skipped)

    def _insert_bare_objects(self, conn: Connection, ids: list[str], now: datetime) -> set[str]:
        """Rows for objects that only get a fingerprint (no light curve yet); the ids inserted."""
        o_t = ObjectRecord.__table__
        stmt = self._insert(o_t).on_conflict_do_nothing(index_elements=[o_t.c.object_id]).returning(o_t.c.object_id)
        out: set[str] = set()
        for part in _chunks(ids):
            values = [{"object_id": b, "n_detections": 0, "revision": 1, "updated_at": now} for b in part]
            out.update(k for (k,) in conn.execute(stmt, values))
        return out

    def _write_histories(
        self, conn: Connection, histories: list[dict[str, Any]], touched: set[str], now: datetime
    ) -> set[str]:
        """Replace the light curves that changed; a new light curve is a new revision of its object
        (unless the object's row was written, and revised, in this batch already). The ids changed."""
        o_t, l_t = ObjectRecord.__table__, LightCurveRecord.__table__
        ins = self._insert(l_t)
        stmt = ins.on_conflict_do_update(
            index_elements=[l_t.c.object_id],
            set_={
                "data": ins.excluded.data,
                "n_detections": ins.excluded.n_detections,
                "n_upper_limits": ins.excluded.n_upper_limits,
            },
            where=l_t.c.data != ins.excluded.data,
        ).returning(l_t.c.object_id)
        changed: set[str] = set()
        for part in _chunks(histories):
            changed.update(k for (k,) in conn.execute(stmt, list(part)))
        bump = sorted(changed - touched)
        if bump:
            conn.execute(
                update(o_t)
                .where(o_t.c.object_id == bindparam("oid"))
                .values(revision=o_t.c.revision + 1, updated_at=now),
                [{"oid": k} for k in bump],
            )
        return changed

    def _write_fingerprint_rows(
        self, conn: Connection, fingerprints: list[dict[str, Any]], expected: dict[str, int] | None
    ) -> tuple[int, int]:
        """Upsert fingerprints, each recording the object revision it is of; only those that really
        change are written (and get a new revision). Returns (written, skipped as stale)."""
        if not fingerprints:
            return 0, 0
        f_t = FingerprintRecord.__table__
        current = self._revisions(conn, [r["object_id"] for r in fingerprints])
        values, skipped = [], 0
        for r in fingerprints:
            rev = current.get(r["object_id"])
            if expected is not None and (rev is None or rev != expected.get(r["object_id"])):
                skipped += 1
                continue
            values.append(r | {"source_revision": rev})
        ins = self._insert(f_t)
        changing = ("vector", "dim", "label", "fine_label", "probabilities", "anomaly_score", "model_score",
                    "source_revision")  # fmt: skip
        # JSON has no equality in PostgreSQL, so the probabilities compare as text
        differs = [
            cast(f_t.c[c], Text).is_distinct_from(cast(ins.excluded[c], Text))
            if c == "probabilities"
            else f_t.c[c].is_distinct_from(ins.excluded[c])
            for c in changing
        ]
        stmt = ins.on_conflict_do_update(
            index_elements=[f_t.c.object_id, f_t.c.model_version],
            set_={c: getattr(ins.excluded, c) for c in changing}
            | {"revision": f_t.c.revision + 1, "updated_at": ins.excluded.updated_at},
            where=or_(*differs),
        ).returning(f_t.c.id)
        written = sum(len(conn.execute(stmt, list(part)).all()) for part in _chunks(values))
        return written, skipped

    def _upsert_objects(self, conn: Connection, values: list[dict[str, Any]]) -> set[str]:
        """Insert or update object rows (``None`` keeps the stored value); only rows that really
        change are written, and get a new revision. Returns the ids written."""
        o_t = ObjectRecord.__table__
        ins = self._insert(o_t)
        ex = ins.excluded
        new = {
            c: func.coalesce(getattr(ex, c), o_t.c[c])
            for c in ("survey", "ra", "dec", "first_jd", "last_jd", "known_label")
        }
        new["n_detections"] = func.coalesce(func.nullif(ex.n_detections, 0), o_t.c.n_detections)
        stmt = ins.on_conflict_do_update(
            index_elements=[o_t.c.object_id],
            set_={**new, "revision": o_t.c.revision + 1, "updated_at": ex.updated_at},
            where=or_(*(v.is_distinct_from(o_t.c[c]) for c, v in new.items())),
        ).returning(o_t.c.object_id)
        out: set[str] = set()
        for part in _chunks(values):
            out.update(k for (k,) in conn.execute(stmt, list(part)))
        return out

    def _revisions(self, conn: Connection, ids: Sequence[str]) -> dict[str, int]:
        o = ObjectRecord.__table__.c
        out: dict[str, int] = {}
        for part in _chunks(list(ids)):
            out.update(conn.execute(select(o.object_id, o.revision).where(o.object_id.in_(list(part)))).all())
        return out

    def delete_object(self, object_id: str) -> bool:
        """Delete an object with its light curve and fingerprints. Returns False when unknown."""

        def run(conn: Connection) -> bool:
            self._hold(conn, [object_id])
            for rec in (FingerprintRecord, LightCurveRecord):
                conn.execute(rec.__table__.delete().where(rec.__table__.c.object_id == object_id))
            res = conn.execute(ObjectRecord.__table__.delete().where(ObjectRecord.object_id == object_id))
            return res.rowcount > 0

        return self._write(run)
