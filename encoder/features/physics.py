"""Fast per-object features from the ``light-curve`` package plus a few hand-made ones.

Layout (:data:`PHYSICS_FEATURE_NAMES`, see :func:`feature_groups`):

- per band slot ``g``, ``r``, ``i`` (fixed slots, the same for ZTF and LSST; LSST u/z/y
  enter only the global features): the ``light_curve`` extractors on asinh magnitudes
  (:func:`~encoder.features.photometry.luptitude`, finite for negative difference
  fluxes): amplitude, beyond_1_std, cusum, eta_e, inter_percentile_range_10,
  linear_trend (+ sigma), maximum_slope, median, skew, kurtosis, standard_deviation,
  stetson_K, chi2, weighted_mean, periodogram peak (period, S/N); a Bazin fit on flux
  normalized by the band's maximum (amplitude, baseline, t0 relative to the first
  detection, tau_rise, tau_fall, reduced chi2; needs >= 6 points in the band); and
  n_det, peak_mag, t_peak, duration, rise_rate, decline_rate (mag/day, positive =
  brightening before / fading after the peak);
- global: n_det, n_bands, duration, peak_mag, t_peak (days after the first detection),
  t_last_after_peak, upper limits (n before the first detection, days and depth of the
  last limit before it, days since the first limit, n and days of limits after the last
  detection), colours from g/r and r/i pairs taken within 1 day (at the overall peak,
  mean, last, and the g-r slope in mag/day).

NaN wherever a feature cannot be computed (too few points, band absent). Times in days.
"""

from __future__ import annotations

import light_curve as lcf
import numpy as np

from encoder.features.photometry import luptitude
from encoder.lightcurve import BAND_INDEX, LightCurve

BAND_SLOTS: tuple[str, ...] = ("g", "r", "i")
#: Max |Δt| (days) for two detections in different bands to form a colour pair.
PAIR_WINDOW = 1.0

_EXTRACTOR = lcf.Extractor(
    lcf.Amplitude(),
    lcf.BeyondNStd(1.0),
    lcf.Cusum(),
    lcf.EtaE(),
    lcf.InterPercentileRange(0.1),
    lcf.LinearTrend(),
    lcf.MaximumSlope(),
    lcf.Median(),
    lcf.Skew(),
    lcf.Kurtosis(),
    lcf.StandardDeviation(),
    lcf.StetsonK(),
    lcf.ReducedChi2(),
    lcf.WeightedMean(),
)
_PERIODOGRAM = lcf.Periodogram(peaks=1)
_BAZIN = lcf.BazinFit("lmsder")

_EXTRACTOR_NAMES = tuple(n for n in _EXTRACTOR.names if n != "linear_trend_noise")
_EXTRACTOR_KEEP = np.array([n != "linear_trend_noise" for n in _EXTRACTOR.names])
_PERIOD_NAMES = ("period", "period_snr")
_BAZIN_NAMES = ("bazin_amplitude", "bazin_baseline", "bazin_t0", "bazin_tau_rise", "bazin_tau_fall", "bazin_chi2")
_HAND_NAMES = ("n_det", "peak_mag", "t_peak", "duration", "rise_rate", "decline_rate")
_BAND_NAMES = _HAND_NAMES + _EXTRACTOR_NAMES + _PERIOD_NAMES + _BAZIN_NAMES
N_BAND = len(_BAND_NAMES)

_GLOBAL_NAMES = (
    "n_det", "n_bands", "duration", "peak_mag", "t_peak", "t_last_after_peak",
    "n_ul_before", "dt_last_ul_before", "dmag_last_ul_before", "dt_first_ul_before",
    "n_ul_after", "dt_last_ul_after",
    "gr_at_peak", "gr_mean", "gr_last", "gr_slope", "ri_at_peak", "ri_mean",
)  # fmt: skip

PHYSICS_FEATURE_NAMES: tuple[str, ...] = tuple(f"{b}_{n}" for b in BAND_SLOTS for n in _BAND_NAMES) + tuple(
    f"all_{n}" for n in _GLOBAL_NAMES
)


def feature_groups() -> dict[str, slice]:
    """Index ranges of the per-band and global blocks in :data:`PHYSICS_FEATURE_NAMES`."""
    out = {b: slice(i * N_BAND, (i + 1) * N_BAND) for i, b in enumerate(BAND_SLOTS)}
    out["all"] = slice(len(BAND_SLOTS) * N_BAND, len(PHYSICS_FEATURE_NAMES))
    return out


