"""ZTF Avro alert packets: read every schema version (2018 commissioning to 4.02, and
broker-redistributed packets with extra columns), and write ZTF-schema packets.

Fields are read by name, never by schema name or version. One packet becomes one
:class:`~encoder.lightcurve.LightCurve`:

* detections: ``candidate`` plus the ``prv_candidates`` rows that have a ``magpsf``
  (de-duplicated on (jd, band), the candidate winning); ``isdiffpos`` 'f', '0', '-1'
  marks a negative difference flux. A row with a magnitude outside [-5, 40], or a
  non-finite / non-positive / > 10 mag ``sigmapsf``, an unknown ``fid`` or a jd outside
  1990-2100 is dropped (a real stream must not fail on one bad history row);
* upper limits: ``prv_candidates`` rows without ``magpsf`` (non-detections), at their
  ``diffmaglim``; rows without a usable limit are dropped;
* metadata: the 30 :data:`~encoder.lightcurve.META_FIELDS` per detection, with None and
  -999 as NaN (history rows lack the PS1 fields, as in the ZTF schema);
* ``alert_id``: ``candid``; rows without one get a stable negative id from (jd, band);
* stamps: the three cutouts' ``stampData`` (gzipped FITS) when they gunzip to FITS;
  a missing or corrupt stamp is no stamp;
* ra/dec from the candidate; ``label`` from a broker's TNS column (Fink ``tns``) if any.

**Forced photometry.** Some packets carry forced photometry: the v3.5 test packets put
forced-photometry rows (``forcediffimflux``, no ``magpsf``) in ``prv_candidates``, and
ZTF 4.x adds ``fp_hists``. By default (``forced_photometry=False``) such rows are treated
like any non-detection row, i.e. as upper limits at their ``diffmaglim``, and
``fp_hists`` is ignored: the light curve then has the same meaning as one built from
plain alert packets (what the encoder is trained on). With ``forced_photometry=True``,
rows with a valid forced flux (``procstatus`` 0, flux not -99999) become flux detections
in nJy (``forcediffimflux * 10 ** (-0.4 * (magzpsci - 31.4))``) with negative synthetic
``alert_id`` s, and ``fp_hists`` is read the same way; alert detections win (jd, band)
ties.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from encoder.lightcurve import (
    BAND_INDEX,
    JD_RANGE,
    MAG_RANGE,
    META_FIELDS,
    NJY_ZERO_POINT,
    ZTF_FID,
    LightCurve,
    mag_to_njy,
    magerr_to_njy,
)

from ._common import (
    AlertFormatError,
    Source,
    clean_stamp,
    column,
    coordinates,
    int_id,
    iter_packets,
    merge_by_object,
    meta_matrix,
    packet_label,
    synthetic_ids,
    valid_limit,
    write_avro,
)

__all__ = [
    "ZTF_ALERT_SCHEMA",
    "iter_ztf_alerts",
    "read_ztf_avro",
    "write_ztf_avro",
    "ztf_packet_to_lightcurve",
]

CUTOUT_FIELDS: dict[str, str] = {
    "science": "cutoutScience",
    "template": "cutoutTemplate",
    "difference": "cutoutDifference",
}
#: isdiffpos values that mean a negative difference flux (ZTF 'f'/'0', ALeRCE '-1').
NEGATIVE_ISDIFFPOS = frozenset({"f", "0", "-1", "-1.0", "false", "n"})
FORCED_FLUX_MISSING = -99999.0

# fid -> band index lookup (-1: unknown filter)
_FID_LOOKUP = np.full(8, -1, dtype=np.int8)
for _fid, _name in ZTF_FID.items():
    _FID_LOOKUP[_fid] = BAND_INDEX[_name]
_BAND_TO_FID = {BAND_INDEX[name]: fid for fid, name in ZTF_FID.items()}


# ---------------------------------------------------------------------- reading
def fid_to_band(fid: np.ndarray) -> np.ndarray:
    """ZTF filter ids to band indices; -1 where the fid is not 1, 2 or 3."""
    fid = np.asarray(fid, dtype=np.float64)
    ok = np.isfinite(fid) & (fid >= 0) & (fid < len(_FID_LOOKUP))
    out = np.full(len(fid), -1, dtype=np.int8)
    out[ok] = _FID_LOOKUP[fid[ok].astype(np.int64)]
    return out


def negative_flags(values: Iterable[object]) -> np.ndarray:
    """True where ``isdiffpos`` marks a negative difference ('f', '0', '-1')."""
    return np.array([v is not None and str(v).strip().lower() in NEGATIVE_ISDIFFPOS for v in values], dtype=bool)


def _forced_flux(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    flux = column(rows, "forcediffimflux")
    unc = column(rows, "forcediffimfluxunc")
    zp = column(rows, "magzpsci")
    status = [r.get("procstatus") for r in rows]
    ok_status = np.array([s is None or str(s).strip() in ("0", "") for s in status], dtype=bool)
    scale = np.power(10.0, -0.4 * (zp - NJY_ZERO_POINT))
    with np.errstate(invalid="ignore"):
        ok = ok_status & np.isfinite(flux) & (flux != FORCED_FLUX_MISSING) & np.isfinite(unc) & (unc > 0)
        ok &= np.isfinite(scale)
    return np.where(ok, flux * scale, np.nan), np.where(ok, unc * scale, np.nan)


def ztf_packet_to_lightcurve(record: dict[str, Any], *, forced_photometry: bool = False) -> LightCurve:
    """One ZTF alert packet (a decoded Avro record or a Fink parquet row) as a LightCurve.

    Raises :class:`AlertFormatError` when the record is not a ZTF alert, and
    :class:`~encoder.lightcurve.LightCurveError` when it holds no usable detection.
    """
    cand = record.get("candidate")
    if not isinstance(cand, dict):
        raise AlertFormatError("not a ZTF alert packet: no 'candidate' record")
    object_id = record.get("objectId")
    if not isinstance(object_id, str) or not object_id:
        raise AlertFormatError("ZTF alert packet without an 'objectId' string")
    prv = record.get("prv_candidates")
    rows: list[dict[str, Any]] = [cand]
    if isinstance(prv, (list, tuple)):
        rows.extend(r for r in prv if isinstance(r, dict))
    if forced_photometry:
        fp = record.get("fp_hists")
        if isinstance(fp, (list, tuple)):
            rows.extend(r for r in fp if isinstance(r, dict))

    jd = column(rows, "jd")
    band = fid_to_band(column(rows, "fid"))
    mag = column(rows, "magpsf")
    sig = column(rows, "sigmapsf")
    with np.errstate(invalid="ignore"):
        ok_time = np.isfinite(jd) & (jd >= JD_RANGE[0]) & (jd <= JD_RANGE[1]) & (band >= 0)
        has_mag = np.isfinite(mag)
        det = ok_time & has_mag & (mag >= MAG_RANGE[0]) & (mag <= MAG_RANGE[1])
        det &= np.isfinite(sig) & (sig > 0) & (sig <= 10.0)
    neg = negative_flags(r.get("isdiffpos") for r in rows)
    with np.errstate(over="ignore", invalid="ignore"):  # rows out of range are dropped anyway
        flux = np.where(neg, -1.0, 1.0) * mag_to_njy(mag)
        flux_err = magerr_to_njy(mag, sig)

    forced = np.zeros(len(rows), dtype=bool)
    if forced_photometry:
        f_flux, f_err = _forced_flux(rows)
        forced = ok_time & ~has_mag & np.isfinite(f_flux)
        flux = np.where(forced, f_flux, flux)
        flux_err = np.where(forced, f_err, flux_err)
    keep = det | forced

    limit = column(rows, "diffmaglim")
    ul = ok_time & ~has_mag & ~forced & valid_limit(limit)

    candids = [int_id(r.get("candid")) for r in rows]
    if candids[0] is None:
        candids[0] = int_id(record.get("candid"))
    alert_id = synthetic_ids(jd, np.maximum(band, 0))
    for i, c in enumerate(candids):
        if c is not None:
            alert_id[i] = c

    sel = np.flatnonzero(keep)
    meta = meta_matrix([rows[i] for i in sel], META_FIELDS) if len(sel) else None
    ra, dec = coordinates(cand)
    stamps = {kind: s for kind, key in CUTOUT_FIELDS.items() if (s := clean_stamp(record.get(key))) is not None}
    return LightCurve.build(
        object_id,
        "ztf",
        jd[sel],
        band[sel],
        flux=flux[sel],
        flux_err=flux_err[sel],
        meta=meta,
        ul_time=jd[ul],
        ul_band=band[ul],
        ul_mag=limit[ul],
        ra=ra,
        dec=dec,
        stamps=stamps or None,
        label=packet_label(record),
        alert_id=alert_id[sel],
    )


def iter_ztf_alerts(source: Source, *, forced_photometry: bool = False) -> Iterator[LightCurve]:
    """One LightCurve per ZTF packet of an Avro container (path, bytes or binary file), streaming."""
    return iter_packets(source, partial(ztf_packet_to_lightcurve, forced_photometry=forced_photometry))


def read_ztf_avro(source: Source, *, forced_photometry: bool = False) -> list[LightCurve]:
    """All ZTF packets of an Avro container, merged per objectId (newer packets win)."""
    return merge_by_object(iter_ztf_alerts(source, forced_photometry=forced_photometry))


# ---------------------------------------------------------------------- writing
def _nullable(t: str) -> list[str]:
    return ["null", t]


# Field types as in the ZTF 4.02 schema (ZTF: nmtchps/ndethist/ncovhist are plain ints in
# the candidate, -999 when unknown; scorr is a double; the rest floats).
_META_TYPES: dict[str, str] = {f: "float" for f in META_FIELDS} | {
    "nmtchps": "int",
    "ndethist": "int",
    "ncovhist": "int",
    "scorr": "double",
}
_CANDIDATE_REQUIRED_INTS = ("nmtchps", "ndethist", "ncovhist")
_OTHER_META = tuple(f for f in META_FIELDS if f not in ("sigmapsf", "diffmaglim"))


def _candidate_schema() -> dict:
    fields: list[dict] = [
        {"name": "jd", "type": "double"},
        {"name": "fid", "type": "int"},
        {"name": "diffmaglim", "type": _nullable("float"), "default": None},
        {"name": "candid", "type": "long"},
        {"name": "isdiffpos", "type": "string"},
        # ZTF has ra/dec non-null; nullable here so light curves without coordinates can be written
        {"name": "ra", "type": _nullable("double"), "default": None},
        {"name": "dec", "type": _nullable("double"), "default": None},
        {"name": "magpsf", "type": "float"},
        {"name": "sigmapsf", "type": "float"},
    ]
    for f in _OTHER_META:
        if f in _CANDIDATE_REQUIRED_INTS:
            fields.append({"name": f, "type": "int"})
        else:
            fields.append({"name": f, "type": _nullable(_META_TYPES[f]), "default": None})
    return {"type": "record", "name": "candidate", "namespace": "ztf.alert", "fields": fields}


def _prv_candidate_schema() -> dict:
    fields: list[dict] = [
        {"name": "jd", "type": "double"},
        {"name": "fid", "type": "int"},
        {"name": "diffmaglim", "type": _nullable("float"), "default": None},
        {"name": "candid", "type": _nullable("long"), "default": None},
        {"name": "isdiffpos", "type": _nullable("string"), "default": None},
        {"name": "ra", "type": _nullable("double"), "default": None},
        {"name": "dec", "type": _nullable("double"), "default": None},
        {"name": "magpsf", "type": _nullable("float"), "default": None},
        {"name": "sigmapsf", "type": _nullable("float"), "default": None},
    ]
    # ZTF's prv_candidate lacks the PS1 / star-galaxy fields; they are kept here (nullable)
    # so that a written history round-trips its metadata.
    fields += [{"name": f, "type": _nullable(_META_TYPES[f]), "default": None} for f in _OTHER_META]
    return {"type": "record", "name": "prv_candidate", "namespace": "ztf.alert", "fields": fields}


_CUTOUT = {
    "type": "record",
    "name": "cutout",
    "namespace": "ztf.alert",
    "fields": [{"name": "fileName", "type": "string"}, {"name": "stampData", "type": "bytes"}],
}

#: A faithful subset of the ZTF 4.02 alert schema: the fields the readers use.
ZTF_ALERT_SCHEMA: dict = {
    "type": "record",
    "name": "alert",
    "namespace": "ztf",
    "doc": "avro alert schema for ZTF (subset written by RTF)",
    "fields": [
        {"name": "schemavsn", "type": "string"},
        {"name": "publisher", "type": "string"},
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"},
        {"name": "candidate", "type": _candidate_schema()},
        {
            "name": "prv_candidates",
            "type": ["null", {"type": "array", "items": _prv_candidate_schema()}],
            "default": None,
        },
        {"name": "cutoutScience", "type": ["null", _CUTOUT], "default": None},
        {"name": "cutoutTemplate", "type": ["null", "ztf.alert.cutout"], "default": None},
        {"name": "cutoutDifference", "type": ["null", "ztf.alert.cutout"], "default": None},
    ],
}
SCHEMA_VERSION = "4.02"
PUBLISHER = "RTF"


def _f(v: float) -> float | None:
    return None if v != v else float(v)  # NaN -> null


def _packet(lc: LightCurve, history: bool) -> dict[str, Any]:
    if lc.survey != "ztf":
        raise ValueError(f"{lc.object_id}: only ZTF light curves can be written as ZTF alerts (survey {lc.survey!r})")
    n = len(lc)
    if np.any(lc.flux == 0):
        raise ValueError(f"{lc.object_id}: a zero difference flux has no ZTF magnitude")
    absflux = np.abs(lc.flux)
    mag = (NJY_ZERO_POINT - 2.5 * np.log10(absflux)).tolist()
    magerr = (2.5 / np.log(10.0) * lc.flux_err / absflux).tolist()
    neg = (lc.flux < 0).tolist()
    fid = [_BAND_TO_FID[int(b)] for b in lc.band]
    jd = lc.time.tolist()
    ids = lc.alert_id if lc.alert_id is not None else synthetic_ids(lc.time, lc.band)
    ids = ids.tolist()
    meta = lc.meta.astype(np.float64).tolist() if lc.meta is not None else [[np.nan] * len(META_FIELDS)] * n
    mi = {f: j for j, f in enumerate(META_FIELDS)}

    def row(i: int, candidate: bool) -> dict[str, Any]:
        m = meta[i]
        r: dict[str, Any] = {
            "jd": jd[i],
            "fid": fid[i],
            "diffmaglim": _f(m[mi["diffmaglim"]]),
            "candid": ids[i],
            "isdiffpos": "f" if neg[i] else "t",
            "ra": lc.ra,
            "dec": lc.dec,
            "magpsf": mag[i],
            "sigmapsf": magerr[i],
        }
        for f in _OTHER_META:
            v = _f(m[mi[f]])
            if candidate and f in _CANDIDATE_REQUIRED_INTS:
                v = -999 if v is None else v
            if v is not None and _META_TYPES[f] == "int":
                v = int(round(v))
            r[f] = v
        return r

    last = n - 1
    prv = None
    if history:
        prv = [row(i, False) for i in range(last)]
        prv += [
            {"jd": float(t), "fid": _BAND_TO_FID[int(b)], "diffmaglim": float(m)}
            for t, b, m in zip(lc.ul_time, lc.ul_band, lc.ul_mag, strict=True)
        ]
        prv.sort(key=lambda r: r["jd"])
    candid = ids[last]
    packet: dict[str, Any] = {
        "schemavsn": SCHEMA_VERSION,
        "publisher": PUBLISHER,
        "objectId": lc.object_id,
        "candid": candid,
        "candidate": row(last, True),
        "prv_candidates": prv,
    }
    for kind, key in CUTOUT_FIELDS.items():
        data = (lc.stamps or {}).get(kind)
        packet[key] = None if data is None else {"fileName": f"candid{candid}_{kind}.fits.gz", "stampData": data}
    return packet


def write_ztf_avro(
    lcs: Iterable[LightCurve], dest: str | Path | BinaryIO, *, history: bool = True, codec: str = "null"
) -> int:
    """Write one ZTF-schema alert packet per light curve; returns the number written.

    The last detection is the ``candidate``; with ``history``, earlier detections and
    all upper limits are ``prv_candidates`` (without, a packet holds only the candidate).
    Stamps become the cutouts. Only ZTF light curves (bands g, r, i) can be written.
    """
    count = 0

    def packets() -> Iterator[dict[str, Any]]:
        nonlocal count
        for lc in lcs:
            yield _packet(lc, history)
            count += 1

    write_avro(dest, ZTF_ALERT_SCHEMA, packets(), codec=codec)
    return count
