"""The catalogue-relative anomaly ranking (encoder.rarity, app.ranking) and experts' answers:
what the scores mean, that answers re-rank, are stored with time and user, and outlive restarts and
re-encoding; the store's ranking marker and guarded score writes. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.catalog import Catalog
from app.main import create_app
from app.ranking import split_served
from app.reencode import reencode
from encoder.checkpoint import load_checkpoint
from encoder.inference import Encoder
from encoder.rarity import BETA, PIN, Ranking, expected_surprisal, mid_percentile, strata
from indexing.store import FeedbackAnswer, FingerprintRow, IngestBatch, Store
from indexing.vector_index import IndexConfig, VectorIndex
from tests._server import as_json, synth_lightcurves
from training.evaluate.context import catalogue_ranking
from training.variants import jittered_checkpoint


def _catalogue(seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A dense common kind (90 objects around one direction) and 6 scattered odd ones."""
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.05, (90, 16)) + np.eye(16)[0]
    odd = rng.normal(0, 1.0, (6, 16))
    vectors = np.vstack([common, odd]).astype(np.float32)
    fine = ["SNIa"] * 90 + ["TDE", "KN", "PISN", "SNIa", "SNIa", "CV"]
    model = np.full(96, 0.5)  # the checkpoint's score says nothing here: the catalogue must
    return vectors, fine, model


def test_scores_are_mid_rank_percentiles_and_rare_objects_rank_first():
    vectors, fine, model = _catalogue()
    r = Ranking.build(vectors, fine, model)
    assert np.all((r.scores > 0) & (r.scores < 1))
    # a percentile: n objects, scores in steps of 1/(2n), the top one above all others
    assert np.allclose(r.scores * 2 * len(r), np.round(r.scores * 2 * len(r)))
    assert np.allclose(r.scores, mid_percentile(np.sort(r.raw), r.raw))
    top = set(r.order()[:6].tolist())
    assert len(top & set(range(90, 96))) >= 5  # isolated and of rare classes here: first


def test_answers_pin_and_pull_their_neighbours():
    vectors, fine, model = _catalogue(1)
    r = Ranking.build(vectors, fine, model)
    first = int(r.order()[0])
    liked = 7  # a common object an expert finds interesting
    after = r.with_answers({first: -1, liked: +1})
    assert after.order()[0] == liked and after.order()[-1] == first
    assert after.raw[liked] == pytest.approx(r.rarity[liked] + PIN)
    # the common objects, which resemble the liked one, rose; the odd ones (not like it) hardly moved
    assert np.median(after.raw[:90] - r.raw[:90]) > 0.3 * BETA
    odd = [i for i in range(90, 96) if i != first]
    assert np.all(np.abs(after.raw[odd] - r.raw[odd]) < 0.1 * BETA)
    assert r.with_answers({}).scores.tolist() == r.scores.tolist()


def test_an_estimate_of_a_ranked_object_is_its_score_and_an_empty_ranking_has_none():
    vectors, fine, model = _catalogue(2)
    r = Ranking.build(vectors, fine, model)
    est = r.estimate(vectors[:10], fine[:10], model[:10], own_rows=np.arange(10))
    assert np.allclose(est, r.scores[:10])
    # a new object like the odd ones is estimated high, one like the common kind low
    new = r.estimate(vectors[[91, 3]] * 1.01, [fine[91], fine[3]], model[:2])
    assert new[0] > 0.8 > 0.5 > new[1]
    # one above every object is ranked as if it had joined: the top of n + 1, not 1.0
    top = r.estimate(vectors[[91]] * 1.01, [fine[91]], np.array([9.0]))
    assert top[0] == pytest.approx((2 * len(r) + 1) / (2 * (len(r) + 1)))
    empty = Ranking.build(np.zeros((0, 16), np.float32), [], np.zeros(0))
    assert np.isnan(empty.estimate(vectors[:2], fine[:2], model[:2])).all()


def test_strata_pool_small_bins_with_the_next_and_the_last_with_the_one_before():
    # bins of STRATA (2, 3, 5, 8, 13, 21): [1] 60, [2] 10, [3-4] 45, [5-7] 100, [8-12] 0, [13-20] 0, [21+] 20
    detections = np.array([1] * 60 + [2] * 10 + [3] * 45 + [6] * 100 + [30] * 20)
    assert strata(detections, min_size=50).tolist() == [0, 1, 1, 2, 2, 2, 2]
    assert strata(detections, min_size=1).tolist() == [0, 1, 2, 3, 4, 4, 4]  # empty bins join the next
    assert strata(np.array([5] * 3), min_size=50).tolist() == [0] * 7  # too small to split at all


