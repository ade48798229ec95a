"""Export of the PyTorch model to ONNX Runtime: the serving export (:mod:`encoder.serving`).

On a small CPU the PyTorch model spends most of its time dispatching small operators; ONNX
Runtime fuses them and runs the same computation about twice as fast. The export
(``torch.onnx.export(dynamo=True)``, batch and length dynamic) takes ~15 s, so it is kept: in the
cache folder (keyed by the checkpoint file's digest), or beside the checkpoint
(``python -m encoder.export``). :func:`check` compares the graph with the PyTorch model on batches
of other shapes than the one it was traced with before anything is served from it.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from torch import nn

from encoder.batching import Batch
from encoder.model.rtf import RTFModel, inference_outputs, run_torch
from encoder.serving import OnnxSessions, ServingExportError, ServingInfo

BATCH_INPUTS = ("phot", "t_rel", "band", "pad_mask", "meta", "stamps", "has_stamp", "objfeat")
SEQUENCE_INPUTS = ("phot", "t_rel", "band", "pad_mask", "meta")  # (batch, length, ...)


class OnnxExportError(RuntimeError):
    """The model could not be exported, or its export does not compute what the model does."""


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine similarity between matching rows of ``a`` and ``b``."""
    return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)))


class _Inference(nn.Module):
    """The model with tensors in and the inference outputs out (what ONNX needs)."""

    def __init__(self, model: RTFModel, inputs: tuple[str, ...]):
        super().__init__()
        self.model, self.inputs = model, inputs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(inference_outputs(self.model, Batch(**dict(zip(self.inputs, tensors, strict=True)))).values())


class _Decoder(nn.Module):
    def __init__(self, model: RTFModel):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, t: torch.Tensor, band: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.reconstruct(z, t, band)


def graph_io(model: RTFModel, example: dict[str, np.ndarray]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The inference graph's inputs (the batch fields the model reads) and outputs."""
    inputs = tuple(name for name in BATCH_INPUTS if name in example)
    heads = [f"{h}_probs" for h in ("coarse", "fine") if getattr(model, f"{h}_head") is not None]
    return inputs, ("fingerprint", "misfit", *heads, "z")


def export_graphs(model: RTFModel, example: dict[str, np.ndarray]) -> tuple[bytes, bytes]:
    """The serialised ONNX graphs of ``model``'s inference pass (batch and length dynamic) and of
    its query decoder (latent batch and query length dynamic)."""
    if model.cfg.decoder != "query":
        raise OnnxExportError("only the query decoder is exported (the position decoder's length is static)")
    inputs, outputs = graph_io(model, example)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=model.cfg.max_len)
    shapes = tuple({0: batch, 1: length} if name in SEQUENCE_INPUTS else {0: batch} for name in inputs)
    tensors = tuple(torch.from_numpy(example[n]).clone() for n in inputs)
    graph = _export(_Inference(model, inputs), tensors, list(inputs), list(outputs), {"tensors": shapes})
    with torch.inference_mode():
        z = model(Batch.from_arrays(example))["z"][:2].clone()  # 2 rows: torch.export specialises a size of 1
    rows, queries = torch.export.Dim("rows"), torch.export.Dim("queries")
    query = (z, torch.linspace(0, 50, 16).reshape(2, 8), torch.zeros(2, 8, dtype=torch.long))
    decoder = _export(
        _Decoder(model),
        query,
        ["z", "t", "band"],
        ["mean", "log_sigma"],
        {"z": {0: rows}, "t": {0: rows, 1: queries}, "band": {0: rows, 1: queries}},
    )
    return graph, decoder


def _export(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str], shapes: dict) -> bytes:
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [log.level for log in quiet]
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():  # the exportable layers
            warnings.simplefilter("ignore")
            for log in quiet:
                log.setLevel(logging.ERROR)
            program = torch.onnx.export(
                module.eval(),
                args,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=shapes,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
        if program is None:  # only the TorchScript exporter (dynamo=False) returns None
            raise OnnxExportError("the exporter returned no ONNX program")
        return program.model_proto.SerializeToString()
    except Exception as exc:  # the exporter raises many types; all mean the same here
        raise OnnxExportError(f"ONNX export failed: {type(exc).__name__}: {str(exc)[:500]}") from exc
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)


def sessions(info: ServingInfo, graph: bytes, decoder: bytes | None, threads: int | None) -> OnnxSessions:
    try:
        return OnnxSessions(info, graph, decoder, threads)
    except ServingExportError as exc:
        raise OnnxExportError(str(exc)) from None


@torch.inference_mode()
def check(model: RTFModel, onnx: OnnxSessions, batches: list[dict[str, np.ndarray]], threshold: float = 0.999) -> float:
    """The smallest fingerprint cosine to the PyTorch model over ``batches``; raises
    :class:`OnnxExportError` where a fingerprint, a misfit, a probability or the decoder disagrees."""
    worst = 1.0
    for batch in batches:
        want = run_torch(model, Batch.from_arrays(batch))
        shape = tuple(batch["phot"].shape[:2])
        try:
            got = onnx(batch)
        except Exception as exc:  # onnxruntime's errors (wrong shapes traced as constants, ...)
            raise OnnxExportError(f"ONNX Runtime failed on a batch of shape {shape}: {exc}") from exc
        cos = min_cosine(want["fingerprint"], got["fingerprint"])
        worst = min(worst, cos)
        if cos < threshold:
            raise OnnxExportError(f"fingerprint cosine {cos:.5f} < {threshold} on a batch of shape {shape}")
        if not np.allclose(got["misfit"], want["misfit"], rtol=1e-3, atol=1e-4):
            raise OnnxExportError(f"misfit differs from the PyTorch model on a batch of shape {shape}")
        for key in onnx.outputs[2:]:
            if not np.allclose(got[key], want[key], atol=1e-3):
                raise OnnxExportError(f"{key} differ from the PyTorch model on a batch of shape {shape}")
        if onnx.decoder is not None:
            z, t = want["z"][:2], np.tile(np.linspace(-5, 80, 11, dtype=np.float32), (min(2, len(want["z"])), 1))
            band = np.ones_like(t, dtype=np.int64)
            mean, log_sigma = (
                v.numpy() for v in model.reconstruct(torch.from_numpy(z), torch.from_numpy(t), torch.from_numpy(band))
            )
            got_mean, got_sigma = onnx.decode(z, t, band)
            if not (np.allclose(got_mean, mean, atol=1e-3) and np.allclose(got_sigma, log_sigma, atol=1e-3)):
                raise OnnxExportError(f"the decoder differs from the PyTorch model on a batch of shape {shape}")
    return worst
