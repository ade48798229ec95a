"""A corpus of bad input: every case gets a 4xx whose body names the problem, never a 500, and a
rejected POST /v1/alerts stores nothing (object and alert counts unchanged, the object is 404).
Runs on SQLite and PostgreSQL (the ``client`` fixture of conftest.py)."""

from __future__ import annotations

import copy
import dataclasses
import gzip
import io
import json
import time
from urllib.parse import quote, unquote

import pytest
from sqlalchemy import text

from app.jsonform import EXAMPLE
from encoder.readers import write_ztf_avro
from tests._server import as_json, bundled_dim, synth_lightcurves

JSON = {"Content-Type": "application/json"}
AVRO = {"Content-Type": "avro/binary"}
SQLI = "'; DROP TABLE objects; --"


def lc(oid: str, **changes) -> dict:
    d = copy.deepcopy(EXAMPLE) | {"object_id": oid}
    return d | changes


def det(oid: str, i: int = 0, **changes) -> dict:
    d = lc(oid)
    d["detections"][i] |= changes
    for k in [k for k, v in changes.items() if v is ...]:  # ... = remove the field
        del d["detections"][i][k]
    return d


def batch(*lcs: dict) -> bytes:
    return json.dumps({"lightcurves": list(lcs)}).encode()


def raw(s: str) -> bytes:
    return s.encode()


def _avro(lcs) -> bytes:
    buf = io.BytesIO()
    write_ztf_avro(lcs, buf)
    return buf.getvalue()


def _many_detections(oid: str, n: int) -> bytes:
    dets = ",".join(f'{{"jd":{2459000.5 + i * 0.01:.4f},"band":"g","mag":19.0,"mag_err":0.1}}' for i in range(n))
    return raw(f'{{"lightcurves":[{{"object_id":"{oid}","detections":[{dets}]}}]}}')


