"""Compare the synthetic ZTF survey with real ZTF Bright Transient Survey light curves.

    python experiments/compare_synthetic_real.py --real ../shared/data/ztf_bts_dev.parquet

Writes ``docs/img/synthetic_vs_real.png`` (a few light curves per class, synthetic beside
real) and prints a markdown table of per-class statistics (medians, synthetic / real);
``--doc docs/synthetic.md`` also replaces the table between the ``stats`` markers there.
The synthetic sample is BTS-like: ZTF cadence, objects whose brightest detection is
brighter than ``--max-peak-mag``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

from training.synthetic import SurveyConfig, generate_survey

ROOT = Path(__file__).resolve().parents[1]

CLASSES = ("SNIa", "SNII", "SNIbc", "SNIIn", "SLSN", "TDE", "CV", "AGN")
BAND_COLOUR = {1: "tab:green", 2: "tab:red", 3: "tab:brown"}
FID_OF_BAND = {1: 1, 2: 2, 3: 3}  # global band index (g=1, r=2, i=3) == ZTF fid


def light_curve_stats(jd: np.ndarray, fid: np.ndarray, mag: np.ndarray) -> dict[str, float]:
    """Duration, amplitude, peak magnitude, g-r at the r-band peak, number of detections."""
    ok = np.isfinite(mag)
    jd, fid, mag = jd[ok], fid[ok], mag[ok]
    out = {"n_det": float(len(jd)), "duration": float(jd.max() - jd.min()) if len(jd) else np.nan}
    out["amplitude"] = float(mag.max() - mag.min()) if len(mag) else np.nan
    out["peak_mag"] = float(mag.min()) if len(mag) else np.nan
    out["g_r_peak"] = np.nan
    r, g = fid == 2, fid == 1
    if r.any() and g.any():
        t_peak = jd[r][np.argmin(mag[r])]
        near_r = r & (np.abs(jd - t_peak) <= 2.0)
        near_g = g & (np.abs(jd - t_peak) <= 2.0)
        if near_g.any():
            out["g_r_peak"] = float(np.median(mag[near_g]) - np.median(mag[near_r]))
    return out


def load_real(path: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    import pandas as pd

    df = pd.read_parquet(path, columns=["object_id", "coarse", "jd", "fid", "mag"])
    out: dict[str, list] = {c: [] for c in CLASSES}
    for row in df.itertuples(index=False):
        if row.coarse in out:
            out[row.coarse].append((np.asarray(row.jd), np.asarray(row.fid), np.asarray(row.mag)))
    return out


def load_synthetic(n_per_class: int, seed: int, max_peak_mag: float) -> dict[str, list]:
    cfg = SurveyConfig(
        survey="ztf",
        n_objects=n_per_class * len(CLASSES),
        class_weights={c: 1.0 for c in CLASSES},
        seed=seed,
        min_detections=2,
        max_peak_mag=max_peak_mag,
        with_metadata=False,
    )
    t = time.perf_counter()
    lcs = generate_survey(cfg)
    dt = time.perf_counter() - t
    print(f"generated {len(lcs)} synthetic light curves in {dt:.2f} s ({len(lcs) / dt:.0f}/s)", file=sys.stderr)
    out: dict[str, list] = {c: [] for c in CLASSES}
    for lc in lcs:
        out[lc.label].append((lc.time, lc.band.astype(np.int64), lc.mag))
    return out


def stats_table(syn: dict[str, list], real: dict[str, list]) -> str:
    keys = [
        ("n_det", "detections", 0),
        ("duration", "duration (d)", 0),
        ("amplitude", "amplitude (mag)", 2),
        ("peak_mag", "peak mag", 2),
        ("g_r_peak", "g-r at peak", 2),
    ]
    head = "| class | N (syn / real) | " + " | ".join(k[1] for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 2)]

    def med(rows: list, key: str, weights: np.ndarray | None = None) -> float:
        v = np.array([light_curve_stats(*r)[key] for r in rows]) if rows else np.array([np.nan])
        ok = np.isfinite(v)
        if not ok.any():
            return np.nan
        w = np.ones(len(v)) if weights is None else weights
        order = np.argsort(v[ok])
        cw = np.cumsum(w[ok][order])
        return float(v[ok][order][np.searchsorted(cw, 0.5 * cw[-1])])

    def fmt(x: float, d: int) -> str:
        return "–" if not np.isfinite(x) else f"{x:.{d}f}"

    for c in CLASSES:
        cells = [f"{fmt(med(syn[c], k), d)} / {fmt(med(real[c], k), d)}" for k, _, d in keys]
        lines.append(f"| {c} | {len(syn[c])} / {len(real[c])} | " + " | ".join(cells) + " |")
    # all classes, the synthetic objects re-weighted to the real class mix
    s_rows = [r for c in CLASSES for r in syn[c]]
    r_rows = [r for c in CLASSES for r in real[c]]
    w = np.concatenate([np.full(len(syn[c]), len(real[c]) / max(len(syn[c]), 1)) for c in CLASSES])
    cells = [f"{fmt(med(s_rows, k, w), d)} / {fmt(med(r_rows, k), d)}" for k, _, d in keys]
    lines.append(f"| all (real class mix) | {len(s_rows)} / {len(r_rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(syn: dict[str, list], real: dict[str, list], path: Path, per_class: int = 3, seed: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    classes = list(CLASSES)
    fig, axes = plt.subplots(len(classes), 2 * per_class, figsize=(2.6 * 2 * per_class, 2.0 * len(classes)), dpi=70)
    for i, c in enumerate(classes):
        for side, data in enumerate((syn[c], real[c])):
            rich = [r for r in data if len(r[0]) >= 8] or data
            pick = rng.choice(len(rich), size=min(per_class, len(rich)), replace=False) if rich else []
            for j in range(per_class):
                ax = axes[i, side * per_class + j]
                ax.tick_params(labelsize=7)
                if j >= len(pick):
                    ax.text(
                        0.5,
                        0.5,
                        "no real object" if side else "–",
                        ha="center",
                        va="center",
                        fontsize=8,
                        transform=ax.transAxes,
                    )
                    ax.set_xticks([])
                    ax.set_yticks([])
                    continue
                jd, fid, mag = rich[pick[j]]
                t = jd - jd.min()
                for f, colour in BAND_COLOUR.items():
                    m = (fid == f) & np.isfinite(mag)
                    ax.plot(t[m], mag[m], "o", ms=2.5, color=colour)
                ax.invert_yaxis()
                if j == 0:
                    ax.set_ylabel(f"{c}\nmag", fontsize=8)
                if i == 0:
                    ax.set_title("synthetic" if side == 0 else "real (BTS)", fontsize=9)
                if i == len(classes) - 1:
                    ax.set_xlabel("days since 1st det.", fontsize=7)
    fig.suptitle("Synthetic ZTF (left 3) vs real ZTF BTS (right 3); g green, r red, i brown", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "data" / "ztf_bts_dev.parquet")
    ap.add_argument("--n-per-class", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-peak-mag", type=float, default=18.8, help="BTS-like selection on the brightest detection")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "synthetic_vs_real.png")
    ap.add_argument("--doc", type=Path, default=None, help="markdown file whose stats block to replace")
    args = ap.parse_args(argv)
    if not args.real.exists():
        print(f"real data {args.real} not found", file=sys.stderr)
        return 2
    real = load_real(args.real)
    syn = load_synthetic(args.n_per_class, args.seed, args.max_peak_mag)
    table = stats_table(syn, real)
    print(table)
    plot(syn, real, args.png, seed=args.seed)
    print(f"wrote {args.png}", file=sys.stderr)
    if args.doc is not None:
        text = args.doc.read_text()
        block = f"<!-- stats:begin -->\n{table}\n<!-- stats:end -->"
        new, n = re.subn(r"<!-- stats:begin -->.*?<!-- stats:end -->", lambda _: block, text, flags=re.S)
        if n:
            args.doc.write_text(new)
            print(f"updated {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
