"""The served version's anomaly ranking: :class:`encoder.rarity.Ranking` over the catalogue, in
memory, kept current, its scores in SQL (``fingerprints.anomaly_score``) and in the index.

* **Rebuild** (:meth:`AnomalyRanking.rebuild`): rank every fingerprint of the version from SQL with
  the experts' latest answers, and write back the scores that moved. The catalogue calls it when
  its inputs changed (:meth:`~indexing.store.Store.ranking_marker`), from the sync thread, and at
  once while the catalogue is small and grew by a quarter since the last one.
* **Estimate** (:meth:`AnomalyRanking.estimate`): an ingested object's score against the current
  ranking, written with its fingerprint, until the next rebuild ranks it with everyone.
* **Answer** (:meth:`AnomalyRanking.answer`): an expert's answer re-ranks at once (the pull and the
  pins only; the three signals are the rebuild's).

Every process of a deployment computes the same scores from the same SQL rows, so whichever
writes first, the others find nothing to rewrite.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from encoder.rarity import LABELS, Ranking, unit
from indexing.knn import flat_knn
from indexing.store import FeedbackAnswer, Store

log = logging.getLogger("rtf.ranking")
#: A score that moved less than this is not rewritten: an answer nudges every object that resembles it, and
#: in a dense region of a large catalogue that reorders tens of thousands of near-ties by a few steps of 1/n
#: (80,000 rows to rewrite for one answer at 100K objects with 1e-4; a few hundred with 1e-3).
SCORE_TOLERANCE = 1e-3
#: Up to this many objects, an ingest that grows the catalogue by a quarter re-ranks it at once.
SMALL_CATALOGUE = 20_000


def split_served(vectors: np.ndarray, latent_dim: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A served fingerprint's two parts: the model's own (its first ``latent_dim`` numbers), which the
    ranking compares, and the class-aware metric's fine-class probabilities after it (a multiple of them,
    each row scaled back to sum to 1), which the surprisal reads; None where there are none."""
    v = np.asarray(vectors)
    if latent_dim is None or latent_dim >= v.shape[1]:
        return v, None
    tail = v[:, latent_dim:].astype(np.float64)
    return v[:, :latent_dim], tail / np.maximum(tail.sum(axis=1, keepdims=True), 1e-12)


