"""The ceiling of label fine-tuning for same-class kNN on BTS: nothing held out.

The default checkpoint is fine-tuned on **all** BTS labels with the recipe of
``finetune_knn_cv.py`` (two views, early copies, rare classes repeated), then every object is a
query, so each query's own label was seen in training. The gap between this and the
cross-validated figure is what held-out objects lose; a class that stays low here is one the
fine-tuning does not separate even when it has seen every member.

    python experiments/knn_seen_labels.py --data ../shared/data/ztf_bts_dev.parquet --out runs/knn_seen_labels
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from finetune_knn_cv import ARCHITECTURE, MIN_DETECTIONS, K, balanced  # a sibling script: same recipe

from encoder.checkpoint import DEFAULT_CHECKPOINT
from encoder.inference import Encoder
from encoder.readers import read_bts_parquet, write_lightcurves_parquet
from training.evaluate import metrics
from training.train import main as train_main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="ztf_bts_dev.parquet")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="the model to fine-tune")
    ap.add_argument("--per-class", type=int, default=150, help="repeat rare classes up to this many light curves")
    ap.add_argument("--seed", type=int, default=4)
    args = ap.parse_args(argv)

    every = read_bts_parquet(args.data)
    lcs = [lc for lc in every if len(lc) >= MIN_DETECTIONS and lc.label]
    labels = np.array([lc.label for lc in lcs])
    labelled = [lc for lc in every if lc.label]
    early = metrics.first_days(labelled)
    labelled += [
        replace(e, object_id=f"{e.object_id}@30d") for e, lc in zip(early, labelled, strict=True) if len(e) < len(lc)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_lightcurves_parquet(balanced(labelled, args.per_class), args.out / "labelled.parquet")
    if not (args.out / "model" / "model.pt").exists():
        train_main([
            "--data", str(args.out / "labelled.parquet"), *ARCHITECTURE, "--init-from", args.checkpoint,
            "--epochs", "20", "--lr", "2e-3", "--cls-weight", "0.5", "--batch-size", "64", "--views", "2",
            "--contrastive-weight", "20", "--seed", str(args.seed), "--out", str(args.out / "model"),
        ])  # fmt: skip
    enc = Encoder.load(args.out / "model" / "model.pt")
    res = {}
    print(f"\nsame-class precision@{K}, macro over classes, every query's label seen in fine-tuning\n")
    for view, view_lcs in {"full": lcs, "first 30 days": metrics.first_days(lcs)}.items():
        macro, per_class = metrics.macro_by_class(
            metrics.same_class_hits(enc.encode(view_lcs).vectors, labels, K, "cosine"), labels
        )
        res[view] = {"macro": macro, "per_class": per_class}
        print(f"{view}: {macro:.3f}  " + ", ".join(f"{c} {p:.2f}" for c, p in sorted(per_class.items())))
    (args.out / "knn_seen_labels.json").write_text(
        json.dumps({"args": vars(args), "results": res}, indent=1, default=str)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
