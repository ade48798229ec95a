"""Several service processes on one database: each keeps its own index consistent through sync()."""

from __future__ import annotations

import numpy as np

from app.catalog import Catalog
from training.synthetic import SurveyConfig, generate_survey


def test_a_second_catalogue_sees_the_first_ones_ingests(make_settings, database_url, tmp_path):
    a = Catalog.open(make_settings(database_url, index_dir=tmp_path / "a", demo=False))
    b = Catalog.open(make_settings(database_url, index_dir=tmp_path / "b", demo=False))
    try:
        base = len(b.index)
        assert b.sync() == 0  # nothing changed yet
        lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=12, seed=5150, min_detections=3))
        a.ingest(lcs[:8])
        assert b.sync() >= 8 and len(b.index) == base + 8
        a.ingest([lcs[0].first(3), *lcs[8:]])  # a re-ingest of known alerts and four new objects
        b.sync()
        assert len(b.index) == len(a.index) == base + 12
        for lc in lcs:
            np.testing.assert_allclose(b.vector_of(lc.object_id), a.vector_of(lc.object_id), atol=1e-5)
        hits = b.search(a.vector_of(lcs[3].object_id), 1, {})
        assert hits[0]["object_id"] == lcs[3].object_id
    finally:
        a.close()
        b.close()
