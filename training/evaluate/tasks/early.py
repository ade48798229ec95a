"""``rtf-evaluate early``: classification from the first n detections, the checkpoint's head against
physics-feature classifiers cross-validated on the same truncated curves."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from encoder.inference import Encoded, Encoder
from training.evaluate import baselines, metrics, plots
from training.evaluate.context import FULL, Context
from training.evaluate.report import num, pct, table, write_section

BASELINE_CLASSIFIERS = ("rf", "logreg", "knn")


def model_classes(enc: Encoder, level: str) -> list[str]:
    return enc.coarse_classes if level == "coarse" else enc.fine_classes


def model_probs(e: Encoded, level: str) -> np.ndarray | None:
    return e.coarse_probs if level == "coarse" else e.fine_probs


def run(ctx: Context) -> str:
    level, a = ctx.level("early"), ctx.args
    idx = ctx.select("early", level)
    y = ctx.labels(level)[idx]
    heads = [model_classes(enc, level) for _, enc in ctx.encoders if model_classes(enc, level)]
    allowed = set.intersection(*map(set, heads)) if heads else set(y.tolist())
    keep = np.isin(y, list(allowed))
    idx, y = idx[keep], y[keep]
    lengths = np.array([len(ctx.lcs[i]) for i in idx])
    cols = [str(n) for n in metrics.EARLY_COUNTS]
    results: dict[str, dict[str, list[float]]] = {}
    for n in tqdm(metrics.EARLY_COUNTS, desc="early: detection counts"):
        v = FULL if n == "all" else ("first", n)
        for k, (name, enc) in enumerate(ctx.encoders):
            probs = model_probs(ctx.encoded(k, v), level)
            if probs is None:
                continue
            s = metrics.classification_scores(y, probs[idx], model_classes(enc, level))
            for m, val in s.items():
                results.setdefault(f"{name} ({level} head)", {}).setdefault(m, []).append(val)
        x = ctx.features(v)[idx]
        for clf in BASELINE_CLASSIFIERS:
            proba, classes = baselines.cv_proba(clf, x, y, a.cv, a.seed)
            for m, val in metrics.classification_scores(y, proba, classes).items():
                results.setdefault(f"features + {clf}", {}).setdefault(m, []).append(val)
    whole = [pct(float((lengths <= n).mean())) if n != "all" else "100.0%" for n in metrics.EARLY_COUNTS]
    rows = [["objects using their whole curve", "", *whole]]
    for method, res in results.items():
        rows += [[method, m.replace("_", " "), *(num(v) if m == "roc_auc" else pct(v) for v in res[m])] for m in res]
    plots.metric_curves(cols, results, ctx.out / "early.png", "early classification")
    md = "\n\n".join(
        [
            "## Early classification",
            ctx.set_line(idx, level, "early"),
            "Model: the checkpoint's classification head on the first n detections. Baselines: "
            f"physics features{' + GP' if a.gp_fit else ''} of the same truncated curves, {a.cv}-fold stratified "
            "cross-validation on the evaluation set. Objects with fewer than n detections use their whole curve "
            "(as the seed does). ROC-AUC: macro one-vs-rest over the classes present.",
            table(["method", "metric", *cols], rows),
            "![early](early.png)",
        ]
    )
    return write_section(ctx, "early", md, {"columns": cols, "results": results, "n": len(idx)})
