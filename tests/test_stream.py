"""rtf-stream against librdkafka's in-process mock cluster (a real Kafka protocol peer): ZTF
container messages and LSST wire-format messages are stored exactly once, a malformed message
becomes a dead letter without stopping the stream, and a consumer killed with SIGKILL mid-batch
loses and duplicates nothing when it restarts."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.catalog import Catalog
from app.stream import StreamConfig, StreamConsumer
from encoder.readers import write_ztf_avro
from encoder.readers.kafka_message import SchemaSource, decode_message, wire_message
from encoder.readers.lsst_avro import LSST_ALERT_SCHEMA, lsst_packet
from indexing.store import Store
from tests._server import bundled_dim, synth_lightcurves

confluent_kafka = pytest.importorskip("confluent_kafka")
ROOT = Path(__file__).resolve().parents[1]
LSST_SCHEMA_ID = 7


def ztf_message(lc) -> bytes:
    buf = io.BytesIO()
    write_ztf_avro([lc], buf)
    return buf.getvalue()


@pytest.fixture
def cluster():
    """A mock Kafka cluster living in this process: (producer, bootstrap servers)."""
    producer = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    brokers = producer.list_topics(timeout=10).brokers.values()
    yield producer, ",".join(f"{b.host}:{b.port}" for b in brokers)
    producer.flush(10)


def produce(producer, topic: str, values: list[bytes]) -> None:
    """Keyed by object, as brokers do: an object's alerts stay in order on one partition (and the
    mock cluster, which keeps about 5 MB a partition, gets them spread over its partitions)."""
    for v in values:
        try:
            key = decode_message(v)[0].object_id
        except ValueError:  # the malformed messages, and wire-format ones (no schemas here)
            key = None
        producer.produce(topic, value=v, key=key)
        producer.poll(0)
    assert producer.flush(30) == 0


def expected_points(values: list[bytes], schemas: SchemaSource) -> dict[str, set]:
    """What the stream must store: the union of each object's (jd, band) over its good messages."""
    out: dict[str, set] = {}
    for v in values:
        try:
            lcs = decode_message(v, schemas)
        except ValueError:
            continue
        for lc in lcs:
            out.setdefault(lc.object_id, set()).update(zip(lc.time.tolist(), lc.band.tolist(), strict=True))
    return out


def stored_points(store: Store, object_id: str) -> list[tuple]:
    h = store.get_history(object_id)
    return [] if h is None else list(zip(h.jd.tolist(), [h.bands[b] for b in h.band], strict=True))


def committed_everything(bootstrap: str, group: str, topic: str) -> bool:
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group + "-probe"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [confluent_kafka.TopicPartition(topic, p) for p in parts]
        probe = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        try:
            committed = probe.committed(tps, timeout=10)
        finally:
            probe.close()
        high = [c.get_watermark_offsets(tp, timeout=10)[1] for tp in committed]
        # a partition that never held a message has no committed offset (-1001)
        return all(tp.offset == h or (h == 0 and tp.offset < 0) for tp, h in zip(committed, high, strict=True))
    finally:
        c.close()


def test_ztf_and_lsst_messages_are_stored_once_and_bad_ones_become_dead_letters(cluster, make_settings, tmp_path):
    producer, bootstrap = cluster
    schema_dir = tmp_path / "schemas"
    schema_dir.mkdir()
    (schema_dir / f"{LSST_SCHEMA_ID}.avsc").write_text(json.dumps(LSST_ALERT_SCHEMA))
    ztf = synth_lightcurves(12, seed=5150)
    lsst = synth_lightcurves(6, seed=5151, survey="lsst")
    good = [ztf_message(lc.first(3)) for lc in ztf] + [ztf_message(lc) for lc in ztf[:6]]  # later alerts
    good += [wire_message(lsst_packet(lc), LSST_ALERT_SCHEMA, LSST_SCHEMA_ID) for lc in lsst]
    bad = [b"not an alert", good[0][: len(good[0]) // 2], b"\x00\x00\x00\x00\x63" + b"\x02" * 40]
    values = good[:10] + bad[:2] + good[10:] + bad[2:]
    produce(producer, "alerts", values)
    produce(producer, "alerts", good[:5])  # the same alerts again: nothing new

    settings = make_settings(f"sqlite:///{tmp_path / 'rtf.db'}", index_dir=tmp_path / "index", demo=False)
    catalog = Catalog.open(settings)
    try:
        config = StreamConfig(
            bootstrap,
            ["alerts"],
            group_id="rtf-test",
            batch_size=8,
            batch_timeout=0.5,
            schema_dir=schema_dir,
            output_topic="rtf-out",
            stats_interval=0.5,
        )
        stats = StreamConsumer(config, catalog).run(max_messages=len(values) + 5)
        store = catalog.store
        want = expected_points(values, SchemaSource(folder=schema_dir))
        assert len(want) == 18 and stats.messages == len(values) + 5
        for oid, points in want.items():
            got = stored_points(store, oid)
            assert len(got) == len(set(got)) == len(points), oid  # each detection once
        assert store.count_objects() == 18 and stats.alerts == sum(len(p) for p in want.values())
        letters = store.dead_letters()
        assert len(letters) == 3 == stats.dead_letters
        errors = " | ".join(d.error for d in letters)
        assert "neither an Avro container nor Confluent wire format" in errors and "schema id 99" in errors
        assert {d.payload for d in letters} == set(bad)
        assert committed_everything(bootstrap, "rtf-test", "alerts")
    finally:
        catalog.close()
    # the output topic: each ingested object's fingerprint, class and anomaly score
    out = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "auto.offset.reset": "earliest"})
    out.subscribe(["rtf-out"])
    bodies, deadline = [], time.monotonic() + 30
    while len(bodies) < 18 and time.monotonic() < deadline:
        bodies += [json.loads(m.value()) for m in out.consume(50, 1.0) if m.error() is None]
    out.close()
    assert {b["object_id"] for b in bodies} == set(want)
    assert all(len(b["fingerprint"]) == bundled_dim() and b["class"] and 0 <= b["anomaly_score"] <= 1 for b in bodies)


