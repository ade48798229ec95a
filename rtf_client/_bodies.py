"""Request bodies and query parameters, from what callers hand the client."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol, TypedDict

from .models import Fingerprint, ObjectDetail

if TYPE_CHECKING:
    from typing_extensions import TypeIs  # typing.TypeIs from Python 3.13; a name in annotations only

#: A light curve: a dict in the service's JSON form (``object_id`` and ``detections`` required, see
#: docs/client.md), an :class:`ObjectDetail` (its stored light curve), or a pydantic model such as
#: ``app.jsonform.LightCurveIn`` (anything with ``model_dump``).


class SupportsModelDump(Protocol):
    """A pydantic model (the client checks for ``model_dump`` with ``hasattr``; pydantic is not needed)."""

    def model_dump(self, *, mode: str = ..., exclude_none: bool = ...) -> dict[str, Any]: ...


LightCurveLike = Mapping[str, Any] | ObjectDetail | SupportsModelDump
#: Avro alert packets: the bytes of an Avro container file, a path to one, or a binary file object.
AvroSource = bytes | bytearray | memoryview | str | os.PathLike | IO[bytes]
AVRO = "avro/binary"


def lightcurve_json(lc: LightCurveLike) -> dict:
    """One light curve as the JSON object the service takes."""
    if isinstance(lc, ObjectDetail):
        return dict(lc.lightcurve)
    if isinstance(lc, Mapping):
        return dict(lc)
    dump = getattr(lc, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    raise TypeError(f"a light curve is a dict in the JSON form (or an ObjectDetail), not {type(lc).__name__}")


def lightcurves_body(lightcurves: LightCurveLike | Iterable[LightCurveLike]) -> dict:
    """``{"lightcurves": [...]}`` of one light curve, a list of them, or an already made batch body."""
    items: LightCurveLike | Iterable[LightCurveLike] = lightcurves
    if isinstance(lightcurves, Mapping) and "lightcurves" in lightcurves and "detections" not in lightcurves:
        items = lightcurves["lightcurves"]
    batch = [items] if _one_lightcurve(items) else items
    return {"lightcurves": [lightcurve_json(lc) for lc in batch]}


def _one_lightcurve(lightcurves: LightCurveLike | Iterable[LightCurveLike]) -> TypeIs[LightCurveLike]:
    return isinstance(lightcurves, Mapping | ObjectDetail) or hasattr(lightcurves, "model_dump")


def avro_bytes(source: AvroSource) -> bytes:
    """The bytes of an Avro container: given as bytes, a path, or an open binary file."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            return f.read()
    if hasattr(source, "read"):
        return source.read()
    raise TypeError(f"Avro alerts are bytes, a path or a binary file, not {type(source).__name__}")


def search_query(query: Any) -> dict:
    """The ``lightcurve`` or ``vector`` member of a ``POST /v1/search`` body."""
    if isinstance(query, Fingerprint):
        return {"vector": list(query.vector)}
    if isinstance(query, Mapping | ObjectDetail) or hasattr(query, "model_dump"):
        return {"lightcurve": lightcurve_json(query)}
    if isinstance(query, str | bytes):
        raise TypeError("search takes a light curve (dict) or a fingerprint vector; for an object id use neighbors()")
    return {"vector": [float(x) for x in query]}  # a list, tuple or numpy array of numbers


class Filters(TypedDict, total=False):
    """The service's filters, the same on every neighbour search and listing (``indexing/filters.py``)."""

    classes: str | Sequence[str]  # coarse or fine class names (one, or several)
    anomaly_min: float
    anomaly_max: float
    since: float  # last detection at or after, JD
    until: float  # last detection at or before, JD
    min_detections: int


def filters(given: Filters) -> dict[str, Any]:
    """The filters that are set, as a body wants them (``classes`` a list)."""
    out: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if isinstance(out.get("classes"), str):
        out["classes"] = [out["classes"]]
    elif "classes" in out:
        out["classes"] = list(out["classes"])
    return out


def filter_params(given: Filters) -> dict[str, Any]:
    """The filters as query parameters: ``classes`` is the repeated ``class`` (``?class=SNIa&class=AGN``)."""
    out = filters(given)
    if "classes" in out:
        out["class"] = out.pop("classes")
    return out


def drop_none(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}
