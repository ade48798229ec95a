"""Per-detection photometric channels: the transformer's main input.

Channels (:data:`PHOT_CHANNELS`, float32 (n, 10)):

- ``log_dt_first``: log1p(days since the first detection);
- ``log_dt_prev``: log1p(days since the previous detection, any band; 0 for the first);
- ``logflux`` / ``logflux_err``: -0.4 × an asinh magnitude (luptitude) and its error.
  With softening ``b = SOFTENING × flux_err`` per point,
  ``logflux = log10((f + sqrt(f² + 4b²)) / 2) - 0.4 × 31.4`` (f in nJy) and
  ``logflux_err = flux_err / (ln 10 × sqrt(f² + 4b²))``. For S/N ≳ 5 these equal the
  seed's ``-0.4 × mag`` and ``0.4 × mag_err`` (to 0.004 at S/N 5, 5e-4 at S/N 10);
  for low or negative difference fluxes they stay finite and increase monotonically
  with flux (a negative flux maps below the noise level, ~ log10(b² / |f|)).
- ``band_u`` .. ``band_y``: one-hot band over all six bands.
"""

from __future__ import annotations

import numpy as np

from encoder.lightcurve import BANDS, NJY_ZERO_POINT, LightCurve

PHOT_CHANNELS: tuple[str, ...] = ("log_dt_first", "log_dt_prev", "logflux", "logflux_err") + tuple(
    f"band_{b}" for b in BANDS
)
#: Softening of the asinh magnitudes, in units of each point's flux error.
SOFTENING = 0.5
_LOG10E = 1.0 / np.log(10.0)


def asinh_logflux(flux: np.ndarray, flux_err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logflux, logflux_err) = -0.4 × (luptitude, its error); finite for any flux."""
    f = np.asarray(flux, dtype=np.float64)
    e = np.asarray(flux_err, dtype=np.float64)
    b2 = (2.0 * SOFTENING * e) ** 2
    root = np.sqrt(f * f + b2)
    # (f + root) / 2 loses precision for f << 0; use the identity (f + root) = b2 / (root - f)
    soft = np.where(f >= 0, 0.5 * (f + root), 0.5 * b2 / (root - f))
    logflux = np.log10(soft) - 0.4 * NJY_ZERO_POINT
    logflux_err = e * _LOG10E / root
    return logflux, logflux_err


def luptitude(flux: np.ndarray, flux_err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Asinh magnitudes and errors (= mag, mag_err for bright positive fluxes)."""
    lf, lfe = asinh_logflux(flux, flux_err)
    return -2.5 * lf, 2.5 * lfe


def photometry_channels(lc: LightCurve) -> np.ndarray:
    """(n, 10) float32 channels in :data:`PHOT_CHANNELS` order."""
    logflux = asinh_logflux(lc.flux, lc.flux_err)
    return photometry_channels_many(lc.time, logflux, lc.band, np.zeros(1, dtype=np.int64))


def photometry_channels_many(
    time: np.ndarray, logflux: tuple[np.ndarray, np.ndarray], band: np.ndarray, starts: np.ndarray
) -> np.ndarray:
    """:func:`photometry_channels` of several light curves laid end to end.

    ``logflux`` = :func:`asinh_logflux` of their detections; ``starts`` = the first row of each.
    """
    t = np.asarray(time, dtype=np.float64)
    n = len(t)
    out = np.zeros((n, len(PHOT_CHANNELS)), dtype=np.float64)
    if n == 0:
        return out.astype(np.float32)
    starts = np.asarray(starts, dtype=np.int64)
    first = np.repeat(t[starts], np.diff(np.append(starts, n)))
    out[:, 0] = np.log1p(np.maximum(t - first, 0.0))
    out[1:, 1] = np.log1p(np.maximum(np.diff(t), 0.0))
    out[starts, 1] = 0.0  # the first detection of each light curve has no previous one
    out[:, 2], out[:, 3] = logflux
    out[np.arange(n), 4 + np.asarray(band, dtype=np.intp)] = 1.0
    return out.astype(np.float32)
