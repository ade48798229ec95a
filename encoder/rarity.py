"""Anomaly ranking relative to a catalogue, and what experts' answers do to it.

The checkpoint's own score (:mod:`encoder.anomaly`) is fixed at training: it knows a list of "rare"
classes and the training set's density, not the catalogue it ranks. A :class:`Ranking` measures rarity
against the catalogue itself, with three signals, each turned into its percentile in the catalogue:

* **isolation**: mean cosine distance to the ``K`` nearest fingerprints of the catalogue (of a seeded
  sample of ``REFERENCE_MAX`` objects in a larger one): a kind the catalogue holds many of is dense;
* **surprisal**: ``-log`` of the catalogue's share of the object's predicted fine class;
* **model**: the checkpoint's score (decoder misfit, isolation in the training set, rare classes).

Their mean is the *rarity*. Experts' answers (``anomaly`` / ``not_anomaly``) move it: an answered object
goes above (anomaly) or below (not an anomaly) every unanswered one, and every other object is pulled
along by the answers of the objects it resembles: ``BETA * sum(y k) / (sum(k) + PRIOR)`` with y = +1 / -1
and ``k = exp((cos - 1) / TAU)`` (label propagation in fingerprint space, a kernel-weighted mean of the
answers with a pseudo-count: an answer about one CV speaks for the CVs like it, an object far from every
answer barely moves, and many answers nearby do not add up beyond ``BETA``).

The published **score** is a mid-rank percentile in the catalogue: the fraction of objects ranked below,
plus half of those tied, so 0.9 means "above 90 % of this catalogue"; it does not saturate (n objects, n
distinct steps) and means the same in a catalogue of any size. New objects get an estimate against the
current ranking (:meth:`Ranking.estimate`) until the next rebuild ranks them with everyone.

Pure NumPy: the service ranks with FAISS neighbours (``knn``), evaluations with the default.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

K = 10
REFERENCE_MAX = 20_000
TAU = 0.1  # kernel width of an answer's pull, in cosine similarity
BETA = 0.5  # its strength, in units of rarity (a mean of percentiles, in [0, 1])
PRIOR = 1.0  # the pseudo-count of "no answer" in the pull's weighted mean
PIN = 2.0  # answered objects move by more than any rarity: above / below every unanswered one
LABELS: dict[str, int] = {"anomaly": 1, "not_anomaly": -1}

#: ``knn(queries, reference, k) -> (similarities, reference rows)``, each (n, k), best first
Knn = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def numpy_knn(queries: np.ndarray, reference: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product neighbours, in chunks of queries (the default :data:`Knn`)."""
    k = min(k, len(reference))
    sims = np.zeros((len(queries), k), np.float32)
    rows = np.zeros((len(queries), k), np.int64)
    for s in range(0, len(queries), chunk):
        block = queries[s : s + chunk] @ reference.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < block.shape[1] else np.argsort(-block, axis=1)
        val = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-val, axis=1)
        sims[s : s + chunk], rows[s : s + chunk] = np.take_along_axis(val, order, 1), np.take_along_axis(top, order, 1)
    return sims, rows


