"""rtf_client: retries, errors and typed results against a mock transport, then every method against
the real service (a uvicorn subprocess on the demo catalogue, with RTF_API_KEY set), and the
quickstart notebook executed against that service."""

from __future__ import annotations

import email.utils
import json
import math
import os
import subprocess
import sys
import time

import httpx
import pytest

from rtf_client import (
    Conflict,
    Fingerprint,
    NotFound,
    ObjectDetail,
    RateLimited,
    RetryPolicy,
    RTFClient,
    RTFConnectionError,
    RTFError,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from tests._server import ROOT, Server, bundled_dim

API_KEY = "client-test-key-0123456789"
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
LIGHTCURVE = {
    "object_id": "ZTF21aaaaaaa",
    "detections": [
        {"jd": 2459000.51, "band": "g", "mag": 19.2, "mag_err": 0.05},
        {"jd": 2459002.62, "band": "r", "mag": 18.9, "mag_err": 0.04},
        {"jd": 2459005.55, "band": "g", "mag": 18.7, "mag_err": 0.04},
    ],
}
MODELS = {
    "objects": 3,
    "models": [
        {
            "version": "v1",
            "dim": 4,
            "active": True,
            "fingerprints": 3,
            "stale": 0,
            "path": "m.pt",
            "coarse_classes": ["SNIa"],
            "fine_classes": [],
        }
    ],
}
PREDICTION = {
    "model": "v1",
    "predictions": [{"object_id": "a", "label": "SNIa", "probabilities": {"SNIa": 1.0}, "anomaly_score": 0.1}],
}
INGESTED = {"model": "v1", "new_alerts": 3, "duplicate_alerts": 0, "objects": []}


# ---------------------------------------------------------------------------- with a mock transport
def problem(status: int, detail: str, **extra) -> httpx.Response:
    body = {"type": "about:blank", "title": "T", "status": status, "detail": detail, "instance": "/x"} | extra
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


def mock(*answers, retries: int = 3, **kw) -> tuple[RTFClient, list[httpx.Request], list[float]]:
    """A client whose transport gives ``answers`` in turn (a response, or an exception it raises); the
    requests it saw and the waits it asked for (nothing really sleeps)."""
    queue, calls, sleeps = list(answers), [], []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    retry = RetryPolicy(retries=retries, sleep=sleeps.append)
    return RTFClient("http://rtf.test", retry=retry, transport=httpx.MockTransport(handler), **kw), calls, sleeps


def test_the_client_imports_without_the_service_or_its_numeric_stack():
    heavy = ["torch", "faiss", "numpy", "pandas", "pyarrow", "pydantic", "app", "encoder", "indexing", "training"]
    code = (
        "import json, sys, rtf_client; loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{heavy!r}); print(json.dumps([loaded, 'httpx' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [[], True]


def test_a_read_answered_503_twice_is_retried_with_backoff():
    client, calls, sleeps = mock(problem(503, "loading"), problem(503, "loading"), httpx.Response(200, json=MODELS))
    models = client.models()
    assert models.active.version == "v1" and models.objects == 3
    assert len(calls) == 3 and sleeps == [0.2, 0.4]


def test_retries_run_out_and_the_last_error_is_raised():
    client, calls, sleeps = mock(*[problem(503, "database down")] * 4, retries=3)
    with pytest.raises(ServiceUnavailable) as err:
        client.anomalies()
    assert err.value.detail == "database down" and err.value.attempts == 4
    assert len(calls) == 4 and sleeps == [0.2, 0.4, 0.8]
    policy = RetryPolicy(retries=6, backoff=1.0, max_backoff=3.0)
    assert [policy.delay(i) for i in range(7)] == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, None]


@pytest.mark.parametrize("call", ["ingest", "ingest_avro"])
def test_ingest_is_never_retried(call):
    send = (lambda c: c.ingest(LIGHTCURVE)) if call == "ingest" else (lambda c: c.ingest_avro(b"Obj\x01"))
    client, calls, sleeps = mock(problem(503, "busy"), httpx.Response(200, json=INGESTED))
    with pytest.raises(ServiceUnavailable):
        send(client)
    assert len(calls) == 1 and sleeps == []
    client, calls, sleeps = mock(httpx.ConnectError("refused"), httpx.Response(200, json=INGESTED))
    with pytest.raises(RTFConnectionError) as err:
        send(client)
    assert len(calls) == 1 and sleeps == [] and isinstance(err.value.__cause__, httpx.ConnectError)


def test_connection_errors_are_retried_for_calls_that_write_nothing():
    client, calls, sleeps = mock(
        httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(200, json=PREDICTION)
    )
    (pred,) = client.classify(LIGHTCURVE)
    assert pred.label == "SNIa" and pred.model == "v1"
    assert len(calls) == 3 and all(c.method == "POST" and c.url.path == "/v1/classify" for c in calls)
    client, calls, _ = mock(*[httpx.ConnectError("refused")] * 3, retries=2)
    with pytest.raises(RTFConnectionError) as err:
        client.health()
    assert len(calls) == 3 and err.value.attempts == 3 and err.value.status == 0


def test_429_waits_what_retry_after_says_unless_that_is_too_long():
    client, calls, sleeps = mock(
        httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "2"}),
        httpx.Response(200, json={"items": [], "next_cursor": None}),
    )
    assert len(client.anomalies()) == 0 and sleeps == [2.0] and len(calls) == 2
    client, calls, sleeps = mock(httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "120"}))
    with pytest.raises(RateLimited) as err:
        client.anomalies()
    assert err.value.retry_after == 120 and len(calls) == 1 and sleeps == []
    when = email.utils.formatdate(time.time() + 600, usegmt=True)  # the HTTP-date form: also past the cap
    client, calls, _ = mock(httpx.Response(503, headers={"Retry-After": when}, text="down"))
    with pytest.raises(ServiceUnavailable) as err:
        client.models()
    assert 590 < err.value.retry_after <= 600 and len(calls) == 1


