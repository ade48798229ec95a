"""Per-light-curve cost of feature building on real ZTF BTS light curves, one core.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_features \
        --data /work/shared/data/ztf_bts_dev.parquet

Prints ms per light curve (p50, p99, mean) for photometry channels, metadata, physics
and GP features, separately. The data is read in place, never copied.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from encoder.features import gp_features, metadata_matrix, photometry_channels, physics_features  # noqa: E402
from encoder.lightcurve import ZTF_FID, LightCurve  # noqa: E402


def load(path: Path, limit: int | None) -> list[LightCurve]:
    import pandas as pd

    df = pd.read_parquet(path, columns=["object_id", "jd", "fid", "mag", "magerr"])
    if limit:
        df = df.head(limit)
    return [
        LightCurve.build(r.object_id, "ztf", r.jd, [ZTF_FID[int(f)] for f in r.fid], mag=r.mag, mag_err=r.magerr)
        for r in df.itertuples()
    ]


def time_one(fn, lcs: list[LightCurve], repeat: int) -> np.ndarray:
    for lc in lcs[:5]:
        fn(lc)  # warm up
    out = np.empty(len(lcs))
    for i, lc in enumerate(lcs):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn(lc)
        out[i] = (time.perf_counter() - t0) / repeat * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ztf_bts_dev.parquet"
    )
    ap.add_argument("--limit", type=int, default=None, help="first N light curves only")
    args = ap.parse_args()
    lcs = load(args.data, args.limit)
    n_det = np.array([len(lc) for lc in lcs])
    print(f"{len(lcs)} light curves, detections p50 {np.median(n_det):.0f}, p99 {np.percentile(n_det, 99):.0f}")
    print(f"{'stage':<12} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, fn, repeat in (
        ("photometry", photometry_channels, 20),
        ("metadata", metadata_matrix, 20),
        ("physics", physics_features, 3),
        ("gp", gp_features, 1),
    ):
        ms = time_one(fn, lcs, repeat)
        print(f"{name:<12} {np.median(ms):8.3f} {np.percentile(ms, 99):8.3f} {ms.mean():8.3f}")


if __name__ == "__main__":
    main()
