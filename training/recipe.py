"""Run a training recipe: a TOML file of rtf-train stages (training/recipes/default.toml is
the bundled checkpoint's), one rtf-train process per stage, in order.

    python -m training.recipe default --data-dir ../shared/data [--out runs/default]
    python -m training.recipe training/recipes/default.toml --data-dir ../shared/data --stage 4 5
    python -m training.recipe default --data-dir ../shared/data --dry-run    # print the commands
    python -m training.recipe sweep --data-dir ../shared/data -- --epochs 2  # more options for every stage

A recipe holds ``out`` (the default ``--out``), a ``[common]`` table and ``[[stage]]`` tables,
each with a ``name`` (its run folder under ``--out``); their other keys are rtf-train's options
without the ``--``. Every stage's command line is checked before the first one starts.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from training.config import build_parser, model_options, train_options
from training.configurator import to_argv

RECIPES = Path(__file__).resolve().parent / "recipes"


def load(recipe: str) -> dict[str, Any]:
    """A recipe by path, or by name from training/recipes/."""
    path = Path(recipe)
    if not path.is_file() and (RECIPES / f"{recipe}.toml").is_file():
        path = RECIPES / f"{recipe}.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"{recipe}: not a readable recipe ({exc})") from None


def _fill(value: Any, data_dir: str, out: str) -> Any:
    if isinstance(value, list):
        return [_fill(v, data_dir, out) for v in value]
    return value.replace("{data}", data_dir).replace("{out}", out) if isinstance(value, str) else value


def expand(
    recipe: dict[str, Any], data_dir: str, out: str | None = None, extra: list[str] | None = None
) -> list[tuple[str, list[str]]]:
    """(stage name, rtf-train arguments) of every stage: ``[common]``'s options, the stage's, ``extra``
    (rtf-train's last-given value wins) and ``--out``."""
    out = out or recipe.get("out")
    if not out:
        raise SystemExit("the recipe names no out folder: give --out")
    options = train_options() + model_options()
    common = {k: _fill(v, data_dir, out) for k, v in recipe.get("common", {}).items()}
    stages = []
    for stage in recipe.get("stage", []):
        settings = {k: _fill(v, data_dir, out) for k, v in stage.items() if k != "name"}
        try:
            argv = to_argv(common, options) + to_argv(settings, options)
        except KeyError as exc:
            raise SystemExit(f"stage {stage.get('name')}: {exc.args[0]}") from None
        stages.append((stage["name"], [*argv, *(extra or []), "--out", f"{out}/{stage['name']}"]))
    return stages


def pick(stages: list[tuple[str, list[str]]], wanted: list[str] | None) -> list[tuple[str, list[str]]]:
    """The stages named, or numbered from 1, in ``wanted`` (all without it), in recipe order."""
    if not wanted:
        return stages
    known = {str(i): name for i, (name, _) in enumerate(stages, 1)} | {name: name for name, _ in stages}
    if unknown := [w for w in wanted if w not in known]:
        raise SystemExit(f"--stage {' '.join(unknown)}: the recipe's stages are {', '.join(known)}")
    names = {known[w] for w in wanted}
    return [s for s in stages if s[0] in names]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m training.recipe",
        description=__doc__,
        usage="%(prog)s RECIPE --data-dir DIR [options] [-- rtf-train options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", help="a recipe file, or the name of one in training/recipes/ (default, sweep)")
    p.add_argument("--data-dir", required=True, help="the folder {data} stands for in the recipe")
    p.add_argument(
        "--out", help="the folder {out} stands for; the stages train into OUT/<name> (default: the recipe's out)"
    )
    p.add_argument("--stage", nargs="+", metavar="N", help="run only these stages (numbers from 1 or names)")
    p.add_argument("--dry-run", action="store_true", help="print the rtf-train commands and stop")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    a, extra = p.parse_args(argv[:cut]), argv[cut + 1 :]
    stages = pick(expand(load(a.recipe), a.data_dir, a.out, extra), a.stage)
    parser = build_parser()
    for _, stage_argv in stages:
        parser.parse_args(stage_argv)  # a typo fails now, not after hours of earlier stages
    for name, stage_argv in stages:
        print(f"# {name}\nrtf-train {shlex.join(stage_argv)}", file=sys.stderr, flush=True)
        if not a.dry_run and (rc := subprocess.run([sys.executable, "-m", "training.train", *stage_argv]).returncode):
            raise SystemExit(f"stage {name} failed (exit status {rc}); the same command again resumes it")
    if stages and not a.dry_run:
        print(f"done: {stages[-1][1][-1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
