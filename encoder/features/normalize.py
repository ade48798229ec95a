"""Robust per-column normalization shared by alert metadata and object features.

One implementation, :class:`RobustNormalizer`, fitted on training data and stored in the
checkpoint as JSON (``to_dict`` / ``from_dict``). Per column it keeps:

- ``log``: whether values go through a signed ``log1p`` first (chosen at fit time for
  heavy-tailed columns: counts, chi2, distances);
- ``centre`` / ``scale``: median and IQR/1.349 (a sigma-equivalent) of the (transformed)
  values, ignoring NaN; a column with zero IQR falls back to the standard deviation of
  its 1-99 % clipped values, then to 1; a column never seen (all NaN) gets centre 0,
  scale 1.

``transform`` returns ``(values, mask)``: values normalized, clipped to ``[-clip, clip]``
with missing entries set to 0, and a float32 mask with 1 where a value was present.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

#: Rows kept for fitting; larger training sets are subsampled with a fixed stride.
MAX_FIT_ROWS = 2_000_000
#: A column is log-transformed when its 1-99 % range spans this many IQRs and the signed
#: log1p shrinks that ratio by at least a factor of 2.
HEAVY_TAIL_RATIO = 12.0


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _tail_ratio(col: np.ndarray) -> float:
    p1, q1, q3, p99 = np.percentile(col, [1, 25, 75, 99])
    iqr = q3 - q1
    if iqr <= 0:
        return np.inf if p99 > p1 else 0.0
    return float((p99 - p1) / iqr)


def _robust_centre_scale(col: np.ndarray) -> tuple[float, float]:
    q1, med, q3 = np.percentile(col, [25, 50, 75])
    scale = (q3 - q1) / 1.349
    if not scale > 1e-12:
        lo, hi = np.percentile(col, [1, 99])
        scale = float(np.std(np.clip(col, lo, hi)))
    if not scale > 1e-12:
        scale = 1.0
    return float(med), float(scale)


class RobustNormalizer:
    """Per-column robust centre/scale with optional signed log1p, NaN-aware."""

    kind: ClassVar[str] = "robust"

    def __init__(self, centre: np.ndarray, scale: np.ndarray, log: np.ndarray, clip: float = 5.0):
        self.centre = np.asarray(centre, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.log = np.asarray(log, dtype=bool)
        self.clip = float(clip)
        if not (self.centre.shape == self.scale.shape == self.log.shape and self.centre.ndim == 1):
            raise ValueError("centre, scale and log must be 1-d arrays of one length")
        if not (np.all(np.isfinite(self.centre)) and np.all(np.isfinite(self.scale)) and np.all(self.scale > 0)):
            raise ValueError("centre must be finite and scale finite and > 0")

    @property
    def dim(self) -> int:
        return len(self.centre)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, matrices: Iterable[np.ndarray] | np.ndarray, *, auto_log: bool = True, clip: float = 5.0):
        """Fit on one (N, D) matrix or an iterable of (n_i, D) matrices (NaN = missing)."""
        if isinstance(matrices, np.ndarray):
            matrices = [matrices]
        blocks = [np.asarray(m, dtype=np.float64) for m in matrices]
        blocks = [b.reshape(-1, b.shape[-1]) if b.ndim != 2 else b for b in blocks if b.size]
        if not blocks:
            raise ValueError("cannot fit a normalizer on no data")
        dims = {b.shape[1] for b in blocks}
        if len(dims) != 1:
            raise ValueError(f"matrices disagree on the number of columns: {sorted(dims)}")
        x = np.concatenate(blocks)
        if len(x) > MAX_FIT_ROWS:
            x = x[:: int(np.ceil(len(x) / MAX_FIT_ROWS))]
        x[~np.isfinite(x)] = np.nan
        d = x.shape[1]
        centre, scale, log = np.zeros(d), np.ones(d), np.zeros(d, dtype=bool)
        for j in range(d):
            col = x[:, j]
            col = col[~np.isnan(col)]
            if col.size == 0:
                continue
            if auto_log and col.size >= 10:
                raw = _tail_ratio(col)
                if raw > HEAVY_TAIL_RATIO and _tail_ratio(signed_log1p(col)) * 2 < raw:
                    log[j] = True
                    col = signed_log1p(col)
            centre[j], scale[j] = _robust_centre_scale(col)
        return cls(centre, scale, log, clip)

    # ------------------------------------------------------------------ use
    def transform(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(values, mask)``, both float32 of the input's shape (last axis = columns)."""
        x = np.array(matrix, dtype=np.float64)  # a copy, updated in place below
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} columns, got shape {x.shape}")
        present = np.isfinite(x)
        x[~present] = 0.0
        if self.log.any():
            x[..., self.log] = signed_log1p(x[..., self.log])
        x -= self.centre
        x /= self.scale
        np.minimum(np.maximum(x, -self.clip, out=x), self.clip, out=x)
        x[~present] = 0.0
        return x.astype(np.float32), present.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "centre": [float(v) for v in self.centre],
            "scale": [float(v) for v in self.scale],
            "log": [bool(v) for v in self.log],
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        kind = d.get("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"a {kind!r} normalizer cannot load as {cls.kind!r}")
        return cls(
            np.array(d["centre"], dtype=np.float64),
            np.array(d["scale"], dtype=np.float64),
            np.array(d["log"], dtype=bool),
            float(d.get("clip", 5.0)),
        )

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and np.array_equal(self.centre, other.centre)
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.log, other.log)
            and self.clip == other.clip
        )

    __hash__ = None  # type: ignore[assignment]  # unhashable: typeshed types object.__hash__ as a method

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, log_columns={int(self.log.sum())}, clip={self.clip})"
