"""SQLAlchemy 2 ORM schema of the metadata store (the source of truth for fingerprints).

Migrations live beside this module, in ``indexing/alembic/`` (package data, :data:`MIGRATIONS`; ``alembic.ini``
at the top points the CLI there), and must produce exactly this schema
(``tests/test_store.py::test_migrations_match_models`` compares them). Change both together:
edit the models, then ``alembic revision --autogenerate -m "..."`` and review the script.

Layout: ``objects`` (one row per object: where it is, its detection summary), ``lightcurves``
(its whole photometry as one columnar value, :class:`indexing.history.History`), ``fingerprints``
(one row per object and model version: the vector and that model's predictions), ``models`` and
``anomaly_feedback`` (experts' answers, per object).

Change tracking: ``objects.revision`` is bumped whenever an object's row or its light curve
changes, ``fingerprints.revision`` whenever a fingerprint or its predictions change, so that
:meth:`indexing.store.Store.state_marker` changes whenever anything the vector index depends on
changes. ``fingerprints.source_revision`` is the object revision a fingerprint was computed from:
a fingerprint whose object moved on since is stale (re-encoding finds them by it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

OBJECT_ID_MAX = 128

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The Alembic scripts of this schema
MIGRATIONS = Path(__file__).resolve().parent / "alembic"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    if TYPE_CHECKING:
        # every record below is declared with a __tablename__, so mapped to a Table (which
        # SQLAlchemy types as any FromClause: no .delete(), not accepted by update())
        __table__: ClassVar[Table]


class ObjectRecord(Base):
    """One astrophysical object. Predictions live with its fingerprints, one per model version."""

    __tablename__ = "objects"

    object_id: Mapped[str] = mapped_column(String(OBJECT_ID_MAX), primary_key=True)
    survey: Mapped[str | None] = mapped_column(String(32))
    ra: Mapped[float | None] = mapped_column(Float)
    dec: Mapped[float | None] = mapped_column(Float, index=True)  # cone searches narrow by dec first
    first_jd: Mapped[float | None] = mapped_column(Float)
    last_jd: Mapped[float | None] = mapped_column(Float, index=True)
    n_detections: Mapped[int] = mapped_column(Integer, default=0)
    known_label: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LightCurveRecord(Base):
    """The detections and upper limits of an object: :meth:`indexing.history.History.to_bytes`."""

    __tablename__ = "lightcurves"

    object_id: Mapped[str] = mapped_column(ForeignKey("objects.object_id", ondelete="CASCADE"), primary_key=True)
    n_detections: Mapped[int] = mapped_column(Integer)
    n_upper_limits: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class FingerprintRecord(Base):
    """An object under one model version: the fingerprint (raw little-endian float32 bytes) and
    that model's class, probabilities and anomaly score."""

    __tablename__ = "fingerprints"
    __table_args__ = (
        UniqueConstraint("object_id", "model_version"),
        Index("ix_fingerprints_model_version_id", "model_version", "id"),  # streaming rebuilds
        # keyset paging of a version's anomaly ranking: ORDER BY anomaly_score DESC, object_id ASC
        Index("ix_fingerprints_model_version_anomaly_score_object_id", "model_version", "anomaly_score", "object_id"),
        {"sqlite_autoincrement": True},
    )

    # autoincrement (never reused, also on SQLite) so that max(id) tracks inserts
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("objects.object_id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    dim: Mapped[int] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(64))  # the coarse class
    fine_label: Mapped[str | None] = mapped_column(String(64))
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSON(none_as_null=True))
    # the catalogue-relative ranking's score (encoder.rarity: a percentile in the catalogue, after experts'
    # answers), rewritten as the catalogue changes; model_score: the checkpoint's own, fixed at encoding
    anomaly_score: Mapped[float | None] = mapped_column(Float)
    model_score: Mapped[float | None] = mapped_column(Float)
    source_revision: Mapped[int | None] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelRecord(Base):
    """A registered encoder checkpoint; at most one is ``active`` (the version the service answers with)."""

    __tablename__ = "models"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    class_names: Mapped[list[str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class FeedbackRecord(Base):
    """An expert's answer about an object: is it an anomaly? Kept per object, not per model version,
    so answers outlive re-encoding; the latest answer about an object is the one that counts."""

    __tablename__ = "anomaly_feedback"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("objects.object_id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(16))  # "anomaly" | "not_anomaly"
    user: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeadLetterRecord(Base):
    """A stream message that could not be ingested, with why; (source, partition, offset) is unique,
    so a message replayed after a crash is recorded once."""

    __tablename__ = "dead_letters"
    __table_args__ = (UniqueConstraint("source", "partition", "offset"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(256))  # the Kafka topic
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    error: Mapped[str] = mapped_column(String(2000))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)  # the message, up to DEAD_LETTER_PAYLOAD_MAX bytes
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
