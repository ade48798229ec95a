"""Same-class kNN on BTS with fingerprints fine-tuned on BTS labels, cross-validated.

The default model never saw a BTS label (docs/evaluation.md). Here, for each of 5 stratified folds,
the default checkpoint is fine-tuned (``rtf-train --init-from``) on the labels of the other four folds,
with the supervised contrastive loss on the fingerprints (``--contrastive-weight``)
(the held-out fold's light curves stay in training without their labels, as in the default model),
then every object is encoded and the held-out fold's objects are the queries: the fraction of their
10 nearest other objects (cosine, all objects are candidates) sharing their class, averaged within
classes, then over classes — the metric of ``rtf-evaluate knn``. The baselines see the same folds:
physics features (cosine, unsupervised) and physics features + shrinkage LDA fitted on the other
folds' labels. Rare classes are repeated in the fine-tuning set (random truncation makes the copies
differ; with ``--reobserve`` each copy is also a re-observation: detections dropped, fluxes
re-drawn within their errors, time stretched) so that 911 SNIa do not drown 3 TDE. With
``--early-copies`` the labelled set also holds each labelled light curve cut to its first 30 days,
the view a real-time query has. With ``--views 2`` every object is in its batch twice, truncated
apart (``rtf-train --views``). With ``--ema 0.995`` the fine-tuned fingerprints are those of the weights'
moving average (``rtf-train --ema``), and the last weights of the same runs are scored beside them.
``--extra-labelled`` adds labelled light curves of BTS's classes from other sources (never a BTS
object) to every fold's fine-tuning set: more distinct objects of the rare classes. They are neither
queries nor candidates. With ``--posterior-weight W`` each fine-tuned model is also scored as it
serves with ``rtf-train --posterior-weight W``: its fingerprint at unit length with W times its
fine-class probabilities appended, a class-aware metric on the same fingerprints (the probabilities
are the head's function of them), paired with the plain one. ``--replay`` adds labelled light curves of
any class (a synthetic survey) to every fold's fine-tuning set, as stage 6 of training/recipes/default.toml
does, so that the heads keep the classes BTS lacks.

    python experiments/finetune_knn_cv.py --data ../shared/data/ztf_bts_dev.parquet --out runs/knn_cv

``--checkpoint`` must not have seen ``--data``'s labels (the bundled checkpoint has: recipe stage 6), or
every fold's held-out labels leak into it; the default is the recipe's stage 5
(``python -m training.recipe default --data-dir ../shared/data --stage 1 2 3 4 5``, or the bundled checkpoint
of commit 0fb3aa8: ``git show 0fb3aa8:encoder/checkpoints/rtf-default.pt > runs/default/5-film/model.pt``),
and a checkpoint whose training run lists ``--data`` as labelled data is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from encoder.anomaly import AnomalyScorer
from encoder.inference import Encoder
from encoder.readers import read_bts_parquet, write_lightcurves_parquet
from training.data import balanced, early_copies, load_sources
from training.evaluate import baselines, metrics
from training.train import main as train_main

K = 10
MIN_DETECTIONS = 5
ARCHITECTURE = ["--mode", "ae", "--latent-dims", "64", "--use-metadata", "--use-features", "--no-gp-fit",
                "--num-classes", "7", "--random-truncate", "--min-detections", "3", "--d-model", "64",
                "--n-layers", "3", "--n-heads", "4", "--d-ff", "128", "--dropout", "0.1", "--max-len", "128",
                "--decoder-film"]  # fmt: skip  # the default checkpoint's (training/recipes/default.toml)


def load_tuned(run: Path, last_weights: bool, posterior_weight: float) -> Encoder:
    """A fine-tuned model as it would serve with ``rtf-train --posterior-weight``; with ``last_weights``
    the run's last weights (state.pt) rather than its moving average."""
    enc = Encoder.load(run / "model.pt")
    if last_weights:
        enc.model.load_state_dict(torch.load(run / "state.pt", map_location="cpu", weights_only=False)["model"])
    if posterior_weight != enc.model.cfg.posterior_weight:  # the anomaly reference holds the other fingerprints
        enc.model.cfg = replace(enc.model.cfg, posterior_weight=posterior_weight)
        enc.ckpt.scorer = AnomalyScorer.unfitted(enc.ckpt.scorer.rare_mask)  # (only the fingerprints are read here)
        enc.info = replace(enc.info, dim=enc.model.cfg.served_dim, scorer=enc.ckpt.scorer)
    return enc


