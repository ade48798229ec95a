"""GET /v1/models (+ activate, drop), /healthz, /readyz and /metrics (Prometheus)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.catalog import Catalog
from app.deps import CatalogDep, OffloadDep, require_api_key
from app.problems import problem
from app.routers._docs import errors
from app.schemas import DeadLetterOut, DeadLettersResponse, DroppedModel, ModelOut, ModelsResponse
from indexing.store import StaleVersion

router = APIRouter(tags=["service"])
Version = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="a model version, as GET /v1/models lists it",
    ),
]


def _models(catalog: Catalog) -> ModelsResponse:
    counts, active = catalog.store.fingerprint_counts(), catalog.version
    out = []
    for m in catalog.store.list_models():
        serving = m.version == active
        out.append(
            ModelOut(
                version=m.version,
                dim=m.dim,
                active=serving,
                fingerprints=counts.get(m.version, 0),
                # the active version is written in the transaction of every ingest: never stale (the count
                # is a join over all objects, ~1 s at 100K on SQLite)
                stale=0 if m.active else catalog.store.count_stale(m.version),
                path=m.path,
                metrics=m.metrics,
                precision=catalog.encoder.precision if serving else None,
                coarse_classes=catalog.encoder.coarse_classes if serving else list(m.class_names),
                fine_classes=catalog.encoder.fine_classes if serving else [],
            )
        )
    return ModelsResponse(objects=catalog.store.count_objects(), models=out)


@router.get("/v1/models", summary="List model versions", response_model=ModelsResponse)
def models(catalog: CatalogDep) -> ModelsResponse:
    """Registered model versions with their counts; the active one serves every request.
    `rtf-reencode --checkpoint FILE` writes a version's fingerprints beside the active ones."""
    return _models(catalog)


@router.post(
    "/v1/models/{version}/activate",
    summary="Activate a model version",
    response_model=ModelsResponse,
    dependencies=[Depends(require_api_key)],
    responses={
        **errors(401, 422),
        404: {"description": "no such version"},
        409: {"description": "the version is not complete: run rtf-reencode first"},
    },
)
async def activate(version: Version, catalog: CatalogDep, offload: OffloadDep) -> ModelsResponse:
    """Switch every answer to a complete version, atomically (its checkpoint is loaded and its
    index built while the current version keeps answering). Other processes follow at their sync."""
    try:
        await offload.run(catalog.store.activate, version)
    except KeyError:
        raise HTTPException(404, f"unknown model version {version!r}") from None
    except StaleVersion as exc:
        raise HTTPException(409, f"{exc}: run rtf-reencode --checkpoint <its checkpoint> --activate") from None
    await offload.run(catalog.switch_model, version)
    return _models(catalog)


@router.delete(
    "/v1/models/{version}",
    summary="Drop a model version",
    response_model=DroppedModel,
    dependencies=[Depends(require_api_key)],
    responses={
        **errors(401, 422),
        404: {"description": "no such version"},
        409: {"description": "the active version cannot be dropped"},
    },
)
def drop(version: Version, catalog: CatalogDep) -> DroppedModel:
    """Delete a version that is not active, with all its fingerprints and predictions."""
    if version not in {m.version for m in catalog.store.list_models()}:
        raise HTTPException(404, f"unknown model version {version!r}")
    if version == catalog.version:
        raise HTTPException(409, f"{version!r} is the active version; activate another first")
    try:
        return DroppedModel(version=version, fingerprints_deleted=catalog.store.drop_model(version))
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/v1/dead-letters", summary="Stream messages that could not be ingested",
            response_model=DeadLettersResponse, dependencies=[Depends(require_api_key)], responses=errors(401, 422))
def dead_letters(
    catalog: CatalogDep,
    limit: Annotated[int, Query(ge=1, le=500, description="how many, most recent first")] = 50,
) -> DeadLettersResponse:
    """What ``rtf-stream`` could not decode or ingest: where each message came from and why (its bytes
    stay in SQL, table ``dead_letters``)."""
    items = [
        DeadLetterOut(
            source=d.source,
            partition=d.partition,
            offset=d.offset,
            error=d.error,
            payload_bytes=len(d.payload or b""),
            received_at=d.received_at,
        )
        for d in catalog.store.dead_letters(limit)
    ]
    return DeadLettersResponse(total=catalog.store.count_dead_letters(), items=items)


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", responses=errors(503))
def readyz(request: Request) -> JSONResponse:
    """Readiness: model loaded, index loaded, database answering."""
    catalog = getattr(request.app.state, "catalog", None)
    if catalog is None:
        return problem(503, "the catalogue is still loading", instance="/readyz")
    try:
        with catalog.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means not ready
        return problem(503, f"the database does not answer ({type(exc).__name__})", instance="/readyz")
    body = {"status": "ready", "model": catalog.version, "objects": len(catalog.index)}
    if catalog.configured is not None:  # started with a checkpoint that is not the active version
        c = catalog.configured
        body["pending_model"] = {
            "version": c.version,
            "checkpoint": c.path,
            "fingerprints": catalog.store.count_fingerprints(c.version),
            "note": f"serving {catalog.version}; to switch, run: rtf-reencode --checkpoint {c.path} --activate",
        }
    return JSONResponse(body)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: request latency by route, alerts ingested, catalogue size."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
