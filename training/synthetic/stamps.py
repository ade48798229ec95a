"""Simulated 63x63 cutouts (science, template, difference) as gzipped FITS bytes.

The transient sits at the stamp centre. Template = sky + the static counterpart (a
Sersic-profile host galaxy at the host offset, or a star / nucleus at the centre) seen
with a slightly better seeing and lower noise; science = sky + counterpart + the
transient PSF + noise; difference = the transient PSF (negative when the flux fell
below the reference) + the noise of both. What ZTF alert packets carry.
"""

from __future__ import annotations

import gzip
import io

import numpy as np

from encoder.lightcurve import NJY_ZERO_POINT

from .cadence import SurveyModel
from .metadata import counterpart_magnitudes
from .models import Source

SIZE = 63
_C = (SIZE - 1) / 2.0
_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
_SKY = {"ztf": 150.0, "lsst": 400.0}  # counts per pixel


def _counts(mag: float | np.ndarray, zero_point: float) -> float | np.ndarray:
    return 10 ** (-0.4 * (np.asarray(mag) - zero_point))


def _psf(fwhm_pix: float, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """A Moffat (beta = 3) PSF, unit sum."""
    beta = 3.0
    alpha = fwhm_pix / (2 * np.sqrt(2 ** (1 / beta) - 1))
    r2 = (_X - _C - dx) ** 2 + (_Y - _C - dy) ** 2
    img = (1 + r2 / alpha**2) ** -beta
    return img / img.sum()


def _sersic(source: Source, fwhm_pix: float, pixel_scale: float) -> np.ndarray:
    """Host light profile (unit sum within the stamp), crudely smoothed by the seeing."""
    h = source.host
    dx = h.offset_arcsec / pixel_scale * np.cos(h.position_angle)
    dy = h.offset_arcsec / pixel_scale * np.sin(h.position_angle)
    # the host centre is offset from the transient; rotate into the galaxy frame
    x, y = _X - _C + dx, _Y - _C + dy
    ca, sa = np.cos(h.position_angle), np.sin(h.position_angle)
    xr, yr = x * ca + y * sa, (-x * sa + y * ca) / max(h.axis_ratio, 0.2)
    r_e = max(h.r_eff_arcsec / pixel_scale, 0.5)
    r = np.sqrt(xr**2 + yr**2 + (fwhm_pix / 2.355) ** 2)  # seeing softens the core
    n = h.sersic_n
    b_n = 2 * n - 1 / 3
    img = np.exp(-b_n * ((r / r_e) ** (1 / n) - 1))
    s = img.sum()
    return img / s if s > 0 else img


def _fits_gz(data: np.ndarray) -> bytes:
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(data.astype(np.float32)).writeto(buf)
    return gzip.compress(buf.getvalue(), compresslevel=6)


def make_stamps(
    rng: np.random.Generator,
    source: Source,
    model: SurveyModel,
    flux_njy: float,
    band: int,
    fwhm_arcsec: float,
    limit_mag: float,
) -> dict[str, bytes]:
    """Stamps of the detection with difference flux ``flux_njy`` (nJy) in global band ``band``.

    The pixel noise is set so that a PSF fit has the epoch's 5-sigma limit ``limit_mag``,
    which keeps the stamps consistent with the photometry.
    """
    zp = model.zero_point
    px = model.pixel_scale
    fwhm_sci = fwhm_arcsec / px
    fwhm_ref = max(fwhm_sci * 0.85, 1.2)
    sky = _SKY[model.name]
    counterpart = counterpart_magnitudes(source)
    static_sci = np.zeros((SIZE, SIZE))
    static_ref = np.zeros((SIZE, SIZE))
    host = source.host
    if host.kind == "galaxy":
        c = float(_counts(host.mag[band], zp))
        if np.isfinite(c):
            static_sci += c * _sersic(source, fwhm_sci, px)
            static_ref += c * _sersic(source, fwhm_ref, px)
        if host.point_mag is not None:
            c = float(_counts(host.point_mag[band], zp))
            static_sci += c * _psf(fwhm_sci)
            static_ref += c * _psf(fwhm_ref)
    elif host.kind == "star":
        c = float(_counts(counterpart[band], zp))
        static_sci += c * _psf(fwhm_sci)
        static_ref += c * _psf(fwhm_ref)
    transient = float(_counts(NJY_ZERO_POINT, zp)) * flux_njy * _psf(fwhm_sci)
    sci_true = sky + static_sci + transient
    # background noise per pixel: PSF-fit error = sigma_pix * sqrt(4 pi) * sigma_psf = F(limit) / 5
    sigma_fit = float(_counts(limit_mag, zp)) / 5.0
    sigma_pix = sigma_fit / (np.sqrt(4 * np.pi) * fwhm_sci / 2.355)
    gain = sky / sigma_pix**2  # electrons per count, so that the sky alone has sigma_pix
    noise_sci = np.sqrt(np.maximum(sci_true, 1.0) / gain)
    science = sci_true + rng.normal(0.0, 1.0, sci_true.shape) * noise_sci
    ref_noise = np.sqrt(np.maximum(sky + static_ref, 1.0) / gain) / 3.0  # a co-add of ~10 images
    template = sky + static_ref + rng.normal(0.0, 1.0, sci_true.shape) * ref_noise
    difference = science - sky - (template - sky) - (static_sci - static_ref)  # PSF-matched subtraction
    return {"science": _fits_gz(science), "template": _fits_gz(template), "difference": _fits_gz(difference)}
