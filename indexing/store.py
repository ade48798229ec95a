"""Repository API of the metadata store: plain dataclasses in, dataclasses / numpy out.

SQLite (embedded default, WAL mode) and PostgreSQL (``postgresql+psycopg://``) behave the same.
The SQL fingerprints are the source of truth; the FAISS index is a cache rebuilt from them
(see :mod:`indexing.sync`).

Semantics the service relies on:

* :meth:`Store.ingest` is ONE transaction. Alerts are inserted with ``ON CONFLICT (alert_key)
  DO NOTHING`` so re-ingesting the same alerts changes nothing; objects and fingerprints are
  upserted. ``None`` in an :class:`ObjectState` field (or empty ``probabilities``, or
  ``n_detections == 0``) means
  "keep the stored value". For every object that has alerts in the call, ``first_jd``,
  ``last_jd`` and ``n_detections`` are recomputed from *all* its stored alerts inside the
  transaction, under the object's row lock, so concurrent ingests into PostgreSQL never lose
  detections. Through :meth:`Store.ingest` the predicted fields (label, probabilities,
  anomaly_score) and the fingerprint are last-writer-wins; :meth:`Store.ingest_merged` (what the
  service uses) locks the objects before reading their histories, so they are exact.
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
from sqlalchemy import Text, and_, bindparam, cast, create_engine, event, exists, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from indexing.models import (
    OBJECT_ID_MAX,
    AlertRecord,
    FingerprintRecord,
    ModelRecord,
    ObjectRecord,
    UpperLimitRecord,
    utcnow,
)

__all__ = [
    "AlertRow",
    "FingerprintBatch",
    "FingerprintScan",
    "IngestBatch",
    "IngestResult",
    "ModelInfo",
    "ObjectState",
    "Store",
    "StoredHistory",
    "UpperLimitRow",
    "make_engine",
]

T = TypeVar("T")
_CHUNK = 500  # rows per IN (...) list / executemany slice
_PG_RETRY_CODES = {"40P01", "40001"}  # deadlock_detected, serialization_failure


# --------------------------------------------------------------------------- dataclasses
@dataclass(slots=True)
class AlertRow:
    """One detection. ``alert_key`` is unique (the service writes f"{object_id}:{jd!r}:{band}")."""

    alert_key: str
    object_id: str
    jd: float
    band: str
    mag: float | None
    mag_err: float | None
    flux: float
    flux_err: float
    meta: dict[str, Any] | str | None = None  # a dict, or its JSON text (read back as a dict)


@dataclass(slots=True)
class UpperLimitRow:
    """A non-detection; unique on (object_id, jd, band)."""

    object_id: str
    jd: float
    band: str
    mag: float | None = None


@dataclass(slots=True)
class ObjectState:
    """An object's row. On input ``None`` means "keep the stored value" (see module doc)."""

    object_id: str
    survey: str | None = None
    ra: float | None = None
    dec: float | None = None
    first_jd: float | None = None
    last_jd: float | None = None
    n_detections: int = 0
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    anomaly_score: float | None = None
    known_label: str | None = None
    updated_at: datetime | None = None  # output only


@dataclass(slots=True)
class IngestResult:
    new_alerts: int  # alerts inserted (not seen before)
    duplicate_alerts: int  # alerts skipped because their alert_key was stored already
    new_upper_limits: int
    objects_touched: int  # objects inserted or whose stored row changed
    fingerprints_written: int  # fingerprints inserted or changed
    new_alert_keys: list[str] = field(default_factory=list)


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
    labels: list[str | None]
    anomaly_score: np.ndarray  # (n,) float64
    last_jd: np.ndarray  # (n,) float64
    n_detections: np.ndarray  # (n,) int64


@dataclass(slots=True)
class StoredHistory:
    """What is stored of one object: its row, its alerts and its upper limits (by jd, band)."""

    state: ObjectState
    alerts: list[AlertRow]
    upper_limits: list[UpperLimitRow]


