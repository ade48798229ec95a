"""POST /v1/fingerprints and /v1/classify: encode posted light curves without storing them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.catalog import class_probabilities, top_label
from app.deps import CatalogDep, LightCurvesDep, encode_lightcurves, require_read_key
from app.routers._docs import LIGHTCURVE_BODY, errors
from app.schemas import ClassifyResponse, Fingerprint, FingerprintsResponse, Prediction

router = APIRouter(prefix="/v1", tags=["encode"])


@router.post(
    "/fingerprints",
    summary="Fingerprint light curves",
    response_model=FingerprintsResponse,
    openapi_extra=LIGHTCURVE_BODY,
    dependencies=[Depends(require_read_key)],
    responses=errors(401, 413, 415, 422),
)
async def fingerprints(request: Request, catalog: CatalogDep, lcs: LightCurvesDep) -> FingerprintsResponse:
    """The fingerprint of each posted light curve (nothing is stored)."""
    enc = await encode_lightcurves(request, catalog, lcs)
    return FingerprintsResponse(
        model=catalog.version,
        dim=catalog.encoder.dim,
        fingerprints=[
            Fingerprint(object_id=o, vector=v.tolist()) for o, v in zip(enc.object_ids, enc.vectors, strict=True)
        ],
    )


@router.post(
    "/classify",
    summary="Classify light curves",
    response_model=ClassifyResponse,
    openapi_extra=LIGHTCURVE_BODY,
    dependencies=[Depends(require_read_key)],
    responses=errors(401, 413, 415, 422),
)
async def classify(request: Request, catalog: CatalogDep, lcs: LightCurvesDep) -> ClassifyResponse:
    """Class probabilities (coarse and fine) and the anomaly score of each posted light curve."""
    enc = await encode_lightcurves(request, catalog, lcs)
    preds = []
    for i, oid in enumerate(enc.object_ids):
        coarse, fine = class_probabilities(catalog.encoder, enc, i)
        preds.append(
            Prediction(
                object_id=oid,
                label=top_label(coarse),
                probabilities=coarse,
                fine_label=top_label(fine),
                fine_probabilities=fine,
                anomaly_score=float(enc.anomaly[i]),
            )
        )
    return ClassifyResponse(model=catalog.version, predictions=preds)
