"""``rtf-evaluate novelty`` and ``feedback`` (encoder.rarity's evaluations): the leave-one-kind-out training
set, the catalogue's top-up, the simulated expert's loop on hand-made fingerprints, and both commands end
to end on a tiny untrained checkpoint and small synthetic surveys."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from encoder.anomaly import AnomalyScorer
from encoder.batching import FeatureSpec
from encoder.checkpoint import save_checkpoint
from encoder.features import OBJECT_FEATURE_NAMES, FeatureNormalizer, object_features
from encoder.lightcurve import LightCurve
from encoder.model.rtf import ModelConfig, RTFModel
from encoder.rarity import Ranking
from encoder.taxonomy import COARSE_CLASSES, FINE_CLASSES, RARE_FINE_CLASSES
from training.data import load_sources
from training.evaluate import cli
from training.evaluate.tasks import IN_ALL, TASKS
from training.evaluate.tasks.feedback import simulate, targets
from training.evaluate.tasks.novelty import leave_out, of_kind, top_up

torch.set_num_threads(1)


def _lc(object_id: str, label: str | None) -> LightCurve:
    t = 2459000.0 + np.arange(6.0)
    return LightCurve.build(
        object_id, "ztf", t, np.array(["g", "r"] * 3), mag=np.full(6, 18.0), mag_err=np.full(6, 0.05), label=label
    )


def test_leave_out_removes_the_kind_the_unlabelled_and_the_catalogue():
    lcs = [_lc("a", "TDE"), _lc("b", "SNIa"), _lc("c", None), _lc("d", "SNII"), _lc("e", "tde")]
    keep, dropped = leave_out(lcs, "TDE", exclude_ids={"d"})
    assert [lc.object_id for lc in keep] == ["b"]
    assert dropped == {"of the kind": 2, "unlabelled": 1, "in the catalogue": 1}  # "tde": a raw label, still TDE


def test_the_default_training_set_without_a_kind_holds_none_of_it_and_the_catalogue_holds_enough():
    lcs = load_sources(["synthetic:ztf:400:101"])
    assert any(lc.label == "SLSN" for lc in lcs)
    keep, dropped = leave_out(lcs, "SLSN", set())
    assert not any(of_kind(lc, "SLSN") for lc in keep) and dropped["of the kind"] == len(lcs) - len(keep)
    catalogue = load_sources(["synthetic:ztf:300:4242"])
    extra = top_up(catalogue, "KN", 12)
    assert all(lc.label == "KN" for lc in extra)
    assert sum(lc.label == "KN" for lc in catalogue + extra) == 12  # draws never detected are made up for
    assert not {lc.object_id for lc in extra} & {lc.object_id for lc in catalogue + lcs}
    assert top_up(catalogue + extra, "KN", 5) == []


def _clusters(rng: np.random.Generator, sizes: dict[str, int], spread: float = 0.05):
    """Unit-ish vectors in one tight cluster per kind, and the kinds."""
    centres = {k: rng.normal(size=16) for k in sizes}
    vec = np.concatenate([centres[k] + spread * rng.normal(size=(n, 16)) for k, n in sizes.items()])
    return vec, np.array([k for k, n in sizes.items() for _ in range(n)])


def test_the_expert_loop_finds_more_targets_than_the_ranking_without_feedback():
    rng = np.random.default_rng(0)
    # the targets (a tight cluster of 30) look common to every signal, a few decoys look rare
    vec, kinds = _clusters(rng, {"common": 600, "other": 300, "target": 30, "decoy": 40})
    model = rng.uniform(0, 1, len(kinds)) + np.where(kinds == "decoy", 1.0, 0.0)
    fine = ["x" if k == "decoy" else "common" for k in kinds]
    ranking = Ranking.build(vec, fine, model)
    r = simulate(ranking, kinds == "target", 20)
    assert r["n_targets"] == 30 and r["p_before"] <= 0.1
    assert r["found"] >= 2 + 20 * r["p_before"]  # one found target pulls its cluster up
    assert r["p_after"] >= r["found"] / 20 and r["p_next"] > r["p_before"]
    assert r["found_curve"][-1] == r["found"] and len(r["static_curve"]) == 20
    assert np.all(np.diff(r["found_curve"]) >= 0)


def test_targets_are_the_rare_kinds_and_each_kind_present():
    labels = np.array(["SNIa"] * 95 + ["TDE"] + ["CV"] * 4)
    masks, rare = targets(labels, ["TDE", "SLSN", "CV"], 0.02)
    assert rare == ["TDE"] and list(masks) == ["rare kinds", "TDE", "CV"]  # no SLSN in the catalogue
    assert masks["rare kinds"].sum() == 1 and masks["CV"].sum() == 4


def test_the_command_line_has_both_tasks_with_their_own_options_outside_all():
    assert {"novelty", "feedback"} <= set(TASKS) and not {"novelty", "feedback"} & set(IN_ALL)
    p = cli.build_parser()
    base = ["--checkpoint", "m.pt", "--data", "synthetic:ztf:10", "--out", "o"]
    ns = p.parse_args(["novelty", *base, "--kinds", "KN", "PISN", "--epochs", "2", "--train-data", "x.parquet"])
    assert ns.__dict__["novelty.kinds"] == ["KN", "PISN"] and ns.__dict__["novelty.epochs"] == 2
    ns = p.parse_args(["feedback", *base])
    assert ns.__dict__["feedback.kinds"] == ["TDE", "SLSN", "SNIIn"] and ns.__dict__["feedback.questions"] == 20
    for argv in (["novelty", *base, "--kinds", "Unicorn"], ["knn", *base, "--epochs", "2"]):
        with pytest.raises(SystemExit):
            p.parse_args(argv)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny untrained checkpoint: the architecture the novelty task trains from scratch."""
    torch.manual_seed(0)
    lcs = load_sources(["synthetic:ztf:40:9"])
    spec = FeatureSpec(max_len=32, use_metadata=False, use_gp=True, gp_fit=False)
    spec.obj_norm = FeatureNormalizer.fit(np.stack([object_features(lc, use_gp=False) for lc in lcs]))
    cfg = ModelConfig(
        d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0, max_len=32, latent_dim=8, use_metadata=False,
        use_gp=True, gp_dim=len(OBJECT_FEATURE_NAMES), coarse_classes=list(COARSE_CLASSES),
        fine_classes=list(FINE_CLASSES),
    )  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    rare = np.array([c in RARE_FINE_CLASSES for c in FINE_CLASSES])
    save_checkpoint(path, RTFModel(cfg).eval(), spec, AnomalyScorer.unfitted(rare))
    return path


