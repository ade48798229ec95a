"""The light-curve data model: one typed object per source, array-backed for speed.

Photometry is stored in one calibrated unit for every survey: AB flux in nanojansky
(nJy), the unit LSST alerts use. ZTF magnitudes convert exactly
(``flux = 10 ** (-0.4 * (mag - 31.4))``); a negative difference flux (ZTF
``isdiffpos = 'f'``, or a negative LSST ``psfFlux``) stays negative, and its magnitude
is NaN. Magnitudes are derived on demand.

Construction through :meth:`LightCurve.build` validates everything and raises
:class:`LightCurveError` naming the offending field (``detections[3].mag_err``); it
sorts detections by time and drops exact (time, band) duplicates rather than rejecting
them, as alert streams repeat history in every packet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeGuard

import numpy as np

Survey = Literal["ztf", "lsst"]

#: Global band vocabulary; the band index of a detection is its position here.
BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
BAND_INDEX: dict[str, int] = {b: i for i, b in enumerate(BANDS)}
SURVEY_BANDS: dict[str, tuple[str, ...]] = {"ztf": ("g", "r", "i"), "lsst": BANDS}
#: ZTF filter ids (fid) to band names.
ZTF_FID: dict[int, str] = {1: "g", 2: "r", 3: "i"}

#: The 30 per-detection alert metadata fields of the seed design, in channel order.
META_FIELDS: tuple[str, ...] = (
    "sgscore1",
    "sgscore2",
    "distpsnr1",
    "distpsnr2",
    "nmtchps",
    "sharpnr",
    "scorr",
    "diffmaglim",
    "sky",
    "ndethist",
    "ncovhist",
    "sigmapsf",
    "chinr",
    "classtar",
    "rb",
    "chipsf",
    "distnr",
    "magnr",
    "fwhm",
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
)
META_INDEX: dict[str, int] = {f: i for i, f in enumerate(META_FIELDS)}

STAMP_KINDS: tuple[str, ...] = ("science", "template", "difference")

#: AB zero point of nJy fluxes: m = 31.4 - 2.5 log10(f / nJy).
NJY_ZERO_POINT = 31.4
MJD_OFFSET = 2400000.5
#: Plausible Julian dates: 1990-01-01 .. 2100-01-01.
JD_RANGE = (2447892.5, 2488069.5)
#: Detections and upper limits per light curve: more is refused, not truncated.
MAX_POINTS = 20_000
MAX_OBJECT_ID_LENGTH = 128
MAG_RANGE = (-5.0, 40.0)
#: Largest |flux| and flux error accepted, in nJy: the flux of the brightest magnitude (-5), so that
#: every stored flux reads back as a magnitude in MAG_RANGE and encodes to a finite fingerprint.
MAX_FLUX = 10.0 ** (-0.4 * (MAG_RANGE[0] - NJY_ZERO_POINT))
MAX_LABEL_LENGTH = 64
#: ZTF and LSST alert metadata sentinel values that mean "missing".
MISSING_SENTINELS = (-999.0, -99.0, -9999.0)


class LightCurveError(ValueError):
    """Invalid light-curve input; ``field`` names where (e.g. ``detections[2].flux_err``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def mag_to_njy(mag: np.ndarray) -> np.ndarray:
    return np.power(10.0, -0.4 * (np.asarray(mag, dtype=np.float64) - NJY_ZERO_POINT))


def magerr_to_njy(mag: np.ndarray, mag_err: np.ndarray) -> np.ndarray:
    return mag_to_njy(mag) * np.asarray(mag_err, dtype=np.float64) * (np.log(10.0) / 2.5)


# The two below compute only where flux > 0 (``where=``) instead of silencing warnings with
# np.errstate: they run per light curve on the ingest path, where errstate's cost showed.
def njy_to_mag(flux: np.ndarray) -> np.ndarray:
    flux = np.asarray(flux, dtype=np.float64)
    pos = flux > 0
    out = np.log10(flux, out=np.full(flux.shape, np.nan), where=pos)
    out[pos] = NJY_ZERO_POINT - 2.5 * out[pos]
    return out


def njyerr_to_mag(flux: np.ndarray, flux_err: np.ndarray) -> np.ndarray:
    flux = np.asarray(flux, dtype=np.float64)
    err = np.broadcast_to(np.asarray(flux_err, dtype=np.float64), flux.shape)
    return np.divide(2.5 / np.log(10.0) * err, flux, out=np.full(flux.shape, np.nan), where=flux > 0)


@dataclass(frozen=True, slots=True, eq=False)
class LightCurve:
    """A source's photometry. Arrays are parallel, sorted by time, (time, band) unique."""

    object_id: str
    survey: Survey
    time: np.ndarray  # float64 JD
    band: np.ndarray  # int8 index into BANDS
    flux: np.ndarray  # float64 nJy (may be negative)
    flux_err: np.ndarray  # float64 nJy, > 0
    meta: np.ndarray | None = None  # float32 (n, len(META_FIELDS)); NaN = missing
    ul_time: np.ndarray = field(default_factory=lambda: np.empty(0))
    ul_band: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int8))
    ul_mag: np.ndarray = field(default_factory=lambda: np.empty(0))  # 5-sigma limiting mag
    ra: float | None = None
    dec: float | None = None
    stamps: dict[str, bytes] | None = None  # gzipped (or plain) FITS bytes per STAMP_KINDS
    label: str | None = None  # class, when known (training / evaluation)
    alert_id: np.ndarray | None = None  # int64 per detection (ZTF candid, LSST diaSourceId)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        object_id: str,
        survey: str,
        time: np.ndarray,
        band: np.ndarray,
        *,
        mag: np.ndarray | None = None,
        mag_err: np.ndarray | None = None,
        flux: np.ndarray | None = None,
        flux_err: np.ndarray | None = None,
        meta: np.ndarray | None = None,
        ul_time: np.ndarray | None = None,
        ul_band: np.ndarray | None = None,
        ul_mag: np.ndarray | None = None,
        ra: float | None = None,
        dec: float | None = None,
        stamps: dict[str, bytes] | None = None,
        label: str | None = None,
        alert_id: np.ndarray | None = None,
        negative: np.ndarray | None = None,
    ) -> LightCurve:
        """Validate, convert to nJy, sort and de-duplicate.

        ``band`` holds names ('g') or indices into :data:`BANDS`. Give either
        ``mag``/``mag_err`` or ``flux``/``flux_err`` (nJy) per light curve; ``negative``
        marks magnitudes of negative difference flux (ZTF ``isdiffpos = 'f'``).
        """
        object_id = _check_object_id(object_id)
        if not _is_survey(survey):
            raise LightCurveError("survey", f"unknown survey {survey!r}; expected one of {list(SURVEY_BANDS)}")
        time = _float_array("detections.jd", time)
        n = len(time)
        if n == 0:
            raise LightCurveError("detections", "a light curve needs at least one detection")
        if n > MAX_POINTS:
            raise LightCurveError("detections", f"{n} detections; at most {MAX_POINTS} are accepted")
        _check_finite("detections", "jd", time)
        _check_range("detections", "jd", time, *JD_RANGE, hint=" (give jd, or mjd)")
        band_idx = _band_indices("detections", band, n, survey)

        if flux is not None or flux_err is not None:
            if flux is None or flux_err is None:
                raise LightCurveError("detections", "flux needs flux_err")
            flux = _float_array("detections.flux", flux, n)
            flux_err = _float_array("detections.flux_err", flux_err, n)
            _check_finite("detections", "flux", flux)
            _check_finite("detections", "flux_err", flux_err)
            _check_range("detections", "flux", flux, -MAX_FLUX, MAX_FLUX, hint=" nJy (magnitude -5)")
            _check_positive("detections", "flux_err", flux_err)
            _check_range("detections", "flux_err", flux_err, 0.0, MAX_FLUX, hint=" nJy")
        elif mag is not None and mag_err is not None:
            mag = _float_array("detections.mag", mag, n)
            mag_err = _float_array("detections.mag_err", mag_err, n)
            _check_finite("detections", "mag", mag)
            _check_finite("detections", "mag_err", mag_err)
            _check_range("detections", "mag", mag, *MAG_RANGE)
            _check_positive("detections", "mag_err", mag_err)
            _check_range("detections", "mag_err", mag_err, 0.0, 10.0)
            flux = mag_to_njy(mag)
            flux_err = magerr_to_njy(mag, mag_err)
            # the flux form must pass the flux checks too (it is what is stored and may be read back)
            bad = (flux_err <= 0) | (flux_err > MAX_FLUX)  # a tiny error underflows, a huge one overflows
            if bad.any():
                i = _first_bad(bad)
                what = "small" if flux_err[i] <= 0 else "large"
                raise LightCurveError(f"detections[{i}].mag_err", f"{mag_err[i]} is too {what} for mag {mag[i]}")
            if negative is not None:
                negative = np.asarray(negative, dtype=bool)
                if negative.shape != (n,):
                    raise LightCurveError("detections.negative", f"{negative.size} values for {n} detections")
                flux = np.where(negative, -flux, flux)
        else:
            raise LightCurveError("detections", "each detection needs mag and mag_err, or flux and flux_err")

        if meta is not None:
            meta = np.asarray(meta, dtype=np.float32)
            if meta.shape != (n, len(META_FIELDS)):
                raise LightCurveError("detections.meta", f"shape {meta.shape}, expected {(n, len(META_FIELDS))}")
            meta = np.where(np.isin(meta, MISSING_SENTINELS) | ~np.isfinite(meta), np.nan, meta).astype(np.float32)
        if alert_id is not None:
            alert_id = np.asarray(alert_id, dtype=np.int64)
            if alert_id.shape != (n,):
                raise LightCurveError("detections.alert_id", f"{alert_id.size} values for {n} detections")

        # sort by time, drop exact (time, band) duplicates keeping the first occurrence
        order = np.lexsort((band_idx, time))
        time, band_idx = time[order], band_idx[order]
        keep = np.ones(n, dtype=bool)
        keep[1:] = (np.diff(time) != 0) | (np.diff(band_idx) != 0)
        sel = order[keep]
        time, band_idx = time[keep], band_idx[keep]
        flux, flux_err = flux[sel], flux_err[sel]
        if meta is not None:
            meta = meta[sel]
        if alert_id is not None:
            alert_id = alert_id[sel]

        ul_t, ul_b, ul_m = _upper_limits(ul_time, ul_band, ul_mag, survey)
        ra, dec = _coordinates(ra, dec)
        if stamps is not None:
            unknown = set(stamps) - set(STAMP_KINDS)
            if unknown:
                raise LightCurveError("stamps", f"unknown stamp kinds {sorted(unknown)}; expected {STAMP_KINDS}")
            stamps = {k: v for k, v in stamps.items() if v}
        label = _check_label(label)
        return cls(
            object_id=object_id,
            survey=survey,
            time=time,
            band=band_idx,
            flux=flux,
            flux_err=flux_err,
            meta=meta,
            ul_time=ul_t,
            ul_band=ul_b,
            ul_mag=ul_m,
            ra=ra,
            dec=dec,
            stamps=stamps or None,
            label=label,
            alert_id=alert_id,
        )

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.time)

    @property
    def mag(self) -> np.ndarray:
        """AB magnitude per detection; NaN where the difference flux is not positive."""
        return njy_to_mag(self.flux)

    @property
    def mag_err(self) -> np.ndarray:
        return njyerr_to_mag(self.flux, self.flux_err)

    @property
    def band_names(self) -> list[str]:
        return [BANDS[i] for i in self.band]

    @property
    def duration(self) -> float:
        return float(self.time[-1] - self.time[0])

    def meta_field(self, name: str) -> np.ndarray:
        """One metadata column (NaN where missing or when there is no metadata)."""
        if self.meta is None:
            return np.full(len(self), np.nan, dtype=np.float32)
        return self.meta[:, META_INDEX[name]]

    def first(self, n: int) -> LightCurve:
        """The light curve as it was known at its n-th detection (for early classification)."""
        if n >= len(self):
            return self
        t_cut = self.time[n - 1]
        return self._select(np.arange(n), self.ul_time <= t_cut)

    def until(self, jd: float) -> LightCurve:
        """Detections and upper limits up to and including ``jd``; at least the first detection."""
        n = max(1, int(np.searchsorted(self.time, jd, side="right")))
        return self._select(np.arange(n), self.ul_time <= jd)

    def _select(self, idx: np.ndarray, ul_mask: np.ndarray) -> LightCurve:
        return LightCurve(
            object_id=self.object_id,
            survey=self.survey,
            time=self.time[idx],
            band=self.band[idx],
            flux=self.flux[idx],
            flux_err=self.flux_err[idx],
            meta=None if self.meta is None else self.meta[idx],
            ul_time=self.ul_time[ul_mask],
            ul_band=self.ul_band[ul_mask],
            ul_mag=self.ul_mag[ul_mask],
            ra=self.ra,
            dec=self.dec,
            stamps=self.stamps,
            label=self.label,
            alert_id=None if self.alert_id is None else self.alert_id[idx],
        )

    def merge(self, other: LightCurve, *, keep_existing: bool = False, max_points: int = MAX_POINTS) -> LightCurve:
        """This light curve with another's detections and limits added (same object).

        A (time, band) point in both is kept once: the other's values (a newer packet), or this
        one's with ``keep_existing`` (a stored history, which a re-post does not change). Only the
        most recent ``max_points`` detections and upper limits are kept. Coordinates, stamps and
        label come from the other light curve where it has them.
        """
        if other.object_id != self.object_id:
            raise LightCurveError("object_id", f"cannot merge {other.object_id!r} into {self.object_id!r}")
        first, second = (self, other) if keep_existing else (other, self)  # build() keeps the first duplicate
        meta = None
        if self.meta is not None or other.meta is not None:
            meta = np.concatenate([_meta_or_nan(first), _meta_or_nan(second)])
        alert_id = None
        if self.alert_id is not None and other.alert_id is not None:
            alert_id = np.concatenate([first.alert_id, second.alert_id])
        time, band = np.concatenate([first.time, second.time]), np.concatenate([first.band, second.band])
        keep = _most_recent_unique(time, band, max_points)
        ul_time = np.concatenate([first.ul_time, second.ul_time])
        ul_band = np.concatenate([first.ul_band, second.ul_band])
        ul_keep = _most_recent_unique(ul_time, ul_band, max_points)
        return LightCurve.build(
            self.object_id,
            self.survey,
            time[keep],
            band[keep],
            flux=np.concatenate([first.flux, second.flux])[keep],
            flux_err=np.concatenate([first.flux_err, second.flux_err])[keep],
            meta=None if meta is None else meta[keep],
            alert_id=None if alert_id is None else alert_id[keep],
            ul_time=ul_time[ul_keep],
            ul_band=ul_band[ul_keep],
            ul_mag=np.concatenate([first.ul_mag, second.ul_mag])[ul_keep],
            ra=other.ra if other.ra is not None else self.ra,
            dec=other.dec if other.dec is not None else self.dec,
            stamps=other.stamps or self.stamps,
            label=other.label or self.label,
        )


