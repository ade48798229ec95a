"""A light curve as the store keeps it and back: :class:`encoder.lightcurve.LightCurve` <->
:class:`indexing.history.History` (the columnar row of ``lightcurves``), and what makes a detection
the same one when it is posted again."""

from __future__ import annotations

import numpy as np

from encoder.lightcurve import BANDS, META_FIELDS, LightCurve
from indexing.history import History
from indexing.store import StoredObject


def detection_keys(lc: LightCurve) -> set[tuple[float, int]]:
    """The (time, band) of each detection: what makes a detection the same one when posted again
    (the alert key; a packet's alert id, e.g. ZTF's ``candid``, is stored beside it)."""
    return set(zip(lc.time.tolist(), lc.band.tolist(), strict=True))


def history_of(lc: LightCurve) -> History:
    """What SQL stores of a light curve: its detections (with metadata and alert ids) and limits."""
    return History(
        jd=lc.time,
        band=lc.band.astype(np.uint8),
        flux=lc.flux,
        flux_err=lc.flux_err,
        bands=BANDS,
        meta=lc.meta,
        meta_fields=META_FIELDS if lc.meta is not None else (),
        alert_id=lc.alert_id,
        ul_jd=lc.ul_time,
        ul_band=lc.ul_band.astype(np.uint8),
        ul_mag=lc.ul_mag,
    )


def stored_lightcurve(stored: StoredObject) -> LightCurve | None:
    """The light curve of a stored object (None before its first detection), through the one
    validation posted light curves pass, so whatever was stored reads back, and posts back, the same."""
    h, state = stored.history, stored.state
    if h is None or len(h) == 0:
        return None
    meta = None
    if h.meta is not None:
        meta = np.full((len(h), len(META_FIELDS)), np.nan, dtype=np.float32)
        columns = {f: j for j, f in enumerate(h.meta_fields)}
        for j, f in enumerate(META_FIELDS):
            if f in columns:
                meta[:, j] = h.meta[:, columns[f]]
    names = np.array(h.bands)
    return LightCurve.build(
        state.object_id,
        state.survey or "ztf",
        h.jd,
        names[h.band],
        flux=h.flux,
        flux_err=h.flux_err,
        meta=meta,
        ul_time=h.ul_jd,
        ul_band=names[h.ul_band] if len(h.ul_band) else h.ul_band,
        ul_mag=h.ul_mag,
        ra=state.ra,
        dec=state.dec,
        label=state.known_label,
        alert_id=h.alert_id,
    )
