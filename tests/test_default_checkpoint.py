"""The committed default checkpoint: it loads, is small, and its fingerprints of fresh synthetic
light curves (a seed training never saw) put same-class objects nearest far more often than chance."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from encoder.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from encoder.inference import Encoder
from tests._server import bundled_dim
from training.synthetic import SurveyConfig, generate_survey


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(load_checkpoint())


def test_the_default_checkpoint_is_small_and_self_describing(encoder):
    assert DEFAULT_CHECKPOINT.stat().st_size <= 10 * 2**20
    assert encoder.dim == bundled_dim() and encoder.version.startswith("rtf-")
    assert encoder.coarse_classes[:5] == ["SNIa", "SNcc", "CV", "AGN", "TDE"]
    summary = encoder.ckpt.summary
    assert summary["n_train"] > 1000 and "command" in summary


def test_same_class_objects_are_nearest_far_more_often_than_chance(encoder):
    lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=600, seed=4242, min_detections=5))
    labels = np.array([lc.label for lc in lcs])
    v = encoder.encode(lcs).vectors
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.argmax(1)
    same = float((labels[nearest] == labels).mean())
    freq = np.array(list(Counter(labels).values())) / len(labels)
    chance = float((freq**2).sum())
    assert same > chance + 0.25 and same > 1.6 * chance, (same, chance)


def test_the_classifier_beats_the_majority_class_on_fresh_synthetic_data(encoder):
    from encoder.taxonomy import coarse_of

    lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=400, seed=777, min_detections=5))
    enc = encoder.encode(lcs)
    pred = [encoder.coarse_classes[i] for i in enc.coarse_probs.argmax(1)]
    truth = [coarse_of(lc.label) for lc in lcs]
    acc = np.mean([p == t for p, t in zip(pred, truth, strict=True)])
    majority = max(Counter(truth).values()) / len(truth)
    assert acc > majority + 0.1, (acc, majority)


def test_the_service_serves_the_bundled_model_without_loading_pytorch(tmp_path):
    """The default precision takes the bundled serving export: libtorch is never mapped into the
    server process (what keeps an idle service small; benchmarks/bench_memory.py measures it)."""
    import httpx

    from tests._server import Server

    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no /proc: cannot read the server's mapped libraries")
    env = {
        "RTF_DATABASE_URL": f"sqlite:///{tmp_path / 'rtf.db'}",
        "RTF_INDEX_DIR": str(tmp_path / "index"),
        "RTF_DEMO": "0",
        "RTF_PRECISION": "auto",
        "RTF_CACHE_DIR": str(tmp_path / "cache"),
    }
    with Server(env) as server:
        lc = {
            "object_id": "a",
            "detections": [
                {"mjd": 60000 + i, "band": "gr"[i % 2], "mag": 19 - 0.1 * i, "mag_err": 0.05} for i in range(6)
            ],
        }
        r = httpx.post(server.url + "/v1/fingerprints", json={"lightcurves": [lc]})
        assert r.status_code == 200 and len(r.json()["fingerprints"][0]["vector"]) == bundled_dim()
        mapped = Path(f"/proc/{server.proc.pid}/maps").read_text()
        assert "onnxruntime" in mapped and "libtorch" not in mapped
