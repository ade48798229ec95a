"""What every evaluation task shares: the evaluation set (the labelled objects of ``--data``,
with ``--holdout val`` only those of the validation split), the loaded checkpoints, and
caches of each truncated view, its fingerprints and its baseline features.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from encoder.inference import Encoded, Encoder
from encoder.lightcurve import LightCurve
from encoder.rarity import Ranking
from encoder.taxonomy import coarse_of
from training.data import load_source, split_of
from training.evaluate import baselines, metrics

if TYPE_CHECKING:
    from training.evaluate.cli import EvalConfig

DEFAULT_MIN_DET = {"knn": 5}
DEFAULT_LEVEL = {"early": "coarse", "probe": "coarse"}
FULL, DAYS30 = ("full",), ("days", 30.0)


@dataclass
class Context:
    """The evaluation set, the loaded checkpoints and in-memory caches shared by subcommands."""

    args: EvalConfig
    lcs: list[LightCurve]
    sources: list[str]
    encoders: list[tuple[str, Encoder]]
    out: Path
    description: str = ""
    _views: dict = field(default_factory=dict)
    _encoded: dict = field(default_factory=dict)

    def view(self, v: tuple) -> list[LightCurve]:
        """('full',), ('first', n) or ('days', d): the base set as seen at that point."""
        if v not in self._views:
            if v[0] == "full":
                self._views[v] = self.lcs
            elif v[0] == "first":
                self._views[v] = metrics.truncate(self.lcs, v[1])
            else:
                self._views[v] = metrics.first_days(self.lcs, v[1])
        return self._views[v]

    def encoded(self, k: int, v: tuple) -> Encoded:
        if (k, v) not in self._encoded:
            name, enc = self.encoders[k]
            self._encoded[(k, v)] = fingerprints(enc, self.view(v), desc=f"{name} {'/'.join(map(str, v))}")
        return self._encoded[(k, v)]

    def features(self, v: tuple) -> np.ndarray:
        return baselines.feature_matrix(self.view(v), use_gp=self.args.gp_fit, desc=f"features {v}")

    def labels(self, level: str) -> np.ndarray:
        fine = [lc.label for lc in self.lcs]
        return np.array([coarse_of(f) if level == "coarse" else f for f in fine], dtype=object)

    def select(self, cmd: str, level: str | None = None) -> np.ndarray:
        """Indices of base objects with >= min detections and a label at ``level``."""
        min_det = self.args.min_detections or DEFAULT_MIN_DET.get(cmd, 1)
        lab = self.labels(level or "fine")
        return np.array([i for i, lc in enumerate(self.lcs) if len(lc) >= min_det and lab[i] is not None], dtype=int)

    def level(self, cmd: str) -> str:
        return self.args.level or DEFAULT_LEVEL.get(cmd, "fine")

    def set_line(self, idx: np.ndarray, level: str, cmd: str) -> str:
        counts = Counter(self.labels(level)[idx].tolist())
        min_det = self.args.min_detections or DEFAULT_MIN_DET.get(cmd, 1)
        classes = ", ".join(f"{c} {n}" for c, n in counts.most_common())
        return f"{self.description}; {len(idx)} objects with >= {min_det} detections ({level}: {classes})"


def fingerprints(enc: Encoder, lcs: list[LightCurve], desc: str = "fingerprints", chunk: int = 256) -> Encoded:
    """Encoded for a list of light curves, in batches with a progress bar, in input order."""
    parts = [enc.encode(lcs[s : s + chunk]) for s in tqdm(range(0, len(lcs), chunk), desc=desc, leave=False)]
    return Encoded.concat(parts)


def catalogue_ranking(
    enc: Encoder, e: Encoded, lcs: list[LightCurve], rows: np.ndarray | None = None, **options
) -> Ranking:
    """The :class:`~encoder.rarity.Ranking` of a catalogue (the rows ``rows`` of ``e`` and ``lcs``, all by
    default) with what app.ranking gives it: the model's own fingerprint (not the class-aware metric's
    appendix), the fine-class probabilities and each light curve's detections. ``options``: Ranking.build's."""
    idx = np.arange(len(lcs)) if rows is None else np.asarray(rows)
    probs = None if e.fine_probs is None else e.fine_probs[idx]
    fine = [None] * len(idx) if probs is None else [enc.fine_classes[i] for i in probs.argmax(1)]
    given = {"detections": np.array([len(lcs[i]) for i in idx]), "probabilities": probs, "classes": enc.fine_classes}
    return Ranking.build(e.vectors[idx, : enc.latent_dim], fine, e.anomaly[idx], **(given | options))


def load_context(args: EvalConfig) -> Context:
    torch.set_num_threads(args.threads)
    encoders, seen = [], Counter()
    for path in args.checkpoint:
        enc = Encoder.load(path, batch_size=256)
        name = f"{enc.model.cfg.mode}{enc.model.cfg.latent_dim}"
        seen[name] += 1
        encoders.append((name if seen[name] == 1 else f"{name}#{seen[name]}", enc))
    val_fraction = encoders[0][1].ckpt.summary.get("config", {}).get("val_fraction", 0.15)
    lcs, sources, ids = [], [], set()
    for src in args.data:
        for lc in load_source(src):
            if lc.label is None or lc.object_id in ids:
                continue
            if args.holdout == "val" and split_of(lc.object_id, val_fraction) != "val":
                continue
            ids.add(lc.object_id)
            lcs.append(lc)
            sources.append(Path(src).stem if not src.startswith("synthetic:") else src)
    if args.limit and len(lcs) > args.limit:
        keep = stratified_subsample([lc.label for lc in lcs], args.limit, args.seed)
        lcs, sources = [lcs[i] for i in keep], [sources[i] for i in keep]
    if not lcs:
        raise SystemExit("no labelled objects in the evaluation set (check --data and --holdout)")
    hold = f"validation split only (split_of, val_fraction {val_fraction})" if args.holdout == "val" else "all"
    desc = f"data {', '.join(args.data)}; holdout: {hold}" + (
        f"; stratified --limit {args.limit}" if args.limit else ""
    )
    return Context(args, lcs, sources, encoders, Path(args.out), desc)


def stratified_subsample(labels: list, n: int, seed: int = 0) -> np.ndarray:
    """~n indices keeping class proportions (every class keeps at least one member)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=object)
    keep = []
    for c, count in Counter(labels.tolist()).items():
        members = np.flatnonzero(labels == c)
        keep.extend(rng.choice(members, size=max(1, round(n * count / len(labels))), replace=False))
    return np.sort(np.asarray(keep, dtype=int))
