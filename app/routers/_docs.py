"""OpenAPI fragments shared by routers: the light-curve request body (JSON or Avro)."""

from encoder.jsonform import _EXAMPLE

LIGHTCURVE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/LightCurveBatch"},
                "example": {"lightcurves": [_EXAMPLE]},
            },
            "avro/binary": {
                "schema": {"type": "string", "format": "binary"},
                "description": "An Avro container file of ZTF (schema 1.8-4.02, broker copies too) or LSST "
                "alert packets; alerts of one object are merged.",
            },
        },
    }
}

ERRORS = {
    401: {"description": "RTF_API_KEY is set and X-API-Key is missing or wrong"},
    404: {"description": "unknown object"},
    413: {"description": "body or batch larger than the limits"},
    415: {"description": "Content-Type is neither JSON nor Avro"},
    422: {"description": "invalid input; `detail` names the field (`loc`) and what is wrong (`msg`)"},
}


def errors(*codes: int) -> dict:
    return {c: ERRORS[c] for c in codes}
