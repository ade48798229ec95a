"""The model's inference pass as an ONNX Runtime session, exported from the PyTorch model.

On a small CPU the PyTorch model spends most of its time dispatching small operators; ONNX
Runtime fuses them and runs the same computation about twice as fast. The export
(``torch.onnx.export(dynamo=True)``, batch and length dynamic) takes ~15 s, so the graph is kept
in a cache folder under the model's version (a digest of weights and config) and the library
versions; a checkpoint stays one file. :meth:`OnnxModel.check` compares the graph with the PyTorch
model on batches of other shapes than the one it was traced with before anything is served from it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from encoder.batching import Batch
from encoder.model.rtf import RTFModel

BATCH_INPUTS = ("phot", "t_rel", "band", "pad_mask", "meta", "stamps", "has_stamp", "objfeat")
SEQUENCE_INPUTS = ("phot", "t_rel", "band", "pad_mask", "meta")  # (batch, length, ...)
SMALL_BATCH_TOKENS = 2048  # batches up to this many (rows x length) run on one thread


class OnnxExportError(RuntimeError):
    """The model could not be exported, or its export does not compute what the model does."""


def inference_outputs(model: RTFModel, batch: Batch) -> dict[str, torch.Tensor]:
    """What inference serves of one batch: fingerprint, misfit and class probabilities per head
    (in this order: the exported graph's outputs). With ``posterior_weight`` w > 0 the served
    fingerprint is the model's at unit length with w x its fine-class probabilities appended."""
    out = model(batch)
    res = {"fingerprint": out["fingerprint"], "misfit": model.misfit(out["z"], batch)}
    for head in ("coarse", "fine"):
        if f"{head}_logits" in out:
            res[f"{head}_probs"] = torch.softmax(out[f"{head}_logits"].float(), -1)
    if model.cfg.posterior_weight > 0:
        unit = F.normalize(out["fingerprint"].float(), dim=-1)
        res["fingerprint"] = torch.cat([unit, model.cfg.posterior_weight * res["fine_probs"]], dim=-1)
    return res


def run_torch(model: RTFModel, batch: Batch) -> dict[str, np.ndarray]:
    """The inference outputs of one batch from the PyTorch model, as float32 arrays."""
    return {k: v.float().numpy() for k, v in inference_outputs(model, batch).items()}


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine similarity between matching rows of ``a`` and ``b``."""
    return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)))


class _Exported(nn.Module):
    """The model with tensors in and the inference outputs out (what ONNX needs)."""

    def __init__(self, model: RTFModel, inputs: tuple[str, ...]):
        super().__init__()
        self.model, self.inputs = model, inputs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(inference_outputs(self.model, Batch(**dict(zip(self.inputs, tensors, strict=True)))).values())


def export_onnx(model: RTFModel, example: Batch, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> bytes:
    """The serialised ONNX graph of ``model``'s inference pass; batch and length stay dynamic."""
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=model.cfg.max_len)
    shapes = tuple({0: batch, 1: length} if name in SEQUENCE_INPUTS else {0: batch} for name in inputs)
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [log.level for log in quiet]
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():  # the exportable layers
            warnings.simplefilter("ignore")
            for log in quiet:
                log.setLevel(logging.ERROR)
            program = torch.onnx.export(
                _Exported(model, inputs).eval(), tuple(getattr(example, n).clone() for n in inputs),
                input_names=list(inputs), output_names=list(outputs), dynamic_shapes={"tensors": shapes},
                dynamo=True, optimize=True, verbose=False,
            )  # fmt: skip
        return program.model_proto.SerializeToString()
    except Exception as exc:  # the exporter raises many types; all mean the same here
        raise OnnxExportError(f"ONNX export failed: {type(exc).__name__}: {str(exc)[:500]}") from exc
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)


class OnnxModel:
    """``model``'s inference pass in ONNX Runtime. Thread-safe (sessions run concurrently).

    ``cache_dir``: where exported graphs are kept (``None``: export every time).
    """

    def __init__(self, model: RTFModel, example: Batch, *, version: str, threads: int | None = None,
                 cache_dir: Path | None = None):  # fmt: skip
        if model.cfg.decoder != "query":
            raise OnnxExportError("only the query decoder is exported (the position decoder's length is static)")
        self.inputs = tuple(name for name in BATCH_INPUTS if getattr(example, name) is not None)
        heads = [f"{h}_probs" for h in ("coarse", "fine") if getattr(model, f"{h}_head") is not None]
        self.outputs = ("fingerprint", "misfit", *heads)
        key = f"{version}-{'-'.join(self.inputs)}-torch{torch.__version__}-ort{ort.__version__}.onnx"
        self.path = Path(cache_dir) / key if cache_dir else None
        self.threads = threads or torch.get_num_threads()
        self.from_cache = False
        if self.path and self.path.is_file():
            try:
                self._open(self.path.read_bytes())
                self.from_cache = True
            except (OSError, OnnxExportError):
                pass  # a truncated or foreign file: export again
        if not self.from_cache:
            graph = export_onnx(model, example, self.inputs, self.outputs)
            self._open(graph)
            if self.path:
                _write_atomic(self.path, graph)

    def _open(self, graph: bytes) -> None:
        """Two sessions of the graph: one thread for small batches (single alerts: waking a second core
        costs more than it saves, measured 0.42 vs 0.58 ms p50), all threads for large ones."""
        self.small = self._session(graph, 1)
        self.large = self._session(graph, self.threads) if self.threads > 1 else self.small

    @staticmethod
    def _session(graph: bytes, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # no busy-waiting between runs: the feature code needs the cores in between (measured: spinning
        # threads cost ~20 % end to end on 2 cores)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise OnnxExportError(f"ONNX Runtime cannot load the graph: {exc}") from exc

    def __call__(self, batch: Batch) -> dict[str, np.ndarray]:
        feeds = {name: getattr(batch, name).numpy() for name in self.inputs}
        session = self.small if batch.phot.shape[0] * batch.phot.shape[1] <= SMALL_BATCH_TOKENS else self.large
        return dict(zip(self.outputs, session.run(None, feeds), strict=True))

    @torch.inference_mode()
    def check(self, model: RTFModel, batches: list[Batch], threshold: float = 0.999) -> float:
        """The smallest fingerprint cosine to the PyTorch model over ``batches``; raises
        :class:`OnnxExportError` where a fingerprint, a misfit or a probability disagrees."""
        worst = 1.0
        for batch in batches:
            want = run_torch(model, batch)
            try:
                got = self(batch)
            except Exception as exc:  # onnxruntime's errors (wrong shapes traced as constants, ...)
                raise OnnxExportError(
                    f"ONNX Runtime failed on a batch of shape {tuple(batch.phot.shape)}: {exc}"
                ) from exc
            cos = min_cosine(want["fingerprint"], got["fingerprint"])
            worst = min(worst, cos)
            shape = tuple(batch.phot.shape[:2])
            if cos < threshold:
                raise OnnxExportError(f"fingerprint cosine {cos:.5f} < {threshold} on a batch of shape {shape}")
            if not np.allclose(got["misfit"], want["misfit"], rtol=1e-3, atol=1e-4):
                raise OnnxExportError(f"misfit differs from the PyTorch model on a batch of shape {shape}")
            for key in self.outputs[2:]:
                if not np.allclose(got[key], want[key], atol=1e-3):
                    raise OnnxExportError(f"{key} differ from the PyTorch model on a batch of shape {shape}")
        return worst


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename (concurrent writers each leave a whole file);
    a cache folder that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
