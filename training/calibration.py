"""Calibrate the anomaly scorer after training (see :mod:`encoder.anomaly`).

The reference sample is drawn from training fingerprints; centre/scale and the logistic
weights are fitted on the held-out split, rare classes (:data:`RARE_FINE_CLASSES`) against
the common ones, so the score is not fitted on data the classifier has memorised.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from encoder.anomaly import SIGNALS, AnomalyScorer, signals
from encoder.batching import IGNORE, Example
from encoder.inference import Encoder
from encoder.taxonomy import RARE_FINE_CLASSES

REFERENCE_SIZE = 2000


def fit_anomaly_scorer(
    encoder: Encoder,
    train_ex: list[Example],
    val_ex: list[Example],
    seed: int = 0,
    reference_size: int = REFERENCE_SIZE,
) -> AnomalyScorer:
    rng = np.random.default_rng(seed)
    fine = encoder.fine_classes
    rare_mask = np.array([c in RARE_FINE_CLASSES for c in fine], dtype=bool) if fine else None
    pick = rng.choice(len(train_ex), size=min(reference_size, len(train_ex)), replace=False)
    ref = encoder.encode_examples([train_ex[i] for i in pick]).vectors
    reference = (ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    held = val_ex if len(val_ex) >= 50 else train_ex
    enc = encoder.encode_examples(held)
    raw = signals(enc.vectors, enc.misfit, enc.fine_probs, rare_mask, reference)
    centre = np.median(raw, axis=0)
    q75, q25 = np.percentile(raw, [75, 25], axis=0)
    scale = np.where(q75 - q25 > 1e-9, (q75 - q25) / 1.349, 1.0)
    z = np.clip((raw - centre) / scale, -8, 8)

    y_fine = np.array([ex.y_fine for ex in held])
    known = y_fine != IGNORE
    weights, bias = np.ones(len(SIGNALS)) / len(SIGNALS), 0.0
    if fine and known.any():
        is_rare = np.array([fine[y] in RARE_FINE_CLASSES for y in y_fine[known]])
        if 5 <= is_rare.sum() <= len(is_rare) - 5:
            lr = LogisticRegression(class_weight="balanced", C=0.5, max_iter=1000).fit(z[known], is_rare)
            weights, bias = lr.coef_[0], float(lr.intercept_[0])
    return AnomalyScorer(reference, centre, scale, weights, bias, rare_mask)
