"""The evaluation tasks, one module each (its computation, markdown table and plots), in the
order ``rtf-evaluate all`` runs them (:data:`IN_ALL`: every one but those that train models or
simulate an expert). Each module's ``run(ctx)`` writes ``<name>.md``,
``<name>.json`` and its PNGs into ``ctx.out`` and returns its markdown section.

Importing this package imports no task: ``rtf-evaluate --help`` needs only the names below.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.evaluate.context import Context

#: name → one line for --help
TASKS = {
    "early": "early classification vs detection count",
    "probe": "linear / MLP probe of fingerprints",
    "recon": "physical-unit reconstruction",
    "knn": "same-class precision@10 retrieval",
    "anomaly": "AUROC of rare classes vs common SNe",
    "embed": "UMAP / t-SNE plots",
    "novelty": "leave-one-kind-out: AUROC of a kind no model trained on (trains one model per kind)",
    "feedback": "active anomaly re-ranking with a simulated expert: precision@20 before / after 20 answers",
}
#: what ``rtf-evaluate all`` runs
IN_ALL: tuple[str, ...] = ("early", "probe", "recon", "knn", "anomaly", "embed")


def run(name: str, ctx: Context) -> str:
    """Run task ``name`` on ``ctx``; its markdown section."""
    return import_module(f"training.evaluate.tasks.{name}").run(ctx)
