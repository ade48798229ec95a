"""The RTF service: ``uvicorn app.main:app``. Settings come from ``RTF_*`` variables
(see :mod:`app.settings`); ``create_app(settings)`` builds an app for tests."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import problems
from app.catalog import Catalog, seed_demo
from app.deps import lightcurve_error
from app.offload import Offload
from app.routers import alerts, anomalies, apidocs, encode, export, objects, service, web
from app.routers._docs import COMMON, ERRORS, TAGS
from app.schemas import MAX_BATCH, LightCurveBatch
from app.settings import Settings, get_settings
from encoder.checkpoint import CheckpointError
from encoder.lightcurve import LightCurveError

log = logging.getLogger("rtf")

DESCRIPTION = """
**Real-Time Fingerprints** turns each transient's light curve into a 64-float fingerprint
and serves similarity search, classification and anomaly rankings over the catalogue.

* Light curves are JSON (`{{"lightcurves": [...]}}`, see the `LightCurveIn` schema) or Avro
  container files of ZTF / LSST alert packets (`Content-Type: avro/binary`).
* Write endpoints (`POST /v1/alerts`) need `X-API-Key` when the service runs with `RTF_API_KEY`.
* Limits: {max_batch} light curves per request, bodies up to {max_mb} MiB, `k` <= 1000, pages <= 500.
* Errors, on every route, are RFC 9457 problem details (`application/problem+json`, the `Problem`
  schema): `detail` says what was wrong, and for 422 `errors` gives each field's path (`loc`).
  Any route may also answer {common}.
"""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "rtf_request_seconds",
            "request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.alerts_ingested = Counter("rtf_alerts_ingested", "new detections stored", registry=self.registry)
        self.catalog_objects = Gauge("rtf_catalog_objects", "objects in the vector index", registry=self.registry)
        self.in_flight = 0  # requests being served (read by app.deps.encode_lightcurves)


class BodyLimit:
    """413 for bodies over the limit, by Content-Length or while streaming (nothing is read past it);
    408 (and the connection closed) for a body that has not fully arrived ``timeout`` seconds after
    the request started (a client sending a byte a second held a connection for ever)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float):
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _refuse(413, f"request body larger than {self.max_bytes} bytes", scope, send)
        seen, complete = 0, False
        deadline = time.monotonic() + self.timeout

        async def limited() -> Message:
            nonlocal seen, complete
            if complete:  # the body is in: later receives wait for a disconnect, with no deadline
                return await receive()
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):  # no task, unlike wait_for
                    message = await receive()
            except TimeoutError:
                raise _BodyTimeout from None
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _BodyTooLarge
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        try:
            await self.app(scope, limited, send)
        except* _BodyTooLarge:  # except*: raised inside a task group it arrives in an ExceptionGroup
            await _refuse(413, f"request body larger than {self.max_bytes} bytes", scope, send)
        except* _BodyTimeout:
            await _refuse(408, f"request body not received within {self.timeout:g} s", scope, send)


class RequestMetrics:
    """Latency of every request by method, matched route and status, into ``metrics.requests``.

    A plain ASGI middleware: ``@app.middleware("http")`` (Starlette's BaseHTTPMiddleware) runs each
    request in an extra task with memory streams: ~0.7 ms per request here (measured side by side).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), 500  # 500 unless a response starts (an unhandled error)

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, observed)
        finally:
            self.metrics.in_flight -= 1
            route = getattr(scope.get("route"), "path", "unmatched")  # set on the scope by the router
            self.metrics.requests.labels(scope["method"], route, str(status)).observe(time.perf_counter() - t0)


class RefuseNul:
    """422 for a NUL character in a query parameter, on every route and database:
    PostgreSQL refuses NUL in text (it was a 500 there, while SQLite answered 200)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            loc = None  # (path parameters are checked by their routes, which name them)
            if b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
                pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
                loc = ["query", next((k for k, v in pairs if "\x00" in k + v), "")]
            if loc is not None:
                errors = [{"loc": loc, "msg": "must not contain NUL", "type": "value_error"}]
                return await problems.validation_problem(errors, scope["path"])(scope, receive, send)
        await self.app(scope, receive, send)


class RateLimit:
    """429 for a client (by address) sending more than ``rate`` requests a second, with bursts of up to
    a second's worth (a token bucket); health and metrics probes are not counted. ``rate`` 0: off."""

    EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, app: ASGIApp, rate: float):
        self.app, self.rate, self.burst = app, rate, max(1.0, rate)
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0 or scope["path"] in self.EXEMPT:
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("?", 0))[0]
        now = time.monotonic()
        tokens, when = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        if tokens < 1.0:
            self.buckets[client] = (tokens, now)
            retry = max(1, math.ceil((1.0 - tokens) / self.rate))
            resp = problems.problem(
                429,
                f"more than {self.rate:g} requests a second from {client}",
                instance=scope["path"],
                headers={"Retry-After": str(retry)},
            )
            return await resp(scope, receive, send)
        self.buckets[client] = (tokens - 1.0, now)
        if len(self.buckets) > 100_000:  # forget idle clients: a full bucket is the default anyway
            self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < self.burst / self.rate}
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