@pytest.mark.slow
def test_novelty_end_to_end_trains_without_the_kind_and_reuses_the_model(tiny_checkpoint, tmp_path):
    out, work = tmp_path / "eval", tmp_path / "work"
    argv = ["novelty", "--checkpoint", str(tiny_checkpoint), "--data", "synthetic:ztf:150:5", "--holdout", "none",
            "--kinds", "SLSN", "--train-data", "synthetic:ztf:160:3", "--epochs", "1", "--min-kind", "8",
            "--work", str(work), "--out", str(out)]  # fmt: skip
    cli.main(argv)
    data = json.loads((out / "novelty.json").read_text())
    slsn = data["kinds"]["SLSN"]
    assert slsn["n"] >= 8 and data["catalogue"]["SLSN"] == slsn["n"]
    assert "SLSN" not in slsn["train"]["train_labels"] and slsn["train"]["n_train"] > 100
    assert slsn["train"]["dropped"]["of the kind"] >= 1
    assert set(slsn["auroc"]) >= {"Ranking", "model score alone", "IsolationForest on physics features"}
    assert all(0 <= v <= 1 for v in slsn["auroc"].values())
    md = (out / "novelty.md").read_text()
    assert md.startswith("## Novelty") and "rtf-evaluate novelty --checkpoint" in md and "| SLSN |" in md
    assert (out / "novelty_roc.png").stat().st_size > 0
    (run,) = work.iterdir()
    stamp = (run / "model.pt").stat().st_mtime_ns
    cli.main(argv)  # the same settings: the model is reused, not trained again
    assert (run / "model.pt").stat().st_mtime_ns == stamp and len(list(work.iterdir())) == 1


def test_feedback_end_to_end_one_catalogue_per_source(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    cli.main(["feedback", "--checkpoint", str(tiny_checkpoint), "--data", "synthetic:ztf:120:21",
              "synthetic:ztf:100:22", "--holdout", "none", "--questions", "5", "--kinds", "SNIa", "KN",
              "--out", str(out)])  # fmt: skip
    data = json.loads((out / "feedback.json").read_text())
    assert list(data["results"]) == ["synthetic:ztf:120:21", "synthetic:ztf:100:22"]
    first = data["results"]["synthetic:ztf:120:21"]
    labels = Counter(lc.label for lc in load_sources(["synthetic:ztf:120:21"]))
    assert first["SNIa"]["n_targets"] == labels["SNIa"] and len(first["SNIa"]["found_curve"]) == 5
    assert ("KN" in first) == (labels["KN"] > 0)
    assert data["mean"]["SNIa"]["catalogues"] == 2
    md = (out / "feedback.md").read_text()
    assert "rtf-evaluate feedback --checkpoint" in md and "| target | catalogues | share | p@5 no feedback |" in md
    assert (out / "feedback_found.png").stat().st_size > 0
