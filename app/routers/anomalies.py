"""GET /v1/anomalies: objects ranked by anomaly score, with stable cursor paging."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from app.deps import CatalogDep, SettingsDep, check_classes
from app.routers._docs import errors
from app.routers._params import ClassName, Cursor, PageSize, Since
from app.schemas import AnomaliesResponse, AnomalyItem

router = APIRouter(prefix="/v1", tags=["anomalies"])

EXAMPLE = {"items": [{"object_id": "synztf2026_0000412", "score": 0.97, "label": "Other", "n_detections": 9,
                      "last_jd": 2460412.8}], "next_cursor": "eyJzIjogMC45NywgIm8iOiAic3luenRmIn0="}  # fmt: skip


@router.get("/anomalies", summary="Anomaly ranking", response_model=AnomaliesResponse,
            responses={**errors(422), 200: {"content": {"application/json": {"example": EXAMPLE}}}})  # fmt: skip
def anomalies(
    catalog: CatalogDep,
    settings: SettingsDep,
    limit: PageSize = 50,
    cursor: Cursor = None,
    label: ClassName = None,
    since: Since = None,
) -> AnomaliesResponse:
    """Most anomalous first (ties by object id). Pages never skip or repeat objects while the
    catalogue does not change."""
    check_classes(catalog, label, ("query", "class"))
    try:
        page, nxt = catalog.anomalies(min(limit, settings.max_page), cursor, label, since)
    except ValueError as exc:
        raise HTTPException(422, f"cursor: {exc}") from None
    items = [AnomalyItem(object_id=s.object_id, score=s.anomaly_score, label=s.label, fine_label=s.fine_label,
                         n_detections=s.n_detections, last_jd=s.last_jd) for s in page]  # fmt: skip
    return AnomaliesResponse(items=items, next_cursor=nxt)
