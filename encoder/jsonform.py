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

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from encoder.lightcurve import (
    BANDS,
    MAX_OBJECT_ID_LENGTH,
    MAX_POINTS,
    META_FIELDS,
    MJD_OFFSET,
    STAMP_KINDS,
    LightCurve,
    LightCurveError,
)
from encoder.readers import meta_matrix

MAX_STAMP_BYTES = 256 * 1024

_EXAMPLE = {
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
    band: str = Field(..., description=f"Band name, one of {list(BANDS)} (ZTF: g, r, i)", max_length=8)
    mag: float | None = Field(None, description="PSF magnitude (AB)")
    mag_err: float | None = Field(None, description="1-sigma magnitude error, > 0")
    flux: float | None = Field(None, description="Difference-image flux in nJy (may be negative)")
    flux_err: float | None = Field(None, description="1-sigma flux error in nJy, > 0")
    negative: bool = Field(False, description="mag measures a negative difference flux (ZTF isdiffpos='f')")
    meta: dict[str, float | None] | None = Field(
        None, description=f"Alert metadata by name: any of {list(META_FIELDS)}; null or -999 means missing"
    )

    @model_validator(mode="after")
    def _one_time_one_photometry(self) -> Detection:
        if (self.jd is None) == (self.mjd is None):
            raise ValueError("give exactly one of jd or mjd")
        has_mag = self.mag is not None or self.mag_err is not None
        has_flux = self.flux is not None or self.flux_err is not None
        if has_mag == has_flux:
            raise ValueError("give mag and mag_err, or flux and flux_err (not both)")
        if has_mag and (self.mag is None or self.mag_err is None):
            raise ValueError("mag needs mag_err")
        if has_flux and (self.flux is None or self.flux_err is None):
            raise ValueError("flux needs flux_err")
        if self.meta:
            unknown = sorted(set(self.meta) - set(META_FIELDS))
            if unknown:
                raise ValueError(f"unknown meta fields {unknown[:5]}; known: {list(META_FIELDS)}")
        return self

    @property
    def time(self) -> float:
        return self.jd if self.jd is not None else self.mjd + MJD_OFFSET  # type: ignore[operator]


class UpperLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jd: float | None = None
    mjd: float | None = None
    band: str = Field(..., max_length=8)
    mag: float = Field(..., description="Limiting magnitude (5-sigma) of the non-detection")

    @model_validator(mode="after")
    def _one_time(self) -> UpperLimit:
        if (self.jd is None) == (self.mjd is None):
            raise ValueError("give exactly one of jd or mjd")
        return self

    @property
    def time(self) -> float:
        return self.jd if self.jd is not None else self.mjd + MJD_OFFSET  # type: ignore[operator]


class Stamps(BaseModel):
    model_config = ConfigDict(extra="forbid")

    science: str | None = Field(None, description="base64 of the gzipped FITS cutout")
    template: str | None = None
    difference: str | None = None


class LightCurveIn(BaseModel):
    """A light curve in the JSON form."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    object_id: str = Field(..., min_length=1, max_length=MAX_OBJECT_ID_LENGTH, examples=["ZTF21aaaaaaa"])
    survey: str = Field("ztf", description="ztf or lsst", examples=["ztf"])
    ra: float | None = Field(None, description="degrees")
    dec: float | None = Field(None, description="degrees")
    detections: list[Detection] = Field(..., min_length=1, max_length=MAX_POINTS)
    upper_limits: list[UpperLimit] = Field(default_factory=list, max_length=MAX_POINTS)
    stamps: Stamps | None = None
    label: str | None = Field(None, description="Known class, if any (stored, never used to encode)")

    def to_lightcurve(self) -> LightCurve:
        """Validated :class:`LightCurve`; raises :class:`LightCurveError` naming the field."""
        dets = self.detections
        kinds = {d.mag is not None for d in dets}
        if len(kinds) > 1:
            raise LightCurveError("detections", "mix of mag and flux detections; use one per light curve")
        time = np.array([d.time for d in dets])
        band = np.array([d.band for d in dets])
        meta = None
        if any(d.meta for d in dets):  # LightCurve.build turns sentinels (-999 ...) and inf/NaN into NaN
            meta = meta_matrix([d.meta or {} for d in dets], META_FIELDS)
        phot: dict[str, np.ndarray] = {}
        if kinds == {True}:
            phot["mag"] = np.array([d.mag for d in dets])
            phot["mag_err"] = np.array([d.mag_err for d in dets])
            phot["negative"] = np.array([d.negative for d in dets])
        else:
            phot["flux"] = np.array([d.flux for d in dets])
            phot["flux_err"] = np.array([d.flux_err for d in dets])
        ul = self.upper_limits
        return LightCurve.build(
            self.object_id, self.survey, time, band, **phot, meta=meta,
            ul_time=np.array([u.time for u in ul]), ul_band=np.array([u.band for u in ul]),
            ul_mag=np.array([u.mag for u in ul]), ra=self.ra, dec=self.dec,
            stamps=_decode_stamps(self.stamps), label=self.label,
        )  # fmt: skip

    @classmethod
    def from_lightcurve(cls, lc: LightCurve, *, include_stamps: bool = False) -> LightCurveIn:
        """The JSON form of a light curve (magnitudes where the flux is positive, else flux)."""
        mag, mag_err = lc.mag, lc.mag_err
        use_mag = lc.survey == "ztf" and bool(np.all(np.isfinite(mag)))
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
            {"object_id": lc.object_id, "survey": lc.survey, "ra": lc.ra, "dec": lc.dec,
             "detections": dets, "upper_limits": uls, "stamps": stamps, "label": lc.label}
        )  # fmt: skip


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
