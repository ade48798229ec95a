"""Model versions: a new checkpoint never hides the catalogue; rtf-reencode writes the new version
beside the active one (resumable, safe to kill -9); the switch is atomic and the service follows
it without a restart. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.catalog import Catalog
from app.main import create_app
from app.reencode import reencode
from encoder.checkpoint import load_checkpoint
from encoder.inference import Encoder
from indexing.store import Store
from tests._server import as_json, synth_lightcurves
from training.variants import jittered_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def second_checkpoint(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("ckpt") / "second.pt"
    return path, jittered_checkpoint(path, scale=0.02, seed=1)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_a_new_checkpoint_never_hides_the_catalogue(make_settings, fresh_url, second_checkpoint, tmp_path):
    ckpt, new = second_checkpoint
    index_dir = tmp_path / "index"
    first = make_settings(fresh_url, index_dir=index_dir, demo=False, sync_interval=0)
    lcs = synth_lightcurves(40, seed=4242)
    with TestClient(create_app(first)) as c:
        assert c.post("/v1/alerts", json=as_json(lcs)).status_code == 200
        old = c.get("/readyz").json()["model"]
    oid = lcs[3].object_id

    # restarted with another checkpoint on the same database: the active version keeps answering
    with TestClient(create_app(first.model_copy(update={"checkpoint": ckpt}))) as c:
        ready = c.get("/readyz").json()
        assert ready["model"] == old and ready["objects"] == 40
        assert ready["pending_model"]["version"] == new and ready["pending_model"]["fingerprints"] == 0
        assert "rtf-reencode --checkpoint" in ready["pending_model"]["note"]
        assert len(c.get(f"/v1/objects/{oid}/neighbors", params={"k": 5}).json()["neighbors"]) == 5
        assert c.get(f"/v1/objects/{oid}/plot").status_code == 200
        assert c.get(f"/v1/objects/{oid}").json()["label"] is not None
        assert len(c.get("/v1/anomalies").json()["items"]) == 40
        models = {m["version"]: m for m in c.get("/v1/models").json()["models"]}
        assert (models[old]["active"], models[old]["fingerprints"], models[old]["stale"]) == (True, 40, 0)
        assert (models[new]["active"], models[new]["fingerprints"], models[new]["stale"]) == (False, 0, 40)
        r = c.post(f"/v1/models/{new}/activate")
        assert r.status_code == 409 and "rtf-reencode" in r.json()["detail"]
        assert c.post("/v1/models/no-such-version/activate").status_code == 404

        catalog: Catalog = c.app.state.catalog
        encoder = Encoder(load_checkpoint(ckpt), precision="onnx", threads=1)
        report = reencode(catalog.store, encoder, batch_size=16, progress=False)
        assert report.encoded == 40 and not report.activated
        assert c.get("/readyz").json()["model"] == old  # written beside, not switched
        # an alert arrives for one object: its new-version fingerprint is stale again
        later = lcs[3].first(len(lcs[3]))
        bump = {"lightcurves": [as_json([later])["lightcurves"][0] | {"ra": 12.5, "dec": -3.25}]}
        assert c.post("/v1/alerts", json=bump).status_code == 200
        assert {m["version"]: m["stale"] for m in c.get("/v1/models").json()["models"]}[new] == 1
        assert c.post(f"/v1/models/{new}/activate").status_code == 409

        report = reencode(catalog.store, encoder, activate=True, progress=False)
        assert report.activated and catalog.store.active_version() == new
        assert catalog.sync() > 0  # the running service follows the switch
        ready = c.get("/readyz").json()
        assert ready["model"] == new and "pending_model" not in ready and ready["objects"] == 40
        nb = c.get(f"/v1/objects/{oid}/neighbors", params={"k": 5}).json()
        assert nb["model"] == new and len(nb["neighbors"]) == 5
        detail = c.get(f"/v1/objects/{oid}").json()
        assert detail["ra"] == 12.5 and detail["label"] is not None
        stored = catalog.store.get_fingerprint(oid, new)
        fresh = encoder.encode([catalog.lightcurve(oid)]).vectors[0]
        assert _cosine(stored, fresh) > 0.9999  # the fingerprint is of the light curve as stored now
        items = c.get("/v1/anomalies", params={"limit": 500}).json()["items"]
        assert len(items) == 40 and {i["object_id"] for i in items} == {lc.object_id for lc in lcs}
        # the old version is dropped on request; the active one cannot be
        assert c.delete(f"/v1/models/{new}").status_code == 409
        r = c.delete(f"/v1/models/{old}")
        assert r.status_code == 200 and r.json()["fingerprints_deleted"] == 40
        assert [m["version"] for m in c.get("/v1/models").json()["models"]] == [new]
        assert c.delete(f"/v1/models/{old}").status_code == 404

    # a restart with the bundled checkpoint again: the active (new) version is served, the bundled one is pending
    with TestClient(create_app(first)) as c:
        ready = c.get("/readyz").json()
        assert ready["model"] == new and ready["pending_model"]["version"] == old and ready["objects"] == 40


def _reencode_cmd(url: str, ckpt: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "app.reencode", "--checkpoint", str(ckpt), "--database-url", url,
            "--no-progress", "--threads", "1", *extra]  # fmt: skip


@pytest.mark.slow
def test_reencode_survives_kill_9_and_resumes(make_settings, fresh_url, second_checkpoint, tmp_path):
    ckpt, new = second_checkpoint
    settings = make_settings(fresh_url, index_dir=tmp_path / "index", demo=False, sync_interval=0)
    catalog = Catalog.open(settings)
    try:
        old = catalog.version
        lcs = synth_lightcurves(1500, seed=777)
        for s in range(0, len(lcs), 250):
            catalog.ingest(lcs[s : s + 250])
        store = catalog.store
        total = store.count_objects()
        assert store.count_stale(new) == total >= 1400

        proc = subprocess.Popen(
            _reencode_cmd(fresh_url, ckpt, "--batch-size", "10"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while store.fingerprint_counts().get(new, 0) < 100:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        done = store.fingerprint_counts()[new]
        assert 100 <= done < total, "killed after it had finished: nothing was tested"
        assert store.active_version() == old and store.count_stale(new) == total - done

        out = subprocess.run(
            _reencode_cmd(fresh_url, ckpt, "--activate"), cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"{total - done} fingerprints written" in out.stdout, out.stdout
        assert store.active_version() == new and store.count_stale(new) == 0
        assert store.fingerprint_counts() == {old: total, new: total}
        encoder = Encoder(load_checkpoint(ckpt), precision="fp32", threads=1)
        sample = [lc.object_id for lc in lcs[::97]]
        fresh = encoder.encode([catalog.lightcurve(o) for o in sample]).vectors
        for oid, v in zip(sample, fresh, strict=True):
            assert _cosine(store.get_fingerprint(oid, new), v) > 0.999, oid
        listing = subprocess.run(
            [sys.executable, "-m", "app.reencode", "--list", "--database-url", fresh_url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listing.returncode == 0 and f"* {new}" in listing.stdout and old in listing.stdout
    finally:
        catalog.close()


def test_reencode_cli_refuses_clearly(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = Store(url)
    store.migrate()
    store.register_model("v1", path="a.pt", sha256="0" * 64, dim=8, class_names=[], active=True)
    store.close()
    for args, needle in (
        (["--drop", "v1"], "active version"),
        (["--activate-version", "nope"], "nope"),
        (["--drop", "nope"], ""),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "app.reencode", *args, "--database-url", url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if needle:
            assert out.returncode == 2 and needle in out.stderr, (args, out.stderr)
        else:  # dropping an unknown version deletes nothing
            assert out.returncode == 0 and "0 fingerprints" in out.stdout, out.stdout
    out = subprocess.run([sys.executable, "-m", "app.reencode", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--activate" in out.stdout and "safe to kill" in out.stdout
