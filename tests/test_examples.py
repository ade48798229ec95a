"""Every example a user is shown runs as written on the demo: the README's commands against
``scripts/serve.sh`` (its own demo catalogue), and each OpenAPI operation with its documented examples,
as Swagger UI's "Try it out" sends them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests._server import ROOT, Server

pytestmark = pytest.mark.slow

README = ROOT / "README.md"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Server:
    """The README's first command, ``scripts/serve.sh``, on a database of its own: it makes the demo
    catalogue (``rtf-synth`` 3,000 objects, seed 2026) and serves it."""
    var = tmp_path_factory.mktemp("var")
    env = {
        "RTF_DATABASE_URL": f"sqlite:///{var / 'rtf.db'}",
        "RTF_INDEX_DIR": str(var / "index"),
        "RTF_DEMO_FILE": str(var / "demo.parquet"),
        "RTF_PRECISION": "onnx",
    }
    with Server(env, script="scripts/serve.sh", ready_timeout=600) as server:
        yield server


def readme_commands(text: str) -> list[str]:
    """The commands of the README's bash blocks that talk to the local service or make its inputs
    (continuation lines joined; comments kept: bash ignores them)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        if "localhost:8000" not in block:
            continue
        for command in re.split(r"\n(?=\S)", block.strip()):  # a new command starts at column 0
            commands.append(command)
    return commands


def test_the_readme_has_examples_to_walk():
    commands = readme_commands(README.read_text())
    assert sum("curl" in c for c in commands) >= 8, commands


def test_every_readme_example_runs_as_written(demo, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the README's `.venv/bin/...` from a scratch folder
    # curl as written, except that an HTTP error fails the command and the host is the test's server
    wrapper = 'curl() { command curl --fail-with-body --show-error "$@"; }\n'
    for command in readme_commands(README.read_text()):
        script = wrapper + command.replace("localhost:8000", f"127.0.0.1:{demo.port}")
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            timeout=300,
            env=os.environ | {"TQDM_DISABLE": "1"},
        )
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        out = done.stdout.strip()
        if "curl" in command and "> " not in command:
            answer = json.loads(out)  # every API answer is JSON, and none is a problem document
            assert not (isinstance(answer, dict) and {"type", "title", "status"} <= set(answer)), (command, answer)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_readme_python_example_runs_as_written(demo, tmp_path):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "127.0.0.1:8000" in b]
    assert blocks
    for code in blocks:
        done = subprocess.run(
            [sys.executable, "-c", code.replace("127.0.0.1:8000", f"127.0.0.1:{demo.port}")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and done.stdout.strip(), (code, done.stdout[-2000:], done.stderr[-2000:])


def _example(param: dict):
    if "example" in param:
        return param["example"]
    if param.get("examples"):
        return next(iter(param["examples"].values()))["value"]
    return (param.get("schema", {}).get("examples") or [None])[0]


def _body_example(op: dict, schemas: dict):
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    if "example" in content:
        return content["example"]
    ref = content["schema"]["$ref"].rsplit("/", 1)[-1]
    return (schemas[ref].get("examples") or [None])[0]


def test_every_openapi_operation_answers_its_examples(demo):
    spec = httpx.get(demo.url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    destructive = []  # run last: they change what the other examples find
    calls = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if method == "delete":
                destructive.append((path, method, op))
                continue
            _try(demo, spec, path, method, op, schemas)
            calls += 1
    for path, method, op in destructive:
        _try(demo, spec, path, method, op, schemas)
    assert calls >= 15


def _try(demo: Server, spec: dict, path: str, method: str, op: dict, schemas: dict) -> None:
    params, url = {}, path
    for p in op.get("parameters", []):
        value = _example(p)
        if value is None:
            assert not p.get("required"), f"{method.upper()} {path}: required {p['in']} {p['name']} has no example"
            continue
        if p["in"] == "path":
            url = url.replace("{" + p["name"] + "}", str(value))
        elif p["in"] == "query":
            params[p["name"]] = value
    body = _body_example(op, schemas)
    if op.get("requestBody", {}).get("required"):
        assert body is not None, f"{method.upper()} {path}: a required body with no example"
    r = httpx.request(method, demo.url + url, params=params, json=body, timeout=60)
    documented = {int(c) for c in op["responses"] if c.isdigit()}
    if method == "delete" and path == "/v1/models/{version}":  # its example is the served version: refused
        assert r.status_code == 409 and 409 in documented, r.text
        return
    assert r.status_code < 300, (method, path, params, r.status_code, r.text[:500])
    assert r.status_code in documented, (method, path, r.status_code, documented)