@pytest.mark.parametrize("status,cls", [(400, RTFError), (404, NotFound), (409, Conflict), (500, RTFError)])
def test_other_errors_are_not_retried(status, cls):
    client, calls, sleeps = mock(problem(status, "no"))
    with pytest.raises(cls) as err:
        client.object("a")
    assert type(err.value) is cls and err.value.status == status and len(calls) == 1 and sleeps == []


def test_errors_are_read_from_problem_json_and_from_the_older_forms():
    loc = ["body", "lightcurves", 0, "detections", 1, "mag_err"]
    new = problem(
        422,
        "body.lightcurves.0.detections.1.mag_err: must be > 0",
        errors=[{"loc": loc, "msg": "must be > 0", "type": "value_error"}],
    )
    old = httpx.Response(422, json={"detail": [{"loc": loc, "msg": "must be > 0", "type": "value_error"}]})
    for answer in (new, old):
        client, _, _ = mock(answer)
        with pytest.raises(ValidationFailed) as err:
            client.fingerprints(LIGHTCURVE)
        e = err.value
        assert e.status == 422 and e.errors[0].loc == tuple(loc) and e.errors[0].msg == "must be > 0"
        assert e.detail == "body.lightcurves.0.detections.1.mag_err: must be > 0" and e.response is answer
    assert e.title == "Unprocessable Entity" and e.instance is None  # the old form: the phrase, no instance
    client, _, _ = mock(httpx.Response(401, json={"detail": "missing or wrong X-API-Key"}))
    with pytest.raises(Unauthorized, match="401 Unauthorized: missing or wrong X-API-Key"):
        client.delete("a")
    client, _, _ = mock(problem(404, "unknown object 'a'"))
    with pytest.raises(NotFound) as err:
        client.delete("a")
    assert (err.value.title, err.value.instance, err.value.errors) == ("T", "/x", ())
    client, _, _ = mock(httpx.Response(502, text="<html>Bad Gateway</html>"), retries=0)
    with pytest.raises(RTFError) as err:
        client.models()
    assert err.value.status == 502 and err.value.detail == "<html>Bad Gateway</html>"


