"""``rtf-evaluate knn``: same-class precision@10 of the fingerprints' nearest neighbours, full and
first-30-day curves, beside the physics features and what a supervised projection would add."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from training.evaluate import baselines, metrics, plots
from training.evaluate.context import DAYS30, FULL, Context
from training.evaluate.report import num, table, write_section


def run(ctx: Context) -> str:
    idx = ctx.select("knn", ctx.level("knn"))
    y = ctx.labels(ctx.level("knn"))[idx].astype(str)
    k = 10
    res: dict[str, dict] = {}
    supervised: dict[str, dict] = defaultdict(dict)  # label-using projections: a ceiling, not the product
    for view, vname in ((FULL, "full"), (DAYS30, "first 30 days")):
        for j, (name, _) in enumerate(ctx.encoders):
            vectors = ctx.encoded(j, view).vectors[idx]
            res.setdefault(f"{name} fingerprint (cosine)", {})[vname] = metrics.precision_at_k(vectors, y, k, "cosine")
            supervised[f"{name} fingerprint + LDA"][vname] = metrics.supervised_precision_at_k(vectors, y, k)
        x = baselines.impute_standardize(ctx.features(view)[idx])
        both = {m: metrics.precision_at_k(x, y, k, m) for m in ("cosine", "euclidean")}
        best = max(both, key=lambda m: both[m][0])
        res.setdefault("physics features (better metric)", {})[vname] = both[best]
        res.setdefault("physics features (cosine)", {})[vname] = both["cosine"]
        res.setdefault("physics features (euclidean)", {})[vname] = both["euclidean"]
        res.setdefault("random (class frequency)", {})[vname] = metrics.random_precision(y)
        supervised["physics features + LDA"][vname] = metrics.supervised_precision_at_k(x, y, k)
    shown = [m for m in res if m not in ("physics features (cosine)", "physics features (euclidean)")]
    views = ["full", "first 30 days"]
    rows = [[m, *(num(res[m][v][0]) for v in views)] for m in shown]
    classes, n_class = metrics.counted_classes(y), Counter(y.tolist())
    class_rows = [
        [f"{c} ({n_class[c]})", *(num(res[m][v][1].get(c, np.nan)) for m in shown for v in views)] for c in classes
    ]
    plots.grouped_bars(
        {m: res[m]["full"][1] for m in shown},
        ctx.out / "knn_per_class.png",
        "same-class precision@10 (full light curves)",
        "precision@10",
    )
    md = "\n\n".join(
        [
            "## kNN retrieval",
            ctx.set_line(idx, ctx.level("knn"), "knn"),
            f"Same-class precision@{k}: for each object, the fraction of its {k} nearest other objects sharing its "
            "class; averaged within each class with >= 3 members, then over classes (macro). Features: standardised "
            "physics features (NaN → column median), cosine and Euclidean, the better shown "
            f"(cosine {num(res['physics features (cosine)']['full'][0])}, "
            f"Euclidean {num(res['physics features (euclidean)']['full'][0])} on full curves). "
            "First 30 days: lc.until(first detection + 30 d), features recomputed.",
            table(["method", "P@10 full", "P@10 first 30 days"], rows),
            "What labels could add (not the product: the service searches the fingerprints as they are). A "
            "shrinkage LDA fitted on the labels of 4 of 5 stratified folds projects every object; the 5th fold's "
            "objects are the queries (Euclidean):",
            table(
                ["representation + supervised projection", "P@10 full", "P@10 first 30 days"],
                [[m, *(num(supervised[m][v][0]) for v in views)] for m in supervised],
            ),
            "Per class:",
            table(["class (n)", *(f"{m} / {v}" for m in shown for v in views)], class_rows),
            "![per class](knn_per_class.png)",
        ]
    )
    data = {m: {v: {"macro": r[m][v][0], "per_class": r[m][v][1]} for v in views} for r in (res, supervised) for m in r}
    return write_section(ctx, "knn", md, {"results": data, "n": len(idx)})
