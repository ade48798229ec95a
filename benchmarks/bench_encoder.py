"""Encoder throughput on this CPU for a real ZTF light-curve length distribution.

    python benchmarks/bench_encoder.py --real ../shared/data/ztf_alerts/alerts.parquet [--checkpoint PATH]

Light curves are the real ones from the file (``ztf_alerts/alerts.parquet``: real alert packets
with their 30-day histories; ``ztf_bts_dev.parquet``: whole BTS light curves), repeated to ``--n``,
so both the length distribution and the content are real. Reports alerts/s for:
* ``model``: the network alone on prepared examples (bucketed batches);
* ``end-to-end``: features (photometry, metadata, physics/GP if the checkpoint uses them) + model;
for fp32, bf16 and ``auto`` (what the service uses: bf16 only where measured faster here), and the
minimum cosine between bf16 and fp32 fingerprints.
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
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    lcs = load_real(a.real, a.n)
    lengths = np.array([len(lc) for lc in lcs])
    print(f"{len(lcs)} light curves, detections p50 {np.median(lengths):.0f} p90 {np.percentile(lengths, 90):.0f} "
          f"max {lengths.max()}; torch {torch.__version__}, {a.threads} threads, {os.cpu_count()} cpus")  # fmt: skip
    fp32 = Encoder.load(a.checkpoint, batch_size=a.batch_size)
    bf16 = Encoder(fp32.ckpt, batch_size=a.batch_size, precision="bf16")
    print(f"checkpoint {fp32.version}: {sum(p.numel() for p in fp32.model.parameters()):,} parameters, "
          f"gp={fp32.spec.use_gp} gp_fit={fp32.spec.gp_fit} metadata={fp32.spec.use_metadata}")  # fmt: skip
    t0 = time.perf_counter()
    examples = fp32.examples(lcs)
    feat_rate = len(lcs) / (time.perf_counter() - t0)
    print(f"features only          : {feat_rate:8.0f} light curves/s")
    for name, enc in (("fp32", fp32), ("bf16", bf16)):
        r = rate(lambda enc=enc: enc.encode_examples(examples), len(lcs))
        print(f"model only, {name}       : {r:8.0f} alerts/s")
    a32 = fp32.encode_examples(examples).vectors
    b16 = bf16.encode_examples(examples).vectors
    cos = (a32 * b16).sum(1) / np.linalg.norm(a32, axis=1) / np.linalg.norm(b16, axis=1)
    print(f"bf16 vs fp32 cosine    : min {cos.min():.5f}, p01 {np.percentile(cos, 1):.5f}")
    auto = Encoder(fp32.ckpt, batch_size=a.batch_size, precision="auto")
    print(f"auto precision         : {auto.precision} (calibration fp32 {auto.calibration['fp32'] * 1e3:.1f} ms, "
          f"bf16 {auto.calibration['bf16'] * 1e3:.1f} ms, min cosine {auto.calibration['min_cosine']:.5f})")  # fmt: skip
    for name, enc in (("fp32", fp32), ("bf16", bf16), ("auto", auto)):
        r = rate(lambda enc=enc: enc.encode(lcs), len(lcs), repeat=2)
        print(f"end-to-end {name:12s}: {r:8.0f} alerts/s")
    lat = []
    for lc in lcs[:300]:
        t1 = time.perf_counter()
        auto.encode([lc])
        lat.append(time.perf_counter() - t1)
    lat_ms = np.array(lat) * 1e3
    print(f"single light curve     : p50 {np.median(lat_ms):.2f} ms, p99 {np.percentile(lat_ms, 99):.2f} ms")


if __name__ == "__main__":
    main()