def saw_labels_of(summary: dict, data: str) -> bool:
    """Whether a checkpoint's training run (its summary's config) had ``data`` as labelled data."""
    cfg = summary.get("config", {})
    unlabelled = {Path(u).name for u in cfg.get("unlabelled") or []}
    return any(Path(d).name == Path(data).name and Path(d).name not in unlabelled for d in cfg.get("data") or [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="ztf_bts_dev.parquet")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--checkpoint",
        default="runs/default/5-film/model.pt",
        help="the model to fine-tune: one that never saw --data's labels (default: the recipe's stage 5)",
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-fold", type=int, help="run one fold (a quick look)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=128, help="objects per batch (each seen --views times)")
    ap.add_argument("--views", type=int, default=1, help="views of each object per batch (rtf-train --views)")
    ap.add_argument("--ema", type=float, help="fine-tune with a moving average of the weights (rtf-train --ema)")
    ap.add_argument("--cls-weight", type=float, default=0.5)
    ap.add_argument("--contrastive-weight", type=float, default=20.0)
    ap.add_argument("--per-class", type=int, default=150, help="repeat rare classes up to this many light curves")
    ap.add_argument("--early-copies", action="store_true", help="add each labelled curve's first 30 days")
    ap.add_argument("--reobserve", action="store_true", help="rare-class copies are re-observations, not duplicates")
    ap.add_argument(
        "--extra-labelled",
        nargs="+",
        default=[],
        metavar="SOURCE",
        help="labelled light curves from other sources (not BTS objects) added to the fine-tuning",
    )
    ap.add_argument(
        "--replay",
        nargs="+",
        default=[],
        metavar="SOURCE",
        help="labelled light curves of any class (e.g. a synthetic survey) added to every fold's fine-tuning, "
        "so that the heads keep the classes BTS lacks (training/recipes/default.toml stage 6)",
    )
    ap.add_argument("--seed", type=int, default=0, help="fold split and training seed")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads (1 beside another PyTorch job)")
    ap.add_argument(
        "--posterior-weight",
        type=float,
        help="also score fingerprint (unit) + this weight x the fine-class probabilities",
    )
    args = ap.parse_args(argv)
    if not Path(args.checkpoint).exists():
        raise SystemExit(f"--checkpoint {args.checkpoint}: not found (the module docstring says how to make it)")
    if saw_labels_of(Encoder.load(args.checkpoint).ckpt.summary, args.data):
        raise SystemExit(
            f"--checkpoint {args.checkpoint} was trained on the labels of {args.data}: the folds would leak"
        )

    every = read_bts_parquet(args.data)
    lcs = [lc for lc in every if len(lc) >= MIN_DETECTIONS and lc.label]
    labels = np.array([lc.label for lc in lcs])
    views = {"full": lcs, "first 30 days": metrics.first_days(lcs)}
    print(
        f"{len(lcs)} labelled BTS objects with >= {MIN_DETECTIONS} detections: {dict(Counter(labels))}", file=sys.stderr
    )
    bts_ids, classes = {lc.object_id for lc in every}, set(labels)
    extra = [lc for lc in load_sources(args.extra_labelled) if lc.label in classes and lc.object_id not in bts_ids]
    if extra:
        print(f"{len(extra)} extra labelled objects: {dict(Counter(lc.label for lc in extra))}", file=sys.stderr)
    replay = [lc for lc in load_sources(args.replay) if lc.label and lc.object_id not in bts_ids]
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(labels, labels))
    tuned_names = ["fine-tuned"] + (["fine-tuned, last weights (no average)"] if args.ema is not None else [])
    if args.posterior_weight is not None:
        tuned_names += [f"{n} + {args.posterior_weight:g} x class probabilities" for n in tuned_names]
    hits = {name: {v: np.full(len(lcs), np.nan) for v in views} for name in ["default", *tuned_names]}
    default = Encoder.load(args.checkpoint)  # the same fingerprints for every fold: encode once
    default_hits = {
        v: metrics.same_class_hits(default.encode(view_lcs).vectors, labels, K, "cosine")
        for v, view_lcs in views.items()
    }
    for f, (_, test) in enumerate(folds):
        if args.only_fold is not None and f != args.only_fold:
            continue
        run = args.out / f"fold{f}"
        run.mkdir(parents=True, exist_ok=True)
        held = {lcs[i].object_id for i in test}
        labelled = [lc for lc in every if lc.object_id not in held and lc.label] + extra + replay
        if args.early_copies:
            labelled = early_copies(labelled)
        rng = np.random.default_rng([args.seed, f]) if args.reobserve else None
        write_lightcurves_parquet(balanced(labelled, args.per_class, rng), run / "labelled.parquet")
        write_lightcurves_parquet([lc for lc in every if lc.object_id in held], run / "heldout.parquet")
        if not (run / "model" / "model.pt").exists():
            train_main([
                "--data", str(run / "labelled.parquet"), str(run / "heldout.parquet"),
                "--unlabelled", str(run / "heldout.parquet"), *ARCHITECTURE, "--init-from", args.checkpoint,
                "--epochs", str(args.epochs), "--lr", str(args.lr), "--cls-weight", str(args.cls_weight),
                "--batch-size", str(args.batch_size), "--views", str(args.views),
                "--contrastive-weight", str(args.contrastive_weight),
                "--seed", str(args.seed), "--threads", str(args.threads), "--out", str(run / "model"),
                *(["--ema", str(args.ema)] if args.ema is not None else []),
            ])  # fmt: skip
        weights = [False] + ([True] if args.ema is not None else [])  # the same run's last weights (state.pt)
        posterior = [0.0] + ([args.posterior_weight] if args.posterior_weight is not None else [])
        tuned = [load_tuned(run / "model", last, w) for w in posterior for last in weights]
        for v, view_lcs in views.items():
            hits["default"][v][test] = default_hits[v][test]
            for name, enc in zip(tuned_names, tuned, strict=True):
                hits[name][v][test] = metrics.same_class_hits(enc.encode(view_lcs).vectors, labels, K, "cosine")[test]
    done = ~np.isnan(hits["fine-tuned"]["full"])
    y = labels[done]
    res = {name: {v: metrics.macro_by_class(h[v][done], y) for v in views} for name, h in hits.items()}
    for v, view_lcs in views.items():
        x = baselines.impute_standardize(baselines.feature_matrix(view_lcs, use_gp=False))
        res.setdefault("physics features (cosine)", {})[v] = metrics.macro_by_class(
            metrics.same_class_hits(x, labels, K, "cosine")[done], y
        )
        res.setdefault("physics features + LDA (other folds' labels)", {})[v] = metrics.supervised_precision_at_k(
            x, labels, K, folds=args.folds, seed=args.seed
        )
    print(
        f"\nsame-class precision@{K}, macro over classes; queries: {done.sum()} objects of "
        f"{'all folds' if done.all() else 'fold ' + str(args.only_fold)}\n"
    )
    print("| representation | full | first 30 days |\n|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['full'][0]:.3f} | {r['first 30 days'][0]:.3f} |")
    classes = sorted(res["fine-tuned"]["full"][1])
    print("\n| class | " + " | ".join(res) + " |\n|---|" + "---|" * len(res))
    for c in classes:
        print(
            f"| {c} ({(y == c).sum()}) | "
            + " | ".join(f"{r['full'][1].get(c, np.nan):.3f}" for r in res.values())
            + " |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "knn_cv.json").write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, "results": res}, indent=1, default=str)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
