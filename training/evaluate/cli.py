"""``rtf-evaluate``: the reference's evaluation tables for one or more checkpoints, each with
a feature baseline (``light-curve`` physics features) on the same objects.

    rtf-evaluate early   --checkpoint runs/ae64/model.pt --data ../shared/data/ztf_bts_dev.parquet --out eval/
    rtf-evaluate probe   --checkpoint runs/ae8/model.pt runs/vae8/model.pt ... --data ... --out eval/
    rtf-evaluate all     --checkpoint runs/ae64/model.pt --data ... --holdout none --out eval/

Subcommands: early, probe, recon, knn, anomaly, embed, all. Each prints a markdown table and
writes ``<name>.md``, ``<name>.json`` and PNG plots into ``--out``; ``all`` also writes
``report.md`` with the command line at the top.

The evaluation set is the labelled objects of ``--data``; with ``--holdout val`` (default)
only those that training.data.split_of puts in the validation split (the checkpoint never
trained on their labels); ``--holdout none`` when the checkpoint never saw these labels.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from encoder.anomaly import SIGNALS, signals
from encoder.inference import Encoded, Encoder
from encoder.lightcurve import BANDS, LightCurve
from encoder.taxonomy import RARE_FINE_CLASSES, coarse_of
from training.data import load_source, split_of
from training.evaluate import baselines, metrics, plots

COMMON_SNE = ("SNIa", "SNII", "SNIbc", "SNIIn")
BASELINE_CLASSIFIERS = ("rf", "logreg", "knn")
SUBCOMMANDS = ("early", "probe", "recon", "knn", "anomaly", "embed")
DEFAULT_MIN_DET = {"knn": 5}
DEFAULT_LEVEL = {"early": "coarse", "probe": "coarse"}
FULL, DAYS30 = ("full",), ("days", 30.0)


# ---------------------------------------------------------------------------- evaluation context
@dataclass
class Context:
    """The evaluation set, the loaded checkpoints and in-memory caches shared by subcommands."""

    args: argparse.Namespace
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
        return baselines.feature_matrix(self.view(v), use_gp=self.args.gp, desc=f"features {v}")

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


def load_context(args: argparse.Namespace) -> Context:
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


# ---------------------------------------------------------------------------- formatting
def pct(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}%"


def num(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _clean(o: object) -> object:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_section(ctx: Context, name: str, md: str, data: dict) -> str:
    ctx.out.mkdir(parents=True, exist_ok=True)
    (ctx.out / f"{name}.md").write_text(md + "\n")
    (ctx.out / f"{name}.json").write_text(json.dumps(_clean(data), indent=1))
    print(md + "\n", flush=True)
    return md


def model_classes(enc: Encoder, level: str) -> list[str]:
    return enc.coarse_classes if level == "coarse" else enc.fine_classes


def model_probs(e: Encoded, level: str) -> np.ndarray | None:
    return e.coarse_probs if level == "coarse" else e.fine_probs


# ---------------------------------------------------------------------------- 1. early classification
def run_early(ctx: Context) -> str:
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
    md = "\n\n".join([
        "## Early classification",
        ctx.set_line(idx, level, "early"),
        "Model: the checkpoint's classification head on the first n detections. Baselines: "
        f"physics features{' + GP' if a.gp else ''} of the same truncated curves, {a.cv}-fold stratified "
        "cross-validation on the evaluation set. Objects with fewer than n detections use their whole curve "
        "(as the seed does). ROC-AUC: macro one-vs-rest over the classes present.",
        table(["method", "metric", *cols], rows), "![early](early.png)",
    ])  # fmt: skip
    return write_section(ctx, "early", md, {"columns": cols, "results": results, "n": len(idx)})


# ---------------------------------------------------------------------------- 2. linear probe
def run_probe(ctx: Context) -> str:
    level, a = ctx.level("probe"), ctx.args
    idx = ctx.select("probe", level)
    y = ctx.labels(level)[idx]

    def score(x: np.ndarray, clf: str) -> dict[str, float]:
        """Mean (and sd) over ``--repeats`` differently shuffled cross-validations: with classes of
        3-15 members one split's balanced accuracy moves by several points."""
        runs = [metrics.classification_scores(y, *baselines.cv_proba(clf, x, y, a.cv, a.seed + r))
                for r in range(a.repeats)]  # fmt: skip
        bal = [r["balanced_accuracy"] for r in runs]
        return {"accuracy": float(np.mean([r["accuracy"] for r in runs])), "balanced_accuracy": float(np.mean(bal)),
                "balanced_accuracy_sd": float(np.std(bal))}  # fmt: skip

    def bal(s: dict[str, float]) -> str:
        return f"{pct(s['balanced_accuracy'])} ± {100 * s['balanced_accuracy_sd']:.1f}"

    res, rows, grid = {}, [], {}
    for k, (name, enc) in enumerate(tqdm(ctx.encoders, desc="probe: checkpoints")):
        vec = ctx.encoded(k, FULL).vectors[idx]
        lin, mlp = score(vec, "logreg"), score(vec, "mlp")
        cfg = enc.model.cfg
        res[name] = {"mode": cfg.mode, "latent_dim": cfg.latent_dim, "linear": lin, "mlp": mlp}
        grid[(cfg.latent_dim, cfg.mode)] = lin["accuracy"]
        rows.append([f"{name} fingerprint", cfg.mode, cfg.latent_dim, pct(lin["accuracy"]), bal(lin),
                     pct(mlp["accuracy"]), bal(mlp)])  # fmt: skip
    x = ctx.features(FULL)[idx]
    feats = {clf: score(x, clf) for clf in ("logreg", "mlp", "rf")}
    res["features"] = feats
    rows.append(["physics features", "-", x.shape[1], pct(feats["logreg"]["accuracy"]), bal(feats["logreg"]),
                 pct(feats["mlp"]["accuracy"]), bal(feats["mlp"])])  # fmt: skip
    rows.append(["physics features + random forest", "-", x.shape[1], pct(feats["rf"]["accuracy"]),
                 bal(feats["rf"]), "", ""])  # fmt: skip
    modes = [m for m in ("ae", "vae", "vqvae") if any(k[1] == m for k in grid)]
    dims = sorted({k[0] for k in grid})
    seed_tab = table(["dim", *[m.upper().replace("VQVAE", "VQ-VAE") for m in modes]],
                     [[d, *(pct(grid.get((d, m), float("nan"))) for m in modes)] for d in dims])  # fmt: skip
    md = "\n\n".join([
        "## Linear probe",
        ctx.set_line(idx, level, "probe"),
        f"LogisticRegression (class_weight balanced, standardised inputs) and an MLP probe (128 hidden), "
        f"{a.cv}-fold stratified cross-validation on the evaluation set, repeated with {a.repeats} shuffles "
        "(mean; balanced accuracy ± its sd over the repeats); the baseline probes the standardised physics "
        "features the same way.",
        table(["input", "mode", "dim", "linear acc", "linear bal. acc", "MLP acc", "MLP bal. acc"], rows),
        f"Linear-probe accuracy by bottleneck and dimension ({level}):", seed_tab,
    ])  # fmt: skip
    return write_section(ctx, "probe", md, {"results": res, "n": len(idx)})


