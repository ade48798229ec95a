"""From light curves to padded tensors: per-object examples and their collation.

An :class:`Example` holds everything the model reads about one light curve, already
normalised. Photometric and metadata channels are causal (row i depends only on rows
<= i), so a light curve truncated to its first n detections is a slice; physics/GP
features are not, so an example keeps them at a few detection counts
(:data:`FEATURE_LEVELS`) and a truncated view uses the largest level it has reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from encoder.features import FeatureNormalizer, object_features
from encoder.features.metadata import MetadataNormalizer, metadata_matrix
from encoder.features.photometry import asinh_logflux, luptitude, photometry_channels_many
from encoder.features.stamps import stamp_tensor
from encoder.lightcurve import LightCurve

if TYPE_CHECKING:
    import torch

#: Detection counts at which training examples keep their object features.
FEATURE_LEVELS: tuple[int, ...] = (3, 5, 10, 20, 50)
IGNORE = -100


@dataclass
class FeatureSpec:
    """What the model reads; stored in the checkpoint with the fitted normalisers."""

    max_len: int = 256
    use_metadata: bool = True
    use_images: bool = False
    use_gp: bool = True  # physics features from the light-curve package
    gp_fit: bool = True  # ... plus the multi-band Gaussian-process fit
    meta_norm: MetadataNormalizer | None = None
    obj_norm: FeatureNormalizer | None = None

    def to_dict(self) -> dict:
        return {
            "max_len": self.max_len,
            "use_metadata": self.use_metadata,
            "use_images": self.use_images,
            "use_gp": self.use_gp,
            "gp_fit": self.gp_fit,
            "meta_norm": self.meta_norm.to_dict() if self.meta_norm else None,
            "obj_norm": self.obj_norm.to_dict() if self.obj_norm else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(
            max_len=d["max_len"],
            use_metadata=d["use_metadata"],
            use_images=d["use_images"],
            use_gp=d["use_gp"],
            gp_fit=d["gp_fit"],
            meta_norm=MetadataNormalizer.from_dict(d["meta_norm"]) if d.get("meta_norm") else None,
            obj_norm=FeatureNormalizer.from_dict(d["obj_norm"]) if d.get("obj_norm") else None,
        )


@dataclass
class Example:
    object_id: str
    phot: np.ndarray  # (n, 10) float32
    t_rel: np.ndarray  # (n,) float32 days since the first detection
    band: np.ndarray  # (n,) int64
    meta: np.ndarray | None = None  # (n, 60) float32: normalised values then presence mask
    stamps: np.ndarray | None = None  # (3, 63, 63) float32
    objfeat: np.ndarray | None = None  # (levels, 2 * n_features) float32: values then mask
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # detections per row
    y_coarse: int = IGNORE
    y_fine: int = IGNORE

    def __len__(self) -> int:
        return len(self.phot)


@dataclass
class Batch:
    phot: torch.Tensor  # (B, L, 10)
    t_rel: torch.Tensor  # (B, L)
    band: torch.Tensor  # (B, L) long
    pad_mask: torch.Tensor  # (B, L) bool, True = padding
    meta: torch.Tensor | None = None  # (B, L, 60)
    stamps: torch.Tensor | None = None  # (B, 3, 63, 63)
    has_stamp: torch.Tensor | None = None  # (B,) float
    objfeat: torch.Tensor | None = None  # (B, 2F)
    y_coarse: torch.Tensor | None = None
    y_fine: torch.Tensor | None = None

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Batch:
        """The tensors of :func:`collate_arrays`'s arrays (sharing their memory)."""
        import torch  # here: inference from a serving export runs without PyTorch

        return cls(**{f.name: torch.from_numpy(arrays[f.name]) for f in fields(cls) if f.name in arrays})


