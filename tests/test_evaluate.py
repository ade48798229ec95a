"""Evaluation metrics on hand-made inputs with known answers, and one CLI run end to end
on a tiny untrained checkpoint and hand-made light curves (no real data needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from encoder.anomaly import AnomalyScorer
from encoder.batching import FeatureSpec
from encoder.checkpoint import save_checkpoint
from encoder.features import OBJECT_FEATURE_NAMES, FeatureNormalizer, object_features
from encoder.lightcurve import LightCurve
from encoder.model.rtf import ModelConfig, RTFModel
from encoder.taxonomy import COARSE_CLASSES, FINE_CLASSES
from training.evaluate import baselines, metrics
from training.evaluate.cli import main
from training.evaluate.context import stratified_subsample

torch.set_num_threads(1)


def test_precision_at_k_macro_averages_within_then_over_classes():
    # class a: three points close together; class b: two close + one far; c: a single point (not counted)
    x = np.array([[0, 0], [0, 0.1], [0.1, 0], [5, 5], [5, 5.1], [20, 0], [0, 20]], dtype=float)
    y = np.array(["a", "a", "a", "b", "b", "b", "c"])
    macro, per = metrics.precision_at_k(x, y, k=2, metric="euclidean")
    assert per["a"] == pytest.approx(1.0)
    # b0, b1: 2 nearest = each other + the outlier b2 or an 'a'; computed by brute force for b2
    d = np.linalg.norm(x[5] - x, axis=1)
    nn = np.argsort(d)[1:3]
    expected_b2 = np.mean(y[nn] == "b")
    assert per["b"] == pytest.approx((0.5 + 0.5 + expected_b2) / 3)
    assert "c" not in per
    assert macro == pytest.approx((per["a"] + per["b"]) / 2)


def test_precision_at_k_cosine_and_random_expectation():
    rng = np.random.default_rng(0)
    y = np.array(["a"] * 30 + ["b"] * 10)
    x = np.where((y == "a")[:, None], [1.0, 0.0], [0.0, 1.0]) + rng.normal(0, 0.05, (40, 2))
    macro, _ = metrics.precision_at_k(x, y, k=5, metric="cosine")
    assert macro == pytest.approx(1.0)
    rand, per = metrics.random_precision(y)
    assert per == pytest.approx({"a": 29 / 39, "b": 9 / 39})
    assert rand == pytest.approx((29 / 39 + 9 / 39) / 2)
    # shuffled vectors hover around the random expectation
    shuffled, _ = metrics.precision_at_k(rng.normal(size=(40, 2)), y, k=5)
    assert abs(shuffled - rand) < 0.25


def test_supervised_precision_finds_a_class_signal_hidden_by_noisy_dimensions():
    rng = np.random.default_rng(1)
    y = np.array(["a"] * 60 + ["b"] * 60 + ["c"] * 60)
    signal = np.repeat([0.0, 1.0, 2.0], 60)[:, None] + rng.normal(0, 0.1, (180, 1))
    x = np.hstack([signal, rng.normal(0, 5.0, (180, 6))])  # the class lives in one low-variance column
    raw, _ = metrics.precision_at_k(x, y, k=5, metric="euclidean")
    supervised, per = metrics.supervised_precision_at_k(x, y, k=5)
    assert raw < 0.6 < 0.9 < supervised
    assert set(per) == {"a", "b", "c"}
    # labels carry nothing: the projection cannot invent a signal
    shuffled, _ = metrics.supervised_precision_at_k(rng.normal(size=(180, 7)), y, k=5)
    assert shuffled < 0.55


def test_auroc_direction_and_macro_ovr():
    pos = np.array([0, 0, 0, 1, 1], dtype=bool)
    assert metrics.binary_auroc(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), pos) == 1.0
    assert metrics.binary_auroc(-np.array([0.1, 0.2, 0.3, 0.8, 0.9]), pos) == 0.0  # higher must mean positive
    assert np.isnan(metrics.binary_auroc(np.ones(3), np.ones(3, dtype=bool)))
    y = np.array(["a", "a", "b", "b", "c"])
    probs = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    scores = metrics.classification_scores(y, probs, ["a", "b", "c"])
    assert scores == {"accuracy": 1.0, "balanced_accuracy": 1.0, "roc_auc": 1.0}
    wrong = metrics.classification_scores(y, probs[:, [1, 0, 2]], ["a", "b", "c"])
    assert wrong["accuracy"] == pytest.approx(0.2)
    assert wrong["roc_auc"] == pytest.approx((0.25 + 0.25 + 1.0) / 3)  # a, b swapped: 0.25 each; c still 1


def _lc(i: int, n: int, label: str = "SNIa", rng: np.random.Generator | None = None) -> LightCurve:
    rng = rng or np.random.default_rng(i)
    t = 2459000.0 + np.sort(rng.uniform(0, 90, n))
    band = np.where(np.arange(n) % 2 == 0, "g", "r")
    fall = {"SNIa": 20.0, "SNII": 60.0, "SLSN": 120.0, "CV": 3.0}[label]
    flux = np.exp(-(t - 2459020.0) / fall) / (1 + np.exp(-(t - 2459020.0) / 3.0))
    mag = np.clip(18.0 - 2.5 * np.log10(flux + 1e-3), 12, 23) + rng.normal(0, 0.03, n)
    return LightCurve.build(f"obj{i}", "ztf", t, band, mag=mag, mag_err=np.full(n, 0.05), label=label)


def test_early_truncation_keeps_short_curves_whole():
    lcs = [_lc(0, 4), _lc(1, 12)]
    cut = metrics.truncate(lcs, 5)
    assert [len(lc) for lc in cut] == [4, 5]
    assert cut[0] is lcs[0]
    assert np.array_equal(cut[1].time, lcs[1].time[:5])
    assert metrics.truncate(lcs, "all") == lcs
    days = metrics.first_days(lcs, 30.0)
    assert all(lc.time[-1] - lc.time[0] <= 30.0 for lc in days)


def test_baseline_helpers():
    x = np.array([[1.0, np.nan, 3.0], [2.0, 5.0, 3.0], [3.0, 7.0, 3.0], [np.inf, 6.0, 3.0]])
    z = baselines.impute_standardize(x)
    assert np.isfinite(z).all() and np.allclose(z.mean(0), 0) and np.allclose(z[:, 2], 0)
    idx = stratified_subsample(["a"] * 90 + ["b"] * 9 + ["c"], 20)
    labels = np.array(["a"] * 90 + ["b"] * 9 + ["c"])[idx]
    assert set(labels) == {"a", "b", "c"} and 18 <= len(idx) <= 22
    lc = _lc(3, 30)
    for kind in ("constant", "bazin"):
        pred = baselines.parametric_reconstruction(lc, kind)
        assert pred.shape == (30,) and np.nanmedian(np.abs(pred - lc.mag)) < 2.0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny untrained checkpoint (query decoder, coarse + fine heads) and a parquet-free data source."""
    torch.manual_seed(0)  # untrained weights: keep them the same in every run
    rng = np.random.default_rng(0)
    labels = ["SNIa"] * 14 + ["SNII"] * 8 + ["SLSN"] * 5 + ["CV"] * 5
    lcs = [_lc(i, int(rng.integers(6, 30)), lab, rng) for i, lab in enumerate(labels)]
    spec = FeatureSpec(max_len=32, use_metadata=False, use_gp=True, gp_fit=False)
    spec.obj_norm = FeatureNormalizer.fit(np.stack([object_features(lc, use_gp=False) for lc in lcs]))
    cfg = ModelConfig(
        d_model=16,
        n_layers=1,
        n_heads=2,
        d_ff=32,
        dropout=0.0,
        max_len=32,
        latent_dim=8,
        use_metadata=False,
        use_gp=True,
        gp_dim=len(OBJECT_FEATURE_NAMES),
        coarse_classes=list(COARSE_CLASSES),
        fine_classes=list(FINE_CLASSES),
    )
    folder = tmp_path_factory.mktemp("ckpt")
    rare = np.array([c in {"SLSN", "CV", "TDE"} for c in FINE_CLASSES])
    save_checkpoint(folder / "model.pt", RTFModel(cfg).eval(), spec, AnomalyScorer.unfitted(rare))
    cfg.mode, cfg.decoder = "vae", "position"
    save_checkpoint(folder / "vae.pt", RTFModel(cfg).eval(), spec, AnomalyScorer.unfitted(rare))
    return folder / "model.pt", lcs