def test_results_ignore_fields_they_do_not_know_and_default_those_missing():
    detail = {
        "object_id": "a b/c",
        "survey": "ztf",
        "n_detections": 2,
        "label": "SNIa",
        "a_future_field": [1],
        "lightcurve": {"object_id": "a b/c", "detections": []},
        "fingerprint": [0.5, 0.5],
    }
    neighbors = {
        "object_id": "a b/c",
        "model": "v1",
        "future": 1,
        "neighbors": [{"object_id": "n", "similarity": 0.9, "class": "AGN", "future": True}],
    }
    client, calls, _ = mock(httpx.Response(200, json=detail), httpx.Response(200, json=neighbors))
    obj = client.object("a b/c", fingerprint=True)
    assert isinstance(obj, ObjectDetail) and obj.fingerprint == (0.5, 0.5) and obj.n_detections == 2
    assert obj.ra is None and obj.anomaly_score is None and obj.probabilities == {}  # an older server's answer
    (n,) = client.neighbors("a b/c", k=1)
    assert (n.object_id, n.similarity, n.label, n.n_detections) == ("n", 0.9, "AGN", None)
    assert calls[0].url.raw_path == b"/v1/objects/a%20b%2Fc?fingerprint=true"
    assert calls[1].url.raw_path == b"/v1/objects/a%20b%2Fc/neighbors?k=1"


def test_requests_carry_the_parameter_names_the_routes_take():
    empty_page = httpx.Response(200, json={"items": [], "next_cursor": None})
    hits = httpx.Response(200, json={"object_id": None, "model": "v1", "neighbors": []})
    client, calls, _ = mock(
        hits,
        hits,
        hits,
        empty_page,
        empty_page,
        httpx.Response(200, json={"items": []}),
        httpx.Response(200, json=INGESTED),
    )
    client.neighbors("a", k=3, classes=["SNIa", "AGN"], min_detections=5, since=2459000.5)
    client.search([0.1, 0.2], k=4, classes="SNIa", anomaly_min=0.5)
    client.search(LIGHTCURVE, k=2)
    client.objects(limit=7, cursor="c1", classes="SNIa", min_detections=3)
    client.anomalies(limit=5, classes=["TDE", "KN"], since=2459000.0, until=2459100.0)
    client.cone(10.5, -2.25, 3.0, limit=4)
    client.ingest_avro(b"Obj\x01avro")
    q = [{k: c.url.params.get_list(k) for k in c.url.params} for c in calls]
    assert (calls[0].url.path, q[0]) == (
        "/v1/objects/a/neighbors",
        {"k": ["3"], "class": ["SNIa", "AGN"], "min_detections": ["5"], "since": ["2459000.5"]},
    )
    assert json.loads(calls[1].content) == {"vector": [0.1, 0.2], "k": 4, "classes": ["SNIa"], "anomaly_min": 0.5}
    assert json.loads(calls[2].content) == {"lightcurve": LIGHTCURVE, "k": 2}
    assert q[3] == {"limit": ["7"], "cursor": ["c1"], "class": ["SNIa"], "min_detections": ["3"]}
    assert q[4] == {"limit": ["5"], "class": ["TDE", "KN"], "since": ["2459000.0"], "until": ["2459100.0"]}
    assert calls[5].url.path == "/v1/cone"
    assert q[5] == {"ra": ["10.5"], "dec": ["-2.25"], "radius": ["3.0"], "limit": ["4"]}
    assert calls[6].headers["content-type"] == "avro/binary" and calls[6].content == b"Obj\x01avro"
    with pytest.raises(TypeError, match="neighbors"):
        client.search("an object id")


def test_the_write_key_goes_only_with_writes_when_a_read_key_is_given():
    ok = httpx.Response(200, content=b"\x89PNG")
    client, calls, _ = mock(httpx.Response(200, json=INGESTED), ok, httpx.Response(204), api_key="w", read_api_key="r")
    client.ingest([LIGHTCURVE])
    client.plot("a")
    client.delete("a")
    assert [c.headers.get("x-api-key") for c in calls] == ["w", "r", "w"]
    client, calls, _ = mock(ok)
    client.plot("a")
    assert "x-api-key" not in calls[0].headers


