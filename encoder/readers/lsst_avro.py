"""LSST (Rubin) Avro alert packets (schema 9.x, as sent by Rubin or redistributed by Fink).

One packet becomes one LightCurve (``survey='lsst'``), reading fields by name:

* detections: ``diaSource`` and ``prvDiaSources`` (``psfFlux`` / ``psfFluxErr``, already
  nJy; ``band`` u..y; ``midpointMjdTai`` + 2400000.5 as jd; the ~37 s TAI-UTC offset
  is ignored). ``alert_id`` = ``diaSourceId``;
* forced photometry: with ``forced=True`` (the default) ``prvDiaForcedSources`` are
  detections too (forced fluxes with errors, as PLAsTiCC light curves are), with
  ``alert_id = -diaForcedSourceId``; a diaSource wins a (time, band) tie;
* rows without finite flux, a positive error, a known band or a plausible time are
  dropped; LSST alerts carry no upper limits and none of the ZTF metadata fields
  (``meta`` is None);
* object_id: ``diaObjectId`` (else ``ssObjectId`` as ``"ss<id>"``); ra/dec from
  ``diaObject``, else from the ``diaSource``; stamps: the three cutouts (plain FITS).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from encoder.lightcurve import BAND_INDEX, BANDS, JD_RANGE, MJD_OFFSET, LightCurve

from ._common import (
    AlertFormatError,
    Source,
    clean_stamp,
    column,
    coordinates,
    int_id,
    iter_packets,
    merge_by_object,
    packet_label,
    synthetic_ids,
    write_avro,
)

__all__ = ["LSST_ALERT_SCHEMA", "iter_lsst_alerts", "lsst_packet", "lsst_packet_to_lightcurve", "read_lsst_avro", "write_lsst_avro"]

CUTOUT_FIELDS: dict[str, str] = {
    "science": "cutoutScience",
    "template": "cutoutTemplate",
    "difference": "cutoutDifference",
}


def _rows(value: object) -> list[dict[str, Any]]:
    if isinstance(value, (list, tuple)):
        return [r for r in value if isinstance(r, dict)]
    return []


def _bands(rows: list[dict[str, Any]]) -> np.ndarray:
    bands = (r.get("band") for r in rows)
    return np.array([BAND_INDEX.get(b, -1) if isinstance(b, str) else -1 for b in bands], dtype=np.int8)


def lsst_packet_to_lightcurve(record: dict[str, Any], *, forced: bool = True) -> LightCurve:
    """One LSST alert packet as a LightCurve; AlertFormatError when it is not one."""
    source = record.get("diaSource")
    if not isinstance(source, dict):
        raise AlertFormatError("not an LSST alert packet: no 'diaSource' record")
    obj = record.get("diaObject")
    if not isinstance(obj, dict):
        obj = {}
    object_id = _object_id(source, obj)

    det_rows = [source, *_rows(record.get("prvDiaSources"))]
    forced_rows = _rows(record.get("prvDiaForcedSources")) if forced else []
    rows = det_rows + forced_rows
    jd = column(rows, "midpointMjdTai") + MJD_OFFSET
    band = _bands(rows)
    flux = column(rows, "psfFlux")
    err = column(rows, "psfFluxErr")
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(jd) & (jd >= JD_RANGE[0]) & (jd <= JD_RANGE[1]) & (band >= 0)
        keep &= np.isfinite(flux) & np.isfinite(err) & (err > 0)

    alert_id = synthetic_ids(jd, np.maximum(band, 0))
    for i, r in enumerate(det_rows):
        if (c := int_id(r.get("diaSourceId"))) is not None:
            alert_id[i] = c
    if int_id(source.get("diaSourceId")) is None and int_id(record.get("diaSourceId")) is not None:
        alert_id[0] = int_id(record.get("diaSourceId"))
    for j, r in enumerate(forced_rows):
        c = int_id(r.get("diaForcedSourceId"))
        if c is not None and c > 0:
            alert_id[len(det_rows) + j] = -c

    ra, dec = coordinates(obj)
    if ra is None:
        ra, dec = coordinates(source)
    stamps = {kind: s for kind, key in CUTOUT_FIELDS.items() if (s := clean_stamp(record.get(key))) is not None}
    return LightCurve.build(
        object_id,
        "lsst",
        jd[keep],
        band[keep],
        flux=flux[keep],
        flux_err=err[keep],
        ra=ra,
        dec=dec,
        stamps=stamps or None,
        label=packet_label(record),
        alert_id=alert_id[keep],
    )


def _object_id(source: dict[str, Any], obj: dict[str, Any]) -> str:
    for row in (source, obj):
        if (oid := int_id(row.get("diaObjectId"))) is not None:
            return str(oid)
    if (sso := int_id(source.get("ssObjectId"))) is not None:
        return f"ss{sso}"
    raise AlertFormatError("LSST alert packet without a diaObjectId or ssObjectId")


def iter_lsst_alerts(source: Source, *, forced: bool = True) -> Iterator[LightCurve]:
    """One LightCurve per LSST packet of an Avro container, streaming."""
    return iter_packets(source, partial(lsst_packet_to_lightcurve, forced=forced))


def read_lsst_avro(source: Source, *, forced: bool = True) -> list[LightCurve]:
    """All LSST packets of an Avro container, merged per diaObjectId (newer packets win)."""
    return merge_by_object(iter_lsst_alerts(source, forced=forced))


# ---------------------------------------------------------------------- writing
_N = "null"
_DIA_SOURCE = {
    "type": "record",
    "name": "diaSource",
    "namespace": "lsst.v9_0",
    "fields": [
        {"name": "diaSourceId", "type": "long"},
        {"name": "diaObjectId", "type": [_N, "long"], "default": None},
        {"name": "midpointMjdTai", "type": "double"},
        {"name": "ra", "type": [_N, "double"], "default": None},
        {"name": "dec", "type": [_N, "double"], "default": None},
        {"name": "psfFlux", "type": [_N, "float"], "default": None},
        {"name": "psfFluxErr", "type": [_N, "float"], "default": None},
        {"name": "band", "type": [_N, "string"], "default": None},
    ],
}
_DIA_FORCED_SOURCE = {
    "type": "record",
    "name": "diaForcedSource",
    "namespace": "lsst.v9_0",
    "fields": [
        {"name": "diaForcedSourceId", "type": "long"},
        {"name": "diaObjectId", "type": "long"},
        {"name": "ra", "type": [_N, "double"], "default": None},
        {"name": "dec", "type": [_N, "double"], "default": None},
        {"name": "midpointMjdTai", "type": "double"},
        {"name": "psfFlux", "type": [_N, "float"], "default": None},
        {"name": "psfFluxErr", "type": [_N, "float"], "default": None},
        {"name": "band", "type": [_N, "string"], "default": None},
    ],
}
_DIA_OBJECT = {
    "type": "record",
    "name": "diaObject",
    "namespace": "lsst.v9_0",
    "fields": [
        {"name": "diaObjectId", "type": "long"},
        {"name": "ra", "type": [_N, "double"], "default": None},
        {"name": "dec", "type": [_N, "double"], "default": None},
    ],
}
#: A minimal subset of the LSST v9.0 alert schema (what the reader uses).
LSST_ALERT_SCHEMA: dict = {
    "type": "record",
    "name": "alert",
    "namespace": "lsst.v9_0",
    "fields": [
        {"name": "diaSourceId", "type": "long"},
        {"name": "diaSource", "type": _DIA_SOURCE},
        {"name": "prvDiaSources", "type": [_N, {"type": "array", "items": "lsst.v9_0.diaSource"}], "default": None},
        {"name": "prvDiaForcedSources", "type": [_N, {"type": "array", "items": _DIA_FORCED_SOURCE}], "default": None},
        {"name": "diaObject", "type": [_N, _DIA_OBJECT], "default": None},
        {"name": "cutoutDifference", "type": [_N, "bytes"], "default": None},
        {"name": "cutoutScience", "type": [_N, "bytes"], "default": None},
        {"name": "cutoutTemplate", "type": [_N, "bytes"], "default": None},
    ],
}


def lsst_packet(lc: LightCurve) -> dict[str, Any]:
    if lc.survey != "lsst":
        raise ValueError(f"{lc.object_id}: only LSST light curves can be written as LSST alerts")
    try:
        object_id = int(lc.object_id)
    except ValueError:
        raise ValueError(f"{lc.object_id!r}: an LSST diaObjectId must be an integer") from None
    ids = lc.alert_id if lc.alert_id is not None else np.arange(1, len(lc) + 1, dtype=np.int64)
    mjd = (lc.time - MJD_OFFSET).tolist()
    flux, err, ids_l = lc.flux.tolist(), lc.flux_err.tolist(), ids.tolist()
    bands = [BANDS[b] for b in lc.band]
    sources, forced_sources = [], []
    for i in range(len(lc)):
        row = {
            "midpointMjdTai": mjd[i],
            "ra": lc.ra,
            "dec": lc.dec,
            "psfFlux": flux[i],
            "psfFluxErr": err[i],
            "band": bands[i],
        }
        if ids_l[i] < 0 and i < len(lc) - 1:
            forced_sources.append(row | {"diaForcedSourceId": -ids_l[i], "diaObjectId": object_id})
        else:
            sources.append(row | {"diaSourceId": ids_l[i], "diaObjectId": object_id})
    last = sources.pop()
    packet: dict[str, Any] = {
        "diaSourceId": last["diaSourceId"],
        "diaSource": last,
        "prvDiaSources": sources,
        "prvDiaForcedSources": forced_sources,
        "diaObject": {"diaObjectId": object_id, "ra": lc.ra, "dec": lc.dec},
    }
    for kind, key in CUTOUT_FIELDS.items():
        packet[key] = (lc.stamps or {}).get(kind)
    return packet


def write_lsst_avro(lcs: Iterable[LightCurve], dest: str | Path | BinaryIO, *, codec: str = "null") -> int:
    """Write one LSST-schema (subset) packet per light curve: the last detection as
    ``diaSource``, earlier ones as ``prvDiaSources`` (negative ``alert_id``: as
    ``prvDiaForcedSources``). Upper limits are not written (LSST alerts have none)."""
    count = 0

    def packets() -> Iterator[dict[str, Any]]:
        nonlocal count
        for lc in lcs:
            yield lsst_packet(lc)
            count += 1

    write_avro(dest, LSST_ALERT_SCHEMA, packets(), codec=codec)
    return count
