"""Metric functions on plain arrays: classification scores, one-vs-rest ROC-AUC,
same-class precision@k and its random expectation, binary AUROC.

Everything here is pure numpy/scikit-learn so it can be tested on hand-made inputs.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from encoder.lightcurve import LightCurve

#: Detection counts of the early-classification table ("all" = the whole curve).
EARLY_COUNTS: tuple[int | str, ...] = (3, 5, 10, 20, 50, 100, "all")


def truncate(lcs: list[LightCurve], n: int | str) -> list[LightCurve]:
    """Each light curve as known at its n-th detection; shorter ones stay whole (as the seed does)."""
    return list(lcs) if n == "all" else [lc.first(int(n)) for lc in lcs]


def first_days(lcs: list[LightCurve], days: float = 30.0) -> list[LightCurve]:
    """Each light curve cut to ``days`` after its first detection."""
    return [lc.until(lc.time[0] + days) for lc in lcs]


def binary_auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of ``score`` ranking positives first (0.5 = chance, < 0.5 = inverted); NaN if one class."""
    positive = np.asarray(positive, dtype=bool)
    score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=np.nanmedian(score) if len(score) else 0.0)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


def macro_auroc(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> float:
    """Macro one-vs-rest ROC-AUC over the classes of ``y`` that have positives and negatives.

    ``probs[:, j]`` scores ``classes[j]``; classes of ``y`` absent from ``classes`` score 0.
    """
    y = np.asarray(y)
    col = {c: j for j, c in enumerate(classes)}
    aucs = []
    for c in sorted(set(y.tolist())):
        pos = y == c
        if pos.all() or c not in col:
            continue
        aucs.append(binary_auroc(probs[:, col[c]], pos))
    return float(np.mean(aucs)) if aucs else float("nan")


def classification_scores(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro OvR ROC-AUC of argmax predictions."""
    y = np.asarray(y)
    pred = np.asarray(classes)[np.argmax(probs, axis=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true": counted wrong
        balanced = float(balanced_accuracy_score(y, pred))
    return {
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": balanced,
        "roc_auc": macro_auroc(y, probs, classes),
    }


def counted_classes(labels: np.ndarray, min_members: int = 3) -> list[str]:
    """Classes with at least ``min_members`` members, sorted by name."""
    return sorted(c for c, n in Counter(np.asarray(labels).tolist()).items() if n >= min_members)


def _neighbours(x: np.ndarray, k: int, metric: str) -> np.ndarray:
    """(n, k) indices of each row's k nearest other rows (cosine or euclidean)."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        d = 1.0 - u @ u.T
    elif metric == "euclidean":
        sq = (x * x).sum(1)
        d = sq[:, None] + sq[None, :] - 2 * x @ x.T
    else:
        raise ValueError(f"unknown metric {metric!r}")
    np.fill_diagonal(d, np.inf)
    k = min(k, len(x) - 1)
    idx = np.argpartition(d, k - 1, axis=1)[:, :k]
    return idx


def same_class_hits(x: np.ndarray, labels: np.ndarray, k: int = 10, metric: str = "cosine") -> np.ndarray:
    """(n,) fraction of each row's k nearest other rows that share its label."""
    labels = np.asarray(labels)
    nn = _neighbours(x, k, metric)
    return (labels[nn] == labels[:, None]).mean(1)


def macro_by_class(hit: np.ndarray, labels: np.ndarray, min_members: int = 3) -> tuple[float, dict[str, float]]:
    """Mean of ``hit`` within each class with >= ``min_members`` members, then over those classes."""
    labels = np.asarray(labels)
    per = {c: float(hit[labels == c].mean()) for c in counted_classes(labels, min_members)}
    return (float(np.mean(list(per.values()))) if per else float("nan")), per


def precision_at_k(
    x: np.ndarray, labels: np.ndarray, k: int = 10, metric: str = "cosine", min_members: int = 3
) -> tuple[float, dict[str, float]]:
    """Same-class precision@k, macro over classes with >= ``min_members`` members.

    For each query, the fraction of its k nearest *other* objects sharing its class;
    averaged within each counted class, then over classes. Every object is a candidate
    neighbour; only counted classes are queries.
    """
    labels = np.asarray(labels)
    if not counted_classes(labels, min_members) or len(labels) < 2:
        return float("nan"), {}
    return macro_by_class(same_class_hits(x, labels, k, metric), labels, min_members)


def supervised_precision_at_k(
    x: np.ndarray, labels: np.ndarray, k: int = 10, folds: int = 5, seed: int = 0
) -> tuple[float, dict[str, float]]:
    """Precision@k after a supervised linear projection (shrinkage LDA), cross-validated.

    For each stratified fold, the projection is fitted on the labels of the other folds, every object
    is projected, and the fold's objects are the queries (Euclidean; all objects are candidates). An
    estimate of what labels could add to a fixed representation.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    hit = np.zeros(len(labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only 3 members"
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, labels):
            lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(x[train], labels[train])
            hit[test] = same_class_hits(lda.transform(x), labels, k, "euclidean")[test]
    return macro_by_class(hit, labels)


def random_precision(labels: np.ndarray, min_members: int = 3) -> tuple[float, dict[str, float]]:
    """Expected precision@k of random neighbours: (n_c - 1) / (N - 1) per counted class."""
    labels = np.asarray(labels)
    counts, n = Counter(labels.tolist()), len(labels)
    per = {c: (counts[c] - 1) / max(n - 1, 1) for c in counted_classes(labels, min_members)}
    return (float(np.mean(list(per.values()))) if per else float("nan")), per