def test_knn_and_anomaly_cli_end_to_end(tiny_run, tmp_path, monkeypatch):
    path, lcs = tiny_run
    monkeypatch.setattr("training.evaluate.context.load_source", lambda src: lcs)
    out = tmp_path / "eval"
    base = ["--checkpoint", str(path), "--data", "synthetic:test", "--holdout", "none", "--out", str(out)]
    main(["knn", *base])
    data = json.loads((out / "knn.json").read_text())
    res = data["results"]
    assert data["n"] == len(lcs)
    rand = res["random (class frequency)"]["full"]["macro"]
    assert rand == pytest.approx(np.mean([13 / 31, 7 / 31, 4 / 31, 4 / 31]))
    assert 0 <= res["ae8 fingerprint (cosine)"]["first 30 days"]["macro"] <= 1
    assert "| method | P@10 full | P@10 first 30 days |" in (out / "knn.md").read_text()
    assert (out / "knn_per_class.png").stat().st_size > 0

    main(["anomaly", *base])
    auroc = json.loads((out / "anomaly.json").read_text())
    assert auroc["n_rare"] == 10 and auroc["n_common"] == 22
    # SLSN (slow) and CV (fast) curves: the length-only scores are well defined numbers
    assert 0 <= auroc["auroc"]["duration (days)"]["full"] <= 1
    assert "ae8: isolation (leave-one-out, eval set)" in auroc["auroc"]


