"""rtf-train's and rtf-evaluate's command lines: built from the config dataclasses, every option
with help, old names still working, --help without PyTorch, and the default recipe expanding to
the commands scripts/train_default.sh ran before it became a recipe."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import MISSING, fields

import pytest

from training import config, recipe
from training.config import MODEL_OPTIONS, TrainConfig, build_parser, parse
from training.evaluate import cli as evaluate_cli

BASE = ["--data", "synthetic:ztf:10", "--out", "runs/x"]


def _actions(parser):
    return {a.dest: a for a in parser._actions if a.option_strings and a.help != "==SUPPRESS=="}


def test_every_setting_is_an_option_with_help_text_in_help():
    from encoder.model.rtf import ModelConfig

    text = build_parser().format_help()
    actions = _actions(build_parser())
    wanted = [f.name for f in fields(TrainConfig) if f.metadata.get("cli", True)]
    wanted += [f"model.{name}" for name, meta in MODEL_OPTIONS.items() if meta.get("cli", True)]
    assert set(wanted) | {"help"} == set(actions)
    for dest in wanted:
        action = actions[dest]
        assert len(action.help) > 10, dest
        assert action.option_strings[0] in text, dest
    # every field of ModelConfig is declared: an option, or computed by training (cli: False)
    assert set(MODEL_OPTIONS) == {f.name for f in fields(ModelConfig)}
    assert "--resume" not in text and "--gp-dim" not in text and "%(" not in text


def test_model_options_read_from_source_match_the_dataclass():
    from encoder.model.rtf import ModelConfig

    real = {f.name: f for f in fields(ModelConfig)}
    for o in config.model_options():
        meta = MODEL_OPTIONS[o.name]
        default = [real[o.name].default] if o.nargs else real[o.name].default
        assert real[o.name].default is not MISSING
        assert o.default == meta.get("default", default), o.name


def test_defaults_of_the_command_line():
    from encoder.model.rtf import ModelConfig

    (tc,) = parse(BASE)
    # rtf-train trains on photometry alone unless asked (ModelConfig's own defaults say what a checkpoint
    # without the key meant)
    assert tc == TrainConfig(
        data=["synthetic:ztf:10"], out="runs/x", model=ModelConfig(use_metadata=False, use_gp=False)
    )


def test_renamed_options_and_their_deprecated_aliases(capsys):
    (new,) = parse([*BASE, "--use-features", "--no-gp-fit", "--no-freeze-backbone"])
    assert capsys.readouterr().err == ""
    (old,) = parse([*BASE, "--use-gp", "--no-gp-fit", "--finetune-backbone"])
    err = capsys.readouterr().err
    assert "--use-gp is deprecated, use --use-features" in err
    assert "--finetune-backbone is deprecated, use --no-freeze-backbone" in err
    assert old == new
    assert new.model.use_gp and not new.gp_fit and not new.model.freeze_backbone  # the saved key stays use_gp
    evaluate = ["knn", "--checkpoint", "m.pt", "--data", "x", "--out", "o"]
    old, new = (evaluate_cli.build_parser().parse_args([*evaluate, flag]) for flag in ("--gp", "--gp-fit"))
    assert old.gp_fit is new.gp_fit is True and "--gp is deprecated, use --gp-fit" in capsys.readouterr().err


def test_gone_and_wrong_options_are_refused(capsys):
    for argv in ([*BASE, "--gp-dim", "12"], [*BASE, "--resume"], [*BASE, "--mode", "gan"], ["--out", "x"]):
        with pytest.raises(SystemExit) as exc:
            parse(argv)
        assert exc.value.code == 2, argv
    with pytest.raises(SystemExit, match="at least one view"):
        parse([*BASE, "--views", "0"])  # refused before any data is read
    with pytest.raises(SystemExit, match="cls-weight"):
        parse([*BASE, "--posterior-weight", "1", "--cls-weight", "0"])


def test_several_latent_dims_train_one_run_each():
    runs = parse([*BASE, "--mode", "vae", "--latent-dims", "8", "64", "--epochs", "3"])
    assert [(tc.out, tc.model.latent_dim, tc.model.mode, tc.epochs) for tc in runs] == [
        ("runs/x/vae8", 8, "vae", 3),
        ("runs/x/vae64", 64, "vae", 3),
    ]


PROBE = """
import runpy, sys
module, sys.argv = sys.argv[1], ["prog", *sys.argv[2:]]
try:
    runpy.run_module(module, run_name="__main__")
except SystemExit:
    pass
print("HEAVY", [m for m in ("torch", "sklearn", "matplotlib", "numpy") if m in sys.modules])
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["training.train", "--help"],
        ["training.train", "--data", "x"],
        ["training.evaluate", "all", "--help"],
        ["training.evaluate", "knn"],
        ["training.recipe", "--help"],
    ],
)
def test_help_and_argument_errors_import_no_heavy_module(argv):
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "usage:" in out.stdout + out.stderr