# (case id, object ids the body names, body, content type, allowed statuses, text the error must contain)
def json_cases() -> list:
    flux = {"jd": 2459000.5, "band": "g", "flux": 100.0, "flux_err": 1.0}
    return [
        ("malformed-json", [], raw('{"lightcurves": [{"object_id": "x",'), JSON, {422}, "json"),
        ("trailing-comma", [], raw('{"lightcurves": [],}'), JSON, {422}, "json"),
        (
            "nan-literal",
            ["bad-nan"],
            raw(
                '{"lightcurves":[{"object_id":"bad-nan","detections":[{"jd":NaN,"band":"g","mag":19,"mag_err":0.1}]}]}'
            ),
            JSON,
            {422},
            "finite",
        ),
        (
            "infinity-literal",
            ["bad-inf"],
            raw(
                '{"lightcurves":[{"object_id":"bad-inf","detections":[{"jd":2459000.5,"band":"g","mag":Infinity,"mag_err":0.1}]}]}'
            ),
            JSON,
            {422},
            "finite",
        ),
        ("empty-body", [], b"", JSON, {422}, "json"),
        ("null-body", [], raw("null"), JSON, {422}, "object"),
        ("list-body", [], raw("[]"), JSON, {422}, "object"),
        ("deeply-nested", [], b"[" * 50_000 + b"]" * 50_000, JSON, {422}, "json"),
        ("invalid-utf8", [], b'{"lightcurves":[{"object_id":"\xff\xfe"}]}', JSON, {422}, "json"),
        ("no-lightcurves-key", [], raw('{"x": 1}'), JSON, {422}, "lightcurves"),
        ("empty-lightcurves", [], batch(), JSON, {422}, "lightcurves"),
        (
            "extra-top-field",
            ["bad-extra"],
            raw(json.dumps({"lightcurves": [lc("bad-extra")], "x": 1})),
            JSON,
            {422},
            "x",
        ),
        ("empty-detections", ["bad-empty"], batch(lc("bad-empty", detections=[])), JSON, {422}, "detections"),
        ("missing-detections", ["bad-nodets"], batch({"object_id": "bad-nodets"}), JSON, {422}, "detections"),
        ("missing-object-id", [], batch({"detections": EXAMPLE["detections"]}), JSON, {422}, "object_id"),
        ("zero-mag-err", ["bad-err0"], batch(det("bad-err0", 1, mag_err=0)), JSON, {422}, "mag_err"),
        ("negative-mag-err", ["bad-errneg"], batch(det("bad-errneg", 2, mag_err=-0.05)), JSON, {422}, "mag_err"),
        (
            "zero-flux-err",
            ["bad-ferr0"],
            batch(lc("bad-ferr0", detections=[flux | {"flux_err": 0}])),
            JSON,
            {422},
            "flux_err",
        ),
        (
            "negative-flux-err",
            ["bad-ferrneg"],
            batch(lc("bad-ferrneg", detections=[flux | {"flux_err": -1}])),
            JSON,
            {422},
            "flux_err",
        ),
        (
            "flux-overflow",
            ["bad-huge"],
            batch(lc("bad-huge", detections=[flux | {"flux": 1e300, "flux_err": 1e-300}])),
            JSON,
            {422},
            "outside",
        ),
        ("mag-out-of-range", ["bad-mag"], batch(det("bad-mag", 0, mag=1e308)), JSON, {422}, "mag"),
        ("jd-out-of-range", ["bad-jd"], batch(det("bad-jd", 0, jd=12.5)), JSON, {422}, "jd"),
        ("100k-detections", ["bad-100k"], _many_detections("bad-100k", 100_000), JSON, {413, 422}, "detections"),
        ("unknown-band", ["bad-band"], batch(det("bad-band", 0, band="q")), JSON, {422}, "band"),
        ("lsst-band-on-ztf", ["bad-uband"], batch(det("bad-uband", 1, band="u")), JSON, {422}, "band"),
        ("lsst-band-y-on-ztf", ["bad-yband"], batch(det("bad-yband", 1, band="y")), JSON, {422}, "band"),
        ("sql-band", ["bad-sqlband"], batch(det("bad-sqlband", 0, band=SQLI)), JSON, {422}, "band"),
        ("sql-band-short", ["bad-sqlband2"], batch(det("bad-sqlband2", 0, band="';--")), JSON, {422}, "band"),
        ("unknown-survey", ["bad-survey"], batch(lc("bad-survey", survey="hst")), JSON, {422}, "survey"),
        ("jd-string", ["bad-jdstr"], batch(det("bad-jdstr", 0, jd="yesterday")), JSON, {422}, "jd"),
        ("mag-list", ["bad-maglist"], batch(det("bad-maglist", 0, mag=[19.0])), JSON, {422}, "mag"),
        (
            "detections-object",
            ["bad-detobj"],
            batch(lc("bad-detobj", detections={"jd": 1})),
            JSON,
            {422},
            "detections",
        ),
        ("object-id-int", [], batch(lc("x") | {"object_id": 12345}), JSON, {422}, "object_id"),
        ("ra-string", ["bad-ra"], batch(lc("bad-ra", ra="north")), JSON, {422}, "ra"),
        ("ra-out-of-range", ["bad-ra2"], batch(lc("bad-ra2", ra=1000.0)), JSON, {422}, "ra"),
        ("dec-out-of-range", ["bad-dec"], batch(lc("bad-dec", dec=-91.0)), JSON, {422}, "dec"),
        ("negative-not-bool", ["bad-neg"], batch(det("bad-neg", 0, negative="maybe")), JSON, {422}, "negative"),
        ("missing-jd", ["bad-nojd"], batch(det("bad-nojd", 0, jd=...)), JSON, {422}, "jd"),
        ("missing-mag-err", ["bad-nomagerr"], batch(det("bad-nomagerr", 0, mag_err=...)), JSON, {422}, "mag_err"),
        ("missing-band", ["bad-noband"], batch(det("bad-noband", 0, band=...)), JSON, {422}, "band"),
        ("jd-and-mjd", ["bad-jdmjd"], batch(det("bad-jdmjd", 0, mjd=59000.0)), JSON, {422}, "mjd"),
        ("mag-and-flux", ["bad-magflux"], batch(det("bad-magflux", 0, flux=1.0, flux_err=1.0)), JSON, {422}, "flux"),
        ("unknown-meta", ["bad-meta"], batch(det("bad-meta", 0, meta={"nope": 1.0})), JSON, {422}, "meta"),
        ("bad-base64-stamp", ["bad-stamp"], batch(lc("bad-stamp", stamps={"science": "!!!"})), JSON, {422}, "stamps"),
        (
            "upper-limit-band",
            ["bad-ulband"],
            batch(lc("bad-ulband", upper_limits=[{"jd": 2459000.5, "band": "q", "mag": 20}])),
            JSON,
            {422},
            "band",
        ),
        ("label-too-long", ["bad-label"], batch(lc("bad-label", label="x" * 10_000)), JSON, {422}, "label"),
        ("empty-object-id", [], batch(lc("")), JSON, {422}, "object_id"),
        ("blank-object-id", [], batch(lc("   ")), JSON, {422}, "object_id"),
        ("object-id-129", [], batch(lc("x" * 129)), JSON, {422}, "object_id"),
        ("unicode-object-id-129", [], batch(lc("é" * 129)), JSON, {422}, "object_id"),
        ("emoji-object-id-200", [], batch(lc("\U0001f52d" * 200)), JSON, {422}, "object_id"),
        ("object-id-slash", [], batch(lc("ZTF/../../etc/passwd")), JSON, {422}, "object_id"),
        ("object-id-nul", [], batch(lc("bad\x00nul")), JSON, {422}, "object_id"),
        ("object-id-newline", [], batch(lc("bad\nline")), JSON, {422}, "object_id"),
        ("object-id-tab", [], batch(lc("bad\ttab")), JSON, {422}, "object_id"),
        (
            "valid-then-invalid",
            ["good-first", "bad-second"],
            batch(lc("good-first"), det("bad-second", 1, mag_err=-1)),
            JSON,
            {422},
            "mag_err",
        ),
        (
            "invalid-then-valid",
            ["bad-first", "good-second"],
            batch(det("bad-first", 0, band="q"), lc("good-second")),
            JSON,
            {422},
            "band",
        ),
        ("too-many-lightcurves", [], batch(*[lc(f"bad-many-{i}") for i in range(1001)]), JSON, {413, 422}, "1000"),
        (
            "unsupported-content-type",
            [],
            raw(json.dumps({"lightcurves": [lc("bad-ct")]})),
            {"Content-Type": "text/csv"},
            {415},
            "Content-Type",
        ),
    ]


