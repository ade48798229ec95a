"""GET /v1/objects (+ /{object_id}, /neighbors, /plot), GET /v1/cone, DELETE /v1/objects/{object_id},
POST /v1/neighbors and POST /v1/search."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError

from app.catalog import UnknownObject
from app.deps import (
    CatalogDep,
    OffloadDep,
    SettingsDep,
    lightcurve_error,
    request_filters,
    require_api_key,
    require_read_key,
)
from app.jsonform import LightCurveIn
from app.routers._docs import errors
from app.routers._params import Cursor, Filters, ObjectId, PageSize, unknown_object
from app.schemas import (
    ConeMatch,
    ConeResponse,
    DecodedBand,
    DecodedCurve,
    Neighbor,
    NeighborsBatchResponse,
    NeighborsOf,
    NeighborsRequest,
    NeighborsResponse,
    ObjectDetail,
    ObjectsPage,
    ObjectSummary,
    SearchRequest,
)
from encoder.lightcurve import MJD_OFFSET, LightCurveError

router = APIRouter(prefix="/v1", tags=["objects"])


def _neighbors(hits: list[dict[str, Any]]) -> list[Neighbor]:
    """The catalogue's neighbour hits as the response's items."""
    return [Neighbor.model_validate(h) for h in hits]


NEIGHBORS_EXAMPLE = {
    "object_id": "synztf2026_0000017",
    "model": "rtf-ae64-0123456789",
    "neighbors": [
        {
            "object_id": "synztf2026_0001234",
            "similarity": 0.97,
            "class": "SNIa",
            "anomaly_score": 0.08,
            "n_detections": 31,
        }
    ],
}


@router.get("/objects", summary="List objects", response_model=ObjectsPage, responses=errors(422))
def list_objects(
    catalog: CatalogDep,
    settings: SettingsDep,
    filters: Filters,
    limit: PageSize = 100,
    cursor: Cursor = None,
) -> ObjectsPage:
    """The catalogue's objects by id, with the served model's predictions; stable cursor paging."""
    try:
        page, nxt = catalog.list_objects(min(limit, settings.max_page), cursor, request_filters(catalog, filters, "query"))
    except ValueError as exc:
        raise HTTPException(422, f"cursor: {exc}") from None
    fields = ObjectSummary.model_fields
    return ObjectsPage(items=[ObjectSummary(**{k: getattr(s, k) for k in fields}) for s in page], next_cursor=nxt)


@router.get("/cone", summary="Cone search", response_model=ConeResponse, responses=errors(422))
def cone(
    catalog: CatalogDep,
    settings: SettingsDep,
    ra: Annotated[float, Query(ge=0, lt=360, description="right ascension of the centre, degrees",
                               examples=[176.4842])],
    dec: Annotated[float, Query(ge=-90, le=90, description="declination of the centre, degrees",
                                examples=[58.6308])],
    radius: Annotated[float, Query(gt=0, le=3600, description="radius in arcsec (at most 1 degree)",
                                   examples=[10.0])],
    limit: Annotated[int, Query(ge=1, le=500, description="at most this many, nearest first")] = 100,
) -> ConeResponse:
    """Objects within `radius` arcsec of (ra, dec), nearest first, using the coordinates stored from
    alert packets and JSON light curves (objects without coordinates are never matched)."""
    found = catalog.store.cone(ra, dec, radius / 3600.0, model_version=catalog.version, limit=min(limit, settings.max_page))
    fields = ObjectSummary.model_fields
    return ConeResponse(
        items=[
            ConeMatch(**{k: getattr(s, k) for k in fields}, separation_arcsec=round(sep * 3600, 4)) for s, sep in found
        ]
    )


@router.delete(
    "/objects/{object_id}",
    summary="Delete an object",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(require_api_key)],
    responses=errors(401, 404),
)
async def delete_object(object_id: ObjectId, catalog: CatalogDep, offload: OffloadDep) -> Response:
    """Delete an object: its row, light curve and fingerprints of every version (SQL), and its index entry."""
    if not await offload.run(catalog.delete, object_id):
        raise unknown_object(object_id)
    return Response(status_code=204)


@router.post("/neighbors", summary="Neighbours of many objects", response_model=NeighborsBatchResponse, responses=errors(404, 422))
def neighbors_many(req: NeighborsRequest, catalog: CatalogDep, settings: SettingsDep) -> NeighborsBatchResponse:
    """Neighbours of up to 100 stored objects in one call (each without itself), with the filters of
    `GET /v1/objects/{object_id}/neighbors`."""
    try:
        rows = catalog.neighbors_many(req.object_ids, min(req.k, settings.max_k), request_filters(catalog, req, "body"))
    except UnknownObject as exc:
        raise unknown_object(exc.args[0]) from None
    results = [NeighborsOf(object_id=o, neighbors=_neighbors(r)) for o, r in zip(req.object_ids, rows, strict=True)]
    return NeighborsBatchResponse(model=catalog.version, results=results)


@router.get("/objects/{object_id}", summary="Get an object", response_model=ObjectDetail, responses=errors(404))
def get_object(
    object_id: ObjectId,
    catalog: CatalogDep,
    fingerprint: Annotated[bool, Query(description="include the served model's fingerprint")] = False,
) -> ObjectDetail:
    """Summary, stored light curve, class probabilities and anomaly score of an object."""
    try:
        state, lc = catalog.get_object(object_id)
        stored = catalog.store.get_fingerprint(object_id, catalog.version) if fingerprint else None
        vector = None if stored is None else stored.tolist()  # as POST /v1/fingerprints gives it (not unit length)
    except UnknownObject:
        raise unknown_object(object_id) from None
    fields = {k: getattr(state, k) for k in ObjectSummary.model_fields}
    return ObjectDetail(**fields, lightcurve=LightCurveIn.from_lightcurve(lc), fingerprint=vector)


@router.get(
    "/objects/{object_id}/neighbors",
    summary="Neighbours of an object",
    response_model=NeighborsResponse,
    responses={**errors(404, 422), 200: {"content": {"application/json": {"example": NEIGHBORS_EXAMPLE}}}},
)
def neighbors(
    object_id: ObjectId,
    catalog: CatalogDep,
    settings: SettingsDep,
    filters: Filters,
    k: Annotated[int, Query(ge=1, le=1000, description="number of neighbours")] = 10,
) -> NeighborsResponse:
    """The k most similar objects by cosine similarity of fingerprints, with optional filters.
    Never fewer than k when at least k objects match the filters."""
    k = min(k, settings.max_k)
    chosen = request_filters(catalog, filters, "query")
    try:
        hits = catalog.neighbors(object_id, k, chosen)
    except UnknownObject:
        raise unknown_object(object_id) from None
    return NeighborsResponse(object_id=object_id, model=catalog.version, neighbors=_neighbors(hits))


@router.get(
    "/objects/{object_id}/plot",
    summary="Plot an object",
    responses={
        **errors(401, 404),
        200: {
            "content": {"image/png": {}},
            "description": "PNG: the light curve, the curve decoded from its fingerprint, its top neighbours",
        },
    },
    response_class=Response,
    dependencies=[Depends(require_read_key)],
)
async def plot(object_id: ObjectId, catalog: CatalogDep, offload: OffloadDep) -> Response:
    """A PNG of the light curve, its fingerprint's reconstruction and its three nearest neighbours."""
    try:
        png = await offload.run(catalog.plot, object_id)
    except UnknownObject:
        raise unknown_object(object_id) from None
    return Response(png, media_type="image/png")


