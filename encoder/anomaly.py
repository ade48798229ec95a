"""One calibrated anomaly score from three signals.

* **misfit**: how badly the fingerprint's decoder reproduces the observations;
* **isolation**: mean cosine distance to the k nearest fingerprints of a reference
  sample of the training catalogue (latent-space density), stored in the checkpoint;
* **novelty**: what the classifier says: probability mass on rare classes and entropy.

Each signal is standardised with robust statistics of the reference sample; a logistic
model fitted on held-out data (rare classes vs common ones) weighs them into a
probability-like score in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIGNALS = ("log_misfit", "isolation", "rare_logit", "entropy")


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def isolation(vectors: np.ndarray, reference: np.ndarray, k: int = 10, exclude_self: bool = False) -> np.ndarray:
    """Mean cosine distance to the k nearest reference vectors (reference rows L2-normalised)."""
    sims = _normalize(vectors.astype(np.float32)) @ reference.T
    k_eff = min(k + int(exclude_self), sims.shape[1])
    top = -np.partition(-sims, k_eff - 1, axis=1)[:, :k_eff]
    if exclude_self:
        top = np.sort(top, axis=1)[:, :-1]  # drop the best match: the vector itself
    return 1.0 - top.mean(axis=1)


def signals(
    vectors: np.ndarray,
    misfit: np.ndarray,
    fine_probs: np.ndarray | None,
    rare_mask: np.ndarray | None,
    reference: np.ndarray,
    exclude_self: bool = False,
) -> np.ndarray:
    """(n, len(SIGNALS)) raw anomaly signals."""
    n = len(vectors)
    out = np.zeros((n, len(SIGNALS)), dtype=np.float64)
    out[:, 0] = np.log(np.maximum(misfit, 1e-6))
    out[:, 1] = isolation(vectors, reference, exclude_self=exclude_self) if len(reference) else 0.0
    if fine_probs is not None and rare_mask is not None and rare_mask.any():
        p_rare = np.clip(fine_probs[:, rare_mask].sum(1), 1e-6, 1 - 1e-6)
        out[:, 2] = np.log(p_rare / (1 - p_rare))
        out[:, 3] = -(fine_probs * np.log(np.clip(fine_probs, 1e-12, 1))).sum(1)
    return out


@dataclass
class AnomalyScorer:
    reference: np.ndarray  # (m, d) float32, L2-normalised reference fingerprints
    centre: np.ndarray  # (len(SIGNALS),)
    scale: np.ndarray
    weights: np.ndarray  # logistic weights per signal
    bias: float
    rare_mask: np.ndarray | None  # (n_fine,) bool

    def components(self, vectors: np.ndarray, misfit: np.ndarray, fine_probs: np.ndarray | None) -> np.ndarray:
        raw = signals(vectors, misfit, fine_probs, self.rare_mask, self.reference)
        return (raw - self.centre) / self.scale

    def score(self, vectors: np.ndarray, misfit: np.ndarray, fine_probs: np.ndarray | None) -> np.ndarray:
        z = np.clip(self.components(vectors, misfit, fine_probs), -8, 8)
        return 1.0 / (1.0 + np.exp(-(z @ self.weights + self.bias)))

    def to_dict(self) -> dict:
        return {
            "reference": self.reference.astype(np.float16),
            "centre": self.centre.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": float(self.bias),
            "rare_mask": None if self.rare_mask is None else self.rare_mask.tolist(),
            "signals": list(SIGNALS),
        }

    @classmethod
    def from_dict(cls, d: dict) -> AnomalyScorer:
        return cls(
            reference=np.asarray(d["reference"]).astype(np.float32),
            centre=np.asarray(d["centre"]),
            scale=np.asarray(d["scale"]),
            weights=np.asarray(d["weights"]),
            bias=float(d["bias"]),
            rare_mask=None if d["rare_mask"] is None else np.asarray(d["rare_mask"], dtype=bool),
        )

    @classmethod
    def unfitted(cls, rare_mask: np.ndarray | None) -> AnomalyScorer:
        """Misfit only, until calibration data exist."""
        k = len(SIGNALS)
        w = np.zeros(k)
        w[0] = 1.0
        return cls(np.zeros((0, 1), np.float32), np.zeros(k), np.ones(k), w, 0.0, rare_mask)
