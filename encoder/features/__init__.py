"""Feature building: a :class:`~encoder.lightcurve.LightCurve` → model inputs.

Per detection: :func:`photometry_channels` (n, 10) and :func:`metadata_matrix` (n, 30,
normalized by a :class:`MetadataNormalizer`). Per object: :func:`stamp_tensor`
(3, 63, 63) and :func:`object_features` = the fast ``light-curve`` physics features
followed by the multi-band GP features (:data:`OBJECT_FEATURE_NAMES`), normalized by a
:class:`FeatureNormalizer`. Both normalizers share one implementation
(:class:`~encoder.features.normalize.RobustNormalizer`) and serialize to JSON dicts.
"""

from __future__ import annotations

import numpy as np

from encoder.features.gp import GP_FEATURE_NAMES, gp_features
from encoder.features.metadata import MetadataNormalizer, metadata_matrix
from encoder.features.normalize import RobustNormalizer
from encoder.features.photometry import PHOT_CHANNELS, photometry_channels
from encoder.features.physics import PHYSICS_FEATURE_NAMES, physics_features
from encoder.features.stamps import STAMP_SIZE, decode_stamp, stamp_tensor
from encoder.lightcurve import LightCurve

OBJECT_FEATURE_NAMES: tuple[str, ...] = PHYSICS_FEATURE_NAMES + GP_FEATURE_NAMES
N_OBJECT_FEATURES = len(OBJECT_FEATURE_NAMES)


def object_features(
    lc: LightCurve, use_gp: bool = True, mags: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """(len(OBJECT_FEATURE_NAMES),) float32: physics then GP features (GP part NaN if not use_gp).

    ``mags``: the light curve's ``luptitude(flux, flux_err)`` when the caller has it already.
    """
    gp = gp_features(lc) if use_gp else np.full(len(GP_FEATURE_NAMES), np.nan, dtype=np.float32)
    return np.concatenate([physics_features(lc, mags), gp]).astype(np.float32)


class FeatureNormalizer(RobustNormalizer):
    """Robust per-column normalizer of :func:`object_features` matrices (N, D)."""

    kind = "object_features"


__all__ = [
    "GP_FEATURE_NAMES",
    "N_OBJECT_FEATURES",
    "OBJECT_FEATURE_NAMES",
    "PHOT_CHANNELS",
    "PHYSICS_FEATURE_NAMES",
    "STAMP_SIZE",
    "FeatureNormalizer",
    "MetadataNormalizer",
    "decode_stamp",
    "gp_features",
    "metadata_matrix",
    "object_features",
    "photometry_channels",
    "physics_features",
    "stamp_tensor",
]
