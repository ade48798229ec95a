"""Survey cadences, limiting magnitudes and the photometric noise model.

ZTF: a field is revisited every ~2-3 nights in g and r (both on most visits, ~30-60 min
apart), i rarely, sometimes a second same-night visit; nights are lost to weather and a
field is out of season ~4 months a year when the Sun is near its right ascension.
LSST: six bands, pairs of visits per night in two bands, a rolling cadence that
alternates active (dense) and background (sparse) years, sparser per band than ZTF.

The 5-sigma limiting magnitude of each epoch depends on the band, the Moon phase, the
seeing and the night. The noise is background-limited (sigma_f = F(limit) / 5) plus a
calibration floor, so an epoch is a detection exactly when its measured flux is beyond
5 sigma, i.e. brighter than that epoch's limit; otherwise it is an upper limit at the
limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoder.lightcurve import BAND_INDEX, NJY_ZERO_POINT

_SYNODIC = 29.530588
_NEW_MOON_JD = 2451550.1


@dataclass(frozen=True)
class SurveyModel:
    name: str
    bands: tuple[str, ...]
    depth: tuple[float, ...]  # median 5-sigma limit per band, dark time, median seeing
    moon_penalty: tuple[float, ...]  # mag lost at full moon per band
    depth_scatter: float  # per-night quality scatter (mag)
    seeing_median: float  # arcsec
    calibration_floor: float  # mag, added in quadrature
    pixel_scale: float  # arcsec per pixel of the stamps
    zero_point: float  # image zero point (counts = 10^(-0.4 (m - zp)))
    latitude: float  # site latitude (deg), for the seasons
    dec_range: tuple[float, float]
    history_days: float  # how far back an alert's upper limits go
    #: Near the limit, a 5-sigma candidate becomes an alert with a probability that falls
    #: from 1 to 1/2 at (limit - efficiency_offset) (real-bogus and subtraction losses);
    #: a lost candidate is an upper limit like any non-detection.
    efficiency_offset: float = 0.0
    efficiency_width: float = 0.15


ZTF = SurveyModel(
    "ztf", ("g", "r", "i"), (20.6, 20.45, 19.95), (0.7, 0.4, 0.25), 0.25, 2.0, 0.015, 1.0, 26.3, 33.36, (-30.0, 90.0),
    30.0, 0.35, 0.15,
)  # fmt: skip
LSST = SurveyModel(
    "lsst", ("u", "g", "r", "i", "z", "y"), (23.9, 25.0, 24.7, 24.0, 23.3, 22.4), (0.9, 0.6, 0.35, 0.25, 0.15, 0.1),
    0.25, 0.85, 0.005, 0.2, 28.3, -30.24, (-90.0, 12.0), 365.0, 0.1, 0.1,
)  # fmt: skip
SURVEYS: dict[str, SurveyModel] = {"ztf": ZTF, "lsst": LSST}


@dataclass
class Epochs:
    """Every visit of one position: time (JD), band index, 5-sigma limit, seeing."""

    time: np.ndarray
    band: np.ndarray  # int8 index into encoder.lightcurve.BANDS
    limit: np.ndarray
    fwhm: np.ndarray

    def __len__(self) -> int:
        return len(self.time)


def sun_ra(jd: np.ndarray) -> np.ndarray:
    """Approximate right ascension of the Sun (deg): its mean ecliptic longitude."""
    return (280.46 + 0.9856474 * (jd - 2451545.0)) % 360.0


def moon_illumination(jd: np.ndarray) -> np.ndarray:
    return 0.5 * (1 - np.cos(2 * np.pi * (jd - _NEW_MOON_JD) / _SYNODIC))


def in_season(nights: np.ndarray, ra: float, dec: float, latitude: float) -> np.ndarray:
    """Whether a position is observable at night: away from the Sun, less so near the pole."""
    sep = np.abs((ra - sun_ra(nights) + 180.0) % 360.0 - 180.0)
    # half-width of the gap: ~60 deg (4 months) on the equator, none for circumpolar fields
    half_gap = 60.0
    if np.sign(dec) == np.sign(latitude):
        half_gap *= float(np.clip((100.0 - abs(latitude) - abs(dec)) / 20.0, 0.0, 1.0))
    return sep > half_gap


def sample_epochs(model: SurveyModel, rng: np.random.Generator, t0: float, t1: float, ra: float, dec: float) -> Epochs:
    """All visits of the position between JD t0 and t1."""
    if t1 <= t0:
        return Epochs(np.empty(0), np.empty(0, np.int8), np.empty(0), np.empty(0))
    if model.name == "ztf":
        time, band, night_of = _ztf_visits(rng, t0, t1, ra, dec, model)
    else:
        time, band, night_of = _lsst_visits(rng, t0, t1, ra, dec, model)
    if len(time) == 0:
        return Epochs(np.empty(0), np.empty(0, np.int8), np.empty(0), np.empty(0))
    # night quality (shared by the visits of a night) and per-visit scatter
    n_nights = int(night_of.max()) + 1
    quality = rng.normal(0.0, model.depth_scatter, n_nights)[night_of]
    seeing = (
        model.seeing_median * np.exp(rng.normal(0.0, 0.18, n_nights))[night_of] * np.exp(rng.normal(0, 0.05, len(time)))
    )
    depth = np.asarray(model.depth)[_local_band(model, band)]
    moon = np.asarray(model.moon_penalty)[_local_band(model, band)] * moon_illumination(time)
    bad = rng.exponential(0.12, len(time)) * (rng.uniform(size=len(time)) < 0.3)
    limit = depth - moon + quality - 2.5 * np.log10(seeing / model.seeing_median) - bad + rng.normal(0, 0.08, len(time))
    return Epochs(time, band, limit, seeing)


def _local_band(model: SurveyModel, band: np.ndarray) -> np.ndarray:
    lookup = np.zeros(6, dtype=np.int64)
    for j, b in enumerate(model.bands):
        lookup[BAND_INDEX[b]] = j
    return lookup[band]


def _visit_nights(
    rng: np.random.Generator,
    t0: float,
    t1: float,
    ra: float,
    dec: float,
    latitude: float,
    gaps: np.ndarray,
    gap_p: np.ndarray,
    weather_loss: float,
) -> np.ndarray:
    n_max = int((t1 - t0) / gaps.min()) + 2
    start = np.floor(t0) + rng.integers(0, int(gaps.max()))
    nights = start + np.cumsum(rng.choice(gaps, size=n_max, p=gap_p))
    nights = nights[nights < t1]
    nights = nights[in_season(nights, ra, dec, latitude)]
    # weather: independent losses plus occasional multi-night bad spells
    keep = rng.uniform(size=len(nights)) > weather_loss
    if len(nights):
        for spell in rng.uniform(t0, t1, rng.poisson((t1 - t0) / 120.0)):
            keep &= ~((nights >= spell) & (nights < spell + rng.uniform(3, 10)))
    return nights[keep]


def _ztf_visits(
    rng: np.random.Generator, t0: float, t1: float, ra: float, dec: float, model: SurveyModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nights = _visit_nights(
        rng, t0, t1, ra, dec, model.latitude, np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.2, 0.35, 0.3, 0.15]), 0.2
    )
    n = len(nights)
    g_idx, r_idx, i_idx = BAND_INDEX["g"], BAND_INDEX["r"], BAND_INDEX["i"]
    start = nights + 0.66 + rng.uniform(0.0, 0.24, n)  # Palomar night in UTC ~ JD fraction .66-.95
    sep = rng.uniform(0.02, 0.06, n)
    g_first = rng.uniform(size=n) < 0.5
    has_g = rng.uniform(size=n) < 0.85
    has_r = rng.uniform(size=n) < 0.9
    has_r |= ~has_g
    has_i = rng.uniform(size=n) < 0.05
    second = rng.uniform(size=n) < 0.15  # a second same-night visit (partnership / high-cadence)
    second_band = np.where(rng.uniform(size=n) < 0.5, g_idx, r_idx)
    t = [
        np.where(g_first, start, start + sep)[has_g],
        np.where(g_first, start + sep, start)[has_r],
        (start + 2 * sep + 0.01)[has_i],
        (start + rng.uniform(0.08, 0.2, n))[second],
    ]
    b = [
        np.full(has_g.sum(), g_idx),
        np.full(has_r.sum(), r_idx),
        np.full(has_i.sum(), i_idx),
        second_band[second],
    ]
    night_id = np.arange(n)
    nid = [night_id[has_g], night_id[has_r], night_id[has_i], night_id[second]]
    time = np.concatenate(t)
    order = np.argsort(time, kind="stable")
    band = np.concatenate(b).astype(np.int8)[order]
    return time[order], band, np.concatenate(nid)[order]


_LSST_BAND_P = np.array([0.07, 0.1, 0.22, 0.22, 0.2, 0.19])


def _lsst_visits(
    rng: np.random.Generator, t0: float, t1: float, ra: float, dec: float, model: SurveyModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # rolling cadence: alternate dense and sparse years with a declination-dependent phase
    nights = _visit_nights(
        rng,
        t0,
        t1,
        ra,
        dec,
        model.latitude,
        np.array([1.0, 2.0, 3.0, 4.0, 6.0]),
        np.array([0.25, 0.3, 0.2, 0.15, 0.1]),
        0.2,
    )
    year_phase = (np.floor((nights - 2460800.0) / 365.25) + (dec < -30)) % 2
    keep = rng.uniform(size=len(nights)) < np.where(year_phase == 0, 0.9, 0.35)
    nights = nights[keep]
    n = len(nights)
    start = nights + 0.5 + rng.uniform(0.0, 0.3, n)
    b1 = rng.choice(6, size=n, p=_LSST_BAND_P)
    b2 = np.where(rng.uniform(size=n) < 0.3, b1, rng.choice(6, size=n, p=_LSST_BAND_P))
    single = rng.uniform(size=n) < 0.15  # visit pair not completed
    t2 = start + rng.uniform(0.015, 0.035, n)
    time = np.concatenate([start, t2[~single]])
    band = np.concatenate([b1, b2[~single]]).astype(np.int8)
    nid = np.concatenate([np.arange(n), np.arange(n)[~single]])
    order = np.argsort(time, kind="stable")
    return time[order], band[order], nid[order]


def observe(
    model: SurveyModel, rng: np.random.Generator, true_flux: np.ndarray, limit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Measured flux, its error (nJy) and the 5-sigma detection mask for each epoch.

    The background noise is F(limit)/5; the reported error adds a calibration floor.
    A detection is |flux| >= 5 background sigma, i.e. brighter than the epoch limit, and
    survives the near-limit alert efficiency of the survey.
    """
    sigma_bg = 10.0 ** (-0.4 * (limit - NJY_ZERO_POINT)) / 5.0
    sigma_sys = np.abs(true_flux) * model.calibration_floor / 1.0857
    sigma = np.sqrt(sigma_bg**2 + sigma_sys**2)
    flux = true_flux + rng.normal(0.0, 1.0, len(true_flux)) * sigma
    detected = np.abs(flux) >= 5.0 * sigma_bg
    if model.efficiency_offset > 0 and detected.any():
        margin = 2.5 * np.log10(np.maximum(np.abs(flux), 1e-9) / (5.0 * sigma_bg))  # mag above the limit
        keep = rng.uniform(size=len(flux)) < 1 / (
            1 + np.exp(-(margin - model.efficiency_offset) / model.efficiency_width)
        )
        detected &= keep
    return flux, sigma, detected