def test_neighbors_many_sends_at_most_100_ids_a_request_and_keeps_the_order():
    ids = [f"o{i}" for i in range(250)]

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(body := json.loads(request.content))
        ids_sent = body["object_ids"]
        results = [{"object_id": o, "neighbors": [{"object_id": f"{o}-n", "similarity": 0.5}]} for o in ids_sent]
        return httpx.Response(200, json={"model": "v1", "results": results})

    sent: list[dict] = []
    client = RTFClient("http://rtf.test", transport=httpx.MockTransport(handler))
    out = client.neighbors_many(ids, k=1, classes=["SNIa"])
    assert [len(b["object_ids"]) for b in sent] == [100, 100, 50] and all(b["classes"] == ["SNIa"] for b in sent)
    assert [r.object_id for r in out] == ids and out[7][0].object_id == "o7-n" and out[7].model == "v1"


def test_ready_reports_a_loading_service_without_raising_or_retrying():
    client, calls, sleeps = mock(httpx.Response(503, json={"status": "loading"}))
    state = client.ready()
    assert (state.ready, state.status, state.model) == (False, "loading", None) and len(calls) == 1


def test_an_export_that_breaks_off_leaves_no_file(tmp_path):
    def body():
        yield b"ARROW-part-1"
        raise httpx.ReadError("connection reset")

    client, calls, _ = mock(httpx.Response(200, content=body()))
    with pytest.raises(RTFConnectionError, match="ReadError"):
        client.export_fingerprints(tmp_path / "fp.arrows")
    assert os.listdir(tmp_path) == [] and len(calls) == 1
    client, _, _ = mock(httpx.Response(200, content=b"ARROW-whole"))
    assert client.export_fingerprints(tmp_path / "fp.arrows") == 11
    assert (tmp_path / "fp.arrows").read_bytes() == b"ARROW-whole" and os.listdir(tmp_path) == ["fp.arrows"]


# ---------------------------------------------------------------------------- against the real service
@pytest.fixture(scope="module")
def service(tmp_path_factory, demo_file):
    tmp = tmp_path_factory.mktemp("client")
    env = {
        "RTF_DATABASE_URL": f"sqlite:///{tmp / 'rtf.db'}",
        "RTF_INDEX_DIR": str(tmp / "index"),
        "RTF_DEMO": "1",
        "RTF_DEMO_FILE": str(demo_file),
        "RTF_API_KEY": API_KEY,
        "RTF_PRECISION": "fp32",
    }
    with Server(env) as srv:
        yield srv


@pytest.fixture(scope="module")
def rtf(service):
    with RTFClient(service.url, api_key=API_KEY, timeout=120) as client:
        yield client


def all_objects(rtf: RTFClient) -> list:
    return list(rtf.iter_objects(page_size=500))


def new_object(rtf: RTFClient, object_id: str) -> dict:
    """A light curve for a new object: a stored one's detections, moved in time (so none is a duplicate)."""
    source = rtf.object(rtf.objects(limit=1)[0].object_id).lightcurve
    dets = [{k: v for k, v in d.items() if v is not None} | {"jd": d["jd"] + 3.0} for d in source["detections"]]
    return {"object_id": object_id, "survey": "ztf", "ra": 12.5, "dec": -30.25, "detections": dets}


def test_health_readiness_and_models(rtf):
    assert rtf.health() is True
    state, models = rtf.ready(), rtf.models()
    assert state.ready and state.status == "ready" and state.objects == models.objects > 0
    assert [m.version for m in models if m.active] == [state.model] == [models.active.version]
    assert models.active.dim == bundled_dim() and "SNIa" in models.active.coarse_classes and models.active.stale == 0
    assert "rtf_" in rtf.metrics()


