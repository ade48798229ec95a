"""Hostile and extreme input, as properties: bounded Avro decoding, what is acknowledged is
stored and reads back, the fingerprint is of what is stored, the history cap, text safety.
The HTTP tests run on SQLite and on PostgreSQL (skipped when no server answers)."""

from __future__ import annotations

import io
import json
import threading
import time
import tracemalloc
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from encoder.lightcurve import MAX_POINTS, LightCurve, njy_to_mag
from encoder.readers import AlertFormatError, AvroLimitError, AvroLimits, read_alert_avro, write_ztf_avro
from encoder.readers.avro_container import encode_long, raw_container
from indexing.models import LightCurveRecord
from tests._server import Server, as_json, synth_lightcurves

JSON = {"Content-Type": "application/json"}
AVRO = {"Content-Type": "avro/binary"}
ARRAY_OF = {"type": "record", "name": "r", "fields": [{"name": "a", "type": {"type": "array", "items": None}}]}


def _array_schema(items) -> dict:
    return json.loads(json.dumps(ARRAY_OF).replace("null", json.dumps(items)))


def _ztf_container(n: int, detections: int = 1, seed: int = 0) -> bytes:
    lcs = [lc.first(detections) for lc in synth_lightcurves(n, seed=seed)]
    buf = io.BytesIO()
    write_ztf_avro(lcs, buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------- bounded Avro decoding
@pytest.mark.parametrize(
    "items", ["null", {"type": "record", "name": "e", "fields": []}, {"type": "fixed", "name": "f", "size": 0}]
)
def test_arrays_of_zero_size_items_are_refused_before_any_decoding(items):
    bomb = raw_container(_array_schema(items), [(1, encode_long(10**8) + encode_long(0))])
    assert len(bomb) < 300
    tracemalloc.start()
    with pytest.raises(AlertFormatError, match="zero bytes"):
        read_alert_avro(bomb)
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()


def test_a_declared_array_count_cannot_outrun_the_data():
    """int items take at least a byte each: 10^8 declared over 100 bytes fails at the data's end."""
    data = raw_container(_array_schema("int"), [(1, encode_long(10**8) + b"\x02" * 100)])
    tracemalloc.start()
    with pytest.raises(AlertFormatError):
        read_alert_avro(data)
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()


def test_deflate_output_is_capped_while_inflating():
    schema = {"type": "record", "name": "r", "fields": [{"name": "a", "type": "bytes"}]}
    bomb = raw_container(schema, [(1, encode_long(64 << 20) + bytes(64 << 20))], codec="deflate")
    assert len(bomb) < 200_000
    tracemalloc.start()
    with pytest.raises(AvroLimitError, match="inflates past"):
        read_alert_avro(bomb, AvroLimits(max_block_bytes=1 << 20))
    assert tracemalloc.get_traced_memory()[1] < 8 << 20  # the cap, not the 64 MiB it would inflate to
    tracemalloc.stop()


def test_the_record_limit_is_checked_from_block_headers_before_decoding():
    data = _ztf_container(30)
    assert len(read_alert_avro(data, AvroLimits(max_records=30))) == 30
    with pytest.raises(AvroLimitError, match="more than 29 records"):
        read_alert_avro(data, AvroLimits(max_records=29))
    lie = raw_container(_array_schema("int"), [(10**9, b"\x00" * 10)])  # a block declaring 10^9 records
    with pytest.raises(AvroLimitError):
        read_alert_avro(lie, AvroLimits(max_records=1000))
    with pytest.raises(AlertFormatError, match="declares"):  # unbounded count, but 10 bytes hold 10 records at most
        read_alert_avro(lie)


def test_unsupported_codecs_and_oversized_headers_are_refused():
    with pytest.raises(AlertFormatError, match="codec"):
        read_alert_avro(raw_container(_array_schema("int"), [], codec="snappy"))
    huge = b"Obj\x01" + encode_long(1) + encode_long(11) + b"avro.schema" + encode_long(1 << 40)
    with pytest.raises(AlertFormatError, match="header entry"):
        read_alert_avro(huge)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_containers_decode_or_fail_cleanly_in_bounded_memory(data):
    """Byte flips, cuts, insertions and rewritten varints of a real ZTF container: the reader
    returns light curves or raises AlertFormatError / LightCurveError, in bounded memory."""
    base = bytearray(_FUZZ_BASE)
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "varint"]))
        pos = data.draw(st.integers(0, len(base) - 1))
        if kind == "flip":
            base[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del base[pos : pos + data.draw(st.integers(1, 64))]
        elif kind == "insert":
            base[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        else:  # a huge declared count or length at a random place
            base[pos:pos] = encode_long(data.draw(st.sampled_from([10**6, 10**9, 2**62, -(2**62)])))
        if not base:
            base = bytearray(b"O")
    tracemalloc.start()
    try:
        read_alert_avro(bytes(base), AvroLimits(max_records=1000, max_block_bytes=4 << 20, max_inflated_bytes=16 << 20))
    except (AlertFormatError, ValueError):  # LightCurveError is a ValueError naming the field
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 64 << 20, peak


_FUZZ_BASE = _ztf_container(3, detections=4, seed=5)


# ---------------------------------------------------------------------------- the service
def _alerts_in_sql(client) -> int:
    """Detections stored in SQL, all objects together."""
    store = client.app.state.catalog.store
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.coalesce(func.sum(LightCurveRecord.n_detections), 0))))


