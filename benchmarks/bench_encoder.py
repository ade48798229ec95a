"""Encoder throughput on this CPU for a real ZTF light-curve length distribution.

    python -m benchmarks.bench_encoder --real ../shared/data/ztf_alerts/alerts.parquet [--checkpoint PATH]

Light curves are the real ones from the file (``ztf_alerts/alerts.parquet``: real alert packets
with their 30-day histories; ``ztf_bts_dev.parquet``: whole BTS light curves), repeated to ``--n``,
so both the length distribution and the content are real. Reports alerts/s for:
* ``model``: the network alone on prepared examples (bucketed batches);
* ``end-to-end``: features (photometry, metadata, physics/GP if the checkpoint uses them) + model;
for PyTorch fp32 and bf16, ONNX Runtime (``onnx``) and ``auto`` (what the service uses: the fastest
measured at load within cosine 0.999 of fp32), the minimum cosine of each to fp32, and the latency
of one light curve at a time (p50 / p99) for each.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from encoder.inference import Encoder


def load_real(path: str, n: int) -> list:
    from training.data import load_source

    lcs = load_source(path)
    reps = int(np.ceil(n / len(lcs)))
    return (lcs * reps)[:n]


def rate(fn, n_items: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_items / best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--real", required=True)
    p.add_argument("--checkpoint")
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--cache-dir", default="var/cache", help="exported ONNX graphs (as the service keeps them)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    lcs = load_real(a.real, a.n)
    lengths = np.array([len(lc) for lc in lcs])
    print(
        f"{len(lcs)} light curves, detections p50 {np.median(lengths):.0f} p90 {np.percentile(lengths, 90):.0f} "
        f"max {lengths.max()}; torch {torch.__version__}, {a.threads} threads, {os.cpu_count()} cpus"
    )
    fp32 = Encoder.load(a.checkpoint, batch_size=a.batch_size)
    others = {
        p: Encoder(fp32.ckpt, batch_size=a.batch_size, precision=p, cache_dir=a.cache_dir) for p in ("bf16", "onnx")
    }
    print(
        f"checkpoint {fp32.version}: {sum(p.numel() for p in fp32.model.parameters()):,} parameters, "
        f"gp={fp32.spec.use_gp} gp_fit={fp32.spec.gp_fit} metadata={fp32.spec.use_metadata}"
    )
    t0 = time.perf_counter()
    examples = fp32.examples(lcs)
    feat_rate = len(lcs) / (time.perf_counter() - t0)
    print(f"features only          : {feat_rate:8.0f} light curves/s")
    encoders = {"fp32": fp32, **others}
    for name, enc in encoders.items():
        r = rate(lambda enc=enc: enc.encode_examples(examples), len(lcs))
        print(f"model only, {name:11s}: {r:8.0f} alerts/s")
    ref = fp32.encode_examples(examples).vectors
    for name, enc in others.items():
        v = enc.encode_examples(examples).vectors
        cos = (ref * v).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(v, axis=1)
        print(f"{name} vs fp32 cosine    : min {cos.min():.5f}, p01 {np.percentile(cos, 1):.5f}")
    auto = Encoder(fp32.ckpt, batch_size=a.batch_size, precision="auto", cache_dir=a.cache_dir)
    times = ", ".join(
        f"{k} {v * 1e3:.1f} ms" if isinstance(v, float) and "cosine" not in k else f"{k} {v}"
        for k, v in auto.calibration.items()
    )
    print(f"auto precision         : {auto.precision} (calibration: {times})")
    encoders["auto"] = auto
    for name, enc in encoders.items():
        r = rate(lambda enc=enc: enc.encode(lcs), len(lcs), repeat=2)
        print(f"end-to-end {name:12s}: {r:8.0f} alerts/s")
    for name, enc in encoders.items():
        lat = []
        for lc in lcs[:300]:
            t1 = time.perf_counter()
            enc.encode([lc])
            lat.append(time.perf_counter() - t1)
        lat_ms = np.array(lat) * 1e3
        print(f"one light curve, {name:5s} : p50 {np.median(lat_ms):.2f} ms, p99 {np.percentile(lat_ms, 99):.2f} ms")


if __name__ == "__main__":
    main()