def test_an_odd_sparse_light_curve_is_rare_among_sparse_ones():
    """Sparse fingerprints crowd together: beside well-sampled ones every sparse object looks ordinary,
    the odd one among them included; ranked within its detection stratum it comes first."""
    rng = np.random.default_rng(5)
    rich = rng.normal(0, 1.0, (100, 16))  # well-sampled and diverse
    sparse = rng.normal(0, 0.05, (100, 16)) + np.eye(16)[0]  # one or two detections: all alike ...
    odd = np.eye(16)[0] + rng.normal(0, 0.4, (1, 16))  # ... but this one
    vectors = np.vstack([rich, sparse, odd]).astype(np.float32)
    detections = np.array([20] * 100 + [1] * 101)
    fine, model = ["SNIa"] * 201, np.full(201, 0.5)
    odd_row = 200
    pooled = Ranking.build(vectors, fine, model, detections=detections, edges=())
    stratified = Ranking.build(vectors, fine, model, detections=detections)
    assert pooled.isolation[odd_row] < np.median(pooled.isolation[:100])  # less isolated than a rich one
    assert odd_row not in pooled.order()[:20].tolist()
    assert stratified.order()[0] == odd_row
    # an estimate reads the same strata: the odd one re-posted as new is estimated at its score
    est = stratified.estimate(vectors[[odd_row]], ["SNIa"], model[:1], detections=np.array([1]))
    assert est[0] == pytest.approx(stratified.scores[odd_row], abs=0.01)


def test_expected_surprisal_sees_a_spread_posterior_and_two_signals_outvote_one():
    classes = ["SNIa", "KN"]
    counts = {"SNIa": 98, "KN": 0}
    confident, spread = np.array([[1.0, 0.0]]), np.array([[0.6, 0.4]])
    assert (
        expected_surprisal(spread, classes, counts, 98)[0] > 2 * expected_surprisal(confident, classes, counts, 98)[0]
    )
    # an unseen kind: called SNIa (the predicted class is common) with a spread posterior, isolated, and
    # scored ordinary by the model; the mean of the two highest percentiles puts it first, a mean of all three not
    rng = np.random.default_rng(6)
    vectors = np.vstack([rng.normal(0, 0.05, (97, 8)) + np.eye(8)[0], rng.normal(0, 1.0, (1, 8))]).astype(np.float32)
    probs = np.vstack([np.tile([0.97, 0.03], (97, 1)), [0.55, 0.45]])
    model = np.concatenate([rng.uniform(0.2, 0.8, 97), [0.0]])
    fine = ["SNIa"] * 98
    kw = {"probabilities": probs, "classes": classes}
    assert Ranking.build(vectors, fine, model, **kw).order()[0] == 97
    assert Ranking.build(vectors, fine, model, agree=3, **kw).order()[0] != 97
    hard = Ranking.build(vectors, fine, model)  # the predicted class alone: no surprisal signal
    assert hard.percentiles[1, 97] == pytest.approx(0.5, abs=0.01)


def test_an_unchanged_vector_keeps_its_index_place():
    index = VectorIndex(8, IndexConfig(kind="flat"))
    v = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    index.upsert([f"o{i}" for i in range(5)], v, anomaly_scores=[0.1] * 5)
    index.upsert(["o1", "o2"], v[1:3], anomaly_scores=[0.9, 0.8])  # a re-ranking: same vectors
    assert index.stats()["labels"] == 5 and index.stats()["tombstones"] == 0
    assert index.get_attributes("o1")["anomaly_score"] == 0.9
    index.upsert(["o3"], v[3:4] * 2 + 1, anomaly_scores=[0.5])  # a new vector: a new place
    assert index.stats()["tombstones"] == 1
    assert index.set_anomaly_scores({"o4": 0.7, "unknown": 0.1}) == 1
    assert index.get_attributes("o4")["anomaly_score"] == 0.7


def _store_with(url: str, n: int = 3) -> Store:
    store = Store(url)
    store.migrate()
    v = np.eye(4, dtype=np.float32)
    fps = [FingerprintRow(f"o{i}", v[i], "SNIa", None, None, "SNIa", 0.5) for i in range(n)]
    store.write(IngestBatch(histories={}, model_version="m1", fingerprints=fps))
    return store