class AnomalyRanking:
    """``latent_dim``: how many of a fingerprint's first numbers are the model's own; ``fine_classes``:
    the classes of the probabilities after them (:func:`split_served`)."""

    def __init__(
        self, store: Store, version: str, latent_dim: int | None = None, fine_classes: Sequence[str] = ()
    ) -> None:
        self.store, self.version, self.latent_dim = store, version, latent_dim
        self.fine_classes = tuple(fine_classes)
        self._build_lock = threading.Lock()  # one rebuild at a time (it takes seconds at 100K objects) ...
        self._lock = threading.RLock()  # ... and answers and the swap of a rebuilt ranking one at a time
        # the ranking, its rows' object ids and the row of each id: swapped together (readers take no lock)
        self._state: tuple[Ranking, list[str], dict[str, int]] | None = None
        self._stored = np.zeros(0)  # the scores SQL holds, as this ranking knows them
        self._revision = np.zeros(0, np.int64)
        self.marker: str | None = None  # the ranking marker the current ranking was built at
        self.built_at: float | None = None  # time.time() of the last rebuild
        self.pending = 0  # objects encoded since the last rebuild

    def __len__(self) -> int:
        return 0 if self._state is None else len(self._state[1])

    @property
    def built(self) -> bool:
        return self._state is not None

    # ------------------------------------------------------------------ rebuild
    def rebuild(self) -> dict[str, float]:
        """Rank the version's whole catalogue again; write back and return the scores that moved. Answers
        keep re-ranking the current ranking meanwhile; those given during the rebuild are applied to the new
        one before it replaces the old."""
        with self._build_lock:
            t0 = time.perf_counter()
            marker = self.store.ranking_marker(self.version)
            inputs = self.store.ranking_inputs(self.version)
            row = {oid: i for i, oid in enumerate(inputs.object_ids)}
            answers = self._answers(row)
            vectors, probabilities = self._split(inputs.vectors)
            ranking = Ranking.build(
                vectors, inputs.fine_labels, inputs.model_score, answers, detections=inputs.n_detections,
                probabilities=probabilities, classes=self.fine_classes, knn=flat_knn,
            )  # fmt: skip
            with self._lock:
                latest = self._answers(row)
                if latest != answers:
                    ranking = ranking.with_answers(latest)
                self._state = (ranking, inputs.object_ids, row)
                self._stored, self._revision = inputs.anomaly_score.copy(), inputs.source_revision
                self.marker, self.built_at, self.pending = marker, time.time(), 0
                changed = self._write_moved()
            log.info(
                "anomaly ranking of %s: %d objects, %d scores rewritten, %.2f s",
                self.version,
                len(row),
                len(changed),
                time.perf_counter() - t0,
            )
            return changed

    def _split(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        v, probabilities = split_served(vectors, self.latent_dim)
        ok = probabilities is not None and probabilities.shape[1] == len(self.fine_classes)
        return v, probabilities if ok else None

    def _answers(self, row: dict[str, int]) -> dict[int, int]:
        return {row[o]: LABELS[label] for o, label in self.store.latest_answers().items() if o in row}

    def _write_moved(self) -> dict[str, float]:
        """Write the scores that differ from SQL's by more than the tolerance; returns them."""
        assert self._state is not None
        ranking, ids, _ = self._state
        scores = ranking.scores
        with np.errstate(invalid="ignore"):
            moved = np.flatnonzero(~(np.abs(scores - self._stored) <= SCORE_TOLERANCE))  # NaN stored: moved
        changed = {ids[i]: float(scores[i]) for i in moved.tolist()}
        self.store.set_anomaly_scores(
            self.version, {ids[i]: (float(scores[i]), int(self._revision[i])) for i in moved.tolist()}
        )
        self._stored[moved] = scores[moved]
        return changed

    def stale(self) -> bool:
        """Whether what the ranking depends on changed in SQL since it was built."""
        return self.marker != self.store.ranking_marker(self.version)

    # ------------------------------------------------------------------ ingest
    def estimate(
        self,
        object_ids: Sequence[str],
        vectors: np.ndarray,
        fine: Sequence[str | None],
        model_score: np.ndarray,
        detections: Sequence[int],
    ) -> list[float | None]:
        """Scores of encoded objects (served fingerprints; their light curves' detection counts) against
        the current ranking (None while it is empty). An object ranked with exactly this fingerprint keeps
        the score SQL holds for it (a re-posted alert changes nothing)."""
        if self._state is None or len(self._state[0]) == 0:
            return [None] * len(object_ids)
        ranking, _, row = self._state
        stored = self._stored
        own = np.array([row.get(o, -1) for o in object_ids], dtype=np.int64)
        vectors, probabilities = self._split(vectors)
        est = ranking.estimate(
            vectors, fine, model_score, own_rows=own, detections=np.asarray(detections, np.int64),
            probabilities=probabilities, knn=flat_knn,
        )  # fmt: skip
        out: list[float | None] = []
        for i, r in enumerate(own.tolist()):
            same = (
                r >= 0
                and fine[i] == ranking.fine[r]
                and float(model_score[i]) == float(ranking.model_score[r])
                and np.array_equal(unit(vectors[i : i + 1])[0], ranking.vectors[r])
            )
            if same and r < len(stored) and np.isfinite(stored[r]):
                out.append(float(stored[r]))
            else:
                out.append(float(ranking.scores[r]) if same else float(est[i]))
        return out

    # ------------------------------------------------------------------ answers
    def answer(self, answer: FeedbackAnswer, marker_before: str | None = None) -> dict[str, float]:
        """Re-rank with a recorded answer (rebuilding when the object is not ranked yet); returns the
        scores that moved, written back. ``marker_before``: the ranking marker just before the answer was
        recorded; when the ranking was current then, it is current with the answer (no rebuild for it)."""
        with self._lock:
            if self._state is not None and answer.object_id in self._state[2]:
                ranking, ids, row = self._state
                answers = dict(ranking.answers)
                answers[row[answer.object_id]] = LABELS[answer.label]
                self._state = (ranking.with_answers(answers), ids, row)
                if marker_before is not None and marker_before == self.marker:
                    self.marker = self.store.ranking_marker(self.version)
                return self._write_moved()
        return self.rebuild()

    def score_of(self, object_id: str) -> tuple[float, int] | None:
        """(score, rank from 1) of a ranked object."""
        if self._state is None or object_id not in self._state[2]:
            return None
        ranking, _, rows = self._state
        row = rows[object_id]
        rank = int((ranking.raw > ranking.raw[row]).sum()) + 1
        return float(ranking.scores[row]), rank
