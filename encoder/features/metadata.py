"""Per-detection alert metadata (the seed's 30 channels) and its normalizer.

:func:`metadata_matrix` gives the raw (n, 30) float32 matrix in :data:`META_FIELDS`
order, NaN = missing (survey sentinels -999/-99/-9999, None, non-finite; everything
missing when the light curve carries no metadata, e.g. LSST or BTS photometry).
:class:`MetadataNormalizer` (fitted on training data, stored in the checkpoint) turns
it into model inputs: values normalized and clipped to [-5, 5] with missing → 0, plus a
presence mask.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from encoder.features.normalize import RobustNormalizer
from encoder.lightcurve import META_FIELDS, LightCurve

N_META = len(META_FIELDS)


def metadata_matrix(lc: LightCurve) -> np.ndarray:
    """(n, 30) float32 metadata per detection; NaN = missing."""
    n = len(lc)
    if lc.meta is None:
        return np.full((n, N_META), np.nan, dtype=np.float32)
    if lc.meta.shape != (n, N_META):
        raise ValueError(f"lc.meta has shape {lc.meta.shape}, expected {(n, N_META)}")
    return lc.meta  # LightCurve.build already turned sentinels and inf into NaN


class MetadataNormalizer(RobustNormalizer):
    """Robust per-field normalizer of :func:`metadata_matrix` output (30 columns)."""

    kind = "metadata"

    @classmethod
    def fit(cls, matrices: Iterable[np.ndarray] | np.ndarray, *, auto_log: bool = True, clip: float = 5.0):
        norm = super().fit(matrices, auto_log=auto_log, clip=clip)
        if norm.dim != N_META:
            raise ValueError(f"metadata matrices have {norm.dim} columns, expected {N_META}")
        return norm

    def fields(self) -> dict[str, dict[str, float | bool]]:
        """Per-field parameters by name (for inspection)."""
        return {
            f: {"centre": float(c), "scale": float(s), "log": bool(g)}
            for f, c, s, g in zip(META_FIELDS, self.centre, self.scale, self.log, strict=True)
        }
