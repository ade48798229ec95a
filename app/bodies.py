"""The light curves of a request body (JSON or Avro alert packets), as a plain function.

No FastAPI here: :func:`parse_body` also runs in the decoding worker processes of
:mod:`app.offload`, so it raises :class:`BodyError` (picklable: status and detail) rather
than HTTP exceptions, and imports only the readers and the request schema.
"""

from __future__ import annotations

from pydantic import ValidationError

from app.schemas import LightCurveBatch
from encoder.lightcurve import LightCurve, LightCurveError
from encoder.readers import AlertFormatError, AvroLimitError, AvroLimits, read_alert_avro

AVRO_TYPES = frozenset({"avro/binary", "application/avro", "application/vnd.apache.avro", "application/octet-stream"})
JSON_TYPES = frozenset({"application/json", ""})
#: The largest block of an Avro body once inflated: one alert packet is at most this big (a ZTF
#: packet with stamps is ~70 KB; writers flush blocks every 16-64 KB), and it bounds the memory of
#: decoding one packet (the decoded records are ~30x their bytes).
MAX_AVRO_BLOCK_BYTES = 4 << 20


class BodyError(Exception):
    """A body that cannot be read: ``status`` (413, 415, 422) and ``detail`` (a message, or a
    list of ``{"loc", "msg", "type"}`` like FastAPI's validation errors)."""

    def __init__(self, status: int, detail: str | list[dict]):
        super().__init__(status, detail)
        self.status, self.detail = status, detail


def lightcurve_error_detail(exc: LightCurveError, prefix: tuple = ("body",)) -> list[dict]:
    """A LightCurveError as a validation error list (``detections[3].mag`` -> loc [..., 3, "mag"])."""
    parts = exc.field.replace("[", ".").replace("]", "").split(".")
    loc = [*prefix, *[int(p) if p.isdigit() else p for p in parts]]
    return [{"type": "value_error", "loc": loc, "msg": exc.message}]


def parse_body(ctype: str, body: bytes, max_batch: int, max_inflated_bytes: int) -> list[LightCurve]:
    """The light curves of a body: JSON ``{"lightcurves": [...]}`` or an Avro container of ZTF /
    LSST alert packets. The batch limit counts packets while they are read, so an over-long Avro
    body is refused after its block headers, not after decoding every packet."""
    if ctype in AVRO_TYPES:
        limits = AvroLimits(
            max_records=max_batch, max_block_bytes=MAX_AVRO_BLOCK_BYTES, max_inflated_bytes=max_inflated_bytes
        )
        try:
            lcs = read_alert_avro(body, limits)
        except AvroLimitError as exc:
            raise BodyError(413, f"body: {exc}") from None
        except AlertFormatError as exc:
            raise BodyError(422, f"body: not readable as Avro alert packets: {exc}") from None
        except LightCurveError as exc:
            raise BodyError(422, lightcurve_error_detail(exc)) from None
    elif ctype in JSON_TYPES:
        try:
            batch = LightCurveBatch.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            raise BodyError(
                422, [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]} for e in errors]
            ) from None
        lcs = []
        for i, item in enumerate(batch.lightcurves):
            try:
                lcs.append(item.to_lightcurve())
            except LightCurveError as exc:
                raise BodyError(422, lightcurve_error_detail(exc, ("body", "lightcurves", i))) from None
    else:
        raise BodyError(415, f"unsupported Content-Type {ctype!r}: send application/json or avro/binary")
    if not lcs:
        raise BodyError(422, "body: no light curves")
    if len(lcs) > max_batch:
        raise BodyError(413, f"{len(lcs)} light curves in one request; at most {max_batch}")
    return lcs
