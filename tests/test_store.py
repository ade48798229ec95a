"""Store tests, run on SQLite and on PostgreSQL (skipped with a reason when no server answers)."""

from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np
import pytest
from sqlalchemy import inspect

from indexing.models import Base
from indexing.store import AlertRow, ObjectState, Store, UpperLimitRow


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rtf.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.migrate()
    yield s
    s.close()


def alert(oid: str, jd: float, band: str = "g", key: str | None = None, meta=None) -> AlertRow:
    return AlertRow(key or f"{oid}:{jd:.6f}:{band}", oid, jd, band, 18.0, 0.05, 1000.0, 30.0, meta)


def vec(seed: int, dim: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def test_migrate_is_idempotent_and_sqlite_pragmas(store):
    store.migrate()
    tables = set(inspect(store.engine).get_table_names())
    assert {"objects", "alerts", "upper_limits", "fingerprints", "models", "alembic_version"} <= tables
    if store.dialect == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_migrations_match_models(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_ingest_roundtrip_and_idempotent(store):
    objs = [
        ObjectState(
            "ZTF1", survey="ztf", ra=10.0, dec=-5.0, label="SNIa", probabilities={"SNIa": 0.8}, anomaly_score=0.3
        )
    ]
    alerts = [alert("ZTF1", 2460000.5, "g", meta={"candid": 1}), alert("ZTF1", 2460002.5, "r")]
    lims = [UpperLimitRow("ZTF1", 2459998.5, "g", 20.5)]
    fp = {"ZTF1": vec(1)}
    r1 = store.ingest(objs, alerts, fp, "m1", lims)
    assert (r1.new_alerts, r1.duplicate_alerts, r1.new_upper_limits, r1.objects_touched, r1.fingerprints_written) == (
        2,
        0,
        1,
        1,
        1,
    )
    marker = store.state_marker("m1")
    r2 = store.ingest(objs, alerts, fp, "m1", lims)
    assert (r2.new_alerts, r2.duplicate_alerts, r2.new_upper_limits, r2.objects_touched, r2.fingerprints_written) == (
        0,
        2,
        0,
        0,
        0,
    )
    assert store.state_marker("m1") == marker  # nothing changed
    o = store.get_object("ZTF1")
    assert (o.first_jd, o.last_jd, o.n_detections) == (2460000.5, 2460002.5, 2)
    assert o.label == "SNIa" and o.probabilities == {"SNIa": 0.8} and o.ra == 10.0
    assert o.updated_at is not None and o.updated_at.tzinfo is not None
    got = store.get_alerts("ZTF1")
    assert [a.band for a in got] == ["g", "r"] and got[0].meta == {"candid": 1} and got[1].meta is None
    assert store.get_upper_limits("ZTF1") == lims
    np.testing.assert_array_equal(store.get_fingerprint("ZTF1", "m1"), fp["ZTF1"])
    assert store.get_fingerprint("ZTF1", "m2") is None and store.get_object("nope") is None
    assert store.count_objects() == 1 and store.count_fingerprints("m1") == 1


def test_alert_meta_as_dict_or_json_text_reads_back_as_a_dict(store):
    alerts = [
        alert("ZTF9", 2460000.5, "g", meta={"rb": 0.5}),
        alert("ZTF9", 2460001.5, "r", meta='{"rb":0.25,"fwhm":2}'),
    ]
    assert store.ingest([ObjectState("ZTF9")], alerts).new_alerts == 2
    assert [a.meta for a in store.get_alerts("ZTF9")] == [{"rb": 0.5}, {"rb": 0.25, "fwhm": 2}]


def test_ingest_updates_and_none_keeps(store):
    store.ingest([ObjectState("A", ra=1.0, dec=2.0, known_label="SNII", anomaly_score=0.1)], [alert("A", 10.0)])
    m0 = store.state_marker("m1")
    # a new alert for A only (no ObjectState): summary recomputed, other fields kept
    r = store.ingest([], [alert("A", 12.0)])
    assert r.new_alerts == 1 and r.objects_touched == 1
    o = store.get_object("A")
    assert (o.n_detections, o.first_jd, o.last_jd, o.known_label, o.ra) == (2, 10.0, 12.0, "SNII", 1.0)
    assert store.state_marker("m1") != m0
    m1 = store.state_marker("m1")
    store.ingest([ObjectState("A", label="TDE", anomaly_score=0.9)], [])
    o = store.get_object("A")
    assert (o.label, o.anomaly_score, o.known_label, o.n_detections) == ("TDE", 0.9, "SNII", 2)
    assert store.state_marker("m1") != m1
    # a new vector for the same object replaces the old one and changes the marker
    store.ingest([], [], {"A": vec(1)}, "m1")
    m2 = store.state_marker("m1")
    store.ingest([], [], {"A": vec(2)}, "m1")
    np.testing.assert_array_equal(store.get_fingerprint("A", "m1"), vec(2))
    assert store.state_marker("m1") != m2 and store.count_fingerprints("m1") == 1
    assert store.update_predictions("A", anomaly_score=0.5) and not store.update_predictions("B", label="x")
    assert store.get_object("A").anomaly_score == 0.5
    assert store.delete_object("A") and store.get_object("A") is None and store.get_alerts("A") == []


def test_iter_fingerprints_batches(store):
    objs = [ObjectState(f"o{i:03d}", label="SNIa" if i % 2 else None, anomaly_score=i / 10) for i in range(25)]
    fps = {o.object_id: vec(i, 8) for i, o in enumerate(objs)}
    store.ingest(objs, [alert("o003", 5.0), alert("o003", 6.0)], fps, "m1")
    store.ingest([], [], {"o000": vec(0, 8)}, "other")
    batches = list(store.iter_fingerprints("m1", batch_size=10))
    assert [len(b.object_ids) for b in batches] == [10, 10, 5]
    ids = [i for b in batches for i in b.object_ids]
    assert sorted(ids) == sorted(fps)
    allv = np.concatenate([b.vectors for b in batches])
    np.testing.assert_array_equal(allv, np.stack([fps[i] for i in ids]))
    b0 = batches[0]
    j = b0.object_ids.index("o003")
    assert b0.labels[j] == "SNIa" and b0.n_detections[j] == 2 and b0.last_jd[j] == 6.0
    j = b0.object_ids.index("o000")
    assert b0.labels[j] is None and np.isnan(b0.last_jd[j]) and b0.anomaly_score[j] == 0.0
    with store.scan_fingerprints("m1") as scan:
        assert scan.total == 25 and scan.marker == store.state_marker("m1")
    assert list(store.iter_fingerprints("none")) == []


def test_anomaly_paging_is_stable_with_ties(store):
    rng = np.random.default_rng(0)
    scores = rng.choice([0.1, 0.5, 0.5000001, 0.9], size=60)
    objs = [
        ObjectState(f"x{i:02d}", label="SNIa" if i % 3 else "TDE", last_jd=float(i), anomaly_score=float(s))
        for i, s in enumerate(scores)
    ]
    objs.append(ObjectState("unscored"))
    store.ingest(objs, [], {o.object_id: vec(i) for i, o in enumerate(objs[:30])}, "m1")
    expected = sorted((-o.anomaly_score, o.object_id) for o in objs[:60])
    for limit in (1, 7, 60, 100):
        seen, cursor = [], None
        while True:
            page, cursor = store.anomalies(limit=limit, cursor=cursor)
            assert len(page) <= limit
            seen.extend((-o.anomaly_score, o.object_id) for o in page)
            if cursor is None:
                break
        assert seen == expected
    # filters
    page, _ = store.anomalies(limit=100, label="TDE")
    assert {o.object_id for o in page} == {f"x{i:02d}" for i in range(0, 60, 3)}
    page, _ = store.anomalies(limit=100, since_jd=50)
    assert {o.object_id for o in page} == {f"x{i:02d}" for i in range(50, 60)}
    page, _ = store.anomalies(limit=100, model_version="m1")
    assert {o.object_id for o in page} == {f"x{i:02d}" for i in range(30)}
    with pytest.raises(ValueError):
        store.anomalies(limit=5, cursor="not-a-cursor!")


def test_models_registry(store):
    store.register_model("v1", path="a.pt", sha256="0" * 64, dim=64, class_names=["SNIa", "TDE"], active=True)
    store.register_model("v2", path="b.pt", sha256="1" * 64, dim=64, class_names=["SNIa"], metrics={"f1": 0.8})
    assert store.active_model().version == "v1"
    store.set_active_model("v2")
    models = {m.version: m for m in store.list_models()}
    assert models["v2"].active and not models["v1"].active and models["v2"].metrics == {"f1": 0.8}
    assert models["v1"].class_names == ["SNIa", "TDE"]
    with pytest.raises(KeyError):
        store.set_active_model("nope")


def _ingest_worker(url: str, worker: int, n_objects: int, n_alerts: int) -> None:
    s = Store(url)
    try:
        for j in range(n_alerts):
            batch = []
            for i in range(n_objects):
                # every worker sends the same alerts (duplicates) plus its own ones
                batch.append(alert(f"obj{i}", 100.0 + j))
                batch.append(alert(f"obj{i}", 1000.0 + 100 * worker + j))
            objs = [ObjectState(f"obj{i}", label=f"w{worker}", anomaly_score=float(worker)) for i in range(n_objects)]
            s.ingest(objs, batch, {f"obj{i}": vec(worker * 1000 + j) for i in range(n_objects)}, "m1")
    finally:
        s.close()


def _check_concurrent_result(store, workers: int, n_objects: int, n_alerts: int) -> None:
    for i in range(n_objects):
        o = store.get_object(f"obj{i}")
        expected = n_alerts * (1 + workers)
        assert o.n_detections == expected and len(store.get_alerts(f"obj{i}")) == expected
        assert o.first_jd == 100.0 and o.last_jd == 1000.0 + 100 * (workers - 1) + n_alerts - 1
    assert store.count_fingerprints("m1") == n_objects


def test_concurrent_ingest_threads(store):
    workers, n_objects, n_alerts = 4, 5, 6
    threads = [
        threading.Thread(target=_ingest_worker, args=(store.url, w, n_objects, n_alerts)) for w in range(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check_concurrent_result(store, workers, n_objects, n_alerts)


def test_concurrent_ingest_processes(store):
    workers, n_objects, n_alerts = 3, 4, 4
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ingest_worker, args=(store.url, w, n_objects, n_alerts)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    _check_concurrent_result(store, workers, n_objects, n_alerts)
