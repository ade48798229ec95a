"""Repository API of the metadata store: plain dataclasses in, dataclasses / numpy out.

SQLite (embedded default, WAL mode) and PostgreSQL (``postgresql+psycopg://``) behave the same.
The SQL fingerprints are the source of truth; the FAISS index is a cache rebuilt from them
(see :mod:`indexing.sync`).

Semantics the service relies on:

* An object's light curve is stored whole, as one columnar value (:class:`~indexing.history.History`).
  :meth:`Store.ingest_merged` is the read-merge-write of a batch of objects as ONE transaction
  that holds them exclusively (PostgreSQL: advisory locks; SQLite: the writer's lock), so what
  the caller derives from the stored histories (the merged light curve, its fingerprint and
  predictions) is of exactly the rows stored. Re-posting stored points changes nothing.
* Predictions (class, probabilities, anomaly score) belong to a model version: they are stored
  with that version's fingerprint. Reads name the version (the active one, see :meth:`active_version`).
* Re-encoding with another version (:meth:`stale_object_ids`, :meth:`write_fingerprints`,
  :meth:`activate`) runs beside ingest: a fingerprint records the object revision it was computed
  from, a write is skipped where the object moved on since, and the switch of the active version
  encodes the last stale objects under a lock that keeps ingest out, so the new version is
  complete at the moment it becomes active.
* Writers on SQLite take the database lock up front (``BEGIN IMMEDIATE``, busy timeout 30 s);
  readers never block (WAL). On PostgreSQL deadlocks / serialization failures are retried.
* :meth:`Store.state_marker` changes whenever a fingerprint of the model version or any object
  changes; the index manifest stores it to detect a stale index file.
"""

from __future__ import annotations

import base64
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Text, and_, bindparam, cast, create_engine, event, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from indexing.classes import class_key
from indexing.history import History
from indexing.models import (
    OBJECT_ID_MAX,
    DeadLetterRecord,
    FingerprintRecord,
    LightCurveRecord,
    ModelRecord,
    ObjectRecord,
    utcnow,
)

__all__ = [
    "DEAD_LETTER_PAYLOAD_MAX",
    "DeadLetter",
    "FingerprintBatch",
    "FingerprintRow",
    "FingerprintScan",
    "IngestBatch",
    "IngestResult",
    "ModelInfo",
    "ObjectState",
    "StaleVersion",
    "Store",
    "StoredObject",
    "make_engine",
]

T = TypeVar("T")
_CHUNK = 500  # rows per IN (...) list / executemany slice
_PG_RETRY_CODES = {"40P01", "40001"}  # deadlock_detected, serialization_failure


# --------------------------------------------------------------------------- dataclasses
@dataclass(slots=True)
class ObjectState:
    """An object's row and, on reads, one model version's predictions of it. On input ``None``
    means "keep the stored value"; the detection summary comes from the object's history."""

    object_id: str
    survey: str | None = None
    ra: float | None = None
    dec: float | None = None
    first_jd: float | None = None
    last_jd: float | None = None
    n_detections: int = 0
    label: str | None = None  # output only: the version's predicted (coarse) class
    fine_label: str | None = None  # output only: its predicted fine class
    probabilities: dict[str, float] = field(default_factory=dict)  # output only
    anomaly_score: float | None = None  # output only
    known_label: str | None = None
    updated_at: datetime | None = None  # output only


@dataclass(slots=True)
class FingerprintRow:
    """An object under one model version: its fingerprint and that model's predictions."""

    object_id: str
    vector: np.ndarray
    label: str | None = None  # coarse class
    probabilities: dict[str, float] | None = None
    anomaly_score: float | None = None
    fine_label: str | None = None


@dataclass(slots=True)
class StoredObject:
    """What is stored of one object: its row, its light curve (None: no detection yet) and the
    revision both are at (what a fingerprint computed from them records)."""

    state: ObjectState
    history: History | None
    revision: int


@dataclass(slots=True)
class IngestBatch:
    """The writes of one transaction: object rows, whole histories (replacing the stored ones),
    and fingerprints of ``model_version``. Objects referenced only by a history or a fingerprint
    are created with empty fields when not stored yet."""

    objects: Sequence[ObjectState] = ()
    histories: dict[str, History] = field(default_factory=dict)
    model_version: str | None = None
    fingerprints: Sequence[FingerprintRow] = ()


