"""A checkpoint's serving export: what inference needs, for ONNX Runtime, in one zip file.

``<checkpoint stem>.onnx.zip`` holds the inference graph (fingerprint, misfit, class probabilities,
latent), the query decoder's graph (the decoded light curve of a plot), and ``info.json`` (version,
classes, feature spec with its fitted normalisers, anomaly calibration, metrics) with the anomaly
reference sample beside it. Loading it needs neither PyTorch nor the checkpoint: a service that
finds it serves from ONNX Runtime and NumPy alone (a few hundred MB lighter than with libtorch).

It is written by :mod:`encoder.onnx_model` (which needs PyTorch) after the graphs were checked
against the PyTorch model: beside the checkpoint by ``python -m encoder.export CHECKPOINT``
(the bundled checkpoint ships with one), or into the cache folder at the first start with
``precision`` ``onnx`` / ``auto``. A bundle names the checkpoint file it was made from (its SHA-256),
so a retrained checkpoint never runs with the graphs of the old one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from encoder.anomaly import AnomalyScorer
from encoder.batching import FeatureSpec

SUFFIX = ".onnx.zip"
FORMAT = "rtf-serving"
FORMAT_VERSION = 1
SMALL_BATCH_TOKENS = 2048  # batches up to this many (rows x length) run on one thread


class ServingExportError(RuntimeError):
    """A serving export that is missing, damaged, or of another format."""


@dataclass
class ServingInfo:
    """What inference needs to know of a model besides its graphs."""

    version: str
    dim: int  # length of the served fingerprints
    coarse_classes: list[str]
    fine_classes: list[str]
    spec: FeatureSpec
    scorer: AnomalyScorer
    inputs: tuple[str, ...]  # the inference graph's inputs (batch fields) ...
    outputs: tuple[str, ...]  # ... and outputs
    checkpoint_sha256: str = ""  # the checkpoint file the graphs were exported from
    metrics: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    #: the served fingerprint's first ``latent_dim`` numbers are the model's own fingerprint (the rest: the
    #: class-aware metric's probabilities, encoder.model.rtf.ModelConfig.posterior_weight); 0: all of it
    latent_dim: int = 0

    def to_json(self) -> str:
        d = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "dim": self.dim,
            "latent_dim": self.latent_dim or self.dim,
            "coarse_classes": self.coarse_classes,
            "fine_classes": self.fine_classes,
            "spec": self.spec.to_dict(),
            "scorer": {k: v for k, v in self.scorer.to_dict().items() if k != "reference"},
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "checkpoint_sha256": self.checkpoint_sha256,
            "metrics": self.metrics,
            "summary": self.summary,
        }
        return json.dumps(d, default=_plain)

    @classmethod
    def from_json(cls, text: str, reference: np.ndarray) -> ServingInfo:
        d = json.loads(text)
        if d.get("format") != FORMAT or d.get("format_version") != FORMAT_VERSION:
            raise ServingExportError(f"not an {FORMAT} v{FORMAT_VERSION} export")
        return cls(
            version=d["version"],
            dim=int(d["dim"]),
            latent_dim=int(d.get("latent_dim", d["dim"])),
            coarse_classes=list(d["coarse_classes"]),
            fine_classes=list(d["fine_classes"]),
            spec=FeatureSpec.from_dict(d["spec"]),
            scorer=AnomalyScorer.from_dict(d["scorer"] | {"reference": reference}),
            inputs=tuple(d["inputs"]),
            outputs=tuple(d["outputs"]),
            checkpoint_sha256=d.get("checkpoint_sha256", ""),
            metrics=d.get("metrics", {}),
            summary=d.get("summary", {}),
        )


def _plain(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


# ---------------------------------------------------------------------------- the file
def write_export(path: Path, info: ServingInfo, graph: bytes, decoder: bytes | None) -> None:
    """Write atomically (a temporary file, then a rename: concurrent writers each leave a whole file)."""
    buf = io.BytesIO()
    reference = io.BytesIO()
    np.save(reference, info.scorer.reference.astype(np.float16), allow_pickle=False)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("info.json", info.to_json())
        z.writestr("reference.npy", reference.getvalue())
        z.writestr("inference.onnx", graph)
        if decoder is not None:
            z.writestr("decoder.onnx", decoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_export(path: Path) -> tuple[ServingInfo, bytes, bytes | None]:
    """(info, inference graph, decoder graph or None)."""
    with _opened(path) as z:
        names = set(z.namelist())
        return _info(z), z.read("inference.onnx"), z.read("decoder.onnx") if "decoder.onnx" in names else None


def read_info(path: Path) -> ServingInfo:
    """The info of an export, without its graphs."""
    with _opened(path) as z:
        return _info(z)


def _info(z: zipfile.ZipFile) -> ServingInfo:
    reference = np.load(io.BytesIO(z.read("reference.npy")), allow_pickle=False)
    return ServingInfo.from_json(z.read("info.json").decode(), reference)


@contextmanager
def _opened(path: Path) -> Iterator[zipfile.ZipFile]:
    try:
        with zipfile.ZipFile(path) as z:
            yield z
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ServingExportError(f"{path}: not a readable serving export ({type(exc).__name__}: {exc})") from None


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def beside(checkpoint: Path) -> Path:
    """Where ``python -m encoder.export`` puts a checkpoint's export: next to it."""
    return checkpoint.with_name(checkpoint.name.removesuffix(".pt") + SUFFIX)


def cached(cache_dir: Path, sha256: str) -> Path:
    """Where a first start puts the export of the checkpoint file with this digest."""
    return Path(cache_dir) / f"{sha256[:24]}{SUFFIX}"


def find_export(checkpoint: Path, cache_dir: Path | None) -> Path | None:
    """The serving export of this checkpoint file, beside it or in the cache, or None. An export
    whose recorded digest is not this file's (a retrained checkpoint) is not it."""
    if not checkpoint.is_file():
        return None
    sha = file_sha256(checkpoint)
    for path in (beside(checkpoint), cached(cache_dir, sha) if cache_dir else None):
        if path is not None and path.is_file() and _recorded_sha(path) == sha:
            return path
    return None


def _recorded_sha(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("info.json")).get("checkpoint_sha256")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


# ---------------------------------------------------------------------------- running it
def available_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OnnxSessions:
    """The graphs in ONNX Runtime. Thread-safe (sessions run concurrently)."""

    def __init__(self, info: ServingInfo, graph: bytes, decoder: bytes | None, threads: int | None = None):
        self.inputs, self.outputs = info.inputs, info.outputs
        self.threads = threads or available_threads()
        # two sessions of the graph: one thread for small batches (single alerts: waking a second core
        # costs more than it saves, measured 0.42 vs 0.58 ms p50), all threads for large ones
        self.small = _session(graph, 1)
        self.large = _session(graph, self.threads) if self.threads > 1 else self.small
        self.decoder = _session(decoder, 1) if decoder is not None else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {name: batch[name] for name in self.inputs}
        rows, length = batch["phot"].shape[:2]
        session = self.small if rows * length <= SMALL_BATCH_TOKENS else self.large
        return dict(zip(self.outputs, session.run(None, feeds), strict=True))

    def decode(self, z: np.ndarray, t: np.ndarray, band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The query decoder: log-flux and log-sigma at (t, band) for latents ``z``."""
        if self.decoder is None:
            raise ServingExportError("this export has no decoder graph")
        mean, log_sigma = self.decoder.run(None, {"z": z, "t": t, "band": band})
        return mean, log_sigma


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
        raise ServingExportError(f"ONNX Runtime cannot load the graph: {exc}") from exc
