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

The package, by concern: :mod:`~indexing.store.records` (the dataclasses), :mod:`~indexing.store.engine`
(engine, locks, helpers), :mod:`~indexing.store.rows` (a batch as SQL rows, the write steps),
:mod:`~indexing.store.core` (:class:`Store`: migrations, transactions, ingest), :mod:`~indexing.store.reads`,
:mod:`~indexing.store.versions`, :mod:`~indexing.store.dead_letters`, :mod:`~indexing.store.feedback` (experts'
answers, the anomaly ranking's inputs and scores) and :mod:`~indexing.store.scan`.
"""

from indexing.models import MIGRATIONS
from indexing.store.core import Store
from indexing.store.engine import make_engine
from indexing.store.feedback import FEEDBACK_LABELS, RankingInputs
from indexing.store.records import (
    DEAD_LETTER_PAYLOAD_MAX,
    DeadLetter,
    FeedbackAnswer,
    FingerprintBatch,
    FingerprintRow,
    IngestBatch,
    IngestResult,
    ModelInfo,
    ObjectState,
    StaleVersion,
    StoredObject,
)
from indexing.store.scan import FingerprintScan

__all__ = [
    "DEAD_LETTER_PAYLOAD_MAX",
    "FEEDBACK_LABELS",
    "MIGRATIONS",
    "DeadLetter",
    "FeedbackAnswer",
    "FingerprintBatch",
    "FingerprintRow",
    "FingerprintScan",
    "IngestBatch",
    "IngestResult",
    "ModelInfo",
    "ObjectState",
    "RankingInputs",
    "StaleVersion",
    "Store",
    "StoredObject",
    "make_engine",
]