def test_iter_objects_yields_every_object_once_across_pages(rtf):
    paged = list(rtf.iter_objects(page_size=7))
    ids = [o.object_id for o in paged]
    assert len(ids) == len(set(ids)) == rtf.models().objects and ids == sorted(ids)
    assert ids == [o.object_id for o in all_objects(rtf)]
    first = rtf.objects(limit=7)
    assert len(first) == 7 and first.next_cursor and [o.object_id for o in first] == ids[:7]
    label = paged[0].label
    assert [o.object_id for o in rtf.iter_objects(page_size=7, classes=label)] == [
        o.object_id for o in paged if o.label == label
    ]
    assert all(o.n_detections >= 20 for o in rtf.iter_objects(page_size=50, min_detections=20))


def test_iter_anomalies_ranks_every_object_once(rtf):
    ranked = list(rtf.iter_anomalies(page_size=7))
    scores = [a.score for a in ranked]
    assert scores == sorted(scores, reverse=True)
    assert sorted(a.object_id for a in ranked) == [o.object_id for o in all_objects(rtf)]
    assert [a.object_id for a in rtf.anomalies(limit=5)] == [a.object_id for a in ranked[:5]]


def test_an_objects_fingerprint_is_what_fingerprints_gives_for_its_light_curve(rtf):
    top = rtf.anomalies(limit=1)[0]
    obj = rtf.object(top.object_id, fingerprint=True)
    assert obj.object_id == top.object_id and obj.anomaly_score == pytest.approx(top.score)
    assert len(obj.fingerprint) == rtf.models().active.dim and rtf.object(top.object_id).fingerprint is None
    assert len(obj.lightcurve["detections"]) == obj.n_detections
    (fp,) = rtf.fingerprints(obj)
    assert fp.object_id == obj.object_id and fp.model == rtf.models().active.version
    assert max(abs(a - b) for a, b in zip(fp.vector, obj.fingerprint, strict=True)) < 1e-4


def test_neighbors_exclude_the_object_are_sorted_and_pass_the_filters(rtf):
    objs = all_objects(rtf)
    oid, label = objs[3].object_id, objs[3].label
    hits = rtf.neighbors(oid, k=8)
    sims = [n.similarity for n in hits]
    assert hits.object_id == oid and len(hits) == 8 and oid not in {n.object_id for n in hits}
    assert sims == sorted(sims, reverse=True) and all(-1.0 <= s <= 1.0 for s in sims)
    assert {n.object_id for n in hits} <= {o.object_id for o in objs}
    same = rtf.neighbors(oid, k=5, classes=[label])
    assert len(same) == 5 and {n.label for n in same} == {label}
    assert all(n.n_detections >= 30 for n in rtf.neighbors(oid, k=5, min_detections=30))
    many = rtf.neighbors_many([o.object_id for o in objs[:3]], k=4)
    assert [m.object_id for m in many] == [o.object_id for o in objs[:3]]
    for m in many:
        assert [n.object_id for n in m] == [n.object_id for n in rtf.neighbors(m.object_id, k=4)]


def test_search_by_fingerprint_and_by_light_curve_finds_the_object_first(rtf):
    obj = rtf.object(all_objects(rtf)[5].object_id, fingerprint=True)
    for query in (obj.fingerprint, Fingerprint(object_id="q", vector=obj.fingerprint), obj):
        hits = rtf.search(query, k=3)
        assert len(hits) == 3 and hits[0].object_id == obj.object_id and hits[0].similarity > 0.999
    assert rtf.search(obj, k=1).object_id == obj.object_id and rtf.search(obj.fingerprint, k=1).object_id is None
    assert {n.label for n in rtf.search(LIGHTCURVE, k=4, classes="AGN")} == {"AGN"}


def test_classify_gives_probabilities_in_the_order_posted(rtf):
    stored = rtf.object(all_objects(rtf)[0].object_id)
    preds = rtf.classify([LIGHTCURVE, stored])
    classes = rtf.models().active.coarse_classes
    assert [p.object_id for p in preds] == ["ZTF21aaaaaaa", stored.object_id]
    for p in preds:
        assert list(p.probabilities) == list(classes) and math.isclose(sum(p.probabilities.values()), 1, abs_tol=1e-4)
        assert p.label == max(p.probabilities, key=p.probabilities.get) and 0 <= p.anomaly_score <= 1
        assert p.fine_label in p.fine_probabilities
    assert preds[1].label == stored.label


