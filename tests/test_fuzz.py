"""Property-based fuzzing of every endpoint from the service's own OpenAPI document
(schemathesis over ASGI, in process: valid and invalid inputs), plus raw-byte bodies:
never a 5xx, and every JSON error has a ``detail``.

Bounded: ``RTF_FUZZ_EXAMPLES`` (default 30) examples per operation, no deadline, on SQLite
with the small demo catalogue of conftest.py."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")

FUZZ_EXAMPLES = int(os.environ.get("RTF_FUZZ_EXAMPLES", "30"))
SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the spec (the app is built, not started)."""
    from app.main import create_app
    from app.settings import Settings

    spec = create_app(Settings(database_url="sqlite://", demo=False)).openapi()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m in ("get", "post", "put", "delete")]


OPERATIONS = _operations()


def _without_lifespan(app):
    """The app as schemathesis sees it: the lifespan is the fixture's (one catalogue), not its own."""

    async def asgi(scope, receive, send):
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return asgi


@pytest.fixture(scope="module")
def fuzz_client(make_settings, tmp_path_factory):
    from fastapi.testclient import TestClient

    from app.main import create_app

    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    with TestClient(create_app(make_settings(f"sqlite:///{db}", max_body_bytes=1 << 20))) as client:
        yield client


@pytest.fixture(scope="module")
def api_schema(fuzz_client):
    return schemathesis.openapi.from_asgi("/openapi.json", _without_lifespan(fuzz_client.app))


def _is_json(response) -> bool:
    ctype = response.headers.get("content-type", "")
    return (ctype[0] if isinstance(ctype, list) else ctype).startswith("application/json")


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_errors(api_schema, method, path):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @SETTINGS
    def check(case):
        r = case.call()
        assert r.status_code < 500, f"{case.method} {case.formatted_path}: {r.status_code} {r.text[:500]}"
        if r.status_code >= 400 and _is_json(r):
            assert "detail" in r.json(), r.text[:500]

    check()


@given(
    prefix=st.sampled_from([b"", b"Obj\x01", b'{"lightcurves": [', b"\x1f\x8b"]),
    tail=st.binary(max_size=2048),
    path=st.sampled_from(["/v1/alerts", "/v1/fingerprints", "/v1/classify", "/v1/search"]),
    content_type=st.sampled_from(["avro/binary", "application/json", "application/octet-stream", ""]),
)
@settings(max_examples=4 * FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_random_bytes_bodies_are_4xx(fuzz_client, prefix, tail, path, content_type):
    """Raw bytes (with an Avro, JSON or gzip prefix, or none) to the body-taking endpoints: a 4xx."""
    r = fuzz_client.post(path, content=prefix + tail, headers={"Content-Type": content_type})
    assert 400 <= r.status_code < 500, (path, content_type, (prefix + tail)[:64], r.status_code, r.text[:300])
    assert "detail" in r.json()
