"""Fast batched inference: fingerprints, class probabilities, anomaly scores, reconstructions.

Light curves are bucketed by length (sorted, then cut into batches) so that padding
stays small, and results are returned in input order. (Building features in a helper thread
while the model runs was measured slower on 2 cores: the features hold the GIL.)

``precision`` picks how the model runs: ``"fp32"`` (PyTorch), ``"bf16"`` (PyTorch under bfloat16
autocast), ``"onnx"`` (ONNX Runtime, fp32: the checkpoint's serving export, :mod:`encoder.serving`).
``"auto"`` serves the serving export where one is at hand (beside the checkpoint or in the cache);
otherwise it times each on a calibration batch at load and keeps the fastest that is faster than
fp32 by 15 % or more with every calibration fingerprint within cosine 0.999 of fp32 (bf16 only on a
CPU with bf16 instructions: emulated, it was 3-6x slower than fp32 wherever we measured it).

:meth:`Encoder.load` serves a serving export without importing PyTorch at all; the other paths
need it (``pip install 'rtf[train]'``).
"""

from __future__ import annotations

import time
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from encoder.batching import Example, collate_arrays, make_example, make_examples
from encoder.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from encoder.lightcurve import BAND_INDEX, LightCurve
from encoder.serving import (
    OnnxSessions,
    ServingInfo,
    beside,
    cached,
    file_sha256,
    find_export,
    read_export,
    read_info,
    write_export,
)

if TYPE_CHECKING:
    from encoder.checkpoint import Checkpoint
    from encoder.model.rtf import RTFModel

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
        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        def cat_optional(name: str) -> np.ndarray | None:
            return None if getattr(parts[0], name) is None else cat(name)

        return cls(
            sum((p.object_ids for p in parts), []),
            cat("vectors"),
            cat_optional("coarse_probs"),
            cat_optional("fine_probs"),
            cat("misfit"),
            cat("anomaly"),
        )


