"""Every ``rtf-train`` setting, declared once: :class:`TrainConfig`'s fields (the run) and
:data:`MODEL_OPTIONS` (the help text of ``encoder.model.rtf.ModelConfig``'s fields, the model).
The parser is built from them (training.configurator); nothing here imports PyTorch, so
``rtf-train --help`` and argument errors come back at once.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from training.configurator import Option, add_options, options_of, setting, source_options, values

if TYPE_CHECKING:
    from encoder.model.rtf import ModelConfig

DESCRIPTION = """\
Train an RTF model and write a run folder: model.pt (the checkpoint the service loads),
summary.json, metrics.json and state.pt (the last epoch's state: a second run into the same
--out resumes from it).

    rtf-train --data synthetic:ztf:20000 ../shared/data/ztf_bts_dev.parquet --mode ae --latent-dims 64 \\
        --use-metadata --use-features --no-gp-fit --cls-weight 0.5 --epochs 30 --out runs/demo

The bundled checkpoint's recipe (training/recipes/default.toml): python -m training.recipe default --data-dir DIR
"""


def _model_config() -> ModelConfig:
    from encoder.model.rtf import ModelConfig  # imports PyTorch: only when a TrainConfig is made

    return ModelConfig()


@dataclass
class TrainConfig:
    """One training run; ``model`` holds the architecture and inputs (their options: MODEL_OPTIONS)."""

    data: list[str] = field(
        metadata={"help": "sources: synthetic:ztf:N[:seed], .parquet, .avro, Avro folders", "metavar": "SOURCE"}
    )
    out: str = field(metadata={"help": "run folder; a second run into it resumes from its state.pt", "metavar": "DIR"})
    model: ModelConfig = field(default_factory=_model_config, metadata={"cli": False})  # the options below
    gp_fit: bool = setting(
        True,
        "with --use-features: add the multi-band Gaussian-process fit's features (slow); "
        "--no-gp-fit: the physics features alone",
    )
    cls_weight: float = setting(0.5, "weight of the classification loss; 0: no class heads (no labels used)")
    contrastive_weight: float = setting(
        0.0, "supervised contrastive loss on the fingerprints of labelled objects (metric learning)"
    )
    views: int = setting(
        1,
        "views of each object per batch, each truncated at random: with --contrastive-weight "
        "every labelled view has a positive, its own object seen otherwise (SupCon's two "
        "views)",
    )
    ema: float | None = setting(
        None,
        "save the exponential moving average of the weights, updated every step with "
        "this decay (0.995 averages about the last 200 steps); state.pt keeps the "
        "last weights",
        metavar="DECAY",
    )
    num_classes: int = setting(7, "coarse classes: 7 (encoder.taxonomy.COARSE_CLASSES) or the seed's 5", choices=(5, 7))
    random_truncate: bool = setting(False, "train on light curves cut at random (70% of views) to learn early ones")
    min_detections: int = setting(3, "with --random-truncate: the fewest detections a cut keeps")
    epochs: int = setting(30, "passes over the training split (the one-cycle schedule spans them all)")
    batch_size: int = setting(128, "objects per batch (rows: this x --views)")
    lr: float = setting(2e-3, "peak learning rate of the one-cycle schedule (AdamW)")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    seed: int = setting(0, "seed of the weights, batches and truncations")
    workers: int = setting(2, "processes for feature extraction")
    threads: int = setting(2, "PyTorch threads")
    val_fraction: float = setting(0.15, "fraction of objects in the validation split (training.data.split_of)")
    unlabelled: list[str] | None = setting(
        None, "sources whose labels training must not see (held out for evaluation)", nargs="*", metavar="SOURCE"
    )
    init_from: str | None = setting(
        None,
        "start from this checkpoint's weights and normalisation (fine-tuning; same architecture)",
        metavar="MODEL_PT",
    )
    early_copies: bool = setting(False, "also train on each labelled light curve cut to its first 30 days")
    balance_classes: int = setting(
        0, "repeat each class's labelled light curves up to about this many (0: as they come)", metavar="N"
    )
    train_only: str | None = setting(
        None, "train this module alone, everything else frozen (the fingerprints stay)", choices=("decoder",)
    )


#: ``ModelConfig`` (encoder.model.rtf) is the inference side's model description; its fields'
#: help text and command-line names are declared here. ``default`` marks rtf-train's defaults
#: where they differ from ModelConfig's (which are what a checkpoint lacking the key meant).
# fmt: off
MODEL_OPTIONS: dict[str, dict] = {
    "phot_channels": {"cli": False},  # fixed by encoder.features.photometry
    "meta_channels": {"cli": False},
    "use_metadata": {"help": "detections carry the alert's metadata (host, PSF, real-bogus...)", "default": False},
    "use_images": {"help": "add an image tower over the alert stamps"},
    "image_backbone": {"help": "image tower", "choices": ("simple", "zoobot")},
    "image_weights": {"help": "local Zoobot/timm ConvNeXt-pico state dict (never downloaded)", "metavar": "PATH"},
    "freeze_backbone": {"help": "keep the Zoobot backbone's weights fixed",
                        "deprecated": {"--finetune-backbone": False}},
    "use_gp": {"flag": "--use-features", "default": False, "deprecated": {"--use-gp": True},
               "help": "add the object's physics features (light-curve package; plus the GP fit's unless "
                       "--no-gp-fit)"},
    "gp_dim": {"cli": False},  # the feature count, from encoder.features.OBJECT_FEATURE_NAMES
    "d_model": {"help": "transformer width"},
    "n_layers": {"help": "transformer layers"},
    "n_heads": {"help": "attention heads"},
    "d_ff": {"help": "feed-forward width"},
    "dropout": {"help": "dropout in the transformer"},
    "max_len": {"help": "most recent detections the encoder reads"},
    "mode": {"help": "bottleneck: plain, variational or vector-quantised", "choices": ("ae", "vae", "vqvae")},
    "latent_dim": {"flag": "--latent-dims", "nargs": "+", "metavar": "DIM",
                   "help": "fingerprint length; several train one run each, into OUT/<mode><dim>"},
    "free_bits": {"help": "vae: KL below this many nats per latent dimension is free"},
    "codebook_size": {"help": "vqvae: codebook entries"},
    "decoder": {"help": "query: the light curve at any (time, band); position: the seed's, by sequence position",
                "choices": ("query", "position")},
    "decoder_film": {"help": "query decoder: the fingerprint also FiLM-modulates every hidden layer"},
    "coarse_classes": {"cli": False},  # from --num-classes (none with --cls-weight 0)
    "fine_classes": {"cli": False},
    "posterior_weight": {"metavar": "W", "help": "served fingerprints: unit length with W x the fine-class "
                         "probabilities appended, a class-aware metric for neighbour search (needs --cls-weight > 0; "
                         "training itself is unchanged)"},
}
# fmt: on


def train_options() -> list[Option]:
    return options_of(TrainConfig)


def model_options() -> list[Option]:
    return source_options("encoder.model.rtf", "ModelConfig", MODEL_OPTIONS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtf-train",
        description=DESCRIPTION,
        usage="%(prog)s --data SOURCE [SOURCE ...] --out DIR [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p.add_argument_group("the run (training.config.TrainConfig)"), train_options())
    add_options(p.add_argument_group("the model (encoder.model.rtf.ModelConfig)"), model_options(), "model.")
    return p


def check(tc: TrainConfig) -> None:
    """Refuse settings that cannot train, before any data is read."""
    if tc.views < 1:
        raise SystemExit(f"--views {tc.views}: need at least one view of each object")
    if tc.ema is not None and not 0.0 <= tc.ema < 1.0:
        raise SystemExit(f"--ema {tc.ema}: the decay per step must be in [0, 1)")
    if tc.model.posterior_weight < 0 or (tc.model.posterior_weight > 0 and tc.cls_weight <= 0):
        raise SystemExit(
            f"--posterior-weight {tc.model.posterior_weight}: must be >= 0, and > 0 only with "
            "--cls-weight > 0 (the probabilities come from the fine head)"
        )


def parse(argv: list[str] | None = None) -> list[TrainConfig]:
    """The runs a command line asks for: one per ``--latent-dims`` value."""
    ns = build_parser().parse_args(argv)
    run, model = values(ns, train_options()), values(ns, model_options(), "model.")
    dims = model.pop("latent_dim")
    from encoder.model.rtf import ModelConfig  # imports PyTorch: only once the command line is known good

    configs = []
    for dim in dims:
        out = run["out"] if len(dims) == 1 else str(Path(run["out"]) / f"{model['mode']}{dim}")
        configs.append(TrainConfig(**(run | {"out": out}), model=ModelConfig(**model, latent_dim=dim)))
    for tc in configs:
        check(tc)
    return configs
