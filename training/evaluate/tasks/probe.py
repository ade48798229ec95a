"""``rtf-evaluate probe``: linear and MLP probes of the fingerprints, cross-validated, beside the same
probes of the physics features; a bottleneck x dimension grid of the linear probe."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from training.evaluate import baselines, metrics
from training.evaluate.context import FULL, Context
from training.evaluate.report import pct, table, write_section


def run(ctx: Context) -> str:
    level, a = ctx.level("probe"), ctx.args
    idx = ctx.select("probe", level)
    y = ctx.labels(level)[idx]

    def score(x: np.ndarray, clf: str) -> dict[str, float]:
        """Mean (and sd) over ``--repeats`` differently shuffled cross-validations: with classes of
        3-15 members one split's balanced accuracy moves by several points."""
        runs = [
            metrics.classification_scores(y, *baselines.cv_proba(clf, x, y, a.cv, a.seed + r)) for r in range(a.repeats)
        ]
        bal = [r["balanced_accuracy"] for r in runs]
        return {
            "accuracy": float(np.mean([r["accuracy"] for r in runs])),
            "balanced_accuracy": float(np.mean(bal)),
            "balanced_accuracy_sd": float(np.std(bal)),
        }

    def bal(s: dict[str, float]) -> str:
        return f"{pct(s['balanced_accuracy'])} ± {100 * s['balanced_accuracy_sd']:.1f}"

    res, rows, grid = {}, [], {}
    for k, (name, enc) in enumerate(tqdm(ctx.encoders, desc="probe: checkpoints")):
        vec = ctx.encoded(k, FULL).vectors[idx]
        lin, mlp = score(vec, "logreg"), score(vec, "mlp")
        cfg = enc.model.cfg
        res[name] = {"mode": cfg.mode, "latent_dim": cfg.latent_dim, "linear": lin, "mlp": mlp}
        grid[(cfg.latent_dim, cfg.mode)] = lin["accuracy"]
        rows.append(
            [
                f"{name} fingerprint",
                cfg.mode,
                cfg.latent_dim,
                pct(lin["accuracy"]),
                bal(lin),
                pct(mlp["accuracy"]),
                bal(mlp),
            ]
        )
    x = ctx.features(FULL)[idx]
    feats = {clf: score(x, clf) for clf in ("logreg", "mlp", "rf")}
    res["features"] = feats
    rows.append(
        [
            "physics features",
            "-",
            x.shape[1],
            pct(feats["logreg"]["accuracy"]),
            bal(feats["logreg"]),
            pct(feats["mlp"]["accuracy"]),
            bal(feats["mlp"]),
        ]
    )
    rows.append(
        ["physics features + random forest", "-", x.shape[1], pct(feats["rf"]["accuracy"]), bal(feats["rf"]), "", ""]
    )
    modes = [m for m in ("ae", "vae", "vqvae") if any(k[1] == m for k in grid)]
    dims = sorted({k[0] for k in grid})
    seed_tab = table(
        ["dim", *[m.upper().replace("VQVAE", "VQ-VAE") for m in modes]],
        [[d, *(pct(grid.get((d, m), float("nan"))) for m in modes)] for d in dims],
    )
    md = "\n\n".join(
        [
            "## Linear probe",
            ctx.set_line(idx, level, "probe"),
            f"LogisticRegression (class_weight balanced, standardised inputs) and an MLP probe (128 hidden), "
            f"{a.cv}-fold stratified cross-validation on the evaluation set, repeated with {a.repeats} shuffles "
            "(mean; balanced accuracy ± its sd over the repeats); the baseline probes the standardised physics "
            "features the same way.",
            table(["input", "mode", "dim", "linear acc", "linear bal. acc", "MLP acc", "MLP bal. acc"], rows),
            f"Linear-probe accuracy by bottleneck and dimension ({level}):",
            seed_tab,
        ]
    )
    return write_section(ctx, "probe", md, {"results": res, "n": len(idx)})
