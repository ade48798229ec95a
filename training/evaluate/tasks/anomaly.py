"""``rtf-evaluate anomaly``: AUROC of rare classes against common supernovae for the checkpoint's
scores and their parts, beside an IsolationForest and length-only scores."""

from __future__ import annotations

from collections import Counter

import numpy as np

from encoder.anomaly import SIGNALS, signals
from encoder.taxonomy import RARE_FINE_CLASSES
from training.evaluate import baselines, metrics, plots
from training.evaluate.context import DAYS30, FULL, Context
from training.evaluate.report import num, table, write_section

COMMON_SNE = ("SNIa", "SNII", "SNIbc", "SNIIn")


def run(ctx: Context) -> str:
    a = ctx.args
    lab = ctx.labels("fine")
    idx = np.array([i for i in ctx.select("anomaly", "fine") if lab[i] in RARE_FINE_CLASSES or lab[i] in COMMON_SNE])
    rare = np.array([lab[i] in RARE_FINE_CLASSES for i in idx], dtype=bool)
    res: dict[str, dict[str, float]] = {}
    roc_scores: dict[str, np.ndarray] = {}
    for view, vname in ((FULL, "full"), (DAYS30, "first 30 days")):
        for j, (name, enc) in enumerate(ctx.encoders):
            e = ctx.encoded(j, view)
            vec = e.vectors[idx]
            ref = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
            fine = None if e.fine_probs is None else e.fine_probs[idx]
            mask = enc.ckpt.scorer.rare_mask
            if mask is None and enc.fine_classes:
                mask = np.array([c in RARE_FINE_CLASSES for c in enc.fine_classes])
            sig = signals(vec, e.misfit[idx], fine, mask, ref.astype(np.float32), exclude_self=True)
            scores = {
                "anomaly score (calibrated)": e.anomaly[idx],
                "misfit": sig[:, 0],
                "isolation (leave-one-out, eval set)": sig[:, 1],
            }
            if fine is not None and mask is not None and mask.any():
                scores |= {
                    "rare-class probability": sig[:, SIGNALS.index("rare_logit")],
                    "classifier entropy": sig[:, SIGNALS.index("entropy")],
                }
            for s_name, s in scores.items():
                res.setdefault(f"{name}: {s_name}", {})[vname] = metrics.binary_auroc(s, rare)
                if vname == "full":
                    roc_scores[f"{name}: {s_name}"] = s
        vlcs = [ctx.view(view)[i] for i in idx]
        forest = baselines.isolation_forest_scores(ctx.features(view)[idx], a.seed)
        base = {
            "IsolationForest on physics features": forest,
            "duration (days)": np.array([lc.duration for lc in vlcs]),
            "number of detections": np.array([len(lc) for lc in vlcs], dtype=float),
        }
        for s_name, s in base.items():
            res.setdefault(s_name, {})[vname] = metrics.binary_auroc(s, rare)
            if vname == "full":
                roc_scores[s_name] = s
    views = ["full", "first 30 days"]
    rows = [[m, *(num(res[m][v]) for v in views)] for m in res]
    plots.roc_curves(roc_scores, rare, ctx.out / "anomaly_roc.png", "rare vs common SNe (full light curves)")
    n_rare = Counter(lab[idx][rare].tolist())
    md = "\n\n".join(
        [
            "## Anomaly ranking",
            ctx.set_line(idx, "fine", "anomaly"),
            f"AUROC of rare classes ({', '.join(f'{c} {n}' for c, n in n_rare.most_common())}; {rare.sum()} in all) "
            f"against common SNe ({', '.join(COMMON_SNE)}; {(~rare).sum()}); higher score = more anomalous, "
            "0.5 = chance, < 0.5 = the score ranks them backwards. Isolation is computed against the evaluation "
            "set itself, leave-one-out (exclude_self), not the checkpoint's training reference; the calibrated score "
            "uses the checkpoint's reference and weights (fitted on the training run's validation split: with "
            "--holdout val it has seen these labels through its 4 logistic weights and bias). IsolationForest is fitted "
            "on the evaluation set (unsupervised). Length-only scores show how much a score can win by knowing only "
            "the length.",
            table(["score", "AUROC full", "AUROC first 30 days"], rows),
            "![roc](anomaly_roc.png)",
        ]
    )
    return write_section(ctx, "anomaly", md, {"auroc": res, "n_rare": int(rare.sum()), "n_common": int((~rare).sum())})