async def _refuse(status: int, detail: str, scope: Scope, send: Send) -> None:
    """Answer ``status`` and close the connection: the rest of the body is not read."""
    resp = problems.problem(status, detail, instance=scope["path"], headers={"Connection": "close"})
    await resp({"type": "http"}, None, send)  # type: ignore[arg-type]  # a Response sends only, never receives


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        settings.index_dir.mkdir(parents=True, exist_ok=True)
        catalog = Catalog.open(settings)
        if settings.demo and catalog.store.count_objects() == 0:
            seed_demo(catalog, settings.demo_file)
        app.state.metrics.catalog_objects.set(len(catalog.index))
        if settings.sync_interval > 0:
            catalog.start_sync(settings.sync_interval)
        app.state.catalog = catalog
        app.state.offload = Offload(settings.cpu_workers, settings.decode_workers)
        # What is loaded now (model, index maps, libraries) lives as long as the process: keep it out
        # of the cyclic collector, whose full passes over it paused requests for 180-300 ms (the encode p99)
        gc.collect()
        gc.freeze()
        log.info("ready: model %s, %d objects", catalog.version, len(catalog.index))
        yield
        gc.unfreeze()
        app.state.catalog = None
        app.state.offload.close()
        catalog.close()

    app = FastAPI(
        title="RTF — Real-Time Fingerprints",
        version="0.1.0",
        description=DESCRIPTION.format(
            max_batch=min(settings.max_batch, MAX_BATCH),
            max_mb=settings.max_body_bytes // 2**20,
            common=", ".join(f"{code} ({why})" for code, why in COMMON.items()),
        ),
        lifespan=lifespan,
        docs_url=None,  # served by app.routers.apidocs, with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.catalog = None
    for r in (encode.router, alerts.router, objects.router, anomalies.router, export.router, service.router, web.router):
        app.include_router(r)
    apidocs.mount(app)

    # Starlette types a handler as taking any Exception; each of these takes the class it is registered for
    app.add_exception_handler(StarletteHTTPException, problems.http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, problems.request_validation)  # type: ignore[arg-type]

    @app.exception_handler(LightCurveError)
    async def lightcurve_error_handler(request: Request, exc: LightCurveError) -> problems.ProblemResponse:
        return await problems.request_validation(request, lightcurve_error(exc))

    @app.exception_handler(CheckpointError)
    async def checkpoint_error(request: Request, exc: CheckpointError) -> problems.ProblemResponse:
        return problems.problem(503, str(exc), instance=request.url.path)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> problems.ProblemResponse:
        """A bug: logged by the server (the traceback), answered in the one error format."""
        return problems.problem(
            500, f"internal error ({type(exc).__name__}); the server log has the traceback", instance=request.url.path
        )

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes, tags=TAGS
            )
            body = LightCurveBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components["LightCurveBatch"] = body
            schema = _problem_responses(schema)
            catalog = app.state.catalog
            if catalog is None:  # loading: answer without the served version's example, and build again later
                return schema
            app.openapi_schema = _version_examples(schema, catalog.version)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    app.add_middleware(RefuseNul)
    app.add_middleware(RateLimit, rate=settings.rate_limit)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout=settings.body_timeout)
    return app


def _problem_responses(schema: dict) -> dict:
    """Every 4xx/5xx answer of every operation is a ``Problem`` (``application/problem+json``),
    FastAPI's generated 422 (``HTTPValidationError``) included."""
    components = schema["components"]["schemas"]
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Problem"] = problems.PROBLEM_SCHEMA
    content = {problems.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema["paths"].values():
        for op in operations.values():
            for code, response in op.get("responses", {}).items():
                if code[0] in "45":
                    response["content"] = content
                    if response.get("description") == "Validation Error":
                        response["description"] = ERRORS[422]["description"]
    return schema


def _version_examples(schema: dict, version: str) -> dict:
    """The served model version as the example of every ``{version}`` path parameter ("Try it out" works)."""
    for operations in schema["paths"].values():
        for op in operations.values():
            for param in op.get("parameters", []):
                if param["name"] == "version" and param["in"] == "path":
                    param["schema"]["examples"] = [version]
    return schema


def __getattr__(name: str) -> FastAPI:
    """``app.main:app`` is built on first access, so importing the module has no side effects."""
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
