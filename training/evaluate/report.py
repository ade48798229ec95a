"""Formatting of the evaluation's markdown and JSON: numbers, tables, one section's files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.evaluate.context import Context


def pct(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}%"


def num(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _clean(o: object) -> object:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_section(ctx: Context, name: str, md: str, data: dict) -> str:
    ctx.out.mkdir(parents=True, exist_ok=True)
    (ctx.out / f"{name}.md").write_text(md + "\n")
    (ctx.out / f"{name}.json").write_text(json.dumps(_clean(data), indent=1))
    print(md + "\n", flush=True)
    return md


def write_report(ctx: Context, command: str, checkpoints: list[str], sections: list[str]) -> Path:
    """``report.md``: the command line, the checkpoints' versions, then every section."""
    head = f"# RTF evaluation\n\n```\n{command}\n```\n\n"
    ckpts = "\n".join(
        f"- {name}: `{enc.version}` ({path})" for (name, enc), path in zip(ctx.encoders, checkpoints, strict=True)
    )
    path = ctx.out / "report.md"
    path.write_text(head + f"Checkpoints:\n{ckpts}\n\n" + "\n\n".join(sections) + "\n")
    return path
