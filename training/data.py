"""Training data sources: the synthetic survey, the real parquet files, folders of Avro packets.

A source is a string:

* ``synthetic:ztf:20000[:seed]`` or ``synthetic:lsst:5000`` — the synthetic survey;
* a parquet file — its kind is recognised from the name (``ztf_bts_dev``, ``alerts``,
  ``alerce``, ``plasticc``) or its columns (Fink rows, synthetic-survey parquet);
* a folder or file of Avro alert packets (ZTF or LSST).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from encoder.lightcurve import LightCurve


def load_source(source: str, *, with_stamps: bool = False) -> list[LightCurve]:
    if source.startswith("synthetic:"):
        from training.synthetic import SurveyConfig, generate_survey

        parts = source.split(":")
        survey, n = parts[1], int(parts[2])
        seed = int(parts[3]) if len(parts) > 3 else 0
        return generate_survey(SurveyConfig(survey=survey, n_objects=n, seed=seed, with_stamps=with_stamps))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"data source {source!r}: no such file or folder")
    if path.is_dir():
        return _read_avro_folder(path)
    if path.suffix == ".avro":
        from encoder.readers import read_alert_avro

        return read_alert_avro(path)
    if path.suffix == ".parquet":
        return _read_parquet(path, with_stamps)
    raise ValueError(f"data source {source!r}: expected synthetic:..., a .parquet/.avro file or a folder")


def _read_avro_folder(folder: Path) -> list[LightCurve]:
    from encoder.readers import read_alert_avro

    merged: dict[str, LightCurve] = {}
    for f in sorted(folder.rglob("*.avro")):
        for lc in read_alert_avro(f):
            merged[lc.object_id] = merged[lc.object_id].merge(lc) if lc.object_id in merged else lc
    return list(merged.values())


def _read_parquet(path: Path, with_stamps: bool) -> list[LightCurve]:
    from encoder import readers

    name = path.name
    columns = set(pq.read_schema(path).names)
    if "ztf_bts" in name:
        return readers.read_bts_parquet(path)
    if "plasticc" in name:  # alert-level detections only: what an alert stream carries
        return readers.read_plasticc_parquet(path, detected_only=True)
    if "alerce" in name:
        return readers.read_alerce_parquet(path)
    if name == "alerts.parquet" or {"alerts", "upper_limits"} <= columns:
        cutouts = path.parent / "cutouts.parquet"
        return readers.read_ztf_alerts_parquet(path, cutouts if with_stamps and cutouts.exists() else None)
    if "candidate" in columns:
        return readers.read_fink_parquet(path)
    return readers.read_lightcurves_parquet(path)


def load_sources(sources: list[str], *, with_stamps: bool = False) -> list[LightCurve]:
    """All sources concatenated; an object id seen twice keeps its first occurrence."""
    seen: set[str] = set()
    out: list[LightCurve] = []
    for src in sources:
        for lc in load_source(src, with_stamps=with_stamps):
            if lc.object_id not in seen:
                seen.add(lc.object_id)
                out.append(lc)
    return out


def split_of(object_id: str, val_fraction: float = 0.15, salt: str = "rtf") -> str:
    """'train' or 'val', stable per object id (a hash, not a random draw)."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{object_id}".encode()).digest()[:8], "big")
    return "val" if (h % 10_000) < val_fraction * 10_000 else "train"


def early_copies(lcs: list[LightCurve], days: float = 30.0) -> list[LightCurve]:
    """The light curves, plus each labelled one that lasts longer cut to its first ``days`` (id ``<id>@30d``):
    the view a real-time query has."""
    cut = [replace(lc.until(lc.time[0] + days), object_id=f"{lc.object_id}@30d") for lc in lcs if lc.label]
    return lcs + [c for c, lc in zip(cut, (lc for lc in lcs if lc.label), strict=True) if len(c) < len(lc)]


def balanced(lcs: list[LightCurve], per_class: int, rng: np.random.Generator | None = None) -> list[LightCurve]:
    """The light curves, each labelled class repeated up to about ``per_class`` (copies: ids ``<id>#<r>``), so
    that 900 SNIa do not drown 3 TDE; random truncation makes the copies differ, and with ``rng`` each copy
    is also a re-observation (:func:`training.augment.reobserve`)."""
    from training.augment import reobserve

    counts = Counter(lc.label for lc in lcs if lc.label)
    out = list(lcs)
    for lc in lcs:
        if not lc.label:
            continue
        for r in range(1, max(1, per_class // counts[lc.label])):
            copy = lc if rng is None else reobserve(lc, rng)
            out.append(replace(copy, object_id=f"{lc.object_id}#{r}"))
    return out