@router.get("/objects/{object_id}/decoded", summary="The curve decoded from an object's fingerprint",
            response_model=DecodedCurve, responses=errors(404, 409))
async def decoded(object_id: ObjectId, catalog: CatalogDep, offload: OffloadDep,
                  points: Annotated[int, Query(ge=2, le=1000, description="times per band")] = 200) -> DecodedCurve:
    """What the model's decoder makes of the fingerprint: magnitude and its 1-sigma per band, from the
    first detection to 20 days after the last (the curve the plot draws; one light curve's encoding,
    in the CPU-work pool)."""
    try:
        lc, (t, mag, sigma, bands) = await offload.run(catalog.decoded, object_id, points)
    except UnknownObject:
        raise unknown_object(object_id) from None
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    start = float(lc.time[0]) - MJD_OFFSET
    return DecodedCurve(
        object_id=object_id,
        model=catalog.version,
        first_mjd=start,
        bands=[
            DecodedBand(
                band=b,
                mjd=[round(start + x, 5) for x in t.tolist()],
                mag=[round(x, 4) for x in mag[i].tolist()],
                mag_err=[round(x, 4) for x in sigma[i].tolist()],
            )
            for i, b in enumerate(bands)
        ],
    )


@router.post(
    "/search",
    summary="Search by light curve or fingerprint",
    response_model=NeighborsResponse,
    dependencies=[Depends(require_read_key)],
    responses={
        **errors(401, 422),
        200: {"content": {"application/json": {"example": NEIGHBORS_EXAMPLE | {"object_id": None}}}},
    },
)
def search(req: SearchRequest, catalog: CatalogDep, settings: SettingsDep) -> NeighborsResponse:
    """Neighbours of a posted light curve (encoded, not stored) or of a fingerprint vector."""
    if (req.lightcurve is None) == (req.vector is None):
        raise RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": "give lightcurve or vector"}])
    if req.lightcurve is not None:
        try:
            lc = req.lightcurve.to_lightcurve()
        except LightCurveError as exc:
            raise lightcurve_error(exc, ("body", "lightcurve")) from None
        vector, query_id = catalog.encode([lc]).vectors[0], lc.object_id
    else:
        vector, query_id = np.asarray(req.vector, dtype=np.float64), None
        if vector.shape != (catalog.encoder.dim,) or not np.isfinite(vector).all() or not np.any(vector):
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("body", "vector"),
                        "msg": f"need {catalog.encoder.dim} finite numbers, not all zero",
                    }
                ]
            )
        # cosine search is scale-free: unit length in float64 first, so tiny or huge values neither
        # underflow to a "zero vector" (was a 500) nor overflow the float32 norm (was similarity 0)
        vector = vector / np.abs(vector).max()
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
    hits = catalog.search(vector, min(req.k, settings.max_k), request_filters(catalog, req, "body"))
    return NeighborsResponse(object_id=query_id, model=catalog.version, neighbors=_neighbors(hits))
