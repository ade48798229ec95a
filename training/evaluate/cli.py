"""``rtf-evaluate``: the reference's evaluation tables for one or more checkpoints, each with
a feature baseline (``light-curve`` physics features) on the same objects.

    rtf-evaluate early   --checkpoint runs/ae64/model.pt --data ../shared/data/ztf_bts_dev.parquet --out eval/
    rtf-evaluate probe   --checkpoint runs/ae8/model.pt runs/vae8/model.pt ... --data ... --out eval/
    rtf-evaluate all     --checkpoint runs/ae64/model.pt --data ... --holdout none --out eval/

Each task (training/evaluate/tasks/) prints a markdown table and writes ``<name>.md``,
``<name>.json`` and PNG plots into ``--out``; ``all`` runs every one and also writes
``report.md`` with the command line at the top.

The evaluation set is the labelled objects of ``--data``; with ``--holdout val`` (default)
only those that training.data.split_of puts in the validation split (the checkpoint never
trained on their labels); ``--holdout none`` when the checkpoint never saw these labels.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field

from training.configurator import add_options, options_of, setting, values
from training.evaluate.tasks import TASKS


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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_options(common, options_of(EvalConfig))
    p = argparse.ArgumentParser(
        prog="rtf-evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (TASKS | {"all": "every task, plus report.md"}).items():
        sub.add_parser(name, parents=[common], help=text, description=text)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = EvalConfig(**values(args, options_of(EvalConfig)))
    from training.evaluate import tasks  # the heavy imports start here, once the command line is known good
    from training.evaluate.context import load_context
    from training.evaluate.report import write_report

    ctx = load_context(cfg)
    ctx.out.mkdir(parents=True, exist_ok=True)
    names = tuple(TASKS) if args.command == "all" else (args.command,)
    sections = [tasks.run(name, ctx) for name in names]
    if args.command == "all":
        command = f"rtf-evaluate {shlex.join(sys.argv[1:] if argv is None else argv)}"
        print(f"wrote {write_report(ctx, command, cfg.checkpoint, sections)}", file=sys.stderr)
