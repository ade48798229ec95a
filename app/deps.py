"""Dependencies injected into the routers: the catalogue, the settings, the API key check,
and the light curves of a request body (JSON or Avro alert packets)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from app.bodies import BodyError, lightcurve_error_detail
from app.catalog import Catalog
from app.offload import Offload
from app.schemas import filters_of
from app.settings import Settings
from encoder.inference import Encoded
from encoder.lightcurve import LightCurve, LightCurveError

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


def _key_matches(given: str | None, *keys: str | None) -> bool:
    """Constant-time comparison with each set key. Whitespace around the value is not part of it
    (HTTP's optional whitespace: a real server strips it before the app sees the header)."""
    if given is None:
        return False
    given_b = given.strip(" \t").encode()
    return any(hmac.compare_digest(given_b, k.encode()) for k in keys if k)


# One security scheme for both keys: Swagger UI's "Authorize" button sets the header on every call
API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="APIKey",
    auto_error=False,
    description="RTF_API_KEY for writes; RTF_READ_API_KEY (or the write key) for the "
    "expensive reads when the service runs with one",
)
ApiKeyDep = Annotated[str | None, Security(API_KEY)]


def _secret(value) -> str | None:
    return value.get_secret_value() if value else None


async def require_api_key(settings: SettingsDep, x_api_key: ApiKeyDep = None) -> None:
    """Write endpoints: when RTF_API_KEY is set, X-API-Key must match (constant-time compare)."""
    expected = _secret(settings.api_key)
    if expected and not _key_matches(x_api_key, expected):
        raise HTTPException(401, "missing or wrong X-API-Key", headers={"WWW-Authenticate": "APIKey"})


async def require_read_key(settings: SettingsDep, x_api_key: ApiKeyDep = None) -> None:
    """Expensive reads (encoding, search by light curve, plots): when RTF_READ_API_KEY is set,
    X-API-Key must be it or the write key."""
    read_key = _secret(settings.read_api_key)
    if read_key and not _key_matches(x_api_key, read_key, _secret(settings.api_key)):
        raise HTTPException(
            401,
            "missing or wrong X-API-Key (RTF_READ_API_KEY guards this read)",
            headers={"WWW-Authenticate": "APIKey"},
        )


def lightcurve_error(exc: LightCurveError, prefix: tuple = ("body",)) -> RequestValidationError:
    return RequestValidationError(lightcurve_error_detail(exc, prefix))


def http_error(exc: BodyError) -> HTTPException | RequestValidationError:
    if isinstance(exc.detail, list):
        return RequestValidationError(exc.detail)
    return HTTPException(exc.status, exc.detail)


async def get_offload(request: Request) -> Offload:
    return request.app.state.offload


OffloadDep = Annotated[Offload, Depends(get_offload)]


async def request_lightcurves(request: Request, settings: SettingsDep, offload: OffloadDep) -> list[LightCurve]:
    """The light curves of a body: JSON ``{"lightcurves": [...]}`` or Avro alert packets
    (decoded off the event loop when the body is large: :class:`app.offload.Offload`)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    try:
        return await offload.parse(ctype, body, settings.max_batch, 4 * settings.max_body_bytes)
    except BodyError as exc:
        raise http_error(exc) from None


LightCurvesDep = Annotated[list[LightCurve], Depends(request_lightcurves)]


async def encode_lightcurves(request: Request, catalog: Catalog, lcs: list[LightCurve]) -> Encoded:
    """``catalog.encode(lcs)``, on the event loop when the service is otherwise idle and the request
    small, else in a heavy-work thread (:meth:`app.offload.Offload.run`).

    Handing work to a pool thread and back cost ~2 ms per request on the 2-core VM we measure on
    (the idle core has to be woken), more than encoding one alert takes. Under concurrent load the
    pool keeps the loop free for the other requests (inline encodes doubled the neighbour queries'
    median latency under the load test), and large batches always go there.
    """
    idle = request.app.state.metrics.in_flight <= 1
    if idle and sum(len(lc) for lc in lcs) <= INLINE_MAX_DETECTIONS:
        return catalog.encode(lcs)
    return await request.app.state.offload.run(catalog.encode, lcs)


def request_filters(catalog: Catalog, req: BaseModel, where: str) -> dict[str, Any]:
    """The filters (``indexing.filters``) set in a request's query (``where`` "query") or body;
    a 422 names an unknown class."""
    filters = filters_of(req)
    check_classes(catalog, filters.get("classes"), (where, "class" if where == "query" else "classes"))
    return filters


def check_classes(catalog: Catalog, names: list[str] | str | None, loc: tuple[str, ...]) -> None:
    """422 naming ``loc`` when a class filter holds a name the filters do not know."""
    problem = catalog.check_classes([names] if isinstance(names, str) else names)
    if problem is not None:
        raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": problem}])
