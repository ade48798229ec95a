"""The feature baseline: ``light-curve`` physics features (optionally + the GP features),
classifiers cross-validated on the evaluation set, an IsolationForest, and parametric
reconstructions (constant and Bazin per band) for the physical-unit reconstruction table.
"""

from __future__ import annotations

import warnings

import light_curve as lcf
import numpy as np
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from encoder.features import object_features, physics_features
from encoder.lightcurve import NJY_ZERO_POINT, LightCurve

_CACHE: dict[tuple, np.ndarray] = {}
RF_TREES = 200


def _key(lc: LightCurve, use_gp: bool) -> tuple:
    return (lc.object_id, len(lc), float(lc.time[-1]), len(lc.ul_time), use_gp)


def feature_matrix(lcs: list[LightCurve], use_gp: bool = False, desc: str = "features") -> np.ndarray:
    """(n, F) raw features (NaN where undefined), cached in memory per light-curve view."""
    rows = []
    for lc in tqdm(lcs, desc=desc, unit="lc", leave=False, disable=len(lcs) < 200):
        key = _key(lc, use_gp)
        if key not in _CACHE:
            _CACHE[key] = object_features(lc, use_gp=True) if use_gp else physics_features(lc)
        rows.append(_CACHE[key])
    return np.stack(rows).astype(np.float64)


def impute_standardize(x: np.ndarray) -> np.ndarray:
    """NaN/inf → column median, then zero mean and unit variance (constant columns → 0)."""
    x = np.where(np.isfinite(x), x, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(x, axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    x = np.where(np.isnan(x), med, x)
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 1e-12, sd, 1.0)


def make_classifier(name: str, seed: int = 0):
    """'rf', 'logreg', 'knn' or 'mlp' (the last three standardise their inputs)."""
    if name == "rf":
        return RandomForestClassifier(
            n_estimators=RF_TREES, class_weight="balanced_subsample", min_samples_leaf=2, random_state=seed, n_jobs=1
        )
    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", C=1.0, max_iter=3000))
    if name == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=10, weights="distance"))
    if name == "mlp":
        return make_pipeline(
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=600, early_stopping=False, random_state=seed),
        )
    raise ValueError(f"unknown classifier {name!r}")


def cv_folds(y: np.ndarray, cv: int) -> int:
    """Folds actually usable: at most ``cv``, at least 2, no more than the largest class allows."""
    _, counts = np.unique(y, return_counts=True)
    return int(max(2, min(cv, counts.max())))


def cv_proba(name: str, x: np.ndarray, y: np.ndarray, cv: int = 5, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold class probabilities (StratifiedKFold) of classifier ``name``; columns = sorted classes."""
    classes = sorted(set(np.asarray(y).tolist()))
    x = impute_standardize(x)
    folds = StratifiedKFold(n_splits=cv_folds(y, cv), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small classes: "least populated class has only k members"
        proba = cross_val_predict(make_classifier(name, seed), x, y, cv=folds, method="predict_proba")
    return proba, classes


def isolation_forest_scores(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Anomaly score (higher = more anomalous) of an IsolationForest fitted on ``x`` itself."""
    forest = IsolationForest(n_estimators=300, random_state=seed).fit(impute_standardize(x))
    return -forest.score_samples(impute_standardize(x))


_BAZIN = lcf.BazinFit("lmsder")


def parametric_reconstruction(lc: LightCurve, kind: str) -> np.ndarray:
    """Magnitude per detection from a per-band model of the light curve itself.

    'constant': the band's median magnitude; 'bazin': a Bazin fit to the band's flux
    (>= 6 points, else the constant). NaN where the model flux is not positive.
    """
    mag = lc.mag
    out = np.full(len(lc), np.nan)
    for b in np.unique(lc.band):
        sel = lc.band == b
        finite = np.isfinite(mag[sel])
        out[sel] = np.median(mag[sel][finite]) if finite.any() else np.nan
        if kind == "bazin" and sel.sum() >= 6:
            t, f, e = lc.time[sel] - lc.time[0], lc.flux[sel], lc.flux_err[sel]
            scale = float(np.max(np.abs(f)))
            with np.errstate(all="ignore"):
                p = _BAZIN(t, f / scale, e / scale, fill_value=np.nan, sorted=True, check=False)
                if np.all(np.isfinite(p)):
                    model = _BAZIN.model(t, p) * scale
                    out[sel] = np.where(model > 0, NJY_ZERO_POINT - 2.5 * np.log10(np.maximum(model, 1e-30)), np.nan)
    return out
