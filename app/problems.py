"""One error format for every 4xx/5xx: RFC 9457 ``application/problem+json``.

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "body.lightcurves.0.detections.1.mag_err: Input should be greater than 0",
     "instance": "/v1/fingerprints",
     "errors": [{"loc": ["body", "lightcurves", 0, "detections", 1, "mag_err"], "msg": "...", "type": "..."}]}

``type`` is ``about:blank`` (the status says it all, RFC 9457 §4.2.1), so ``title`` is the HTTP
status phrase; ``detail`` is the human sentence; ``errors`` (validation only) keeps each field path.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

PROBLEM_JSON = "application/problem+json"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    """The response for one problem; ``extra`` members go beside the standard ones (RFC 9457 §3.2)."""
    body: dict[str, Any] = {"type": "about:blank", "title": _phrase(status), "status": status, "detail": detail}
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return ProblemResponse(body | extra, status_code=status, headers=headers)


def validation_problem(errors: list[dict], instance: str | None = None) -> ProblemResponse:
    """422 for field errors, each ``{"loc": [...], "msg": ..., "type": ...}``; ``detail`` names the first three."""
    shown = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return problem(422, shown + more, instance=instance, errors=errors)


def field_errors(exc: RequestValidationError) -> list[dict]:
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "value_error")}
        for e in exc.errors()
    ]


async def http_exception(request: Request, exc: HTTPException) -> ProblemResponse:
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
    return problem(exc.status_code, detail, instance=request.url.path, headers=getattr(exc, "headers", None))


async def request_validation(request: Request, exc: RequestValidationError) -> ProblemResponse:
    return validation_problem(field_errors(exc), instance=request.url.path)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


PROBLEM_SCHEMA = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details: the body of every 4xx/5xx answer (`application/problem+json`).",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "`about:blank`: the status code is the problem type"},
        "title": {"type": "string", "description": "the HTTP status phrase", "examples": ["Not Found"]},
        "status": {"type": "integer", "examples": [404]},
        "detail": {
            "type": "string",
            "description": "what was wrong and where",
            "examples": ["unknown object 'ZTF00nonexistent'"],
        },
        "instance": {"type": "string", "description": "the request path", "examples": ["/v1/objects/ZTF00nonexistent"]},
        "errors": {
            "type": "array",
            "description": "422 only: one entry per invalid field, `loc` being its path in the request",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        "examples": [["body", "lightcurves", 0, "detections", 1, "mag_err"]],
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
