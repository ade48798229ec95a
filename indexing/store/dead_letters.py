"""Dead letters of the stream (part of :class:`indexing.store.Store`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from indexing.models import (
    DeadLetterRecord,
    utcnow,
)
from indexing.store.base import _StoreBase
from indexing.store.engine import (
    _aware,
    _chunks,
)
from indexing.store.records import (
    DEAD_LETTER_PAYLOAD_MAX,
    DeadLetter,
)


class DeadLetters(_StoreBase):
    """Stream messages that could not be ingested."""

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Record messages that could not be ingested (one per source, partition and offset:
        a replayed message is not recorded twice). Returns how many were new."""
        if not letters:
            return 0
        t = DeadLetterRecord.__table__
        now = utcnow()
        rows = [
            {
                "source": d.source[:256],
                "partition": int(d.partition),
                "offset": int(d.offset),
                "error": d.error[:2000],
                "received_at": now,
                "payload": None if d.payload is None else bytes(d.payload[:DEAD_LETTER_PAYLOAD_MAX]),
            }
            for d in letters
        ]
        ins = self._insert(t).on_conflict_do_nothing(index_elements=[t.c.source, t.c.partition, t.c.offset])
        stmt = ins.returning(t.c.id)
        return self._write(lambda conn: sum(len(conn.execute(stmt, list(part)).all()) for part in _chunks(rows)))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        t = DeadLetterRecord.__table__.c
        q = select(t.source, t.partition, t.offset, t.error, t.payload, t.received_at).order_by(t.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [DeadLetter(*r[:5], _aware(r[5])) for r in conn.execute(q)]

    def count_dead_letters(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(DeadLetterRecord)).scalar_one())
