"""GET /v1/anomalies: objects ranked by anomaly score, with stable cursor paging."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from app.deps import CatalogDep, SettingsDep, request_filters
from app.routers._docs import errors
from app.routers._params import Cursor, Filters, PageSize
from app.schemas import AnomaliesResponse, AnomalyItem

router = APIRouter(prefix="/v1", tags=["anomalies"])

EXAMPLE = {
    "items": [
        {"object_id": "synztf2026_0000412", "score": 0.97, "label": "Other", "n_detections": 9, "last_jd": 2460412.8}
    ],
    "next_cursor": "eyJzIjogMC45NywgIm8iOiAic3luenRmIn0=",
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
    """Most anomalous first (ties by object id). Pages never skip or repeat objects while the
    catalogue does not change."""
    try:
        page, nxt = catalog.anomalies(min(limit, settings.max_page), cursor, request_filters(catalog, filters, "query"))
    except ValueError as exc:
        raise HTTPException(422, f"cursor: {exc}") from None
    # every object of the ranking has a score (the test narrows it for the type checker)
    items = [
        AnomalyItem(
            object_id=s.object_id,
            score=s.anomaly_score,
            label=s.label,
            fine_label=s.fine_label,
            n_detections=s.n_detections,
            last_jd=s.last_jd,
        )
        for s in page
        if s.anomaly_score is not None
    ]
    return AnomaliesResponse(items=items, next_cursor=nxt)
