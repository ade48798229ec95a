"""rtf-train end to end on a tiny synthetic survey: the run folder, resuming, and fine-tuning stages
(the command line itself: tests/test_training_config.py)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from encoder.checkpoint import load_checkpoint
from encoder.inference import Encoder
from encoder.model.rtf import ModelConfig
from training.synthetic import SurveyConfig, generate_survey
from training.train import TrainConfig, train

TINY = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0, max_len=32, latent_dim=8, use_gp=True)
DATA = ["synthetic:ztf:90:3"]


def tiny_run(out, **kw) -> TrainConfig:
    base = dict(data=DATA, out=str(out), model=TINY, gp_fit=False, epochs=1, batch_size=16, workers=1, threads=1)
    return TrainConfig(**(base | kw))


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "base"
    train(tiny_run(out))
    return out


def test_a_run_folder_holds_a_loadable_checkpoint_summary_and_metrics(base_run):
    summary = json.loads((base_run / "summary.json").read_text())
    metrics = json.loads((base_run / "metrics.json").read_text())
    assert summary["n_train"] + summary["n_val"] == 90
    assert len(metrics["history"]) == 1 and np.isfinite(metrics["history"][0]["total"])
    enc = Encoder.load(base_run / "model.pt")
    assert enc.version == summary["version"]
    lcs = generate_survey(SurveyConfig(n_objects=5, seed=77, min_detections=3))
    out = enc.encode(lcs)
    assert out.vectors.shape == (5, 8) and np.isfinite(out.vectors).all()


def test_the_command_line_trains_the_run_its_config_describes(tmp_path):
    from training.train import main

    out = tmp_path / "cli"
    main(["--data", *DATA, "--out", str(out), "--use-metadata", "--use-features", "--no-gp-fit", "--d-model", "16",
          "--n-layers", "1", "--n-heads", "2", "--d-ff", "32", "--dropout", "0", "--max-len", "32", "--latent-dims",
          "8", "--epochs", "1", "--batch-size", "16", "--workers", "1", "--threads", "1"])  # fmt: skip
    assert json.loads((out / "summary.json").read_text())["config"] == asdict(tiny_run(out))
    saved = load_checkpoint(out / "model.pt")
    assert saved.config.use_gp and saved.config.gp_dim > 0 and not saved.spec.gp_fit  # the keys serving reads


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    import training.loop as train_module

    real_evaluate, calls = train_module.evaluate, []

    def crash_in_epoch_two(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after epoch 1 was saved, before epoch 2 is
        return real_evaluate(*args, **kw)

    out = tmp_path / "run"
    monkeypatch.setattr(train_module, "evaluate", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(out, epochs=2))
    assert not (out / "model.pt").exists()
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    with pytest.raises(SystemExit, match="another length"):
        train(tiny_run(out, epochs=3))  # the saved schedule was planned for 2 epochs
    train(tiny_run(out, epochs=2))
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_grow_a_film_decoder_and_train_it_alone(base_run, tmp_path):
    out = tmp_path / "film"
    train(
        tiny_run(
            out,
            model=replace(TINY, decoder_film=True),
            init_from=str(base_run / "model.pt"),
            train_only="decoder",
            lr=1e-2,
        )
    )
    before = load_checkpoint(base_run / "model.pt").model.state_dict()
    after = load_checkpoint(out / "model.pt").model.state_dict()
    assert after["decoder.film.weight"].abs().sum() > 0  # the new FiLM projection learned something
    for name, value in before.items():
        if name.startswith("decoder."):
            continue
        assert torch.equal(value, after[name]), f"{name} moved although only the decoder trains"
    changed = [n for n in before if n.startswith("decoder.") and not torch.equal(before[n], after[n])]
    assert changed


def test_init_from_a_different_architecture_is_refused(base_run, tmp_path):
    with pytest.raises(SystemExit, match="architecture differs"):
        train(tiny_run(tmp_path / "bad", model=replace(TINY, d_model=24), init_from=str(base_run / "model.pt")))


def test_fine_tuning_on_other_data_keeps_the_normalisation_and_learns_from_labels(base_run, tmp_path):
    out = tmp_path / "tuned"
    train(tiny_run(out, data=["synthetic:ztf:60:11"], init_from=str(base_run / "model.pt"), contrastive_weight=1.0))
    start, tuned = load_checkpoint(base_run / "model.pt").spec, load_checkpoint(out / "model.pt").spec
    assert np.array_equal(start.obj_norm.centre, tuned.obj_norm.centre)  # the inputs mean what the weights learned
    assert np.array_equal(start.meta_norm.scale, tuned.meta_norm.scale)
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert "contrastive" in history[0] and np.isfinite(history[0]["contrastive"])


def test_two_views_put_each_object_twice_in_its_batch_truncated_apart(tmp_path, monkeypatch):
    import training.loop as train_module

    batches, real_collate = [], train_module.collate

    def spy(batch_ex, spec, lengths=None):
        if lengths is not None:  # a training batch (evaluation collates whole light curves)
            batches.append(([e.object_id for e in batch_ex], list(lengths)))
        return real_collate(batch_ex, spec, lengths)

    monkeypatch.setattr(train_module, "collate", spy)
    train(tiny_run(tmp_path / "two", views=2, random_truncate=True, contrastive_weight=1.0))
    assert batches
    pairs_apart = 0
    for ids, lengths in batches:
        half = len(ids) // 2
        assert ids[:half] == ids[half:] and len(set(ids)) == half  # each object twice, no other repeats
        pairs_apart += sum(a != b for a, b in zip(lengths[:half], lengths[half:], strict=True))
    assert pairs_apart > 0  # the two views are truncated independently
    with pytest.raises(SystemExit, match="at least one view"):
        train(tiny_run(tmp_path / "none", views=0))


def test_posterior_weight_is_stored_with_the_model_and_needs_a_fine_head(tmp_path):
    train(tiny_run(tmp_path / "run", model=replace(TINY, posterior_weight=1.0)))
    enc = Encoder.load(tmp_path / "run" / "model.pt")
    assert enc.model.cfg.posterior_weight == 1.0 and enc.dim == 8 + len(enc.fine_classes) > 8
    out = enc.encode(generate_survey(SurveyConfig(n_objects=4, seed=78, min_detections=3)))
    np.testing.assert_allclose(out.vectors[:, 8:], out.fine_probs, atol=1e-6)
    with pytest.raises(SystemExit, match="cls-weight"):
        train(tiny_run(tmp_path / "unlabelled", model=replace(TINY, posterior_weight=1.0), cls_weight=0.0))


def test_ema_saves_the_averaged_weights_and_state_keeps_the_last(tmp_path):
    def weights(run):
        saved = load_checkpoint(run / "model.pt").model.state_dict()
        last = torch.load(run / "state.pt", map_location="cpu", weights_only=False)["model"]
        return saved, last

    train(tiny_run(tmp_path / "last", ema=0.0))  # decay 0: the average is the last step's weights
    saved, last = weights(tmp_path / "last")
    assert saved.keys() == last.keys() and all(torch.equal(saved[k], last[k]) for k in last)
    train(tiny_run(tmp_path / "avg", ema=0.9))
    saved, last = weights(tmp_path / "avg")
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert any(not torch.equal(saved[k], last[k]) for k in last if saved[k].is_floating_point())
    with pytest.raises(SystemExit, match="decay"):
        train(tiny_run(tmp_path / "bad", ema=1.0))
    train(tiny_run(tmp_path / "plain"))
    with pytest.raises(SystemExit, match="without --ema"):  # resuming a plain run with an average it never kept
        train(tiny_run(tmp_path / "plain", ema=0.9))


def test_a_recipe_runs_its_stages_in_order_each_from_the_last(tmp_path):
    from training import recipe

    (tmp_path / "tiny.toml").write_text("""
