"""The HTTP API end to end: the real app, the bundled checkpoint, SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import io

import numpy as np
from fastapi.testclient import TestClient

from app.jsonform import EXAMPLE, LightCurveIn
from app.main import create_app
from encoder.readers import write_ztf_avro
from tests._server import bundled_dim
from training.synthetic import SurveyConfig, generate_survey

EXAMPLE = copy.deepcopy(EXAMPLE)


def fresh_lightcurves(n: int = 6, seed: int = 99):
    return generate_survey(SurveyConfig(survey="ztf", n_objects=n, seed=seed, min_detections=3))


def as_json(lcs) -> dict:
    return {"lightcurves": [LightCurveIn.from_lightcurve(lc).model_dump(mode="json", exclude_none=True) for lc in lcs]}


def some_object(client) -> str:
    return client.get("/v1/anomalies", params={"limit": 1}).json()["items"][0]["object_id"]


def test_service_endpoints_answer(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["objects"] >= 200
    models = client.get("/v1/models").json()["models"]
    assert [m["active"] for m in models].count(True) == 1 and models[0]["dim"] == bundled_dim()
    text = client.get("/metrics").text
    assert "rtf_request_seconds_bucket" in text and "rtf_catalog_objects" in text
    assert 'method="GET",route="/readyz",status="200"' in text  # labelled by the matched route and status
    client.get("/v1/objects/no-such-object")
    text = client.get("/metrics").text
    assert 'route="/v1/objects/{object_id}",status="404"' in text
    spec = client.get("/openapi.json").json()
    assert "LightCurveBatch" in spec["components"]["schemas"]
    for path in ("/v1/fingerprints", "/v1/alerts", "/v1/classify"):
        assert "avro/binary" in spec["paths"][path]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_fingerprints_json_and_avro_agree(client):
    lcs = fresh_lightcurves(4)
    r = client.post("/v1/fingerprints", json=as_json(lcs))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dim"] == bundled_dim() and [f["object_id"] for f in body["fingerprints"]] == [lc.object_id for lc in lcs]
    buf = io.BytesIO()
    write_ztf_avro(lcs, buf)
    r2 = client.post("/v1/fingerprints", content=buf.getvalue(), headers={"Content-Type": "avro/binary"})
    assert r2.status_code == 200, r2.text
    by_id = {f["object_id"]: np.array(f["vector"]) for f in r2.json()["fingerprints"]}
    for f in body["fingerprints"]:
        a, b = np.array(f["vector"]), by_id[f["object_id"]]
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.98  # Avro carries the same photometry


def test_ingest_is_idempotent_and_merges_history(client):
    lc = fresh_lightcurves(1, seed=123)[0]
    early, n = lc.first(max(1, len(lc) // 2)), len(lc)
    r = client.post("/v1/alerts", json=as_json([early]))
    assert r.status_code == 200, r.text
    assert r.json()["new_alerts"] == len(early)
    again = client.post("/v1/alerts", json=as_json([early])).json()
    assert again["new_alerts"] == 0 and again["duplicate_alerts"] == len(early)
    full = client.post("/v1/alerts", json=as_json([lc])).json()
    assert full["new_alerts"] == n - len(early) and full["objects"][0]["n_detections"] == n
    obj = client.get(f"/v1/objects/{lc.object_id}").json()
    assert obj["n_detections"] == n and len(obj["lightcurve"]["detections"]) == n
    assert abs(sum(obj["probabilities"].values()) - 1) < 1e-4 and obj["label"] in obj["probabilities"]
    nb = client.get(f"/v1/objects/{lc.object_id}/neighbors", params={"k": 5}).json()["neighbors"]
    assert len(nb) == 5 and lc.object_id not in {x["object_id"] for x in nb}


def test_neighbors_are_sorted_and_filtered(client):
    oid = some_object(client)
    nb = client.get(f"/v1/objects/{oid}/neighbors", params={"k": 20}).json()["neighbors"]
    sims = [x["similarity"] for x in nb]
    assert len(nb) == 20 and sims == sorted(sims, reverse=True) and all(-1 <= s <= 1.000001 for s in sims)
    cls = nb[-1]["class"]
    only = client.get(f"/v1/objects/{oid}/neighbors", params={"k": 5, "class": cls}).json()["neighbors"]
    assert only and all(x["class"] == cls for x in only)
    many = client.get(f"/v1/objects/{oid}/neighbors", params={"k": 5, "min_detections": 30}).json()["neighbors"]
    assert all(x["n_detections"] >= 30 for x in many)
    rng = client.get(f"/v1/objects/{oid}/neighbors", params={"k": 5, "anomaly_max": 0.5}).json()["neighbors"]
    assert all(x["anomaly_score"] <= 0.5 for x in rng)
    assert client.get("/v1/objects/nope/neighbors").status_code == 404
    assert client.get(f"/v1/objects/{oid}/neighbors", params={"k": 0}).status_code == 422
    assert client.get(f"/v1/objects/{oid}/neighbors", params={"k": 5000}).status_code == 422


def test_search_by_vector_and_by_lightcurve(client):
    oid = some_object(client)
    r = client.post("/v1/fingerprints", json=as_json(fresh_lightcurves(1)))
    vec = r.json()["fingerprints"][0]["vector"]
    by_vec = client.post("/v1/search", json={"vector": vec, "k": 3}).json()
    assert len(by_vec["neighbors"]) == 3 and by_vec["object_id"] is None
    by_lc = client.post("/v1/search", json={"lightcurve": as_json(fresh_lightcurves(1))["lightcurves"][0], "k": 3})
    assert [x["object_id"] for x in by_lc.json()["neighbors"]] == [x["object_id"] for x in by_vec["neighbors"]]
    assert oid  # the catalogue is not empty
    assert client.post("/v1/search", json={"vector": [1.0, 2.0], "k": 3}).status_code == 422
    assert client.post("/v1/search", json={"vector": [0.0] * bundled_dim()}).status_code == 422
    assert client.post("/v1/search", json={"k": 3}).status_code == 422
    both = {"vector": vec, "lightcurve": EXAMPLE}
    assert client.post("/v1/search", json=both).status_code == 422


def test_classify_returns_probabilities(client):
    r = client.post("/v1/classify", json=as_json(fresh_lightcurves(3)))
    assert r.status_code == 200
    for p in r.json()["predictions"]:
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-4
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
        assert p["fine_label"] in p["fine_probabilities"] and 0 <= p["anomaly_score"] <= 1


def test_anomaly_pages_are_stable_and_complete(client):
    seen, cursor, scores = [], None, []
    while True:
        params = {"limit": 37} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/anomalies", params=params).json()
        seen += [x["object_id"] for x in page["items"]]
        scores += [x["score"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == client.get("/readyz").json()["objects"]
    assert scores == sorted(scores, reverse=True)
    label = client.get("/v1/anomalies", params={"limit": 1}).json()["items"][0]["label"]
    only = client.get("/v1/anomalies", params={"limit": 50, "class": label}).json()["items"]
    assert only and all(x["label"] == label for x in only)
    assert client.get("/v1/anomalies", params={"cursor": "garbage!!"}).status_code == 422
    assert client.get("/v1/anomalies", params={"limit": 0}).status_code == 422


def test_plot_is_a_png(client):
    r = client.get(f"/v1/objects/{some_object(client)}/plot")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n" and len(r.content) > 10_000
    assert client.get("/v1/objects/unknown-object/plot").status_code == 404


def test_bad_input_gets_a_4xx_naming_the_problem(client):
    bad = copy.deepcopy(EXAMPLE)
    bad["detections"][2]["mag_err"] = 0
    r = client.post("/v1/alerts", json={"lightcurves": [bad]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "mag_err"
    r = client.post("/v1/fingerprints", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post("/v1/alerts", content=b"Obj\x01garbage", headers={"Content-Type": "avro/binary"})
    assert r.status_code == 422 and "Avro" in r.json()["detail"]
    r = client.post("/v1/alerts", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert client.get(f"/v1/objects/{bad['object_id']}").status_code == 404  # nothing partially stored


def test_limits_and_api_key(make_settings, tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path / 'k.db'}", api_key="s3cret", max_body_bytes=4096, demo=False)
    with TestClient(create_app(settings)) as c:
        body = {"lightcurves": [EXAMPLE]}
        assert c.post("/v1/alerts", json=body).status_code == 401
        assert c.post("/v1/alerts", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/alerts", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.post("/v1/fingerprints", json=body).status_code == 200  # reads need no key
        big = {"lightcurves": [EXAMPLE] * 40}
        assert c.post("/v1/fingerprints", json=big).status_code == 413


def test_a_checkpoint_with_a_posterior_weight_serves_and_searches_its_longer_fingerprints(make_settings, tmp_path):
    from encoder.model.rtf import ModelConfig
    from encoder.taxonomy import FINE_CLASSES
    from training.train import TrainConfig, train

    model = ModelConfig(
        d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0, max_len=32, latent_dim=8, posterior_weight=1.0
    )
    train(
        TrainConfig(
            data=["synthetic:ztf:90:3"],
            out=str(tmp_path / "run"),
            model=model,
            gp_fit=False,
            epochs=1,
            batch_size=16,
            workers=1,
            threads=1,
        )
    )
    settings = make_settings(f"sqlite:///{tmp_path / 'p.db'}", checkpoint=tmp_path / "run" / "model.pt")
    dim = 8 + len(FINE_CLASSES)
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/models").json()["models"][0]["dim"] == dim
        body = as_json(fresh_lightcurves(1))
        vec = c.post("/v1/fingerprints", json=body).json()["fingerprints"][0]["vector"]
        assert len(vec) == dim and abs(np.linalg.norm(vec[:8]) - 1) < 1e-4 and abs(sum(vec[8:]) - 1) < 1e-4
        by_vec = c.post("/v1/search", json={"vector": vec, "k": 3}).json()["neighbors"]
        by_lc = c.post("/v1/search", json={"lightcurve": body["lightcurves"][0], "k": 3}).json()["neighbors"]
        assert len(by_vec) == 3 and [x["object_id"] for x in by_lc] == [x["object_id"] for x in by_vec]
        oid = by_vec[0]["object_id"]
        assert len(c.get(f"/v1/objects/{oid}/neighbors", params={"k": 5}).json()["neighbors"]) == 5
        assert c.post("/v1/search", json={"vector": vec[:8], "k": 3}).status_code == 422
