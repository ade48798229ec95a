""":class:`RTFClient`: a synchronous client of the RTF HTTP API (httpx)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Unpack, overload
from urllib.parse import quote

import httpx

from . import _bodies as b
from ._bodies import AvroSource, Filters, LightCurveLike
from .errors import RTFConnectionError, RTFError
from .models import (
    AnomalyEntry,
    Classification,
    ConeMatch,
    FeedbackResult,
    Fingerprint,
    IngestedObject,
    IngestResult,
    Models,
    Neighbors,
    ObjectDetail,
    ObjectSummary,
    Page,
    Readiness,
    build,
)
from .retry import RETRY_STATUSES, RetryPolicy

__version__ = "0.1.0"
MAX_NEIGHBOR_IDS = 100  # object ids per POST /v1/neighbors (the service's limit)


def _oid(object_id: str) -> str:
    return quote(object_id, safe="")


class RTFClient:
    """A client of one RTF service.

    ``api_key`` is sent as X-API-Key with every request (writes need it when the service sets
    ``RTF_API_KEY``; it also opens the reads that ``RTF_READ_API_KEY`` guards). With ``read_api_key``
    the reads send that key instead, so the write key travels only with writes.

    Calls that change nothing are retried on 429, 502, 503, 504 and connection errors as ``retry``
    (or ``retries``) says; :meth:`ingest`, :meth:`ingest_avro` and :meth:`activate_model` never are.
    ``transport`` replaces httpx's (tests pass an :class:`httpx.MockTransport`).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        read_api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy(retries=retries)
        self._api_key, self._read_api_key = api_key, read_api_key
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"rtf-client/{__version__}"} | (headers or {}),
        )

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RTFClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RTFClient({self.base_url!r})"

    def _request(
        self, method: str, path: str, *, idempotent: bool, write: bool = False, stream: bool = False, **kw: Any
    ) -> httpx.Response:
        """Send, retrying as :attr:`retry` says when ``idempotent``; raise :class:`RTFError` for 4xx/5xx."""
        headers = dict(kw.pop("headers", None) or {})
        key = self._api_key if write else (self._read_api_key or self._api_key)
        if key:
            headers["X-API-Key"] = key
        request = self._http.build_request(method, path, headers=headers, **kw)
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
                if response.status_code >= 400:
                    response.read()  # (streamed) the error body
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt) if idempotent else None
                if delay is None:
                    err = RTFConnectionError(f"{method} {path}: {type(exc).__name__}: {exc}")
                    err.attempts = attempt + 1
                    raise err from exc
            else:
                if response.status_code < 400:
                    return response
                error = RTFError.from_response(response)
                response.close()
                retryable = idempotent and response.status_code in RETRY_STATUSES
                delay = self.retry.delay(attempt, getattr(error, "retry_after", None)) if retryable else None
                if delay is None:
                    error.attempts = attempt + 1
                    raise error
            self.retry.sleep(delay)
            attempt += 1

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, idempotent=True, params=b.drop_none(**params)).json()

    def _post_read(self, path: str, body: dict) -> Any:
        return self._request("POST", path, idempotent=True, json=body).json()

    def _lightcurve_post(self, path: str, lightcurves: Any, *, write: bool) -> Any:
        if isinstance(lightcurves, bytes | bytearray | memoryview):  # Avro alert packets
            kw: dict[str, Any] = {"content": bytes(lightcurves), "headers": {"Content-Type": b.AVRO}}
        else:
            kw = {"json": b.lightcurves_body(lightcurves)}
        return self._request("POST", path, idempotent=not write, write=write, **kw).json()

    # ------------------------------------------------------------------ service
    def health(self) -> bool:
        """``GET /healthz``: True when the process answers."""
        return self._get("/healthz").get("status") == "ok"

    def ready(self) -> Readiness:
        """``GET /readyz`` once, without retries: a 503 (loading, database down) is ``ready=False``."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise RTFConnectionError(f"GET /readyz: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in (200, 503):
            raise RTFError.from_response(response)
        try:
            body = response.json()
        except ValueError:
            body = {}
        return build(Readiness, body, ready=response.status_code == 200, status=str(body.get("status", "")))

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.5) -> Readiness:
        """Poll :meth:`ready` (connection errors included) until ready; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = self.ready()
                if state.ready:
                    return state
                last = state.status
            except RTFConnectionError as exc:
                last = exc.detail
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.base_url} not ready after {timeout} s: {last}")
            time.sleep(interval)

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text."""
        return self._request("GET", "/metrics", idempotent=True).text

    def models(self) -> Models:
        """``GET /v1/models``: the registered model versions (``.active``: the serving one)."""
        return Models.from_json(self._get("/v1/models"))

    def activate_model(self, version: str) -> Models:
        """``POST /v1/models/{version}/activate`` (write key): switch every answer to a complete version.
        Not retried: a switch takes a while (checkpoint loaded, index built) and a retry would start another."""
        path = f"/v1/models/{_oid(version)}/activate"
        return Models.from_json(self._request("POST", path, idempotent=False, write=True).json())

    def drop_model(self, version: str) -> int:
        """``DELETE /v1/models/{version}`` (write key): a version that is not active; the fingerprints deleted."""
        r = self._request("DELETE", f"/v1/models/{_oid(version)}", idempotent=True, write=True)
        return int(r.json()["fingerprints_deleted"])

    # ------------------------------------------------------------------ encoding (nothing stored)
    def fingerprints(self, lightcurves: LightCurveLike | Iterable[LightCurveLike] | bytes) -> list[Fingerprint]:
        """``POST /v1/fingerprints``: the fingerprint of each light curve (or of Avro alert packets, as bytes)."""
        data = self._lightcurve_post("/v1/fingerprints", lightcurves, write=False)
        return [
            Fingerprint(object_id=f["object_id"], vector=tuple(f["vector"]), model=data.get("model"))
            for f in data["fingerprints"]
        ]

    def classify(self, lightcurves: LightCurveLike | Iterable[LightCurveLike] | bytes) -> list[Classification]:
        """``POST /v1/classify``: class probabilities and anomaly score of each light curve."""
        data = self._lightcurve_post("/v1/classify", lightcurves, write=False)
        return [build(Classification, p, model=data.get("model")) for p in data["predictions"]]

    # ------------------------------------------------------------------ ingest (never retried)
    def ingest(self, lightcurves: LightCurveLike | Iterable[LightCurveLike] | bytes) -> IngestResult:
        """``POST /v1/alerts`` (write key): store the light curves and re-encode their objects.

        Never retried by the client, whatever the failure. The service stores nothing twice, so sending
        the same alerts again is safe for the data, but whether to is the caller's decision: a request
        that failed by timeout or lost connection may have been committed (a retry then reports its
        alerts as ``duplicate_alerts``, not ``new_alerts``), and re-sending large batches to a service
        that answered 503 or 429 adds to the load it is refusing. Catch :class:`ServiceUnavailable`,
        :class:`RateLimited` or :class:`RTFConnectionError` and send again if you want to.
        """
        return _ingest_result(self._lightcurve_post("/v1/alerts", lightcurves, write=True))

    def ingest_avro(self, source: AvroSource) -> IngestResult:
        """``POST /v1/alerts`` with ``Content-Type: avro/binary``: an Avro container of ZTF or LSST alert
        packets (bytes, a path, or a binary file). Never retried, as :meth:`ingest`."""
        return self.ingest(b.avro_bytes(source))

    # ------------------------------------------------------------------ objects
    def object(self, object_id: str, fingerprint: bool = False) -> ObjectDetail:
        """``GET /v1/objects/{id}``: summary, stored light curve and (``fingerprint=True``) the fingerprint."""
        data = self._get(f"/v1/objects/{_oid(object_id)}", fingerprint="true" if fingerprint else None)
        return build(ObjectDetail, data)

    def objects(self, limit: int = 100, cursor: str | None = None, **filters: Unpack[Filters]) -> Page[ObjectSummary]:
        """``GET /v1/objects``: one page of the catalogue by object id, passing ``filters``."""
        data = self._get("/v1/objects", limit=limit, cursor=cursor, **b.filter_params(filters))
        return Page(items=tuple(build(ObjectSummary, o) for o in data["items"]), next_cursor=data.get("next_cursor"))

    def iter_objects(self, page_size: int = 100, **filters: Unpack[Filters]) -> Iterator[ObjectSummary]:
        """Every object of :meth:`objects`, page after page (each object once while the catalogue does not change)."""
        return _follow(lambda c: self.objects(page_size, c, **filters))

    def cone(self, ra: float, dec: float, radius_arcsec: float, limit: int = 100) -> list[ConeMatch]:
        """``GET /v1/cone``: objects within ``radius_arcsec`` of (ra, dec) in degrees, nearest first."""
        data = self._get("/v1/cone", ra=ra, dec=dec, radius=radius_arcsec, limit=limit)
        return [build(ConeMatch, o) for o in data["items"]]

    def delete(self, object_id: str) -> None:
        """``DELETE /v1/objects/{id}`` (write key): the object, its light curve, fingerprints and index entry.
        Retried like a read; a retry whose first try was carried out answers :class:`NotFound`."""
        self._request("DELETE", f"/v1/objects/{_oid(object_id)}", idempotent=True, write=True)

    def plot(self, object_id: str) -> bytes:
        """``GET /v1/objects/{id}/plot``: a PNG of the light curve, its reconstruction and nearest neighbours."""
        return self._request("GET", f"/v1/objects/{_oid(object_id)}/plot", idempotent=True).content

    # ------------------------------------------------------------------ neighbours
    def neighbors(self, object_id: str, k: int = 10, **filters: Unpack[Filters]) -> Neighbors:
        """``GET /v1/objects/{id}/neighbors``: the ``k`` most similar objects (never the object itself) that
        pass ``filters``."""
        params = {"k": k, **b.filter_params(filters)}
        data = self._request("GET", f"/v1/objects/{_oid(object_id)}/neighbors", idempotent=True, params=params)
        return Neighbors.from_json(data.json())

    def neighbors_many(self, object_ids: Sequence[str], k: int = 10, **filters: Unpack[Filters]) -> list[Neighbors]:
        """``POST /v1/neighbors``: :meth:`neighbors` of each id, in order, in requests of 100 ids."""
        f = b.filters(filters)
        ids, out = list(object_ids), []
        for start in range(0, len(ids), MAX_NEIGHBOR_IDS):
            data = self._post_read("/v1/neighbors", {"object_ids": ids[start : start + MAX_NEIGHBOR_IDS], "k": k, **f})
            out += [Neighbors.from_json(r, model=data.get("model")) for r in data["results"]]
        return out

    def search(
        self, query: LightCurveLike | Fingerprint | Sequence[float], k: int = 10, **filters: Unpack[Filters]
    ) -> Neighbors:
        """``POST /v1/search``: neighbours of a light curve (a dict or :class:`ObjectDetail`; encoded, not
        stored) or of a fingerprint (a :class:`Fingerprint` or the model's ``dim`` numbers)."""
        body = b.search_query(query) | {"k": k} | b.filters(filters)
        return Neighbors.from_json(self._post_read("/v1/search", body))

    # ------------------------------------------------------------------ anomalies
    def anomalies(self, limit: int = 50, cursor: str | None = None, **filters: Unpack[Filters]) -> Page[AnomalyEntry]:
        """``GET /v1/anomalies``: one page of the catalogue, most anomalous first, passing ``filters``."""
        data = self._get("/v1/anomalies", limit=limit, cursor=cursor, **b.filter_params(filters))
        return Page(items=tuple(build(AnomalyEntry, a) for a in data["items"]), next_cursor=data.get("next_cursor"))

    def iter_anomalies(self, page_size: int = 50, **filters: Unpack[Filters]) -> Iterator[AnomalyEntry]:
        """Every object by anomaly score, page after page (stop early with :func:`itertools.islice`)."""
        return _follow(lambda c: self.anomalies(page_size, c, **filters))

    def feedback(self, object_id: str, label: str, user: str | None = None) -> FeedbackResult:
        """``POST /v1/anomalies/{id}/feedback`` (write key): answer whether the object is an anomaly
        (``"anomaly"`` or ``"not_anomaly"``); the ranking moves at once. Not retried (each call is an answer)."""
        body = b.drop_none(label=label, user=user)
        data = self._request("POST", f"/v1/anomalies/{_oid(object_id)}/feedback", idempotent=False, write=True, json=body)
        return build(FeedbackResult, data.json())

    # ------------------------------------------------------------------ export
    @overload
    def export_fingerprints(self, path: None = None) -> bytes: ...
    @overload
    def export_fingerprints(self, path: str | os.PathLike) -> int: ...

    def export_fingerprints(self, path: str | os.PathLike | None = None) -> bytes | int:
        """``GET /v1/export/fingerprints``: every fingerprint of the served version as an Arrow IPC stream
        (read it with ``pyarrow.ipc.open_stream``). Without ``path``: the bytes. With ``path``: streamed to
        that file (written beside it, then renamed, so a broken transfer leaves no partial file); the size."""
        if path is None:
            return self._request("GET", "/v1/export/fingerprints", idempotent=True).content
        dest = Path(path)
        part = dest.with_name(dest.name + ".part")
        response = self._request("GET", "/v1/export/fingerprints", idempotent=True, stream=True)
        size = 0
        try:
            with open(part, "wb") as f:
                for chunk in response.iter_bytes():
                    size += f.write(chunk)
            os.replace(part, dest)
        except httpx.TransportError as exc:  # the stream broke off: not retried, the bytes so far are lost
            part.unlink(missing_ok=True)
            raise RTFConnectionError(f"GET /v1/export/fingerprints: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            response.close()
        return size


def _ingest_result(data: dict) -> IngestResult:
    objects = tuple(build(IngestedObject, o) for o in data.get("objects", ()))
    return build(IngestResult, data, objects=objects)


def _follow(fetch) -> Iterator[Any]:
    """Items of page after page: ``fetch(cursor)`` from None until a page has no ``next_cursor``."""
    cursor = None
    while True:
        page = fetch(cursor)
        yield from page.items
        cursor = page.next_cursor
        if not cursor:
            return
