"""Parquet light-curve tables: Fink alert rows, and the project's real-data tables
(``ztf_alerts/alerts.parquet`` + ``cutouts.parquet``, ``ztf_bts_dev.parquet``,
``alerce_lc_classifier.parquet``; see ``../shared/data/README.md``).

Labels are fine classes from :func:`encoder.taxonomy.normalize_label` (None when the
catalogue label is no class we model). The per-object tables are decoded column-wise
with pyarrow (no per-field Python loops); rows with invalid photometry are dropped as in
the Avro readers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from encoder.lightcurve import JD_RANGE, MAG_RANGE, META_FIELDS, LightCurve, LightCurveError, mag_to_njy, magerr_to_njy
from encoder.taxonomy import normalize_label

from ._common import clean_stamp, merge_by_object, synthetic_ids, valid_limit, with_context
from .ztf_avro import NEGATIVE_ISDIFFPOS, fid_to_band, ztf_packet_to_lightcurve

__all__ = [
    "read_alerce_parquet",
    "read_bts_coarse",
    "read_bts_parquet",
    "read_fink_parquet",
    "read_ztf_alerts_parquet",
]

_STAMP_COLUMNS = {"science": "cutout_science", "template": "cutout_template", "difference": "cutout_difference"}


# ---------------------------------------------------------------------- Fink rows
def read_fink_parquet(path: str | Path, *, forced_photometry: bool = False) -> list[LightCurve]:
    """Fink-style parquet rows (``objectId``, ``candidate`` struct, ``prv_candidates`` list,
    cutout structs, ...) through the ZTF packet conversion; merged per objectId."""
    table = pq.read_table(path)
    lcs = []
    for batch in table.to_batches(max_chunksize=256):
        for row in batch.to_pylist():
            try:
                lcs.append(ztf_packet_to_lightcurve(row, forced_photometry=forced_photometry))
            except LightCurveError as exc:
                raise with_context(exc, f"rows[{len(lcs)}]") from None
    return merge_by_object(lcs)


# ---------------------------------------------------------------------- helpers
def _numpy(arr: pa.Array, dtype: type = np.float64) -> np.ndarray:
    """A numeric arrow array as numpy, nulls as NaN (float)."""
    if pa.types.is_null(arr.type):
        return np.full(len(arr), np.nan)
    arr = pc.cast(arr, pa.float64()) if dtype is np.float64 else arr
    return arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _list_parts(col: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Flattened values and per-row offsets of a list column (null lists as empty)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    arr = pc.fill_null(arr, pa.scalar([], type=arr.type)) if arr.null_count else arr
    offsets = arr.offsets.to_numpy().astype(np.int64)
    flat = arr.values
    start = offsets[0]
    return flat.slice(start, offsets[-1] - start), offsets - start


def _field(struct: pa.Array, name: str) -> np.ndarray:
    if struct.type.get_field_index(name) < 0:
        return np.full(len(struct), np.nan)
    return _numpy(pc.struct_field(struct, name))


def _labels(table: pa.Table, name: str = "label") -> list[str | None]:
    if name not in table.column_names:
        return [None] * table.num_rows
    return [normalize_label(v) if isinstance(v, str) else None for v in table.column(name).to_pylist()]


# ---------------------------------------------------------------------- alerts.parquet
def read_ztf_alerts_parquet(path: str | Path, cutouts_path: str | Path | None = None) -> list[LightCurve]:
    """``ztf_alerts/alerts.parquet``: one LightCurve per object with metadata, upper limits,
    label (``normalize_label(label)``) and, given ``cutouts_path``, the latest stamps."""
    lcs = _read_alert_table(path)
    if cutouts_path is not None:
        stamps = _read_cutouts(cutouts_path)
        lcs = [_with_stamps(lc, stamps.get(lc.object_id)) for lc in lcs]
    return lcs


def read_alerce_parquet(path: str | Path) -> list[LightCurve]:
    """``alerce_lc_classifier.parquet`` (same layout as alerts.parquet; no stamps)."""
    return _read_alert_table(path)


def _read_alert_table(path: str | Path) -> list[LightCurve]:
    table = pq.read_table(path)
    object_ids = table.column("object_id").to_pylist()
    labels = _labels(table)

    flat, off = _list_parts(table.column("alerts"))
    jd = _field(flat, "jd")
    band = fid_to_band(_field(flat, "fid"))
    mag = _field(flat, "magpsf")
    sig = _field(flat, "sigmapsf")
    ra_all, dec_all = _field(flat, "ra"), _field(flat, "dec")
    candid = _candids(flat)
    if flat.type.get_field_index("isdiffpos") >= 0:
        isdiff = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(pc.struct_field(flat, "isdiffpos"), pa.string())))
        neg = pc.fill_null(pc.is_in(isdiff, value_set=pa.array(sorted(NEGATIVE_ISDIFFPOS))), False).to_numpy(
            zero_copy_only=False
        )
    else:
        neg = np.zeros(len(flat), dtype=bool)
    meta = np.column_stack([_field(flat, f) for f in META_FIELDS]).astype(np.float32)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(jd) & (jd >= JD_RANGE[0]) & (jd <= JD_RANGE[1]) & (band >= 0)
        ok &= np.isfinite(mag) & (mag >= MAG_RANGE[0]) & (mag <= MAG_RANGE[1])
        ok &= np.isfinite(sig) & (sig > 0) & (sig <= 10.0)
    flux = np.where(neg, -1.0, 1.0) * mag_to_njy(mag)
    flux_err = magerr_to_njy(mag, sig)
    alert_id = np.where(candid >= 0, candid, synthetic_ids(jd, np.maximum(band, 0)))

    if "upper_limits" in table.column_names:
        ul_flat, ul_off = _list_parts(table.column("upper_limits"))
        ul_jd, ul_band, ul_mag = (
            _field(ul_flat, "jd"),
            fid_to_band(_field(ul_flat, "fid")),
            _field(ul_flat, "diffmaglim"),
        )
        with np.errstate(invalid="ignore"):
            ul_ok = np.isfinite(ul_jd) & (ul_jd >= JD_RANGE[0]) & (ul_jd <= JD_RANGE[1]) & (ul_band >= 0)
        ul_ok &= valid_limit(ul_mag)
    else:
        ul_off = np.zeros(table.num_rows + 1, dtype=np.int64)
        ul_jd = ul_mag = np.empty(0)
        ul_band = np.empty(0, dtype=np.int8)
        ul_ok = np.empty(0, dtype=bool)

    lcs = []
    for k, oid in enumerate(object_ids):
        s = slice(off[k], off[k + 1])
        sel = np.flatnonzero(ok[s]) + off[k]
        if len(sel) == 0:
            continue  # an object without one usable detection
        u = slice(ul_off[k], ul_off[k + 1])
        um = ul_ok[u]
        ra, dec = _last_position(jd[sel], ra_all[sel], dec_all[sel])
        try:
            lcs.append(
                LightCurve.build(
                    oid,
                    "ztf",
                    jd[sel],
                    band[sel],
                    flux=flux[sel],
                    flux_err=flux_err[sel],
                    meta=meta[sel],
                    ul_time=ul_jd[u][um],
                    ul_band=ul_band[u][um],
                    ul_mag=ul_mag[u][um],
                    ra=ra,
                    dec=dec,
                    label=labels[k],
                    alert_id=alert_id[sel],
                )
            )
        except LightCurveError as exc:
            raise with_context(exc, f"objects[{k}]") from None
    return lcs


def _candids(flat: pa.Array) -> np.ndarray:
    """Candidate ids as int64 (-1 where null); exact for int64 columns."""
    if flat.type.get_field_index("candid") < 0:
        return np.full(len(flat), -1, dtype=np.int64)
    col = pc.struct_field(flat, "candid")
    if pa.types.is_integer(col.type):
        return pc.fill_null(pc.cast(col, pa.int64()), -1).to_numpy(zero_copy_only=False)
    vals = _numpy(col)
    out = np.full(len(vals), -1, dtype=np.int64)
    good = np.isfinite(vals) & (vals >= 0)
    out[good] = vals[good].astype(np.int64)
    return out


def _last_position(jd: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> tuple[float | None, float | None]:
    """The position of the newest row that has one (the latest candidate's)."""
    good = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0))
    if len(good) == 0:
        return None, None
    i = good[np.argmax(jd[good])]
    return float(ra[i] % 360.0), float(dec[i])