def test_cone_finds_an_object_at_its_own_position(rtf):
    obj = next(o for o in all_objects(rtf) if o.ra is not None)
    found = rtf.cone(obj.ra, obj.dec, 2.0)
    assert found[0].object_id == obj.object_id and found[0].separation_arcsec < 0.01
    assert all(m.separation_arcsec <= 2.0 for m in found)
    assert [m.separation_arcsec for m in found] == sorted(m.separation_arcsec for m in found)


def test_plot_is_a_png(rtf):
    png = rtf.plot(rtf.objects(limit=1)[0].object_id)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    with pytest.raises(NotFound):
        rtf.plot("no-such-object")


def test_export_is_an_arrow_stream_of_every_fingerprint(rtf, tmp_path):
    pa = pytest.importorskip("pyarrow")
    data = rtf.export_fingerprints()
    table = pa.ipc.open_stream(data).read_all()
    models = rtf.models()
    assert table.num_rows == models.objects
    assert sorted(table.column("object_id").to_pylist()) == [o.object_id for o in all_objects(rtf)]
    assert table.schema.metadata[b"model"].decode() == models.active.version
    size = rtf.export_fingerprints(tmp_path / "fp.arrows")
    assert size == len(data) and (tmp_path / "fp.arrows").read_bytes() == data
    assert os.listdir(tmp_path) == ["fp.arrows"]  # no .part left behind


def test_the_service_errors_arrive_as_typed_exceptions(rtf):
    with pytest.raises(NotFound) as err:
        rtf.object("no-such-object")
    assert err.value.status == 404 and "no-such-object" in err.value.detail
    with pytest.raises(ValidationFailed) as err:
        rtf.neighbors(rtf.objects(limit=1)[0].object_id, classes=["NotAClass"])
    assert err.value.errors[0].loc == ("query", "class")
    bad = {"object_id": "x", "detections": [{"jd": 2459000.5, "band": "g", "mag": 19.0, "mag_err": -1.0}]}
    with pytest.raises(ValidationFailed) as err:
        rtf.classify([LIGHTCURVE, bad])
    assert err.value.errors and err.value.errors[0].loc[:3] == ("body", "lightcurves", 1)
    with pytest.raises(NotFound):
        rtf.activate_model("no-such-version")
    with pytest.raises(Conflict):
        rtf.drop_model(rtf.models().active.version)


def test_writes_need_the_api_key(service, rtf):
    body = new_object(rtf, "client-unauthorised")
    oid = rtf.objects(limit=1)[0].object_id
    for client in (
        RTFClient(service.url),
        RTFClient(service.url, api_key="wrong"),
        RTFClient(service.url, read_api_key=API_KEY),
    ):
        with client:
            with pytest.raises(Unauthorized):
                client.ingest(body)
            with pytest.raises(Unauthorized):
                client.delete(oid)
    with pytest.raises(NotFound):
        rtf.object("client-unauthorised")
    assert rtf.object(oid).object_id == oid


def test_ingest_stores_new_alerts_once(rtf):
    before = rtf.models().objects
    body = new_object(rtf, "client-json-1")
    first = rtf.ingest(body)
    assert first.new_alerts == len(body["detections"]) and first.duplicate_alerts == 0
    assert [o.object_id for o in first.objects] == ["client-json-1"] and first.model == rtf.models().active.version
    again = rtf.ingest({"lightcurves": [body]})
    assert (again.new_alerts, again.duplicate_alerts) == (0, len(body["detections"]))
    obj = rtf.object("client-json-1")
    assert obj.n_detections == len(body["detections"]) and (obj.ra, obj.dec) == (12.5, -30.25)
    assert rtf.models().objects == before + 1