def _stored_alerts(client, oid: str) -> list[SimpleNamespace]:
    """The stored detections of an object (jd, band, mag), by time."""
    h = client.app.state.catalog.store.get_history(oid)
    if h is None:
        return []
    mag = njy_to_mag(h.flux).tolist()
    return [SimpleNamespace(jd=t, band=h.bands[b], mag=m) for t, b, m in zip(h.jd.tolist(), h.band.tolist(), mag, strict=True)]


def test_hostile_avro_bodies_are_refused_without_decoding(client):
    bomb = raw_container(_array_schema("null"), [(1, encode_long(10**8) + encode_long(0))])
    r = client.post("/v1/fingerprints", content=bomb, headers=AVRO)
    assert r.status_code == 422 and "zero bytes" in r.json()["detail"], r.text
    schema = {"type": "record", "name": "r", "fields": [{"name": "a", "type": "bytes"}]}
    deflated = raw_container(schema, [(1, encode_long(64 << 20) + bytes(64 << 20))], codec="deflate")
    r = client.post("/v1/fingerprints", content=deflated, headers=AVRO)
    assert r.status_code == 413 and "inflates past" in r.json()["detail"], r.text
    lie = raw_container(_array_schema("int"), [(10**9, b"\x00" * 10)])
    r = client.post("/v1/alerts", content=lie, headers=AVRO)
    assert r.status_code == 413 and "more than 1000 records" in r.json()["detail"], r.text


def test_the_batch_limit_counts_packets_as_they_are_read(make_settings, tmp_path):
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = make_settings(f"sqlite:///{tmp_path / 'batch.db'}", max_batch=10, demo=False)
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/fingerprints", content=_ztf_container(10), headers=AVRO).status_code == 200
        body = _ztf_container(400)  # over INLINE_BODY_BYTES: decoded in the worker process
        assert len(body) > 64 << 10
        r = c.post("/v1/fingerprints", content=body, headers=AVRO)
        assert r.status_code == 413 and "more than 10 records" in r.json()["detail"], r.text
        r = c.post("/v1/fingerprints", json=as_json(synth_lightcurves(11, seed=4)))
        assert r.status_code == 413 and "at most 10" in r.json()["detail"], r.text


def test_large_bodies_decoded_in_the_worker_give_the_same_answers(client):
    lcs = synth_lightcurves(300, seed=77)
    body = json.dumps(as_json(lcs)).encode()
    assert len(body) > 64 << 10
    big = client.post("/v1/fingerprints", content=body, headers=JSON).json()["fingerprints"]
    small = client.post("/v1/fingerprints", json=as_json(lcs[:5])).json()["fingerprints"]
    for a, b in zip(big[:5], small, strict=True):
        assert a["object_id"] == b["object_id"]
        assert np.allclose(a["vector"], b["vector"], atol=1e-4)
    bad = as_json(lcs)
    det = bad["lightcurves"][200]["detections"][1]
    err = "mag_err" if "mag_err" in det else "flux_err"
    det[err] = -1
    r = client.post("/v1/fingerprints", json=bad)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "lightcurves", 200, "detections", 1, err], r.text


