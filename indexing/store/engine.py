"""The engine with the project's settings, locks, and the small helpers every part of the store uses."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from indexing.models import (
    OBJECT_ID_MAX,
)

_CHUNK = 500  # rows per IN (...) list / executemany slice
_PG_RETRY_CODES = {"40P01", "40001"}  # deadlock_detected, serialization_failure


#: Exclusive transaction-level locks on objects by id hash, taken in one fixed order (hash
#: collisions only serialise two unrelated objects; a deadlock is retried by ``Store._write``).
_PG_LOCK_OBJECTS = text(
    "SELECT pg_advisory_xact_lock(7270002, h) FROM "
    "(SELECT DISTINCT hashtext(x) AS h FROM unnest(CAST(:ids AS text[])) AS x ORDER BY h) AS locks"
)
#: Ingest and re-encode writes hold this shared; the switch of the active version holds it exclusively.
_PG_VERSION_LOCK = 7270003



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



def _check_id(object_id: str) -> None:
    if not object_id or len(object_id) > OBJECT_ID_MAX:
        raise ValueError(f"bad object_id {object_id!r}")