def test_a_registry_schema_and_refusals(tmp_path):
    """Schemas from a registry URL (a local HTTP server here) or a folder; a schema whose arrays
    may hold zero-byte items is refused, as for containers."""
    import http.server
    import threading

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            if self.path == f"/schemas/ids/{LSST_SCHEMA_ID}":
                body = json.dumps({"schema": json.dumps(LSST_ALERT_SCHEMA)}).encode()
                self.send_response(200)
            else:
                body = b'{"error_code": 40403}'
                self.send_response(404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        schemas = SchemaSource(f"http://127.0.0.1:{server.server_port}")
        lc = synth_lightcurves(1, seed=77, survey="lsst")[0]
        got = decode_message(wire_message(lsst_packet(lc), LSST_ALERT_SCHEMA, LSST_SCHEMA_ID), schemas)
        assert got[0].object_id and len(got[0]) == len(lc)
        np.testing.assert_allclose(got[0].time, lc.time)
        with pytest.raises(ValueError, match="schema id 5"):
            decode_message(b"\x00\x00\x00\x00\x05" + b"\x00" * 8, schemas)
    finally:
        server.shutdown()
    bomb = {"type": "record", "name": "b", "fields": [{"name": "x", "type": {"type": "array", "items": "null"}}]}
    (tmp_path / "3.avsc").write_text(json.dumps(bomb))
    with pytest.raises(ValueError, match="zero bytes"):
        decode_message(b"\x00\x00\x00\x00\x03" + b"\x80\x80\x80\x80\x08", SchemaSource(folder=tmp_path))
    with pytest.raises(ValueError, match="no schema registry"):
        decode_message(b"\x00\x00\x00\x00\x03\x00", None)


def _stream_cmd(bootstrap: str, url: str, index_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "app.stream", "--bootstrap-servers", bootstrap, "--topic", "ztf", "--group-id",
            "rtf-kill", "--database-url", url, "--index-dir", str(index_dir), "--stats-interval", "1",
            # the killed member is dropped from the group after this long (librdkafka's default: 45 s)
            "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", *extra]  # fmt: skip


def _stored(store: Store) -> int:
    from sqlalchemy import func, select

    from indexing.models import LightCurveRecord

    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.coalesce(func.sum(LightCurveRecord.n_detections), 0))))


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_kill_9_mid_batch_then_restart_stores_every_alert_exactly_once(cluster, db, tmp_path, request):
    producer, bootstrap = cluster
    url = f"sqlite:///{tmp_path / 'rtf.db'}" if db == "sqlite" else request.getfixturevalue("postgres_url")
    lcs = synth_lightcurves(200, seed=4040)
    # each object's light curve arrives as two alerts (the first half, then the whole): 400 messages
    values = [ztf_message(lc.first(max(1, len(lc) // 2))) for lc in lcs] + [ztf_message(lc) for lc in lcs]
    produce(producer, "ztf", values)
    want = expected_points(values, SchemaSource(folder=tmp_path))
    total = sum(len(p) for p in want.values())
    env = os.environ | {"RTF_PRECISION": "onnx", "RTF_THREADS": "1"}
    log = open(tmp_path / "stream.log", "wb")  # noqa: SIM115 - closed below, shared by both runs
    first = subprocess.Popen(
        _stream_cmd(bootstrap, url, tmp_path / "index", "--batch-size", "20"),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    store = Store(url)
    try:
        store.migrate()
        deadline = time.monotonic() + 120
        while _stored(store) < total // 5:
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "stream.log").read_text()[-3000:]
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        at_kill = _stored(store)
        assert at_kill < total, "the consumer had finished before the kill: nothing was tested"
        second = subprocess.Popen(
            _stream_cmd(bootstrap, url, tmp_path / "index"), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while _stored(store) < total:
            assert second.poll() is None and time.monotonic() < deadline, (tmp_path / "stream.log").read_text()[-3000:]
            time.sleep(0.2)
        second.send_signal(signal.SIGTERM)  # drains, commits, leaves the group
        assert second.wait(60) == 0
        for oid, points in want.items():
            got = stored_points(store, oid)
            assert len(got) == len(set(got)) == len(points), oid
        assert store.count_objects() == len(want) == 200 and _stored(store) == total
        assert store.count_dead_letters() == 0
        assert committed_everything(bootstrap, "rtf-kill", "ztf")
    finally:
        store.close()
        log.close()
        for p in ("first", "second"):
            proc = locals().get(p)
            if proc is not None and proc.poll() is None:
                proc.kill()
