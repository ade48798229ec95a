"""RTF's own parquet form of light curves: one row per object, list columns.

Written by the synthetic survey (``rtf-synth --out X.parquet``) and read by the service for
its demo catalogue and by training; metadata are flattened row-major, 30 per detection.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from encoder.lightcurve import META_FIELDS, STAMP_KINDS, LightCurve, LightCurveError


def write_lightcurves_parquet(
    lcs: list[LightCurve], path: str | Path, extra_metadata: dict[str, str] | None = None
) -> None:
    """One row per object with list columns (meta flattened row-major, 30 per detection)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def lists(values: list[np.ndarray], typ: pa.DataType) -> pa.Array:
        offsets = np.zeros(len(values) + 1, dtype=np.int32)
        offsets[1:] = np.cumsum([len(v) for v in values])
        flat = np.concatenate(values) if values else np.empty(0)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=typ))

    def opt_lists(values: list[np.ndarray | None], typ: pa.DataType) -> pa.Array:
        arr = lists([np.empty(0) if v is None else v.ravel() for v in values], typ)
        mask = pa.array([v is None for v in values])
        return pa.ListArray.from_arrays(arr.offsets, arr.values, mask=mask)

    table = pa.table(
        {
            "object_id": pa.array([lc.object_id for lc in lcs], pa.string()),
            "survey": pa.array([lc.survey for lc in lcs], pa.string()),
            "label": pa.array([lc.label for lc in lcs], pa.string()),
            "ra": pa.array([lc.ra for lc in lcs], pa.float64()),
            "dec": pa.array([lc.dec for lc in lcs], pa.float64()),
            "time": lists([lc.time for lc in lcs], pa.float64()),
            "band": lists([lc.band for lc in lcs], pa.int8()),
            "flux": lists([lc.flux for lc in lcs], pa.float64()),
            "flux_err": lists([lc.flux_err for lc in lcs], pa.float64()),
            "meta": opt_lists([lc.meta for lc in lcs], pa.float32()),
            "alert_id": opt_lists([lc.alert_id for lc in lcs], pa.int64()),
            "ul_time": lists([lc.ul_time for lc in lcs], pa.float64()),
            "ul_band": lists([lc.ul_band for lc in lcs], pa.int8()),
            "ul_mag": lists([lc.ul_mag for lc in lcs], pa.float64()),
            **{f"stamp_{k}": pa.array([(lc.stamps or {}).get(k) for lc in lcs], pa.binary()) for k in STAMP_KINDS},
        }
    )
    meta = {b"rtf.meta_fields": json.dumps(list(META_FIELDS)).encode()}
    for key, value in (extra_metadata or {}).items():
        meta[f"rtf.{key}".encode()] = value.encode()
    pq.write_table(table.replace_schema_metadata(meta), str(path), compression="zstd")


def read_lightcurves_parquet(path: str | Path) -> list[LightCurve]:
    import pyarrow.parquet as pq

    table = pq.read_table(str(path))
    scalar = ["object_id", "survey", "label", "ra", "dec"] + [f"stamp_{k}" for k in STAMP_KINDS]
    cols = {name: table.column(name).to_pylist() for name in scalar}
    arrays = {}
    for name in ("time", "band", "flux", "flux_err", "meta", "alert_id", "ul_time", "ul_band", "ul_mag"):
        col = table.column(name).combine_chunks()
        offsets = col.offsets.to_numpy()
        values = col.values.to_numpy(zero_copy_only=False)
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        arrays[name] = (offsets, values, valid)
    out = []
    n_meta = len(META_FIELDS)
    for i in range(table.num_rows):

        def get(name: str, i: int = i) -> np.ndarray | None:
            offsets, values, valid = arrays[name]
            return values[offsets[i] : offsets[i + 1]] if valid[i] else None

        def need(name: str, i: int = i) -> np.ndarray:
            value = get(name, i)
            if value is None:
                raise LightCurveError(name, f"null in row {i} of {path}")
            return value

        meta = get("meta")
        stamps = {k: cols[f"stamp_{k}"][i] for k in STAMP_KINDS if cols[f"stamp_{k}"][i] is not None}
        out.append(
            LightCurve.build(
                cols["object_id"][i],
                cols["survey"][i],
                need("time"),
                need("band").astype(np.int8),
                flux=get("flux"),
                flux_err=get("flux_err"),
                meta=None if meta is None else meta.reshape(-1, n_meta),
                alert_id=get("alert_id"),
                ul_time=get("ul_time"),
                ul_band=need("ul_band").astype(np.int8),
                ul_mag=get("ul_mag"),
                ra=cols["ra"][i],
                dec=cols["dec"][i],
                stamps=stamps or None,
                label=cols["label"][i],
            )
        )
    return out