@dataclass(slots=True)
class IngestResult:
    objects_touched: int  # objects inserted or whose row or light curve changed
    fingerprints_written: int  # fingerprints inserted or changed (an identical one is not rewritten)
    fingerprints_skipped: int = 0  # (write_fingerprints) objects that changed since they were read


@dataclass(slots=True)
class ModelInfo:
    version: str
    path: str
    sha256: str
    dim: int
    class_names: list[str]
    metrics: dict[str, Any] | None
    registered_at: datetime | None
    active: bool


@dataclass(slots=True)
class FingerprintBatch:
    """A slice of the fingerprints of one model version with the index filter attributes.

    Missing values: label ``None``, anomaly_score / last_jd ``nan``, n_detections ``0``.
    """

    object_ids: list[str]
    vectors: np.ndarray  # (n, dim) float32
    labels: list[str | None]  # class keys (indexing.classes): coarse and fine class in one string
    anomaly_score: np.ndarray  # (n,) float64
    last_jd: np.ndarray  # (n,) float64
    n_detections: np.ndarray  # (n,) int64


#: The Alembic scripts: package data beside the models (``alembic.ini`` at the top points the CLI here)
MIGRATIONS = Path(__file__).resolve().parent / "alembic"

#: Bytes of a dead letter's message that are kept (enough to inspect a packet; the rest is dropped).
DEAD_LETTER_PAYLOAD_MAX = 1 << 20


@dataclass(slots=True)
class DeadLetter:
    """A stream message that could not be ingested: where it came from, why, and its bytes."""

    source: str
    partition: int
    offset: int
    error: str
    payload: bytes | None = None
    received_at: datetime | None = None  # output only


class StaleVersion(RuntimeError):
    """A model version cannot become active: objects lack an up-to-date fingerprint of it."""

    def __init__(self, version: str, stale: int) -> None:
        super().__init__(f"{stale} objects have no up-to-date fingerprint of {version!r}")
        self.version, self.stale = version, stale


#: Exclusive transaction-level locks on objects by id hash, taken in one fixed order (hash
#: collisions only serialise two unrelated objects; a deadlock is retried by ``Store._write``).
_PG_LOCK_OBJECTS = text(
    "SELECT pg_advisory_xact_lock(7270002, h) FROM "
    "(SELECT DISTINCT hashtext(x) AS h FROM unnest(CAST(:ids AS text[])) AS x ORDER BY h) AS locks"
)
#: Ingest and re-encode writes hold this shared; the switch of the active version holds it exclusively.
_PG_VERSION_LOCK = 7270003


# --------------------------------------------------------------------------- engine
def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Engine with the project's settings (SQLite: WAL, synchronous=NORMAL, foreign keys, busy timeout)."""
    if url.startswith("sqlite"):
        db = url.split("///", 1)[1] if "///" in url else ""
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None  # transactions are begun by _on_begin
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:
            # writers lock up front: a deferred transaction that upgrades to a writer can fail
            # with SQLITE_BUSY at once instead of waiting for the busy timeout
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("rtf_write") else "BEGIN")

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _f(x: Any) -> float | None:
    return None if x is None else float(x)


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


