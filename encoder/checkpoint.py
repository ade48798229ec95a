"""One self-describing checkpoint file: weights, model config, feature spec with its
fitted normalisers, class names, anomaly calibration, training summary and metrics.

Loaded with ``torch.load(weights_only=True)``: only tensors and plain containers, no
pickled code, so a checkpoint from elsewhere cannot run code on load.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from encoder.anomaly import AnomalyScorer
from encoder.batching import FeatureSpec

if TYPE_CHECKING:  # PyTorch is imported by the functions that read and write checkpoints only
    from encoder.model.rtf import ModelConfig, RTFModel

FORMAT = "rtf-checkpoint"
FORMAT_VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "rtf-default.pt"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt or of an incompatible format."""


@dataclass
class Checkpoint:
    model: RTFModel
    spec: FeatureSpec
    scorer: AnomalyScorer
    version: str
    summary: dict = field(default_factory=dict)  # training data, command, timings
    metrics: dict = field(default_factory=dict)
    path: Path | None = None  # the file it was read from

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg


def save_checkpoint(
    path: str | Path,
    ckpt_model: RTFModel,
    spec: FeatureSpec,
    scorer: AnomalyScorer,
    *,
    summary: dict | None = None,
    metrics: dict | None = None,
) -> str:
    """Write atomically; returns the model version (a digest of weights and config)."""
    import torch

    state = {k: v.detach().cpu().clone() for k, v in ckpt_model.state_dict().items()}
    digest = hashlib.sha256()
    for k in sorted(state):
        digest.update(k.encode())
        digest.update(state[k].float().numpy().tobytes())
    digest.update(repr(ckpt_model.cfg.to_dict()).encode())
    version = f"rtf-{ckpt_model.cfg.mode}{ckpt_model.cfg.latent_dim}-{digest.hexdigest()[:10]}"
    anomaly = scorer.to_dict()
    anomaly["reference"] = torch.from_numpy(anomaly["reference"])  # a tensor, not a list of floats
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": version,
        "config": ckpt_model.cfg.to_dict(),
        "state_dict": state,
        "feature_spec": spec.to_dict(),
        "anomaly": anomaly,
        "summary": _plain(summary or {}),
        "metrics": _plain(metrics or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    buf = io.BytesIO()
    torch.save(payload, buf)
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return version


def _plain(d: dict) -> dict:
    """JSON-plain copy (numpy scalars, versions, paths become numbers or strings): safe to load."""
    return json.loads(json.dumps(d, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def load_checkpoint(path: str | Path | None = None) -> Checkpoint:
    import torch

    from encoder.model.rtf import ModelConfig, RTFModel

    path = Path(path) if path else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an RTF checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload.get('format_version')} but this RTF reads {FORMAT_VERSION}"
        )
    try:
        cfg = ModelConfig.from_dict(payload["config"])
        cfg.image_weights = None  # the trained weights below include the backbone
        model = RTFModel(cfg)
        model.load_state_dict(payload["state_dict"])
        spec = FeatureSpec.from_dict(payload["feature_spec"])
        scorer = AnomalyScorer.from_dict(payload["anomaly"])
        if len(scorer.reference) and scorer.reference.shape[1] != cfg.served_dim:
            raise ValueError(f"anomaly reference of {scorer.reference.shape[1]} dims, fingerprints of {cfg.served_dim}")
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: incompatible checkpoint ({type(exc).__name__}: {exc})") from None
    model.eval()
    return Checkpoint(
        model, spec, scorer, payload["version"], payload.get("summary", {}), payload.get("metrics", {}), path
    )
