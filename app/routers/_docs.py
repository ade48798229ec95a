"""OpenAPI fragments shared by routers: the light-curve request body (JSON or Avro)."""

from app.jsonform import EXAMPLE

LIGHTCURVE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/LightCurveBatch"},
                "example": {"lightcurves": [EXAMPLE]},
            },
            "avro/binary": {
                "schema": {"type": "string", "format": "binary"},
                "description": "An Avro container file of ZTF (schema 1.8-4.02, broker copies too) or LSST "
                "alert packets; alerts of one object are merged.",
            },
        },
    }
}

ERRORS = {  # every 4xx/5xx body is a Problem (app.problems): main.openapi() attaches its schema
    401: {"description": "RTF_API_KEY is set and X-API-Key is missing or wrong"},
    404: {"description": "unknown object"},
    409: {"description": "the request conflicts with the catalogue's state (see `detail`)"},
    413: {"description": "body or batch larger than the limits"},
    415: {"description": "Content-Type is neither JSON nor Avro"},
    422: {"description": "invalid input: `errors` names each field (`loc`) and what is wrong with it (`msg`)"},
    503: {"description": "the catalogue is still loading, or the database does not answer"},
}
# Answers any route may give, listed once in the API description rather than on every operation
COMMON = {
    408: "the body did not arrive within RTF_BODY_TIMEOUT seconds",
    413: "the body is larger than RTF_MAX_BODY_BYTES",
    429: "more than RTF_RATE_LIMIT requests a second from one client (`Retry-After` says when to retry)",
    500: "a bug: the server log has the traceback",
}

TAGS = [
    {"name": "encode", "description": "Fingerprints and class probabilities of posted light curves; nothing is stored."},
    {"name": "ingest", "description": "Store alerts (JSON or Avro packets): each object is re-encoded on its whole "
     "history and its fingerprint replaces the old one in the index."},
    {"name": "objects", "description": "The catalogue: list, cone search, detail, nearest neighbours (cosine over "
     "fingerprints, with filters), plots, deletion."},
    {"name": "anomalies", "description": "Objects ranked by an anomaly score relative to the catalogue (a "
     "percentile), paged with a stable cursor; experts' answers re-rank it."},
    {"name": "export", "description": "Bulk download of every fingerprint (Arrow IPC stream)."},
    {"name": "service", "description": "Model versions, health, readiness and Prometheus metrics."},
]


def errors(*codes: int) -> dict:
    return {c: ERRORS[c] for c in codes}
