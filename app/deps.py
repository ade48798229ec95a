"""Dependencies injected into the routers: the catalogue, the settings, the API key check,
and the light curves of a request body (JSON or Avro alert packets)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.catalog import Catalog
from app.schemas import LightCurveBatch
from app.settings import Settings
from encoder.inference import Encoded
from encoder.lightcurve import LightCurve, LightCurveError
from encoder.readers import AlertFormatError, read_alert_avro

AVRO_TYPES = {"avro/binary", "application/avro", "application/vnd.apache.avro", "application/octet-stream"}
JSON_TYPES = {"application/json", ""}
INLINE_MAX_DETECTIONS = 2_000  # ~10 ms of encoding: below it a request is encoded on the event loop


# The dependencies that only look something up are ``async``: FastAPI runs a plain ``def`` dependency
# in its thread pool, and each such hop cost ~1 ms of a request's latency (measured).
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_catalog(request: Request) -> Catalog:
    catalog = getattr(request.app.state, "catalog", None)
    if catalog is None:
        raise HTTPException(503, "the catalogue is still loading")
    return catalog


CatalogDep = Annotated[Catalog, Depends(get_catalog)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def require_api_key(settings: SettingsDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Write endpoints: when RTF_API_KEY is set, X-API-Key must match (constant-time compare)."""
    expected = settings.api_key.get_secret_value() if settings.api_key else None
    if not expected:
        return
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong X-API-Key", headers={"WWW-Authenticate": "APIKey"})


def lightcurve_error(exc: LightCurveError, prefix: tuple = ("body",)) -> RequestValidationError:
    loc = (*prefix, *[int(p) if p.isdigit() else p for p in exc.field.replace("[", ".").replace("]", "").split(".")])
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": exc.message}])


async def request_lightcurves(request: Request, settings: SettingsDep) -> list[LightCurve]:
    """The light curves of a body: JSON ``{"lightcurves": [...]}`` or Avro alert packets."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if ctype in AVRO_TYPES:
        try:
            lcs = read_alert_avro(body)
        except AlertFormatError as exc:
            raise HTTPException(422, f"body: not readable as Avro alert packets: {exc}") from None
        except LightCurveError as exc:
            raise lightcurve_error(exc) from None
    elif ctype in JSON_TYPES:
        try:
            batch = LightCurveBatch.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    {"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]}
                    for e in exc.errors(include_url=False, include_context=False, include_input=False)
                ]
            ) from None
        lcs = []
        for i, item in enumerate(batch.lightcurves):
            try:
                lcs.append(item.to_lightcurve())
            except LightCurveError as exc:
                raise lightcurve_error(exc, ("body", "lightcurves", i)) from None
    else:
        raise HTTPException(415, f"unsupported Content-Type {ctype!r}: send application/json or avro/binary")
    if not lcs:
        raise HTTPException(422, "body: no light curves")
    if len(lcs) > settings.max_batch:
        raise HTTPException(413, f"{len(lcs)} light curves in one request; at most {settings.max_batch}")
    return lcs


LightCurvesDep = Annotated[list[LightCurve], Depends(request_lightcurves)]


async def encode_lightcurves(request: Request, catalog: Catalog, lcs: list[LightCurve]) -> Encoded:
    """``catalog.encode(lcs)``, on the event loop when the service is otherwise idle and the request
    small, else in the thread pool.

    Handing work to a pool thread and back cost ~2 ms per request on the 2-core VM we measure on
    (the idle core has to be woken), more than encoding one alert takes. Under concurrent load the
    pool keeps the loop free for the other requests (inline encodes doubled the neighbour queries'
    median latency under the load test), and large batches always go there.
    """
    idle = request.app.state.metrics.in_flight <= 1
    if idle and sum(len(lc) for lc in lcs) <= INLINE_MAX_DETECTIONS:
        return catalog.encode(lcs)
    return await run_in_threadpool(catalog.encode, lcs)