def _read_cutouts(path: str | Path) -> dict[str, dict[str, bytes]]:
    table = pq.read_table(path, columns=["object_id", *_STAMP_COLUMNS.values()])
    ids = table.column("object_id").to_pylist()
    cols = {kind: table.column(name).to_pylist() for kind, name in _STAMP_COLUMNS.items()}
    out: dict[str, dict[str, bytes]] = {}
    for i, oid in enumerate(ids):
        stamps = {kind: s for kind, values in cols.items() if (s := clean_stamp(values[i])) is not None}
        if stamps:
            out[oid] = stamps
    return out


def _with_stamps(lc: LightCurve, stamps: dict[str, bytes] | None) -> LightCurve:
    if not stamps:
        return lc
    return replace(lc, stamps=stamps)


# ---------------------------------------------------------------------- BTS
def read_bts_parquet(path: str | Path) -> list[LightCurve]:
    """``ztf_bts_dev.parquet``: detections only (magpsf/sigmapsf), no metadata or stamps.

    ``label`` is ``normalize_label(label)``, falling back to the BTS ``coarse`` class
    when the fine label maps to nothing; :func:`read_bts_coarse` gives ``coarse`` itself.
    """
    table = pq.read_table(path, columns=["object_id", "label", "coarse", "jd", "fid", "mag", "magerr"])
    object_ids = table.column("object_id").to_pylist()
    labels = _labels(table)
    coarse = _labels(table, "coarse")
    jd_flat, off = _list_parts(table.column("jd"))
    jd = _numpy(jd_flat)
    band = fid_to_band(_numpy(_list_parts(table.column("fid"))[0]))
    mag = _numpy(_list_parts(table.column("mag"))[0])
    err = _numpy(_list_parts(table.column("magerr"))[0])
    if not (len(jd) == len(band) == len(mag) == len(err)):
        raise ValueError(f"{path}: jd, fid, mag and magerr lists differ in length")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(jd) & (jd >= JD_RANGE[0]) & (jd <= JD_RANGE[1]) & (band >= 0)
        ok &= np.isfinite(mag) & (mag >= MAG_RANGE[0]) & (mag <= MAG_RANGE[1]) & np.isfinite(err) & (err > 0)
        ok &= err <= 10.0
    lcs = []
    for k, oid in enumerate(object_ids):
        sel = np.flatnonzero(ok[off[k] : off[k + 1]]) + off[k]
        if len(sel) == 0:
            continue
        try:
            lcs.append(
                LightCurve.build(
                    oid, "ztf", jd[sel], band[sel], mag=mag[sel], mag_err=err[sel], label=labels[k] or coarse[k]
                )
            )
        except LightCurveError as exc:
            raise with_context(exc, f"objects[{k}]") from None
    return lcs


def read_bts_coarse(path: str | Path) -> dict[str, str]:
    """The BTS ``coarse`` class per object_id (SNIa, SNII, SNIbc, SNIIn, SLSN, CV, TDE, other)."""
    table = pq.read_table(path, columns=["object_id", "coarse"])
    return {
        oid: c
        for oid, c in zip(table.column("object_id").to_pylist(), table.column("coarse").to_pylist(), strict=True)
        if c is not None
    }
