"""Typed results of the client: frozen dataclasses built from the service's JSON.

Each is built by :func:`build`, which takes the fields the class knows and ignores the others, so a
newer service that adds fields does not break an older client; fields an older service lacks are None.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance  # the type checker's name for "a dataclass"; not importable at run time

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")


def build(cls: type[D], data: Mapping[str, Any], **extra: Any) -> D:
    """``cls`` from the keys of ``data`` it has fields for (lists become tuples), plus ``extra``."""
    names = {f.name for f in fields(cls)}
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return cls(**(kw | extra))


class _Sequence(Generic[T]):
    """Iteration, ``len`` and indexing over ``self.items``."""

    items: tuple[T, ...]

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> T:
        return self.items[i]


@dataclass(frozen=True, kw_only=True)
class Readiness:
    """``GET /readyz``: ``ready`` is False while the service loads or its database does not answer."""

    ready: bool
    status: str
    model: str | None = None
    objects: int | None = None
    pending_model: dict | None = field(default=None, hash=False)


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    object_id: str
    vector: tuple[float, ...]
    model: str | None = None  # the model version that made it


@dataclass(frozen=True, kw_only=True)
class Classification:
    """Class probabilities (coarse and fine) and anomaly score of a posted light curve."""

    object_id: str
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict, hash=False)
    fine_label: str | None = None
    fine_probabilities: dict[str, float] = field(default_factory=dict, hash=False)
    anomaly_score: float | None = None
    model: str | None = None


@dataclass(frozen=True, kw_only=True)
class IngestedObject:
    object_id: str
    new_alerts: int = 0
    duplicate_alerts: int = 0
    dropped_alerts: int = 0
    n_detections: int | None = None
    label: str | None = None
    anomaly_score: float | None = None  # the catalogue-relative score (see AnomalyEntry)
    model_score: float | None = None


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    """``POST /v1/alerts``: detections stored by this request and those already stored, per object."""

    model: str | None = None
    new_alerts: int = 0
    duplicate_alerts: int = 0
    objects: tuple[IngestedObject, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ObjectSummary:
    """An object of the catalogue with the served model's predictions (``label`` is the predicted coarse
    class, ``known_label`` the class given at ingest)."""

    object_id: str
    survey: str | None = None
    ra: float | None = None
    dec: float | None = None
    first_jd: float | None = None
    last_jd: float | None = None
    first_mjd: float | None = None
    last_mjd: float | None = None
    n_detections: int | None = None
    label: str | None = None
    fine_label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict, hash=False)
    anomaly_score: float | None = None  # the catalogue-relative score (see AnomalyEntry)
    model_score: float | None = None
    known_label: str | None = None


@dataclass(frozen=True, kw_only=True)
class ObjectDetail(ObjectSummary):
    """``GET /v1/objects/{id}``: the summary, the stored light curve (a dict in the JSON light-curve form,
    which ``fingerprints``, ``classify`` and ``search`` accept back) and, if asked for, the fingerprint."""

    lightcurve: dict = field(default_factory=dict, hash=False)
    fingerprint: tuple[float, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class ConeMatch(ObjectSummary):
    separation_arcsec: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Neighbor:
    """A neighbour: ``similarity`` is the cosine similarity of the fingerprints; ``label`` its predicted
    coarse class (``class`` in the JSON)."""

    object_id: str
    similarity: float
    label: str | None = None
    fine_label: str | None = None
    anomaly_score: float | None = None
    n_detections: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Neighbor:
        return build(cls, data, label=data.get("class", data.get("label")),
                     fine_label=data.get("fine_class", data.get("fine_label")))


@dataclass(frozen=True, kw_only=True)
class Neighbors(_Sequence[Neighbor]):
    """The neighbours of one object (or of a searched light curve or vector), most similar first."""

    object_id: str | None
    model: str | None = None
    items: tuple[Neighbor, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any], model: str | None = None) -> Neighbors:
        items = tuple(Neighbor.from_json(n) for n in data.get("neighbors", ()))
        return cls(object_id=data.get("object_id"), model=data.get("model", model), items=items)


@dataclass(frozen=True, kw_only=True)
class AnomalyEntry:
    """An object of the anomaly ranking: ``score`` is its percentile in the catalogue (0.99: above 99 % of
    it), ``model_score`` the checkpoint's own score, ``answer`` the latest expert answer about it."""

    object_id: str
    score: float
    model_score: float | None = None
    label: str | None = None
    fine_label: str | None = None
    n_detections: int | None = None
    last_jd: float | None = None
    answer: str | None = None


@dataclass(frozen=True, kw_only=True)
class FeedbackResult:
    """``POST /v1/anomalies/{id}/feedback``: the answer as stored, and the object's score and rank after it."""

    object_id: str
    label: str
    user: str | None = None
    created_at: str | None = None
    score: float | None = None
    rank: int | None = None


@dataclass(frozen=True, kw_only=True)
class Page(_Sequence[T]):
    """One page of a listing; pass ``next_cursor`` back as ``cursor`` for the next (None: the last page)."""

    items: tuple[T, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """A registered model version (``stale`` 0: complete, can be activated)."""

    version: str
    dim: int | None = None
    active: bool = False
    fingerprints: int | None = None
    stale: int | None = None
    path: str | None = None
    precision: str | None = None
    coarse_classes: tuple[str, ...] = ()
    fine_classes: tuple[str, ...] = ()
    metrics: dict | None = field(default=None, hash=False)


@dataclass(frozen=True, kw_only=True)
class Models(_Sequence[ModelInfo]):
    """``GET /v1/models``: the catalogue's object count and the registered versions."""

    objects: int
    items: tuple[ModelInfo, ...] = ()

    @property
    def active(self) -> ModelInfo | None:
        """The version that serves every answer."""
        return next((m for m in self.items if m.active), None)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Models:
        return cls(objects=data["objects"], items=tuple(build(ModelInfo, m) for m in data.get("models", ())))
