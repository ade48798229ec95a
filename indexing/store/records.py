"""What the store takes and gives: plain dataclasses (no SQL types)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from indexing.history import History


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
    anomaly_score: float | None = None  # output only: the catalogue-relative score (encoder.rarity)
    model_score: float | None = None  # output only: the checkpoint's own anomaly score
    known_label: str | None = None
    updated_at: datetime | None = None  # output only


@dataclass(slots=True)
class FingerprintRow:
    """An object under one model version: its fingerprint and that model's predictions."""

    object_id: str
    vector: np.ndarray
    label: str | None = None  # coarse class
    probabilities: dict[str, float] | None = None
    anomaly_score: float | None = None  # the catalogue-relative score (None: not ranked yet)
    fine_label: str | None = None
    model_score: float | None = None  # the checkpoint's own anomaly score


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


@dataclass(slots=True)
class FeedbackAnswer:
    """An expert's answer about an object: ``anomaly`` or ``not_anomaly``, who (optional) and when."""

    object_id: str
    label: str
    user: str | None = None
    created_at: datetime | None = None  # output only
    id: int | None = None  # output only


class StaleVersion(RuntimeError):
    """A model version cannot become active: objects lack an up-to-date fingerprint of it."""

    def __init__(self, version: str, stale: int) -> None:
        super().__init__(f"{stale} objects have no up-to-date fingerprint of {version!r}")
        self.version, self.stale = version, stale
