"""The seeded synthetic survey: configuration, per-object generation, parquet I/O."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from encoder.lightcurve import NJY_ZERO_POINT, LightCurve
from encoder.readers.lightcurve_parquet import read_lightcurves_parquet, write_lightcurves_parquet
from encoder.taxonomy import FINE_CLASSES

from .cadence import SURVEYS, Epochs, observe, sample_epochs
from .metadata import make_metadata
from .models import SAMPLERS, Context, Source, sample_flare
from .stamps import make_stamps

#: A realistic alert-stream mix: SNe Ia dominate the SNe, anomalies (KN, microlensing,
#: flares, PISN) are ~1.5 %.
DEFAULT_CLASS_WEIGHTS: dict[str, float] = {
    "SNIa": 0.42, "SNII": 0.14, "SNIbc": 0.06, "SNIIn": 0.03, "SLSN": 0.02, "TDE": 0.01,
    "AGN": 0.12, "CV": 0.1, "Periodic": 0.035,
    "KN": 0.002, "Microlensing": 0.006, "Flare": 0.005, "PISN": 0.002,
}  # fmt: skip
#: Galactic sources: concentrated toward the Galactic plane.
GALACTIC_CLASSES = frozenset({"CV", "Microlensing", "Flare", "Periodic"})


@dataclass
class SurveyConfig:
    survey: str = "ztf"  # "ztf" | "lsst"
    n_objects: int = 1000
    class_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CLASS_WEIGHTS))
    seed: int = 0
    with_stamps: bool = False
    with_metadata: bool = True
    min_detections: int = 1
    #: Keep only objects whose brightest detection is brighter than this (e.g. 19.0 for a
    #: Bright-Transient-Survey-like sample); None keeps everything detected.
    max_peak_mag: float | None = None
    duration_days: float = 3 * 365.25
    start_jd: float | None = None  # default: 2019-01-01 (ZTF), 2026-01-01 (LSST)
    #: Upper limits kept before the first detection (alert prv_candidates reach back 30 d on
    #: ZTF); None keeps all. Non-detections after the last detection are never kept: no
    #: alert would have carried them.
    ul_history_days: float | None = 30.0
    #: Fraction of detections with the alert-only metadata fields missing (prv_candidates).
    meta_missing_fraction: float = 0.6
    #: Attempts per object (fresh parameters) before giving up on a class draw.
    max_attempts: int = 50

    def __post_init__(self) -> None:
        if self.survey not in SURVEYS:
            raise ValueError(f"survey must be one of {sorted(SURVEYS)}, got {self.survey!r}")
        unknown = set(self.class_weights) - set(FINE_CLASSES)
        if unknown:
            raise ValueError(f"unknown classes {sorted(unknown)}; expected some of {FINE_CLASSES}")
        if not any(w > 0 for w in self.class_weights.values()) or any(w < 0 for w in self.class_weights.values()):
            raise ValueError("class_weights must be >= 0 with at least one > 0")
        if self.min_detections < 1:
            raise ValueError("min_detections must be >= 1")
        if self.start_jd is None:
            self.start_jd = 2458484.5 if self.survey == "ztf" else 2461041.5

    @property
    def t_min(self) -> float:
        return float(self.start_jd)  # type: ignore[arg-type]

    @property
    def t_max(self) -> float:
        return float(self.start_jd) + self.duration_days  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# ---------------------------------------------------------------------- sky positions
def _galactic_to_equatorial(l_deg: float, b_deg: float) -> tuple[float, float]:
    l, b = np.radians(l_deg), np.radians(b_deg)
    # rows: equatorial unit vectors expressed in Galactic coordinates (J2000)
    m = np.array(
        [
            [-0.0548755604, +0.4941094279, -0.8676661490],
            [-0.8734370902, -0.4448296300, -0.1980763734],
            [-0.4838350155, +0.7469822445, +0.4559837762],
        ]
    )
    v = np.array([np.cos(b) * np.cos(l), np.cos(b) * np.sin(l), np.sin(b)])
    x, y, z = m @ v
    return float(np.degrees(np.arctan2(y, x)) % 360.0), float(np.degrees(np.arcsin(np.clip(z, -1, 1))))


def _sky_position(rng: np.random.Generator, cls: str, dec_range: tuple[float, float]) -> tuple[float, float, float]:
    """(ra, dec, galactic latitude): isotropic for extragalactic sources, near the plane for stars."""
    s_lo, s_hi = np.sin(np.radians(dec_range[0])), np.sin(np.radians(dec_range[1]))
    for _ in range(100):
        if cls in GALACTIC_CLASSES:
            b = rng.laplace(0.0, 4.0 if cls == "Microlensing" else 12.0)
            lon = rng.normal(0.0, 15.0) % 360 if cls == "Microlensing" else rng.uniform(0, 360)
            ra, dec = _galactic_to_equatorial(lon, float(np.clip(b, -89.9, 89.9)))
            if dec_range[0] <= dec <= dec_range[1]:
                return ra, dec, float(b)
        else:
            ra = float(rng.uniform(0.0, 360.0))
            dec = float(np.degrees(np.arcsin(rng.uniform(s_lo, s_hi))))
            return ra, dec, 30.0
    return float(rng.uniform(0, 360)), float(np.mean(dec_range)), 0.0


# ---------------------------------------------------------------------- one object
def generate_object(
    cls_name: str, rng: np.random.Generator, config: SurveyConfig, object_id: str = "synthetic", index: int = 0
) -> LightCurve | None:
    """One light curve of class ``cls_name``, or None when it is never detected enough."""
    model = SURVEYS[config.survey]
    ra, dec, b = _sky_position(rng, cls_name, model.dec_range)
    faintest = max(model.depth) + 0.5
    peak_limit = min(faintest, config.max_peak_mag) if config.max_peak_mag is not None else faintest
    ctx = Context(config.survey, config.t_min, config.t_max, peak_limit, ra, dec)
    if cls_name == "Flare":
        epochs = sample_epochs(model, rng, config.t_min, config.t_max, ra, dec)
        source: Source = sample_flare(rng, ctx, epochs.time)
    else:
        source = SAMPLERS[cls_name](rng, ctx)
        t0 = max(source.t_start, config.t_min)
        t1 = min(source.t_end, config.t_max)
        epochs = sample_epochs(model, rng, t0, t1, ra, dec)
    source.params["b"] = b
    if len(epochs) < config.min_detections:
        return None
    true_flux = source.flux(epochs.time, epochs.band)
    flux, flux_err, detected = observe(model, rng, true_flux, epochs.limit)
    n_det = int(detected.sum())
    if n_det < config.min_detections:
        return None
    det = np.flatnonzero(detected)
    if config.max_peak_mag is not None:
        peak = NJY_ZERO_POINT - 2.5 * np.log10(np.max(flux[det]))
        if not peak <= config.max_peak_mag:
            return None
    return _assemble(rng, config, model, source, epochs, flux, flux_err, detected, det, object_id, index, ra, dec)


def _assemble(
    rng: np.random.Generator,
    config: SurveyConfig,
    model,
    source: Source,
    epochs: Epochs,
    flux: np.ndarray,
    flux_err: np.ndarray,
    detected: np.ndarray,
    det: np.ndarray,
    object_id: str,
    index: int,
    ra: float,
    dec: float,
) -> LightCurve:
    t_first, t_last = epochs.time[det[0]], epochs.time[det[-1]]
    ul = ~detected & (epochs.time <= t_last)
    if config.ul_history_days is not None:
        ul &= epochs.time >= t_first - config.ul_history_days
    meta = None
    if config.with_metadata:
        # history at the position before the simulated window (variable sources were there before)
        variable = source.host.kind == "star" or source.host.point_mag is not None
        ndet0 = rng.poisson(40) if variable else 0
        ncov0 = rng.poisson(300 if config.survey == "ztf" else 60)
        ndet_before = ndet0 + np.arange(len(det))
        ncov_before = ncov0 + det + 1
        meta = make_metadata(
            rng,
            source,
            model,
            epochs.band[det],
            flux[det],
            flux_err[det],
            epochs.limit[det],
            epochs.fwhm[det],
            ndet_before,
            ncov_before,
            config.meta_missing_fraction,
        )
    stamps = None
    if config.with_stamps:
        last = det[-1]
        stamps = make_stamps(
            rng,
            source,
            model,
            float(flux[last]),
            int(epochs.band[last]),
            float(epochs.fwhm[last]),
            float(epochs.limit[last]),
        )
    alert_id = 10**18 + (config.seed % 10_000) * 10**14 + index * 20_000 + np.arange(len(det), dtype=np.int64)
    return LightCurve.build(
        object_id,
        config.survey,
        epochs.time[det],
        epochs.band[det],
        flux=flux[det],
        flux_err=flux_err[det],
        meta=meta,
        ul_time=epochs.time[ul],
        ul_band=epochs.band[ul],
        ul_mag=epochs.limit[ul],
        ra=ra,
        dec=dec,
        stamps=stamps,
        label=source.cls,
        alert_id=alert_id,
    )


# ---------------------------------------------------------------------- the survey
def _class_draws(config: SurveyConfig) -> list[str]:
    names = [c for c in FINE_CLASSES if config.class_weights.get(c, 0) > 0]
    w = np.array([config.class_weights[c] for c in names], dtype=np.float64)
    rng = np.random.default_rng([config.seed, 0x5EED])
    return [names[i] for i in rng.choice(len(names), size=config.n_objects, p=w / w.sum())]


def object_id_for(config: SurveyConfig, index: int) -> str:
    """'synztf<seed>_<index>' for ZTF; an integer (as LSST diaObjectIds are) for LSST."""
    if config.survey == "lsst":
        return str(9 * 10**17 + (config.seed % 10**6) * 10**10 + index)
    return f"synztf{config.seed}_{index:07d}"


def iter_survey(config: SurveyConfig) -> Iterator[LightCurve]:
    """Yield ``config.n_objects`` light curves, deterministically for ``config.seed``.

    Object i depends only on (seed, i): its class is drawn from the weights, then
    parameters are redrawn (up to ``max_attempts`` times) until the object has
    ``min_detections`` detections (and passes ``max_peak_mag``), so the class mix of the
    output follows ``class_weights``. A class that never passes is skipped with a warning.
    """
    for i, cls_name in enumerate(_class_draws(config)):
        rng = np.random.default_rng([config.seed, i])
        object_id = object_id_for(config, i)
        for _ in range(config.max_attempts):
            lc = generate_object(cls_name, rng, config, object_id=object_id, index=i)
            if lc is not None:
                yield lc
                break


def generate_survey(config: SurveyConfig, progress: Callable[[int], None] | None = None) -> list[LightCurve]:
    """All light curves of the survey (label = fine class); ``progress(1)`` per object."""
    out = []
    for lc in iter_survey(config):
        out.append(lc)
        if progress is not None:
            progress(1)
    return out


# ---------------------------------------------------------------------- parquet
def write_parquet(lcs: list[LightCurve], path: str | Path, config: SurveyConfig | None = None) -> None:
    """The survey in RTF's light-curve parquet form (with the generating config as metadata)."""
    write_lightcurves_parquet(lcs, path, {"synthetic_config": config.to_json()} if config else None)


read_parquet = read_lightcurves_parquet
