"""POST /v1/alerts: ingest alerts into the catalogue (idempotent)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.deps import CatalogDep, LightCurvesDep, OffloadDep, require_api_key
from app.routers._docs import LIGHTCURVE_BODY, errors
from app.schemas import IngestedObject, IngestResponse

router = APIRouter(prefix="/v1", tags=["ingest"])


@router.post(
    "/alerts",
    summary="Ingest alerts",
    response_model=IngestResponse,
    dependencies=[Depends(require_api_key)],
    openapi_extra=LIGHTCURVE_BODY,
    responses=errors(401, 413, 415, 422),
)
async def ingest_alerts(
    request: Request, catalog: CatalogDep, lcs: LightCurvesDep, offload: OffloadDep
) -> IngestResponse:
    """Store the detections and upper limits, then re-encode each object on its whole history:
    fingerprint, index entry, class probabilities and anomaly score are updated. Posting the
    same alerts again stores nothing new. The response comes after the SQL commit."""
    results = await offload.run(catalog.ingest, lcs)
    metrics = request.app.state.metrics
    new = sum(r.new_alerts for r in results)
    metrics.alerts_ingested.inc(new)
    metrics.catalog_objects.set(len(catalog.index))
    return IngestResponse(
        model=catalog.version,
        new_alerts=new,
        duplicate_alerts=sum(r.duplicate_alerts for r in results),
        objects=[IngestedObject(**r.__dict__) for r in results],
    )