def raw_object_features(
    lc: LightCurve, spec: FeatureSpec, levels: bool, mags: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Un-normalised object features of ``lc`` (and of its first-n views when ``levels``).

    ``mags``: the light curve's ``luptitude(flux, flux_err)`` when the caller has it already.
    """
    counts = [n for n in FEATURE_LEVELS if n < len(lc)] if levels else []
    counts.append(len(lc))
    m, e = luptitude(lc.flux, lc.flux_err) if mags is None else mags
    rows = [object_features(lc.first(n), use_gp=spec.gp_fit, mags=(m[:n], e[:n])) for n in counts]
    return np.stack(rows).astype(np.float32, copy=False), np.asarray(counts, dtype=np.int64)


def make_example(
    lc: LightCurve,
    spec: FeatureSpec,
    *,
    raw_objfeat: tuple[np.ndarray, np.ndarray] | None = None,
    coarse_index: dict[str, int] | None = None,
    fine_index: dict[str, int] | None = None,
    coarse_label: str | None = None,
) -> Example:
    """Features of one light curve, normalised with the spec's fitted statistics."""
    return make_examples(
        [lc],
        spec,
        raw_objfeat=None if raw_objfeat is None else [raw_objfeat],
        coarse_index=coarse_index,
        fine_index=fine_index,
        coarse_labels=[coarse_label],
    )[0]


def make_examples(
    lcs: list[LightCurve],
    spec: FeatureSpec,
    *,
    raw_objfeat: list[tuple[np.ndarray, np.ndarray]] | None = None,
    coarse_index: dict[str, int] | None = None,
    fine_index: dict[str, int] | None = None,
    coarse_labels: list[str | None] | None = None,
) -> list[Example]:
    """:func:`make_example` of many light curves at once: the same values, faster.

    Per-detection channels are computed on the concatenation of all detections and the
    normalisers run once per call: for short alert histories (median 3 detections) the
    per-call overhead of many tiny numpy operations is most of the cost. Labels (training):
    ``fine_index`` maps ``lc.label``, ``coarse_index`` maps ``coarse_labels[i]``.
    """
    if not lcs:
        return []
    sizes = np.fromiter((len(lc) for lc in lcs), dtype=np.int64, count=len(lcs))
    stops = np.cumsum(sizes)
    starts = stops - sizes
    time = np.concatenate([lc.time for lc in lcs])
    band = np.concatenate([lc.band for lc in lcs]).astype(np.int64)
    flux, flux_err = np.concatenate([lc.flux for lc in lcs]), np.concatenate([lc.flux_err for lc in lcs])
    phot = photometry_channels_many(time, asinh_logflux(flux, flux_err), band, starts)
    t_rel = (time - np.repeat(time[starts], sizes)).astype(np.float32)
    meta = None
    if spec.use_metadata and spec.meta_norm is not None:
        values, mask = spec.meta_norm.transform(np.concatenate([metadata_matrix(lc) for lc in lcs]))
        meta = np.concatenate([values, mask], axis=1)
    objfeat: list[np.ndarray] | None = None
    levels: list[np.ndarray] = []
    if spec.use_gp and spec.obj_norm is not None:
        if raw_objfeat is None:
            mag, mag_err = luptitude(flux, flux_err)
            raw_objfeat = [
                raw_object_features(lc, spec, levels=False, mags=(mag[a:b], mag_err[a:b]))
                for lc, a, b in zip(lcs, starts, stops, strict=True)
            ]
        values, mask = spec.obj_norm.transform(np.concatenate([r for r, _ in raw_objfeat]))
        rows = np.concatenate([values, mask], axis=1)
        row_stops = np.cumsum([len(r) for r, _ in raw_objfeat]).tolist()
        objfeat = [rows[a:b] for a, b in zip([0, *row_stops[:-1]], row_stops, strict=True)]
        levels = [c for _, c in raw_objfeat]
    out = []
    for i, lc in enumerate(lcs):
        a, b = starts[i], stops[i]
        out.append(
            Example(
                object_id=lc.object_id,
                phot=phot[a:b],
                t_rel=t_rel[a:b],
                band=band[a:b],
                meta=None if meta is None else meta[a:b],
                stamps=stamp_tensor(lc) if spec.use_images else None,
            )
        )
        if objfeat is not None:
            out[-1].objfeat, out[-1].levels = objfeat[i], levels[i]
        if lc.label and fine_index is not None:
            out[-1].y_fine = fine_index.get(lc.label, IGNORE)
        coarse_label = None if coarse_labels is None else coarse_labels[i]
        if coarse_label and coarse_index is not None:
            out[-1].y_coarse = coarse_index.get(coarse_label, IGNORE)
    return out


def collate(examples: list[Example], spec: FeatureSpec, lengths: list[int] | None = None) -> Batch:
    """:func:`collate_arrays` as PyTorch tensors."""
    return Batch.from_arrays(collate_arrays(examples, spec, lengths))


def collate_arrays(
    examples: list[Example], spec: FeatureSpec, lengths: list[int] | None = None
) -> dict[str, np.ndarray]:
    """Pad a list of examples into a batch (arrays named as :class:`Batch`'s fields); ``lengths``
    truncates each to its first n detections.

    Sequences longer than ``spec.max_len`` keep their most recent ``max_len`` detections
    (time channels still count from the true first detection).
    """
    views = []
    for i, ex in enumerate(examples):
        n = len(ex) if lengths is None else max(1, min(lengths[i], len(ex)))
        views.append((max(0, n - spec.max_len), n))
    B, L = len(examples), max(stop - start for start, stop in views)
    phot = np.zeros((B, L, examples[0].phot.shape[1]), dtype=np.float32)
    t_rel = np.zeros((B, L), dtype=np.float32)
    band = np.zeros((B, L), dtype=np.int64)
    pad = np.ones((B, L), dtype=bool)
    meta = np.zeros((B, L, 60), dtype=np.float32) if spec.use_metadata and spec.meta_norm is not None else None
    for i, (ex, (start, stop)) in enumerate(zip(examples, views, strict=True)):
        m = stop - start
        phot[i, :m], t_rel[i, :m], band[i, :m] = ex.phot[start:stop], ex.t_rel[start:stop], ex.band[start:stop]
        pad[i, :m] = False
        if meta is not None and ex.meta is not None:
            meta[i, :m] = ex.meta[start:stop]
    batch: dict[str, np.ndarray] = {"phot": phot, "t_rel": t_rel, "band": band, "pad_mask": pad}
    if meta is not None:
        batch["meta"] = meta
    if spec.use_images:
        stamps = np.zeros((B, 3, 63, 63), dtype=np.float32)
        has = np.zeros(B, dtype=np.float32)
        for i, ex in enumerate(examples):
            if ex.stamps is not None:
                stamps[i], has[i] = ex.stamps, 1.0
        batch["stamps"], batch["has_stamp"] = stamps, has
    if spec.use_gp and spec.obj_norm is not None:
        rows = []
        for ex, (_, stop) in zip(examples, views, strict=True):
            if ex.objfeat is None:
                raise ValueError(f"{ex.object_id}: an example without object features, but the spec uses them")
            reached = np.flatnonzero(ex.levels <= stop)
            rows.append(ex.objfeat[reached[-1] if len(reached) else 0])
        batch["objfeat"] = np.stack(rows)
    batch["y_coarse"] = np.array([ex.y_coarse for ex in examples], dtype=np.int64)
    batch["y_fine"] = np.array([ex.y_fine for ex in examples], dtype=np.int64)
    return batch