def test_ingest_avro_of_an_rtf_synth_file_adds_its_objects(rtf, tmp_path):
    path = tmp_path / "alerts.avro"
    cmd = [sys.executable, "-m", "training.synthetic.cli", "--survey", "ztf", "--n", "5", "--seed", "7",
           "--min-detections", "3", "--quiet", "--out", str(path)]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    before = rtf.models().objects
    result = rtf.ingest_avro(path)
    ids = sorted(o.object_id for o in result.objects)
    assert len(ids) == 5 and all(i.startswith("synztf7_") for i in ids) and result.new_alerts >= 15
    assert rtf.models().objects == before + 5
    for o in result.objects:
        assert rtf.object(o.object_id).n_detections == o.n_detections
    with open(path, "rb") as f:
        replay = rtf.ingest_avro(f)
    assert replay.new_alerts == 0 and replay.duplicate_alerts == result.new_alerts
    assert rtf.ingest_avro(path.read_bytes()).new_alerts == 0


def test_delete_removes_the_object_everywhere(rtf):
    rtf.ingest(new_object(rtf, "client-delete-me"))
    nearest = rtf.neighbors("client-delete-me", k=1)[0].object_id
    assert "client-delete-me" in {n.object_id for n in rtf.neighbors(nearest, k=3)}
    before = rtf.models().objects
    assert rtf.delete("client-delete-me") is None
    with pytest.raises(NotFound):
        rtf.object("client-delete-me")
    with pytest.raises(NotFound):
        rtf.delete("client-delete-me")
    assert rtf.models().objects == before - 1
    assert "client-delete-me" not in {o.object_id for o in all_objects(rtf)}
    assert "client-delete-me" not in {n.object_id for n in rtf.neighbors(nearest, k=10)}


def test_activating_the_active_version_keeps_it(rtf):
    models = rtf.models()
    after = rtf.activate_model(models.active.version)
    assert after.active.version == models.active.version and after.objects == models.objects


# ---------------------------------------------------------------------------- the quickstart notebook
def test_the_committed_notebook_has_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_the_quickstart_notebook_runs_against_the_service(service, rtf, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("RTF_URL", service.url)
    monkeypatch.setenv("RTF_API_KEY", API_KEY)
    # the kernel imports rtf_client from this checkout, installed or not
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # "python3" is ipykernel's spec; jupyter_client runs its "python" as sys.executable (this venv)
    nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    out = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
            out[cell.metadata["tags"][0]] = cell.outputs
    text = {tag: "".join(o.get("text", "") for o in outs if o.output_type == "stream") for tag, outs in out.items()}
    first_words = {tag: [line.split()[0] for line in t.splitlines()] for tag, t in text.items() if t}
    assert f"{service.url}: model {rtf.models().active.version}" in text["connect"]
    top = [a.object_id for a in rtf.anomalies(limit=5)]
    assert first_words["anomalies"] == top
    assert text["object"].startswith(top[0] + " ztf")
    assert first_words["neighbors"] == [n.object_id for n in rtf.neighbors(top[0], k=5)]
    assert any("image/png" in o.get("data", {}) for o in out["plot"])
    (pred,) = rtf.classify(LIGHTCURVE)
    assert text["classify"].startswith(f"ZTF21aaaaaaa -> {pred.label} (p = ")
    assert first_words["search"] == [n.object_id for n in rtf.search(LIGHTCURVE, k=3)]
    assert text["errors"].strip() == "404 unknown object 'no-such-object'"


def test_feedback_moves_the_answered_object_and_is_listed(rtf):
    ranked = list(rtf.iter_anomalies(page_size=500))
    last = ranked[-1].object_id
    result = rtf.feedback(last, "anomaly", user="ada")
    assert (result.object_id, result.label, result.user, result.rank) == (last, "anomaly", "ada", 1)
    top = rtf.anomalies(limit=1)[0]
    assert (top.object_id, top.answer) == (last, "anomaly") and top.model_score is not None
    with pytest.raises(ValidationFailed) as err:
        rtf.feedback(last, "maybe")
    assert err.value.errors[0].loc == ("body", "label")
