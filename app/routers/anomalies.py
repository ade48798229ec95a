"""GET /v1/anomalies: objects ranked by the catalogue-relative anomaly score (``app.ranking``), with
stable cursor paging; POST / GET /v1/anomalies/{object_id}/feedback: experts' answers, which re-rank it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from app.catalog import UnknownObject
from app.deps import CatalogDep, OffloadDep, SettingsDep, request_filters, require_api_key
from app.routers._docs import errors
from app.routers._params import Cursor, Filters, ObjectId, PageSize, unknown_object
from app.schemas import (
    AnomaliesResponse,
    AnomalyItem,
    FeedbackAnswerOut,
    FeedbackHistory,
    FeedbackIn,
    FeedbackOut,
)

router = APIRouter(prefix="/v1", tags=["anomalies"])

EXAMPLE = {
    "items": [
        {
            "object_id": "synztf2026_0000412",
            "score": 0.9998,
            "model_score": 0.71,
            "label": "TDE",
            "fine_label": "TDE",
            "n_detections": 9,
            "last_jd": 2460412.8,
            "answer": None,
        }
    ],
    "next_cursor": "eyJzIjogMC45OTk4LCAibyI6ICJzeW56dGYifQ==",
}


@router.get(
    "/anomalies",
    summary="Anomaly ranking",
    response_model=AnomaliesResponse,
    responses={**errors(422), 200: {"content": {"application/json": {"example": EXAMPLE}}}},
)
def anomalies(
    catalog: CatalogDep,
    settings: SettingsDep,
    filters: Filters,
    limit: PageSize = 50,
    cursor: Cursor = None,
) -> AnomaliesResponse:
    """Most anomalous first (ties by object id). The score is a percentile in this catalogue (0.99: above
    99 % of it), from the object's isolation among the catalogue's fingerprints, the rarity of its predicted
    class here and the model's own score (`model_score`), moved by experts' answers
    (`POST /v1/anomalies/{object_id}/feedback`). The ranking is rebuilt as the catalogue changes; an object
    ingested since the last rebuild has an estimate. Pages never skip or repeat objects while the
    catalogue does not change."""
    try:
        page, nxt = catalog.anomalies(min(limit, settings.max_page), cursor, request_filters(catalog, filters, "query"))
    except ValueError as exc:
        raise HTTPException(422, f"cursor: {exc}") from None
    answers = catalog.store.latest_answers([s.object_id for s in page])
    # every object of the ranking has a score (the test narrows it for the type checker)
    items = [
        AnomalyItem(
            object_id=s.object_id,
            score=s.anomaly_score,
            model_score=s.model_score,
            label=s.label,
            fine_label=s.fine_label,
            n_detections=s.n_detections,
            last_jd=s.last_jd,
            answer=answers.get(s.object_id),  # type: ignore[arg-type]  # the store holds only the two labels
        )
        for s in page
        if s.anomaly_score is not None
    ]
    return AnomaliesResponse(items=items, next_cursor=nxt)


@router.post(
    "/anomalies/{object_id}/feedback",
    summary="Answer: is it an anomaly?",
    status_code=201,
    response_model=FeedbackOut,
    dependencies=[Depends(require_api_key)],
    responses=errors(401, 404, 422),
)
async def feedback(object_id: ObjectId, body: FeedbackIn, catalog: CatalogDep, offload: OffloadDep) -> FeedbackOut:
    """Record an expert's answer about an object and re-rank at once: an object answered `anomaly` goes
    above every unanswered one, `not_anomaly` below them, and the objects whose fingerprints resemble it
    move with it (label propagation; docs/anomalies.md). The latest answer about an object counts; answers
    are kept in SQL with their time and user, and outlive restarts and re-encoding."""
    try:
        answer, ranked = await offload.run(catalog.feedback, object_id, body.label, body.user)
    except UnknownObject:
        raise unknown_object(object_id) from None
    score, rank = ranked if ranked is not None else (None, None)
    assert answer.created_at is not None  # the store sets it
    return FeedbackOut(
        object_id=object_id,
        label=body.label,
        user=answer.user,
        created_at=answer.created_at,
        score=score,
        rank=rank,
    )


@router.get(
    "/anomalies/{object_id}/feedback",
    summary="Experts' answers about an object",
    response_model=FeedbackHistory,
    responses=errors(404, 422),
)
def feedback_history(object_id: ObjectId, catalog: CatalogDep) -> FeedbackHistory:
    """Every answer about the object, newest first (at most 100)."""
    try:
        answers = catalog.feedback_of(object_id)
    except UnknownObject:
        raise unknown_object(object_id) from None
    return FeedbackHistory(
        object_id=object_id,
        answers=[FeedbackAnswerOut(label=a.label, user=a.user, created_at=a.created_at) for a in answers],  # type: ignore[arg-type]
    )
