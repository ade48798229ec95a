"""The catalogue verbs beside search: list objects (cursor paging, filters), neighbours of many
objects in one call, and delete (gone from SQL and the index, also after a restart)."""

from __future__ import annotations

from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from encoder.lightcurve import BANDS
from tests._server import as_json, bundled_dim, synth_lightcurves


def _walk(client, **params) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        r = client.get("/v1/objects", params=params | ({"cursor": cursor} if cursor else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= params.get("limit", 100)
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert pages < 1000


def test_objects_are_listed_once_each_in_id_order_with_filters(client):
    everything = _walk(client, limit=37)
    ids = [o["object_id"] for o in everything]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == client.app.state.catalog.store.count_objects()
    scored = [o for o in everything if o["label"] is not None]
    assert scored and all(o["probabilities"] and o["anomaly_score"] is not None for o in scored)
    label = scored[0]["label"]
    some = _walk(client, limit=50, **{"class": label})
    assert {o["object_id"] for o in some} == {o["object_id"] for o in everything if o["label"] == label}
    many = _walk(client, min_detections=20)
    assert {o["object_id"] for o in many} == {o["object_id"] for o in everything if o["n_detections"] >= 20}
    late = sorted(o["last_jd"] for o in everything if o["last_jd"] is not None)[len(everything) // 2]
    assert {o["object_id"] for o in _walk(client, since=late)} == {
        o["object_id"] for o in everything if o["last_jd"] is not None and o["last_jd"] >= late
    }
    for bad in ("not-a-cursor!", "AAAA"):
        r = client.get("/v1/objects", params={"cursor": bad})
        assert r.status_code == 422 and "cursor" in r.text, (bad, r.text)


def test_neighbours_of_many_objects_match_one_at_a_time(client):
    ids = [o["object_id"] for o in client.get("/v1/objects", params={"limit": 5}).json()["items"]]
    r = client.post("/v1/neighbors", json={"object_ids": ids, "k": 4})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["object_id"] for x in results] == ids
    for oid, x in zip(ids, results, strict=True):
        one = client.get(f"/v1/objects/{quote(oid, safe='')}/neighbors", params={"k": 4}).json()["neighbors"]
        assert [n["object_id"] for n in x["neighbors"]] == [n["object_id"] for n in one] and len(one) == 4
        assert oid not in [n["object_id"] for n in x["neighbors"]]
    r = client.post("/v1/neighbors", json={"object_ids": [ids[0], "no-such-object"], "k": 3})
    assert r.status_code == 404 and "no-such-object" in r.json()["detail"]
    assert client.post("/v1/neighbors", json={"object_ids": ids * 21}).status_code == 422  # 105 > 100
    assert client.post("/v1/neighbors", json={"object_ids": []}).status_code == 422


def test_a_deleted_object_is_gone_from_sql_and_the_index_also_after_a_restart(make_settings, fresh_url, tmp_path):
    settings = make_settings(fresh_url, index_dir=tmp_path / "index", demo=False, sync_interval=0)
    lcs = synth_lightcurves(6, seed=9090)
    victim = lcs[2].object_id
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/alerts", json=as_json(lcs)).status_code == 200
        vector = c.app.state.catalog.store.get_fingerprint(victim, c.app.state.catalog.version)
        assert c.delete(f"/v1/objects/{victim}").status_code == 204
        assert c.get(f"/v1/objects/{victim}").status_code == 404
        assert c.get(f"/v1/objects/{victim}/neighbors").status_code == 404
        hits = c.post("/v1/search", json={"vector": vector.tolist(), "k": 10}).json()["neighbors"]
        assert victim not in [h["object_id"] for h in hits] and len(hits) == 5
        assert c.delete(f"/v1/objects/{victim}").status_code == 404
        assert c.get("/readyz").json()["objects"] == 5
    with TestClient(create_app(settings)) as c:  # the saved index still held it: SQL decides
        assert c.get(f"/v1/objects/{victim}").status_code == 404 and c.get("/readyz").json()["objects"] == 5
        hits = c.post("/v1/search", json={"vector": vector.tolist(), "k": 10}).json()["neighbors"]
        assert victim not in [h["object_id"] for h in hits]
        assert victim not in [o["object_id"] for o in c.get("/v1/objects").json()["items"]]
        # posted again, it is a new object
        r = c.post("/v1/alerts", json=as_json([lcs[2]]))
        assert r.status_code == 200 and r.json()["objects"][0]["new_alerts"] == len(lcs[2])


def test_ztf_field_names_are_accepted_and_mjd_is_given_beside_jd(client):
    det = [
        {"jd": 2459300.5, "fid": 1, "magpsf": 18.2, "sigmapsf": 0.05},
        {"jd": 2459301.5, "fid": 2, "magpsf": 18.0, "sigmapsf": 0.06},
        {"jd": 2459302.5, "band": "g", "mag": 17.9, "mag_err": 0.05},
    ]
    body = {"object_id": "ztf-names", "detections": det, "upper_limits": [{"jd": 2459299.5, "fid": 2, "diffmaglim": 20.4}]}
    r = client.post("/v1/alerts", json={"lightcurves": [body]})
    assert r.status_code == 200 and r.json()["objects"][0]["new_alerts"] == 3, r.text
    got = client.get("/v1/objects/ztf-names").json()
    assert [d["band"] for d in got["lightcurve"]["detections"]] == ["g", "r", "g"]
    assert [d["mag"] for d in got["lightcurve"]["detections"]] == pytest.approx([18.2, 18.0, 17.9])
    assert got["lightcurve"]["upper_limits"][0]["band"] == "r"
    assert got["first_mjd"] == pytest.approx(got["first_jd"] - 2400000.5) and got["last_mjd"] == pytest.approx(59302.0)
    assert got["fingerprint"] is None
    vector = client.get("/v1/objects/ztf-names", params={"fingerprint": "true"}).json()["fingerprint"]
    stored = client.app.state.catalog.store.get_fingerprint("ztf-names", client.app.state.catalog.version)
    assert vector == pytest.approx(stored.tolist(), abs=1e-6) and len(vector) == bundled_dim()
    listed = client.get("/v1/objects", params={"limit": 500}).json()["items"]
    assert all(o["last_mjd"] is None or o["last_mjd"] == pytest.approx(o["last_jd"] - 2400000.5) for o in listed)
    for bad, where in (
        ({"jd": 2459300.5, "fid": 1, "band": "g", "mag": 18, "mag_err": 0.1}, "detections"),
        ({"jd": 2459300.5, "fid": 4, "mag": 18, "mag_err": 0.1}, "fid"),
        ({"jd": 2459300.5, "fid": 1, "mag": 18, "magpsf": 18, "mag_err": 0.1}, "magpsf"),
    ):
        r = client.post("/v1/alerts", json={"lightcurves": [{"object_id": "ztf-bad", "detections": [bad]}]})
        assert r.status_code == 422 and where in r.text, (bad, r.text)
    assert client.get("/v1/objects/ztf-bad").status_code == 404


def test_cone_search_finds_what_is_within_the_radius_nearest_first(client):
    base = {"detections": [{"jd": 2459300.5, "band": "g", "mag": 18.2, "mag_err": 0.05}]}
    arcsec = 1 / 3600
    where = {
        "cone-1": (10.0, 20.0 + 1 * arcsec),
        "cone-5": (10.0 + 5 * arcsec / np.cos(np.radians(20)), 20.0),
        "cone-30": (10.0, 20.0 - 30 * arcsec),
        "cone-100": (10.0, 20.0 + 100 * arcsec),
        "cone-wrap": (359.9999, 0.0),
        "cone-pole": (180.0, 89.9995),
    }
    lcs = [base | {"object_id": k, "ra": ra, "dec": dec} for k, (ra, dec) in where.items()]
    assert client.post("/v1/alerts", json={"lightcurves": lcs}).status_code == 200
    items = client.get("/v1/cone", params={"ra": 10.0, "dec": 20.0, "radius": 60}).json()["items"]
    assert [i["object_id"] for i in items] == ["cone-1", "cone-5", "cone-30"]
    assert [i["separation_arcsec"] for i in items] == pytest.approx([1.0, 5.0, 30.0], abs=1e-3)
    assert items[0]["ra"] == 10.0 and items[0]["label"] is not None
    assert [i["object_id"] for i in client.get("/v1/cone", params={"ra": 10.0, "dec": 20.0, "radius": 60,
                                                                    "limit": 2}).json()["items"]] == ["cone-1", "cone-5"]
    wrap = client.get("/v1/cone", params={"ra": 0.0001, "dec": 0.0, "radius": 2}).json()["items"]
    assert [i["object_id"] for i in wrap] == ["cone-wrap"] and wrap[0]["separation_arcsec"] == pytest.approx(0.72, abs=1e-2)
    pole = client.get("/v1/cone", params={"ra": 0.0, "dec": 89.9999, "radius": 3}).json()["items"]
    assert [i["object_id"] for i in pole] == ["cone-pole"]  # across the pole: ra differs by 180 degrees
    for bad in (
        {"ra": 360, "dec": 0, "radius": 1},
        {"ra": 1, "dec": 91, "radius": 1},
        {"ra": 1, "dec": 0, "radius": 0},
        {"ra": 1, "dec": 0, "radius": 7200},
        {"ra": 1, "dec": 0},
    ):
        assert client.get("/v1/cone", params=bad).status_code == 422, bad


def test_class_filters_refuse_names_they_do_not_know_and_say_which_are_valid(client):
    oid = client.get("/v1/objects", params={"limit": 1}).json()["items"][0]["object_id"]
    ok = client.get(f"/v1/objects/{quote(oid, safe='')}/neighbors", params={"class": ["SNIa", "SNcc"], "k": 3})
    assert ok.status_code == 200 and {n["class"] for n in ok.json()["neighbors"]} <= {"SNIa", "SNcc"}
    cases = [
        ("Snia", "did you mean 'SNIa'", "SNIa"),
        ("snii", "did you mean 'SNII'", "KN"),
        ("Quasar", "unknown class", "SNIIn"),
    ]
    for name, says, lists in cases:
        for r in (
            client.get(f"/v1/objects/{quote(oid, safe='')}/neighbors", params={"class": name}),
            client.get("/v1/anomalies", params={"class": name}),
            client.get("/v1/objects", params={"class": name}),
            client.post("/v1/neighbors", json={"object_ids": [oid], "classes": [name]}),
            client.post("/v1/search", json={"vector": [0.1] * bundled_dim(), "classes": ["SNIa", name]}),
        ):
            assert r.status_code == 422, (name, r.text)
            detail = r.json()["errors"][0]
            assert says in detail["msg"] and lists in detail["msg"] and detail["loc"][-1] in ("class", "classes"), detail


def test_class_filters_take_fine_classes_as_well_as_coarse_ones(client):
    everything = client.get("/v1/objects", params={"limit": 500}).json()["items"]
    fine_of = {o["object_id"]: o["fine_label"] for o in everything}
    coarse_of = {o["object_id"]: o["label"] for o in everything}
    assert None not in fine_of.values(), "the bundled model predicts a fine class for every object"
    # a fine class that is not also a coarse name, and the coarse class its objects fall in
    fine = max((f for f in set(fine_of.values()) if f not in set(coarse_of.values())), key=list(fine_of.values()).count)
    members = {o for o, f in fine_of.items() if f == fine}
    listed = client.get("/v1/objects", params={"class": fine, "limit": 500}).json()["items"]
    assert {o["object_id"] for o in listed} == members and all(o["fine_label"] == fine for o in listed)
    ranked = client.get("/v1/anomalies", params={"class": fine, "limit": 500}).json()["items"]
    assert {a["object_id"] for a in ranked} == members
    probe = next(iter(members))
    near = client.get(f"/v1/objects/{quote(probe, safe='')}/neighbors", params={"class": fine, "k": 500}).json()
    assert {n["object_id"] for n in near["neighbors"]} == members - {probe}
    assert all(n["fine_class"] == fine for n in near["neighbors"])
    # a coarse name still selects the coarse class, whatever the fine one
    parent = coarse_of[probe]
    near = client.get(f"/v1/objects/{quote(probe, safe='')}/neighbors", params={"class": parent, "k": 500}).json()
    assert {n["object_id"] for n in near["neighbors"]} == {o for o, c in coarse_of.items() if c == parent} - {probe}


def test_the_fingerprint_export_is_every_stored_fingerprint(client):
    import pyarrow as pa

    r = client.get("/v1/export/fingerprints")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(r.content).read_all()
    catalog = client.app.state.catalog
    assert table.schema.metadata[b"model"].decode() == catalog.version
    assert table.num_rows == catalog.store.count_fingerprints(catalog.version) > 0
    ids = table.column("object_id").to_pylist()
    assert len(set(ids)) == len(ids)
    vectors = np.asarray(table.column("fingerprint").combine_chunks().flatten()).reshape(len(ids), catalog.encoder.dim)
    for i in (0, len(ids) // 2, len(ids) - 1):
        np.testing.assert_array_equal(vectors[i], catalog.store.get_fingerprint(ids[i], catalog.version))
    stored = catalog.store.get_objects(ids[:50], catalog.version)
    labels, fine = table.column("label").to_pylist(), table.column("fine_label").to_pylist()
    assert [(labels[i], fine[i]) for i in range(50)] == [(stored[o].label, stored[o].fine_label) for o in ids[:50]]


def test_the_decoded_curve_is_what_the_encoder_reconstructs(client):
    oid = client.get("/v1/objects", params={"limit": 1, "min_detections": 10}).json()["items"][0]["object_id"]
    r = client.get(f"/v1/objects/{quote(oid, safe='')}/decoded", params={"points": 30})
    assert r.status_code == 200, r.text
    body = r.json()
    catalog = client.app.state.catalog
    lc = catalog.lightcurve(oid)
    assert {b["band"] for b in body["bands"]} == {BANDS[b] for b in np.unique(lc.band)}
    t = np.linspace(0.0, max(lc.duration, 1.0) + 20, 30)
    mag, sigma = catalog.encoder.reconstruct(lc, t, [b["band"] for b in body["bands"]])
    for i, band in enumerate(body["bands"]):
        assert len(band["mjd"]) == len(band["mag"]) == 30 and band["mjd"][0] == pytest.approx(body["first_mjd"])
        np.testing.assert_allclose(band["mag"], mag[i], atol=1e-3)
        np.testing.assert_allclose(band["mag_err"], sigma[i], atol=1e-3)
    assert client.get("/v1/objects/no-such-object/decoded").status_code == 404
    assert client.get(f"/v1/objects/{quote(oid, safe='')}/decoded", params={"points": 1}).status_code == 422