class Encoder:
    """The inference engine over one model: a loaded checkpoint (PyTorch, and ONNX Runtime from it)
    or a serving export (ONNX Runtime alone, :meth:`from_export`). Thread-safe for concurrent calls."""

    PRECISIONS = ("fp32", "bf16", "onnx", "auto")

    def __init__(
        self,
        ckpt: Checkpoint,
        *,
        batch_size: int = 512,
        token_budget: int = 8192,
        precision: str = "fp32",
        threads: int | None = None,
        cache_dir: Path | None = None,
    ):
        import torch

        if precision not in self.PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {self.PRECISIONS}")
        self.ckpt: Checkpoint | None = ckpt
        self.model: RTFModel | None = ckpt.model.eval()  # None in a serving export's encoder
        self.info = _info_of(ckpt)
        self.batch_size = batch_size
        self.token_budget = token_budget
        if threads:
            torch.set_num_threads(threads)
        self.precision = precision
        self.cache_dir = cache_dir  # serving exports made at load (see encoder.serving)
        self.onnx: OnnxSessions | None = None
        self.from_cache = False  # the ONNX graphs came from the cache, not a fresh export
        self.calibration: dict[str, float | str] = {}  # the measurements behind an "auto" choice
        if precision == "onnx":
            self.onnx = self._export_onnx(threads)
        elif precision == "auto":
            self.precision, self.calibration = self._choose_precision(threads)

    @classmethod
    def from_export(
        cls, path: Path, *, batch_size: int = 512, token_budget: int = 8192, threads: int | None = None
    ) -> Encoder:
        """ONNX Runtime over a serving export: no PyTorch, no checkpoint."""
        info, graph, decoder = read_export(path)
        self = cls.__new__(cls)
        self.ckpt, self.model, self.info = None, None, info
        self.batch_size, self.token_budget, self.cache_dir = batch_size, token_budget, None
        self.precision, self.calibration, self.from_cache = "onnx", {"export": str(path)}, True
        self.onnx = OnnxSessions(info, graph, decoder, threads)
        return self

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, precision: str = "fp32", cache_dir: Path | None = None, **kwargs
    ) -> Encoder:
        """The encoder of a checkpoint file: from its serving export, without PyTorch, when
        ``precision`` is ``onnx`` or ``auto`` and one is at hand; from the checkpoint otherwise."""
        path = Path(path) if path else DEFAULT_CHECKPOINT
        if precision in ("onnx", "auto"):
            export = find_export(path, cache_dir)
            if export is not None:
                return cls.from_export(export, **kwargs)
        return cls(_read_checkpoint(path), precision=precision, cache_dir=cache_dir, **kwargs)

    # ---------------------------------------------------------------- properties
    @property
    def version(self) -> str:
        return self.info.version

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def latent_dim(self) -> int:
        """How many of a served fingerprint's first numbers are the model's own fingerprint (the rest, if
        any, are the class-aware metric's probabilities)."""
        return self.info.latent_dim or self.info.dim

    @property
    def coarse_classes(self) -> list[str]:
        return list(self.info.coarse_classes)

    @property
    def fine_classes(self) -> list[str]:
        return list(self.info.fine_classes)

    @property
    def spec(self):
        return self.info.spec

    @property
    def metrics(self) -> dict:
        return self.info.metrics

    @property
    def can_reconstruct(self) -> bool:
        """Whether :meth:`reconstruct` works (a query decoder, in PyTorch or exported)."""
        if self.model is not None:
            return self.model.cfg.decoder == "query"
        return self.onnx is not None and self.onnx.decoder is not None

    def _torch_model(self) -> RTFModel:
        """The PyTorch model; an encoder over a serving export (:meth:`from_export`) has none."""
        if self.model is None:
            raise RuntimeError("an encoder over a serving export has no PyTorch model")
        return self.model

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

    def encode_examples(self, examples: list[Example]) -> Encoded:
        n = len(examples)
        lengths = np.array([min(len(ex), self.spec.max_len) for ex in examples], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        vec = np.zeros((n, self.dim), dtype=np.float32)
        misfit = np.zeros(n, dtype=np.float64)
        coarse = np.zeros((n, len(self.coarse_classes)), dtype=np.float32) if self.coarse_classes else None
        fine = np.zeros((n, len(self.fine_classes)), dtype=np.float32) if self.fine_classes else None
        for idx in self._buckets(lengths, order):
            out = self._run(collate_arrays([examples[i] for i in idx], self.spec))
            vec[idx], misfit[idx] = out["fingerprint"], out["misfit"]
            if coarse is not None:
                coarse[idx] = out["coarse_probs"]
            if fine is not None:
                fine[idx] = out["fine_probs"]
        anomaly = self.info.scorer.score(vec, misfit, fine)
        return Encoded([ex.object_id for ex in examples], vec, coarse, fine, misfit, anomaly)

    def _run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.onnx is not None:
            return self.onnx(batch)
        import torch

        from encoder.batching import Batch
        from encoder.model.rtf import run_torch

        bf16 = torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with torch.inference_mode(), bf16:
            return run_torch(self._torch_model(), Batch.from_arrays(batch))

    # ---------------------------------------------------------------- precision
    def _calibration_examples(self) -> list[Example]:
        """A smooth transient of 48 detections: its first detection, its first 20, all 48."""
        rng = np.random.default_rng(0)
        t = np.cumsum(rng.uniform(0.5, 3.0, 48))
        flux = 5e4 * np.exp(-0.5 * ((t - 30) / 12) ** 2) + 2e3
        lc = LightCurve.build(
            "calibration", "ztf", 2_459_000.5 + t, np.array(["g", "r"] * 24), flux=flux, flux_err=0.05 * flux + 300
        )
        return self.examples([lc.first(1), lc.first(20), lc])

    def _export_onnx(self, threads: int | None) -> OnnxSessions:
        """ONNX Runtime over the checkpoint's serving export (from the cache, else exported and
        cached), checked against PyTorch on shapes it was not traced with."""
        from encoder.onnx_model import check, sessions

        sha = self.info.checkpoint_sha256
        path = cached(self.cache_dir, sha) if self.cache_dir and sha else None
        if path is not None and path.is_file():
            try:
                info, graph, decoder = read_export(path)
                onnx = sessions(info, graph, decoder, threads)
                check(self._torch_model(), onnx, self._check_batches())
                self.info.inputs, self.info.outputs = info.inputs, info.outputs
                self.from_cache = True
                return onnx
            except Exception:  # a damaged or stale cache entry: export afresh
                path.unlink(missing_ok=True)
        onnx, graph, decoder = self._fresh_export(threads)
        if path is not None:
            with suppress(OSError):  # a cache folder that cannot be written is skipped
                write_export(path, self.info, graph, decoder)
        return onnx

    def write_serving_export(self, path: Path) -> Path:
        """Export the graphs afresh, check them, and write the serving export to ``path``."""
        _, graph, decoder = self._fresh_export(None)
        write_export(path, self.info, graph, decoder)
        return path

    def _check_batches(self) -> list[dict[str, np.ndarray]]:
        one, short, full = self._calibration_examples()
        return [collate_arrays(b, self.spec) for b in ([one], [short], [one, short, full] * 8)]

    def _fresh_export(self, threads: int | None) -> tuple[OnnxSessions, bytes, bytes]:
        from encoder.onnx_model import check, export_graphs, graph_io, sessions

        _, short, full = self._calibration_examples()
        example = collate_arrays([full, short, full], self.spec)  # traced with padding
        model = self._torch_model()
        self.info.inputs, self.info.outputs = graph_io(model, example)
        graph, decoder = export_graphs(model, example)
        onnx = sessions(self.info, graph, decoder, threads)
        check(model, onnx, self._check_batches())
        return onnx, graph, decoder

    def _choose_precision(self, threads: int | None, repeats: int = 3) -> tuple[str, dict[str, float | str]]:
        """The fastest precision within cosine 0.999 of fp32, if 15 % faster than fp32; with its measurements.

        The time (best of ``repeats``) is that of a batch of 64 light curves (bulk ingest) plus 16
        single ones (requests).
        """
        from encoder.onnx_model import OnnxExportError, min_cosine

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
        onnx, vectors, seconds = self.onnx, {}, {}
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
            measured[precision] = seconds[precision] = min(times)
        best = "fp32"
        for precision in candidates[1:]:
            cos = min_cosine(vectors["fp32"], vectors[precision])
            measured[f"{precision}_min_cosine"] = cos
            if cos >= 0.999 and seconds[precision] <= 0.85 * seconds["fp32"] and seconds[precision] < seconds[best]:
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
    def reconstruct(self, lc: LightCurve, t_rel: np.ndarray, bands: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Decoded magnitude and its 1-sigma at days ``t_rel`` after the first detection, per band.

        Returns arrays (len(bands), len(t_rel)). Needs the query decoder (:attr:`can_reconstruct`).
        """
        if not self.can_reconstruct:
            raise ValueError("only the query decoder evaluates a light curve at arbitrary times")
        batch = collate_arrays([make_example(lc, self.spec)], self.spec)
        t = np.tile(np.asarray(t_rel, dtype=np.float32), (len(bands), 1)).reshape(1, -1)
        b = np.repeat([BAND_INDEX[x] for x in bands], len(t_rel)).reshape(1, -1).astype(np.int64)
        if self.onnx is not None and self.onnx.decoder is not None:
            mean, log_sigma = self.onnx.decode(self.onnx(batch)["z"], t, b)
        else:
            import torch

            from encoder.batching import Batch

            model = self._torch_model()
            with torch.inference_mode():
                z = model(Batch.from_arrays(batch))["z"]
                mean, log_sigma = (v.numpy() for v in model.reconstruct(z, torch.from_numpy(t), torch.from_numpy(b)))
        logflux = mean.reshape(len(bands), len(t_rel)).astype(np.float64)
        mag = -2.5 * logflux  # channel = -0.4 mag for bright points
        sigma = 2.5 * np.exp(log_sigma.reshape(len(bands), len(t_rel)))
        return mag, sigma


def describe(checkpoint: Path, cache_dir: Path | None = None) -> ServingInfo:
    """What a checkpoint file is (version, dims, classes, metrics): from its serving export where one
    is at hand (no PyTorch), else from the checkpoint."""
    export = find_export(Path(checkpoint), cache_dir)
    if export is not None:
        return read_info(export)
    return _info_of(_read_checkpoint(Path(checkpoint)))


def _read_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint, or a CheckpointError that says what to do where PyTorch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CheckpointError(
            f"{path} has no serving export ({beside(path).name}) and PyTorch is not installed: "
            f"pip install 'rtf[train]', or write its export where PyTorch is: python -m encoder.export {path}"
        ) from None
    from encoder.checkpoint import load_checkpoint

    return load_checkpoint(path)


def _info_of(ckpt: Checkpoint) -> ServingInfo:
    """What a serving export of ``ckpt`` records (its graphs' inputs and outputs are set at export)."""
    cfg = ckpt.config
    sha = file_sha256(ckpt.path) if ckpt.path is not None and ckpt.path.is_file() else ""
    return ServingInfo(
        version=ckpt.version,
        dim=cfg.served_dim,
        latent_dim=cfg.latent_dim,
        coarse_classes=list(cfg.coarse_classes),
        fine_classes=list(cfg.fine_classes),
        spec=ckpt.spec,
        scorer=ckpt.scorer,
        inputs=(),
        outputs=(),
        checkpoint_sha256=sha,
        metrics=ckpt.metrics,
        summary=ckpt.summary,
    )


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
