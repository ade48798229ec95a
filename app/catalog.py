"""The catalogue: where the encoder (fingerprints, classes, anomaly scores) meets the SQL
store (the truth) and the FAISS index (a cache of the SQL fingerprints for fast search).

Ingest is read-merge-encode-write: the stored light curve of each posted object is merged
with the new detections, the whole light curve is re-encoded, and object row, light curve and
fingerprint are written in one SQL transaction before the index is updated. The index is
persisted every ``index_save_every`` upserts and on shutdown; after a crash it is stale
and rebuilt from SQL on start, so an acknowledged alert is never lost.

The catalogue answers with the *active* model version (``models.active`` in SQL). A checkpoint
that is not active is registered and reported (log, ``/readyz``) but not served: its fingerprints
are written by ``rtf-reencode``, which also makes it active; every process then switches to it
(:meth:`Catalog.switch_model`) without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from app.ranking import SMALL_CATALOGUE, AnomalyRanking
from app.records import detection_keys, history_of, stored_lightcurve
from app.settings import Settings
from encoder.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from encoder.inference import Encoded, Encoder, describe
from encoder.lightcurve import BANDS, LightCurve, LightCurveError
from indexing.classes import ClassFilter, class_key, coarse_part, fine_part
from indexing.models import utcnow
from indexing.persistence import file_sha256, save_index
from indexing.store import FeedbackAnswer, FingerprintRow, IngestBatch, ModelInfo, ObjectState, Store, StoredObject
from indexing.sync import LoadReport, load_or_rebuild
from indexing.vector_index import IndexConfig, Neighbor, VectorIndex, configure_faiss

log = logging.getLogger("rtf.catalog")
#: Overlap of successive syncs: writes committed with a slightly earlier timestamp are not missed.
SYNC_SLACK = timedelta(seconds=30)
PLOT_CACHE_SIZE = 64


class UnknownObject(KeyError):
    """No such object in the catalogue."""


@dataclass
class IngestedObjectResult:
    object_id: str
    new_alerts: int
    duplicate_alerts: int
    dropped_alerts: int
    n_detections: int
    label: str | None
    anomaly_score: float | None  # the catalogue ranking's estimate (None: the catalogue was empty)
    model_score: float


class _VersionChanged(Exception):
    """Another process made another model version active: switch, then ingest again."""

    def __init__(self, version: str) -> None:
        super().__init__(version)
        self.version = version


@dataclass
class _IngestPlan:
    """What one ingest transaction derived from the stored histories (see ``Catalog.ingest``)."""

    merged: list[LightCurve]
    new: dict[str, int]
    duplicate: dict[str, int]
    dropped: dict[str, int]
    enc: Encoded
    fingerprints: list[FingerprintRow]


class Catalog:
    def __init__(
        self,
        settings: Settings,
        encoder: Encoder,
        store: Store,
        index: VectorIndex,
        report: LoadReport,
        configured: ModelInfo | None = None,
    ):
        self.settings = settings
        self.encoder = encoder
        #: the checkpoint the service was started with, when it is not the active version
        self.configured = configured if configured is not None and configured.version != encoder.version else None
        self.store = store
        self.index = index
        self.load_report = report
        self._ingest_lock = threading.Lock()
        self._unsaved = 0
        self._synced_marker = report.sql_marker
        self._synced_at = utcnow() - SYNC_SLACK
        self._sync_lock = threading.Lock()
        self._stop_sync = threading.Event()
        self._sync_thread: threading.Thread | None = None
        self._plots: dict[tuple, bytes] = {}  # PNGs by (object, its row's version, catalogue size), oldest first
        self._plot_lock = threading.Lock()
        self.ranking = AnomalyRanking(store, encoder.version, encoder.latent_dim, encoder.fine_classes)

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, settings: Settings) -> Catalog:
        """Load the active model version and its index. The configured checkpoint is registered;
        it is served when it is the active version or when no version is active yet (a new
        database), otherwise the active version's checkpoint is loaded from its registered path."""
        ckpt_path = Path(settings.checkpoint) if settings.checkpoint else DEFAULT_CHECKPOINT
        info = describe(ckpt_path, settings.cache_dir)
        store = Store(settings.database_url)
        store.migrate()
        active = store.active_version()
        configured = store.register_model(
            info.version,
            path=str(ckpt_path.resolve()),
            sha256=file_sha256(ckpt_path),
            dim=info.dim,
            class_names=list(info.coarse_classes),
            metrics=info.metrics.get("val"),
            active=active is None,
        )
        served = ckpt_path
        if active is not None and active != info.version:
            served = _registered_path(next(m for m in store.list_models() if m.version == active), configured)
            log.warning(
                "checkpoint %s (model %s) is not the active version: serving %s. %d of %d objects have its "
                "fingerprints; to switch, run: rtf-reencode --checkpoint %s --activate",
                ckpt_path,
                configured.version,
                active,
                store.fingerprint_counts().get(configured.version, 0),
                store.count_objects(),
                ckpt_path,
            )
        encoder = cls._encoder(settings, served)
        index, report = cls._index(settings, store, encoder)
        catalog = cls(settings, encoder, store, index, report, configured)
        if store.count_unranked(encoder.version):  # re-encoded, or stored before the ranking: rank them now
            catalog.rerank(force=True)
        return catalog

    @staticmethod
    def _encoder(settings: Settings, checkpoint: Path, precision: str | None = None) -> Encoder:
        return Encoder.load(
            checkpoint,
            precision=precision or settings.precision,
            threads=settings.threads,
            cache_dir=settings.cache_dir,
        )

    @staticmethod
    def _index(settings: Settings, store: Store, encoder: Encoder) -> tuple[VectorIndex, LoadReport]:
        config = IndexConfig(kind=settings.index_kind, omp_threads=1)  # one query per thread: no OMP contention
        configure_faiss(config)
        index, report = load_or_rebuild(store, settings.index_dir, encoder.version, dim=encoder.dim, config=config)
        log.info("index %s: %d objects (%s)", encoder.version, report.count, report.reason or "loaded")
        return index, report

    def switch_model(self, version: str) -> bool:
        """Serve ``version`` from now on: load its checkpoint and its index from SQL while the
        current version keeps answering, then swap both at once. False when already serving it."""
        if version == self.version:
            return False
        info = next((m for m in self.store.list_models() if m.version == version), None)
        if info is None:
            raise KeyError(version)
        # the precision measured for the current version: no second calibration while serving
        encoder = self._encoder(self.settings, _registered_path(info, self.configured), self.encoder.precision)
        with self._ingest_lock:  # no ingest of the old version in between; reads go on
            self._save_index_locked()
            with self._sync_lock:
                index, report = self._index(self.settings, self.store, encoder)
                old = self.version
                self.encoder, self.index, self.load_report = encoder, index, report
                self._synced_marker, self._synced_at = report.sql_marker, utcnow() - SYNC_SLACK
                self.ranking = AnomalyRanking(self.store, version, encoder.latent_dim, encoder.fine_classes)
            if self.configured is not None and self.configured.version == version:
                self.configured = None
        with self._plot_lock:
            self._plots.clear()
        log.info("switched from model %s to %s: %d objects", old, version, len(index))
        self.rerank(force=True)  # a re-encoding writes no catalogue scores: rank the new version's
        return True

    def close(self) -> None:
        self._stop_sync.set()
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=10)
        self.save_index()
        self.store.close()

    # ---------------------------------------------------------------- several processes, one database
    def sync(self) -> int:
        """Apply fingerprints written to SQL since the last sync (by other processes, and this
        one's own) to this process's index; returns how many (0 when SQL did not change). When
        another version became active, switch to it."""
        active = self.store.active_version()
        if active is not None and active != self.version:
            self.switch_model(active)
            return len(self.index)
        with self._sync_lock:
            applied = self._apply_sql_changes()
        self.rerank()
        return applied

    def _apply_sql_changes(self) -> int:
        """The body of :meth:`sync`; the caller holds ``_sync_lock``."""
        if self.store.state_marker(self.version) == self._synced_marker:
            return 0
        started, applied = utcnow(), 0
        with self.store.scan_fingerprints(self.version, updated_since=self._synced_at - SYNC_SLACK) as scan:
            for b in scan:
                self.index.upsert(
                    b.object_ids,
                    b.vectors,
                    labels=b.labels,
                    anomaly_scores=_nan_to_none(b.anomaly_score),
                    last_jd=_nan_to_none(b.last_jd),
                    n_detections=b.n_detections.tolist(),
                )
                applied += len(b.object_ids)
            self._synced_marker = scan.marker
        self._synced_at = started
        return applied

    def start_sync(self, interval: float) -> None:
        """Call :meth:`sync` every ``interval`` seconds in a daemon thread until :meth:`close`."""

        def loop() -> None:
            while not self._stop_sync.wait(interval):
                try:
                    self.sync()
                except Exception:  # a failed sync is retried at the next tick
                    log.exception("index sync failed")

        self._sync_thread = threading.Thread(target=loop, name="rtf-index-sync", daemon=True)
        self._sync_thread.start()

    def save_index(self) -> None:
        with self._ingest_lock:
            self._save_index_locked()

    def _save_index_locked(self) -> None:
        """Persist the index with the SQL marker of a state it fully contains: sync first, so
        other processes' writes are in it too, then save under the marker that sync read."""
        with self._sync_lock:
            self._apply_sql_changes()
            save_index(self.index, self.settings.index_dir, model_version=self.version, sql_marker=self._synced_marker)
        self._unsaved = 0

    @property
    def version(self) -> str:
        return self.encoder.version

    # ---------------------------------------------------------------- the anomaly ranking
    def rerank(self, *, force: bool = False, scheduled: bool = True) -> int:
        """Rebuild the anomaly ranking (:mod:`app.ranking`) when it is due: never built, a small
        catalogue grown by a quarter, or (``scheduled``: the sync thread's call, not an ingest's, which
        must not wait seconds for a large catalogue) ``rank_interval`` seconds since the last one and
        something it depends on changed. Returns how many scores moved."""
        r = self.ranking
        small = len(r) < SMALL_CATALOGUE and r.pending >= max(1, len(r) // 4)
        due = scheduled and (r.built_at is None or time.time() - r.built_at >= self.settings.rank_interval)
        if not (force or not r.built or small or (due and (r.pending > 0 or r.stale()))):
            return 0
        changed = r.rebuild()
        self.index.set_anomaly_scores(changed)
        return len(changed)

    def feedback(self, object_id: str, label: str, user: str | None) -> tuple[FeedbackAnswer, tuple[float, int] | None]:
        """Record an expert's answer and re-rank with it: the answer, and the object's (score, rank)
        after it (None while it has no fingerprint of the served version)."""
        before = self.store.ranking_marker(self.version)
        try:
            answer = self.store.add_feedback(FeedbackAnswer(object_id, label, user))
        except KeyError:
            raise UnknownObject(object_id) from None
        self.index.set_anomaly_scores(self.ranking.answer(answer, before))
        return answer, self.ranking.score_of(object_id)

    def feedback_of(self, object_id: str, limit: int = 100) -> list[FeedbackAnswer]:
        """The answers about an object, newest first."""
        if self.store.get_object(object_id) is None:
            raise UnknownObject(object_id)
        return self.store.feedback(object_id, limit)

    # ---------------------------------------------------------------- encoding
    def encode(self, lcs: list[LightCurve]) -> Encoded:
        """Encode; a light curve whose fingerprint is not finite (extreme fluxes overflow the
        features) raises LightCurveError, so nothing non-finite is served or stored."""
        enc = self.encoder.encode(lcs)
        bad = ~np.isfinite(enc.vectors).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            msg = f"{lcs[i].object_id!r}: fluxes out of range (the fingerprint is not finite)"
            raise LightCurveError(f"lightcurves[{i}]", msg)
        return enc

    def check_classes(self, names: list[str] | None) -> str | None:
        """None when every name is a class of the served model (coarse or fine), else what is wrong:
        the valid names, and the right spelling of a miscased one."""
        coarse, fine = self.encoder.coarse_classes, self.encoder.fine_classes
        valid = list(dict.fromkeys([*coarse, *fine]))
        for name in names or ():
            if name in valid:
                continue
            fixed = next((c for c in valid if c.lower() == name.lower()), None)
            hint = f": did you mean {fixed!r}?" if fixed is not None else "."
            return f"unknown class {name!r}{hint} Valid coarse classes: {coarse}; fine classes: {fine}"
        return None

    def _filters(self, filters: dict[str, Any]) -> dict[str, Any]:
        """Filters as the index and the store take them (``indexing.filters``): class names become a
        ClassFilter, a name that is a coarse class being the coarse class."""
        out = dict(filters)
        if out.get("classes") is not None:
            names = [out["classes"]] if isinstance(out["classes"], str) else list(out["classes"])
            coarse = frozenset(n for n in names if n in self.encoder.coarse_classes)
            out["classes"] = ClassFilter(coarse, frozenset(names) - coarse)
        return out

    # ---------------------------------------------------------------- ingest
    def ingest(self, lcs: list[LightCurve]) -> list[IngestedObjectResult]:
        """Store alerts, re-encode each touched object on its whole history, update the index.

        Per object, in one SQL transaction that holds the object (see ``Store.ingest_merged``): the
        stored light curve is read, the posted points it lacks are added (a point already stored
        keeps its stored values: first write wins), only the most recent ``MAX_POINTS`` detections
        and upper limits are kept, and the fingerprint, classes and anomaly score are computed from
        exactly that light curve, which is what SQL holds after the commit. Stamps are not stored,
        so they are not encoded here either.
        """
        posted: dict[str, LightCurve] = {}
        position: dict[str, int] = {}
        for i, lc in enumerate(lcs):
            lc = replace(lc, stamps=None) if lc.stamps else lc
            posted[lc.object_id] = posted[lc.object_id].merge(lc) if lc.object_id in posted else lc
            position.setdefault(lc.object_id, i)
        for attempt in range(3):
            try:
                return self._ingest(posted, position)
            except _VersionChanged as changed:  # another process switched the active version
                if attempt == 2:
                    raise
                self.switch_model(changed.version)
        raise AssertionError("unreachable")

    def _ingest(self, posted: dict[str, LightCurve], position: dict[str, int]) -> list[IngestedObjectResult]:
        if not self.ranking.built:  # estimates need a ranking; it is never built inside the transaction
            self.rerank()
        results = self._ingest_locked(posted, position)
        if self.rerank(scheduled=False):  # ranked with everyone now: the ranked score, not the estimate
            for r in results:
                ranked = self.ranking.score_of(r.object_id)
                r.anomaly_score = ranked[0] if ranked is not None else r.anomaly_score
        return results

    def _ingest_locked(self, posted: dict[str, LightCurve], position: dict[str, int]) -> list[IngestedObjectResult]:
        with self._ingest_lock:
            version = self.version

            def prepare(stored: dict[str, StoredObject], active: str | None) -> tuple[IngestBatch, _IngestPlan]:
                if active is not None and active != version:
                    raise _VersionChanged(active)
                return self._plan_ingest(posted, position, stored)

            # no sync between this commit and this index update: a sync in between could take another
            # process's newer fingerprint of these objects, which the update would then overwrite
            with self._sync_lock:
                _, plan = self.store.ingest_merged(list(posted), prepare)
                self.index.upsert(
                    [lc.object_id for lc in plan.merged],
                    plan.enc.vectors,
                    labels=[class_key(f.label, f.fine_label) for f in plan.fingerprints],
                    anomaly_scores=[f.anomaly_score for f in plan.fingerprints],
                    last_jd=[float(lc.time[-1]) for lc in plan.merged],
                    n_detections=[len(lc) for lc in plan.merged],
                )
            self._unsaved += len(plan.merged)
            self.ranking.pending += len(plan.merged)
            if self._unsaved >= self.settings.index_save_every:
                self._save_index_locked()
        return [
            IngestedObjectResult(
                lc.object_id,
                plan.new[lc.object_id],
                plan.duplicate[lc.object_id],
                plan.dropped[lc.object_id],
                len(lc),
                plan.fingerprints[i].label,
                plan.fingerprints[i].anomaly_score,
                float(plan.enc.anomaly[i]),
            )
            for i, lc in enumerate(plan.merged)
        ]

    def _plan_ingest(
        self, posted: dict[str, LightCurve], position: dict[str, int], stored: dict[str, StoredObject]
    ) -> tuple[IngestBatch, _IngestPlan]:
        """Merge each posted light curve into its stored one, encode, and list the writes."""
        merged_lcs: list[LightCurve] = []
        new: dict[str, int] = {}
        duplicate: dict[str, int] = {}
        dropped: dict[str, int] = {}
        for oid, lc in posted.items():
            old = stored_lightcurve(stored[oid]) if oid in stored else None
            if old is not None and old.survey != lc.survey:
                raise LightCurveError(
                    f"lightcurves[{position[oid]}].survey",
                    f"{oid!r} is stored as a {old.survey} object, not {lc.survey}",
                )
            merged = lc if old is None else old.merge(lc, keep_existing=True)
            had = set() if old is None else detection_keys(old)
            kept, sent = detection_keys(merged), detection_keys(lc)
            new[oid] = len(kept - had)
            duplicate[oid] = len(sent & had)
            dropped[oid] = len(sent - kept - had)
            merged_lcs.append(merged)
        try:
            enc = self.encode(merged_lcs)
        except LightCurveError as exc:  # name the request's light curve, not the merged list's
            i = int(exc.field.split("[", 1)[1].split("]", 1)[0])
            raise LightCurveError(f"lightcurves[{position[merged_lcs[i].object_id]}]", exc.message) from None
        objects, fingerprints = [], []
        fine = _fine_labels(self.encoder, enc)
        ids, detections = [lc.object_id for lc in merged_lcs], [len(lc) for lc in merged_lcs]
        scores = self.ranking.estimate(ids, enc.vectors, fine, enc.anomaly, detections)
        for i, lc in enumerate(merged_lcs):
            fingerprints.append(fingerprint_row(self.encoder, enc, i, lc.object_id, scores[i]))
            objects.append(
                ObjectState(object_id=lc.object_id, survey=lc.survey, ra=lc.ra, dec=lc.dec, known_label=lc.label)
            )
        histories = {lc.object_id: history_of(lc) for lc in merged_lcs}
        plan = _IngestPlan(merged_lcs, new, duplicate, dropped, enc, fingerprints)
        return IngestBatch(objects, histories, self.version, fingerprints), plan

    # ---------------------------------------------------------------- reads
    def get_object(self, object_id: str) -> tuple[ObjectState, LightCurve]:
        """An object's row with the served version's predictions, and its stored light curve."""
        state = self.store.get_object(object_id, self.version)
        history = self.store.get_history(object_id)
        lc = None if state is None or history is None else stored_lightcurve(StoredObject(state, history, 0))
        if state is None or lc is None:  # unknown, or not one detection yet (as :meth:`lightcurve`)
            raise UnknownObject(object_id)
        return state, lc

    def lightcurve(self, object_id: str, *, missing_ok: bool = False) -> LightCurve | None:
        """The stored light curve of an object (all its detections and upper limits)."""
        stored = self.store.read_objects([object_id]).get(object_id)
        lc = None if stored is None else stored_lightcurve(stored)
        if lc is None and not missing_ok:
            raise UnknownObject(object_id)
        return lc

    def vector_of(self, object_id: str) -> np.ndarray:
        v = self.index.get_vector(object_id)
        if v is None:
            v = self.store.get_fingerprint(object_id, self.version)
        if v is None:
            raise UnknownObject(object_id)
        return v

    def search(self, vector: np.ndarray, k: int, filters: dict[str, Any], exclude: tuple[str, ...] = ()) -> list[dict]:
        """The k nearest neighbours of ``vector`` passing ``filters`` (names of ``indexing.filters``)."""
        hits: list[Neighbor] = self.index.search(vector, k, exclude_ids=exclude, **self._filters(filters))
        return [self._hit(h) for h in hits]

    def _hit(self, h: Neighbor) -> dict:
        attrs = self.index.get_attributes(h.object_id) or {}
        key = attrs.get("label")
        return {
            "object_id": h.object_id,
            "similarity": round(float(h.score), 6),
            "class": coarse_part(key),
            "fine_class": fine_part(key),
            "anomaly_score": _finite(attrs.get("anomaly_score")),
            "n_detections": attrs.get("n_detections"),
        }

    def neighbors(self, object_id: str, k: int, filters: dict[str, Any]) -> list[dict]:
        return self.search(self.vector_of(object_id), k, filters, exclude=(object_id,))

    def anomalies(
        self, limit: int, cursor: str | None, filters: dict[str, Any]
    ) -> tuple[list[ObjectState], str | None]:
        return self.store.anomalies(model_version=self.version, limit=limit, cursor=cursor, **self._filters(filters))

    def neighbors_many(self, object_ids: list[str], k: int, filters: dict[str, Any]) -> list[list[dict]]:
        """:meth:`neighbors` of several objects in one index pass (UnknownObject names the first unknown)."""
        vectors = np.stack([self.vector_of(o) for o in object_ids])
        hits = self.index.search_batch(vectors, k + 1, **self._filters(filters))
        return [
            [self._hit(h) for h in row if h.object_id != oid][:k] for oid, row in zip(object_ids, hits, strict=True)
        ]

    def list_objects(
        self, limit: int, cursor: str | None, filters: dict[str, Any]
    ) -> tuple[list[ObjectState], str | None]:
        return self.store.list_objects(model_version=self.version, limit=limit, cursor=cursor, **self._filters(filters))

    def delete(self, object_id: str) -> bool:
        """Delete an object from SQL (light curve, fingerprints of every version) and from this
        process's index. False when unknown. Other processes drop it from their index at restart."""
        with self._ingest_lock:
            if not self.store.delete_object(object_id):
                return False
            self.index.delete([object_id])
            self._unsaved += 1
            self.ranking.pending += 1
        with self._plot_lock:
            self._plots = {key: png for key, png in self._plots.items() if key[0] != object_id}
        return True

    def decoded(self, object_id: str, points: int = 200) -> tuple[LightCurve, tuple]:
        """The object's light curve and the curve its fingerprint decodes to, (t, mag, sigma, bands):
        ``points`` times from the first detection to 20 days after the last, per band observed.
        ValueError when the served model has no query decoder."""
        _, lc = self.get_object(object_id)
        if not self.encoder.can_reconstruct:
            raise ValueError(f"the served model {self.version} has no query decoder: no decoded curve")
        return lc, self._decode(lc, points)

    def _decode(self, lc: LightCurve, points: int = 200) -> tuple:
        bands = [BANDS[b] for b in np.unique(lc.band)]
        t = np.linspace(0.0, max(lc.duration, 1.0) + 20, points)  # from the first detection on
        mag, sigma = self.encoder.reconstruct(lc, t, bands)
        return t, mag, sigma, bands

    def plot(self, object_id: str) -> bytes:
        from app.plots import render_plot

        state, lc = self.get_object(object_id)
        key = (object_id, state.updated_at, state.n_detections, len(self.index))
        with self._plot_lock:
            if key in self._plots:  # the same object, unchanged: concurrent and repeated views draw once
                return self._plots[key]
        recon = self._decode(lc) if self.encoder.can_reconstruct else None
        nbs = []
        for nb in self.neighbors(object_id, 3, {}):
            nb_lc = self.lightcurve(nb["object_id"], missing_ok=True)
            if nb_lc is not None:
                nbs.append((nb_lc, nb["similarity"], nb["class"]))
        title = f"{object_id}  predicted {state.label or '?'}  anomaly {state.anomaly_score or 0:.2f}"
        png = render_plot(lc, recon, nbs, title)
        with self._plot_lock:
            self._plots[key] = png
            while len(self._plots) > PLOT_CACHE_SIZE:
                self._plots.pop(next(iter(self._plots)))
        return png


# ---------------------------------------------------------------------------- helpers
def top_label(probs: dict[str, float]) -> str | None:
    """The most probable class, or None without probabilities."""
    return max(probs, key=probs.__getitem__) if probs else None


def class_probabilities(encoder: Encoder, enc: Encoded, i: int) -> tuple[dict[str, float], dict[str, float]]:
    """(coarse, fine) class probabilities of the i-th encoded light curve, by class name."""

    def named(names: list[str], probs: np.ndarray | None) -> dict[str, float]:
        return {} if probs is None else dict(zip(names, map(float, probs[i]), strict=True))

    return named(encoder.coarse_classes, enc.coarse_probs), named(encoder.fine_classes, enc.fine_probs)


def fingerprint_row(
    encoder: Encoder, enc: Encoded, i: int, object_id: str, anomaly_score: float | None = None
) -> FingerprintRow:
    """The i-th encoded light curve as stored: fingerprint, coarse class and probabilities, the
    catalogue ranking's score (None: ranked at the next re-ranking), the model's own score, and the
    fine class (None for a model without a fine head)."""
    coarse, fine = class_probabilities(encoder, enc, i)
    return FingerprintRow(
        object_id, enc.vectors[i], top_label(coarse), coarse, anomaly_score, top_label(fine), float(enc.anomaly[i])
    )


def _fine_labels(encoder: Encoder, enc: Encoded) -> list[str | None]:
    """The predicted fine class of each encoded light curve (None without a fine head)."""
    if enc.fine_probs is None or not encoder.fine_classes:
        return [None] * len(enc.vectors)
    names = encoder.fine_classes
    return [names[j] for j in enc.fine_probs.argmax(axis=1).tolist()]


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _finite(x: object) -> float | None:
    return float(x) if isinstance(x, (int, float)) and np.isfinite(x) else None


def _registered_path(info: ModelInfo, configured: ModelInfo | None) -> Path:
    """The checkpoint file of a registered version: its path when that file is still the one
    registered, else the configured checkpoint when it is the same file (a moved clone)."""
    for path in (info.path, configured.path if configured is not None else None):
        if path and Path(path).is_file() and file_sha256(Path(path)) == info.sha256:
            return Path(path)
    raise CheckpointError(
        f"the active model {info.version} was registered from {info.path}, which is missing or changed; "
        f"restore that file, or re-encode the catalogue with this checkpoint: "
        f"rtf-reencode --checkpoint <checkpoint> --activate"
    )


DEMO_COMMAND = "rtf-synth --survey ztf --n 3000 --seed 2026 --min-detections 3 --out {path}"


def seed_demo(catalog: Catalog, path: Path, batch: int = 250) -> int:
    """Ingest the demo catalogue (RTF light-curve parquet, e.g. a synthetic survey) with a progress bar."""
    from tqdm import tqdm

    from encoder.readers import read_lightcurves_parquet

    if not path.is_file():
        log.warning("no demo catalogue at %s; make one with: %s", path, DEMO_COMMAND.format(path=path))
        return 0
    t0 = time.perf_counter()
    lcs = read_lightcurves_parquet(path)
    for start in tqdm(range(0, len(lcs), batch), desc="demo catalogue", unit="batch"):
        catalog.ingest(lcs[start : start + batch])
    catalog.rerank(force=True)
    catalog.save_index()
    log.info("demo catalogue: %d objects in %.1f s", len(lcs), time.perf_counter() - t0)
    return len(lcs)
