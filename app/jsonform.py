"""The JSON form of a light curve, as posted over HTTP; pydantic generates its schema.

```json
{"object_id": "ZTF21aaaaaaa", "survey": "ztf", "ra": 150.1, "dec": 2.2,
 "detections": [{"jd": 2459000.51, "band": "g", "mag": 19.2, "mag_err": 0.05,
                 "meta": {"rb": 0.93, "sgscore1": 0.1}}],
 "upper_limits": [{"jd": 2458998.5, "band": "r", "mag": 20.6}],
 "stamps": {"science": "<base64 gzipped FITS>", "template": "...", "difference": "..."}}
```
Only ``object_id`` and ``detections`` are required. A detection has ``jd`` or ``mjd``,
and ``mag`` + ``mag_err`` or ``flux`` + ``flux_err`` (nJy). Values the structure
allows but physics does not (NaN, non-positive errors, bands the survey lacks) are
checked by :meth:`encoder.lightcurve.LightCurve.build`, whose errors name the field.
"""

from __future__ import annotations

import base64
import binascii
from itertools import repeat
from operator import is_not

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from encoder.lightcurve import (
    BANDS,
    MAG_RANGE,
    MAX_LABEL_LENGTH,
    MAX_OBJECT_ID_LENGTH,
    MAX_POINTS,
    META_FIELDS,
    MJD_OFFSET,
    STAMP_KINDS,
    ZTF_FID,
    LightCurve,
    LightCurveError,
    mag_to_njy,
    magerr_to_njy,
)
from encoder.readers import meta_matrix

MAX_STAMP_BYTES = 256 * 1024

EXAMPLE: JsonDict = {
    "object_id": "ZTF21aaaaaaa",
    "survey": "ztf",
    "ra": 150.1,
    "dec": 2.2,
    "detections": [
        {"jd": 2459000.51, "band": "g", "mag": 19.2, "mag_err": 0.05, "meta": {"rb": 0.93, "sgscore1": 0.1}},
        {"jd": 2459002.62, "band": "r", "mag": 18.9, "mag_err": 0.04},
        {"jd": 2459005.55, "band": "g", "mag": 18.7, "mag_err": 0.04},
    ],
    "upper_limits": [{"jd": 2458998.5, "band": "r", "mag": 20.6}],
}


class Detection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jd: float | None = Field(None, description="Julian date of the exposure")
    mjd: float | None = Field(None, description="Modified Julian date (jd - 2400000.5); give jd or mjd")
    band: str | None = Field(None, description=f"Band name, one of {list(BANDS)} (ZTF: g, r, i)", max_length=8)
    fid: int | None = Field(None, ge=1, le=3, description="ZTF filter id instead of band: 1 g, 2 r, 3 i")
    mag: float | None = Field(
        None,
        description="PSF magnitude (AB); ZTF's name magpsf is accepted",
        validation_alias=AliasChoices("mag", "magpsf"),
    )
    mag_err: float | None = Field(
        None,
        description="1-sigma magnitude error, > 0; ZTF's name sigmapsf is accepted",
        validation_alias=AliasChoices("mag_err", "sigmapsf"),
    )
    flux: float | None = Field(None, description="Difference-image flux in nJy (may be negative)")
    flux_err: float | None = Field(None, description="1-sigma flux error in nJy, > 0")
    negative: bool = Field(False, description="mag measures a negative difference flux (ZTF isdiffpos='f')")
    meta: dict[str, float | None] | None = Field(
        None, description=f"Alert metadata by name: any of {list(META_FIELDS)}; null or -999 means missing"
    )

    # Which fields go together (one time, one kind of photometry, known meta names) is checked for all
    # detections at once by LightCurveIn.to_lightcurve: a per-detection validator doubled the time
    # pydantic took on a 343-detection light curve (3.0 vs 1.5 ms).


class UpperLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jd: float | None = None
    mjd: float | None = None
    band: str | None = Field(None, max_length=8)
    fid: int | None = Field(None, ge=1, le=3, description="ZTF filter id instead of band: 1 g, 2 r, 3 i")
    mag: float = Field(
        ...,
        description="Limiting magnitude (5-sigma) of the non-detection; ZTF's diffmaglim is accepted",
        validation_alias=AliasChoices("mag", "diffmaglim"),
    )


class Stamps(BaseModel):
    model_config = ConfigDict(extra="forbid")

    science: str | None = Field(None, description="base64 of the gzipped FITS cutout")
    template: str | None = None
    difference: str | None = None


