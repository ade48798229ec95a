"""Per-detection alert metadata (the 30 META_FIELDS), plausible for each kind of source.

Stars (CVs, flaring M dwarfs, lensed stars, pulsators) sit on a PS1 point source
(sgscore1 ~ 1, distpsnr1 ~ 0, stellar PS1 colours); AGN and TDEs are nuclear (distnr ~ 0)
on a galaxy; supernovae are offset from theirs (distnr 0.5-5"). The per-epoch fields
follow the simulated photometry: diffmaglim is the epoch limit, sigmapsf the error, scorr
the significance, fwhm the seeing, ndethist/ncovhist count the history so far. As in real
``prv_candidates``, the PS1 / star-galaxy / history fields are missing (NaN) on the
detections that did not come as the alert packet's own candidate.
"""

from __future__ import annotations

import numpy as np

from encoder.lightcurve import BAND_INDEX, META_INDEX

from .cadence import SurveyModel
from .models import Source

N_META = len(META_INDEX)
_PS1 = ("g", "r", "i", "z")
#: Fields absent from ZTF prv_candidates (only the alert's own candidate has them).
ALERT_ONLY_FIELDS = (
    "sgscore1",
    "sgscore2",
    "distpsnr1",
    "distpsnr2",
    "nmtchps",
    "ndethist",
    "ncovhist",
    "srmag1",
    "sgmag1",
    "simag1",
    "szmag1",
    "srmag2",
    "sgmag2",
    "simag2",
    "szmag2",
    "zpclrcov",
)
#: LSST alerts have no PS1 cross-match, star-galaxy score or ZTF photometric-calibration fields.
LSST_MISSING_FIELDS = (
    "sgscore1",
    "sgscore2",
    "distpsnr1",
    "distpsnr2",
    "nmtchps",
    "srmag1",
    "sgmag1",
    "simag1",
    "szmag1",
    "srmag2",
    "sgmag2",
    "simag2",
    "szmag2",
    "clrcoeff",
    "clrcounc",
    "zpclrcov",
    "classtar",
    "chinr",
    "sharpnr",
)
_ALERT_ONLY_IDX = np.array([META_INDEX[f] for f in ALERT_ONLY_FIELDS])
_LSST_MISSING_IDX = np.array([META_INDEX[f] for f in LSST_MISSING_FIELDS])
#: Reference-image depth: fainter counterparts are not in the reference catalogue.
_REF_DEPTH = {"ztf": 22.5, "lsst": 26.0}


def counterpart_magnitudes(source: Source) -> np.ndarray:
    """Per band, the magnitude of the static source at the position (host, star, or nucleus + host)."""
    host = source.host
    mag = np.asarray(host.mag, dtype=np.float64)
    if host.point_mag is not None:  # nucleus + galaxy light
        mag = -2.5 * np.log10(10 ** (-0.4 * host.point_mag) + 0.5 * 10 ** (-0.4 * mag))
    return mag


