"""One error format (RFC 9457 problem+json) on every route and status, and API docs that work offline."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.main import create_app


@pytest.fixture(scope="module")
def service(make_settings, tmp_path_factory):
    db = tmp_path_factory.mktemp("problems") / "rtf.db"
    settings = make_settings(f"sqlite:///{db}", api_key="s3cret", max_body_bytes=50_000, rate_limit=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _is_problem(r, status: int, instance: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["type"] == "about:blank" and body["status"] == status and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    if instance is not None:
        assert body["instance"] == instance, body
    return body


def test_every_kind_of_error_is_a_problem_document(service):
    oid = service.get("/v1/objects", params={"limit": 1}).json()["items"][0]["object_id"]
    _is_problem(service.get("/v1/objects/no-such-object"), 404, "/v1/objects/no-such-object")
    _is_problem(service.get("/v1/no-such-route"), 404, "/v1/no-such-route")
    _is_problem(service.put(f"/v1/objects/{oid}"), 405)
    _is_problem(service.post("/v1/alerts", json={"lightcurves": []}), 401, "/v1/alerts")
    _is_problem(service.post("/v1/fingerprints", content=b"x", headers={"content-type": "text/plain"}), 415)
    _is_problem(
        service.post("/v1/fingerprints", content=b"{" * 60_000, headers={"content-type": "application/json"}), 413
    )
    _is_problem(service.get("/v1/anomalies", params={"cursor": "not-a-cursor"}), 422)
    _is_problem(service.post("/v1/models/no-such-version/activate", headers={"X-API-Key": "s3cret"}), 404)


def test_validation_problems_keep_each_field_path(service):
    bad = {"lightcurves": [{"object_id": "a", "detections": [{"mjd": 60000, "band": "g", "mag": 19, "mag_err": -1}]}]}
    body = _is_problem(service.post("/v1/fingerprints", json=bad), 422, "/v1/fingerprints")
    assert body["errors"][0]["loc"] == ["body", "lightcurves", 0, "detections", 0, "mag_err"], body
    assert "mag_err" in body["detail"], body  # the sentence names the field too
    body = _is_problem(service.get("/v1/anomalies", params={"limit": "many"}), 422)
    assert body["errors"][0]["loc"] == ["query", "limit"], body
    body = _is_problem(service.get("/v1/anomalies", params={"class": "SNIa\x00"}), 422)
    assert body["errors"][0]["loc"] == ["query", "class"], body


def test_a_bug_answers_a_problem_not_a_traceback(service, monkeypatch):
    catalog = service.app.state.catalog

    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(catalog, "list_objects", broken)
    body = _is_problem(service.get("/v1/objects"), 500, "/v1/objects")
    assert "RuntimeError" in body["detail"] and "boom" not in body["detail"], body


def test_openapi_documents_every_error_as_a_problem_with_summaries_and_tags(service):
    spec = service.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "Problem" in schemas and "HTTPValidationError" not in schemas
    assert {t["name"] for t in spec["tags"]} >= {"encode", "ingest", "objects", "anomalies", "export", "service"}
    assert all(t.get("description") for t in spec["tags"])
    used_tags = set()
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            generated = " ".join(w.capitalize() for w in op["operationId"].split("_")[:2])
            assert op.get("summary") and not op["summary"].startswith(generated), (method, path, op.get("summary"))
            used_tags.update(op["tags"])
            for code, response in op["responses"].items():
                if code[0] in "45":
                    ref = response["content"]["application/problem+json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/Problem", (method, path, code)
            for p in op.get("parameters", []):
                assert p.get("description"), (method, path, p["name"])
    assert used_tags <= {t["name"] for t in spec["tags"]}


def test_swagger_and_redoc_load_only_local_assets(service):
    for page in ("/docs", "/redoc"):
        html = service.get(page)
        assert html.status_code == 200, page
        sources = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert sources and all(s.startswith("/") for s in sources), (page, sources)  # nothing from a CDN
        assert "fonts.googleapis" not in html.text
        for s in sources:
            asset = service.get(s)
            assert asset.status_code == 200 and len(asset.content) > 1000, s


def test_dead_letters_are_listed_behind_the_api_key(service):
    from indexing.store import DeadLetter

    store = service.app.state.catalog.store
    before = store.count_dead_letters()
    store.add_dead_letters([DeadLetter("ztf_test", 0, 41 + i, f"bad packet {i}", b"\x00" * (10 + i)) for i in range(3)])
    _is_problem(service.get("/v1/dead-letters"), 401)
    body = service.get("/v1/dead-letters", params={"limit": 2}, headers={"X-API-Key": "s3cret"}).json()
    assert body["total"] == before + 3 and len(body["items"]) == 2
    newest = body["items"][0]
    assert (newest["source"], newest["offset"], newest["error"], newest["payload_bytes"]) == ("ztf_test", 43, "bad packet 2", 12)
