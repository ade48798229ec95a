"""Store tests, run on SQLite and on PostgreSQL (skipped with a reason when no server answers)."""

from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np
import pytest
from sqlalchemy import inspect

from indexing.history import History
from indexing.models import Base
from indexing.store import MIGRATIONS, FingerprintRow, IngestBatch, ObjectState, StaleVersion, Store, StoredObject


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


def history(jds, bands=None, *, meta=None, ul=()) -> History:
    """A light curve of detections at ``jds`` (band codes into ("g", "r")) and upper limits ``ul``."""
    jds = np.asarray(jds, dtype=np.float64)
    band = np.asarray(bands if bands is not None else [0] * len(jds), dtype=np.uint8)
    return History(
        jds,
        band,
        np.full(len(jds), 1000.0),
        np.full(len(jds), 30.0),
        ("g", "r"),
        meta=meta,
        meta_fields=("rb", "fwhm") if meta is not None else (),
        ul_jd=np.array([u[0] for u in ul], dtype=np.float64),
        ul_band=np.array([u[1] for u in ul], dtype=np.uint8),
        ul_mag=np.array([u[2] for u in ul], dtype=np.float64),
    )


def appended(stored: StoredObject | None, jds: list[float]) -> History:
    """The stored history with the detections at ``jds`` it lacks (band g), sorted by time."""
    old = [] if stored is None or stored.history is None else stored.history.jd.tolist()
    return history(sorted(set(old) | set(jds)))