def make_metadata(
    rng: np.random.Generator,
    source: Source,
    model: SurveyModel,
    band: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    limit: np.ndarray,
    fwhm: np.ndarray,
    ndet_before: np.ndarray,
    ncov_before: np.ndarray,
    missing_fraction: float = 0.6,
) -> np.ndarray:
    """(n, 30) float32 metadata for n detections, NaN where missing."""
    n = len(band)
    host = source.host
    stellar = host.kind == "star"
    col = META_INDEX
    counterpart = counterpart_magnitudes(source)
    r_ref = counterpart[BAND_INDEX["r"]]
    visible = bool(np.isfinite(r_ref) and r_ref < _REF_DEPTH[model.name])
    u = rng.random(16)  # per-object uniforms
    point_like = stellar or (host.point_mag is not None and u[0] < 0.6)

    # ---- per-object row: cross-match with the nearest PS1 source (host / star) and a second one
    row = np.full(N_META, np.nan)
    if stellar:
        sg1, dist1 = 0.93 + 0.07 * u[1], abs(0.12 * (u[2] - 0.5) * 2)
    elif host.point_mag is not None:
        sg1, dist1 = (0.5 + 0.5 * u[1] if point_like else 0.3 * u[1]), 0.25 * u[2]
    else:
        sg1 = 0.25 * u[1] ** 3
        dist1 = host.offset_arcsec * (0.9 + 0.2 * u[2]) if visible else 3.0 + 22.0 * u[2]
    row[col["sgscore1"]] = sg1
    row[col["distpsnr1"]] = dist1
    row[col["sgscore2"]] = u[3]
    row[col["distpsnr2"]] = max(dist1 + 0.5, 2.0 + 23.0 * u[4])
    row[col["nmtchps"]] = 1 + rng.poisson(6 if abs(source.params.get("b", 30.0)) > 10 else 20)
    # without a visible counterpart, the nearest PS1 source is an unrelated one
    unrelated = 19 + 3 * u[5] + np.array([0, 0.6, 0, -0.3, -0.5, 0])
    ps1 = counterpart if (visible or stellar) else unrelated
    for j, b in enumerate(_PS1):
        row[col[f"s{b}mag1"]] = ps1[BAND_INDEX[b]]
        row[col[f"s{b}mag2"]] = 17.5 + 4.5 * u[6 + j]
    if visible or stellar:
        row[col["sharpnr"]] = 0.06 * (u[10] - 0.5) if point_like else 0.05 + 0.45 * u[10]
        row[col["chinr"]] = np.exp(0.3 * (u[11] - 0.5) * 3) if point_like else np.exp(0.8 + 1.5 * (u[11] - 0.5))
    out = np.repeat(row[None, :].astype(np.float32), n, axis=0)

    # ---- per-detection fields
    z = rng.standard_normal((4, n))
    v = rng.random((6, n))
    if visible or stellar:
        out[:, col["distnr"]] = (host.offset_arcsec if not host.nuclear else 0.15 * u[12]) + 0.05 * np.abs(z[0])
        # the reference PSF-fit magnitude of an extended host is fainter than its total magnitude
        extended = 0.0 if (stellar or host.point_mag is not None) else 1.0 + 0.3 * host.offset_arcsec
        out[:, col["magnr"]] = np.minimum(counterpart[band] + extended, _REF_DEPTH[model.name] - 0.1) + 0.03 * z[1]
    snr = np.abs(flux) / flux_err
    out[:, col["diffmaglim"]] = limit
    out[:, col["sigmapsf"]] = 1.0857 / snr
    out[:, col["scorr"]] = snr * (0.9 + 0.3 * v[0])
    out[:, col["sky"]] = 0.7 * z[2]
    out[:, col["fwhm"]] = fwhm
    out[:, col["rb"]] = np.clip(0.985 - 0.35 * v[1] ** 3 - 0.15 * (snr < 8) * v[2], 0.05, 0.999)
    out[:, col["chipsf"]] = np.exp(np.log(1.5) + 0.3 * np.log1p(snr / 20) + 0.5 * z[3])
    out[:, col["classtar"]] = 1.0 - 0.08 * v[3] ** 4 - (0.0 if stellar else 0.15 * u[13])
    out[:, col["ndethist"]] = ndet_before + 1
    out[:, col["ncovhist"]] = ncov_before
    g, r = band == BAND_INDEX["g"], band == BAND_INDEX["r"]
    out[:, col["clrcoeff"]] = np.where(g, -0.05, np.where(r, 0.08, 0.02)) + 0.04 * (v[4] - 0.5)
    out[:, col["clrcounc"]] = 1e-5 * np.exp(0.8 * z[0])
    out[:, col["zpclrcov"]] = -1e-5 * np.exp(z[1])
    # ---- missingness: prv_candidates lack the alert-only fields; the latest one is an alert
    if model.name == "lsst":
        out[:, _LSST_MISSING_IDX] = np.nan
    if n > 1 and missing_fraction > 0:
        prv = v[5] < missing_fraction
        prv[-1] = False
        out[np.ix_(prv, _ALERT_ONLY_IDX)] = np.nan
    out[v[0] < 0.02, col["clrcoeff"]] = np.nan
    return out
