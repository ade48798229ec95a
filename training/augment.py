"""Re-observations of a light curve: new views of the same source for class-balanced training.

Repeating a rare class's few light curves makes identical copies, which a metric-learning loss can
memorise rather than learn from. :func:`reobserve` turns each copy into a plausible second look at the
same source instead: some detections missed, every flux re-measured within its error bar, and the
time axis stretched a little (the spread of (1 + z) time dilation and of intrinsic timescales).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from encoder.lightcurve import LightCurve


def reobserve(
    lc: LightCurve,
    rng: np.random.Generator,
    *,
    keep: float = 0.8,
    stretch: float = 0.1,
    min_detections: int = 3,
) -> LightCurve:
    """A new view of ``lc``: each detection kept with probability ``keep`` (at least
    ``min_detections``, or all when fewer), fluxes re-drawn from N(flux, flux_err), times stretched
    about the first detection by a factor exp(U(-stretch, stretch)). Upper limits are stretched alike;
    metadata and alert ids follow their detections; object id and label are unchanged."""
    n = len(lc)
    kept = rng.random(n) < keep
    if kept.sum() < min(n, min_detections):  # keep a random minimum instead
        kept[rng.choice(n, size=min(n, min_detections), replace=False)] = True
    idx = np.flatnonzero(kept)
    t0, factor = lc.time[0], float(np.exp(rng.uniform(-stretch, stretch)))
    return replace(
        lc,
        time=t0 + (lc.time[idx] - t0) * factor,
        band=lc.band[idx],
        flux=lc.flux[idx] + rng.normal(size=len(idx)) * lc.flux_err[idx],
        flux_err=lc.flux_err[idx],
        meta=None if lc.meta is None else lc.meta[idx],
        alert_id=None if lc.alert_id is None else lc.alert_id[idx],
        ul_time=t0 + (lc.ul_time - t0) * factor,
    )