def avro_cases() -> list:
    lcs = synth_lightcurves(2, seed=4242)
    good = _avro(lcs)
    ids = [x.object_id for x in lcs]
    flipped = bytearray(good)
    flipped[-3] ^= 0xFF  # in the last block's sync marker
    return [
        ("avro-garbage", [], b"\x00\x01 definitely not avro" * 20, AVRO, {422}, "Avro"),
        ("avro-empty", [], b"", AVRO, {422}, "Avro"),
        ("avro-magic-only", [], b"Obj\x01", AVRO, {422}, "Avro"),
        ("avro-truncated-half", ids, good[: len(good) // 2], AVRO, {422}, "Avro"),
        ("avro-truncated-tail", ids, good[:-7], AVRO, {422}, "Avro"),
        ("avro-bad-sync-marker", ids, bytes(flipped), AVRO, {422}, "Avro"),
        ("avro-json-body", [], json.dumps({"lightcurves": [lc("bad-avrojson")]}).encode(), AVRO, {422}, "Avro"),
    ]


CASES = json_cases() + avro_cases()


def _counts(client) -> tuple[int, int, int]:
    store = client.app.state.catalog.store
    with store.engine.connect() as conn:
        alerts = conn.execute(text("SELECT COALESCE(SUM(n_detections), 0) FROM lightcurves")).scalar_one()
        objects = conn.execute(text("SELECT COUNT(*) FROM objects")).scalar_one()
    return objects, alerts, client.get("/readyz").json()["objects"]


def _names_the_problem(body: object, needle: str) -> bool:
    """An RFC 9457 problem whose ``detail`` (or, for 422, one of its ``errors``) holds the needle
    (case-insensitive); each field error has a path and a message."""
    assert isinstance(body, dict) and {"type", "title", "status", "detail"} <= set(body), body
    assert isinstance(body["detail"], str) and body["detail"], body
    errors = body.get("errors", [])
    assert all({"loc", "msg"} <= set(e) and e["msg"] for e in errors), errors
    return needle.lower() in json.dumps([body["detail"], errors], ensure_ascii=False).lower()


@pytest.mark.parametrize("name,oids,body,headers,statuses,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_alerts_are_rejected_and_nothing_is_stored(client, name, oids, body, headers, statuses, needle):
    before = _counts(client)
    r = client.post("/v1/alerts", content=body, headers=headers)
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert _names_the_problem(r.json(), needle), r.text[:500]
    assert _counts(client) == before
    for oid in oids:
        assert client.get(f"/v1/objects/{quote(oid, safe='')}").status_code == 404


@pytest.mark.parametrize("endpoint", ["/v1/fingerprints", "/v1/classify"])
def test_bad_bodies_to_read_endpoints_are_4xx(client, endpoint):
    for name, _, body, headers, statuses, needle in CASES:
        r = client.post(endpoint, content=body, headers=headers)
        assert r.status_code in statuses, (name, r.status_code, r.text[:300])
        assert _names_the_problem(r.json(), needle), (name, r.text[:300])


def test_oversized_bodies_get_413_and_store_nothing(client):
    before = _counts(client)
    limit = client.app.state.settings.max_body_bytes
    r = client.post("/v1/alerts", content=b" " * (limit + 1), headers=JSON)  # declared Content-Length
    assert r.status_code == 413 and str(limit) in r.json()["detail"]

    def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(limit // 2**20 + 2):
            yield b" " * 2**20

    r = client.post("/v1/alerts", content=chunks(), headers=JSON)
    assert r.status_code == 413 and str(limit) in r.json()["detail"]
    r = client.post("/v1/alerts", content=b"{}", headers=JSON | {"Content-Length": "not-a-number"})
    assert r.status_code in (400, 413)
    assert _counts(client) == before


def test_avro_with_a_corrupt_stamp_is_accepted_without_the_stamp(client):
    lc0 = synth_lightcurves(1, seed=5151)[0]
    fits = b"SIMPLE  =                    T" + b" " * (2880 - 30)
    broken = gzip.compress(fits)[:-9]  # truncated gzip: the trailer is gone
    with_stamps = dataclasses.replace(lc0, stamps={"science": broken, "template": b"\x1f\x8bnot gzip at all"})
    r = client.post("/v1/alerts", content=_avro([with_stamps]), headers=AVRO)
    assert r.status_code == 200, r.text
    assert r.json()["new_alerts"] == len(lc0)
    obj = client.get(f"/v1/objects/{lc0.object_id}").json()
    assert obj["n_detections"] == len(lc0) and obj["lightcurve"].get("stamps") is None


def test_odd_but_valid_object_ids_are_stored_verbatim(client):
    """SQL-like, unicode, RTL-override and 128-character ids are data, not code: stored and read back."""
    base = synth_lightcurves(1, seed=6161)[0]
    odd = [SQLI, "Robert'); DROP TABLE alerts;--", "é" * 128, "\u202eevil", "a?b#c d", "x" * 128]
    before_objects = _counts(client)[0]
    body = as_json([dataclasses.replace(base, object_id=o) for o in odd])
    r = client.post("/v1/alerts", json=body)
    assert r.status_code == 200, r.text
    assert [o["object_id"] for o in r.json()["objects"]] == odd
    for o in odd:
        got = client.get(f"/v1/objects/{quote(o, safe='')}")
        assert got.status_code == 200 and got.json()["object_id"] == o and got.json()["n_detections"] == len(base)
        nb = client.get(f"/v1/objects/{quote(o, safe='')}/neighbors", params={"k": 3})
        assert nb.status_code == 200 and len(nb.json()["neighbors"]) == 3
    assert _counts(client)[0] == before_objects + len(odd)  # the tables are still there, and grew by exactly these
    r = client.get("/v1/anomalies", params={"class": SQLI})  # a class name is data too: unknown, refused
    assert r.status_code == 422 and "unknown class" in r.json()["errors"][0]["msg"]


def _some_object(client) -> str:
    """The most anomalous object's id, quoted for a URL path (it may be one of the odd ids above)."""
    return quote(client.get("/v1/anomalies", params={"limit": 1}).json()["items"][0]["object_id"], safe="")


def test_bad_query_parameters_are_4xx(client):
    oid = _some_object(client)
    nb = f"/v1/objects/{oid}/neighbors"
    cases = [
        (nb, {"k": 10**12}, "k"),
        (nb, {"k": -1}, "k"),
        (nb, {"k": "ten"}, "k"),
        (nb, {"k": "1e3"}, "k"),
        (nb, {"anomaly_min": 2}, "anomaly_min"),
        (nb, {"anomaly_max": "high"}, "anomaly_max"),
        (nb, {"min_detections": -5}, "min_detections"),
        (nb, {"class": [f"c{i}" for i in range(40)]}, "class"),
        ("/v1/anomalies", {"limit": -1}, "limit"),
        ("/v1/anomalies", {"limit": 0}, "limit"),
        ("/v1/anomalies", {"limit": 10**20}, "limit"),
        ("/v1/anomalies", {"since": "yesterday"}, "since"),
        ("/v1/anomalies", {"class": "x" * 65}, "class"),
        ("/v1/anomalies", {"cursor": "garbage!!"}, "cursor"),
        ("/v1/anomalies", {"cursor": "eyJ9"}, "cursor"),  # base64 of '{}': not a cursor
        ("/v1/anomalies", {"cursor": "bnVsbA=="}, "cursor"),  # base64 of 'null'
        ("/v1/anomalies", {"cursor": "eyJzIjogTmFOLCAibyI6ICJhIn0="}, "cursor"),  # {"s": NaN, "o": "a"}
        ("/v1/anomalies", {"cursor": "eyJzIjogMSwgIm8iOiAxfQ=="}, "cursor"),  # {"s": 1, "o": 1}
        ("/v1/anomalies", {"cursor": "\x00\x01"}, "cursor"),
        ("/v1/anomalies", {"cursor": "x" * 600}, "cursor"),
        ("/v1/objects/" + "x" * 129, {}, "object_id"),
        ("/v1/objects/%00", {}, "object_id"),
        ("/v1/objects/bad%0Aid/neighbors", {}, "object_id"),
        ("/v1/objects/" + "x" * 129 + "/neighbors", {}, "object_id"),
        ("/v1/objects/" + "x" * 129 + "/plot", {}, "object_id"),
    ]
    for path, params, needle in cases:
        r = client.get(path, params=params)
        assert r.status_code == 422, (path[:60], params, r.status_code, r.text[:300])
        assert _names_the_problem(r.json(), needle), (path[:60], params, r.text[:300])
    for path in (
        "/v1/objects/no-such-object/neighbors",
        f"/v1/objects/{quote('x; DELETE FROM alerts; --')}/plot",  # never stored
        "/v1/objects/%F0%28",
    ):
        r = client.get(path)
        assert r.status_code == 404 and "unknown object" in r.json()["detail"], (path, r.text)


def test_bad_search_bodies_are_4xx(client):
    dim = bundled_dim()
    ok = [0.1] * dim
    cases = [
        ({"vector": [1.0, 2.0]}, "vector"),
        ({"vector": [0.1] * (dim + 1)}, "vector"),
        ({"vector": [0.1] * 5000}, "vector"),
        ({"vector": [0.0] * dim}, "vector"),
        ({"vector": ["a"] * dim}, "vector"),
        ({"vector": [float("nan")] * dim}, "vector"),  # Python's json writes NaN: FastAPI parses it
        ({"vector": [float("inf")] + ok[1:]}, "vector"),
        ({"vector": ok, "k": 0}, "k"),
        ({"vector": ok, "k": 10**30}, "k"),
        ({"vector": ok, "k": "many"}, "k"),
        ({"vector": ok, "classes": ["x"] * 33}, "classes"),
        ({"vector": ok, "min_detections": -1}, "min_detections"),
        ({"vector": ok, "extra": 1}, "extra"),
        ({"k": 3}, "lightcurve or vector"),
        ({"vector": ok, "lightcurve": EXAMPLE}, "lightcurve or vector"),
        ({"lightcurve": det("bad-search", 0, mag_err=0)}, "mag_err"),
        ({"lightcurve": lc("bad/search")}, "object_id"),
    ]
    for body, needle in cases:
        r = client.post("/v1/search", content=json.dumps(body), headers=JSON)
        assert r.status_code == 422, (str(body)[:80], r.status_code, r.text[:300])
        assert _names_the_problem(r.json(), needle), (str(body)[:80], r.text[:300])
    for content in (b"{not json", b"", b"[]", b"null"):
        r = client.post("/v1/search", content=content, headers=JSON)
        assert r.status_code == 422 and "detail" in r.json(), (content, r.text)


@pytest.mark.parametrize("scale", [1e-40, 1e-20, 1e20, 1e300])
def test_search_by_a_tiny_or_huge_vector_is_the_same_direction(client, scale):
    """Cosine search is scale-free: values that under- or overflow float32 give the same neighbours."""
    half = bundled_dim() // 2
    rest = bundled_dim() - half
    ref = client.post("/v1/search", json={"vector": [0.1] * half + [-0.2] * rest, "k": 5})
    r = client.post("/v1/search", json={"vector": [scale] * half + [-2 * scale] * rest, "k": 5})
    assert r.status_code == 200, r.text
    assert [n["object_id"] for n in r.json()["neighbors"]] == [n["object_id"] for n in ref.json()["neighbors"]]


# ---------------------------------------------------------------------------- security
def test_api_key_guards_every_write_and_only_writes(make_settings, tmp_path):
    import hmac
    import inspect

    from fastapi.testclient import TestClient

    from app import deps
    from app.main import create_app

    assert "hmac.compare_digest" in inspect.getsource(deps._key_matches) and hmac.compare_digest
    key = "k3y-" + "x" * 40
    settings = make_settings(f"sqlite:///{tmp_path / 'sec.db'}", api_key=key, demo=True)
    with TestClient(create_app(settings)) as c:
        spec = c.get("/openapi.json").json()
        posts = [p for p, ops in spec["paths"].items() if "post" in ops]
        assert not [p for p, ops in spec["paths"].items() if {"put", "patch"} & set(ops)]
        assert {p for p, ops in spec["paths"].items() if "delete" in ops} == {
            "/v1/models/{version}",
            "/v1/objects/{object_id}",
        }
        assert set(posts) == {
            "/v1/alerts",
            "/v1/fingerprints",
            "/v1/classify",
            "/v1/search",
            "/v1/neighbors",
            "/v1/models/{version}/activate",
            "/v1/anomalies/{object_id}/feedback",
        }
        version = c.get("/v1/models").json()["models"][0]["version"]
        victim = _some_object(c)
        for method, path in (
            ("post", f"/v1/models/{version}/activate"),
            ("post", f"/v1/anomalies/{victim}/feedback"),
            ("delete", f"/v1/models/{version}"),
            ("delete", f"/v1/objects/{victim}"),
        ):
            for headers in ({}, {"X-API-Key": "wrong"}):
                r = getattr(c, method)(path, headers=headers)
                assert r.status_code == 401, (method, path, r.text)
        assert c.get("/v1/models").json()["models"][0]["active"] and c.get(f"/v1/objects/{victim}").status_code == 200
        new = synth_lightcurves(1, seed=9191)[0]
        body = as_json([new])
        for wrong in (None, "", "wrong", key[:-1], key + "x", key.upper(), " ", "\t", "k 3y-" + "x" * 40):
            headers = {} if wrong is None else {"X-API-Key": wrong}
            before = _counts(c)
            r = c.post("/v1/alerts", json=body, headers=headers)
            assert r.status_code == 401 and "X-API-Key" in r.json()["detail"], (wrong, r.text)
            assert r.headers.get("www-authenticate") == "APIKey"
            assert _counts(c) == before
        # the reads work without a key, and none of them writes
        before = _counts(c)
        for path in posts:
            if path in ("/v1/alerts", "/v1/models/{version}/activate", "/v1/anomalies/{object_id}/feedback"):
                continue
            payload = {"lightcurve": body["lightcurves"][0], "k": 3} if path == "/v1/search" else body
            if path == "/v1/neighbors":
                payload = {"object_ids": [unquote(_some_object(c))], "k": 3}
            assert c.post(path, json=payload).status_code == 200, path
        oid = _some_object(c)
        for path in (
            "/v1/models",
            "/v1/anomalies",
            f"/v1/objects/{oid}",
            f"/v1/objects/{oid}/neighbors",
            f"/v1/objects/{oid}/plot",
            "/healthz",
            "/readyz",
            "/metrics",
        ):
            assert c.get(path).status_code == 200, path
        assert _counts(c) == before
        assert c.get(f"/v1/objects/{new.object_id}").status_code == 404
        # whitespace around the value is HTTP's, not the key's: stripped, as a real server does
        r = c.post("/v1/alerts", json=body, headers={"X-API-Key": f" {key}\t"})
        assert r.status_code == 200 and _counts(c)[0] == before[0] + 1


def test_a_read_key_guards_the_expensive_reads_only(make_settings, tmp_path):
    from fastapi.testclient import TestClient

    from app.main import create_app

    write, read = "w-" + "x" * 30, "r-" + "y" * 30
    settings = make_settings(f"sqlite:///{tmp_path / 'read.db'}", api_key=write, read_api_key=read, demo=True)
    with TestClient(create_app(settings)) as c:
        body = as_json(synth_lightcurves(1, seed=9393))
        oid = _some_object(c)
        expensive = [
            ("post", "/v1/fingerprints", body),
            ("post", "/v1/classify", body),
            ("post", "/v1/search", {"lightcurve": body["lightcurves"][0], "k": 3}),
            ("get", f"/v1/objects/{oid}/plot", None),
            ("get", "/v1/export/fingerprints", None),
        ]
        for method, path, payload in expensive:
            kw = {"json": payload} if payload else {}
            for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": read[:-1]}):
                r = getattr(c, method)(path, headers=headers, **kw)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "APIKey", (path, headers, r.text)
            for key in (read, write):
                assert getattr(c, method)(path, headers={"X-API-Key": key}, **kw).status_code == 200, (path, key)
        for path in ("/v1/anomalies", f"/v1/objects/{oid}", f"/v1/objects/{oid}/neighbors", "/healthz"):
            assert c.get(path).status_code == 200, path
        assert c.post("/v1/alerts", json=body, headers={"X-API-Key": read}).status_code == 401


def test_the_api_key_never_reaches_the_logs(tmp_path, demo_file):
    import secrets

    import httpx

    from tests._server import Server

    key = "sk-" + secrets.token_hex(24)
    env = {
        "RTF_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}",
        "RTF_INDEX_DIR": str(tmp_path / "index"),
        "RTF_API_KEY": key,
        "RTF_DEMO": "1",
        "RTF_DEMO_FILE": str(demo_file),
    }
    body = as_json(synth_lightcurves(2, seed=9292))
    with Server(env) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        for wrong in ("nope", key[:-1], key[::-1]):
            assert client.post("/v1/alerts", json=body, headers={"X-API-Key": wrong}).status_code == 401
        assert client.post("/v1/alerts", json=body).status_code == 401
        assert client.post("/v1/alerts", json=body, headers={"X-API-Key": key}).status_code == 200
        assert client.post("/v1/alerts", content=b"{bad", headers={"X-API-Key": key} | JSON).status_code == 422
        srv.stop()
        log = srv.log()
    assert "POST /v1/alerts" in log  # the access log was captured
    for secret in (key, key[:-1], key[::-1], key[3:20]):
        assert secret not in log


def test_limits_are_in_the_openapi_spec(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def param(path, name):
        ps = spec["paths"][path]["get"]["parameters"]
        return next(p["schema"] for p in ps if p["name"] == name)

    nb = "/v1/objects/{object_id}/neighbors"
    assert param(nb, "k")["maximum"] == 1000 and param(nb, "k")["minimum"] == 1
    assert param(nb, "object_id")["maxLength"] == 128
    assert param("/v1/anomalies", "limit")["maximum"] == 500
    assert param("/v1/anomalies", "cursor")["anyOf"][0]["maxLength"] == 512
    assert schemas["LightCurveBatch"]["properties"]["lightcurves"]["maxItems"] == 1000
    assert schemas["LightCurveIn"]["properties"]["detections"]["maxItems"] == 20_000
    assert schemas["LightCurveIn"]["properties"]["object_id"]["maxLength"] == 128
    assert schemas["SearchRequest"]["properties"]["k"]["maximum"] == 1000
    assert "16 MiB" in spec["info"]["description"] and "1000 light curves" in spec["info"]["description"]
    for path in ("/v1/alerts", "/v1/fingerprints", "/v1/classify"):
        assert {"413", "422"} <= set(spec["paths"][path]["post"]["responses"]), path
    assert "401" in spec["paths"]["/v1/alerts"]["post"]["responses"]


def test_the_optional_rate_limit_answers_429_per_client_and_spares_probes(make_settings, tmp_path):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 'rate.db'}", rate_limit=3, demo=False))) as c:
        codes = [c.get("/v1/anomalies").status_code for _ in range(10)]
        assert codes[:3] == [200, 200, 200] and codes[-1] == 429, codes
        r = c.get("/v1/anomalies")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "requests a second" in r.json()["detail"]
        assert all(c.get("/healthz").status_code == 200 for _ in range(10))
        time.sleep(1.1)  # the bucket refills at the rate
        assert c.get("/v1/anomalies").status_code == 200
    with TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 'free.db'}", demo=False))) as c:
        assert all(c.get("/v1/anomalies").status_code == 200 for _ in range(20))  # 0: off