def test_feedback_and_ranking_marker_in_the_store(fresh_url):
    store = _store_with(fresh_url)
    marker = store.ranking_marker("m1")
    inputs = store.ranking_inputs("m1")
    assert inputs.object_ids == ["o0", "o1", "o2"] and np.isnan(inputs.anomaly_score).all()
    assert store.set_anomaly_scores("m1", {"o0": (0.9, int(inputs.source_revision[0]))}) == 1
    assert store.ranking_marker("m1") == marker  # the ranking's own writes do not make it stale
    assert store.set_anomaly_scores("m1", {"o1": (0.9, 99)}) == 0  # re-encoded since: its score stands
    assert store.get_object("o0", "m1").anomaly_score == 0.9 and store.get_object("o1", "m1").anomaly_score is None
    assert store.get_object("o0", "m1").model_score == 0.5
    first = store.add_feedback(FeedbackAnswer("o1", "anomaly", "ada"))
    store.add_feedback(FeedbackAnswer("o1", "not_anomaly", None))
    assert store.ranking_marker("m1") != marker
    assert store.latest_answers() == {"o1": "not_anomaly"} == store.latest_answers(["o1", "o2"])
    history = store.feedback("o1")
    assert [(a.label, a.user) for a in history] == [("not_anomaly", None), ("anomaly", "ada")]
    assert history[1].created_at == first.created_at and first.created_at.tzinfo is not None
    with pytest.raises(KeyError):
        store.add_feedback(FeedbackAnswer("nope", "anomaly"))
    with pytest.raises(ValueError, match="label"):
        store.add_feedback(FeedbackAnswer("o1", "maybe"))
    assert store.delete_object("o1") and store.latest_answers() == {}  # answers go with their object


def test_feedback_api_reranks_needs_the_key_and_outlives_a_restart(make_settings, fresh_url, tmp_path):
    settings = make_settings(fresh_url, index_dir=tmp_path / "index", demo=False, sync_interval=0, api_key="k")
    lcs = synth_lightcurves(60, seed=77)
    key = {"X-API-Key": "k"}
    with TestClient(create_app(settings)) as c:
        ingested = c.post("/v1/alerts", json=as_json(lcs), headers=key).json()["objects"]
        assert all(0 < o["anomaly_score"] < 1 and 0 <= o["model_score"] <= 1 for o in ingested)
        items = c.get("/v1/anomalies", params={"limit": 500}).json()["items"]
        scores = [i["score"] for i in items]
        assert len(items) == 60 and scores == sorted(scores, reverse=True) and len(set(scores)) > 50
        top, last = items[0]["object_id"], items[-1]["object_id"]
        url = f"/v1/anomalies/{top}/feedback"
        assert c.post(url, json={"label": "not_anomaly"}).status_code == 401
        assert c.post(url, json={"label": "maybe"}, headers=key).status_code == 422
        assert c.post(url, json={"label": "anomaly", "user": "x" * 129}, headers=key).status_code == 422
        assert c.post("/v1/anomalies/nope/feedback", json={"label": "anomaly"}, headers=key).status_code == 404
        r = c.post(url, json={"label": "not_anomaly", "user": "ada"}, headers=key)
        assert r.status_code == 201 and r.json()["rank"] == 60 and r.json()["user"] == "ada"
        r = c.post(f"/v1/anomalies/{last}/feedback", json={"label": "anomaly"}, headers=key)
        assert r.json()["rank"] == 1
        items = c.get("/v1/anomalies", params={"limit": 500}).json()["items"]
        assert items[0]["object_id"] == last and items[0]["answer"] == "anomaly"
        assert items[-1]["object_id"] == top and items[-1]["answer"] == "not_anomaly"
        below = c.get("/v1/anomalies", params={"anomaly_max": items[-1]["score"]}).json()["items"]
        assert [i["object_id"] for i in below] == [top]  # the filter reads the same score
    with TestClient(create_app(settings)) as c:  # restarted: the answers and the ranking they made stand
        items = c.get("/v1/anomalies", params={"limit": 500}).json()["items"]
        assert items[0]["object_id"] == last and items[-1]["object_id"] == top
        history = c.get(f"/v1/anomalies/{top}/feedback").json()["answers"]
        assert [(a["label"], a["user"]) for a in history] == [("not_anomaly", "ada")]
        assert c.get("/v1/anomalies/nope/feedback").status_code == 404