# ---------------------------------------------------------------------------- the default recipe
# scripts/train_default.sh before it became training/recipes/default.toml, with DATA=D and OUT=O
OLD_COMMON = [
    "--data", "synthetic:ztf:16000:1", "synthetic:lsst:3000:2", "D/ztf_alerts/alerts.parquet",
    "D/alerce_lc_classifier.parquet", "D/plasticc_train.parquet", "D/ztf_bts_dev.parquet",
    "--unlabelled", "D/ztf_bts_dev.parquet",
    "--mode", "ae", "--latent-dims", "64", "--use-metadata", "--use-gp", "--no-gp-fit", "--cls-weight", "0.5",
    "--num-classes", "7", "--random-truncate", "--min-detections", "3", "--d-model", "64", "--n-layers", "3",
    "--n-heads", "4", "--d-ff", "128", "--dropout", "0.1", "--max-len", "128",
]  # fmt: skip
OLD_STAGES = [
    [*OLD_COMMON, "--epochs", "12", "--out", "O/1-base"],
    [*OLD_COMMON, "--epochs", "4", "--lr", "1e-3", "--init-from", "O/1-base/model.pt", "--out", "O/2-finetune"],
    [*OLD_COMMON, "--epochs", "8", "--lr", "5e-4", "--init-from", "O/2-finetune/model.pt", "--out", "O/3-finetune"],
    [*OLD_COMMON, "--decoder-film", "--train-only", "decoder", "--epochs", "10", "--lr", "1e-3",
     "--init-from", "O/3-finetune/model.pt", "--out", "O/4-film"],
    [*OLD_COMMON, "--decoder-film", "--train-only", "decoder", "--epochs", "12", "--lr", "2e-3",
     "--init-from", "O/4-film/model.pt", "--out", "O/5-film"],
]  # fmt: skip


def _token(t: str) -> object:
    """Numbers as numbers (the recipe writes 1e-3 as 0.001), and --use-gp under its new name."""
    try:
        return float(t)
    except ValueError:
        return "--use-features" if t == "--use-gp" else t


def test_the_default_recipe_expands_to_the_old_scripts_commands():
    stages = recipe.expand(recipe.load("default"), "D", "O")
    names = ["1-base", "2-finetune", "3-finetune", "4-film", "5-film", "6-bts-labels", "7-film", "8-film"]
    assert [name for name, _ in stages] == names
    for (_, argv), old in zip(stages[:5], OLD_STAGES, strict=True):
        assert list(map(_token, argv)) == list(map(_token, old))
        assert parse(argv) == parse(old)  # the same runs, field by field
    # 6: every BTS label (none hidden), beside new synthetic light curves, from stage 5; 7-8: its decoder alone
    (six,), (seven,), (eight,) = parse(stages[5][1]), parse(stages[6][1]), parse(stages[7][1])
    assert six.data == ["D/ztf_bts_dev.parquet", "synthetic:ztf:2000:5"] and not six.unlabelled
    assert (six.early_copies, six.balance_classes, six.contrastive_weight, six.views) == (True, 150, 20.0, 2)
    assert six.model.posterior_weight == 2 and six.init_from == "O/5-film/model.pt"
    assert (seven.train_only, seven.init_from, seven.data, seven.model.posterior_weight) == (
        "decoder", "O/6-bts-labels/model.pt", six.data, 2
    )
    assert (eight.train_only, eight.init_from, eight.data, eight.model.posterior_weight, eight.epochs) == (
        "decoder", "O/7-film/model.pt", six.data, 2, 60
    )
    assert recipe.load("default") == recipe.load(str(recipe.RECIPES / "default.toml"))


# experiments/sweep_bottlenecks.sh before it became training/recipes/sweep.toml (EPOCHS=6)
OLD_SWEEP_COMMON = ["--data", "synthetic:ztf:6000:3", "D/ztf_bts_dev.parquet", "--unlabelled", "D/ztf_bts_dev.parquet",
                    "--cls-weight", "0.5", "--random-truncate", "--epochs", "6", "--d-model", "64", "--n-layers", "3",
                    "--n-heads", "4", "--d-ff", "128", "--dropout", "0.1", "--max-len", "128", "--workers", "1",
                    "--threads", "1"]  # fmt: skip
OLD_SWEEP = [
    [*OLD_SWEEP_COMMON, "--mode", mode, "--latent-dims", "8", "64", "256", "--out", f"O/{mode}"]
    for mode in ("ae", "vae", "vqvae")
]
OLD_SWEEP.append(
    [*OLD_SWEEP_COMMON, "--mode", "ae", "--latent-dims", "64", "--decoder", "position", "--out", "O/position/ae64"]
)


def test_the_sweep_recipe_expands_to_the_old_scripts_commands():
    stages = recipe.expand(recipe.load("sweep"), "D", "O")
    assert [argv for _, argv in stages] == OLD_SWEEP
    assert [tc.out for tc in parse(stages[1][1])] == ["O/vae/vae8", "O/vae/vae64", "O/vae/vae256"]
    ((_, argv),) = recipe.expand(recipe.load("sweep"), "D", "O", extra=["--epochs", "2"])[-1:]
    assert argv[-4:] == ["--epochs", "2", "--out", "O/position/ae64"] and parse(argv)[0].epochs == 2


def test_recipe_runner_picks_stages_and_checks_every_command_first(tmp_path, capsys):
    recipe.main(
        ["default", "--data-dir", "D", "--out", "O", "--stage", "2", "5-film", "--dry-run", "--", "--seed", "4"]
    )
    err = capsys.readouterr().err
    assert "# 2-finetune\nrtf-train --data" in err and "--seed 4 --out O/5-film" in err and "1-base\n" not in err
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'out = "o"\n[common]\ndata = ["x"]\n[[stage]]\nname = "a"\nepochs = 1\n[[stage]]\nname = "b"\nepoch = 2\n'
    )
    with pytest.raises(SystemExit, match="stage b: epoch: no such option"):
        recipe.main([str(bad), "--data-dir", "D"])
    bad.write_text('out = "o"\n[common]\ndata = ["x"]\n[[stage]]\nname = "a"\nmode = "gan"\n')
    with pytest.raises(SystemExit):
        recipe.main([str(bad), "--data-dir", "D"])  # refused by rtf-train's parser, before any stage runs
    with pytest.raises(SystemExit, match="stages are 1, 2"):
        recipe.main(["default", "--data-dir", "D", "--stage", "9", "--dry-run"])