def test_early_cli_end_to_end(tiny_run, tmp_path, monkeypatch):
    path, lcs = tiny_run
    monkeypatch.setattr("training.evaluate.context.load_source", lambda src: lcs)
    monkeypatch.setattr(baselines, "RF_TREES", 10)  # speed
    monkeypatch.setattr("training.evaluate.tasks.early.BASELINE_CLASSIFIERS", ("rf", "knn"))
    out = tmp_path / "eval"
    main(["early", "--checkpoint", str(path), "--data", "x", "--holdout", "none", "--cv", "3", "--out", str(out)])
    res = json.loads((out / "early.json").read_text())
    assert res["columns"] == ["3", "5", "10", "20", "50", "100", "all"]
    assert set(res["results"]) == {"ae8 (coarse head)", "features + rf", "features + knn"}
    acc = res["results"]["features + rf"]["accuracy"]
    assert len(acc) == 7 and all(0 <= a <= 1 for a in acc)
    assert (out / "early.png").exists()


def test_recon_and_probe_cli_with_two_checkpoints(tiny_run, tmp_path, monkeypatch):
    path, lcs = tiny_run
    monkeypatch.setattr("training.evaluate.context.load_source", lambda src: lcs)
    monkeypatch.setattr(baselines, "RF_TREES", 10)
    out = tmp_path / "eval"
    ckpts = ["--checkpoint", str(path), str(path.parent / "vae.pt")]
    base = [*ckpts, "--data", "x", "--holdout", "none", "--cv", "3", "--out", str(out)]
    main(["recon", *base])
    rec = json.loads((out / "recon.json").read_text())["summary"]
    assert rec["ae8"]["band_accuracy"] is None and rec["ae8"]["time_err_days"] is None  # query decoder: n/a
    assert 0 <= rec["vae8"]["band_accuracy"] <= 1 and rec["vae8"]["time_err_days"] >= 0
    assert rec["bazin per band (baseline)"]["dmag_all"] < 0.5  # noise 0.03 mag: a Bazin fits these curves
    assert "| ae8 |" in (out / "recon.md").read_text() and "n/a" in (out / "recon.md").read_text()
    main(["probe", *base])
    md = (out / "probe.md").read_text()
    assert "| dim | AE | VAE |" in md and "| 8 |" in md