def test_the_service_ranks_as_the_evaluations_do(make_settings, fresh_url, tmp_path):
    """app.ranking reads the fine-class probabilities back from the served fingerprints and the detection
    counts from SQL: its scores are those of training.evaluate's catalogue_ranking on the same objects."""
    settings = make_settings(fresh_url, index_dir=tmp_path / "index", demo=False, sync_interval=0)
    lcs = synth_lightcurves(150, seed=4247)
    with TestClient(create_app(settings)) as c:
        c.post("/v1/alerts", json=as_json(lcs))
        catalog: Catalog = c.app.state.catalog
        catalog.rerank(force=True)
        served = {i["object_id"]: i["score"] for i in c.get("/v1/anomalies", params={"limit": 500}).json()["items"]}
        enc = catalog.encoder.encode(lcs)
        fingerprint, probabilities = split_served(enc.vectors, catalog.encoder.latent_dim)
    assert probabilities is not None and np.allclose(probabilities, enc.fine_probs, atol=1e-5)
    assert fingerprint.shape[1] == catalog.encoder.latent_dim
    offline = catalogue_ranking(catalog.encoder, enc, lcs).scores
    gap = np.abs(np.array([served[lc.object_id] for lc in lcs]) - offline)
    assert np.median(gap) < 1e-3 and gap.max() < 0.05
    assert strata(np.array([len(lc) for lc in lcs])).max() >= 1  # two strata: the detections matter


def test_answers_outlive_reencoding(make_settings, fresh_url, tmp_path_factory):
    path = Path(tmp_path_factory.mktemp("ckpt")) / "second.pt"
    new = jittered_checkpoint(path, scale=0.02, seed=3)
    settings = make_settings(fresh_url, index_dir=tmp_path_factory.mktemp("index"), demo=False, sync_interval=0)
    lcs = synth_lightcurves(40, seed=4243)
    with TestClient(create_app(settings)) as c:
        c.post("/v1/alerts", json=as_json(lcs))
        items = c.get("/v1/anomalies", params={"limit": 500}).json()["items"]
        top = items[0]["object_id"]
        c.post(f"/v1/anomalies/{top}/feedback", json={"label": "not_anomaly"})
    with TestClient(create_app(settings.model_copy(update={"checkpoint": path}))) as c:  # registers the new one
        catalog: Catalog = c.app.state.catalog
        report = reencode(catalog.store, Encoder(load_checkpoint(path), precision="onnx", threads=1), activate=True)
        assert report.activated
        catalog.sync()  # the service follows the switch and ranks the new version, with the answer
        assert catalog.version == new
        items = c.get("/v1/anomalies", params={"limit": 500}).json()["items"]
        assert len(items) == 40 and items[-1]["object_id"] == top and items[-1]["answer"] == "not_anomaly"


def test_unranked_fingerprints_are_ranked_when_the_service_starts(make_settings, fresh_url, tmp_path):
    settings = make_settings(fresh_url, index_dir=tmp_path / "index", demo=False, sync_interval=0)
    lcs = synth_lightcurves(30, seed=4244)
    with TestClient(create_app(settings)) as c:
        c.post("/v1/alerts", json=as_json(lcs))
        version = c.app.state.catalog.version
    store = Store(fresh_url)
    with store.engine.begin() as conn:  # as migration 0006 leaves rows: the model's score kept, no ranking score
        conn.exec_driver_sql("UPDATE fingerprints SET anomaly_score = NULL")
    assert store.count_unranked(version) == 30
    store.close()
    with TestClient(create_app(settings)) as c:
        items = c.get("/v1/anomalies", params={"limit": 100}).json()["items"]
        assert len(items) == 30 and all(0 < i["score"] < 1 and i["model_score"] is not None for i in items)


def test_reposting_the_same_alerts_rewrites_no_score(make_settings, fresh_url, tmp_path, monkeypatch):
    import app.ranking

    # scores that moved less than this stay as SQL holds them: the ranking's and SQL's then differ (as by up
    # to 0.001 in a large catalogue), and a re-posted object must keep SQL's, not be rewritten
    monkeypatch.setattr(app.ranking, "SCORE_TOLERANCE", 0.3)
    settings = make_settings(fresh_url, index_dir=tmp_path / "index", demo=False, sync_interval=0)
    lcs = synth_lightcurves(30, seed=4245)
    with TestClient(create_app(settings)) as c:
        c.post("/v1/alerts", json=as_json(lcs))
        c.post("/v1/alerts", json=as_json(synth_lightcurves(12, seed=4246)))  # the ranking moves on
        catalog: Catalog = c.app.state.catalog
        marker = catalog.store.state_marker(catalog.version)
        again = c.post("/v1/alerts", json=as_json(lcs)).json()
        assert again["new_alerts"] == 0 and catalog.store.state_marker(catalog.version) == marker