class LightCurveIn(BaseModel):
    """A light curve in the JSON form."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    object_id: str = Field(..., min_length=1, max_length=MAX_OBJECT_ID_LENGTH, examples=["ZTF21aaaaaaa"])
    survey: str = Field("ztf", description="ztf or lsst", examples=["ztf"])
    ra: float | None = Field(None, description="degrees")
    dec: float | None = Field(None, description="degrees")
    detections: list[Detection] = Field(..., min_length=1, max_length=MAX_POINTS)
    upper_limits: list[UpperLimit] = Field(default_factory=list, max_length=MAX_POINTS)
    stamps: Stamps | None = None
    label: str | None = Field(None, max_length=MAX_LABEL_LENGTH,
                              description="Known class, if any (stored, never used to encode)")

    def to_lightcurve(self) -> LightCurve:
        """Validated :class:`LightCurve`; raises :class:`LightCurveError` naming the field."""
        return _lightcurve_from_rows(
            self.object_id,
            self.survey,
            [d.__dict__ for d in self.detections],
            [u.__dict__ for u in self.upper_limits],
            ra=self.ra,
            dec=self.dec,
            stamps=_decode_stamps(self.stamps),
            label=self.label,
        )

    @classmethod
    def from_lightcurve(cls, lc: LightCurve, *, include_stamps: bool = False) -> LightCurveIn:
        """The JSON form of a light curve (magnitudes where the flux is positive, else flux)."""
        mag, mag_err = lc.mag, lc.mag_err
        use_mag = lc.survey == "ztf" and _mag_form_round_trips(mag, mag_err, lc.flux, lc.flux_err)
        dets = []
        for i in range(len(lc)):
            meta = None
            if lc.meta is not None:
                meta = {f: float(v) for f, v in zip(META_FIELDS, lc.meta[i], strict=True) if np.isfinite(v)} or None
            d = {"jd": float(lc.time[i]), "band": BANDS[lc.band[i]], "meta": meta}
            if use_mag:
                d |= {"mag": float(mag[i]), "mag_err": float(mag_err[i])}
            else:
                d |= {"flux": float(lc.flux[i]), "flux_err": float(lc.flux_err[i])}
            dets.append(d)
        uls = [
            {"jd": float(t), "band": BANDS[b], "mag": float(m)}
            for t, b, m in zip(lc.ul_time, lc.ul_band, lc.ul_mag, strict=True)
        ]
        stamps = None
        if include_stamps and lc.stamps:
            stamps = {k: base64.b64encode(v).decode() for k, v in lc.stamps.items()}
        return cls.model_validate(
            {
                "object_id": lc.object_id,
                "survey": lc.survey,
                "ra": lc.ra,
                "dec": lc.dec,
                "detections": dets,
                "upper_limits": uls,
                "stamps": stamps,
                "label": lc.label,
            }
        )


def _mag_form_round_trips(mag: np.ndarray, mag_err: np.ndarray, flux: np.ndarray, flux_err: np.ndarray) -> bool:
    """Whether magnitudes are a faithful form of these fluxes: positive fluxes whose magnitudes and
    errors pass the posting checks and convert back to the same fluxes and flux errors (within
    1e-9 relative; a subnormal magnitude error, e.g., keeps too few bits). Else: the flux form."""
    with np.errstate(all="ignore"):
        ok = np.isfinite(mag) & (mag >= MAG_RANGE[0]) & (mag <= MAG_RANGE[1]) & (mag_err > 0) & (mag_err <= 10.0)
        if not ok.all():
            return False
        back, back_err = mag_to_njy(mag), magerr_to_njy(mag, mag_err)
        return bool(
            np.all(back_err > 0)
            and np.allclose(back, flux, rtol=1e-9, atol=0)
            and np.allclose(back_err, flux_err, rtol=1e-9, atol=0)
        )


_META_NAMES = frozenset(META_FIELDS)
_PHOTOMETRY = ("jd", "mjd", "mag", "mag_err", "flux", "flux_err")


def _lightcurve_from_rows(
    object_id: str,
    survey: str,
    detections: list[dict],
    upper_limits: list[dict],
    *,
    ra: float | None = None,
    dec: float | None = None,
    stamps: dict[str, bytes] | None = None,
    label: str | None = None,
) -> LightCurve:
    """The light curve of detections and upper limits given as dicts (``Detection.__dict__``).

    Checks what goes together (one time, one kind of photometry, known metadata names) for all points
    at once, naming the first point at fault, and leaves the physics to :meth:`LightCurve.build`.
    """
    n = len(detections)
    col = {name: [d.get(name) for d in detections] for name in _PHOTOMETRY}
    given = {name: np.fromiter(map(is_not, values, repeat(None)), dtype=bool, count=n) for name, values in col.items()}
    has_mag, has_flux = given["mag"] | given["mag_err"], given["flux"] | given["flux_err"]
    _first_bad("detections", given["jd"] == given["mjd"], "give exactly one of jd or mjd")
    _first_bad("detections", has_mag == has_flux, "give mag and mag_err, or flux and flux_err (not both)")
    _first_bad("detections", has_mag & ~(given["mag"] & given["mag_err"]), "mag needs mag_err")
    _first_bad("detections", has_flux & ~(given["flux"] & given["flux_err"]), "flux needs flux_err")
    if has_mag.any() and has_flux.any():
        raise LightCurveError("detections", "mix of mag and flux detections; use one per light curve")
    metas = [d.get("meta") for d in detections]
    meta = None
    if any(metas):  # LightCurve.build turns sentinels (-999 ...) and inf/NaN into NaN
        unknown = set().union(*filter(None, metas)) - _META_NAMES
        if unknown:
            i = next(i for i, m in enumerate(metas) if m and not _META_NAMES.issuperset(m))
            msg = f"unknown meta fields {sorted(unknown)[:5]}; known: {list(META_FIELDS)}"
            raise LightCurveError(f"detections[{i}].meta", msg)
        meta = meta_matrix([m or {} for m in metas], META_FIELDS)
    phot: dict[str, np.ndarray] = {}
    if has_mag.any():
        phot["mag"], phot["mag_err"] = (
            np.array(col["mag"], dtype=np.float64),
            np.array(col["mag_err"], dtype=np.float64),
        )
        phot["negative"] = np.array([d.get("negative") or False for d in detections], dtype=bool)
    else:
        phot["flux"], phot["flux_err"] = (
            np.array(col["flux"], dtype=np.float64),
            np.array(col["flux_err"], dtype=np.float64),
        )
    ul_jd, ul_mjd = [u.get("jd") for u in upper_limits], [u.get("mjd") for u in upper_limits]
    ul_has_jd = np.array([v is not None for v in ul_jd], dtype=bool)
    _first_bad(
        "upper_limits",
        ul_has_jd == np.array([v is not None for v in ul_mjd], dtype=bool),
        "give exactly one of jd or mjd",
    )
    return LightCurve.build(
        object_id,
        survey,
        _times(col["jd"], col["mjd"], given["jd"]),
        _bands("detections", detections),
        **phot,
        meta=meta,
        ul_time=_times(ul_jd, ul_mjd, ul_has_jd),
        ul_band=_bands("upper_limits", upper_limits),
        ul_mag=np.array([u["mag"] for u in upper_limits], dtype=np.float64),
        ra=ra,
        dec=dec,
        stamps=stamps,
        label=label,
    )


def _bands(field: str, rows: list[dict]) -> np.ndarray:
    """Band names of the points: ``band``, or ZTF's ``fid`` (exactly one of them per point)."""
    bands = [r["band"] if r["fid"] is None else ZTF_FID[r["fid"]] for r in rows]
    for i, r in enumerate(rows):
        if (r["band"] is None) == (r["fid"] is None):
            raise LightCurveError(f"{field}[{i}]", "give exactly one of band or fid")
    return np.array(bands)


def _first_bad(field: str, bad: np.ndarray, message: str) -> None:
    if bad.any():
        raise LightCurveError(f"{field}[{int(np.argmax(bad))}]", message)


def _times(jd: list[float | None], mjd: list[float | None], has_jd: np.ndarray) -> np.ndarray:
    """Julian dates from per-point jd or mjd (exactly one of them given, checked before)."""
    if has_jd.all():
        return np.array(jd, dtype=np.float64)
    return np.where(has_jd, np.array(jd, dtype=np.float64), np.array(mjd, dtype=np.float64) + MJD_OFFSET)


def _decode_stamps(stamps: Stamps | None) -> dict[str, bytes] | None:
    if stamps is None:
        return None
    out: dict[str, bytes] = {}
    for kind in STAMP_KINDS:
        text = getattr(stamps, kind)
        if not text:
            continue
        if len(text) > MAX_STAMP_BYTES * 4 // 3 + 4:
            raise LightCurveError(f"stamps.{kind}", f"larger than {MAX_STAMP_BYTES} bytes")
        try:
            out[kind] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise LightCurveError(f"stamps.{kind}", "not valid base64") from None
    return out or None