def mid_percentile(sorted_reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The fraction of ``sorted_reference`` below each value, plus half of those equal to it."""
    n = len(sorted_reference)
    if n == 0:
        return np.full(len(values), 0.5)
    lo = np.searchsorted(sorted_reference, values, side="left")
    hi = np.searchsorted(sorted_reference, values, side="right")
    return (lo + hi) / (2.0 * n)


def isolation(
    queries: np.ndarray, reference: np.ndarray, own_rows: np.ndarray | None = None, k: int = K, knn: Knn = numpy_knn
) -> np.ndarray:
    """Mean cosine distance of each (unit) query to its ``k`` nearest reference vectors, leaving out the
    reference row ``own_rows[i]`` of query i (-1: none; the query itself when it is in the reference)."""
    n = len(queries)
    own = np.full(n, -1) if own_rows is None else np.asarray(own_rows)
    k_eff = min(k, len(reference) - int((own >= 0).any()))
    if n == 0 or k_eff <= 0:
        return np.zeros(n)
    sims, rows = knn(queries, reference, k_eff + 1 if k_eff < len(reference) else k_eff)
    keep = rows != own[:, None]
    # the first k_eff kept neighbours of each row (its own row, where found, is skipped)
    rank = np.cumsum(keep, axis=1)
    keep &= rank <= k_eff
    return 1.0 - (sims * keep).sum(1) / np.maximum(keep.sum(1), 1)


def surprisal(fine: Sequence[str | None], counts: Mapping[str | None, int], total: int) -> np.ndarray:
    """``-log`` of each predicted class's (add-one smoothed) share of a catalogue of ``total`` objects."""
    n_classes = max(len(counts), 1)
    return -np.log(np.array([(counts.get(f, 0) + 1) / (total + n_classes) for f in fine], dtype=np.float64))


def feedback_pull(vectors: np.ndarray, answered: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """``BETA * sum_j y_j k_j / (sum_j k_j + PRIOR)``, ``k_j = exp((cos(x, a_j) - 1) / TAU)``, for each
    (unit) vector x, over the answered vectors ``a_j`` and their answers ``y_j`` (+1 / -1)."""
    if len(answered) == 0:
        return np.zeros(len(vectors))
    out = np.zeros(len(vectors))
    for s in range(0, len(vectors), 8192):
        k = np.exp((np.clip(vectors[s : s + 8192] @ answered.T, -1, 1) - 1.0) / TAU)
        out[s : s + 8192] = BETA * (k @ answers) / (k.sum(axis=1) + PRIOR)
    return out


@dataclass
class Ranking:
    """A catalogue's anomaly ranking (see the module docstring); rows are the catalogue's objects."""

    vectors: np.ndarray  # (n, d) unit fingerprints
    fine: list[str | None]  # predicted fine class per row
    model_score: np.ndarray  # (n,) the checkpoint's score
    reference_rows: np.ndarray  # the rows of the isolation reference (all, or a seeded sample)
    isolation: np.ndarray  # (n,)
    counts: Counter = field(repr=False)
    sorted_signals: tuple[np.ndarray, np.ndarray, np.ndarray] = field(repr=False)  # isolation, surprisal, model
    rarity: np.ndarray = field(repr=False)  # (n,) mean of the three percentiles
    answers: dict[int, int] = field(default_factory=dict)  # row -> +1 / -1
    raw: np.ndarray = field(init=False, repr=False)  # rarity + pull + pins: what the score ranks
    sorted_raw: np.ndarray = field(init=False, repr=False)
    scores: np.ndarray = field(init=False, repr=False)  # (n,) the published mid-rank percentiles

    def __post_init__(self) -> None:
        self._rescore()

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        fine: Sequence[str | None],
        model_score: np.ndarray,
        answers: Mapping[int, int] | None = None,
        *,
        knn: Knn = numpy_knn,
        seed: int = 0,
    ) -> Ranking:
        v = unit(vectors)
        n = len(v)
        ref = (
            np.arange(n) if n <= REFERENCE_MAX else np.sort(np.random.default_rng(seed).choice(n, REFERENCE_MAX, False))
        )
        own = np.full(n, -1)
        own[ref] = np.arange(len(ref))
        iso = isolation(v, v[ref], own, knn=knn)
        counts = Counter(fine)
        surp = surprisal(fine, counts, n)
        model = np.nan_to_num(np.asarray(model_score, dtype=np.float64), nan=0.0)
        signals = (np.sort(iso), np.sort(surp), np.sort(model))
        rarity = _mean_percentile(signals, iso, surp, model)
        return cls(v, list(fine), model, ref, iso, counts, signals, rarity, dict(answers or {}))

    def __len__(self) -> int:
        return len(self.vectors)

    def with_answers(self, answers: Mapping[int, int]) -> Ranking:
        """The same catalogue under other answers (rows -> +1 / -1): only the pull and the pins change."""
        return Ranking(
            self.vectors, self.fine, self.model_score, self.reference_rows, self.isolation, self.counts,
            self.sorted_signals, self.rarity, dict(answers),
        )  # fmt: skip

    def _rescore(self) -> None:
        self.raw = self._pulled(self.rarity, self.vectors, np.arange(len(self)))
        self.sorted_raw = np.sort(self.raw)
        self.scores = mid_percentile(self.sorted_raw, self.raw)

    def _pulled(self, rarity: np.ndarray, vectors: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Rarities moved by the answers: pulled by the answered objects they resemble, or pinned where the
        object (its row here: ``own``, -1 for none) was answered itself."""
        if not self.answers:
            return rarity.copy()
        rows = np.fromiter(self.answers, dtype=np.int64)
        y = np.array([self.answers[r] for r in rows.tolist()], dtype=np.float64)
        raw = rarity + feedback_pull(vectors, self.vectors[rows], y)
        answer_of = np.zeros(len(self))
        answer_of[rows] = y
        pin = np.where(own >= 0, answer_of[np.maximum(own, 0)], 0.0)
        raw[pin != 0] = rarity[pin != 0] + PIN * pin[pin != 0]
        return raw

    def order(self) -> np.ndarray:
        """Rows, most anomalous first (ties by row)."""
        return np.lexsort((np.arange(len(self)), -self.raw))

    def estimate(
        self,
        vectors: np.ndarray,
        fine: Sequence[str | None],
        model_score: np.ndarray,
        own_rows: np.ndarray | None = None,
        *,
        knn: Knn = numpy_knn,
    ) -> np.ndarray:
        """Scores of objects that are not ranked yet (or changed since: ``own_rows``, their rows here,
        -1 for new ones), measured against this ranking's catalogue; NaN while it is empty."""
        if len(self) == 0:
            return np.full(len(vectors), np.nan)
        v = unit(vectors)
        own = np.full(len(v), -1) if own_rows is None else np.asarray(own_rows)
        ref_pos = np.full(len(self), -1)
        ref_pos[self.reference_rows] = np.arange(len(self.reference_rows))
        own_ref = np.where(own >= 0, ref_pos[np.maximum(own, 0)], -1)
        iso = isolation(v, self.vectors[self.reference_rows], own_ref, knn=knn)
        surp = surprisal(fine, self.counts, len(self))
        model = np.nan_to_num(np.asarray(model_score, dtype=np.float64), nan=0.0)
        rarity = _mean_percentile(self.sorted_signals, iso, surp, model)
        return mid_percentile(self.sorted_raw, self._pulled(rarity, v, own))  # a changed object keeps its pin


def _mean_percentile(sorted_signals: tuple[np.ndarray, ...], *signals: np.ndarray) -> np.ndarray:
    """The rarity: the mean of each signal's mid-rank percentile among the catalogue's (``sorted_signals``)."""
    return np.mean([mid_percentile(ref, x) for ref, x in zip(sorted_signals, signals, strict=True)], axis=0)
