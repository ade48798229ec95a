"""The synthetic survey: determinism, classes, cadences, limits, class physics, metadata, stamps, I/O."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

from encoder.lightcurve import BAND_INDEX, SURVEY_BANDS
from encoder.taxonomy import FINE_CLASSES
from training.synthetic import SurveyConfig, generate_object, generate_survey, read_parquet, write_parquet
from training.synthetic.cli import main as cli_main
from training.synthetic.models import Context, sample_kn, sample_microlensing

G, R = BAND_INDEX["g"], BAND_INDEX["r"]


def _cfg(**kw) -> SurveyConfig:
    return SurveyConfig(**{"survey": "ztf", "n_objects": 20, "seed": 7, **kw})


def _one_class(cls: str, n: int = 12, **kw) -> list:
    return generate_survey(_cfg(n_objects=n, class_weights={cls: 1.0}, **kw))


@pytest.fixture(scope="module")
def ztf_mix() -> list:
    return generate_survey(_cfg(n_objects=300))


def test_deterministic_for_a_seed():
    a, b = generate_survey(_cfg(n_objects=30)), generate_survey(_cfg(n_objects=30))
    c = generate_survey(_cfg(n_objects=30, seed=8))
    assert [x.object_id for x in a] == [x.object_id for x in b]
    for x, y in zip(a, b, strict=True):
        assert x.label == y.label
        np.testing.assert_array_equal(x.time, y.time)
        np.testing.assert_array_equal(x.flux, y.flux)
        np.testing.assert_array_equal(x.meta, y.meta)
        np.testing.assert_array_equal(x.ul_mag, y.ul_mag)
    assert any(len(x) != len(y) or not np.array_equal(x.flux, y.flux) for x, y in zip(a, c, strict=False))


def test_object_depends_only_on_seed_and_index():
    small, big = generate_survey(_cfg(n_objects=10)), generate_survey(_cfg(n_objects=25))
    for x, y in zip(small, big, strict=False):
        np.testing.assert_array_equal(x.flux, y.flux)


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_every_class_generated_with_valid_bands(survey):
    lcs = generate_survey(
        SurveyConfig(
            survey=survey, n_objects=3 * len(FINE_CLASSES), seed=1, class_weights={c: 1.0 for c in FINE_CLASSES}
        )
    )
    assert {lc.label for lc in lcs} == set(FINE_CLASSES)
    allowed = {BAND_INDEX[b] for b in SURVEY_BANDS[survey]}
    for lc in lcs:
        assert lc.survey == survey and len(lc) >= 1
        assert set(lc.band.tolist()) <= allowed and set(lc.ul_band.tolist()) <= allowed
        assert lc.meta is not None and lc.meta.shape == (len(lc), 30)
        assert lc.ra is not None and lc.alert_id is not None and len(np.unique(lc.alert_id)) == len(lc)
    if survey == "lsst":
        assert len({b for lc in lcs for b in lc.band.tolist()}) == 6


def test_default_mix_is_sn_ia_dominated_with_rare_anomalies(ztf_mix):
    labels = [lc.label for lc in ztf_mix]
    assert len(labels) == 300
    counts = {c: labels.count(c) for c in set(labels)}
    assert counts["SNIa"] == max(counts.values())
    rare = sum(counts.get(c, 0) for c in ("KN", "Microlensing", "Flare", "PISN"))
    assert rare <= 15


def test_upper_limits_and_detections_respect_the_epoch_limit(ztf_mix):
    n_ul = 0
    for lc in ztf_mix:
        lim = lc.meta_field("diffmaglim")
        pos = lc.flux > 0
        # detections are brighter than (or at) their own epoch's 5-sigma limit
        assert np.all(lc.mag[pos] <= lim[pos] + 1e-4)
        assert np.all(np.abs(lc.flux) / lc.flux_err >= 4.0)
        assert np.allclose(lc.meta_field("sigmapsf")[pos], lc.mag_err[pos], rtol=1e-3)
        # upper limits: realistic limits, before the last detection, at most 30 d before the first
        if len(lc.ul_time):
            n_ul += len(lc.ul_time)
            assert np.all((lc.ul_mag > 17.0) & (lc.ul_mag < 22.5))
            assert lc.ul_time.max() <= lc.time[-1] and lc.ul_time.min() >= lc.time[0] - 30.0 - 1e-9
    assert n_ul > 100


def test_min_detections_and_alert_views():
    lcs = generate_survey(_cfg(n_objects=20, min_detections=5))
    assert all(len(lc) >= 5 for lc in lcs)
    lc = max(lcs, key=len)
    early = lc.first(3)
    assert len(early) == 3 and np.all(early.ul_time <= early.time[-1])
    assert len(lc.until(lc.time[2])) == 3


def test_sn_rises_then_declines():
    lcs = _one_class("SNIa", n=15, max_peak_mag=18.8, min_detections=8)
    ok = 0
    for lc in lcs:
        r = (lc.band == R) & (lc.flux > 0)
        t, m = lc.time[r], lc.mag[r]
        if len(t) < 6:
            continue
        i = np.argmin(m)
        late = t > t[i] + 30
        if late.any():
            assert np.median(m[late]) > m[i] + 0.7  # it has faded a month after peak
            ok += 1
    assert ok >= 5


def test_agn_variable_over_years_and_nuclear():
    lcs = _one_class("AGN", n=10)
    assert np.median([lc.duration for lc in lcs]) > 365
    assert any((lc.flux < 0).any() for lc in lcs)  # fainter than the reference: negative difference flux
    distnr = np.concatenate([lc.meta_field("distnr") for lc in lcs])
    assert np.nanmedian(distnr) < 0.4
    sg = np.concatenate([lc.meta_field("sgscore1") for lc in lcs])
    assert np.nanmedian(sg) < 0.95


def test_cv_metadata_stellar_and_supernova_hosted():
    cvs = _one_class("CV", n=10)
    assert np.nanmin(np.concatenate([lc.meta_field("sgscore1") for lc in cvs])) > 0.9
    assert np.nanmedian(np.concatenate([lc.meta_field("distpsnr1") for lc in cvs])) < 0.3
    sne = _one_class("SNIa", n=20)
    assert np.nanmedian([np.nanmedian(lc.meta_field("sgscore1")) for lc in sne]) < 0.3
    assert np.nanmedian([np.nanmedian(lc.meta_field("distnr")) for lc in sne]) > 0.4
    # alert-only fields are missing on part of the history, never on the latest detection
    long = max(sne + cvs, key=len)
    assert np.isnan(long.meta_field("sgscore1")).any() and np.isfinite(long.meta_field("sgscore1")[-1])
    assert np.all(np.diff(long.meta_field("ncovhist")[np.isfinite(long.meta_field("ncovhist"))]) > 0)


def test_kilonova_fades_fast_and_reddens():
    for seed in range(5):
        src = sample_kn(np.random.default_rng(seed), Context("ztf", 2459000.0, 2459900.0, 20.5))
        t = src.params["t_peak"] + np.array([0.0, 3.0])
        g, r = src.flux(t, np.full(2, G)), src.flux(t, np.full(2, R))
        assert -2.5 * np.log10(g[1] / g[0]) > 1.8  # ~1 mag/day in g
        assert -2.5 * np.log10(g[1] / r[1]) > -2.5 * np.log10(g[0] / r[0]) + 0.3  # redder
    lcs = _one_class("KN", n=6)
    assert all(lc.duration < 12 for lc in lcs)


def test_microlensing_symmetric_and_achromatic():
    rng = np.random.default_rng(0)
    src = sample_microlensing(rng, Context("ztf", 2459000.0, 2459900.0, 21.0))
    t0, te = src.params["t0"], src.params["t_e"]
    dt = np.linspace(0.1, 3, 20) * te
    g = np.full(20, G)
    r = np.full(20, R)
    np.testing.assert_allclose(src.flux(t0 + dt, g), src.flux(t0 - dt, g), rtol=1e-9)
    ratio = src.flux(t0 + dt, g) / src.flux(t0 + dt, r)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)  # same magnification in every band
    lcs = _one_class("Microlensing", n=6)
    assert all(np.nanmin(lc.meta_field("sgscore1")) > 0.9 for lc in lcs)


def test_flare_is_short_and_slsn_pisn_slow():
    flares = _one_class("Flare", n=6)
    for lc in flares:
        brightest = lc.time[np.nanargmin(lc.mag)]
        assert np.sum(np.abs(lc.time - brightest) < 1.0) <= 4  # nothing left a day later
    pisn = _one_class("PISN", n=4, max_peak_mag=20.0, min_detections=5)
    assert np.median([lc.duration for lc in pisn]) > 150


def test_tde_blue_constant_colour():
    lcs = _one_class("TDE", n=10, max_peak_mag=19.0, min_detections=8)
    colours = []
    for lc in lcs:
        for tg in lc.time[lc.band == G]:
            near = (lc.band == R) & (np.abs(lc.time - tg) < 0.2)
            if near.any():
                colours.append(lc.mag[(lc.band == G) & (lc.time == tg)][0] - lc.mag[near][0])
    assert len(colours) > 10 and np.median(colours) < 0.0


def test_stamps_decode_with_a_point_source_in_the_difference():
    from astropy.io import fits

    lcs = _one_class("SNIa", n=4, with_stamps=True, max_peak_mag=18.5)
    n_bright = 0
    for lc in lcs:
        assert set(lc.stamps) == {"science", "template", "difference"}
        imgs = {k: fits.getdata(io.BytesIO(gzip.decompress(v))) for k, v in lc.stamps.items()}
        assert all(img.shape == (63, 63) for img in imgs.values())
        diff = imgs["difference"].astype(np.float64)
        centre = diff[29:34, 29:34].sum()
        mask = np.ones_like(diff, dtype=bool)
        mask[24:39, 24:39] = False
        sigma_pix = 1.4826 * np.median(np.abs(diff[mask] - np.median(diff[mask])))
        snr = abs(lc.flux[-1]) / lc.flux_err[-1]
        # a point source at the centre, about as significant as the photometry says (the
        # stamp noise is an independent draw), noise elsewhere
        if snr > 10:
            n_bright += 1
            assert abs(centre) / (5 * sigma_pix) > 0.2 * snr
            assert np.sign(centre) == np.sign(lc.flux[-1])
        assert imgs["science"].mean() > 50  # sky + host
    assert n_bright >= 1


def test_lsst_deeper_and_generates_without_metadata():
    lcs = generate_survey(SurveyConfig(survey="lsst", n_objects=30, seed=2, with_metadata=False))
    assert all(lc.meta is None for lc in lcs)
    assert np.median(np.concatenate([lc.ul_mag for lc in lcs if len(lc.ul_mag)])) > 22.5


def test_generate_object_returns_none_when_undetectable():
    cfg = _cfg(min_detections=10_000)
    assert generate_object("SNIa", np.random.default_rng(0), cfg) is None


def test_config_validation():
    with pytest.raises(ValueError):
        SurveyConfig(survey="sdss")
    with pytest.raises(ValueError):
        SurveyConfig(class_weights={"Nova": 1.0})
    with pytest.raises(ValueError):
        SurveyConfig(min_detections=0)


def test_parquet_round_trip(tmp_path):
    lcs = generate_survey(_cfg(n_objects=8, with_stamps=True)) + generate_survey(
        SurveyConfig(survey="lsst", n_objects=4, seed=1, with_metadata=False)
    )
    path = tmp_path / "s.parquet"
    write_parquet(lcs, path, _cfg())
    back = read_parquet(path)
    assert len(back) == len(lcs)
    for a, b in zip(lcs, back, strict=True):
        assert (a.object_id, a.survey, a.label, a.ra, a.dec) == (b.object_id, b.survey, b.label, b.ra, b.dec)
        for f in ("time", "band", "flux", "flux_err", "ul_time", "ul_band", "ul_mag", "alert_id"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        if a.meta is None:
            assert b.meta is None
        else:
            np.testing.assert_array_equal(a.meta, b.meta)
        assert a.stamps == b.stamps


def test_cli_writes_parquet(tmp_path, capsys):
    out = tmp_path / "cli.parquet"
    assert (
        cli_main(
            ["--survey", "ztf", "--n", "10", "--seed", "1", "--out", str(out), "--quiet", "--classes", "SNIa=2,CV=1"]
        )
        == 0
    )
    lcs = read_parquet(out)
    assert len(lcs) == 10 and {lc.label for lc in lcs} <= {"SNIa", "CV"}
    assert "wrote 10 light curves" in capsys.readouterr().err
