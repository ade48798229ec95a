"""PLAsTiCC-style flux tables (simulated LSST light curves) and generic flux tables.

PLAsTiCC fluxes are SNANA ``FLUXCAL`` (AB zero point 27.5), converted to nJy with
``nJy = FLUXCAL * 10 ** (-0.4 * (27.5 - 31.4))`` (x 36.31). PLAsTiCC photometry is forced
photometry at every epoch; ``detected`` only marks the epochs that would have raised an
alert. By default every epoch is kept as a detection (a flux with its error, possibly
negative), which is what LSST ``prvDiaForcedSources`` give too; ``detected_only=True``
keeps only alert-level detections. Non-detections never become upper limits here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from encoder.lightcurve import BANDS, JD_RANGE, MJD_OFFSET, NJY_ZERO_POINT, LightCurve, LightCurveError
from encoder.taxonomy import normalize_label

from ._common import FLUXCAL_TO_NJY, FLUXCAL_ZERO_POINT, with_context
from .parquet import _list_parts, _numpy

__all__ = ["FLUXCAL_TO_NJY", "FLUXCAL_ZERO_POINT", "lightcurve_from_flux_table", "read_plasticc_parquet"]


def _band_index(values: pa.Array) -> np.ndarray:
    """Band names to indices into BANDS (-1 where unknown)."""
    idx = pc.index_in(pc.utf8_lower(pc.cast(values, pa.string())), value_set=pa.array(BANDS))
    return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int8)


def read_plasticc_parquet(path: str | Path, detected_only: bool = False) -> list[LightCurve]:
    """``plasticc_train.parquet``: one LSST LightCurve per object, flux in nJy, jd from mjd,
    label ``normalize_label(label)``, ra/dec from the ``meta`` JSON (``ra``, ``decl``)."""
    names = ["object_id", "label", "mjd", "band", "flux", "fluxerr", "detected", "meta"]
    schema_names = pq.read_schema(path).names
    table = pq.read_table(path, columns=[c for c in names if c in schema_names])
    object_ids = [str(v) for v in table.column("object_id").to_pylist()]
    labels = [normalize_label(v) if isinstance(v, str) else None for v in table.column("label").to_pylist()]
    mjd_flat, off = _list_parts(table.column("mjd"))
    jd = _numpy(mjd_flat) + MJD_OFFSET
    band = _band_index(_list_parts(table.column("band"))[0])
    flux = _numpy(_list_parts(table.column("flux"))[0]) * FLUXCAL_TO_NJY
    err = _numpy(_list_parts(table.column("fluxerr"))[0]) * FLUXCAL_TO_NJY
    if not (len(jd) == len(band) == len(flux) == len(err)):
        raise ValueError(f"{path}: mjd, band, flux and fluxerr lists differ in length")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(jd) & (jd >= JD_RANGE[0]) & (jd <= JD_RANGE[1]) & (band >= 0)
        ok &= np.isfinite(flux) & np.isfinite(err) & (err > 0)
    if detected_only and "detected" in table.column_names:
        det = _list_parts(table.column("detected"))[0]
        ok &= pc.fill_null(det, False).to_numpy(zero_copy_only=False).astype(bool)
    metas = table.column("meta").to_pylist() if "meta" in table.column_names else [None] * len(object_ids)

    lcs = []
    for k, oid in enumerate(object_ids):
        sel = np.flatnonzero(ok[off[k] : off[k + 1]]) + off[k]
        if len(sel) == 0:
            continue
        ra, dec = _position(metas[k])
        try:
            lcs.append(
                LightCurve.build(
                    oid, "lsst", jd[sel], band[sel], flux=flux[sel], flux_err=err[sel], ra=ra, dec=dec, label=labels[k]
                )
            )
        except LightCurveError as exc:
            raise with_context(exc, f"objects[{k}]") from None
    return lcs


def _position(meta: object) -> tuple[float | None, float | None]:
    if not isinstance(meta, str):
        return None, None
    try:
        d = json.loads(meta)
        ra, dec = float(d["ra"]), float(d.get("decl", d.get("dec")))
    except (ValueError, KeyError, TypeError):
        return None, None
    if not (np.isfinite(ra) and np.isfinite(dec) and -90.0 <= dec <= 90.0):
        return None, None
    return ra % 360.0, dec


def lightcurve_from_flux_table(
    df: pd.DataFrame,
    object_id: str,
    *,
    survey: str = "lsst",
    zero_point: float = NJY_ZERO_POINT,
    label: str | None = None,
    ra: float | None = None,
    dec: float | None = None,
) -> LightCurve:
    """A LightCurve from a DataFrame with columns ``mjd`` (or ``jd``), ``band``, ``flux`` and
    ``flux_err`` (or ``fluxerr``).

    ``zero_point`` is the AB zero point of the flux unit: 31.4 for nJy (default),
    27.5 (:data:`FLUXCAL_ZERO_POINT`) for PLAsTiCC/SNANA FLUXCAL. ``label`` is passed
    through :func:`~encoder.taxonomy.normalize_label`. Invalid values raise
    :class:`~encoder.lightcurve.LightCurveError` naming the row (``detections[i].flux``).
    """
    if "jd" in df.columns:
        time = df["jd"].to_numpy(dtype=np.float64)
    elif "mjd" in df.columns:
        time = df["mjd"].to_numpy(dtype=np.float64) + MJD_OFFSET
    else:
        raise LightCurveError("detections.jd", "the table needs an 'mjd' or 'jd' column")
    err_col = "flux_err" if "flux_err" in df.columns else "fluxerr"
    for col in ("band", "flux", err_col):
        if col not in df.columns:
            raise LightCurveError(f"detections.{col}", f"the table needs a {col!r} column")
    scale = 10.0 ** (-0.4 * (zero_point - NJY_ZERO_POINT))
    band = df["band"].to_numpy()
    if band.dtype.kind not in "iu":
        band = np.array([b.strip().lower() if isinstance(b, str) else b for b in band], dtype=object)
    return LightCurve.build(
        object_id,
        survey,
        time,
        band,
        flux=df["flux"].to_numpy(dtype=np.float64) * scale,
        flux_err=df[err_col].to_numpy(dtype=np.float64) * scale,
        ra=ra,
        dec=dec,
        label=normalize_label(label),
    )
