"""LightCurve.build validation and the JSON form (app.jsonform.LightCurveIn)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.jsonform import LightCurveIn
from encoder.lightcurve import (
    BANDS,
    MAX_POINTS,
    META_FIELDS,
    META_INDEX,
    MJD_OFFSET,
    LightCurve,
    LightCurveError,
    mag_to_njy,
    njy_to_mag,
)

JD0 = 2459000.5


def build(**kw: object) -> LightCurve:
    args: dict = {"object_id": "ZTF21abc", "survey": "ztf", "time": [JD0, JD0 + 1, JD0 + 2], "band": ["g", "r", "g"]}
    if "flux" not in kw:
        args |= {"mag": [18.0, 18.5, 19.0], "mag_err": [0.1, 0.1, 0.2]}
    args |= kw
    return LightCurve.build(args.pop("object_id"), args.pop("survey"), args.pop("time"), args.pop("band"), **args)


def field_of(exc: pytest.ExceptionInfo) -> str:
    return exc.value.field


def json_lc(**kw: object) -> dict:
    d = {
        "object_id": "ZTF21abc",
        "detections": [
            {"jd": JD0, "band": "g", "mag": 18.0, "mag_err": 0.1},
            {"jd": JD0 + 1, "band": "r", "mag": 18.5, "mag_err": 0.1},
            {"jd": JD0 + 2, "band": "g", "mag": 19.0, "mag_err": 0.2},
        ],
    }
    return d | kw


# ---------------------------------------------------------------------- build: valid input
def test_mag_converts_to_njy() -> None:
    lc = build()
    np.testing.assert_allclose(lc.flux, 10 ** (-0.4 * (np.array([18.0, 18.5, 19.0]) - 31.4)))
    np.testing.assert_allclose(lc.mag, [18.0, 18.5, 19.0])
    np.testing.assert_allclose(lc.mag_err, [0.1, 0.1, 0.2])
    assert mag_to_njy(np.array([31.4]))[0] == pytest.approx(1.0)
    assert lc.band_names == ["g", "r", "g"] and lc.band.dtype == np.int8


def test_mag_and_flux_forms_agree() -> None:
    a = build()
    b = build(flux=a.flux, flux_err=a.flux_err)
    np.testing.assert_allclose(a.flux, b.flux)
    np.testing.assert_allclose(a.flux_err, b.flux_err)


def test_negative_difference_flux() -> None:
    lc = build(negative=[False, True, False])
    assert lc.flux[1] < 0 and np.isnan(lc.mag[1]) and np.isnan(lc.mag_err[1])
    assert lc.flux[1] == pytest.approx(-mag_to_njy(np.array([18.5]))[0])
    assert np.isnan(njy_to_mag(np.array([0.0, -1.0]))).all()


def test_unsorted_and_duplicated_times_are_sorted_and_deduped() -> None:
    lc = build(
        time=[JD0 + 2, JD0, JD0 + 1, JD0, JD0],
        band=["g", "g", "r", "g", "r"],
        mag=[19.0, 18.0, 18.5, 17.0, 18.2],
        mag_err=[0.1] * 5,
        alert_id=[5, 1, 3, 4, 2],
    )
    np.testing.assert_array_equal(lc.time, [JD0, JD0, JD0 + 1, JD0 + 2])
    assert lc.band_names == ["g", "r", "r", "g"]
    np.testing.assert_allclose(lc.mag, [18.0, 18.2, 18.5, 19.0])  # the first of the duplicates is kept
    np.testing.assert_array_equal(lc.alert_id, [1, 2, 3, 5])


def test_upper_limits_sorted_deduped() -> None:
    lc = build(ul_time=[JD0 - 1, JD0 - 2, JD0 - 1], ul_band=["g", "r", "g"], ul_mag=[20.0, 20.5, 21.0])
    np.testing.assert_array_equal(lc.ul_time, [JD0 - 2, JD0 - 1])
    np.testing.assert_array_equal(lc.ul_mag, [20.5, 20.0])


def test_meta_sentinels_become_nan() -> None:
    meta = np.ones((3, len(META_FIELDS)), dtype=np.float32)
    meta[0, META_INDEX["sgscore1"]] = -999.0
    meta[1, META_INDEX["rb"]] = np.inf
    lc = build(meta=meta)
    assert np.isnan(lc.meta_field("sgscore1")[0]) and np.isnan(lc.meta_field("rb")[1])
    assert lc.meta_field("rb")[0] == 1.0 and lc.meta.dtype == np.float32
    with pytest.raises(LightCurveError) as err:
        build(meta=np.ones((3, 5)))
    assert field_of(err) == "detections.meta"


def test_lsst_accepts_all_bands_and_band_indices() -> None:
    lc = build(survey="lsst", time=[JD0 + i for i in range(6)], band=list(BANDS), flux=[1.0] * 6, flux_err=[1.0] * 6)
    assert lc.band_names == list(BANDS)
    lc = build(band=np.array([1, 2, 3]))
    assert lc.band_names == ["g", "r", "i"]


# ---------------------------------------------------------------------- build: invalid input names the field
@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"time": [JD0, np.nan, JD0 + 2]}, "detections[1].jd"),
        ({"time": [JD0, JD0 + 1, np.inf]}, "detections[2].jd"),
        ({"mag": [18.0, np.nan, 19.0]}, "detections[1].mag"),
        ({"mag_err": [0.1, 0.1, np.inf]}, "detections[2].mag_err"),
        ({"mag_err": [0.1, 0.0, 0.1]}, "detections[1].mag_err"),
        ({"mag_err": [-0.1, 0.1, 0.1]}, "detections[0].mag_err"),
        ({"mag_err": [0.1, 0.1, 11.0]}, "detections[2].mag_err"),
        ({"mag": [18.0, 99.0, 19.0]}, "detections[1].mag"),
        ({"flux": [1.0, np.nan, 1.0], "flux_err": [1.0] * 3}, "detections[1].flux"),
        ({"flux": [1.0] * 3, "flux_err": [1.0, 1.0, 0.0]}, "detections[2].flux_err"),
        ({"flux": [1.0] * 3, "flux_err": [1.0, -2.0, 1.0]}, "detections[1].flux_err"),
        ({"flux": [1.0] * 3}, "detections"),
        ({"mag": None, "mag_err": None}, "detections"),
        ({"band": ["g", "q", "r"]}, "detections[1].band"),
        ({"band": ["g", "r", "u"]}, "detections[2].band"),  # an LSST band on ZTF
        ({"band": ["g", "y", "r"]}, "detections[1].band"),
        ({"band": [1, 9, 2]}, "detections[1].band"),
        ({"band": ["g", "r"]}, "detections.band"),
        ({"time": [], "band": [], "mag": [], "mag_err": []}, "detections"),
        ({"time": [JD0 - 2400000.5, JD0 + 1, JD0 + 2]}, "detections[0].jd"),  # an mjd given as jd
        ({"mag": [18.0, 18.5]}, "detections.mag"),
        ({"mag": ["a", "b", "c"]}, "detections.mag"),
        ({"object_id": ""}, "object_id"),
        ({"object_id": "a/b"}, "object_id"),
        ({"object_id": "x" * 200}, "object_id"),
        ({"survey": "atlas"}, "survey"),
        ({"ra": 10.0}, "dec"),
        ({"ra": 400.0, "dec": 0.0}, "ra"),
        ({"ra": 10.0, "dec": -91.0}, "dec"),
        ({"ul_time": [JD0], "ul_band": ["g"], "ul_mag": [np.nan]}, "upper_limits[0].mag"),
        ({"ul_time": [JD0, 5.0], "ul_band": ["g", "g"], "ul_mag": [20.0, 20.0]}, "upper_limits[1].jd"),
        ({"ul_time": [JD0], "ul_band": ["z"], "ul_mag": [20.0]}, "upper_limits[0].band"),
        ({"stamps": {"cutout": b"x"}}, "stamps"),
        ({"negative": [True]}, "detections.negative"),  # used to broadcast to every detection
        ({"alert_id": [1, 2, 3, 4]}, "detections.alert_id"),  # used to be truncated silently
        ({"alert_id": [1]}, "detections.alert_id"),  # used to raise IndexError
    ],
)
def test_invalid_input_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(LightCurveError) as err:
        build(**kw)
    assert field_of(err) == field
    assert str(err.value).startswith(field)


def test_mjd_hint() -> None:
    with pytest.raises(LightCurveError, match="give jd, or mjd"):
        build(time=[59000.0, 59001.0, 59002.0])


def test_too_many_points() -> None:
    n = MAX_POINTS + 1
    t = JD0 + np.arange(n) * 0.01
    with pytest.raises(LightCurveError) as err:
        build(time=t, band=["g"] * n, mag=np.full(n, 18.0), mag_err=np.full(n, 0.1))
    assert field_of(err) == "detections"
    with pytest.raises(LightCurveError) as err:
        build(ul_time=t, ul_band=["g"] * n, ul_mag=np.full(n, 20.0))
    assert field_of(err) == "upper_limits"
    ok = build(
        time=t[:MAX_POINTS], band=["g"] * MAX_POINTS, mag=np.full(MAX_POINTS, 18.0), mag_err=np.full(MAX_POINTS, 0.1)
    )
    assert len(ok) == MAX_POINTS


# ---------------------------------------------------------------------- merge, views
def test_merge_keeps_newest() -> None:
    old = build(stamps={"science": b"old"}, label="SNIa", ra=1.0, dec=2.0, alert_id=[1, 2, 3])
    new = build(
        time=[JD0 + 2, JD0 + 3],
        band=["g", "r"],
        mag=[17.0, 17.5],
        mag_err=[0.05, 0.05],
        stamps={"science": b"new"},
        ra=1.5,
        dec=2.5,
        alert_id=[30, 4],
        ul_time=[JD0 - 1],
        ul_band=["r"],
        ul_mag=[20.0],
    )
    merged = old.merge(new)
    np.testing.assert_array_equal(merged.time, [JD0, JD0 + 1, JD0 + 2, JD0 + 3])
    assert merged.mag[2] == pytest.approx(17.0)  # the newer packet's value of the shared point
    np.testing.assert_array_equal(merged.alert_id, [1, 2, 30, 4])
    assert merged.stamps == {"science": b"new"} and (merged.ra, merged.dec) == (1.5, 2.5)
    assert merged.label == "SNIa" and len(merged.ul_time) == 1
    with pytest.raises(LightCurveError) as err:
        old.merge(build(object_id="other"))
    assert field_of(err) == "object_id"


def test_first_and_until() -> None:
    lc = build(ul_time=[JD0 - 1, JD0 + 1.5], ul_band=["g", "r"], ul_mag=[20.0, 20.0])
    assert len(lc.first(2)) == 2 and len(lc.first(2).ul_time) == 1
    assert len(lc.until(JD0 + 1.7)) == 2 and len(lc.until(JD0 + 1.7).ul_time) == 2
    assert len(lc.until(0.0)) == 1 and lc.duration == 2.0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.sampled_from(["g", "r", "i"]), st.floats(10.0, 25.0), st.floats(0.001, 2.0)),
        min_size=1,
        max_size=40,
    )
)
def test_build_property_sorted_unique_invertible(points: list[tuple[int, str, float, float]]) -> None:
    t, b, m, e = zip(*points, strict=True)
    lc = LightCurve.build("obj", "ztf", JD0 + np.array(t) * 0.5, b, mag=m, mag_err=e)
    keys = list(zip(lc.time.tolist(), lc.band.tolist(), strict=True))
    assert keys == sorted(set(keys))
    assert len(lc) == len({(ti, bi) for ti, bi, *_ in points})
    first = {}
    for ti, bi, mi, _ in points:
        first.setdefault((JD0 + ti * 0.5, BANDS.index(bi)), mi)
    np.testing.assert_allclose(lc.mag, [first[k] for k in keys], rtol=1e-12)


# ---------------------------------------------------------------------- JSON form
def test_json_to_lightcurve_and_back() -> None:
    d = json_lc(
        ra=150.1,
        dec=2.2,
        label="SNIa",
        upper_limits=[{"mjd": 58998.0, "band": "r", "mag": 20.6}],
        stamps={"science": base64.b64encode(b"\x1f\x8bfits").decode()},
    )
    d["detections"][0]["meta"] = {"rb": 0.93, "sgscore1": -999, "ndethist": None}
    lc = LightCurveIn.model_validate(d).to_lightcurve()
    assert len(lc) == 3 and lc.ul_time[0] == 58998.0 + MJD_OFFSET
    assert lc.meta_field("rb")[0] == pytest.approx(0.93) and np.isnan(lc.meta_field("sgscore1")[0])
    assert np.isnan(lc.meta_field("rb")[1]) and lc.stamps == {"science": b"\x1f\x8bfits"}
    back = LightCurveIn.from_lightcurve(lc, include_stamps=True).to_lightcurve()
    np.testing.assert_allclose(back.flux, lc.flux)
    np.testing.assert_array_equal(back.time, lc.time)
    np.testing.assert_array_equal(back.meta, lc.meta)
    assert back.stamps == lc.stamps and back.label == "SNIa" and back.ul_mag[0] == pytest.approx(20.6)


def test_json_mjd_flux_and_negative() -> None:
    d = json_lc(
        survey="lsst",
        detections=[
            {"mjd": 60001.0, "band": "y", "flux": -50.0, "flux_err": 5.0},
            {"mjd": 60000.0, "band": "u", "flux": 150.0, "flux_err": 5.0},
        ],
    )
    lc = LightCurveIn.model_validate(d).to_lightcurve()
    np.testing.assert_array_equal(lc.time, [60000.0 + MJD_OFFSET, 60001.0 + MJD_OFFSET])
    np.testing.assert_array_equal(lc.flux, [150.0, -50.0])
    d = json_lc()
    d["detections"][1]["negative"] = True
    lc = LightCurveIn.model_validate(d).to_lightcurve()
    assert lc.flux[1] < 0
    back = LightCurveIn.from_lightcurve(lc).to_lightcurve()  # negative flux goes out as flux
    np.testing.assert_allclose(back.flux, lc.flux)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mag_err": -1.0}, "detections[2].mag_err"),
        ({"mag_err": 0.0}, "detections[2].mag_err"),
        ({"mag": float("nan")}, "detections[2].mag"),
        ({"mag": float("inf")}, "detections[2].mag"),
        ({"band": "u"}, "detections[2].band"),
        ({"band": "x"}, "detections[2].band"),
        ({"jd": 59000.5}, "detections[2].jd"),
    ],
)
def test_json_errors_name_the_field(change: dict, field: str) -> None:
    d = json_lc()
    d["detections"][2] |= change
    with pytest.raises(LightCurveError) as err:
        LightCurveIn.model_validate(d).to_lightcurve()
    assert field_of(err) == field


@pytest.mark.parametrize(
    ("detection", "field", "message"),
    [
        ({"band": "g", "mag": 18.0, "mag_err": 0.1}, "detections[1]", "exactly one of jd or mjd"),
        ({"jd": JD0, "mjd": 59000.0, "band": "g", "mag": 18.0, "mag_err": 0.1}, "detections[1]", "exactly one"),
        ({"jd": JD0, "band": "g", "mag": 18.0}, "detections[1]", "mag needs mag_err"),
        ({"jd": JD0, "band": "g", "flux": 18.0}, "detections[1]", "flux needs flux_err"),
        ({"jd": JD0, "band": "g", "mag": 18.0, "mag_err": 0.1, "flux": 1.0, "flux_err": 1.0}, "detections[1]", "not both"),
        ({"jd": JD0, "band": "g", "mag": 18.0, "mag_err": 0.1, "meta": {"rb": 0.9, "nonsense": 1.0}},
         "detections[1].meta", "unknown meta fields ['nonsense']"),
    ],
)  # fmt: skip
def test_json_detection_rules_name_the_detection(detection: dict, field: str, message: str) -> None:
    d = json_lc()
    d["detections"][1] = detection
    with pytest.raises(LightCurveError, match=re.escape(message)) as err:
        LightCurveIn.model_validate(d).to_lightcurve()
    assert field_of(err) == field


def test_json_upper_limit_needs_one_time_and_unknown_fields_are_refused() -> None:
    d = json_lc(upper_limits=[{"jd": JD0 - 1, "band": "g", "mag": 20.5}, {"band": "r", "mag": 20.5}])
    with pytest.raises(LightCurveError, match="exactly one of jd or mjd") as err:
        LightCurveIn.model_validate(d).to_lightcurve()
    assert field_of(err) == "upper_limits[1]"
    d = json_lc()
    d["detections"][0]["colour"] = 1
    with pytest.raises(ValidationError):
        LightCurveIn.model_validate(d)


def test_json_mjd_and_jd_give_the_same_light_curve() -> None:
    by_jd = json_lc()
    by_mjd = json_lc()
    for det in by_mjd["detections"][::2]:
        det["mjd"] = det.pop("jd") - 2400000.5
    a, b = (LightCurveIn.model_validate(d).to_lightcurve() for d in (by_jd, by_mjd))
    np.testing.assert_allclose(a.time, b.time, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(a.flux, b.flux)


def test_json_empty_too_many_mixed_and_bad_stamp() -> None:
    with pytest.raises(ValidationError):
        LightCurveIn.model_validate(json_lc(detections=[]))
    many = [{"jd": JD0 + i * 0.01, "band": "g", "mag": 18.0, "mag_err": 0.1} for i in range(MAX_POINTS + 1)]
    with pytest.raises(ValidationError):
        LightCurveIn.model_validate(json_lc(detections=many))
    d = json_lc()
    d["detections"][1] = {"jd": JD0 + 1, "band": "r", "flux": 1.0, "flux_err": 1.0}
    with pytest.raises(LightCurveError) as err:
        LightCurveIn.model_validate(d).to_lightcurve()
    assert field_of(err) == "detections"
    with pytest.raises(LightCurveError) as err:
        LightCurveIn.model_validate(json_lc(stamps={"science": "***"})).to_lightcurve()
    assert field_of(err) == "stamps.science"


def test_json_duplicates_and_order() -> None:
    d = json_lc()
    d["detections"] = d["detections"][::-1] + [d["detections"][0]]
    lc = LightCurveIn.model_validate(d).to_lightcurve()
    assert len(lc) == 3 and np.all(np.diff(lc.time) > 0)