@pytest.mark.parametrize("query", [{"class": "\x00"}, {"cursor": "\x00"}, {"since": "\x00"}])
def test_nul_in_a_query_string_is_a_422_naming_the_parameter(client, query):
    for path in ("/v1/anomalies", "/v1/objects/x/neighbors"):
        r = client.get(path, params=query)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["errors"][0]["loc"] == ["query", next(iter(query))]


@pytest.mark.parametrize("payload", [["Infinity", "a"], [0.5, {}], [0.5, "a\x00b"], [True, "a"], [0.5, ""]])
def test_cursors_that_the_service_could_not_have_made_are_refused(client, payload):
    import base64

    raw = json.dumps(payload).replace('"Infinity"', "Infinity").encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    r = client.get("/v1/anomalies", params={"cursor": cursor})
    assert r.status_code == 422 and "cursor" in json.dumps(r.json()), r.text


def test_a_label_with_nul_is_refused_and_nothing_is_stored(client):
    body = {
        "lightcurves": [
            {
                "object_id": "nul-label",
                "label": "SN\x00Ia",
                "detections": [{"jd": 2459000.5, "band": "g", "mag": 19.0, "mag_err": 0.1}],
            }
        ]
    }
    before = _alerts_in_sql(client)
    r = client.post("/v1/alerts", json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "label", r.text
    assert _alerts_in_sql(client) == before
    assert client.get("/v1/objects/nul-label").status_code == 404


# ---------------------------------------------------------------------------- round trips
_DET = {"jd": 2459000.5, "band": "g", "mag": 19.0, "mag_err": 0.1}
_EXTREMES = [  # (name, detections): each either refused with a 422 or stored so that it reads back
    ("faint-tiny-error", [{"jd": 2459000.5, "band": "g", "mag": 40, "mag_err": 5e-324}]),
    ("huge-flux", [{"jd": 2459000.5, "band": "g", "flux": 1e30, "flux_err": 1}]),
    ("brightest-flux", [{"jd": 2459000.5, "band": "g", "flux": 3.6e14, "flux_err": 1}]),
    ("tiny-flux-error", [{"jd": 2459000.5, "band": "g", "flux": 100.0, "flux_err": 1e-300}]),
    ("faint-large-error", [{"jd": 2459000.5, "band": "g", "mag": 39.9, "mag_err": 9.9}]),
    ("close-in-time", [_DET | {"jd": 2459000.5 + i * 1e-7} for i in range(3)]),
    ("negative-flux", [{"jd": 2459000.5 + i, "band": "r", "flux": -50.0 + 40 * i, "flux_err": 3.0} for i in range(4)]),
    ("ra-360", [_DET]),
]


def _round_trips(client, oid: str) -> None:
    """A stored object reads back, finds itself first, and posts back as duplicates only."""
    got = client.get(f"/v1/objects/{oid}")
    assert got.status_code == 200, got.text
    detail = got.json()
    lc = detail["lightcurve"]
    assert len(lc["detections"]) == detail["n_detections"] == len(_stored_alerts(client, oid))
    found = client.post("/v1/search", json={"lightcurve": lc, "k": 10})
    assert found.status_code == 200, found.text
    hits = found.json()["neighbors"]
    assert hits[0]["similarity"] > 0.999, hits[0]
    # first, or tied with an object of the same light curve (another example's)
    assert oid in [h["object_id"] for h in hits if h["similarity"] >= hits[0]["similarity"] - 1e-4]
    again = client.post("/v1/alerts", json={"lightcurves": [lc]})
    assert again.status_code == 200, (again.text, lc)
    assert again.json()["new_alerts"] == 0 and again.json()["duplicate_alerts"] == len(lc["detections"])
    assert client.get(f"/v1/objects/{oid}/plot").status_code == 200


@pytest.mark.parametrize(("name", "detections"), _EXTREMES, ids=[e[0] for e in _EXTREMES])
def test_extreme_values_are_refused_or_round_trip(client, name, detections):
    oid = f"extreme-{name}"
    body = {"object_id": oid, "detections": detections}
    if name == "ra-360":
        body |= {"ra": 360.0, "dec": 0.0}
    before = _alerts_in_sql(client)
    r = client.post("/v1/alerts", json={"lightcurves": [body]})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        assert _alerts_in_sql(client) == before and client.get(f"/v1/objects/{oid}").status_code == 404
        return
    assert r.json()["new_alerts"] == _alerts_in_sql(client) - before == len(_stored_alerts(client, oid))
    _round_trips(client, oid)
    # a later valid alert is still taken
    later = client.post(
        "/v1/alerts",
        json={
            "lightcurves": [
                {"object_id": oid, "detections": [{"jd": 2459100.5, "band": "g", "flux": 500.0, "flux_err": 5.0}]}
            ]
        },
    )
    assert later.status_code == 200 and later.json()["new_alerts"] == 1, later.text


def test_the_issues_cases_end_as_documented(client):
    r = client.post(
        "/v1/alerts", json={"lightcurves": [{"object_id": "x-ra", "ra": 360.0, "dec": 1.0, "detections": [_DET]}]}
    )
    assert r.status_code == 422 and "ra" in r.json()["errors"][0]["loc"]
    r = client.post(
        "/v1/alerts",
        json={
            "lightcurves": [
                {"object_id": "x-close", "detections": [_DET | {"jd": 2459000.5 + i * 1e-7} for i in range(3)]}
            ]
        },
    )
    assert r.json()["new_alerts"] == 3 == len(_stored_alerts(client, "x-close"))


_detection = st.fixed_dictionaries(
    {
        "jd": st.floats(2459000.0, 2459000.0 + 30, allow_nan=False),
        "band": st.sampled_from(["g", "r"]),
        "mag": st.floats(-5, 40),
        "mag_err": st.one_of(st.floats(1e-320, 1e-300), st.floats(1e-4, 10)),
    }
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    first=st.lists(_detection, min_size=1, max_size=8),
    second=st.lists(_detection, min_size=1, max_size=8),
    overlap=st.integers(0, 8),
)
def test_acknowledged_alerts_are_stored_and_the_fingerprint_is_of_what_is_stored(client, first, second, overlap):
    """Two posts of one object, the second repeating some (time, band) points of the first with
    other values: new_alerts is what SQL gained, the stored values are the first post's, and the
    stored fingerprint is the fingerprint of the stored light curve."""
    oid = f"prop-{uuid.uuid4().hex}"
    second = [
        d | {"jd": first[i % len(first)]["jd"], "band": first[i % len(first)]["band"]} if i < overlap else d
        for i, d in enumerate(second)
    ]
    stored_values: dict[tuple, float] = {}
    for post in (first, second):
        before = _alerts_in_sql(client)
        r = client.post("/v1/alerts", json={"lightcurves": [{"object_id": oid, "detections": post}]})
        assert r.status_code in (200, 422), r.text
        if r.status_code == 422:
            assert _alerts_in_sql(client) == before
            continue
        assert r.json()["new_alerts"] == _alerts_in_sql(client) - before
        for d in post:
            stored_values.setdefault((d["jd"], d["band"]), d["mag"])
    alerts = _stored_alerts(client, oid)
    if not alerts:
        return
    for a in alerts:  # first write wins
        assert a.mag == pytest.approx(stored_values[(a.jd, a.band)], abs=1e-9)
    _round_trips(client, oid)
    lc = client.get(f"/v1/objects/{oid}").json()["lightcurve"]
    fp = client.post("/v1/fingerprints", json={"lightcurves": [lc]}).json()["fingerprints"][0]["vector"]
    stored = client.app.state.catalog.store.get_fingerprint(oid, client.app.state.catalog.version)
    assert np.dot(fp, stored) / np.linalg.norm(fp) / np.linalg.norm(stored) > 0.999


# ---------------------------------------------------------------------------- the history cap
def _long_curve(oid: str, n: int, start: float = 2459000.5) -> LightCurve:
    t = start + np.arange(n) * 0.01
    return LightCurve.build(
        oid,
        "ztf",
        t,
        np.where(np.arange(n) % 2, "g", "r"),
        mag=18 + np.sin(np.arange(n) / 50),
        mag_err=np.full(n, 0.05),
    )


def test_a_full_history_keeps_its_most_recent_detections(client):
    oid = "cap-object"
    r = client.post("/v1/alerts", json=as_json([_long_curve(oid, MAX_POINTS)]))
    assert r.status_code == 200 and r.json()["new_alerts"] == MAX_POINTS, r.text[:300]
    newer = {"object_id": oid, "detections": [{"jd": 2459300.5, "band": "g", "mag": 18.0, "mag_err": 0.05}]}
    r = client.post("/v1/alerts", json={"lightcurves": [newer]})
    assert r.status_code == 200, r.text
    obj = r.json()["objects"][0]
    assert (obj["new_alerts"], obj["dropped_alerts"], obj["n_detections"]) == (1, 0, MAX_POINTS)
    alerts = _stored_alerts(client, oid)
    assert len(alerts) == MAX_POINTS and alerts[0].jd == pytest.approx(2459000.51) and alerts[-1].jd == 2459300.5
    older = {"object_id": oid, "detections": [{"jd": 2458000.5, "band": "g", "mag": 18.0, "mag_err": 0.05}]}
    obj = client.post("/v1/alerts", json={"lightcurves": [older]}).json()["objects"][0]
    assert (obj["new_alerts"], obj["dropped_alerts"]) == (0, 1)
    _round_trips(client, oid)


@pytest.mark.slow
def test_two_processes_filling_one_object_on_postgres_stay_within_the_cap(postgres_url, tmp_path):
    """Two service processes on one PostgreSQL database each take 12,000 new detections of one
    object at once: both acknowledge, 20,000 (the most recent) are stored, the object reads back
    and takes later alerts, and its fingerprint is that of its stored light curve."""
    env = {"RTF_DATABASE_URL": postgres_url, "RTF_PRECISION": "fp32", "RTF_DEMO": "0", "RTF_SYNC_INTERVAL": "0.5"}
    a = Server(env | {"RTF_INDEX_DIR": str(tmp_path / "a")})
    b = Server(env | {"RTF_INDEX_DIR": str(tmp_path / "b")})
    import httpx

    with a, b:
        halves = [_long_curve("shared", 12_000), _long_curve("shared", 12_000, start=2459000.5 + 120.005)]
        results: list[httpx.Response] = []

        def post(srv: Server, lc: LightCurve) -> None:
            results.append(httpx.post(srv.url + "/v1/alerts", json=as_json([lc]), timeout=300))

        threads = [threading.Thread(target=post, args=(s, lc)) for s, lc in zip((a, b), halves, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in results] == [200, 200], [r.text[:300] for r in results]
        assert (
            sum(r.json()["new_alerts"] for r in results)
            + sum(r.json()["objects"][0]["dropped_alerts"] for r in results)
            == 24_000
        )
        got = httpx.get(a.url + "/v1/objects/shared", timeout=60).json()
        dets = got["lightcurve"]["detections"]
        assert got["n_detections"] == len(dets) == MAX_POINTS
        assert dets[-1]["jd"] == pytest.approx(halves[1].time[-1])  # the most recent are kept
        # b's index holds the last writer's fingerprint once its sync (every 0.5 s) has run since that commit
        deadline = time.monotonic() + 10
        while True:
            found = httpx.post(b.url + "/v1/search", json={"lightcurve": got["lightcurve"], "k": 1}, timeout=60).json()
            best = found["neighbors"][0]
            if best["similarity"] > 0.999 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert best["object_id"] == "shared" and best["similarity"] > 0.999, best
        later = {"object_id": "shared", "detections": [{"jd": 2459500.5, "band": "g", "mag": 18.0, "mag_err": 0.05}]}
        r = httpx.post(b.url + "/v1/alerts", json={"lightcurves": [later]}, timeout=60)
        assert r.status_code == 200 and r.json()["new_alerts"] == 1, r.text
