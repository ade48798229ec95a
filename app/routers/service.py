"""GET /v1/models, /healthz, /readyz and /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.deps import CatalogDep
from app.schemas import ModelOut, ModelsResponse

router = APIRouter(tags=["service"])


@router.get("/v1/models", response_model=ModelsResponse)
def models(catalog: CatalogDep) -> ModelsResponse:
    """Registered checkpoints; the active one serves every request."""
    out = []
    for m in catalog.store.list_models():
        active = m.version == catalog.version
        out.append(ModelOut(
            version=m.version, dim=m.dim, active=active, metrics=m.metrics,
            precision=catalog.encoder.precision if active else None,
            coarse_classes=catalog.encoder.coarse_classes if active else list(m.class_names),
            fine_classes=catalog.encoder.fine_classes if active else [],
        ))  # fmt: skip
    return ModelsResponse(models=out)


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "still loading, or the database does not answer"}})
def readyz(request: Request) -> JSONResponse:
    """Readiness: model loaded, index loaded, database answering."""
    catalog = getattr(request.app.state, "catalog", None)
    if catalog is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    try:
        with catalog.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means not ready
        return JSONResponse({"status": "database unavailable", "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ready", "model": catalog.version, "objects": len(catalog.index)})


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: request latency by route, alerts ingested, catalogue size."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
