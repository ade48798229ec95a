"""Re-observations (training.augment.reobserve): new views that stay the same source."""

from __future__ import annotations

import numpy as np
import pytest

from encoder.batching import make_examples
from encoder.checkpoint import load_checkpoint
from training.augment import reobserve
from training.synthetic import SurveyConfig, generate_survey


@pytest.fixture(scope="module")
def survey():
    return generate_survey(SurveyConfig(survey="ztf", n_objects=40, seed=5, min_detections=8))


def test_a_reobservation_drops_detections_redraws_fluxes_and_stretches_time(survey):
    rng = np.random.default_rng(0)
    kept, pulls, stretches = [], [], []
    for lc in survey:
        new = reobserve(lc, rng, keep=0.8, stretch=0.1)
        assert new.object_id == lc.object_id and new.label == lc.label
        assert np.all(np.diff(new.time) >= 0) and new.time[0] >= lc.time[0]
        # every kept detection is one of the originals, found by band and error bar
        idx = np.searchsorted(lc.flux_err, new.flux_err, sorter=np.argsort(lc.flux_err))
        orig = np.argsort(lc.flux_err)[idx]
        assert np.array_equal(new.band, lc.band[orig])
        pulls += list((new.flux - lc.flux[orig]) / lc.flux_err[orig])
        span, new_span = lc.time[orig[-1]] - lc.time[0], new.time[-1] - lc.time[0]
        if span > 1:
            stretches.append(new_span / span)
        kept.append(len(new) / len(lc))
    assert 0.72 < np.mean(kept) < 0.88
    assert 0.85 < np.std(pulls) < 1.15 and abs(np.mean(pulls)) < 0.1  # re-measured within the error bar
    assert min(stretches) >= np.exp(-0.1) - 1e-9 and max(stretches) <= np.exp(0.1) + 1e-9
    assert max(stretches) - min(stretches) > 0.1  # the factor varies between views


def test_a_reobservation_keeps_a_minimum_of_detections_and_metadata_rows_follow(survey):
    lc = next(x for x in survey if x.meta is not None)
    rng = np.random.default_rng(1)
    for _ in range(20):
        new = reobserve(lc, rng, keep=0.0, min_detections=3)
        assert len(new) == 3
        rows = [int(np.flatnonzero(lc.flux_err == e)[0]) for e in new.flux_err]
        np.testing.assert_array_equal(new.meta, lc.meta[rows])
    short = survey[0].first(2)
    assert len(reobserve(short, rng, keep=0.0, min_detections=3)) == 2


def test_the_same_generator_state_gives_the_same_view_and_features_build(survey):
    a = reobserve(survey[3], np.random.default_rng(7))
    b = reobserve(survey[3], np.random.default_rng(7))
    np.testing.assert_array_equal(a.time, b.time)
    np.testing.assert_array_equal(a.flux, b.flux)
    spec = load_checkpoint().spec
    ex = make_examples([reobserve(lc, np.random.default_rng(i)) for i, lc in enumerate(survey)], spec)
    assert all(np.isfinite(e.phot).all() for e in ex)
