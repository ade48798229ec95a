"""What the parts of :class:`indexing.store.Store` share: the engine and the write-transaction helpers.

:class:`~indexing.store.reads.Reads`, :class:`~indexing.store.versions.ModelVersions` and
:class:`~indexing.store.dead_letters.DeadLetters` derive from :class:`_StoreBase`, and so does
:class:`~indexing.store.core.Store` through them; the two steps one part calls in another are
declared here (abstract) and defined where they belong.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from indexing.store.engine import _PG_LOCK_OBJECTS, _PG_RETRY_CODES, _PG_VERSION_LOCK
from indexing.store.records import IngestResult, StoredObject
from indexing.store.rows import _Rows

T = TypeVar("T")


class _StoreBase(ABC):
    """The engine, its dialect (``"sqlite"`` or ``"postgresql"``) and the helpers of write transactions."""

    engine: Engine
    dialect: str

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT of this dialect (both have ``ON CONFLICT``)."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _write(self, fn: Callable[[Connection], T], *, attempts: int = 6) -> T:
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

    def _hold(self, conn: Connection, ids: Sequence[str], *, version_lock: str = "shared") -> None:
        """PostgreSQL: the version lock (shared: writers; exclusive: the switch) and the objects'
        locks, for the rest of the transaction. SQLite's writer lock already holds everything."""
        if self.dialect != "postgresql":
            return
        fn = "pg_advisory_xact_lock_shared" if version_lock == "shared" else "pg_advisory_xact_lock"
        conn.exec_driver_sql(f"SELECT {fn}({_PG_VERSION_LOCK})")
        if ids:
            conn.execute(_PG_LOCK_OBJECTS, {"ids": list(ids)})

    @abstractmethod
    def _read_objects(self, conn: Connection, ids: Sequence[str]) -> dict[str, StoredObject]:
        """The stored objects among ``ids``, in this transaction (:class:`~indexing.store.reads.Reads`)."""

    @abstractmethod
    def _apply(self, conn: Connection, rows: _Rows, expected: dict[str, int] | None = None) -> IngestResult:
        """The writes of one batch inside a write transaction (:class:`~indexing.store.core.Store`)."""
