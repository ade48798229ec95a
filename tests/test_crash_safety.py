"""Crash safety: ``kill -9`` the real service (uvicorn subprocess, SQLite) in the middle of a
bulk ingest, restart it, and check that every acknowledged alert is in SQL, nothing is
duplicated, and every object is findable through the index, which the restart rebuilt from SQL.
Also: a kill while the index file is being written, and truncated / partial / garbage index
files left on disk, are detected on start and the index is rebuilt from SQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests._server import Server, as_json, bundled_dim, synth_lightcurves

pytestmark = pytest.mark.slow

MAX_SECONDS = 60  # every loop here is bounded by count and by time


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    from training.synthetic import write_parquet

    path = tmp_path_factory.mktemp("crash-demo") / "demo.parquet"
    write_parquet(synth_lightcurves(40, seed=31), path)
    return path


def _env(tmp: Path, demo: Path, **extra) -> dict[str, str]:
    return {
        "RTF_DATABASE_URL": f"sqlite:///{tmp / 'rtf.db'}",
        "RTF_INDEX_DIR": str(tmp / "index"),
        "RTF_DEMO": "1",
        "RTF_DEMO_FILE": str(demo),
    } | {f"RTF_{k.upper()}": str(v) for k, v in extra.items()}


def _plan(lcs, group: int = 4) -> list[tuple[str, list]]:
    """Requests of a bulk ingest: each group of objects first with its early half, later in full
    (so an object's history spans requests and the second post re-sends the first half)."""
    groups = [lcs[i : i + group] for i in range(0, len(lcs), group)]
    plan: list[tuple[str, list]] = []
    for i, g in enumerate(groups):
        plan.append((f"early-{i}", [lc.first(max(1, len(lc) // 2)) for lc in g]))
        if i >= 1:
            plan.append((f"full-{i - 1}", groups[i - 1]))
    plan.append((f"full-{len(groups) - 1}", groups[-1]))
    return plan


def _keys(lc) -> set[tuple[float, int]]:
    return {(round(float(t), 6), int(b)) for t, b in zip(lc.time, lc.band, strict=True)}


class Ingester(threading.Thread):
    """Posts the plan one request at a time and records what the server acknowledged (200)."""

    def __init__(self, url: str, plan):
        super().__init__(daemon=True)
        self.url, self.plan = url, plan
        self.acked: list[str] = []
        self.sent: list[str] = []
        self.failed: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for name, lcs in self.plan:
                if time.monotonic() > deadline:
                    return
                self.sent.append(name)
                try:
                    r = client.post("/v1/alerts", json=as_json(lcs))
                except httpx.HTTPError as exc:  # the server died: stop, as a client would
                    self.failed = f"{name}: {type(exc).__name__}"
                    return
                if r.status_code != 200:
                    self.failed = f"{name}: {r.status_code} {r.text[:200]}"
                    return
                self.acked.append(name)


def _check_catalogue(url: str, expected: dict[str, set], at_most: dict[str, set]) -> None:
    """Every object holds at least its acknowledged detections and at most those sent; the
    index holds exactly the SQL objects; each object's stored light curve finds itself first."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for oid, keys in expected.items():
            r = client.get(f"/v1/objects/{oid}")
            assert r.status_code == 200, (oid, r.text)
            obj = r.json()
            stored = {(round(d["jd"], 6), d["band"]) for d in obj["lightcurve"]["detections"]}
            assert obj["n_detections"] == len(obj["lightcurve"]["detections"]) == len(stored), oid  # no duplicates
            want = {(t, "ugrizy"[b]) for t, b in keys}
            allowed = {(t, "ugrizy"[b]) for t, b in at_most[oid]}
            assert want <= stored <= allowed, (oid, len(want), len(stored), len(allowed))
            hit = client.post("/v1/search", json={"lightcurve": obj["lightcurve"], "k": 1}).json()["neighbors"]
            assert hit and hit[0]["object_id"] == oid and hit[0]["similarity"] > 0.999, (oid, hit)
            nb = client.get(f"/v1/objects/{oid}/neighbors", params={"k": 3})
            assert nb.status_code == 200 and len(nb.json()["neighbors"]) == 3


def _sql_counts(db: Path) -> tuple[int, int, int]:
    """Objects, detections stored, and distinct (object, time, band) among them."""
    from sqlalchemy import text

    from indexing.history import History
    from indexing.store import Store

    store = Store(f"sqlite:///{db}")
    try:
        with store.engine.connect() as conn:
            n_obj = conn.execute(text("SELECT COUNT(*) FROM objects")).scalar_one()
            histories = [(oid, History.from_bytes(d)) for oid, d in conn.execute(text("SELECT object_id, data FROM lightcurves"))]
    finally:
        store.close()
    n_alerts = sum(len(h) for _, h in histories)
    n_keys = len({(oid, t, b) for oid, h in histories for t, b in zip(h.jd.tolist(), h.band.tolist(), strict=True)})
    return n_obj, n_alerts, n_keys


@pytest.mark.parametrize("save_every", [100_000, 1], ids=["index-never-saved", "index-saved-every-ingest"])
def test_acknowledged_alerts_survive_kill_9(tmp_path, small_demo, save_every):
    lcs = synth_lightcurves(32, seed=7000 + save_every % 97)
    full = {lc.object_id: lc for lc in lcs}
    plan = _plan(lcs)
    parts = dict(plan)
    srv = Server(_env(tmp_path, small_demo, index_save_every=save_every))
    try:
        demo_objects = srv.start().wait_ready()["objects"]
        ingest = Ingester(srv.url, plan)
        ingest.start()
        deadline = time.monotonic() + MAX_SECONDS
        while len(ingest.acked) < len(plan) // 3 and ingest.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.kill()  # SIGKILL mid-stream: no shutdown hook, the index is not saved
        ingest.join(timeout=MAX_SECONDS)
        assert not ingest.is_alive()
        assert ingest.failed and len(ingest.acked) < len(plan), "the kill came after the last request"

        # what was acknowledged must be there; what was in flight may or may not be
        acked: dict[str, set] = {}
        sent: dict[str, set] = {}
        for names, into in ((ingest.acked, acked), (ingest.sent, sent)):
            for name in names:
                for lc in parts[name]:
                    into.setdefault(lc.object_id, set()).update(_keys(lc))
        ready = srv.start().wait_ready()
        assert ready["objects"] >= demo_objects + len(acked)
        log = srv.log()
        if save_every > 1:
            assert "rebuilding" in log and "stale index" in log, log[-2000:]
        _check_catalogue(srv.url, acked, sent)
        n_obj, n_alerts, n_keys = _sql_counts(tmp_path / "rtf.db")
        assert n_alerts == n_keys  # no duplicated alert
        assert ready["objects"] == n_obj  # the index holds every SQL object

        # the client retries everything (acknowledged or not): idempotent, nothing duplicated
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            for name, batch in plan:
                r = client.post("/v1/alerts", json=as_json(batch))
                assert r.status_code == 200, r.text
                if name in ingest.acked:
                    assert r.json()["new_alerts"] == 0, name
        everything = {oid: _keys(lc) for oid, lc in full.items()}
        _check_catalogue(srv.url, everything, everything)
        n_obj, n_alerts, n_keys = _sql_counts(tmp_path / "rtf.db")
        assert n_alerts == n_keys and n_obj == demo_objects + len(full)
    finally:
        srv.kill()


def _index_files(index_dir: Path) -> dict[str, Path]:
    manifest = json.loads((index_dir / "manifest.json").read_text())
    return {
        "manifest": index_dir / "manifest.json",
        "index": index_dir / manifest["index_file"],
        "meta": index_dir / manifest["meta_file"],
    }


def test_damaged_index_files_are_detected_and_rebuilt_from_sql(tmp_path, small_demo):
    """A clean stop saves the index; then each kind of damage a crash or a full disk can leave is
    detected by the start-up load (indexing.sync.load_or_rebuild, the code path of Catalog.open)
    and the index is rebuilt from SQL; last, the real service starts on damaged files."""
    from indexing.store import Store
    from indexing.sync import load_or_rebuild

    srv = Server(_env(tmp_path, small_demo))
    extra = synth_lightcurves(6, seed=8080)
    index_dir = tmp_path / "index"
    try:
        srv.start()
        assert httpx.post(srv.url + "/v1/alerts", json=as_json(extra), timeout=60).status_code == 200
        srv.stop()  # SIGTERM: the index is saved with the SQL marker
        version = json.loads((index_dir / "manifest.json").read_text())["model_version"]
        store = Store(f"sqlite:///{tmp_path / 'rtf.db'}")
        n_sql = store.count_fingerprints(version)

        def reopen() -> tuple[bool, str]:
            index, report = load_or_rebuild(store, index_dir, version, dim=bundled_dim(), progress=False)
            assert len(index) == n_sql
            for lc in extra:  # each object finds itself by its own fingerprint
                assert index.search(index.get_vector(lc.object_id), 1)[0].object_id == lc.object_id
            return report.rebuilt, report.reason

        assert reopen() == (False, "")  # intact files load without a rebuild
        damages = {
            "truncated index file": lambda f: f["index"].write_bytes(f["index"].read_bytes()[:100]),
            "index file of zeros": lambda f: f["index"].write_bytes(b"\0" * f["index"].stat().st_size),
            "index file missing": lambda f: f["index"].unlink(),
            "meta file truncated": lambda f: f["meta"].write_bytes(f["meta"].read_bytes()[:-50]),
            "meta file missing": lambda f: f["meta"].unlink(),
            "empty manifest": lambda f: f["manifest"].write_text(""),
            "half-written manifest": lambda f: f["manifest"].write_text(f["manifest"].read_text()[:60]),
            "manifest missing": lambda f: f["manifest"].unlink(),
        }
        for what, damage in damages.items():
            (index_dir / ".index-partial.faiss.tmp").write_bytes(b"\x01" * 999)  # a save cut short
            damage(_index_files(index_dir))  # the last rebuild saved a complete generation
            rebuilt, reason = reopen()
            assert rebuilt and reason, what
        store.close()

        _index_files(index_dir)["index"].write_bytes(b"garbage")
        ready = srv.start().wait_ready()
        assert ready["objects"] == n_sql
        assert "rebuilding" in srv.log() and "checksum mismatch" in srv.log()
        _check_catalogue(srv.url, {lc.object_id: _keys(lc) for lc in extra}, {lc.object_id: _keys(lc) for lc in extra})
    finally:
        srv.kill()


_SAVER = r"""
import sys, numpy as np
from indexing.persistence import save_index
from indexing.vector_index import VectorIndex
index_dir, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
gen = 0
print("ready", flush=True)
while True:  # alternate two generations of different sizes until killed
    size = n if gen % 2 == 0 else n // 2
    vi = VectorIndex(64)
    vi.build([f"o{gen % 2}-{i}" for i in range(size)], rng.standard_normal((size, 64)).astype(np.float32))
    save_index(vi, index_dir, model_version="m", sql_marker=f"gen{gen % 2}")
    gen += 1
"""


def test_kill_during_index_save_leaves_a_complete_generation(tmp_path):
    """SIGKILL a process that saves the index over and over: after each kill the directory loads
    as one complete generation (old or new), never a mix, or the load fails cleanly (rebuild)."""
    from indexing.persistence import IndexLoadError, load_index

    n = 10_000
    rng = np.random.default_rng(1)
    deadline = time.monotonic() + MAX_SECONDS
    loaded = 0
    for attempt in range(4):
        if time.monotonic() > deadline:
            break
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(tmp_path / "idx"), str(n)],
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.PIPE,
        )
        try:
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(0.3 + float(rng.uniform(0, 1.2)))
        finally:
            proc.kill()
            proc.wait(timeout=30)
        try:
            index, manifest = load_index(tmp_path / "idx", model_version="m", sql_marker=None)
        except IndexLoadError as exc:
            assert attempt == 0 or "no manifest" not in str(exc)  # detected, and the service would rebuild
            continue
        loaded += 1
        expect = n if manifest["sql_marker"] == "gen0" else n // 2
        assert len(index) == manifest["count"] == expect
        prefix = "o0-" if manifest["sql_marker"] == "gen0" else "o1-"
        assert index.get_vector(f"{prefix}{expect - 1}") is not None
    assert loaded >= 1