@dataclass(slots=True)
class IngestBatch:
    """The writes of one :meth:`Store.ingest` transaction. ``drop_alert_keys`` and
    ``drop_upper_limits`` (object_id, jd, band) are stored points to delete (the history cap)."""

    objects: Sequence[ObjectState]
    alerts: Sequence[AlertRow] = ()
    fingerprints: dict[str, np.ndarray] | None = None
    model_version: str | None = None
    upper_limits: Sequence[UpperLimitRow] = ()
    drop_alert_keys: Sequence[str] = ()
    drop_upper_limits: Sequence[tuple[str, float, str]] = ()


class _IngestRows:
    """An :class:`IngestBatch` as checked, de-duplicated and sorted SQL rows (sorted: every
    transaction takes row locks in the same order, which avoids deadlocks)."""

    def __init__(self, batch: IngestBatch) -> None:
        fingerprints = batch.fingerprints or {}
        if fingerprints and not batch.model_version:
            raise ValueError("fingerprints need a model_version")
        self.now = now = utcnow()
        self.objects: dict[str, dict[str, Any]] = {}
        for s in batch.objects:
            if not s.object_id or len(s.object_id) > OBJECT_ID_MAX:
                raise ValueError(f"bad object_id {s.object_id!r}")
            self.objects[s.object_id] = {
                "object_id": s.object_id,
                "survey": s.survey,
                "ra": _f(s.ra),
                "dec": _f(s.dec),
                "first_jd": _f(s.first_jd),
                "last_jd": _f(s.last_jd),
                "n_detections": int(s.n_detections or 0),
                "label": s.label,
                "probabilities": {k: float(v) for k, v in s.probabilities.items()} if s.probabilities else None,
                "anomaly_score": _f(s.anomaly_score),
                "known_label": s.known_label,
                "revision": 1,
                "updated_at": now,
            }
        referenced = {a.object_id for a in batch.alerts} | {u.object_id for u in batch.upper_limits} | set(fingerprints)
        self.bare = sorted(referenced - self.objects.keys())
        self.alerts = sorted(
            (
                {
                    "alert_key": a.alert_key,
                    "object_id": a.object_id,
                    "jd": float(a.jd),
                    "band": a.band,
                    "mag": _f(a.mag),
                    "mag_err": _f(a.mag_err),
                    "flux": float(a.flux),
                    "flux_err": float(a.flux_err),
                    "meta": a.meta,
                }
                for a in {a.alert_key: a for a in batch.alerts}.values()
            ),
            key=lambda r: r["alert_key"],
        )
        self.limits = sorted(
            {(u.object_id, float(u.jd), u.band): _f(u.mag) for u in batch.upper_limits}.items(), key=lambda kv: kv[0]
        )
        self.fps = []
        for oid in sorted(fingerprints):
            v = np.asarray(fingerprints[oid], dtype="<f4").reshape(-1)
            if not np.all(np.isfinite(v)):
                raise ValueError(f"non-finite fingerprint for {oid!r}")
            self.fps.append(
                {
                    "object_id": oid,
                    "model_version": batch.model_version,
                    "vector": v.tobytes(),
                    "dim": int(v.shape[0]),
                    "revision": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        self.drop_alert_keys = sorted(batch.drop_alert_keys)
        self.drop_limits = sorted(batch.drop_upper_limits)
        # objects whose detection summary is re-derived from their stored alerts
        self.summary_objects = sorted(self.objects.keys() | {r["object_id"] for r in self.alerts})


#: Exclusive transaction-level locks on objects by id hash, taken in one fixed order (hash
#: collisions only serialise two unrelated objects; a deadlock is retried by ``Store._write``).
_PG_LOCK_OBJECTS = text(
    "SELECT pg_advisory_xact_lock(7270002, h) FROM "
    "(SELECT DISTINCT hashtext(x) AS h FROM unnest(CAST(:ids AS text[])) AS x ORDER BY h) AS locks"
)


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


def _chunks(seq: Sequence, n: int = _CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


# --------------------------------------------------------------------------- SQLite bulk path
# SQLAlchemy's insertmanyvalues with RETURNING costs ~20 us of Python per row; the DBAPI's executemany
# costs ~2. On SQLite a writer holds the database lock for the whole transaction (BEGIN IMMEDIATE), so
# "select the stored keys, then insert the rest" is exact: nobody can insert in between.
_ALERT_COLUMNS = ("alert_key", "object_id", "jd", "band", "mag", "mag_err", "flux", "flux_err", "meta")


def _insert_new_alerts_sqlite(conn, alert_rows: list[dict[str, Any]]) -> list[str]:
    a_t = AlertRecord.__table__
    stored: set[str] = set()
    for part in _chunks([r["alert_key"] for r in alert_rows]):
        stored.update(conn.scalars(select(a_t.c.alert_key).where(a_t.c.alert_key.in_(list(part)))))
    fresh = [r for r in alert_rows if r["alert_key"] not in stored]
    if fresh:
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        values = [
            (*(r[c] for c in _ALERT_COLUMNS[:-1]), r["meta"] if r["meta"] is None or isinstance(r["meta"], str)
             else dumps(r["meta"]))
            for r in fresh
        ]  # fmt: skip
        placeholders = ",".join("?" * len(_ALERT_COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO {a_t.name} ({','.join(_ALERT_COLUMNS)}) VALUES ({placeholders})", values)
    return [r["alert_key"] for r in fresh]


def _insert_new_limits_sqlite(conn, ul_rows: list[tuple[tuple[str, float, str], float | None]]) -> int:
    u_t = UpperLimitRecord.__table__
    res = conn.exec_driver_sql(  # executemany's rowcount sums the rows really inserted
        f"INSERT INTO {u_t.name} (object_id, jd, band, mag) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
        [(o, jd, b, m) for (o, jd, b), m in ul_rows],
    )
    return res.rowcount


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
                    select(f.id, f.object_id, f.vector, f.dim, o.label, o.anomaly_score, o.last_jd, o.n_detections)
                    .join_from(FingerprintRecord.__table__, ObjectRecord.__table__, f.object_id == o.object_id)
                    .where(f.model_version == self.model_version, f.id > last)
                    .order_by(f.id)
                    .limit(self.batch_size)
                )
                if self.updated_since is not None:
                    q = q.where(f.updated_at >= self.updated_since)
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
                    labels=[r[4] for r in rows],
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
        from alembic.config import Config

        from alembic import command

        root = Path(__file__).resolve().parents[1]
        ini = root / "alembic.ini"
        cfg = Config(str(ini)) if ini.is_file() else Config()
        cfg.set_main_option("script_location", str(root / "alembic"))
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

    # ----------------------------------------------------------------- ingest
    def ingest(
        self,
        objects: Sequence[ObjectState],
        alerts: Sequence[AlertRow] = (),
        fingerprints: dict[str, np.ndarray] | None = None,
        model_version: str | None = None,
        upper_limits: Sequence[UpperLimitRow] = (),
    ) -> IngestResult:
        """Store a batch in ONE transaction (see the module doc for the semantics).

        ``fingerprints`` maps object_id -> (dim,) vector (stored as float32) and needs
        ``model_version``. Objects referenced by alerts / limits / fingerprints but absent from
        ``objects`` are created with empty fields when not stored yet.
        """
        rows = _IngestRows(IngestBatch(objects, alerts, fingerprints, model_version, upper_limits))
        return self._write(lambda conn: self._apply(conn, rows))

    def ingest_merged(self, object_ids: Sequence[str], prepare: Callable[[dict[str, StoredHistory]], tuple[IngestBatch, T]]
                      ) -> tuple[IngestResult, T]:  # fmt: skip
        """Read-merge-write of these objects as ONE transaction that holds them exclusively.

        The objects are locked first (PostgreSQL: transaction-level advisory locks in a fixed order;
        SQLite: the writer's database lock, ``BEGIN IMMEDIATE``), then their stored histories are
        read and handed to ``prepare``, whose batch is written before the commit. Two processes
        ingesting the same object are serialised, so what ``prepare`` derives from the history (the
        fingerprint, the predictions) is of exactly the rows stored. ``prepare`` may raise to store
        nothing; it runs again if a PostgreSQL deadlock makes the transaction retry.
        """
        ids = sorted(set(object_ids))

        def run(conn) -> tuple[IngestResult, T]:
            if self.dialect == "postgresql" and ids:
                conn.execute(_PG_LOCK_OBJECTS, {"ids": ids})
            batch, payload = prepare(self._read_histories(conn, ids))
            return self._apply(conn, _IngestRows(batch)), payload

        return self._write(run)

    def _read_histories(self, conn, ids: Sequence[str]) -> dict[str, StoredHistory]:
        """Rows, alerts (by jd, band) and upper limits (by jd, band) of the stored objects among ``ids``."""
        o_t, a, u = ObjectRecord.__table__, AlertRecord.__table__.c, UpperLimitRecord.__table__.c
        out: dict[str, StoredHistory] = {}
        for part in _chunks(list(ids)):
            for r in conn.execute(select(o_t).where(o_t.c.object_id.in_(list(part)))):
                out[r.object_id] = StoredHistory(self._state(r), [], [])
            q = (
                select(a.alert_key, a.object_id, a.jd, a.band, a.mag, a.mag_err, a.flux, a.flux_err, a.meta)
                .where(a.object_id.in_(list(part)))
                .order_by(a.object_id, a.jd, a.band, a.id)
            )
            for r in conn.execute(q):
                if r[1] in out:
                    out[r[1]].alerts.append(AlertRow(*r))
            q = select(u.object_id, u.jd, u.band, u.mag).where(u.object_id.in_(list(part))).order_by(u.object_id, u.jd, u.band)
            for r in conn.execute(q):
                if r[0] in out:
                    out[r[0]].upper_limits.append(UpperLimitRow(*r))
        return out

    def _apply(self, conn, plan: _IngestRows) -> IngestResult:
        """The writes of one batch, on a connection inside a write transaction."""
        obj_rows, bare, alert_rows, ul_rows, fp_rows = plan.objects, plan.bare, plan.alerts, plan.limits, plan.fps
        summary_objects, now = plan.summary_objects, plan.now
        o_t, a_t, u_t, f_t = (
            ObjectRecord.__table__,
            AlertRecord.__table__,
            UpperLimitRecord.__table__,
            FingerprintRecord.__table__,
        )
        # 1. objects first (sorted: a consistent row-lock order avoids deadlocks)
        touched: set[str] = set()
        if obj_rows:
            ins = self._insert(o_t)
            ex = ins.excluded
            new = {
                c: func.coalesce(getattr(ex, c), getattr(o_t.c, c))
                for c in ("survey", "ra", "dec", "first_jd", "last_jd", "label", "anomaly_score", "known_label")
            }
            new["n_detections"] = func.coalesce(func.nullif(ex.n_detections, 0), o_t.c.n_detections)
            new["probabilities"] = func.coalesce(ex.probabilities, o_t.c.probabilities)
            # only rows that really change are written (and get a new revision)
            changed = or_(
                *(
                    (cast(v, Text) if c == "probabilities" else v).is_distinct_from(
                        cast(o_t.c[c], Text) if c == "probabilities" else o_t.c[c]
                    )
                    for c, v in new.items()
                )
            )
            stmt = ins.on_conflict_do_update(
                index_elements=[o_t.c.object_id],
                set_={**new, "revision": o_t.c.revision + 1, "updated_at": ex.updated_at},
                where=changed,
            ).returning(o_t.c.object_id)
            rows = [obj_rows[k] for k in sorted(obj_rows)]
            for part in _chunks(rows):
                touched.update(k for (k,) in conn.execute(stmt, list(part)))
        if bare:
            stmt = (
                self._insert(o_t)
                .on_conflict_do_nothing(index_elements=[o_t.c.object_id])
                .returning(o_t.c.object_id)
            )
            for part in _chunks(bare):
                rows = [{"object_id": b, "n_detections": 0, "revision": 1, "updated_at": now} for b in part]
                touched.update(k for (k,) in conn.execute(stmt, rows))
        # 2. alerts, skipping stored keys
        new_keys: list[str] = []
        if alert_rows and self.dialect == "sqlite":
            new_keys = _insert_new_alerts_sqlite(conn, alert_rows)
        elif alert_rows:
            stmt = (
                self._insert(a_t)
                .on_conflict_do_nothing(index_elements=[a_t.c.alert_key])
                .returning(a_t.c.alert_key)
            )
            for part in _chunks(alert_rows):
                rows = [r | {"meta": json.loads(r["meta"])} if isinstance(r["meta"], str) else r for r in part]
                new_keys.extend(k for (k,) in conn.execute(stmt, rows))
        n_ul = 0
        if ul_rows and self.dialect == "sqlite":
            n_ul = _insert_new_limits_sqlite(conn, ul_rows)
        elif ul_rows:
            stmt = (
                self._insert(u_t)
                .on_conflict_do_nothing(index_elements=[u_t.c.object_id, u_t.c.jd, u_t.c.band])
                .returning(u_t.c.id)
            )
            for part in _chunks(ul_rows):
                rows = [{"object_id": o, "jd": jd, "band": b, "mag": m} for (o, jd, b), m in part]
                n_ul += len(conn.execute(stmt, rows).all())
        # 2b. the history cap: points the caller dropped (oldest first) leave with this transaction
        for part in _chunks(plan.drop_alert_keys):
            conn.execute(a_t.delete().where(a_t.c.alert_key.in_(list(part))))
        if plan.drop_limits:
            conn.execute(
                u_t.delete().where(u_t.c.object_id == bindparam("o"), u_t.c.jd == bindparam("j"), u_t.c.band == bindparam("b")),
                [{"o": o, "j": j, "b": b} for o, j, b in plan.drop_limits],
            )
        # 3. detection summary from all stored alerts (authoritative under concurrency; objects
        #    without any stored alert keep the caller's first_jd / last_jd / n_detections)
        for part in _chunks(summary_objects):
            agg = (
                select(
                    a_t.c.object_id,
                    func.count().label("n"),
                    func.min(a_t.c.jd).label("first"),
                    func.max(a_t.c.jd).label("last"),
                )
                .where(a_t.c.object_id.in_(list(part)))
                .group_by(a_t.c.object_id)
            )
            summary = conn.execute(agg).all()
            if summary:
                n, first, last = bindparam("n"), bindparam("first"), bindparam("last")
                res = conn.execute(
                    update(o_t)
                    .where(
                        o_t.c.object_id == bindparam("oid"),
                        or_(
                            o_t.c.n_detections.is_distinct_from(n),
                            o_t.c.first_jd.is_distinct_from(first),
                            o_t.c.last_jd.is_distinct_from(last),
                        ),
                    )
                    .values(
                        n_detections=n,
                        first_jd=first,
                        last_jd=last,
                        revision=o_t.c.revision + 1,
                        updated_at=now,
                    ),
                    [{"oid": r[0], "n": r[1], "first": r[2], "last": r[3]} for r in summary],
                )
                if res.rowcount:
                    touched.update(r[0] for r in summary)
        # 4. fingerprints
        n_fp = 0
        if fp_rows:
            ins = self._insert(f_t)
            stmt = ins.on_conflict_do_update(
                index_elements=[f_t.c.object_id, f_t.c.model_version],
                set_={
                    "vector": ins.excluded.vector,
                    "dim": ins.excluded.dim,
                    "revision": f_t.c.revision + 1,
                    "updated_at": ins.excluded.updated_at,
                },
                where=f_t.c.vector.is_distinct_from(ins.excluded.vector),
            ).returning(f_t.c.id)
            for part in _chunks(fp_rows):
                n_fp += len(conn.execute(stmt, list(part)).all())
        return IngestResult(
            new_alerts=len(new_keys),
            duplicate_alerts=len(alert_rows) - len(new_keys),
            new_upper_limits=n_ul,
            objects_touched=len(touched),
            fingerprints_written=n_fp,
            new_alert_keys=new_keys,
        )

    def update_predictions(
        self,
        object_id: str,
        *,
        label: str | None = None,
        probabilities: dict[str, float] | None = None,
        anomaly_score: float | None = None,
    ) -> bool:
        """Set the predicted fields of a stored object (``None`` keeps). Returns False when unknown."""
        values: dict[str, Any] = {"revision": ObjectRecord.revision + 1, "updated_at": utcnow()}
        if label is not None:
            values["label"] = label
        if probabilities is not None:
            values["probabilities"] = {k: float(v) for k, v in probabilities.items()}
        if anomaly_score is not None:
            values["anomaly_score"] = float(anomaly_score)

        def run(conn) -> bool:
            res = conn.execute(update(ObjectRecord).where(ObjectRecord.object_id == object_id).values(**values))
            return res.rowcount > 0

        return self._write(run)

    def delete_object(self, object_id: str) -> bool:
        """Delete an object with its alerts, limits and fingerprints. Returns False when unknown."""

        def run(conn) -> bool:
            for rec in (FingerprintRecord, AlertRecord, UpperLimitRecord):
                conn.execute(rec.__table__.delete().where(rec.__table__.c.object_id == object_id))
            res = conn.execute(ObjectRecord.__table__.delete().where(ObjectRecord.object_id == object_id))
            return res.rowcount > 0

        return self._write(run)

    # ----------------------------------------------------------------- reads
    @staticmethod
    def _state(r: ObjectRecord) -> ObjectState:
        return ObjectState(
            object_id=r.object_id,
            survey=r.survey,
            ra=r.ra,
            dec=r.dec,
            first_jd=r.first_jd,
            last_jd=r.last_jd,
            n_detections=r.n_detections,
            label=r.label,
            probabilities=dict(r.probabilities or {}),
            anomaly_score=r.anomaly_score,
            known_label=r.known_label,
            updated_at=_aware(r.updated_at),
        )

    def get_object(self, object_id: str) -> ObjectState | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(ObjectRecord.__table__).where(ObjectRecord.object_id == object_id)).first()
        return None if row is None else self._state(row)

    def get_objects(self, object_ids: Iterable[str]) -> dict[str, ObjectState]:
        """Bulk :meth:`get_object` (unknown ids are absent from the result)."""
        ids = list(dict.fromkeys(object_ids))
        out: dict[str, ObjectState] = {}
        with self.engine.connect() as conn:
            for part in _chunks(ids):
                q = select(ObjectRecord.__table__).where(ObjectRecord.object_id.in_(list(part)))
                out.update((r.object_id, self._state(r)) for r in conn.execute(q))
        return out

    def get_alerts(self, object_id: str) -> list[AlertRow]:
        """Alerts of an object ordered by jd, band."""
        a = AlertRecord.__table__.c
        q = (
            select(a.alert_key, a.object_id, a.jd, a.band, a.mag, a.mag_err, a.flux, a.flux_err, a.meta)
            .where(a.object_id == object_id)
            .order_by(a.jd, a.band, a.id)
        )
        with self.engine.connect() as conn:
            return [AlertRow(*r) for r in conn.execute(q)]

    def get_upper_limits(self, object_id: str) -> list[UpperLimitRow]:
        u = UpperLimitRecord.__table__.c
        q = select(u.object_id, u.jd, u.band, u.mag).where(u.object_id == object_id).order_by(u.jd, u.band)
        with self.engine.connect() as conn:
            return [UpperLimitRow(*r) for r in conn.execute(q)]

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
        """Streaming snapshot of the fingerprints of a version (only those written at or after
        ``updated_since`` when given); ``.marker``/``.total`` describe the whole version."""
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
        limit: int = 50,
        cursor: str | None = None,
        label: str | None = None,
        since_jd: float | None = None,
        model_version: str | None = None,
    ) -> tuple[list[ObjectState], str | None]:
        """Objects ranked by anomaly_score desc, object_id asc (objects without a score are left out).

        ``cursor`` is the opaque string returned by the previous page (None for the first);
        the second value is the next page's cursor, None on the last page. Keyset paging:
        pages never skip or repeat rows while the rows don't change. Filters: ``label``
        (predicted class), ``since_jd`` (last_jd >= since_jd), ``model_version`` (objects that
        have a fingerprint of that version).
        """
        if limit <= 0:
            raise ValueError("limit must be positive")
        o = ObjectRecord
        q = select(ObjectRecord.__table__).where(o.anomaly_score.is_not(None))
        if label is not None:
            q = q.where(o.label == label)
        if since_jd is not None:
            q = q.where(o.last_jd >= float(since_jd))
        if model_version is not None:
            q = q.where(
                exists().where(
                    FingerprintRecord.object_id == o.object_id, FingerprintRecord.model_version == model_version
                )
            )
        if cursor:
            score, oid = _decode_cursor(cursor)
            q = q.where(or_(o.anomaly_score < score, and_(o.anomaly_score == score, o.object_id > oid)))
        q = q.order_by(o.anomaly_score.desc(), o.object_id.asc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        page = [self._state(r) for r in rows[:limit]]
        nxt = _encode_cursor(page[-1].anomaly_score, page[-1].object_id) if len(rows) > limit else None
        return page, nxt

    # ----------------------------------------------------------------- change tracking
    def _marker_and_count(self, conn, model_version: str) -> tuple[str, int]:
        f, o = FingerprintRecord, ObjectRecord
        n, max_id, rev = conn.execute(
            select(func.count(), func.max(f.id), func.sum(f.revision)).where(f.model_version == model_version)
        ).one()
        on, orev = conn.execute(select(func.count(), func.sum(o.revision))).one()
        marker = f"v1|{model_version}|fp:{n}:{max_id or 0}:{rev or 0}|obj:{on}:{orev or 0}"
        return marker, int(n)

    def state_marker(self, model_version: str) -> str:
        """Opaque string that changes whenever the fingerprints of ``model_version`` or any object change."""
        with self.engine.connect() as conn:
            return self._marker_and_count(conn, model_version)[0]

    # ----------------------------------------------------------------- models
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
        """Insert or update a model; ``active=True`` deactivates every other model."""

        def run(conn) -> None:
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
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=[m.c.version],
                    set_={k: getattr(ins.excluded, k) for k in ("path", "sha256", "dim", "class_names", "metrics")}
                    | {"active": ins.excluded.active},
                ),
                [row],
            )
            if active:
                conn.execute(update(m).where(m.c.version != version).values(active=False))

        self._write(run)
        return next(m for m in self.list_models() if m.version == version)

    def set_active_model(self, version: str) -> None:
        def run(conn) -> None:
            m = ModelRecord.__table__
            if conn.execute(update(m).where(m.c.version == version).values(active=True)).rowcount == 0:
                raise KeyError(version)
            conn.execute(update(m).where(m.c.version != version).values(active=False))

        self._write(run)

    def list_models(self) -> list[ModelInfo]:
        """All registered models, newest first."""
        m = ModelRecord.__table__.c
        q = select(m.version, m.path, m.sha256, m.dim, m.class_names, m.metrics, m.registered_at, m.active)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(m.registered_at.desc(), m.version)).all()
        return [ModelInfo(*r[:6], _aware(r[6]), bool(r[7])) for r in rows]

    def active_model(self) -> ModelInfo | None:
        return next((m for m in self.list_models() if m.active), None)