def vec(seed: int, dim: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def test_migrate_is_idempotent_and_sqlite_pragmas(store):
    store.migrate()
    tables = set(inspect(store.engine).get_table_names())
    assert {"objects", "lightcurves", "fingerprints", "models", "alembic_version"} <= tables
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


def test_history_bytes_round_trip_exactly():
    meta = np.array([[0.5, np.nan], [np.nan, 2.0]], dtype=np.float32)
    h = history([2460000.123456789, 2460001.5], [0, 1], meta=meta, ul=[(2459999.5, 1, 20.5)])
    h.alert_id = np.array([123456789012345678, 2], dtype=np.int64)
    back = History.from_bytes(h.to_bytes())
    for name in ("jd", "band", "flux", "flux_err", "alert_id", "ul_jd", "ul_band", "ul_mag"):
        np.testing.assert_array_equal(getattr(back, name), getattr(h, name))
    np.testing.assert_array_equal(back.meta, meta)  # NaN where a field is missing
    assert back.bands == ("g", "r") and back.meta_fields == ("rb", "fwhm")
    assert (back.first_jd, back.last_jd) == (2460000.123456789, 2460001.5)


@pytest.mark.parametrize("cut", [3, 10, -1])
def test_a_damaged_history_is_refused_not_misread(cut):
    from indexing.history import HistoryFormatError

    data = history([1.0, 2.0]).to_bytes()
    with pytest.raises(HistoryFormatError):
        History.from_bytes(data[:cut])
    with pytest.raises(HistoryFormatError):
        History.from_bytes(b"XXXX" + data[4:])


def test_write_round_trip_and_idempotent(store):
    h = history([2460000.5, 2460002.5], [0, 1], ul=[(2459998.5, 0, 20.5)])
    batch = IngestBatch(
        [ObjectState("ZTF1", survey="ztf", ra=10.0, dec=-5.0, known_label="SNIa")],
        {"ZTF1": h},
        "m1",
        [FingerprintRow("ZTF1", vec(1), "SNIa", {"SNIa": 0.8, "TDE": 0.2}, 0.3)],
    )
    r1 = store.write(batch)
    assert (r1.objects_touched, r1.fingerprints_written) == (1, 1)
    marker = store.state_marker("m1")
    rev = store.read_objects(["ZTF1"])["ZTF1"].revision
    r2 = store.write(batch)  # the same again: nothing is rewritten, nothing the index depends on changes
    assert (r2.objects_touched, r2.fingerprints_written) == (0, 0)
    assert store.read_objects(["ZTF1"])["ZTF1"].revision == rev and store.state_marker("m1") == marker
    o = store.get_object("ZTF1", "m1")
    assert (o.first_jd, o.last_jd, o.n_detections, o.ra, o.known_label) == (2460000.5, 2460002.5, 2, 10.0, "SNIa")
    assert o.label == "SNIa" and o.probabilities == {"SNIa": 0.8, "TDE": 0.2} and o.anomaly_score == 0.3
    assert o.updated_at is not None and o.updated_at.tzinfo is not None
    bare = store.get_object("ZTF1")  # no version: the row without predictions
    assert bare.label is None and bare.anomaly_score is None and bare.n_detections == 2
    got = store.get_history("ZTF1")
    np.testing.assert_array_equal(got.jd, h.jd)
    np.testing.assert_array_equal(got.ul_mag, [20.5])
    np.testing.assert_array_equal(store.get_fingerprint("ZTF1", "m1"), vec(1))
    assert store.get_fingerprint("ZTF1", "m2") is None and store.get_object("nope") is None
    assert store.count_objects() == 1 and store.count_fingerprints("m1") == 1
    assert store.get_history("nope") is None and store.state_marker("m1") != ""
    assert marker.startswith("v2|m1|")


def test_writes_update_and_none_keeps(store):
    store.write(IngestBatch([ObjectState("A", ra=1.0, dec=2.0, known_label="SNII")], {"A": history([10.0])}))
    m0, r0 = store.state_marker("m1"), store.read_objects(["A"])["A"].revision
    # a longer light curve only: summary from it, other fields kept, a new revision
    store.write(IngestBatch(histories={"A": history([10.0, 12.0])}))
    o, r1 = store.get_object("A"), store.read_objects(["A"])["A"].revision
    assert (o.n_detections, o.first_jd, o.last_jd, o.known_label, o.ra) == (2, 10.0, 12.0, "SNII", 1.0)
    assert r1 == r0 + 1 and store.state_marker("m1") != m0
    # an upper limit changes the light curve but not the row's fields: still a new revision
    store.write(IngestBatch(histories={"A": history([10.0, 12.0], ul=[(9.0, 0, 20.0)])}))
    assert store.read_objects(["A"])["A"].revision == r1 + 1
    # a new vector for the same object replaces the old one and changes the marker
    store.write(IngestBatch(model_version="m1", fingerprints=[FingerprintRow("A", vec(1), "TDE", None, 0.9)]))
    m2 = store.state_marker("m1")
    store.write(IngestBatch(model_version="m1", fingerprints=[FingerprintRow("A", vec(2), "TDE", None, 0.5)]))
    np.testing.assert_array_equal(store.get_fingerprint("A", "m1"), vec(2))
    assert store.state_marker("m1") != m2 and store.count_fingerprints("m1") == 1
    assert store.get_object("A", "m1").anomaly_score == 0.5
    assert store.delete_object("A") and store.get_object("A") is None and store.get_history("A") is None
    assert not store.delete_object("A") and store.count_fingerprints("m1") == 0


def _fps(ids, version_seed: int = 0, dim: int = 8, **kw) -> list[FingerprintRow]:
    return [FingerprintRow(oid, vec(version_seed * 1000 + i, dim), **kw) for i, oid in enumerate(ids)]


def test_iter_fingerprints_batches(store):
    ids = [f"o{i:03d}" for i in range(25)]
    rows = [FingerprintRow(oid, vec(i, 8), "SNIa" if i % 2 else None, None, i / 10) for i, oid in enumerate(ids)]
    store.write(IngestBatch([ObjectState(i) for i in ids], {"o003": history([5.0, 6.0])}, "m1", rows))
    store.write(IngestBatch(model_version="other", fingerprints=_fps(["o000"])))
    batches = list(store.iter_fingerprints("m1", batch_size=10))
    assert [len(b.object_ids) for b in batches] == [10, 10, 5]
    got = [i for b in batches for i in b.object_ids]
    assert sorted(got) == ids
    allv = np.concatenate([b.vectors for b in batches])
    np.testing.assert_array_equal(allv, np.stack([vec(ids.index(i), 8) for i in got]))
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
    ids = [f"x{i:02d}" for i in range(60)]
    rows = [
        FingerprintRow(oid, vec(i), "SNIa" if i % 3 else "TDE", None, float(s))
        for i, (oid, s) in enumerate(zip(ids, scores, strict=True))
    ]
    store.write(IngestBatch([ObjectState("unscored")], {oid: history([float(i)]) for i, oid in enumerate(ids)}, "m1", rows))
    store.write(
        IngestBatch(
            model_version="m2",
            fingerprints=[FingerprintRow(oid, vec(i), "AGN", None, 1 - i / 100) for i, oid in enumerate(ids[:30])],
        )
    )
    expected = sorted((-float(s), oid) for oid, s in zip(ids, scores, strict=True))
    for limit in (1, 7, 60, 100):
        seen, cursor = [], None
        while True:
            page, cursor = store.anomalies(model_version="m1", limit=limit, cursor=cursor)
            assert len(page) <= limit
            seen.extend((-o.anomaly_score, o.object_id) for o in page)
            if cursor is None:
                break
        assert seen == expected
    page, _ = store.anomalies(model_version="m1", limit=100, classes=["TDE"])
    assert {o.object_id for o in page} == {f"x{i:02d}" for i in range(0, 60, 3)}
    page, _ = store.anomalies(model_version="m1", limit=100, since=50)
    assert {o.object_id for o in page} == {f"x{i:02d}" for i in range(50, 60)}
    page, _ = store.anomalies(model_version="m2", limit=100)  # another version ranks its own scores
    assert [o.object_id for o in page] == ids[:30] and {o.label for o in page} == {"AGN"}
    with pytest.raises(ValueError):
        store.anomalies(model_version="m1", limit=5, cursor="not-a-cursor!")


def test_models_registry(store):
    store.register_model("v1", path="a.pt", sha256="0" * 64, dim=64, class_names=["SNIa", "TDE"], active=True)
    store.register_model("v2", path="b.pt", sha256="1" * 64, dim=64, class_names=["SNIa"], metrics={"f1": 0.8})
    assert store.active_version() == "v1"
    store.register_model("v1", path="moved.pt", sha256="0" * 64, dim=64, class_names=["SNIa"])  # keeps active
    assert store.active_version() == "v1"
    store.activate("v2")  # no object: v2 is complete
    models = {m.version: m for m in store.list_models()}
    assert models["v2"].active and not models["v1"].active and models["v2"].metrics == {"f1": 0.8}
    assert models["v1"].path == "moved.pt"
    with pytest.raises(KeyError):
        store.activate("nope")


def test_versions_stale_reencode_activate_drop(store):
    """The re-encode protocol: stale objects of a version, writes skipped for objects that moved
    on, and a switch that refuses an incomplete version or completes it under the lock."""
    ids = [f"s{i}" for i in range(6)]
    store.register_model("old", path="a.pt", sha256="0" * 64, dim=8, class_names=[], active=True)
    store.register_model("new", path="b.pt", sha256="1" * 64, dim=8, class_names=[])
    store.write(IngestBatch(histories={i: history([1.0]) for i in ids}, model_version="old", fingerprints=_fps(ids)))
    assert store.count_stale("old") == 0 and store.count_stale("new") == 6
    assert store.stale_object_ids("new", limit=4) == ids[:4]
    assert store.stale_object_ids("new", after="s3") == ids[4:]
    read = store.read_objects(ids[:4])
    revs = {k: v.revision for k, v in read.items()}
    # s0 receives an alert between the read and the write: its new fingerprint would be of the old light curve
    store.write(IngestBatch(histories={"s0": history([1.0, 2.0])}))
    res = store.write_fingerprints("new", _fps(ids[:4], 1), revs)
    assert (res.fingerprints_written, res.fingerprints_skipped) == (3, 1)
    assert store.stale_object_ids("new") == ["s0", "s4", "s5"]
    with pytest.raises(StaleVersion) as err:
        store.activate("new")
    assert err.value.stale == 3 and store.active_version() == "old"
    seen: list[str] = []

    def finish(stored: dict[str, StoredObject]) -> list[FingerprintRow]:
        seen.extend(sorted(stored))
        assert stored["s0"].history.jd.tolist() == [1.0, 2.0]
        return _fps(sorted(stored), 2)

    assert store.activate("new", finish) == 3 and seen == ["s0", "s4", "s5"]
    assert store.active_version() == "new" and store.count_stale("new") == 0
    np.testing.assert_array_equal(store.get_fingerprint("s0", "new"), _fps(["s0"], 2)[0].vector)
    with pytest.raises(ValueError, match="active"):
        store.drop_model("new")
    assert store.drop_model("old") == 6
    assert store.fingerprint_counts() == {"new": 6} and [m.version for m in store.list_models()] == ["new"]
    # a deleted object is not brought back by a late re-encode write
    revs = {"s1": store.read_objects(["s1"])["s1"].revision}
    store.delete_object("s1")
    assert store.write_fingerprints("new", _fps(["s1"]), revs).fingerprints_skipped == 1
    assert store.get_object("s1") is None


def test_migration_carries_rows_into_histories_and_predictions(db_url):
    """A database at revision 0001 (a row per detection, predictions on the object) upgrades with
    its data: each object's history, its predictions on the active version's fingerprints, and
    the version that holds the fingerprints active again where an empty one had been made active."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    url = db_url
    s = Store(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "0001")
    with s.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models VALUES ('v1','a.pt','0',8,'[]',NULL,'2025-01-01',:f),"
                "('v2','b.pt','1',8,'[]',NULL,'2025-01-02',:t)"
            ),
            {"f": False, "t": True},
        )
        conn.execute(
            text(
                "INSERT INTO objects VALUES ('A','ztf',1.0,2.0,10.0,12.0,2,'SNIa','{\"SNIa\": 0.9}',0.7,"
                "'SNII',3,'2025-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO alerts (alert_key,object_id,jd,band,mag,mag_err,flux,flux_err,meta) VALUES "
                "('A:12.0:r','A',12.0,'r',18,0.1,200.0,9.0,NULL),"
                "('A:10.000000:g','A',10.0,'g',18,0.1,100.0,8.0,'{\"rb\": 0.5}')"
            )
        )
        conn.execute(text("INSERT INTO upper_limits (object_id,jd,band,mag) VALUES ('A',9.0,'g',20.5)"))
        conn.execute(
            text(
                "INSERT INTO fingerprints (object_id,model_version,vector,dim,revision,created_at,updated_at)"
                " VALUES ('A','v1',:v,8,1,'2025-01-01','2025-01-01')"
            ),
            {"v": vec(0, 8).tobytes()},
        )
    s.migrate()
    assert s.active_version() == "v1"  # v2 had no fingerprint
    h = s.get_history("A")
    assert h.jd.tolist() == [10.0, 12.0] and [h.bands[b] for b in h.band] == ["g", "r"]
    assert h.flux.tolist() == [100.0, 200.0] and h.flux_err.tolist() == [8.0, 9.0]
    assert h.meta_fields == ("rb",) and h.meta[0, 0] == 0.5 and np.isnan(h.meta[1, 0])
    assert h.ul_jd.tolist() == [9.0] and h.ul_mag.tolist() == [20.5]
    o = s.get_object("A", "v1")
    # the old score is the model's own (0006): kept as model_score; the ranking score is unset until a ranking
    assert (o.label, o.probabilities, o.model_score, o.known_label) == ("SNIa", {"SNIa": 0.9}, 0.7, "SNII")
    assert o.anomaly_score is None and s.count_unranked("v1") == 1
    assert s.count_stale("v1") == 0  # the fingerprint is of the light curve as stored
    s.close()


def _ingest_worker(url: str, worker: int, n_objects: int, n_alerts: int) -> None:
    """Each call merges this worker's points and the points every worker sends into the stored history."""
    s = Store(url)
    try:
        for j in range(n_alerts):
            ids = [f"obj{i}" for i in range(n_objects)]
            jds = [100.0 + j, 1000.0 + 100 * worker + j]

            def prepare(stored, active, ids=ids, jds=jds):
                hist = {oid: appended(stored.get(oid), jds) for oid in ids}
                fps = [FingerprintRow(oid, vec(len(hist[oid]))) for oid in ids]  # a function of the history
                return IngestBatch([ObjectState(oid) for oid in ids], hist, "m1", fps), None

            s.ingest_merged(ids, prepare)
    finally:
        s.close()


def _check_concurrent_result(store, workers: int, n_objects: int, n_alerts: int) -> None:
    for i in range(n_objects):
        o = store.get_object(f"obj{i}")
        expected = n_alerts * (1 + workers)
        assert o.n_detections == expected and len(store.get_history(f"obj{i}")) == expected
        assert o.first_jd == 100.0 and o.last_jd == 1000.0 + 100 * (workers - 1) + n_alerts - 1
        # the fingerprint stored is the one computed from the history stored (nothing lost in between)
        np.testing.assert_array_equal(store.get_fingerprint(f"obj{i}", "m1"), vec(expected))
    assert store.count_fingerprints("m1") == n_objects and store.count_stale("m1") == 0


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
