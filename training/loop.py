"""The training run behind ``rtf-train`` (training.train): data and features, the loop with
resuming from ``state.pt``, then the anomaly calibration and the checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from encoder.anomaly import AnomalyScorer
from encoder.batching import IGNORE, Example, FeatureSpec, collate, make_examples, raw_object_features
from encoder.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from encoder.features import FeatureNormalizer
from encoder.features.metadata import MetadataNormalizer, metadata_matrix
from encoder.inference import Encoder
from encoder.lightcurve import LightCurve
from encoder.model.rtf import ModelConfig, RTFModel
from encoder.taxonomy import COARSE_CLASSES, FINE_CLASSES, SEED_COARSE_CLASSES, coarse_of
from training.calibration import fit_anomaly_scorer
from training.config import TrainConfig, check
from training.data import balanced, early_copies, load_sources, split_of


# ---------------------------------------------------------------------------- data preparation
def _raw_features_job(args: tuple[LightCurve, FeatureSpec]) -> tuple[np.ndarray, np.ndarray]:
    lc, spec = args
    return raw_object_features(lc, spec, levels=True)


def compute_raw_features(lcs: list[LightCurve], spec: FeatureSpec, workers: int) -> list[tuple]:
    """Object features at every feature level, in parallel processes, with a progress bar."""
    jobs = [(lc, spec) for lc in lcs]
    desc = "physics+GP features" if spec.gp_fit else "physics features"
    if workers <= 1:
        return [_raw_features_job(j) for j in tqdm(jobs, desc=desc, unit="lc")]
    with get_context("fork").Pool(workers) as pool:
        return list(tqdm(pool.imap(_raw_features_job, jobs, chunksize=32), total=len(jobs), desc=desc, unit="lc"))


def prepare_examples(lcs: list[LightCurve], spec: FeatureSpec, cfg: ModelConfig, raw: list | None) -> list[Example]:
    coarse_index = {c: i for i, c in enumerate(cfg.coarse_classes)}
    fine_index = {c: i for i, c in enumerate(cfg.fine_classes)}
    out: list[Example] = []
    step = 4096  # features of many light curves at once are faster (make_examples), with a progress bar
    for start in tqdm(range(0, len(lcs), step), desc="examples", unit="chunk", leave=False):
        chunk = lcs[start : start + step]
        out += make_examples(
            chunk,
            spec,
            raw_objfeat=None if raw is None else raw[start : start + step],
            coarse_index=coarse_index,
            fine_index=fine_index,
            coarse_labels=[coarse_of(lc.label) for lc in chunk],
        )
    return out


# ---------------------------------------------------------------------------- training loop
def length_bucketed_batches(examples: list[Example], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples: little padding, still random order."""
    perm = rng.permutation(len(examples))
    batches = []
    pool = 32 * batch_size
    for start in range(0, len(perm), pool):
        chunk = perm[start : start + pool]
        chunk = chunk[np.argsort([len(examples[i]) for i in chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def truncation_lengths(examples: list[Example], rng: np.random.Generator, min_det: int) -> list[int]:
    """Random truncation: 70% of views cut to a uniform count in [min_det, n], 30% kept whole."""
    out = []
    for ex in examples:
        n = len(ex)
        if n > min_det and rng.random() < 0.7:
            out.append(int(rng.integers(min_det, n + 1)))
        else:
            out.append(n)
    return out


def evaluate(model: RTFModel, examples: list[Example], spec: FeatureSpec, batch_size: int = 512) -> dict:
    """Validation metrics on whole light curves: classification and reconstruction."""
    from sklearn.metrics import balanced_accuracy_score

    model.eval()
    preds, ys, dmag = [], [], []
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            b = collate(examples[start : start + batch_size], spec)
            out = model(b)
            if "coarse_logits" in out:
                preds.append(out["coarse_logits"].argmax(-1).numpy())
                ys.append(b.y_coarse.numpy())
            if model.cfg.decoder == "query":
                mean, _ = model.reconstruct(out["z"], b.t_rel, b.band)
                ok = (~b.pad_mask) & (b.phot[..., 3] < 0.04)  # S/N > ~10: where |dmag| is meaningful
                dmag.append((2.5 * (mean - b.phot[..., 2]).abs())[ok].numpy())
    metrics: dict = {}
    if preds:
        p, y = np.concatenate(preds), np.concatenate(ys)
        known = y != IGNORE
        if known.any():
            metrics["coarse_accuracy"] = float((p[known] == y[known]).mean())
            metrics["coarse_balanced_accuracy"] = float(balanced_accuracy_score(y[known], p[known]))
    if dmag:
        metrics["median_abs_dmag"] = float(np.median(np.concatenate(dmag)))
    model.train()
    return metrics


def train(tc: TrainConfig) -> Path:
    """Train one run into ``tc.out`` (resuming from its state.pt) and return the folder."""
    check(tc)
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    random.seed(tc.seed)
    torch.set_num_threads(tc.threads)
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    m = tc.model
    lcs = load_sources(tc.data, with_stamps=m.use_images)
    if tc.unlabelled:
        hidden = {lc.object_id for src in tc.unlabelled for lc in load_sources([src])}
        lcs = [replace(lc, label=None) if lc.object_id in hidden else lc for lc in lcs]
        print(f"labels hidden for {len(hidden)} objects of {tc.unlabelled}", file=sys.stderr)
    if tc.early_copies:
        lcs = early_copies(lcs)
    if tc.balance_classes:
        lcs = balanced(lcs, tc.balance_classes)
    train_lcs = [lc for lc in lcs if split_of(lc.object_id, tc.val_fraction) == "train"]
    val_lcs = [lc for lc in lcs if split_of(lc.object_id, tc.val_fraction) == "val"]
    print(f"{len(lcs)} light curves: {len(train_lcs)} train, {len(val_lcs)} val", file=sys.stderr)

    spec = FeatureSpec(
        max_len=m.max_len, use_metadata=m.use_metadata, use_images=m.use_images, use_gp=m.use_gp, gp_fit=tc.gp_fit
    )
    # fine-tuning keeps the normalisation its weights were trained with (a small fine-tuning set,
    # such as one survey's labelled objects, would otherwise shift every input)
    start = load_checkpoint(tc.init_from) if tc.init_from else None
    if m.use_metadata:
        spec.meta_norm = (
            start.spec.meta_norm if start else MetadataNormalizer.fit(metadata_matrix(lc) for lc in train_lcs)
        )
    raw_train = raw_val = None
    if m.use_gp:
        raw_train = compute_raw_features(train_lcs, spec, tc.workers)
        raw_val = compute_raw_features(val_lcs, spec, tc.workers)
        spec.obj_norm = (
            start.spec.obj_norm if start else FeatureNormalizer.fit(np.concatenate([r[0] for r in raw_train]))
        )
    from encoder.features import OBJECT_FEATURE_NAMES

    coarse = list(SEED_COARSE_CLASSES if tc.num_classes == 5 else COARSE_CLASSES)
    labelled = tc.cls_weight > 0
    cfg = replace(
        m,
        gp_dim=len(OBJECT_FEATURE_NAMES) if m.use_gp else 0,
        coarse_classes=coarse if labelled else [],
        fine_classes=list(FINE_CLASSES) if labelled else [],
    )
    train_ex = prepare_examples(train_lcs, spec, cfg, raw_train)
    val_ex = prepare_examples(val_lcs, spec, cfg, raw_val)

    model = RTFModel(cfg)
    if start is not None:
        # strict except for modules the new config adds that start neutral (the decoder's FiLM)
        try:
            missing, unexpected = model.load_state_dict(start.model.state_dict(), strict=False)
        except RuntimeError as exc:  # shapes differ
            raise SystemExit(f"--init-from {tc.init_from}: architecture differs: {exc}") from exc
        if unexpected or any(not k.startswith("decoder.film.") for k in missing):
            raise SystemExit(
                f"--init-from {tc.init_from}: architecture differs (missing {missing}, unexpected {unexpected})"
            )
        print(f"weights from {tc.init_from}" + (f" (new: {', '.join(missing)})" if missing else ""), file=sys.stderr)
    if tc.train_only:  # e.g. grow the decoder without moving the fingerprints or the heads
        for name, p in model.named_parameters():
            p.requires_grad_(p.requires_grad and name.startswith(tc.train_only + "."))
        if not any(p.requires_grad for p in model.parameters()):
            raise SystemExit(f"--train-only {tc.train_only}: no trainable parameters under that name")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = max(1, len(train_ex) // tc.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=tc.lr, total_steps=tc.epochs * steps_per_epoch, pct_start=0.1
    )
    # the weights averaged over the last ~1/(1 - decay) steps: what is saved, evaluated and scored
    ema = None
    if tc.ema is not None:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema), use_buffers=True)
    start_epoch, history = 0, []
    state_path = out / "state.pt"
    if state_path.exists():  # resume
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        if ema is not None:
            if "ema" not in state:
                raise SystemExit(f"{state_path} belongs to a run without --ema: resume without it or use a new --out")
            ema.load_state_dict(state["ema"])
        if sched.total_steps != tc.epochs * steps_per_epoch:  # the one-cycle schedule cannot be stretched
            raise SystemExit(
                f"{state_path} belongs to a run with another length or data ({sched.total_steps} "
                f"steps planned, this one plans {tc.epochs * steps_per_epoch}): resume with its "
                "--epochs and data, or start a new --out"
            )
        start_epoch, history = state["epoch"], state["history"]
        print(f"resuming {out} at epoch {start_epoch}", file=sys.stderr)
    rng = np.random.default_rng(tc.seed + start_epoch)

    for epoch in range(start_epoch, tc.epochs):
        model.train()
        if tc.train_only:  # frozen modules without dropout: the trained one sees what inference gives it
            for name, module in model.named_children():
                if name != tc.train_only:
                    module.eval()
        batches = length_bucketed_batches(train_ex, tc.batch_size, rng)[:steps_per_epoch]
        totals: dict[str, float] = {}
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{tc.epochs}", unit="batch")
        for step, idx in enumerate(bar):
            batch_ex = [train_ex[i] for i in idx] * tc.views
            lengths = truncation_lengths(batch_ex, rng, tc.min_detections) if tc.random_truncate else None
            b = collate(batch_ex, spec, lengths)
            parts = model.loss(b, model(b), tc.cls_weight, tc.contrastive_weight)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            bar.set_postfix({k: f"{v / (step + 1):.3f}" for k, v in totals.items() if k in ("total", "mse")})
        row = {"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in totals.items()}}
        row |= {f"val_{k}": v for k, v in evaluate(model if ema is None else ema.module, val_ex, spec).items()}
        history.append(row)
        print(json.dumps(row), file=sys.stderr)
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                **({} if ema is None else {"ema": ema.state_dict()}),
            },
            state_path,
        )

    if ema is not None:  # state.pt keeps the last weights themselves
        model.load_state_dict(ema.module.state_dict())
    model.eval()
    ckpt = Checkpoint(model, spec, AnomalyScorer.unfitted(None), "unsaved")
    scorer = fit_anomaly_scorer(Encoder(ckpt), train_ex, val_ex, seed=tc.seed)
    metrics = {"val": evaluate(model, val_ex, spec), "history": history}
    summary = {
        "config": asdict(tc),
        "command": " ".join(sys.argv),
        "n_train": len(train_ex),
        "n_val": len(val_ex),
        "train_labels": _label_counts(train_lcs),
        "seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
    }
    version = save_checkpoint(out / "model.pt", model, spec, scorer, summary=summary, metrics=metrics)
    (out / "summary.json").write_text(json.dumps({"version": version, **summary}, indent=2))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"wrote {out / 'model.pt'} ({version}); val: {metrics['val']}", file=sys.stderr)
    return out


def _label_counts(lcs: list[LightCurve]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for lc in lcs:
        counts[lc.label or "unlabelled"] = counts.get(lc.label or "unlabelled", 0) + 1
    return dict(sorted(counts.items()))
