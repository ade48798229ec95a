"""PNG figures of the evaluation: curves, grouped bars, ROC curves, 2-D embeddings and
example reconstructions. Matplotlib's Agg backend; every function writes one file."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

BAND_COLOURS = {"u": "purple", "g": "tab:green", "r": "tab:red", "i": "goldenrod", "z": "tab:brown", "y": "black"}


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def metric_curves(x_labels: list[str], series: dict[str, dict[str, list[float]]], path: Path, title: str) -> Path:
    """One panel per metric; one line per method. ``series[method][metric]`` aligned with x_labels."""
    metrics = list(next(iter(series.values())))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for method, values in series.items():
            ax.plot(range(len(x_labels)), values[metric], marker="o", label=method)
        ax.set_xticks(range(len(x_labels)), x_labels)
        ax.set_xlabel("detections")
        ax.set_title(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    return _save(fig, path)


def grouped_bars(values: dict[str, dict[str, float]], path: Path, title: str, ylabel: str) -> Path:
    """Bars per category (x) for each method: ``values[method][category]``."""
    methods = list(values)
    cats = sorted({c for v in values.values() for c in v})
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(cats) * max(1, len(methods) / 2)), 4))
    for i, m in enumerate(methods):
        ax.bar(np.arange(len(cats)) + i * width, [values[m].get(c, np.nan) for c in cats], width, label=m)
    ax.set_xticks(np.arange(len(cats)) + 0.4 - width / 2, cats, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, path)


def roc_curves(scores: dict[str, np.ndarray], positive: np.ndarray, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        s = np.nan_to_num(np.asarray(s, dtype=np.float64), nan=np.nanmedian(s))
        if positive.any() and not positive.all():
            fpr, tpr, _ = roc_curve(positive, s)
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate (common SNe)")
    ax.set_ylabel("true positive rate (rare classes)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def embeddings(panels: dict[str, np.ndarray], labels: np.ndarray, path: Path, title: str) -> Path:
    """Side-by-side 2-D scatter panels coloured by class, one legend outside on the right."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    classes = classes[np.argsort(-counts)]  # big classes drawn first, rare ones on top
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 2, 5.2), squeeze=False)
    for ax, (name, xy) in zip(axes[0], panels.items(), strict=True):
        for j, c in enumerate(classes):
            sel = labels == c
            rare = sel.sum() < 0.05 * len(labels)
            ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                s=22 if rare else 7,
                alpha=0.9 if rare else 0.5,
                color=cmap(j % 20),
                label=f"{c} ({sel.sum()})",
                edgecolors="k" if rare else "none",
                linewidths=0.3,
            )
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), markerscale=2.0, fontsize=10, frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def reconstructions(items: list[dict], path: Path, title: str) -> Path:
    """Observed magnitudes and decoded curves; each item: id, label, t, mag, band, grid, curves{band: mag}."""
    n = len(items)
    cols = min(3, max(n, 1))
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.3 * rows), squeeze=False)
    for ax, it in zip(axes.flat, items, strict=False):
        for b, curve in it["curves"].items():
            colour = BAND_COLOURS.get(b, "grey")
            sel = it["band"] == b
            ax.plot(it["t"][sel], it["mag"][sel], "o", ms=3, color=colour, label=f"{b} observed")
            ax.plot(it["grid"], curve, "-", color=colour, alpha=0.8)
        ax.invert_yaxis()
        ax.set_title(f"{it['id']} ({it['label']})", fontsize=9)
        ax.set_xlabel("days since first detection")
        ax.set_ylabel("mag")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)
