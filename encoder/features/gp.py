"""Multi-band Gaussian-process light-curve features (numpy / scipy only).

Model: flux (nJy, divided by the light curve's maximum detected flux) as a zero-mean GP
over (time, ln wavelength) with kernel

    k = A² · Matern32(|Δt| / l_t) · exp(-Δlnλ² / (2 l_λ²))

plus each point's measured variance (and a 1 % of peak error floor). The three
hyperparameters are fitted by maximizing the marginal likelihood (analytic gradient,
L-BFGS-B, warm start A=1, l_t=20 d, l_λ=0.5, bounded, with weak log-normal priors on the
length scales so that sparse curves stay sensible). Points are binned per band by night
(gaps < 0.5 d, inverse-variance weighted); the bin window doubles until at most
:data:`MAX_POINTS` remain. Upper limits within 30 days before the first detection enter
as zero flux with sigma = limit flux / 5 (so they pin the rise).

From the posterior mean in g, r and i (always predicted: the GP interpolates across
wavelength, so LSST curves and ZTF g/r-only curves give all three):

- per band: peak time (days after the first detection), peak mag, rise time (peak -
  the half-flux time before it), decline time (half-flux time after the peak - peak),
  decline rate over 15 d after peak (mag), and the flux at fixed phases
  :data:`PHASES` from the reference peak, relative to the band's peak flux;
- colours g-r and r-i at the reference peak, +15 d and +30 d;
- the reference peak (of g+r) time, whether it sits at the edge of the data, the peak
  magnitude of the normalization, the fitted A, l_t (days), l_λ (ln-wavelength), the
  reduced chi2 of the posterior mean, the number of points and bands used.

Anything that would need extrapolation more than :data:`MARGIN` days beyond the data is
NaN; so is everything for curves with fewer than 2 detections (or 3 points in all).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri, dpotrs
from scipy.optimize import minimize

from encoder.lightcurve import BAND_INDEX, BANDS, NJY_ZERO_POINT, LightCurve, mag_to_njy

#: Effective wavelengths (Å) of u, g, r, i, z, y.
BAND_WAVELENGTH: dict[str, float] = {"u": 3670.0, "g": 4820.0, "r": 6230.0, "i": 7630.0, "z": 9050.0, "y": 9950.0}
_LNW = np.log(np.array([BAND_WAVELENGTH[b] for b in BANDS]))
GP_BANDS: tuple[str, ...] = ("g", "r", "i")
PHASES: tuple[int, ...] = (-20, -10, -5, 0, 5, 10, 20, 30, 45, 60)
MAX_POINTS = 200
MARGIN = 7.0
UL_WINDOW = 30.0
ERROR_FLOOR = 0.01
BOUNDS = ((np.log(0.05), np.log(20.0)), (np.log(0.5), np.log(500.0)), (np.log(0.05), np.log(5.0)))
_START = np.array([0.0, np.log(20.0), np.log(0.5)])
_PRIOR_MU = np.array([np.log(20.0), np.log(0.5)])
_PRIOR_SIGMA = np.array([2.0, 1.0])
MAX_ITER = 40
_SQ3 = np.sqrt(3.0)

_BAND_FEATURES = ("peak_t", "peak_mag", "rise_time", "decline_time", "decline_rate_15")
_GLOBAL_FEATURES = (
    "gr_peak", "ri_peak", "gr_p15", "ri_p15", "gr_p30", "ri_p30",
    "t_ref", "peak_at_edge", "norm_mag", "amplitude", "length_time", "length_wavelength",
    "chi2", "n_points", "n_bands",
)  # fmt: skip


def _phase_name(p: int) -> str:
    return f"f_m{-p}" if p < 0 else f"f_p{p}"


GP_FEATURE_NAMES: tuple[str, ...] = tuple(
    f"gp_{b}_{n}" for b in GP_BANDS for n in _BAND_FEATURES + tuple(_phase_name(p) for p in PHASES)
) + tuple(f"gp_{n}" for n in _GLOBAL_FEATURES)
_N_PER_BAND = len(_BAND_FEATURES) + len(PHASES)


# ---------------------------------------------------------------------- data preparation
def _bin(t: np.ndarray, b: np.ndarray, y: np.ndarray, e: np.ndarray, window: float):
    """Inverse-variance means of same-band points closer than ``window`` days (chained)."""
    order = np.lexsort((t, b))
    t, b, y, e = t[order], b[order], y[order], e[order]
    new = np.ones(len(t), dtype=bool)
    new[1:] = (b[1:] != b[:-1]) | (np.diff(t) >= window)
    gid = np.cumsum(new) - 1
    w = 1.0 / (e * e)
    sw = np.bincount(gid, w)
    tb = np.bincount(gid, w * t) / sw
    yb = np.bincount(gid, w * y) / sw
    return tb, b[new], yb, 1.0 / np.sqrt(sw)


def _prepare(lc: LightCurve):
    t = np.asarray(lc.time, dtype=np.float64)
    b = np.asarray(lc.band, dtype=np.intp)
    f = np.asarray(lc.flux, dtype=np.float64)
    fe = np.asarray(lc.flux_err, dtype=np.float64)
    t0 = t[0]
    scale = float(np.max(f))
    if not scale > 0:
        scale = float(np.max(np.abs(f)))
    ul_t = np.asarray(lc.ul_time, dtype=np.float64)
    sel = (ul_t < t0) & (ul_t >= t0 - UL_WINDOW)
    if sel.any():
        ul_f = mag_to_njy(np.asarray(lc.ul_mag)[sel]) / 5.0
        t = np.concatenate([ul_t[sel], t])
        b = np.concatenate([np.asarray(lc.ul_band, dtype=np.intp)[sel], b])
        f = np.concatenate([np.zeros(int(sel.sum())), f])
        fe = np.concatenate([ul_f, fe])
    y, e = f / scale, fe / scale
    window = 0.5
    tb, bb, yb, eb = _bin(t, b, y, e, window)
    while len(tb) > MAX_POINTS:
        window *= 2.0
        tb, bb, yb, eb = _bin(t, b, y, e, window)
    order = np.argsort(tb, kind="stable")
    eb = np.sqrt(eb[order] ** 2 + ERROR_FLOOR**2)
    return tb[order] - t0, bb[order], yb[order], eb, scale


# ---------------------------------------------------------------------- the GP
def _kernel_parts(dt: np.ndarray, dl2: np.ndarray, lt: float, ll: float):
    a = _SQ3 * dt / lt
    ea = np.exp(-a)
    km = (1.0 + a) * ea
    ks = np.exp(-0.5 * dl2 / (ll * ll))
    return km, ks, a, ea


def _nll(theta: np.ndarray, dt: np.ndarray, dl2: np.ndarray, y: np.ndarray, var: np.ndarray):
    log_a, log_lt, log_ll = theta
    amp2 = np.exp(2.0 * log_a)
    lt, ll = np.exp(log_lt), np.exp(log_ll)
    km, ks, a, ea = _kernel_parts(dt, dl2, lt, ll)
    kf = amp2 * km * ks
    k = kf.copy()
    k[np.diag_indices_from(k)] += var
    c, info = dpotrf(k, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        return 1e25, np.zeros(3)
    alpha, _ = dpotrs(c, y, lower=1)
    kinv, _ = dpotri(c, lower=1)
    kinv = np.tril(kinv) + np.tril(kinv, -1).T
    nll = 0.5 * y @ alpha + np.sum(np.log(np.diag(c)))
    w = kinv - np.outer(alpha, alpha)
    d_a = 2.0 * kf
    d_lt = amp2 * (a * a * ea) * ks
    d_ll = kf * dl2 / (ll * ll)
    grad = 0.5 * np.array([np.sum(w * d_a), np.sum(w * d_lt), np.sum(w * d_ll)])
    z = (theta[1:] - _PRIOR_MU) / _PRIOR_SIGMA
    nll += 0.5 * np.sum(z * z)
    grad[1:] += z / _PRIOR_SIGMA
    return float(nll), grad


def fit_gp(t: np.ndarray, lnw: np.ndarray, y: np.ndarray, err: np.ndarray, start: np.ndarray | None = None):
    """Fit hyperparameters; (theta, alpha, posterior mean at the data), or None if singular."""
    dt = np.abs(t[:, None] - t[None, :])
    dl2 = (lnw[:, None] - lnw[None, :]) ** 2
    var = err * err
    x0 = np.clip(_START if start is None else start, [lo for lo, _ in BOUNDS], [hi for _, hi in BOUNDS])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(
            _nll, x0, args=(dt, dl2, y, var), jac=True, method="L-BFGS-B", bounds=BOUNDS, options={"maxiter": MAX_ITER}
        )
    theta = res.x
    amp2, lt, ll = np.exp(2 * theta[0]), np.exp(theta[1]), np.exp(theta[2])
    km, ks, _, _ = _kernel_parts(dt, dl2, lt, ll)
    kf = amp2 * km * ks
    k = kf.copy()
    k[np.diag_indices_from(k)] += var
    c, info = dpotrf(k, lower=1, clean=1)
    if info != 0:
        k[np.diag_indices_from(k)] += 1e-6
        c, info = dpotrf(k, lower=1, clean=1)
        if info != 0:
            return None
    alpha, _ = dpotrs(c, y, lower=1)
    return theta, alpha, kf @ alpha


def predict(theta, t_train, lnw_train, alpha, t_new: np.ndarray, lnw_new: float) -> np.ndarray:
    amp2, lt, ll = np.exp(2 * theta[0]), np.exp(theta[1]), np.exp(theta[2])
    km, ks, _, _ = _kernel_parts(np.abs(t_new[:, None] - t_train[None, :]), (lnw_new - lnw_train[None, :]) ** 2, lt, ll)
    return (amp2 * km * ks) @ alpha


# ---------------------------------------------------------------------- features
def _crossing(grid: np.ndarray, mu: np.ndarray, k: int, level: float, direction: int) -> float:
    """Time where ``mu`` first falls below ``level`` going from index k (−1: back, +1: forward)."""
    if direction < 0:
        below = np.flatnonzero(mu[:k] < level)
        if len(below) == 0:
            return np.nan
        i = below[-1]
        j = i + 1
    else:
        below = np.flatnonzero(mu[k + 1 :] < level)
        if len(below) == 0:
            return np.nan
        j = k + 1 + below[0]
        i = j - 1
    denom = mu[j] - mu[i]
    frac = (level - mu[i]) / denom if denom != 0 else 0.5
    return float(grid[i] + frac * (grid[j] - grid[i]))


def _mag(flux_norm: float, scale: float) -> float:
    v = flux_norm * scale
    return float(NJY_ZERO_POINT - 2.5 * np.log10(v)) if v > 0 else np.nan


def gp_features(lc: LightCurve) -> np.ndarray:
    """(len(GP_FEATURE_NAMES),) float32; NaN where not computable."""
    out = np.full(len(GP_FEATURE_NAMES), np.nan)
    if len(lc) < 2:
        return out.astype(np.float32)
    t, b, y, err, scale = _prepare(lc)
    if len(t) < 3 or not np.isfinite(scale) or scale <= 0:
        return out.astype(np.float32)
    lnw = _LNW[b]
    fit = fit_gp(t, lnw, y, err)
    if fit is None:
        return out.astype(np.float32)
    theta, alpha, mu_train = fit

    det_t = np.asarray(lc.time) - lc.time[0]
    lo_data, hi_data = float(t[0]), float(det_t[-1])
    lo_cov, hi_cov = lo_data - MARGIN, hi_data + MARGIN
    span = hi_cov - lo_cov
    step = max(0.25, span / 600.0)
    grid = np.arange(lo_cov - 30.0, hi_cov + 70.0 + step, step)
    in_data = (grid >= 0.0) & (grid <= hi_data)
    if not in_data.any():
        in_data = np.abs(grid - 0.0) <= step

    mus = {bn: predict(theta, t, lnw, alpha, grid, _LNW[BAND_INDEX[bn]]) for bn in GP_BANDS}
    ref = mus["g"] + mus["r"]
    idx_data = np.flatnonzero(in_data)
    k_ref = int(idx_data[np.argmax(ref[idx_data])])
    t_ref = float(grid[k_ref])

    def at(mu: np.ndarray, time: float) -> float:
        if not (lo_cov <= time <= hi_cov):
            return np.nan
        return float(np.interp(time, grid, mu))

    for i, bn in enumerate(GP_BANDS):
        mu = mus[bn]
        k = int(idx_data[np.argmax(mu[idx_data])])
        peak = float(mu[k])
        o = i * _N_PER_BAND
        out[o] = grid[k]
        if peak <= 0:
            continue
        out[o + 1] = _mag(peak, scale)
        rise = _crossing(grid, mu, k, 0.5 * peak, -1)
        if np.isfinite(rise) and rise >= lo_cov:
            out[o + 2] = grid[k] - rise
        dec = _crossing(grid, mu, k, 0.5 * peak, +1)
        if np.isfinite(dec) and dec <= hi_cov:
            out[o + 3] = dec - grid[k]
        f15 = at(mu, float(grid[k]) + 15.0)
        if f15 > 0:
            out[o + 4] = -2.5 * np.log10(f15 / peak)
        for j, p in enumerate(PHASES):
            out[o + len(_BAND_FEATURES) + j] = at(mu, t_ref + p) / peak

    g0 = len(GP_BANDS) * _N_PER_BAND
    for j, dtp in enumerate((0.0, 15.0, 30.0)):
        fg, fr, fi = (at(mus[bn], t_ref + dtp) for bn in GP_BANDS)
        if fg > 0 and fr > 0:
            out[g0 + 2 * j] = -2.5 * np.log10(fg / fr)
        if fr > 0 and fi > 0:
            out[g0 + 2 * j + 1] = -2.5 * np.log10(fr / fi)
    out[g0 + 6] = t_ref
    out[g0 + 7] = float(k_ref in (idx_data[0], idx_data[-1]))
    out[g0 + 8] = NJY_ZERO_POINT - 2.5 * np.log10(scale)
    out[g0 + 9] = np.exp(theta[0])
    out[g0 + 10] = np.exp(theta[1])
    out[g0 + 11] = np.exp(theta[2])
    out[g0 + 12] = float(np.mean(((y - mu_train) / err) ** 2))
    out[g0 + 13] = len(t)
    out[g0 + 14] = len(np.unique(b))
    return out.astype(np.float32)