# ---------------------------------------------------------------------------- 3. reconstruction
def _recon_query(enc: Encoder, lc: LightCurve) -> np.ndarray:
    bands = sorted({BANDS[b] for b in lc.band})
    mag, _ = enc.reconstruct(lc, lc.time - lc.time[0], bands)
    return mag[[bands.index(BANDS[b]) for b in lc.band], np.arange(len(lc))]


@torch.inference_mode()
def _recon_position(enc: Encoder, lcs: list[LightCurve]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per light curve: predicted mag, |Δt| (days) and band-correct flags; NaN outside the encoder window."""
    from encoder.batching import collate

    m, out = enc.model, []
    for s in tqdm(range(0, len(lcs), 128), desc="position decoder", leave=False):
        chunk = lcs[s : s + 128]
        b = collate(enc.examples(chunk), enc.spec)
        cont, band_logits = m.decoder(m(b)["z"], b.phot.shape[1])
        cont = cont * m.phot_scale[:4] + m.phot_shift[:4]
        for i, lc in enumerate(chunk):
            n, w = len(lc), min(len(lc), enc.spec.max_len)
            mag, dt, ok = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
            mag[n - w :] = -2.5 * cont[i, :w, 2].numpy()
            dt[n - w :] = np.abs(np.expm1(cont[i, :w, 0].numpy()) - (lc.time[n - w :] - lc.time[0]))
            ok[n - w :] = band_logits[i, :w].argmax(-1).numpy() == lc.band[n - w :]
            out.append((mag, dt, ok))
    return out


def run_recon(ctx: Context) -> str:
    idx = ctx.select("recon", "fine")
    lcs = [ctx.lcs[i] for i in idx]
    labels, sources = ctx.labels("fine")[idx], np.array(ctx.sources)[idx]
    good = [np.isfinite(lc.mag) & (lc.flux / lc.flux_err > 5) for lc in lcs]
    methods: dict[str, dict] = {}  # method -> {"dmag": per-object arrays, "dt": ..., "band": ...}
    for name, enc in ctx.encoders:
        if enc.model.cfg.decoder == "query":
            pred = [_recon_query(enc, lc) for lc in tqdm(lcs, desc=f"{name} reconstruct", leave=False)]
            methods[name] = {"pred": pred, "dt": None, "band": None}
        else:
            res = _recon_position(enc, lcs)
            methods[name] = {"pred": [r[0] for r in res], "dt": [r[1] for r in res], "band": [r[2] for r in res]}
    for kind in ("constant", "bazin"):
        pred = [baselines.parametric_reconstruction(lc, kind) for lc in tqdm(lcs, desc=kind, leave=False)]
        methods[f"{kind} per band (baseline)"] = {"pred": pred, "dt": None, "band": None}

    def med(arrs: list[np.ndarray], sel: np.ndarray) -> float:
        vals = np.concatenate([arrs[j] for j in np.flatnonzero(sel)] or [np.empty(0)])
        vals = vals[np.isfinite(vals)]
        return float(np.median(vals)) if len(vals) else float("nan")

    datasets, classes = sorted(set(sources.tolist())), metrics.counted_classes(labels, 1)
    summary, per_class, rows = {}, {}, []
    for method, r in methods.items():
        dmag = [np.where(g, np.abs(p - lc.mag), np.nan) for p, g, lc in zip(r["pred"], good, lcs, strict=True)]
        everything = np.ones(len(lcs), bool)
        s = {f"dmag_{d}": med(dmag, sources == d) for d in datasets} | {"dmag_all": med(dmag, everything)}
        s["time_err_days"] = med(r["dt"], everything) if r["dt"] else float("nan")
        s["band_accuracy"] = float(np.nanmean(np.concatenate(r["band"]))) if r["band"] else float("nan")
        summary[method], per_class[method] = s, {c: med(dmag, labels == c) for c in classes}
        rows.append([method, *(num(s[f"dmag_{d}"]) for d in datasets), num(s["dmag_all"]),
                     num(s["time_err_days"], 2), pct(s["band_accuracy"])])  # fmt: skip
    n_class = Counter(labels.tolist())
    class_rows = [[f"{c} ({n_class[c]})", *(num(per_class[m][c]) for m in methods)] for c in classes]
    plots.grouped_bars(per_class, ctx.out / "recon_per_class.png", "median |Δmag| per class", "mag")
    _recon_examples(ctx, lcs, labels)
    md = "\n\n".join([
        "## Physical-unit reconstruction",
        ctx.set_line(idx, "fine", "recon"),
        "Median |Δmag| between the decoded light curve and the observed magnitude at every observed (time, band) "
        "with S/N > 5 (query decoder: Encoder.reconstruct at t - t_first per band; position decoder: by sequence "
        "position within the encoder window). Time error and band accuracy exist only for the position decoder "
        "(the query decoder is asked at the observed times and bands). Baselines: per-band median magnitude, and a "
        "per-band Bazin fit of the light curve itself (>= 6 points, else the median).",
        table(["method", *(f"median abs dmag {d}" for d in datasets), "median abs dmag (all)", "time error (d)",
               "band accuracy"], rows),  # fmt: skip
        "Per class (median |Δmag|):", table(["class (n)", *methods], class_rows),
        "![per class](recon_per_class.png) ![examples](recon_examples.png)",
    ])  # fmt: skip
    return write_section(ctx, "recon", md, {"summary": summary, "per_class": per_class, "n": len(idx)})


def _recon_examples(ctx: Context, lcs: list[LightCurve], labels: np.ndarray, n: int = 6) -> None:
    name, enc = next(((nm, e) for nm, e in ctx.encoders if e.model.cfg.decoder == "query"), (None, None))
    if enc is None:
        return
    rng = np.random.default_rng(ctx.args.seed)
    pool = [j for j in rng.permutation(len(lcs)) if len(lcs[j]) >= 8]
    by_class = {c: [j for j in pool if labels[j] == c] for c in sorted(set(labels[pool].tolist()))}
    order = [j for row in zip_longest(*by_class.values()) for j in row if j is not None][:n]  # classes in turn
    items = []
    for j in order:
        lc = lcs[j]
        bands = sorted({BANDS[b] for b in lc.band})
        grid = np.linspace(-5, lc.duration + 10, 120)
        mag, _ = enc.reconstruct(lc, grid, bands)
        items.append({"id": lc.object_id, "label": labels[j], "t": lc.time - lc.time[0], "mag": lc.mag,
                      "band": np.array(lc.band_names), "grid": grid, "curves": dict(zip(bands, mag, strict=True))})  # fmt: skip
    plots.reconstructions(items, ctx.out / "recon_examples.png", f"{name}: decoded light curves")


# ---------------------------------------------------------------------------- 4. kNN retrieval
def run_knn(ctx: Context) -> str:
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
    class_rows = [[f"{c} ({n_class[c]})", *(num(res[m][v][1].get(c, np.nan)) for m in shown for v in views)]
                  for c in classes]  # fmt: skip
    plots.grouped_bars({m: res[m]["full"][1] for m in shown}, ctx.out / "knn_per_class.png",
                       "same-class precision@10 (full light curves)", "precision@10")  # fmt: skip
    md = "\n\n".join([
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
        table(["representation + supervised projection", "P@10 full", "P@10 first 30 days"],
              [[m, *(num(supervised[m][v][0]) for v in views)] for m in supervised]),  # fmt: skip
        "Per class:", table(["class (n)", *(f"{m} / {v}" for m in shown for v in views)], class_rows),
        "![per class](knn_per_class.png)",
    ])  # fmt: skip
    data = {m: {v: {"macro": r[m][v][0], "per_class": r[m][v][1]} for v in views} for r in (res, supervised) for m in r}
    return write_section(ctx, "knn", md, {"results": data, "n": len(idx)})


# ---------------------------------------------------------------------------- 5. anomaly ranking
def run_anomaly(ctx: Context) -> str:
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
            scores = {"anomaly score (calibrated)": e.anomaly[idx], "misfit": sig[:, 0],
                      "isolation (leave-one-out, eval set)": sig[:, 1]}  # fmt: skip
            if fine is not None and mask is not None and mask.any():
                scores |= {"rare-class probability": sig[:, SIGNALS.index("rare_logit")],
                           "classifier entropy": sig[:, SIGNALS.index("entropy")]}  # fmt: skip
            for s_name, s in scores.items():
                res.setdefault(f"{name}: {s_name}", {})[vname] = metrics.binary_auroc(s, rare)
                if vname == "full":
                    roc_scores[f"{name}: {s_name}"] = s
        vlcs = [ctx.view(view)[i] for i in idx]
        base = {"IsolationForest on physics features": baselines.isolation_forest_scores(ctx.features(view)[idx], a.seed),
                "duration (days)": np.array([lc.duration for lc in vlcs]),
                "number of detections": np.array([len(lc) for lc in vlcs], dtype=float)}  # fmt: skip
        for s_name, s in base.items():
            res.setdefault(s_name, {})[vname] = metrics.binary_auroc(s, rare)
            if vname == "full":
                roc_scores[s_name] = s
    views = ["full", "first 30 days"]
    rows = [[m, *(num(res[m][v]) for v in views)] for m in res]
    plots.roc_curves(roc_scores, rare, ctx.out / "anomaly_roc.png", "rare vs common SNe (full light curves)")
    n_rare = Counter(lab[idx][rare].tolist())
    md = "\n\n".join([
        "## Anomaly ranking",
        ctx.set_line(idx, "fine", "anomaly"),
        f"AUROC of rare classes ({', '.join(f'{c} {n}' for c, n in n_rare.most_common())}; {rare.sum()} in all) "
        f"against common SNe ({', '.join(COMMON_SNE)}; {(~rare).sum()}); higher score = more anomalous, "
        "0.5 = chance, < 0.5 = the score ranks them backwards. Isolation is computed against the evaluation "
        "set itself, leave-one-out (exclude_self), not the checkpoint's training reference; the calibrated score "
        "uses the checkpoint's reference and weights (fitted on the training run's validation split: with "
        "--holdout val it has seen these labels through its 4 logistic weights and bias). IsolationForest is fitted on the "
        "evaluation set (unsupervised). Length-only scores show how much a score can win by knowing only the length.",
        table(["score", "AUROC full", "AUROC first 30 days"], rows), "![roc](anomaly_roc.png)",
    ])  # fmt: skip
    return write_section(ctx, "anomaly", md, {"auroc": res, "n_rare": int(rare.sum()), "n_common": int((~rare).sum())})


# ---------------------------------------------------------------------------- 6. embeddings
def run_embed(ctx: Context) -> str:
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    level = ctx.level("embed")
    idx = ctx.select("embed", level)
    y = ctx.labels(level)[idx].astype(str)
    inputs = {f"{name} fingerprint": ctx.encoded(j, FULL).vectors[idx] for j, (name, _) in enumerate(ctx.encoders)}
    inputs["physics features"] = baselines.impute_standardize(ctx.features(FULL)[idx])
    n = len(idx)
    rows, data = [], {}
    for method in ("umap", "tsne"):
        panels = {}
        for name, x in tqdm(inputs.items(), desc=f"embed: {method}"):
            if method == "umap":
                import umap

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    reducer = umap.UMAP(n_neighbors=min(15, n - 1), metric="cosine", random_state=ctx.args.seed)
                    panels[name] = reducer.fit_transform(x)
            else:
                perp = float(min(30.0, max(2.0, (n - 1) / 3)))
                panels[name] = TSNE(
                    perplexity=perp, metric="cosine", init="pca", random_state=ctx.args.seed
                ).fit_transform(x)
        path = plots.embeddings(
            panels, y, ctx.out / f"embed_{method}.png", f"{method.upper()} coloured by {level} class"
        )
        for name in panels:
            data.setdefault(name, {})[method] = path.name
    for name, x in inputs.items():
        sil = float(silhouette_score(x, y, metric="cosine")) if len(set(y)) > 1 else float("nan")
        data[name]["silhouette_cosine"] = sil
        rows.append([name, x.shape[1], num(sil)])
    md = "\n\n".join([
        "## Embeddings",
        ctx.set_line(idx, level, "embed"),
        "UMAP (cosine, 15 neighbours) and t-SNE (cosine, PCA init) of the fingerprints, side by side with the "
        "standardised physics features. Silhouette: cosine, by class, in the original space (higher = classes "
        "better separated).",
        table(["input", "dim", "silhouette (cosine)"], rows), "![umap](embed_umap.png)", "![tsne](embed_tsne.png)",
    ])  # fmt: skip
    return write_section(ctx, "embed", md, {"inputs": data, "n": n})


RUNNERS = {"early": run_early, "probe": run_probe, "recon": run_recon, "knn": run_knn,
           "anomaly": run_anomaly, "embed": run_embed}  # fmt: skip


# ---------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", nargs="+", required=True, help="one or more model.pt files")
    common.add_argument("--data", nargs="+", required=True, help="sources training.data.load_source accepts")
    common.add_argument("--out", required=True, help="output folder for tables (.md, .json) and plots (.png)")
    common.add_argument(
        "--holdout",
        choices=["val", "none"],
        default="val",
        help="val: only objects in the validation split (default); none: every labelled object",
    )
    common.add_argument("--limit", type=int, help="stratified subsample of about N objects")
    common.add_argument("--min-detections", type=int, help="drop shorter light curves (default 5 for knn, else 1)")
    common.add_argument("--level", choices=["coarse", "fine"], help="class level (default coarse for early/probe)")
    common.add_argument("--cv", type=int, default=5, help="cross-validation folds of the baselines and probes")
    common.add_argument("--gp", action="store_true", help="baseline features include the GP fit (slow)")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--repeats", type=int, default=5, help="probe: cross-validations with different shuffles")
    common.add_argument("--threads", type=int, default=1, help="torch threads")
    p = argparse.ArgumentParser(prog="rtf-evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)
    helps = {"early": "early classification vs detection count", "probe": "linear / MLP probe of fingerprints",
             "recon": "physical-unit reconstruction", "knn": "same-class precision@10 retrieval",
             "anomaly": "AUROC of rare classes vs common SNe", "embed": "UMAP / t-SNE plots",
             "all": "every subcommand, plus report.md"}  # fmt: skip
    for name, text in helps.items():
        sub.add_parser(name, parents=[common], help=text, description=text)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    ctx = load_context(args)
    ctx.out.mkdir(parents=True, exist_ok=True)
    names = SUBCOMMANDS if args.command == "all" else (args.command,)
    sections = [RUNNERS[name](ctx) for name in names]
    if args.command == "all":
        argv_used = sys.argv[1:] if argv is None else argv
        head = f"# RTF evaluation\n\n```\nrtf-evaluate {shlex.join(argv_used)}\n```\n\n"
        ckpts = "\n".join(
            f"- {name}: `{enc.version}` ({path})"
            for (name, enc), path in zip(ctx.encoders, args.checkpoint, strict=True)
        )
        (ctx.out / "report.md").write_text(head + f"Checkpoints:\n{ckpts}\n\n" + "\n\n".join(sections) + "\n")
        print(f"wrote {ctx.out / 'report.md'}", file=sys.stderr)