[common]
data = ["synthetic:ztf:90:3"]
use-features = true
gp-fit = false
d-model = 16
n-layers = 1
n-heads = 2
d-ff = 32
latent-dims = 8
max-len = 32
batch-size = 16
workers = 1
threads = 1
[[stage]]
name = "1-base"
epochs = 1
[[stage]]
name = "2-tuned"
epochs = 1
init-from = "{out}/1-base/model.pt"
""")
    recipe.main([str(tmp_path / "tiny.toml"), "--data-dir", "unused", "--out", str(tmp_path / "runs")])
    summary = json.loads((tmp_path / "runs" / "2-tuned" / "summary.json").read_text())
    assert summary["config"]["init_from"] == str(tmp_path / "runs" / "1-base" / "model.pt")
    assert summary["config"]["model"]["use_gp"] and not summary["config"]["gp_fit"]
    assert load_checkpoint(tmp_path / "runs" / "2-tuned" / "model.pt").config.latent_dim == 8


def test_early_copies_and_class_balancing_add_what_they_say():
    from training.data import balanced, early_copies

    lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=60, seed=5, min_detections=3))
    lcs = [replace(lc, label=None) if i % 3 == 0 else lc for i, lc in enumerate(lcs)]
    more = early_copies(lcs)
    added = more[len(lcs) :]
    long_labelled = [lc for lc in lcs if lc.label and len(lc.until(lc.time[0] + 30)) < len(lc)]
    assert {c.object_id for c in added} == {f"{lc.object_id}@30d" for lc in long_labelled}
    assert all(c.time[-1] - c.time[0] <= 30 and c.label for c in added)
    counts = {}
    for lc in balanced(lcs, 40):
        counts[lc.label] = counts.get(lc.label, 0) + 1
    originals = {}
    for lc in lcs:
        originals[lc.label] = originals.get(lc.label, 0) + 1
    assert counts[None] == originals[None]  # unlabelled curves are not repeated
    # each class repeated as a whole until about 40: v x (40 // v) light curves, a class of 40 or more as it is
    assert {k: counts[k] for k in originals if k} == {k: v * max(1, 40 // v) for k, v in originals.items() if k}
    assert any(counts[k] > v for k, v in originals.items() if k)
