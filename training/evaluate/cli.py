"""``rtf-evaluate``: the reference's evaluation tables for one or more checkpoints, each with
a feature baseline (``light-curve`` physics features) on the same objects.

    rtf-evaluate early   --checkpoint runs/ae64/model.pt --data ../shared/data/ztf_bts_dev.parquet --out eval/
    rtf-evaluate probe   --checkpoint runs/ae8/model.pt runs/vae8/model.pt ... --data ... --out eval/
    rtf-evaluate all     --checkpoint runs/ae64/model.pt --data ... --holdout none --out eval/
    rtf-evaluate novelty --checkpoint encoder/checkpoints/rtf-default.pt --data synthetic:ztf:3000:4242 \
        --holdout none --threads 2 --out eval/novelty      # trains one model per left-out kind
    rtf-evaluate feedback --checkpoint encoder/checkpoints/rtf-default.pt \
        --data synthetic:ztf:3000:11 synthetic:ztf:3000:12 --holdout none --out eval/feedback

Each task (training/evaluate/tasks/) prints a markdown table and writes ``<name>.md``,
``<name>.json`` and PNG plots into ``--out``; ``all`` runs every one and also writes
``report.md`` with the command line at the top. ``novelty`` (it trains a model per left-out kind)
and ``feedback`` (a simulated expert) are not part of ``all``; their own options are listed under
``rtf-evaluate novelty --help`` and ``rtf-evaluate feedback --help``.

The evaluation set is the labelled objects of ``--data``; with ``--holdout val`` (default)
only those that training.data.split_of puts in the validation split (the checkpoint never
trained on their labels); ``--holdout none`` when the checkpoint never saw these labels.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field

from encoder.taxonomy import FINE_CLASSES
from training.configurator import add_options, options_of, setting, values
from training.evaluate.tasks import IN_ALL, TASKS


@dataclass
class NoveltyConfig:
    """``novelty``'s own options (training.evaluate.tasks.novelty)."""

    kinds: list[str] = setting(
        ["TDE", "KN", "SLSN"], "kinds to leave out of training, one model each", choices=FINE_CLASSES, metavar="KIND"
    )
    train_data: list[str] = setting(
        ["synthetic:ztf:8000:101"],
        "training sources of the left-out models (objects of the kind, unlabelled ones and the catalogue's are removed)",
        metavar="SOURCE",
    )
    epochs: int = setting(8, "epochs of each left-out model")
    min_kind: int = setting(
        30, "top the catalogue up with synthetic light curves of each kind to at least N", metavar="N"
    )
    work: str = setting("runs/novelty", "folder of the left-out models (a finished one is reused)", metavar="DIR")


@dataclass
class FeedbackConfig:
    """``feedback``'s own options (training.evaluate.tasks.feedback)."""

    kinds: list[str] = setting(
        ["TDE", "SLSN", "SNIIn"], "single kinds of interest, each a target of its own", choices=FINE_CLASSES,
        metavar="KIND",
    )  # fmt: skip
    questions: int = setting(20, "answers the simulated expert gives (and the k of precision@k)")
    rare_share: float = setting(0.02, "the 'rare kinds' target: kinds below this share of the catalogue", metavar="F")


#: the options only one task has, by task
TASK_CONFIGS: dict[str, type] = {"novelty": NoveltyConfig, "feedback": FeedbackConfig}


@dataclass
class EvalConfig:
    """The options every task shares (the tasks read them as ``ctx.args``)."""

    checkpoint: list[str] = field(metadata={"help": "one or more model.pt files"})
    data: list[str] = field(metadata={"help": "sources training.data.load_source accepts"})
    out: str = field(metadata={"help": "output folder for tables (.md, .json) and plots (.png)"})
    holdout: str = setting(
        "val", "val: only objects in the validation split; none: every labelled object", choices=("val", "none")
    )
    limit: int | None = setting(None, "stratified subsample of about N objects", metavar="N")
    min_detections: int | None = setting(None, "drop shorter light curves (default 5 for knn, else 1)", metavar="N")
    level: str | None = setting(
        None, "class level (default coarse for early and probe, else fine)", choices=("coarse", "fine")
    )
    cv: int = setting(5, "cross-validation folds of the baselines and probes")
    gp_fit: bool = setting(False, "the baseline's features include the GP fit's (slow)", deprecated={"--gp": True})
    seed: int = setting(0, "seed of --limit's subsample, the cross-validation shuffles and the embeddings")
    repeats: int = setting(5, "probe: cross-validations with different shuffles")
    threads: int = setting(1, "PyTorch threads")
    command: str = field(default="", metadata={"cli": False})  # the command line, for the tables' headers
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig, metadata={"cli": False})
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig, metadata={"cli": False})


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_options(common, options_of(EvalConfig))
    p = argparse.ArgumentParser(
        prog="rtf-evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    left_out = ", ".join(t for t in TASKS if t not in IN_ALL)
    for name, text in (TASKS | {"all": f"every task but {left_out}, plus report.md"}).items():
        task = sub.add_parser(name, parents=[common], help=text, description=text)
        if name in TASK_CONFIGS:
            add_options(task.add_argument_group(f"{name} only"), options_of(TASK_CONFIGS[name]), f"{name}.")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    command = f"rtf-evaluate {shlex.join(sys.argv[1:] if argv is None else argv)}"
    cfg = EvalConfig(**values(args, options_of(EvalConfig)), command=command)
    if args.command in TASK_CONFIGS:  # the task's own options, as cfg.<task>
        own = TASK_CONFIGS[args.command]
        setattr(cfg, args.command, own(**values(args, options_of(own), f"{args.command}.")))
    from training.evaluate import tasks  # the heavy imports start here, once the command line is known good
    from training.evaluate.context import load_context
    from training.evaluate.report import write_report

    ctx = load_context(cfg)
    ctx.out.mkdir(parents=True, exist_ok=True)
    names = IN_ALL if args.command == "all" else (args.command,)
    sections = [tasks.run(name, ctx) for name in names]
    if args.command == "all":
        print(f"wrote {write_report(ctx, command, cfg.checkpoint, sections)}", file=sys.stderr)
