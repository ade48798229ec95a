"""``rtf-evaluate novelty``: can the catalogue ranking find a kind of object that no model trained on?

For each kind of ``--kinds`` (default TDE, KN, SLSN), one model is trained on ``--train-data`` with every
object of that kind removed (:func:`leave_out`: also every object of no known class, which might be one,
and every object of the catalogue), the catalogue is encoded with it and ranked with
:class:`encoder.rarity.Ranking`, and the AUROC of the left-out kind against everything else in the
catalogue is reported for the Ranking, for the left-out model's own anomaly score alone, for an
IsolationForest on the physics features of the same catalogue (unsupervised, no training: the same scores
for every kind), for each of the Ranking's signals, and for the Ranking without each of its design choices
(:data:`ABLATIONS`).

The command line, as it maps onto ``rtf-evaluate``'s:

* ``--checkpoint`` names the *architecture*: each left-out model is trained from scratch with its
  ``ModelConfig`` (and feature settings) and the training settings of stage 1 of
  training/recipes/default.toml (:data:`RECIPE`), never from its weights, which have seen every kind.
  Its own Ranking of the catalogue is shown beside, as the reference of a model that did see the kind.
* ``--data`` is the catalogue, topped up with synthetic light curves of each kind to ``--min-kind``
  objects (:func:`top_up`: a kilonova is 0.2 % of the synthetic mix, 6 of 3000); use ``--holdout none``.
* ``--train-data``, ``--epochs``, ``--work`` (the trained models; a finished one with the same settings is
  reused), ``--seed`` (the training's and the IsolationForest's), ``--threads`` (training and encoding).

The defaults (8 epochs on 8000 synthetic ZTF light curves) were measured to train three kinds in about 19
minutes on 2 CPU cores shared with other work (docs/eval/README.md). Smaller ones were faster and worse at a
left-out TDE: 3000 light curves x 3 epochs trained in 30 s a kind (Ranking AUROC 0.66), 6000 x 6 in 1-3
minutes on idle cores (0.76).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from encoder.inference import Encoder
from encoder.lightcurve import LightCurve
from encoder.model.rtf import ModelConfig
from encoder.rarity import Ranking
from encoder.readers import write_lightcurves_parquet
from encoder.taxonomy import FINE_CLASSES, normalize_label
from training.config import TrainConfig
from training.data import load_sources
from training.evaluate import baselines, metrics
from training.evaluate.context import Context, catalogue_ranking, fingerprints
from training.evaluate.report import num, table, write_section
from training.synthetic import SURVEYS, SurveyConfig, generate_survey

#: seeds of the catalogue's top-up draws (+ the kind's index in FINE_CLASSES): seeds no training source uses
TOPUP_SEED = 900_000
#: rtf-train settings besides the architecture: those of the bundled recipe's first stage ([common])
RECIPE = "--cls-weight 0.5 --random-truncate --min-detections 3"
#: the scores of the ROC figure
ROC_SCORES = ("Ranking", "model score alone", "IsolationForest on physics features")
#: the Ranking without one of its design choices at a time: Ranking.build's options
ABLATIONS: dict[str, dict] = {
    "one stratum": {"edges": ()},
    "mean of all three": {"agree": 3},
    "predicted class's surprisal": {"probabilities": None},
}
#: the Ranking's signals, each as its percentile in its detection stratum, then the ablations: the second table
PARTS = ("isolation", "surprisal", "model score", *ABLATIONS)


def of_kind(lc: LightCurve, kind: str) -> bool:
    return lc.label == kind or normalize_label(lc.label) == kind


def leave_out(lcs: list[LightCurve], kind: str, exclude_ids: set[str]) -> tuple[list[LightCurve], dict[str, int]]:
    """The light curves without any object of ``kind``, and how many went for each reason: of the kind, of no
    known class (an unlabelled object might be one), in ``exclude_ids`` (the catalogue's objects)."""
    keep: list[LightCurve] = []
    dropped: Counter[str] = Counter()
    for lc in lcs:
        why = (
            "of the kind" if of_kind(lc, kind)
            else "unlabelled" if lc.label is None
            else "in the catalogue" if lc.object_id in exclude_ids
            else None
        )  # fmt: skip
        if why is None:
            keep.append(lc)
        else:
            dropped[why] += 1
    return keep, dict(dropped)


def top_up(lcs: list[LightCurve], kind: str, n_min: int) -> list[LightCurve]:
    """Synthetic light curves of ``kind`` alone (seed ``TOPUP_SEED`` + its class index, the catalogue's most
    common survey) to bring ``lcs`` to ``n_min`` of it: the first that get detected of a few more draws
    (object i of a synthetic survey depends on its seed and i alone, so the top-up is the same every time)."""
    need = n_min - sum(of_kind(lc, kind) for lc in lcs)
    if need <= 0:
        return []
    survey = Counter(lc.survey for lc in lcs).most_common(1)[0][0] if lcs else "ztf"
    cfg = SurveyConfig(
        survey=survey if survey in SURVEYS else "ztf",
        n_objects=2 * need + 5,
        seed=TOPUP_SEED + FINE_CLASSES.index(kind),
        class_weights={kind: 1},
    )
    return generate_survey(cfg)[:need]


def architecture(enc: Encoder) -> ModelConfig:
    if enc.model is None:
        raise SystemExit("novelty: --checkpoint must be a PyTorch checkpoint (model.pt): it names the architecture")
    return enc.model.cfg


def train_config(arch: Encoder, data: str, out: Path, epochs: int, seed: int, threads: int) -> TrainConfig:
    """rtf-train's run of a left-out model: ``arch``'s architecture, :data:`RECIPE`'s settings, from scratch."""
    cfg = architecture(arch)
    n_coarse = len(cfg.coarse_classes)
    return TrainConfig(
        data=[data], out=str(out), model=cfg, gp_fit=bool(arch.spec.gp_fit), epochs=epochs, seed=seed,
        num_classes=n_coarse if n_coarse in (5, 7) else 7, workers=threads, threads=threads,
        cls_weight=0.5, random_truncate=True, min_detections=3,  # RECIPE
    )  # fmt: skip


def train_without(ctx: Context, kind: str, catalogue_ids: set[str]) -> tuple[Path, dict]:
    """The run folder of the model trained without ``kind`` (trained now unless a finished one with the
    same settings is in ``--work``), and what its training set is."""
    opts, arch = ctx.args.novelty, ctx.encoders[0][1]
    lcs, dropped = leave_out(load_sources(opts.train_data), kind, catalogue_ids)
    plan = train_config(arch, "train.parquet", Path("."), opts.epochs, ctx.args.seed, ctx.args.threads)
    ids = hashlib.sha256("\n".join(sorted(lc.object_id for lc in lcs)).encode()).hexdigest()
    key = json.dumps([kind, opts.train_data, ids, asdict(plan) | {"threads": 0, "workers": 0}], default=str)
    run = Path(opts.work) / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    info = {"sources": opts.train_data, "n": len(lcs), "dropped": dropped, "labels": Counter(lc.label for lc in lcs)}
    t0, reused = time.time(), (run / "model.pt").exists()
    if reused:
        print(f"novelty: {kind}: reusing {run}", file=sys.stderr)
    else:
        from training.train import train

        with tempfile.TemporaryDirectory() as tmp:  # a filtered copy, outside the repository, while it trains
            data = Path(tmp) / "train.parquet"
            write_lightcurves_parquet(lcs, data)
            train(train_config(arch, str(data), run, opts.epochs, ctx.args.seed, ctx.args.threads))
        (run / "leave_out.json").write_text(json.dumps({"kind": kind, **info}, indent=1))
    summary = json.loads((run / "summary.json").read_text())
    return run, info | {
        "run": str(run),
        "seconds": summary["seconds"],
        "wall_seconds": round(time.time() - t0, 1),
        "reused": reused,
        "n_train": summary["n_train"],
        "n_val": summary["n_val"],
        "train_labels": summary["train_labels"],
    }


def rank(enc: Encoder, lcs: list[LightCurve], desc: str) -> tuple[Ranking, np.ndarray, dict[str, np.ndarray]]:
    """The catalogue's Ranking by ``enc`` (as app.ranking builds it), the model's own anomaly scores, and
    the scores of the Ranking's parts (:data:`PARTS`)."""
    e = fingerprints(enc, lcs, desc=desc)
    ranking = catalogue_ranking(enc, e, lcs)
    parts = dict(zip(("isolation", "surprisal", "model score"), ranking.percentiles, strict=True))
    for name, options in ABLATIONS.items():
        parts[name] = catalogue_ranking(enc, e, lcs, **options).scores
    return ranking, e.anomaly, parts


def run(ctx: Context) -> str:
    opts, a = ctx.args.novelty, ctx.args
    t_start = time.time()
    extra = {k: top_up(ctx.lcs, k, opts.min_kind) for k in opts.kinds}
    cat = ctx.lcs + [lc for k in opts.kinds for lc in extra[k]]
    labels = np.array([lc.label for lc in cat], dtype=object)
    n_det = np.array([len(lc) for lc in cat])
    cat_ids = {lc.object_id for lc in cat}
    forest = baselines.isolation_forest_scores(baselines.feature_matrix(cat, use_gp=a.gp_fit), a.seed)
    references = [(name, rank(enc, cat, f"{name} (reference)")) for name, enc in ctx.encoders]
    res: dict[str, dict] = {}
    rows, parts = [], []
    curves: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    for kind in opts.kinds:
        positive = np.array([of_kind(lc, kind) for lc in cat])
        path, info = train_without(ctx, kind, cat_ids)
        t0 = time.time()
        ranking, own, alt = rank(Encoder.load(path / "model.pt", batch_size=256), cat, f"without {kind}")
        scores = {
            "Ranking": ranking.scores,
            "model score alone": own,
            "IsolationForest on physics features": forest,
        } | alt
        scores |= {f"{name} Ranking": r.scores for name, (r, _, _) in references}
        scores |= {f"{name} model score": s for name, (_, s, _) in references}
        scores |= {f"{name} {m}": s for name, (_, _, w) in references for m, s in w.items()}
        auroc = {m: metrics.binary_auroc(s, positive) for m, s in scores.items()}
        predicted = Counter(f for f, p in zip(ranking.fine, positive, strict=True) if p)
        saw = [enc.ckpt.summary.get("train_labels", {}).get(kind) if enc.ckpt else None for _, enc in ctx.encoders]
        res[kind] = {
            "n": int(positive.sum()),
            "median_detections": float(np.median(n_det[positive])),
            "reference_trained_on": dict(zip([name for name, _ in ctx.encoders], saw, strict=True)),
            "topped_up": len(extra[kind]),
            "auroc": auroc,
            "predicted_as": dict(predicted.most_common()),
            "train": info,
            "encode_seconds": round(time.time() - t0, 1),
        }
        curves[kind] = ({m: scores[m] for m in ROC_SCORES}, positive)
        ref = [
            num(auroc[f"{name} Ranking"]) + ("" if s is None else f" (trained on {s})")
            for (name, _), s in zip(ctx.encoders, saw, strict=True)
        ]
        n = f"{positive.sum()} ({100 * positive.mean():.1f}%)"
        det = float(np.median(n_det[positive]))
        rows.append([kind, n, f"{det:g}", num(auroc["Ranking"]), num(auroc["model score alone"]),
                     num(auroc["IsolationForest on physics features"]), *ref, f"{info['seconds']:.0f}"])  # fmt: skip
        top = ", ".join(f"{c} {k}" for c, k in predicted.most_common(4))
        parts.append([kind, *(num(auroc.get(m, float("nan"))) for m in PARTS), top])
    counts = Counter(labels.tolist())
    composition = ", ".join(f"{c} {k}" for c, k in counts.most_common())
    added = [
        f"{len(extra[k])} {k} (synthetic, seed {TOPUP_SEED + FINE_CLASSES.index(k)}, that class alone)"
        for k in opts.kinds
        if extra[k]
    ]
    arch = ctx.encoders[0][1]
    m = architecture(arch)
    header = ["left-out kind", "in catalogue", "median detections", "Ranking", "model score alone", "IsolationForest"]
    header += [f"{name} Ranking (reference)" for name, _ in ctx.encoders] + ["train s"]
    total = time.time() - t_start
    reused = [k for k, r in res.items() if r["train"]["reused"]]
    md = "\n\n".join(
        [
            "## Novelty: leave one kind out of training",
            f"```\n{a.command}\n```",
            f"Catalogue: {ctx.description}, plus {'; '.join(added) or 'nothing'}, to hold at least {opts.min_kind} of each kind: "
            f"{len(cat)} objects ({composition}); median detections {np.median(n_det):g}.",
            f"Each left-out model: trained from scratch on {', '.join(opts.train_data)} without any object of the "
            f"kind (nor any unlabelled one, nor any of the catalogue), {opts.epochs} epochs, seed {a.seed}, the "
            f"architecture of {ctx.args.checkpoint[0]} (`{arch.version}`: {m.mode}{m.latent_dim}, d_model "
            f"{m.d_model}, {m.n_layers} layers, FiLM decoder {m.decoder_film}, physics features {m.use_gp}, served "
            f"with {m.posterior_weight:g} x the fine-class probabilities appended, which the Ranking reads as "
            "app.ranking does) with "
            f"the recipe's stage-1 settings (`{RECIPE}`). AUROC of the kind against every other object of the "
            "catalogue (0.5 = chance). The Ranking is encoder.rarity's (isolation, expected surprisal and the "
            "model's score, each as its percentile among the objects with about as many detections, the mean of "
            "the two highest); the IsolationForest is fitted on the catalogue's physics "
            f"features; the reference column ranks with {', '.join(n for n, _ in ctx.encoders)} itself (with the "
            "number of objects of the kind its last training stage had, where its summary says). Train s: the "
            f"left-out model's training time. This run: {total:.0f} s in all, {a.threads} PyTorch threads"
            + (f" (the models of {', '.join(reused)} reused from {opts.work})." if reused else "."),
            table(header, rows),
            "The same left-out models: each of the Ranking's three signals alone (its percentile in its detection "
            "stratum), the Ranking without one of its design choices at a time (one stratum for the whole "
            "catalogue; the mean of all three percentiles; the surprisal of the predicted class rather than the "
            "one expected under the fine-class probabilities), and what the left-out model calls the kind:",
            table(["left-out kind", *PARTS, "predicted as"], parts),
            "![roc](novelty_roc.png)",
        ]
    )
    roc_panels(curves, ctx.out / "novelty_roc.png")
    data = {"catalogue": dict(counts), "kinds": res, "recipe": RECIPE, "epochs": opts.epochs, "seconds": total}
    return write_section(ctx, "novelty", md, data)


def roc_panels(curves: dict[str, tuple[dict[str, np.ndarray], np.ndarray]], path: Path) -> None:
    """One ROC panel per left-out kind: the kind (positive) against the rest of the catalogue."""
    import matplotlib
    from sklearn.metrics import roc_curve

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(curves), 1), figsize=(4.2 * max(len(curves), 1), 4.0), squeeze=False)
    for ax, (kind, (scores, positive)) in zip(axes[0], curves.items(), strict=False):
        for name, score in scores.items():
            fpr, tpr, _ = roc_curve(positive, np.nan_to_num(score, nan=float(np.nanmedian(score))))
            ax.plot(fpr, tpr, label=f"{name} ({metrics.binary_auroc(score, positive):.2f})")
        ax.plot([0, 1], [0, 1], ls=":", c="k", lw=1)
        ax.set_title(f"{kind}, left out of training")
        ax.set_xlabel("false positive rate (the rest)")
        ax.set_ylabel(f"true positive rate ({kind})")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