# ---------------------------------------------------------------------- helpers
def _most_recent_unique(time: np.ndarray, band: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of the first occurrence of each (time, band) pair, the latest ``max_points`` of them."""
    order = np.lexsort((band, time))  # stable: of duplicates, the first given comes first
    t, b = time[order], band[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (np.diff(t) != 0) | (np.diff(b) != 0)
    return np.sort(order[first][-max_points:]) if max_points > 0 else order[:0]


def _meta_or_nan(lc: LightCurve) -> np.ndarray:
    if lc.meta is not None:
        return lc.meta
    return np.full((len(lc), len(META_FIELDS)), np.nan, dtype=np.float32)


def _is_survey(survey: str) -> TypeGuard[Survey]:
    return survey in SURVEY_BANDS


def _check_object_id(object_id: object) -> str:
    if not isinstance(object_id, str) or not object_id.strip():
        raise LightCurveError("object_id", "must be a non-empty string")
    if len(object_id) > MAX_OBJECT_ID_LENGTH:
        raise LightCurveError("object_id", f"{len(object_id)} characters; at most {MAX_OBJECT_ID_LENGTH}")
    if any(ord(c) < 32 or c == "/" for c in object_id):
        raise LightCurveError("object_id", "must not contain control characters or '/'")
    return object_id


def _check_label(label: object) -> str | None:
    if label is None:
        return None
    if not isinstance(label, str):
        raise LightCurveError("label", "must be a string")
    if len(label) > MAX_LABEL_LENGTH:
        raise LightCurveError("label", f"{len(label)} characters; at most {MAX_LABEL_LENGTH}")
    if any(ord(c) < 32 for c in label):
        raise LightCurveError("label", "must not contain control characters")
    return label


def _float_array(name: str, values: object, n: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LightCurveError(name, f"not numeric ({exc})") from None
    if arr.ndim != 1:
        raise LightCurveError(name, f"expected a 1-d sequence, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise LightCurveError(name, f"{len(arr)} values for {n} detections")
    return arr


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_finite(group: str, name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        i = _first_bad(bad)
        raise LightCurveError(f"{group}[{i}].{name}", f"must be finite, got {arr[i]}")


def _check_positive(group: str, name: str, arr: np.ndarray) -> None:
    bad = arr <= 0
    if bad.any():
        i = _first_bad(bad)
        raise LightCurveError(f"{group}[{i}].{name}", f"must be > 0, got {arr[i]}")


def _check_range(group: str, name: str, arr: np.ndarray, lo: float, hi: float, hint: str = "") -> None:
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        i = _first_bad(bad)
        raise LightCurveError(f"{group}[{i}].{name}", f"{arr[i]} is outside [{lo}, {hi}]{hint}")


def _band_indices(group: str, band: object, n: int, survey: str) -> np.ndarray:
    allowed = SURVEY_BANDS[survey]
    arr = np.asarray(band)
    if arr.shape != (n,):
        raise LightCurveError(f"{group}.band", f"{arr.size} bands for {n} points")
    if arr.dtype.kind in "iu":
        bad = (arr < 0) | (arr >= len(BANDS))
        if bad.any():
            i = _first_bad(bad)
            raise LightCurveError(f"{group}[{i}].band", f"band index {arr[i]} out of range")
        idx = arr.astype(np.int8)
    else:
        names = arr.tolist()
        codes = [BAND_INDEX.get(b) if isinstance(b, str) else None for b in names]
        if None in codes:
            i = codes.index(None)
            raise LightCurveError(f"{group}[{i}].band", f"unknown band {names[i]!r}; {survey} has {list(allowed)}")
        idx = np.array(codes, dtype=np.int8)
    allowed_idx = [BAND_INDEX[b] for b in allowed]
    bad = ~np.isin(idx, allowed_idx)
    if bad.any():
        i = _first_bad(bad)
        raise LightCurveError(f"{group}[{i}].band", f"band {BANDS[idx[i]]!r} is not a {survey} band {list(allowed)}")
    return idx


def _upper_limits(
    t: np.ndarray | None, b: np.ndarray | None, m: np.ndarray | None, survey: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if t is None or len(t) == 0:
        return np.empty(0), np.empty(0, dtype=np.int8), np.empty(0)
    t_arr = _float_array("upper_limits.jd", t)
    n = len(t_arr)
    if n > MAX_POINTS:
        raise LightCurveError("upper_limits", f"{n} upper limits; at most {MAX_POINTS} are accepted")
    m_arr = _float_array("upper_limits.mag", m, n)
    _check_finite("upper_limits", "jd", t_arr)
    _check_range("upper_limits", "jd", t_arr, *JD_RANGE, hint=" (give jd, or mjd)")
    _check_finite("upper_limits", "mag", m_arr)
    _check_range("upper_limits", "mag", m_arr, *MAG_RANGE)
    b_arr = _band_indices("upper_limits", b, n, survey)
    order = np.lexsort((b_arr, t_arr))
    t_arr, b_arr, m_arr = t_arr[order], b_arr[order], m_arr[order]
    keep = np.ones(n, dtype=bool)
    keep[1:] = (np.diff(t_arr) != 0) | (np.diff(b_arr) != 0)
    return t_arr[keep], b_arr[keep], m_arr[keep]


def _coordinates(ra: float | None, dec: float | None) -> tuple[float | None, float | None]:
    if ra is None and dec is None:
        return None, None
    if ra is None or dec is None:
        raise LightCurveError("ra" if ra is None else "dec", "give both ra and dec, or neither")
    ra, dec = float(ra), float(dec)
    if not (np.isfinite(ra) and 0.0 <= ra < 360.0):
        raise LightCurveError("ra", f"{ra} is outside [0, 360)")
    if not (np.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise LightCurveError("dec", f"{dec} is outside [-90, 90]")
    return ra, dec
