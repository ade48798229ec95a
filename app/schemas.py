"""Typed request and response bodies of the HTTP API (the light-curve form is
:class:`app.jsonform.LightCurveIn`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, create_model

from app.jsonform import EXAMPLE, LightCurveIn
from encoder.lightcurve import MJD_OFFSET
from indexing.filters import FILTERS

MAX_BATCH = 1000


class LightCurveBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"lightcurves": [EXAMPLE]}]})
    lightcurves: list[LightCurveIn] = Field(..., min_length=1, max_length=MAX_BATCH)


#: What ``anomaly_score`` means wherever a stored object has one (encoder.rarity, docs/anomalies.md)
SCORE_HELP = (
    "the catalogue-relative anomaly score: the fraction of this catalogue ranked below the object "
    "(a mid-rank percentile, 0 to 1), by its isolation among the catalogue's fingerprints, the rarity "
    "of its predicted class in the catalogue and the model's own score, after experts' answers"
)
MODEL_SCORE_HELP = "the checkpoint's own anomaly score (0 to 1), fixed at encoding: not relative to the catalogue"


class Fingerprint(BaseModel):
    object_id: str
    vector: list[float]


class FingerprintsResponse(BaseModel):
    model: str = Field(..., description="model version that made the fingerprints")
    dim: int
    fingerprints: list[Fingerprint]


class IngestedObject(BaseModel):
    object_id: str
    new_alerts: int = Field(..., description="detections stored by this request")
    duplicate_alerts: int = Field(..., description="detections already stored (the stored values stand)")
    dropped_alerts: int = Field(0, description="detections older than the object's most recent 20,000 (not kept)")
    n_detections: int
    label: str | None
    anomaly_score: float | None = Field(
        None, description=f"{SCORE_HELP}; estimated at ingest against the current ranking (null: empty catalogue)"
    )
    model_score: float = Field(..., description=MODEL_SCORE_HELP)


class IngestResponse(BaseModel):
    model: str
    new_alerts: int
    duplicate_alerts: int
    objects: list[IngestedObject]


class ObjectSummary(BaseModel):
    object_id: str
    survey: str | None
    ra: float | None
    dec: float | None
    first_jd: float | None
    last_jd: float | None
    n_detections: int
    label: str | None = Field(None, description="predicted coarse class")
    fine_label: str | None = Field(None, description="predicted fine class")
    probabilities: dict[str, float] = Field(default_factory=dict, description="coarse class probabilities")
    anomaly_score: float | None = Field(None, description=SCORE_HELP)
    model_score: float | None = Field(None, description=MODEL_SCORE_HELP)
    known_label: str | None = Field(None, description="class given at ingest, if any")

    # mypy rejects a decorator over @property; pydantic documents this very ignore for computed fields
    @computed_field(description="first detection as MJD (jd - 2400000.5)")  # type: ignore[prop-decorator]
    @property
    def first_mjd(self) -> float | None:
        return None if self.first_jd is None else self.first_jd - MJD_OFFSET

    @computed_field(description="last detection as MJD (jd - 2400000.5)")  # type: ignore[prop-decorator]
    @property
    def last_mjd(self) -> float | None:
        return None if self.last_jd is None else self.last_jd - MJD_OFFSET


class ObjectsPage(BaseModel):
    items: list[ObjectSummary]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null at the end")


class ConeMatch(ObjectSummary):
    separation_arcsec: float = Field(..., description="great-circle distance from the cone's centre")


class ConeResponse(BaseModel):
    items: list[ConeMatch] = Field(..., description="nearest first")


class ObjectDetail(ObjectSummary):
    lightcurve: LightCurveIn
    fingerprint: list[float] | None = Field(None, description="the served model's fingerprint (with ?fingerprint=true)")


class DecodedBand(BaseModel):
    band: str
    mjd: list[float]
    mag: list[float] = Field(..., description="decoded magnitude")
    mag_err: list[float] = Field(..., description="the decoder's 1-sigma, magnitudes")


class DecodedCurve(BaseModel):
    object_id: str
    model: str
    first_mjd: float = Field(..., description="the first detection")
    bands: list[DecodedBand]


class Neighbor(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    object_id: str
    similarity: float = Field(..., description="cosine similarity of the fingerprints")
    class_: str | None = Field(None, alias="class", description="predicted coarse class")
    fine_class: str | None = Field(None, description="predicted fine class")
    anomaly_score: float | None = Field(None, description=SCORE_HELP)
    n_detections: int | None = None


class NeighborsResponse(BaseModel):
    object_id: str | None
    model: str
    neighbors: list[Neighbor]


def _filter_fields(query: bool) -> dict[str, Any]:
    """Pydantic fields of the filters declared in :data:`indexing.filters.FILTERS` (as query
    parameters: under their alias where they have one, ``class``)."""
    fields: dict[str, Any] = {}
    for f in FILTERS:
        kind = list[str] if f.bound == "in" else f.type
        bounds = {"ge": f.ge, "le": f.le, "max_length": 32 if f.bound == "in" else None}
        extra: dict[str, Any] = {k: v for k, v in bounds.items() if v is not None}
        if query and f.alias:
            extra["alias"] = f.alias
        fields[f.name] = (kind | None, Field(None, description=f.description, **extra))
    return fields


#: The filters as query parameters (GET listings and neighbours)
FilterParams = create_model("FilterParams", **_filter_fields(query=True))


class _Neighbors(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(10, ge=1, le=1000, description="number of neighbours")


if TYPE_CHECKING:  # mypy takes base classes from declarations: it knows k, not the filter fields made at import
    NeighborQuery = _Neighbors
else:
    #: How many neighbours, and the filters they must pass (the bodies of the neighbour searches)
    NeighborQuery = create_model("NeighborQuery", __base__=_Neighbors, **_filter_fields(query=False))


def filters_of(model: BaseModel) -> dict[str, Any]:
    """The filters set in a request (by their declared names)."""
    return {f.name: getattr(model, f.name) for f in FILTERS if getattr(model, f.name) is not None}


class NeighborsRequest(NeighborQuery):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"object_ids": ["synztf2026_0000017", "synztf2026_0000018"], "k": 3}]},
    )
    object_ids: list[str] = Field(..., min_length=1, max_length=100, description="stored objects (at most 100)")


class NeighborsOf(BaseModel):
    object_id: str
    neighbors: list[Neighbor]


class NeighborsBatchResponse(BaseModel):
    model: str
    results: list[NeighborsOf]


class SearchRequest(NeighborQuery):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"lightcurve": EXAMPLE, "k": 5}]},
    )
    lightcurve: LightCurveIn | None = Field(None, description="search by a light curve ...")
    vector: list[float] | None = Field(None, description="... or by a fingerprint (the model's dim)", max_length=4096)


class Prediction(BaseModel):
    object_id: str
    label: str | None
    probabilities: dict[str, float]
    fine_label: str | None = None
    fine_probabilities: dict[str, float] = Field(default_factory=dict)
    anomaly_score: float = Field(..., description=MODEL_SCORE_HELP)


class ClassifyResponse(BaseModel):
    model: str
    predictions: list[Prediction]


class AnomalyItem(BaseModel):
    object_id: str
    score: float = Field(..., description=SCORE_HELP)
    model_score: float | None = Field(None, description=MODEL_SCORE_HELP)
    label: str | None = Field(None, description="predicted coarse class")
    fine_label: str | None = Field(None, description="predicted fine class")
    n_detections: int
    last_jd: float | None
    answer: Literal["anomaly", "not_anomaly"] | None = Field(
        None, description="the latest expert answer about the object (POST .../feedback), if any"
    )


class AnomaliesResponse(BaseModel):
    items: list[AnomalyItem]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null at the end")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"label": "anomaly", "user": "ada"}]})
    label: Literal["anomaly", "not_anomaly"] = Field(..., description="is the object an anomaly?")
    user: str | None = Field(None, max_length=128, description="who answers (kept with the answer)")


class FeedbackAnswerOut(BaseModel):
    label: Literal["anomaly", "not_anomaly"]
    user: str | None
    created_at: datetime


class FeedbackOut(FeedbackAnswerOut):
    object_id: str
    score: float | None = Field(None, description=f"the object's score after the answer: {SCORE_HELP}")
    rank: int | None = Field(None, description="its place in the ranking after the answer (1: most anomalous)")


class FeedbackHistory(BaseModel):
    object_id: str
    answers: list[FeedbackAnswerOut] = Field(..., description="newest first; the first is the one that counts")


class ModelOut(BaseModel):
    version: str
    dim: int
    active: bool = Field(..., description="the version every answer comes from")
    fingerprints: int = Field(..., description="objects with a fingerprint of this version")
    stale: int = Field(
        ...,
        description="objects whose fingerprint of this version is missing or older than their "
        "light curve; 0: the version is complete and can be activated (the active version is "
        "written with every ingest, so it is never stale)",
    )
    path: str = Field(..., description="the checkpoint file it was registered from")
    precision: str | None = Field(
        None, description="how the model runs: fp32, bf16 (PyTorch) or onnx (ONNX Runtime); the active model only"
    )
    coarse_classes: list[str]
    fine_classes: list[str]
    metrics: dict | None = None


class ModelsResponse(BaseModel):
    objects: int = Field(..., description="objects in the catalogue")
    models: list[ModelOut]


class DroppedModel(BaseModel):
    version: str
    fingerprints_deleted: int


class DeadLetterOut(BaseModel):
    source: str = Field(..., description="the topic (or source) the message came from")
    partition: int
    offset: int
    error: str = Field(..., description="why it could not be ingested")
    payload_bytes: int = Field(..., description="bytes of the message kept (at most 1 MiB)")
    received_at: datetime | None


class DeadLettersResponse(BaseModel):
    total: int = Field(..., description="dead letters stored")
    items: list[DeadLetterOut] = Field(..., description="the most recent first")
