"""Fast batched inference: fingerprints, class probabilities, anomaly scores, reconstructions.

Light curves are bucketed by length (sorted, then cut into batches) so that padding
stays small, and results are returned in input order. (Building features in a helper thread
while the model runs was measured slower on 2 cores: the features hold the GIL.)

``precision`` picks how the model runs: ``"fp32"`` (PyTorch), ``"bf16"`` (PyTorch under bfloat16
autocast), ``"onnx"`` (ONNX Runtime, fp32, exported at load: :mod:`encoder.onnx_model`). ``"auto"``
times each on a calibration batch at load and keeps the fastest that is faster than fp32 by 15 % or
more with every calibration fingerprint within cosine 0.999 of fp32 (bf16 only on a CPU with bf16
instructions: emulated, it was 3-6x slower than fp32 wherever we measured it).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from encoder.batching import Batch, Example, collate, make_example, make_examples
from encoder.checkpoint import Checkpoint, load_checkpoint
from encoder.lightcurve import BAND_INDEX, LightCurve
from encoder.onnx_model import OnnxExportError, OnnxModel, min_cosine, run_torch

#: Detections per call of ``make_examples`` (see :meth:`Encoder.examples`).
EXAMPLE_CHUNK_POINTS = 8192


@dataclass
class Encoded:
    object_ids: list[str]
    vectors: np.ndarray  # (n, dim) float32 fingerprints (not normalised)
    coarse_probs: np.ndarray | None  # (n, n_coarse)
    fine_probs: np.ndarray | None  # (n, n_fine)
    misfit: np.ndarray  # (n,) reconstruction misfit
    anomaly: np.ndarray  # (n,) calibrated anomaly score in [0, 1]

    @classmethod
    def concat(cls, parts: list[Encoded]) -> Encoded:
        def cat(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else np.concatenate(values)

        return cls(sum((p.object_ids for p in parts), []), cat("vectors"), cat("coarse_probs"), cat("fine_probs"),
                   cat("misfit"), cat("anomaly"))  # fmt: skip


class Encoder:
    """The inference engine over one loaded checkpoint. Thread-safe for concurrent calls."""

    PRECISIONS = ("fp32", "bf16", "onnx", "auto")

    def __init__(self, ckpt: Checkpoint, *, batch_size: int = 512, token_budget: int = 8192,
                 precision: str = "fp32", threads: int | None = None, cache_dir: Path | None = None):  # fmt: skip
        if precision not in self.PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {self.PRECISIONS}")
        self.ckpt = ckpt
        self.model = ckpt.model.eval()
        self.spec = ckpt.spec
        self.batch_size = batch_size
        self.token_budget = token_budget
        if threads:
            torch.set_num_threads(threads)
        self.precision = precision
        self.cache_dir = cache_dir  # exported ONNX graphs (see encoder.onnx_model)
        self.onnx: OnnxModel | None = None
        self.calibration: dict[str, float | str] = {}  # the measurements behind an "auto" choice
        if precision == "onnx":
            self.onnx = self._export_onnx(threads)
        elif precision == "auto":
            self.precision, self.calibration = self._choose_precision(threads)

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs: object) -> Encoder:
        return cls(load_checkpoint(path), **kwargs)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- properties
    @property
    def version(self) -> str:
        return self.ckpt.version

    @property
    def dim(self) -> int:
        return self.model.cfg.served_dim

    @property
    def coarse_classes(self) -> list[str]:
        return list(self.model.cfg.coarse_classes)

    @property
    def fine_classes(self) -> list[str]:
        return list(self.model.cfg.fine_classes)

    # ---------------------------------------------------------------- encoding
    def examples(self, lcs: list[LightCurve]) -> list[Example]:
        """Model inputs, built in chunks of about ``EXAMPLE_CHUNK_POINTS`` detections: NumPy holds
        the GIL through each array operation, and one pass over a 14 MB batch held it for >100 ms,
        long enough to stall the service's event loop (the outputs do not depend on the chunking)."""
        out: list[Example] = []
        start, points = 0, 0
        for i, lc in enumerate(lcs):
            points += len(lc)
            if points >= EXAMPLE_CHUNK_POINTS:
                out += make_examples(lcs[start : i + 1], self.spec)
                start, points = i + 1, 0
        if start < len(lcs):
            out += make_examples(lcs[start:], self.spec)
        return out

    def encode(self, lcs: list[LightCurve]) -> Encoded:
        return self.encode_examples(self.examples(lcs))

    @torch.inference_mode()
    def encode_examples(self, examples: list[Example]) -> Encoded:
        n = len(examples)
        lengths = np.array([min(len(ex), self.spec.max_len) for ex in examples], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        vec = np.zeros((n, self.dim), dtype=np.float32)
        misfit = np.zeros(n, dtype=np.float64)
        coarse = np.zeros((n, len(self.coarse_classes)), dtype=np.float32) if self.coarse_classes else None
        fine = np.zeros((n, len(self.fine_classes)), dtype=np.float32) if self.fine_classes else None
        for idx in self._buckets(lengths, order):
            out = self._run(collate([examples[i] for i in idx], self.spec))
            vec[idx], misfit[idx] = out["fingerprint"], out["misfit"]
            if coarse is not None:
                coarse[idx] = out["coarse_probs"]
            if fine is not None:
                fine[idx] = out["fine_probs"]
        anomaly = self.ckpt.scorer.score(vec, misfit, fine)
        return Encoded([ex.object_id for ex in examples], vec, coarse, fine, misfit, anomaly)

    def _run(self, batch: Batch) -> dict[str, np.ndarray]:
        if self.onnx is not None:
            return self.onnx(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext():
            return run_torch(self.model, batch)

    # ---------------------------------------------------------------- precision
    def _calibration_examples(self) -> list[Example]:
        """A smooth transient of 48 detections: its first detection, its first 20, all 48."""
        rng = np.random.default_rng(0)
        t = np.cumsum(rng.uniform(0.5, 3.0, 48))
        flux = 5e4 * np.exp(-0.5 * ((t - 30) / 12) ** 2) + 2e3
        lc = LightCurve.build("calibration", "ztf", 2_459_000.5 + t, np.array(["g", "r"] * 24),
                              flux=flux, flux_err=0.05 * flux + 300)  # fmt: skip
        return self.examples([lc.first(1), lc.first(20), lc])

    def _export_onnx(self, threads: int | None) -> OnnxModel:
        """The ONNX Runtime model, checked against PyTorch on shapes it was not traced with."""
        one, short, full = self._calibration_examples()
        example = collate([full, short, full], self.spec)  # traced with padding
        checks = [collate(b, self.spec) for b in ([one], [short], [one, short, full] * 8)]
        onnx = OnnxModel(self.model, example, version=self.version, threads=threads, cache_dir=self.cache_dir)
        try:
            onnx.check(self.model, checks)
        except OnnxExportError:
            if not onnx.from_cache:
                raise
            onnx.path.unlink(missing_ok=True)  # type: ignore[union-attr]  # a stale cache entry: export afresh
            onnx = OnnxModel(self.model, example, version=self.version, threads=threads, cache_dir=self.cache_dir)
            onnx.check(self.model, checks)
        return onnx

    def _choose_precision(self, threads: int | None, repeats: int = 3) -> tuple[str, dict[str, float | str]]:
        """The fastest precision within cosine 0.999 of fp32, if 15 % faster than fp32; with its measurements.

        The time (best of ``repeats``) is that of a batch of 64 light curves (bulk ingest) plus 16
        single ones (requests).
        """
        examples = self._calibration_examples()[2:] * 64
        singles = [examples[:1]] * 16
        measured: dict[str, float | str] = {}
        try:
            self.onnx = self._export_onnx(threads)
        except OnnxExportError as exc:
            measured["onnx_error"] = str(exc)
        candidates = ["fp32", "bf16", "onnx"] if self.onnx is not None else ["fp32", "bf16"]
        if cpu_has_native_bf16() is False:  # emulated: 3-6x slower than fp32 wherever we measured it
            candidates.remove("bf16")
            measured["bf16_skipped"] = "no native bf16 instructions on this CPU (avx512_bf16 / amx_bf16)"
        onnx, vectors = self.onnx, {}
        for precision in candidates:
            self.precision, self.onnx = precision, onnx if precision == "onnx" else None
            vectors[precision] = self.encode_examples(examples).vectors  # also the warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                self.encode_examples(examples)
                for one in singles:
                    self.encode_examples(one)
                times.append(time.perf_counter() - start)
            measured[precision] = min(times)
        best = "fp32"
        for precision in candidates[1:]:
            cos = min_cosine(vectors["fp32"], vectors[precision])
            measured[f"{precision}_min_cosine"] = cos
            if cos >= 0.999 and measured[precision] <= 0.85 * measured["fp32"] and measured[precision] < measured[best]:
                best = precision
        self.onnx = onnx if best == "onnx" else None
        return best, measured

    def _buckets(self, lengths: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
        """Consecutive runs of the length-sorted order, each within the batch size and the
        token budget (rows x longest row), so one long light curve does not pad a whole batch."""
        out, start = [], 0
        for stop in range(1, len(order) + 1):
            longest = lengths[order[stop - 1]]
            if stop - start > 1 and (stop - start > self.batch_size or (stop - start) * longest > self.token_budget):
                out.append(order[start : stop - 1])
                start = stop - 1
        if start < len(order):
            out.append(order[start:])
        return out

    # ---------------------------------------------------------------- reconstruction
    @torch.inference_mode()
    def reconstruct(self, lc: LightCurve, t_rel: np.ndarray, bands: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Decoded magnitude and its 1-sigma at days ``t_rel`` after the first detection, per band.

        Returns arrays (len(bands), len(t_rel)). Needs the query decoder.
        """
        ex = make_example(lc, self.spec)
        batch = collate([ex], self.spec)
        z = self.model(batch)["z"]
        t = torch.as_tensor(np.tile(np.asarray(t_rel, dtype=np.float32), (len(bands), 1)).reshape(1, -1))
        b = torch.as_tensor(np.repeat([BAND_INDEX[x] for x in bands], len(t_rel)).reshape(1, -1))
        mean, log_sigma = self.model.reconstruct(z, t, b)
        logflux = mean.numpy().reshape(len(bands), len(t_rel)).astype(np.float64)
        mag = -2.5 * logflux  # channel = -0.4 mag for bright points
        sigma = 2.5 * np.exp(log_sigma.numpy().reshape(len(bands), len(t_rel)))
        return mag, sigma


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether the CPU has bfloat16 instructions (x86 ``avx512_bf16`` / ``amx_bf16``, Arm ``bf16``);
    None where that cannot be read (not Linux): then ``auto`` measures bf16 like the others."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
