"""Ray: Ray Data re-encoding gives the in-process rows (resumable, idempotent), archive encoding,
and Ray-actor index shards give the single index's answers. One local Ray (2 CPUs) per module."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests._server import synth_lightcurves

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'rtf[ray]')")

from app import distributed as dist  # noqa: E402
from app.catalog import Catalog  # noqa: E402
from app.reencode import main as reencode_main  # noqa: E402
from app.reencode import reencode, register  # noqa: E402
from encoder.checkpoint import load_checkpoint  # noqa: E402
from encoder.inference import Encoder  # noqa: E402
from encoder.readers import write_lightcurves_parquet  # noqa: E402
from indexing.shards import ShardedIndex  # noqa: E402
from indexing.store import Store  # noqa: E402
from indexing.vector_index import IndexConfig, VectorIndex  # noqa: E402
from training.variants import jittered_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow  # a local Ray and five Ray Data runs: ~45 s on a quiet 2-core box


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_settings):
    """A catalogue of 120 objects (bundled model), a second checkpoint, its in-process encoder."""
    work = tmp_path_factory.mktemp("ray")
    db = work / "rtf.db"
    catalog = Catalog.open(make_settings(f"sqlite:///{db}", demo=False, sync_interval=0))
    lcs = synth_lightcurves(120, seed=99)
    catalog.ingest(lcs)
    catalog.close()
    ckpt = work / "second.pt"
    version = jittered_checkpoint(ckpt, scale=0.02, seed=5)
    cache = work / "cache"
    encoder = Encoder(load_checkpoint(ckpt), precision="onnx", threads=1, cache_dir=cache)
    assert encoder.version == version
    return {"work": work, "db": db, "ckpt": ckpt, "encoder": encoder, "cache": cache, "lcs": lcs}


def _copy(setup, name: str) -> Store:
    path = setup["work"] / f"{name}.db"
    shutil.copy(setup["db"], path)
    store = Store(f"sqlite:///{path}")
    return store


def _fingerprints(store: Store, version: str) -> dict[str, tuple]:
    """Each object's fingerprint, class key and the model's own anomaly score (a re-encoding writes no
    catalogue-relative score: the service ranks the new version when it switches to it)."""
    inputs = store.ranking_inputs(version)
    model_score = dict(zip(inputs.object_ids, inputs.model_score, strict=True))
    out = {}
    for b in store.iter_fingerprints(version):
        for i, o in enumerate(b.object_ids):
            out[o] = (b.vectors[i], b.labels[i], model_score[o])
    return out


def test_ray_reencode_writes_the_in_process_rows_and_resumes(setup):
    enc = setup["encoder"]
    spec = dist.EncoderSpec.of(enc, setup["ckpt"], cache_dir=setup["cache"])
    assert spec.precision == "onnx"  # the actors load the cached serving export, without torch
    inproc, onray = _copy(setup, "inproc"), _copy(setup, "onray")
    a = reencode(inproc, enc, batch_size=50, progress=False)
    shards = setup["work"] / "shards"
    b = dist.reencode_ray(onray, enc, spec, shards, partition_size=50, concurrency=2)
    assert a.encoded == b.encoded == 120 and b.passes == 1
    fa, fb = _fingerprints(inproc, enc.version), _fingerprints(onray, enc.version)
    assert fa.keys() == fb.keys() and len(fa) == 120
    for o, (va, la, sa) in fa.items():
        vb, lb, sb = fb[o]
        np.testing.assert_array_equal(va, vb)  # same partitions, same graph: the same bits
        assert la == lb and sa == pytest.approx(sb, abs=1e-9)
    oid = next(iter(fa))
    pa_, pb = inproc.get_objects([oid], enc.version)[oid], onray.get_objects([oid], enc.version)[oid]
    assert pa_.probabilities == pytest.approx(pb.probabilities) and pa_.fine_label == pb.fine_label

    # idempotent: nothing stale, nothing encoded
    again = dist.reencode_ray(onray, enc, spec, shards, partition_size=50)
    assert (again.encoded, again.passes) == (0, 0)

    # a killed run: shards written but not loaded; an object changes before they are loaded
    changed = [lc.object_id for lc in setup["lcs"][1:4]]
    fresh = _copy(setup, "killed")
    left = shards / enc.version / "pass-0-killed"
    assert dist.encode_store(fresh.url, spec, enc.version, left, partition_size=40) == 3
    _bump(fresh, changed)
    r = dist.reencode_ray(fresh, enc, spec, shards, partition_size=40)
    assert (left / dist.LOADED).exists()  # the leftover was loaded first (117 rows), the 3 changed re-encoded
    assert r.encoded == 120 and r.passes == 1 and fresh.count_stale(enc.version) == 0
    assert fresh.count_fingerprints(enc.version) == 120

    # --activate switches the version (of a registered model)
    register(fresh, setup["ckpt"], enc)
    r = dist.reencode_ray(fresh, enc, spec, shards, activate=True)
    assert r.activated and fresh.active_version() == enc.version
    for s in (inproc, onray, fresh):
        s.close()


def _bump(store: Store, ids: list[str]) -> None:
    """New revisions for objects (their rows changed, as when an alert arrives)."""
    from indexing.store import IngestBatch, ObjectState

    stored = store.read_objects(ids)
    store.write(IngestBatch(objects=[ObjectState(o, ra=12.5, dec=-3.25) for o in ids]))
    after = store.read_objects(ids)
    assert all(after[o].revision > stored[o].revision for o in ids)


def test_cli_engine_ray(setup, monkeypatch, capsys):
    store = _copy(setup, "cli")
    monkeypatch.setenv("RTF_CACHE_DIR", str(setup["cache"]))
    rc = reencode_main(
        [
            "--checkpoint",
            str(setup["ckpt"]),
            "--database-url",
            store.url,
            "--engine",
            "ray",
            "--shard-dir",
            str(setup["work"] / "cli-shards"),
            "--batch-size",
            "60",
            "--activate",
        ]
    )
    assert rc == 0
    assert "120 fingerprints written in 1 passes" in capsys.readouterr().out
    assert store.active_version() == setup["encoder"].version
    store.close()


def test_encode_archive_and_load_index(setup):
    enc, lcs = setup["encoder"], setup["lcs"]
    files = []
    for i in range(3):
        path = setup["work"] / f"archive-{i}.parquet"
        write_lightcurves_parquet(lcs[i * 40 : (i + 1) * 40], path)
        files.append(path)
    out = dist.encode_archive(
        files,
        dist.EncoderSpec.of(enc, setup["ckpt"], cache_dir=setup["cache"]),
        setup["work"] / "archive-shards",
        concurrency=2,
    )
    rows = {r.object_id: r for t in dist.iter_shards(out) for r in dist.table_rows(t)[0]}
    assert len(rows) == 120
    local = dist.table_rows(dist.encode_lightcurves(enc, lcs[:40]))[0]
    for r in local:
        np.testing.assert_allclose(rows[r.object_id].vector, r.vector, rtol=0, atol=1e-5)
        assert rows[r.object_id].label == r.label
    sharded = ShardedIndex(enc.dim, 3, IndexConfig(kind="flat"))
    assert dist.load_index(out, sharded) == 120 and len(sharded) == 120
    q = rows[lcs[7].object_id].vector
    assert sharded.search(q, 1)[0].object_id == lcs[7].object_id
    assert sharded.get_attributes(lcs[7].object_id)["n_detections"] == len(lcs[7])


def test_ray_actor_shards_answer_like_one_index():
    rng = np.random.default_rng(8)
    n, d = 3000, 16
    x = rng.standard_normal((n, d)).astype(np.float32)
    ids = [f"ZTF{i:08d}" for i in rng.permutation(10**7)[:n]]
    labels = [["A", "B", None][i % 3] for i in range(n)]
    an = rng.random(n)
    cfg = IndexConfig(kind="flat", omp_threads=1)
    one = VectorIndex(d, cfg)
    sharded = ShardedIndex(d, 4, cfg, backend="ray", ray_options={"num_cpus": 0.25})
    for ix in (one, sharded):
        ix.build(ids, x, labels=labels, anomaly_scores=an)
        ix.upsert(ids[:100], x[100:200, ::-1], anomaly_scores=an[:100] / 2)
        ix.delete(ids[500:600])
    q = rng.standard_normal((20, d)).astype(np.float32)
    for f in ({}, {"classes": ["A"]}, {"anomaly_max": 0.3, "exclude_ids": ids[:30]}):
        a, b = one.search_batch(q, 10, **f), sharded.search_batch(q, 10, **f)
        assert [[nb.object_id for nb in r] for r in a] == [[nb.object_id for nb in r] for r in b]
    assert len(sharded) == len(one) == 2900 and ids[0] in sharded and ids[550] not in sharded
    np.testing.assert_array_equal(sharded.get_vector(ids[3]), one.get_vector(ids[3]))
    assert sharded.get_attributes(ids[3]) == one.get_attributes(ids[3])
    assert set(sharded.class_names) == {"A", "B"}
    with pytest.raises(ValueError):  # refused before any actor is asked
        sharded.upsert(["x"], np.full((1, d), np.nan, np.float32))
    sharded.close()
