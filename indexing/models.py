"""SQLAlchemy 2 ORM schema of the metadata store (the source of truth for fingerprints).

Migrations live in the top-level ``alembic/`` folder and must produce exactly this schema
(``tests/test_store.py::test_migrations_match_models`` compares them). Change both together:
edit the models, then ``alembic revision --autogenerate -m "..."`` and review the script.

Change tracking: ``objects.revision`` and ``fingerprints.revision`` are bumped by every upsert
so that :meth:`indexing.store.Store.state_marker` changes whenever anything the vector index
depends on changes (vectors or the per-object filter attributes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
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


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ObjectRecord(Base):
    """One astrophysical object (a light curve); predicted fields are the latest ingest's."""

    __tablename__ = "objects"

    object_id: Mapped[str] = mapped_column(String(OBJECT_ID_MAX), primary_key=True)
    survey: Mapped[str | None] = mapped_column(String(32))
    ra: Mapped[float | None] = mapped_column(Float)
    dec: Mapped[float | None] = mapped_column(Float)
    first_jd: Mapped[float | None] = mapped_column(Float)
    last_jd: Mapped[float | None] = mapped_column(Float, index=True)
    n_detections: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[str | None] = mapped_column(String(64), index=True)
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSON(none_as_null=True))
    anomaly_score: Mapped[float | None] = mapped_column(Float)
    known_label: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        # keyset paging of the anomaly ranking: ORDER BY anomaly_score DESC, object_id ASC
        Index("ix_objects_anomaly_score_object_id", "anomaly_score", "object_id"),
    )


class AlertRecord(Base):
    """One detection. ``alert_key`` (e.g. the candid) makes re-ingesting an alert a no-op."""

    __tablename__ = "alerts"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_key: Mapped[str] = mapped_column(String(192), unique=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("objects.object_id", ondelete="CASCADE"), index=True)
    jd: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))
    mag: Mapped[float | None] = mapped_column(Float)
    mag_err: Mapped[float | None] = mapped_column(Float)
    flux: Mapped[float] = mapped_column(Float)
    flux_err: Mapped[float] = mapped_column(Float)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


class UpperLimitRecord(Base):
    """A non-detection (limiting magnitude) of an object."""

    __tablename__ = "upper_limits"
    __table_args__ = (UniqueConstraint("object_id", "jd", "band"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("objects.object_id", ondelete="CASCADE"))
    jd: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))
    mag: Mapped[float | None] = mapped_column(Float)


class FingerprintRecord(Base):
    """The fingerprint of an object under one model version: raw little-endian float32 bytes."""

    __tablename__ = "fingerprints"
    __table_args__ = (
        UniqueConstraint("object_id", "model_version"),
        Index("ix_fingerprints_model_version_id", "model_version", "id"),  # streaming rebuilds
        {"sqlite_autoincrement": True},
    )

    # autoincrement (never reused, also on SQLite) so that max(id) tracks inserts
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("objects.object_id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    dim: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelRecord(Base):
    """A registered encoder checkpoint; at most one is ``active``."""

    __tablename__ = "models"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    class_names: Mapped[list[str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
