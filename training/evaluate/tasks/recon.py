"""``rtf-evaluate recon``: the decoded light curve against the observed magnitudes (median |Δmag|),
beside per-band constant and Bazin fits; example reconstructions."""

from __future__ import annotations

from collections import Counter
from itertools import zip_longest

import numpy as np
import torch
from tqdm import tqdm

from encoder.inference import Encoder
from encoder.lightcurve import BANDS, LightCurve
from training.evaluate import baselines, metrics, plots
from training.evaluate.context import Context
from training.evaluate.report import num, pct, table, write_section


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


def run(ctx: Context) -> str:
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
        rows.append(
            [
                method,
                *(num(s[f"dmag_{d}"]) for d in datasets),
                num(s["dmag_all"]),
                num(s["time_err_days"], 2),
                pct(s["band_accuracy"]),
            ]
        )
    n_class = Counter(labels.tolist())
    class_rows = [[f"{c} ({n_class[c]})", *(num(per_class[m][c]) for m in methods)] for c in classes]
    plots.grouped_bars(per_class, ctx.out / "recon_per_class.png", "median |Δmag| per class", "mag")
    _recon_examples(ctx, lcs, labels)
    md = "\n\n".join(
        [
            "## Physical-unit reconstruction",
            ctx.set_line(idx, "fine", "recon"),
            "Median |Δmag| between the decoded light curve and the observed magnitude at every observed (time, band) "
            "with S/N > 5 (query decoder: Encoder.reconstruct at t - t_first per band; position decoder: by sequence "
            "position within the encoder window). Time error and band accuracy exist only for the position decoder "
            "(the query decoder is asked at the observed times and bands). Baselines: per-band median magnitude, and a "
            "per-band Bazin fit of the light curve itself (>= 6 points, else the median).",
            table(
                [
                    "method",
                    *(f"median abs dmag {d}" for d in datasets),
                    "median abs dmag (all)",
                    "time error (d)",
                    "band accuracy",
                ],
                rows,
            ),
            "Per class (median |Δmag|):",
            table(["class (n)", *methods], class_rows),
            "![per class](recon_per_class.png) ![examples](recon_examples.png)",
        ]
    )
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
        items.append(
            {
                "id": lc.object_id,
                "label": labels[j],
                "t": lc.time - lc.time[0],
                "mag": lc.mag,
                "band": np.array(lc.band_names),
                "grid": grid,
                "curves": dict(zip(bands, mag, strict=True)),
            }
        )
    plots.reconstructions(items, ctx.out / "recon_examples.png", f"{name}: decoded light curves")
