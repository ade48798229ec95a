"""Anomaly ranking relative to a catalogue, and what experts' answers do to it.

The checkpoint's own score (:mod:`encoder.anomaly`) is fixed at training: it knows a list of "rare"
classes and the training set's density, not the catalogue it ranks. A :class:`Ranking` measures rarity
against the catalogue itself, with three signals:

* **isolation**: mean cosine distance to the ``K`` nearest fingerprints of the catalogue (of a seeded
  sample of ``REFERENCE_MAX`` objects in a larger one): a kind the catalogue holds many of is dense;
* **surprisal**: ``-log`` of the catalogue's share of the object's fine class, expected under the model's
  fine-class probabilities where they are given (``sum_c p_c (-log share_c)``; else the predicted class's):
  a kind no model was trained on is mostly called a common class, with a spread posterior;
* **model**: the checkpoint's score (decoder misfit, isolation in the training set, rare classes).

Each signal becomes its percentile among the catalogue's objects **with about as many detections**
(:data:`STRATA`; a stratum of fewer than ``MIN_STRATUM`` objects is pooled with the next): a fingerprint
of one or two detections says little, sparse light curves crowd together and decode easily, so beside
well-sampled ones they would rank as the most ordinary (a kilonova is mostly one detection). The
*rarity* is the mean of the ``AGREE`` highest of the three percentiles (the lowest breaks ties): rare
when two signals agree, so that one blind signal cannot hide an object (the model scores a kind it never
saw as ordinary). Experts' answers (``anomaly`` / ``not_anomaly``) move it: an answered object
goes above (anomaly) or below (not an anomaly) every unanswered one, and every other object is pulled
along by the answers of the objects it resembles: ``BETA * sum(y k) / (sum(k) + PRIOR)`` with y = +1 / -1
and ``k = exp((cos - 1) / TAU)`` (label propagation in fingerprint space, a kernel-weighted mean of the
answers with a pseudo-count: an answer about one CV speaks for the CVs like it, an object far from every
answer barely moves, and many answers nearby do not add up beyond ``BETA``).

The published **score** is a mid-rank percentile in the catalogue: the fraction of objects ranked below,
plus half of those tied, so 0.9 means "above 90 % of this catalogue"; it does not saturate (n objects, n
distinct steps) and means the same in a catalogue of any size. New objects get an estimate against the
current ranking (:meth:`Ranking.estimate`: its percentile as if it had joined the catalogue) until the
next rebuild ranks them with everyone.

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
#: upper-exclusive detection counts that bound the strata: 1, 2, 3-4, 5-7, 8-12, 13-20, 21 and more
STRATA: tuple[int, ...] = (2, 3, 5, 8, 13, 21)
MIN_STRATUM = 50
AGREE = 2  # how many of the three signals' (highest) percentiles the rarity averages
TIE_BREAK = 1e-3  # the weight of the others: they order the objects the highest ones tie
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


def expected_surprisal(
    probabilities: np.ndarray, classes: Sequence[str], counts: Mapping[str | None, int], total: int
) -> np.ndarray:
    """:func:`surprisal` expected under each row of ``probabilities`` over ``classes``."""
    return np.asarray(probabilities, dtype=np.float64) @ surprisal(list(classes), counts, total)


def strata(detections: np.ndarray, edges: Sequence[int] = STRATA, min_size: int = MIN_STRATUM) -> np.ndarray:
    """The stratum of each bin of ``edges`` (``np.searchsorted(edges, n, "right")``) for a catalogue with
    these detection counts: consecutive bins pooled until each stratum holds ``min_size`` objects (the
    last, if short, joins the one before)."""
    counts = np.bincount(np.searchsorted(edges, np.asarray(detections), side="right"), minlength=len(edges) + 1)
    group, held, out = 0, 0, np.zeros(len(counts), np.int64)
    for b, c in enumerate(counts.tolist()):
        if held >= min_size:
            group, held = group + 1, 0
        out[b], held = group, held + c
    if held < min_size and group > 0:
        out[out == group] = group - 1
    return out


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
    classes: tuple[str, ...] = field(repr=False)  # the columns of the probabilities (none: predicted classes)
    edges: tuple[int, ...] = field(repr=False)  # the strata's bins (none: one stratum) ...
    stratum_of_bin: np.ndarray = field(repr=False)  # ... and the stratum of each (see strata())
    #: per stratum: its objects' isolation, surprisal and model score, each sorted
    sorted_signals: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(repr=False)
    #: (3, n): isolation, surprisal and model score, each as its percentile in its stratum
    percentiles: np.ndarray = field(repr=False)
    rarity: np.ndarray = field(repr=False)  # (n,) the mean of the ``agree`` highest of them
    agree: int = AGREE
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
        detections: np.ndarray | None = None,
        probabilities: np.ndarray | None = None,
        classes: Sequence[str] = (),
        knn: Knn = numpy_knn,
        seed: int = 0,
        edges: Sequence[int] = STRATA,
        agree: int = AGREE,
    ) -> Ranking:
        """``detections``: each object's detection count (None: one stratum); ``probabilities``: its
        fine-class probabilities over ``classes`` (None: the surprisal of the predicted class);
        ``edges``: the strata's (:data:`STRATA`; ``()`` for one); ``agree``: how many of the highest
        percentiles the rarity averages (3: all)."""
        v = unit(vectors)
        n = len(v)
        ref = (
            np.arange(n) if n <= REFERENCE_MAX else np.sort(np.random.default_rng(seed).choice(n, REFERENCE_MAX, False))
        )
        own = np.full(n, -1)
        own[ref] = np.arange(len(ref))
        iso = isolation(v, v[ref], own, knn=knn)
        counts = Counter(fine)
        names = tuple(classes) if probabilities is not None else ()
        surp = _surprisal(fine, probabilities, names, counts, n)
        model = np.nan_to_num(np.asarray(model_score, dtype=np.float64), nan=0.0)
        det = np.ones(n, np.int64) if detections is None else np.asarray(detections)
        edges = tuple(edges)
        stratum_of_bin = strata(det, edges)
        group = _stratum(stratum_of_bin, det, edges)
        signals = [
            (np.sort(iso[group == g]), np.sort(surp[group == g]), np.sort(model[group == g]))
            for g in range(int(stratum_of_bin.max()) + 1)
        ]
        pct = _percentiles(signals, group, iso, surp, model)
        return cls(
            v, list(fine), model, ref, iso, counts, names, edges, stratum_of_bin, signals, pct, _rarity(pct, agree),
            agree, dict(answers or {}),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.vectors)

    def with_answers(self, answers: Mapping[int, int]) -> Ranking:
        """The same catalogue under other answers (rows -> +1 / -1): only the pull and the pins change."""
        return Ranking(
            self.vectors, self.fine, self.model_score, self.reference_rows, self.isolation, self.counts,
            self.classes, self.edges, self.stratum_of_bin, self.sorted_signals, self.percentiles, self.rarity,
            self.agree, dict(answers),
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
        detections: np.ndarray | None = None,
        probabilities: np.ndarray | None = None,
        knn: Knn = numpy_knn,
    ) -> np.ndarray:
        """Scores of objects that are not ranked yet (or changed since: ``own_rows``, their rows here,
        -1 for new ones), measured against this ranking's catalogue; NaN while it is empty.
        ``detections`` and ``probabilities`` as :meth:`build` had them (the latter over its classes)."""
        if len(self) == 0:
            return np.full(len(vectors), np.nan)
        v = unit(vectors)
        own = np.full(len(v), -1) if own_rows is None else np.asarray(own_rows)
        ref_pos = np.full(len(self), -1)
        ref_pos[self.reference_rows] = np.arange(len(self.reference_rows))
        own_ref = np.where(own >= 0, ref_pos[np.maximum(own, 0)], -1)
        iso = isolation(v, self.vectors[self.reference_rows], own_ref, knn=knn)
        surp = _surprisal(fine, probabilities if self.classes else None, self.classes, self.counts, len(self))
        model = np.nan_to_num(np.asarray(model_score, dtype=np.float64), nan=0.0)
        det = np.ones(len(v), np.int64) if detections is None else np.asarray(detections)
        stratum = _stratum(self.stratum_of_bin, det, self.edges)
        rarity = _rarity(_percentiles(self.sorted_signals, stratum, iso, surp, model), self.agree)
        raw = self._pulled(rarity, v, own)  # a changed object keeps its pin
        # a new object is ranked as if it had joined: among n + 1, itself one of the tied (never 0 or 1)
        n, new = len(self.sorted_raw), own < 0
        joined = (n * mid_percentile(self.sorted_raw, raw) * 2 + 1) / (2 * (n + 1))
        return np.where(new, joined, mid_percentile(self.sorted_raw, raw))


def _surprisal(
    fine: Sequence[str | None],
    probabilities: np.ndarray | None,
    classes: Sequence[str],
    counts: Mapping[str | None, int],
    total: int,
) -> np.ndarray:
    if probabilities is None:
        return surprisal(fine, counts, total)
    return expected_surprisal(probabilities, classes, counts, total)


def _stratum(stratum_of_bin: np.ndarray, detections: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    return stratum_of_bin[np.searchsorted(edges, detections, side="right")]


def _percentiles(
    sorted_signals: Sequence[tuple[np.ndarray, ...]], stratum: np.ndarray, *signals: np.ndarray
) -> np.ndarray:
    """(signals, n): each signal's mid-rank percentile among its stratum's objects (``sorted_signals[stratum]``)."""
    pct = np.zeros((len(signals), len(stratum)))
    for g, refs in enumerate(sorted_signals):
        rows = np.flatnonzero(stratum == g)
        for j, (ref, x) in enumerate(zip(refs, signals, strict=True)):
            pct[j, rows] = mid_percentile(ref, x[rows])
    return pct


def _rarity(percentiles: np.ndarray, agree: int) -> np.ndarray:
    """The mean of the ``agree`` highest percentiles of each object (column), plus :data:`TIE_BREAK`
    times the mean of the others (two objects often share a sum of two percentiles)."""
    ranked = np.sort(percentiles, axis=0)
    rest = ranked[:-agree].mean(axis=0) if agree < len(ranked) else 0.0
    return ranked[-agree:].mean(axis=0) + TIE_BREAK * rest