def _band_block(
    out: np.ndarray, t: np.ndarray, m: np.ndarray, e: np.ndarray, f: np.ndarray, fe: np.ndarray, t0: float
) -> None:
    """Fill ``out`` (N_BAND values, NaN on entry) with one band's features (under np.errstate(all="ignore"))."""
    n = len(t)
    out[0] = n
    if n == 0:
        return
    k = int(m.argmin())
    t_first, t_peak, t_last = t[0].item(), t[k].item(), t[-1].item()
    out[1] = m[k]
    out[2] = t_peak - t0
    out[3] = t_last - t_first
    if t_peak - t_first > 0:
        out[4] = (m[0] - m[k]) / (t_peak - t_first)
    if t_last - t_peak > 0:
        out[5] = (m[-1] - m[k]) / (t_last - t_peak)
    j = len(_HAND_NAMES)
    out[j : j + len(_EXTRACTOR_NAMES)] = _EXTRACTOR(t, m, e, fill_value=np.nan, sorted=True, check=False)[
        _EXTRACTOR_KEEP
    ]
    j += len(_EXTRACTOR_NAMES)
    if n >= 3:
        out[j : j + 2] = _PERIODOGRAM(t, m, e, fill_value=np.nan, sorted=True, check=False)
    j += 2
    if n >= 6:
        # the fit sees the scaled fluxes rounded to float32: a non-linear fit of a pathological light
        # curve answered differently to a one-ulp change of a float64 input (a JSON round trip)
        scale = float(np.max(np.abs(f)))
        f32, fe32 = (f / scale).astype(np.float32).astype(np.float64), (fe / scale).astype(np.float32).astype(np.float64)
        out[j : j + len(_BAZIN_NAMES)] = _BAZIN(t - t0, f32, fe32, fill_value=np.nan, sorted=True, check=False)


def _pairs(ta: np.ndarray, ma: np.ndarray, tb: np.ndarray, mb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(times, colours a-b) of a-band points with a b-band point within PAIR_WINDOW."""
    if len(ta) == 0 or len(tb) == 0:
        return np.empty(0), np.empty(0)
    idx = np.searchsorted(tb, ta)  # tb[idx - 1] <= ta < tb[idx]
    left = np.maximum(idx - 1, 0)
    right = np.minimum(idx, len(tb) - 1)
    near = np.where(np.abs(tb[left] - ta) <= np.abs(tb[right] - ta), left, right)
    ok = np.abs(tb[near] - ta) <= PAIR_WINDOW
    return 0.5 * (ta[ok] + tb[near[ok]]), ma[ok] - mb[near[ok]]


def physics_features(lc: LightCurve, mags: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(len(PHYSICS_FEATURE_NAMES),) float32; NaN where not computable.

    ``mags``: the light curve's ``luptitude(flux, flux_err)`` when the caller has it already.
    """
    t = np.asarray(lc.time, dtype=np.float64)
    f = np.asarray(lc.flux, dtype=np.float64)
    fe = np.asarray(lc.flux_err, dtype=np.float64)
    band = np.asarray(lc.band)
    m, e = luptitude(f, fe) if mags is None else mags
    t0 = t[0].item()
    out = np.full(len(PHYSICS_FEATURE_NAMES), np.nan)
    per_band: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with np.errstate(all="ignore"):
        for i, b in enumerate(BAND_SLOTS):
            sel = band == BAND_INDEX[b]
            tb, mb = t[sel], m[sel]
            per_band[b] = (tb, mb)
            _band_block(out[i * N_BAND : (i + 1) * N_BAND], tb, mb, e[sel], f[sel], fe[sel], t0)

    g = np.full(len(_GLOBAL_NAMES), np.nan)
    g[0] = len(t)
    g[1] = np.count_nonzero(np.bincount(band))
    g[2] = t[-1] - t0
    k = int(np.argmin(m))
    g[3] = m[k]
    g[4] = t[k] - t0
    g[5] = t[-1] - t[k]
    ul_t = np.asarray(lc.ul_time, dtype=np.float64)
    ul_m = np.asarray(lc.ul_mag, dtype=np.float64)
    before = ul_t < t0
    g[6] = int(before.sum())
    if before.any():
        last = int(np.flatnonzero(before)[-1])
        g[7] = t0 - ul_t[last]
        g[8] = ul_m[last] - m[0]  # > 0: the first detection is brighter than the last limit
        g[9] = t0 - ul_t[0]
    after = ul_t > t[-1]
    g[10] = int(after.sum())
    if after.any():
        g[11] = ul_t[after][-1] - t[-1]
    t_peak = t[k]
    for off, (a, b) in ((12, ("g", "r")), (16, ("r", "i"))):
        pt, pc = _pairs(*per_band[a], *per_band[b])
        if len(pc) == 0:
            continue
        g[off] = pc[int(np.argmin(np.abs(pt - t_peak)))]
        g[off + 1] = pc.sum() / len(pc)  # = np.mean, without its overhead on tiny arrays
        if off == 12:
            g[14] = pc[-1]
            if len(pc) >= 2 and pt[-1] > pt[0]:
                dt = pt - pt.sum() / len(pt)
                g[15] = dt @ (pc - g[13]) / (dt @ dt)  # least-squares slope
    out[len(BAND_SLOTS) * N_BAND :] = g
    return out.astype(np.float32)
