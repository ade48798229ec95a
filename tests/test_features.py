"""Feature building: photometry channels, metadata, stamps, physics and GP features."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest

from encoder.features import (
    GP_FEATURE_NAMES,
    OBJECT_FEATURE_NAMES,
    PHOT_CHANNELS,
    PHYSICS_FEATURE_NAMES,
    STAMP_SIZE,
    FeatureNormalizer,
    MetadataNormalizer,
    decode_stamp,
    gp_features,
    metadata_matrix,
    object_features,
    photometry_channels,
    physics_features,
    stamp_tensor,
)
from encoder.features.stamps import MAX_DECOMPRESSED_BYTES
from encoder.lightcurve import BANDS, META_FIELDS, META_INDEX, LightCurve

JD0 = 2459000.5
_PHYS = {n: i for i, n in enumerate(PHYSICS_FEATURE_NAMES)}
_GP = {n: i for i, n in enumerate(GP_FEATURE_NAMES)}


def _ztf(times, bands, mags, errs=None, **kw) -> LightCurve:
    errs = np.full(len(mags), 0.05) if errs is None else errs
    return LightCurve.build("ZTFtest", "ztf", JD0 + np.asarray(times, float), bands, mag=mags, mag_err=errs, **kw)


def _bazin(t, t0=20.0, rise=4.0, fall=20.0, amp=10000.0):
    return amp * np.exp(-(t - t0) / fall) / (1.0 + np.exp(-(t - t0) / rise))


# ---------------------------------------------------------------------- photometry
def test_phot_channels_match_seed_for_bright_points():
    lc = _ztf([0.0, 1.5, 1.7, 4.0], ["g", "r", "g", "i"], [18.0, 18.3, 17.9, 19.1], [0.02, 0.05, 0.03, 0.1])
    x = photometry_channels(lc)
    assert x.shape == (4, len(PHOT_CHANNELS)) == (4, 10) and x.dtype == np.float32
    assert np.allclose(x[:, 2], -0.4 * lc.mag, atol=1e-3)
    assert np.allclose(x[:, 3], 0.4 * lc.mag_err, rtol=0.01)
    # dt channels on the hand-made times
    assert np.allclose(x[:, 0], np.log1p([0.0, 1.5, 1.7, 4.0]), atol=1e-5)
    assert np.allclose(x[:, 1], np.log1p([0.0, 1.5, 0.2, 2.3]), atol=1e-5)
    onehot = x[:, 4:]
    assert np.array_equal(onehot.sum(1), np.ones(4))
    assert [BANDS[i] for i in onehot.argmax(1)] == ["g", "r", "g", "i"]


def test_phot_channels_finite_and_monotonic_for_negative_flux():
    flux = np.linspace(-5000.0, 5000.0, 201)
    lc = LightCurve.build(
        "LSSTneg", "lsst", JD0 + np.arange(201.0), ["r"] * 201, flux=flux, flux_err=np.full(201, 100.0)
    )
    x = photometry_channels(lc)
    assert np.all(np.isfinite(x))
    assert np.all(np.diff(x[:, 2]) > 0), "logflux must increase with flux"
    assert np.all(x[:, 3] > 0)
    # ZTF isdiffpos='f' (negative difference flux from a magnitude) stays finite too
    neg = _ztf([0.0, 1.0], ["g", "g"], [19.0, 19.0], negative=np.array([True, False]))
    y = photometry_channels(neg)
    assert np.all(np.isfinite(y)) and y[0, 2] < y[1, 2]


# ---------------------------------------------------------------------- metadata
def test_metadata_sentinels_and_missing_are_masked():
    meta = np.full((3, len(META_FIELDS)), 0.5, dtype=np.float32)
    meta[0, META_INDEX["sgscore1"]] = -999.0
    meta[1, META_INDEX["distnr"]] = np.nan
    lc = _ztf([0, 1, 2], ["g", "r", "g"], [18, 18, 18], meta=meta)
    raw = metadata_matrix(lc)
    assert raw.shape == (3, 30) and raw.dtype == np.float32
    assert np.isnan(raw[0, META_INDEX["sgscore1"]]) and np.isnan(raw[1, META_INDEX["distnr"]])
    norm = MetadataNormalizer.fit([raw, raw + 1.0])
    values, mask = norm.transform(raw)
    assert values.shape == mask.shape == (3, 30) and values.dtype == mask.dtype == np.float32
    assert mask[0, META_INDEX["sgscore1"]] == 0 and values[0, META_INDEX["sgscore1"]] == 0
    assert mask[1, META_INDEX["distnr"]] == 0 and values[1, META_INDEX["distnr"]] == 0
    assert mask.sum() == 3 * 30 - 2
    # no metadata at all: everything missing
    bare = metadata_matrix(_ztf([0, 1], ["g", "r"], [18, 18]))
    assert bare.shape == (2, 30) and np.all(np.isnan(bare))
    v, m = norm.transform(bare)
    assert not v.any() and not m.any()


def test_normalizer_robust_clipped_and_round_trip():
    rng = np.random.default_rng(0)
    x = np.column_stack(
        [
            rng.normal(10.0, 2.0, 2000),  # plain
            rng.lognormal(0.0, 2.5, 2000),  # heavy tail → log
            np.full(2000, np.nan),  # never seen → centre 0, scale 1
            np.where(rng.random(2000) < 0.3, np.nan, 1.0),  # constant with gaps
        ]
    )
    x[0, 0] = 1e9  # an outlier must not move a robust fit
    norm = FeatureNormalizer.fit(x)
    assert abs(norm.centre[0] - 10.0) < 0.3 and abs(norm.scale[0] - 2.0) < 0.3
    assert norm.log[1] and not norm.log[0]
    assert norm.centre[2] == 0.0 and norm.scale[2] == 1.0
    values, mask = norm.transform(x)
    assert np.all(np.isfinite(values)) and np.abs(values).max() <= 5.0
    assert values[0, 0] == 5.0
    assert np.array_equal(mask[:, 2], np.zeros(2000, np.float32))
    back = FeatureNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert back == norm
    v2, m2 = back.transform(x)
    assert np.array_equal(values, v2) and np.array_equal(mask, m2)
    with pytest.raises(ValueError):
        MetadataNormalizer.from_dict(norm.to_dict())  # kinds do not mix


# ---------------------------------------------------------------------- stamps
def _fits_bytes(img: np.ndarray, compress: bool = True) -> bytes:
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(img).writeto(buf)
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


def test_decode_stamp_valid_crop_and_bad_bytes():
    img = np.arange(63 * 63, dtype=np.float32).reshape(63, 63)
    assert np.array_equal(decode_stamp(_fits_bytes(img)), img)
    assert np.array_equal(decode_stamp(_fits_bytes(img.astype(np.float64), compress=False)), img)
    off = decode_stamp(_fits_bytes(np.ones((64, 62), np.float32)))
    assert off is not None and off.shape == (STAMP_SIZE, STAMP_SIZE)
    assert decode_stamp(_fits_bytes(np.ones((40, 63), np.float32))) is None  # far off 63
    good = _fits_bytes(img)
    for bad in (b"", b"garbage", good[: len(good) // 2], b"\x1f\x8b" + b"\x00" * 50, good[:10] + b"x" + good[11:]):
        assert decode_stamp(bad) is None
    assert decode_stamp(None) is None  # type: ignore[arg-type]


def test_decode_stamp_refuses_gzip_bomb():
    bomb = gzip.compress(b"SIMPLE  =                    T" + b" " * (MAX_DECOMPRESSED_BYTES * 4))
    assert len(bomb) < 100_000
    assert decode_stamp(bomb) is None


def test_stamp_tensor_normalized_and_missing_kind_is_zero():
    rng = np.random.default_rng(1)
    sci = rng.normal(100.0, 5.0, (63, 63)).astype(np.float32)
    sci[31, 31] = 5000.0
    sci[0, 0] = np.nan
    lc = _ztf([0.0], ["g"], [18.0], stamps={"science": _fits_bytes(sci), "difference": b"corrupt"})
    x = stamp_tensor(lc)
    assert x is not None and x.shape == (3, 63, 63) and x.dtype == np.float32
    assert np.all(np.isfinite(x)) and x[0, 0, 0] == 0.0
    assert abs(np.median(x[0])) < 0.05 and x[0, 31, 31] > 5.0
    assert not x[1].any() and not x[2].any()
    assert stamp_tensor(_ztf([0.0], ["g"], [18.0])) is None


# ---------------------------------------------------------------------- physics
def test_physics_amplitude_duration_on_hand_made_curve():
    lc = _ztf([0, 2, 5, 9, 14, 20, 30], ["r"] * 7, [19.0, 18.0, 17.0, 17.5, 18.0, 18.5, 19.5], [0.01] * 7)
    f = physics_features(lc)
    assert f.shape == (len(PHYSICS_FEATURE_NAMES),) and f.dtype == np.float32
    assert f[_PHYS["r_amplitude"]] == pytest.approx(1.25, abs=2e-3)
    assert f[_PHYS["r_peak_mag"]] == pytest.approx(17.0, abs=2e-3)
    assert f[_PHYS["r_t_peak"]] == pytest.approx(5.0, abs=1e-4)
    assert f[_PHYS["all_duration"]] == pytest.approx(30.0, abs=1e-4)
    assert f[_PHYS["r_rise_rate"]] == pytest.approx(2.0 / 5.0, abs=1e-3)
    assert f[_PHYS["r_decline_rate"]] == pytest.approx(2.5 / 25.0, abs=1e-3)
    assert f[_PHYS["all_n_det"]] == 7 and f[_PHYS["g_n_det"]] == 0
    assert np.isnan(f[_PHYS["g_amplitude"]]) and np.isnan(f[_PHYS["all_gr_mean"]])


def test_physics_single_detection_and_colours_and_limits():
    one = physics_features(_ztf([0.0], ["g"], [18.0]))
    assert one[_PHYS["all_n_det"]] == 1 and one[_PHYS["all_duration"]] == 0
    assert np.isnan(one[_PHYS["g_skew"]]) and np.isnan(one[_PHYS["g_rise_rate"]])
    lc = _ztf(
        [0.0, 0.1, 3.0, 3.1],
        ["g", "r", "g", "r"],
        [18.0, 17.6, 18.2, 17.7],
        ul_time=JD0 + np.array([-5.0, -2.0]),
        ul_band=["g", "r"],
        ul_mag=np.array([20.0, 20.5]),
    )
    f = physics_features(lc)
    assert f[_PHYS["all_gr_mean"]] == pytest.approx(0.45, abs=1e-3)
    assert f[_PHYS["all_gr_last"]] == pytest.approx(0.5, abs=1e-3)
    assert f[_PHYS["all_n_ul_before"]] == 2
    assert f[_PHYS["all_dt_last_ul_before"]] == pytest.approx(2.0, abs=1e-4)
    assert f[_PHYS["all_dmag_last_ul_before"]] == pytest.approx(2.5, abs=1e-3)


# ---------------------------------------------------------------------- GP
def test_gp_recovers_peak_and_rise_shorter_than_decline():
    rng = np.random.default_rng(3)
    t_peak_true = 20.0 + 4.0 * np.log(20.0 / 4.0 - 1.0)  # maximum of the Bazin curve
    times, bands, flux = [], [], []
    for band, amp in (("g", 10000.0), ("r", 8000.0)):
        tt = np.sort(rng.uniform(0.0, 80.0, 25))
        times.append(tt)
        bands += [band] * 25
        flux.append(_bazin(tt, amp=amp) + 200.0)
    t, f = np.concatenate(times), np.concatenate(flux)
    f = f + rng.normal(0.0, 100.0, len(f))
    lc = LightCurve.build("SNsim", "lsst", JD0 + t, bands, flux=f, flux_err=np.full(len(f), 100.0))
    x = gp_features(lc)
    assert x.shape == (len(GP_FEATURE_NAMES),) and x.dtype == np.float32
    t_first = float(t.min())
    for band in ("g", "r"):
        assert abs(x[_GP[f"gp_{band}_peak_t"]] + t_first - t_peak_true) < 2.0
        assert x[_GP[f"gp_{band}_rise_time"]] < x[_GP[f"gp_{band}_decline_time"]]
    assert x[_GP["gp_gr_peak"]] == pytest.approx(-2.5 * np.log10(10000 / 8000), abs=0.1)
    assert x[_GP["gp_peak_at_edge"]] == 0
    assert 40 <= len(GP_FEATURE_NAMES) <= 120


@pytest.mark.parametrize("n", [1, 2, 3])
def test_short_curves_are_finite_or_nan(n):
    lc = _ztf(np.arange(n) * 1.3, ["g", "r", "g"][:n], [18.0, 18.2, 17.9][:n])
    for arr in (photometry_channels(lc), metadata_matrix(lc)):
        assert arr.shape[0] == n
    x = object_features(lc)
    assert x.shape == (len(OBJECT_FEATURE_NAMES),) and x.dtype == np.float32
    assert not np.any(np.isinf(x))
    assert np.all(np.isfinite(photometry_channels(lc)))
    assert np.all(np.isnan(object_features(lc, use_gp=False)[len(PHYSICS_FEATURE_NAMES) :]))


def test_lsst_six_band_curve_with_negative_fluxes():
    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0.0, 100.0, 60))
    band = rng.integers(0, 6, 60)
    flux = _bazin(t, t0=40.0, amp=3000.0) + rng.normal(0.0, 150.0, 60)
    lc = LightCurve.build("LSSTsim", "lsst", JD0 + t, band.astype(np.int8), flux=flux, flux_err=np.full(60, 150.0))
    assert (lc.flux < 0).any()
    assert np.all(np.isfinite(photometry_channels(lc)))
    x = object_features(lc)
    assert not np.any(np.isinf(x))
    assert np.isfinite(x[len(PHYSICS_FEATURE_NAMES) + _GP["gp_r_peak_t"]])
    assert x[_PHYS["all_n_bands"]] == len(np.unique(band))
    norm = FeatureNormalizer.fit(np.stack([x, x * 1.1, x * 0.9]))
    v, m = norm.transform(x[None])
    assert np.all(np.isfinite(v)) and np.array_equal(m[0], np.isfinite(x).astype(np.float32))


def test_real_bts_curves_do_not_crash(shared_data):
    pd = pytest.importorskip("pandas")
    from encoder.lightcurve import ZTF_FID

    df = pd.read_parquet(shared_data / "ztf_bts_dev.parquet").head(15)
    for r in df.itertuples():
        lc = LightCurve.build(r.object_id, "ztf", r.jd, [ZTF_FID[int(x)] for x in r.fid], mag=r.mag, mag_err=r.magerr)
        x = object_features(lc)
        assert not np.any(np.isinf(x))
        if len(lc) >= 10:
            assert np.isfinite(x[len(PHYSICS_FEATURE_NAMES) + _GP["gp_r_peak_t"]])