def _aware(t: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: they are UTC."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def _encode_cursor(score: float, object_id: str) -> str:
    raw = json.dumps([score, object_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    """(score, object_id) of a cursor that :func:`_encode_cursor` could have made; else ValueError."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, object_id = json.loads(raw)
    except Exception as exc:
        raise ValueError(f"invalid anomaly cursor {cursor!r}") from exc
    ok_score = isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
    ok_id = isinstance(object_id, str) and 0 < len(object_id) <= OBJECT_ID_MAX and min(map(ord, object_id)) >= 32
    if not (ok_score and ok_id):
        raise ValueError(f"invalid anomaly cursor {cursor!r}: not a score and an object id")
    return float(score), object_id


def _encode_id_cursor(object_id: str) -> str:
    return base64.urlsafe_b64encode(object_id.encode()).decode().rstrip("=")


def _decode_id_cursor(cursor: str) -> str:
    """The object id of a cursor that :func:`_encode_id_cursor` could have made; else ValueError."""
    try:
        object_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except Exception as exc:
        raise ValueError(f"invalid object cursor {cursor!r}") from exc
    if not 0 < len(object_id) <= OBJECT_ID_MAX or min(map(ord, object_id)) < 32:
        raise ValueError(f"invalid object cursor {cursor!r}")
    return object_id


def _chunks(seq: Sequence, n: int = _CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


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
                "object_id": s.object_id, "survey": s.survey, "ra": _f(s.ra), "dec": _f(s.dec),
                "first_jd": _f(s.first_jd), "last_jd": _f(s.last_jd), "n_detections": int(s.n_detections or 0),
                "known_label": s.known_label, "revision": 1, "updated_at": now,
            }  # fmt: skip
        self.histories: list[dict[str, Any]] = []
        for oid in sorted(batch.histories):
            _check_id(oid)
            h = batch.histories[oid]
            row = self.objects.setdefault(oid, {"object_id": oid, "survey": None, "ra": None, "dec": None,
                                                "known_label": None, "revision": 1, "updated_at": now})  # fmt: skip
            row.update(first_jd=h.first_jd, last_jd=h.last_jd, n_detections=len(h))
            self.histories.append({"object_id": oid, "n_detections": len(h), "n_upper_limits": len(h.ul_jd),
                                   "data": h.to_bytes()})  # fmt: skip
        self.fingerprints: list[dict[str, Any]] = []
        for fp in sorted({f.object_id: f for f in batch.fingerprints}.values(), key=lambda f: f.object_id):
            _check_id(fp.object_id)
            v = np.asarray(fp.vector, dtype="<f4").reshape(-1)
            if not np.all(np.isfinite(v)):
                raise ValueError(f"non-finite fingerprint for {fp.object_id!r}")
            self.fingerprints.append({
                "object_id": fp.object_id, "model_version": batch.model_version, "vector": v.tobytes(),
                "dim": int(v.shape[0]), "label": fp.label, "fine_label": fp.fine_label,
                "probabilities": {k: float(x) for k, x in fp.probabilities.items()} if fp.probabilities else None,
                "anomaly_score": _f(fp.anomaly_score), "source_revision": None, "revision": 1,
                "created_at": now, "updated_at": now,
            })  # fmt: skip
        self.bare = sorted({f["object_id"] for f in self.fingerprints} - self.objects.keys())


def _check_id(object_id: str) -> None:
    if not object_id or len(object_id) > OBJECT_ID_MAX:
        raise ValueError(f"bad object_id {object_id!r}")


# --------------------------------------------------------------------------- fingerprint scan
class FingerprintScan:
    """Consistent streaming read of all fingerprints of a model version (one read snapshot).

    ``marker`` and ``total`` belong to the same snapshot as the rows; iterate for batches.
    Use as a context manager (or exhaust it) so the connection is released.
    """

    def __init__(
        self, store: Store, model_version: str, batch_size: int, updated_since: datetime | None = None
    ) -> None:
        self._store = store
        self.model_version = model_version
        self.batch_size = int(batch_size)
        self.updated_since = updated_since
        conn = store.engine.connect()
        if store.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        self._conn = conn
        conn.begin()
        self.marker, self.total = store._marker_and_count(conn, model_version)

    def __iter__(self) -> Iterator[FingerprintBatch]:
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
                rows = self._conn.execute(q).all()
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


# --------------------------------------------------------------------------- store
class Store:
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

    # ----------------------------------------------------------------- helpers
    def _insert(self, table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _write(self, fn, *, attempts: int = 6):
        """Run ``fn(conn)`` in one write transaction; retry PostgreSQL deadlocks/serialization failures."""
        for attempt in range(attempts):
            try:
                with self.engine.connect().execution_options(rtf_write=True) as conn, conn.begin():
                    return fn(conn)
            except DBAPIError as exc:
                code = getattr(getattr(exc, "orig", None), "sqlstate", None)
                if code not in _PG_RETRY_CODES or attempt == attempts - 1:
                    raise
                time.sleep(0.01 * (2**attempt) * (1 + random.random()))
        raise AssertionError("unreachable")

    def _hold(self, conn, ids: Sequence[str], *, version_lock: str = "shared") -> None:
        """PostgreSQL: the version lock (shared: writers; exclusive: the switch) and the objects'
        locks, for the rest of the transaction. SQLite's writer lock already holds everything."""
        if self.dialect != "postgresql":
            return
        fn = "pg_advisory_xact_lock_shared" if version_lock == "shared" else "pg_advisory_xact_lock"
        conn.exec_driver_sql(f"SELECT {fn}({_PG_VERSION_LOCK})")
        if ids:
            conn.execute(_PG_LOCK_OBJECTS, {"ids": list(ids)})

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

        def run(conn) -> tuple[IngestResult, T]:
            self._hold(conn, ids)
            batch, payload = prepare(self._read_objects(conn, ids), self._active_version(conn))
            return self._apply(conn, _Rows(batch)), payload

        return self._write(run)

    def _apply(self, conn, rows: _Rows, expected: dict[str, int] | None = None) -> IngestResult:
        """The writes of one batch inside a write transaction. ``expected``: write a fingerprint
        only where its object is still at that revision (re-encoding)."""
        o_t, l_t, f_t = ObjectRecord.__table__, LightCurveRecord.__table__, FingerprintRecord.__table__
        touched: set[str] = set()
        if rows.objects:
            touched |= self._upsert_objects(conn, [rows.objects[k] for k in sorted(rows.objects)])
        if rows.bare:
            stmt = self._insert(o_t).on_conflict_do_nothing(index_elements=[o_t.c.object_id]).returning(o_t.c.object_id)
            for part in _chunks(rows.bare):
                values = [{"object_id": b, "n_detections": 0, "revision": 1, "updated_at": rows.now} for b in part]
                touched.update(k for (k,) in conn.execute(stmt, values))
        if rows.histories:
            ins = self._insert(l_t)
            stmt = ins.on_conflict_do_update(
                index_elements=[l_t.c.object_id],
                set_={"data": ins.excluded.data, "n_detections": ins.excluded.n_detections,
                      "n_upper_limits": ins.excluded.n_upper_limits},
                where=l_t.c.data != ins.excluded.data,
            ).returning(l_t.c.object_id)  # fmt: skip
            changed: set[str] = set()
            for part in _chunks(rows.histories):
                changed.update(k for (k,) in conn.execute(stmt, list(part)))
            bump = sorted(changed - touched)  # a new light curve is a new revision of its object
            if bump:
                conn.execute(
                    update(o_t).where(o_t.c.object_id == bindparam("oid"))
                    .values(revision=o_t.c.revision + 1, updated_at=rows.now),
                    [{"oid": k} for k in bump],
                )  # fmt: skip
            touched |= changed
        n_fp = skipped = 0
        if rows.fingerprints:
            ids = [r["object_id"] for r in rows.fingerprints]
            current = self._revisions(conn, ids)
            values = []
            for r in rows.fingerprints:
                rev = current.get(r["object_id"])
                if expected is not None and (rev is None or rev != expected.get(r["object_id"])):
                    skipped += 1
                    continue
                values.append(r | {"source_revision": rev})
            ins = self._insert(f_t)
            changing = ("vector", "dim", "label", "fine_label", "probabilities", "anomaly_score", "source_revision")
            # only fingerprints that really change are written (and get a new revision); JSON has no
            # equality in PostgreSQL, so the probabilities compare as text
            differs = [cast(f_t.c[c], Text).is_distinct_from(cast(ins.excluded[c], Text)) if c == "probabilities"
                       else f_t.c[c].is_distinct_from(ins.excluded[c]) for c in changing]  # fmt: skip
            stmt = ins.on_conflict_do_update(
                index_elements=[f_t.c.object_id, f_t.c.model_version],
                set_={c: getattr(ins.excluded, c) for c in changing}
                | {"revision": f_t.c.revision + 1, "updated_at": ins.excluded.updated_at},
                where=or_(*differs),
            ).returning(f_t.c.id)
            for part in _chunks(values):
                n_fp += len(conn.execute(stmt, list(part)).all())
        return IngestResult(objects_touched=len(touched), fingerprints_written=n_fp, fingerprints_skipped=skipped)

    def _upsert_objects(self, conn, values: list[dict[str, Any]]) -> set[str]:
        """Insert or update object rows (``None`` keeps the stored value); only rows that really
        change are written, and get a new revision. Returns the ids written."""
        o_t = ObjectRecord.__table__
        ins = self._insert(o_t)
        ex = ins.excluded
        new = {c: func.coalesce(getattr(ex, c), o_t.c[c])
               for c in ("survey", "ra", "dec", "first_jd", "last_jd", "known_label")}  # fmt: skip
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

    def _revisions(self, conn, ids: Sequence[str]) -> dict[str, int]:
        o = ObjectRecord.__table__.c
        out: dict[str, int] = {}
        for part in _chunks(list(ids)):
            out.update(conn.execute(select(o.object_id, o.revision).where(o.object_id.in_(list(part)))).all())
        return out

    def delete_object(self, object_id: str) -> bool:
        """Delete an object with its light curve and fingerprints. Returns False when unknown."""

        def run(conn) -> bool:
            self._hold(conn, [object_id])
            for rec in (FingerprintRecord, LightCurveRecord):
                conn.execute(rec.__table__.delete().where(rec.__table__.c.object_id == object_id))
            res = conn.execute(ObjectRecord.__table__.delete().where(ObjectRecord.object_id == object_id))
            return res.rowcount > 0

        return self._write(run)

    # ----------------------------------------------------------------- reads
    @staticmethod
    def _state(r, prediction=None) -> ObjectState:
        label, probabilities, score, fine = prediction if prediction is not None else (None, None, None, None)
        return ObjectState(
            object_id=r.object_id, survey=r.survey, ra=r.ra, dec=r.dec, first_jd=r.first_jd, last_jd=r.last_jd,
            n_detections=r.n_detections, label=label, probabilities=dict(probabilities or {}), anomaly_score=score,
            fine_label=fine, known_label=r.known_label, updated_at=_aware(r.updated_at),
        )  # fmt: skip

    def _read_objects(self, conn, ids: Sequence[str]) -> dict[str, StoredObject]:
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
                    q = select(f.object_id, f.label, f.probabilities, f.anomaly_score, f.fine_label).where(
                        f.model_version == model_version, f.object_id.in_(list(rows))
                    )
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
            return int(conn.scalar(select(func.count()).select_from(ObjectRecord)))

    def count_fingerprints(self, model_version: str) -> int:
        q = select(func.count()).select_from(FingerprintRecord).where(FingerprintRecord.model_version == model_version)
        with self.engine.connect() as conn:
            return int(conn.scalar(q))

    def anomalies(
        self,
        *,
        model_version: str,
        limit: int = 50,
        cursor: str | None = None,
        label: str | None = None,
        fine_label: str | None = None,
        since_jd: float | None = None,
    ) -> tuple[list[ObjectState], str | None]:
        """Objects ranked by the anomaly score of ``model_version`` desc, object_id asc (objects
        without a score are left out).

        ``cursor`` is the opaque string returned by the previous page (None for the first);
        the second value is the next page's cursor, None on the last page. Keyset paging:
        pages never skip or repeat rows while the rows don't change. Filters: ``label`` and
        ``fine_label`` (predicted coarse and fine class), ``since_jd`` (last_jd >= since_jd).
        """
        if limit <= 0:
            raise ValueError("limit must be positive")
        o_t, f = ObjectRecord.__table__, FingerprintRecord.__table__.c
        q = (
            select(o_t, f.label.label("p_label"), f.probabilities.label("p_probs"), f.anomaly_score.label("p_score"), f.fine_label.label("p_fine"))
            .join_from(FingerprintRecord.__table__, o_t, f.object_id == o_t.c.object_id)
            .where(f.model_version == model_version, f.anomaly_score.is_not(None))
        )
        if label is not None:
            q = q.where(f.label == label)
        if fine_label is not None:
            q = q.where(f.fine_label == fine_label)
        if since_jd is not None:
            q = q.where(o_t.c.last_jd >= float(since_jd))
        if cursor:
            score, oid = _decode_cursor(cursor)
            q = q.where(or_(f.anomaly_score < score, and_(f.anomaly_score == score, f.object_id > oid)))
        q = q.order_by(f.anomaly_score.desc(), f.object_id.asc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        page = [self._state(r, (r.p_label, r.p_probs, r.p_score, r.p_fine)) for r in rows[:limit]]
        nxt = _encode_cursor(page[-1].anomaly_score, page[-1].object_id) if len(rows) > limit else None
        return page, nxt

    def list_objects(
        self,
        *,
        model_version: str,
        limit: int = 100,
        cursor: str | None = None,
        label: str | None = None,
        fine_label: str | None = None,
        since_jd: float | None = None,
        min_detections: int | None = None,
    ) -> tuple[list[ObjectState], str | None]:
        """Objects by id, with the predictions of ``model_version``; keyset paging by object id
        (``cursor``: the previous page's, None for the first; the second value is the next page's).
        Filters: ``label`` and ``fine_label`` (predicted coarse and fine class), ``since_jd`` (last_jd >= it),
        ``min_detections``."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        o_t, f = ObjectRecord.__table__, FingerprintRecord.__table__.c
        q = select(o_t, f.label.label("p_label"), f.probabilities.label("p_probs"),
                   f.anomaly_score.label("p_score"), f.fine_label.label("p_fine")).outerjoin(
            FingerprintRecord.__table__, and_(f.object_id == o_t.c.object_id, f.model_version == model_version))  # fmt: skip
        if label is not None:
            q = q.where(f.label == label)
        if fine_label is not None:
            q = q.where(f.fine_label == fine_label)
        if since_jd is not None:
            q = q.where(o_t.c.last_jd >= float(since_jd))
        if min_detections is not None:
            q = q.where(o_t.c.n_detections >= int(min_detections))
        if cursor:
            q = q.where(o_t.c.object_id > _decode_id_cursor(cursor))
        q = q.order_by(o_t.c.object_id).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        page = [self._state(r, (r.p_label, r.p_probs, r.p_score, r.p_fine)) for r in rows[:limit]]
        nxt = _encode_id_cursor(page[-1].object_id) if len(rows) > limit else None
        return page, nxt

    def cone(self, ra: float, dec: float, radius_deg: float, *, model_version: str, limit: int = 100
             ) -> list[tuple[ObjectState, float]]:  # fmt: skip
        """Objects within ``radius_deg`` of (ra, dec) (degrees; coordinates as stored from packets
        and JSON), nearest first, with their separation in degrees. SQL narrows by a box in dec
        (indexed) and ra (wrapping at 0/360; none near a pole); the exact great-circle distance decides."""
        o_t, f = ObjectRecord.__table__, FingerprintRecord.__table__.c
        q = (
            select(o_t, f.label.label("p_label"), f.probabilities.label("p_probs"), f.anomaly_score.label("p_score"), f.fine_label.label("p_fine"))
            .outerjoin(FingerprintRecord.__table__,
                       and_(f.object_id == o_t.c.object_id, f.model_version == model_version))
            .where(o_t.c.dec >= dec - radius_deg, o_t.c.dec <= dec + radius_deg, o_t.c.ra.is_not(None))
        )  # fmt: skip
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
        return [(self._state(rows[i], (rows[i].p_label, rows[i].p_probs, rows[i].p_score, rows[i].p_fine)), float(sep[i]))
                for i in order]  # fmt: skip

    # ----------------------------------------------------------------- change tracking
    def _marker_and_count(self, conn, model_version: str) -> tuple[str, int]:
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

    # ----------------------------------------------------------------- model versions
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

        def run(conn) -> None:
            m = ModelRecord.__table__
            ins = self._insert(m)
            row = {"version": version, "path": str(path), "sha256": sha256, "dim": int(dim),
                   "class_names": list(class_names), "metrics": metrics, "registered_at": utcnow(),
                   "active": bool(active)}  # fmt: skip
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

    def _active_version(self, conn) -> str | None:
        m = ModelRecord.__table__.c
        return conn.scalar(select(m.version).where(m.active.is_(True)))

    def active_version(self) -> str | None:
        """The version the service answers with (None before any model is registered as active)."""
        with self.engine.connect() as conn:
            return self._active_version(conn)

    def active_model(self) -> ModelInfo | None:
        return next((m for m in self.list_models() if m.active), None)

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
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(self._stale_query(model_version).subquery())))

    def stale_object_ids(self, model_version: str, *, after: str = "", limit: int = 1000) -> list[str]:
        """The next ``limit`` stale objects (see :meth:`count_stale`) after ``after``, by object id."""
        o = ObjectRecord.__table__.c
        q = self._stale_query(model_version).where(o.object_id > after).order_by(o.object_id).limit(limit)
        with self.engine.connect() as conn:
            return list(conn.scalars(q))

    def write_fingerprints(self, model_version: str, rows: Sequence[FingerprintRow], revisions: dict[str, int]
                           ) -> IngestResult:  # fmt: skip
        """Store fingerprints computed from the objects at ``revisions`` (what :meth:`read_objects`
        returned); one whose object changed since is skipped (it is stale, and found again)."""
        batch = _Rows(IngestBatch(model_version=model_version, fingerprints=rows))
        batch.bare = []  # never create objects: a deleted object stays deleted

        def run(conn) -> IngestResult:
            self._hold(conn, [r["object_id"] for r in batch.fingerprints])
            return self._apply(conn, batch, expected=revisions)

        return self._write(run)

    def activate(self, model_version: str,
                 finish: Callable[[dict[str, StoredObject]], Sequence[FingerprintRow]] | None = None) -> int:  # fmt: skip
        """Make ``model_version`` the active version, atomically. Ingest is held off meanwhile; the
        objects still stale are handed to ``finish`` (which encodes them) and written first, so the
        version is complete when it becomes active. Without ``finish`` a stale object refuses the
        switch (:class:`StaleVersion`). Returns how many objects ``finish`` encoded."""

        def run(conn) -> int:
            self._hold(conn, [], version_lock="exclusive")
            m = ModelRecord.__table__
            if conn.scalar(select(func.count()).select_from(m).where(m.c.version == model_version)) == 0:
                raise KeyError(model_version)
            stale = list(conn.scalars(self._stale_query(model_version)))
            if stale and finish is None:
                raise StaleVersion(model_version, len(stale))
            if stale:
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

        def run(conn) -> int:
            self._hold(conn, [], version_lock="exclusive")
            m, f = ModelRecord.__table__, FingerprintRecord.__table__
            if conn.scalar(select(m.c.active).where(m.c.version == model_version)):
                raise ValueError(f"{model_version!r} is the active version; activate another first")
            n = conn.execute(f.delete().where(f.c.model_version == model_version)).rowcount
            conn.execute(m.delete().where(m.c.version == model_version))
            return n

        return self._write(run)

    # ----------------------------------------------------------------- dead letters
    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Record messages that could not be ingested (one per source, partition and offset:
        a replayed message is not recorded twice). Returns how many were new."""
        if not letters:
            return 0
        t = DeadLetterRecord.__table__
        now = utcnow()
        rows = [{"source": d.source[:256], "partition": int(d.partition), "offset": int(d.offset),
                 "error": d.error[:2000], "received_at": now,
                 "payload": None if d.payload is None else bytes(d.payload[:DEAD_LETTER_PAYLOAD_MAX])}
                for d in letters]  # fmt: skip
        stmt = self._insert(t).on_conflict_do_nothing(index_elements=[t.c.source, t.c.partition, t.c.offset])
        stmt = stmt.returning(t.c.id)
        return self._write(lambda conn: sum(len(conn.execute(stmt, list(part)).all()) for part in _chunks(rows)))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        t = DeadLetterRecord.__table__.c
        q = select(t.source, t.partition, t.offset, t.error, t.payload, t.received_at).order_by(t.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [DeadLetter(*r[:5], _aware(r[5])) for r in conn.execute(q)]

    def count_dead_letters(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(DeadLetterRecord)))
