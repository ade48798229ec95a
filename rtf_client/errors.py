"""Exceptions raised by :class:`rtf_client.RTFClient`.

The service answers errors as RFC 9457 ``application/problem+json``::

    {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "unknown object 'x'",
     "instance": "/v1/objects/x", "errors": [{"loc": [...], "msg": "...", "type": "..."}]}

Older servers answer ``{"detail": "text"}`` or, for validation errors, ``{"detail": [{"loc", "msg", "type"}]}``;
:meth:`RTFError.from_response` reads all three (and bodies that are not JSON at all, e.g. from a proxy).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from time import time
from typing import Any

import httpx

__all__ = [
    "Conflict",
    "FieldError",
    "NotFound",
    "RTFConnectionError",
    "RTFError",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "ValidationFailed",
]


@dataclass(frozen=True)
class FieldError:
    """One problem of a 422: where (``loc``, e.g. ``("body", "lightcurves", 0, "detections")``) and what."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def __str__(self) -> str:
        return f"{'.'.join(map(str, self.loc))}: {self.msg}" if self.loc else self.msg


class RTFError(Exception):
    """An error answer (4xx/5xx) of the service. ``status`` is the HTTP status, ``detail`` the human text,
    ``errors`` the field errors of a 422 (empty otherwise), ``response`` the :class:`httpx.Response`,
    ``attempts`` how many times the request was sent (more than 1 after retries)."""

    attempts: int = 1

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: tuple[FieldError, ...] = (),
        response: httpx.Response | None = None,
        *,
        type: str = "about:blank",
        instance: str | None = None,
    ) -> None:
        self.status, self.title, self.detail, self.errors = status, title, detail, tuple(errors)
        self.response, self.type, self.instance = response, type, instance
        super().__init__(f"{status} {title}: {detail}" if detail and detail != title else f"{status} {title}")

    @classmethod
    def from_response(cls, response: httpx.Response) -> RTFError:
        """The exception of the subclass for ``response.status_code``, with the body's fields."""
        status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:  # not JSON (a proxy's HTML page, an empty body)
            body = None
        title = _phrase(status)
        detail, kind, instance = "", "about:blank", None
        errors: tuple[FieldError, ...] = ()
        if isinstance(body, dict):
            title = str(body.get("title") or title)
            kind = str(body.get("type") or kind)
            instance = body.get("instance")
            raw = body.get("detail")
            if isinstance(body.get("errors"), list):
                errors = _field_errors(body["errors"])
            if isinstance(raw, list):  # the pre-RFC 9457 form of a 422: the field errors are the detail
                errors = errors or _field_errors(raw)
                detail = "; ".join(map(str, errors))
            elif raw is not None:
                detail = str(raw)
        elif body is None:
            detail = response.text[:500].strip()
        else:
            detail = str(body)[:500]
        sub = _BY_STATUS.get(status, RTFError)
        err = sub(status, title, detail or title, errors, response, type=kind, instance=instance)
        if isinstance(err, RateLimited | ServiceUnavailable):
            err.retry_after = retry_after_seconds(response)
        return err


class Unauthorized(RTFError):
    """401: the route needs X-API-Key (``RTF_API_KEY``, or ``RTF_READ_API_KEY`` for expensive reads)."""


class NotFound(RTFError):
    """404: unknown object or model version."""


class Conflict(RTFError):
    """409: e.g. activating a model version whose fingerprints are incomplete."""


class ValidationFailed(RTFError):
    """422: the input is invalid; ``errors`` names each field (``loc``) and what is wrong (``msg``)."""


class RateLimited(RTFError):
    """429: more requests than ``RTF_RATE_LIMIT`` allows; ``retry_after`` is the server's Retry-After (s)."""

    retry_after: float | None = None


class ServiceUnavailable(RTFError):
    """503: the service is starting (catalogue loading) or its database or model is unavailable."""

    retry_after: float | None = None


class RTFConnectionError(RTFError):
    """No answer: the connection failed or timed out (``status`` 0; the httpx error is ``__cause__``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, "connection failed", detail)


_BY_STATUS: dict[int, type[RTFError]] = {
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _field_errors(items: list) -> tuple[FieldError, ...]:
    out = []
    for e in items:
        if isinstance(e, dict):
            loc = e.get("loc") or ()
            loc = tuple(loc) if isinstance(loc, list | tuple) else (str(loc),)
            out.append(FieldError(loc, str(e.get("msg", "")), str(e.get("type", "value_error"))))
        else:
            out.append(FieldError((), str(e)))
    return tuple(out)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110 §10.2.3); None if absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None
