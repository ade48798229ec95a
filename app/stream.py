"""rtf-stream: ingest a survey's Kafka alert stream into the catalogue.

    rtf-stream --bootstrap-servers kafka.example.org:9092 --topic ztf_20261203_programid1 --group-id rtf
    rtf-stream --bootstrap-servers ... --topic lsst-alerts --schema-registry https://registry.example.org
    rtf-stream ... -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=me ...

ZTF messages are Avro container files (one alert each); LSST messages are the Confluent wire
format, whose schemas come from ``--schema-registry`` or ``--schema-dir`` (``<id>.avsc`` files).
Messages are taken in micro-batches and go through the same ingest as ``POST /v1/alerts``
(``Catalog.ingest``: one SQL transaction per batch). Delivery is at least once, and ingest is
idempotent, so every alert is stored exactly once: a batch's offsets are committed only after its
transaction, and a message replayed after a crash changes nothing. A message that cannot be
decoded or ingested is stored in the ``dead_letters`` table with its error and never stops the
stream. Memory is bounded: at most ``--buffered`` decoded batches wait for ingest, and the
consumer pauses its partitions while they do. SIGTERM or SIGINT drains what was fetched, commits
and leaves the group. The database is ``RTF_DATABASE_URL``, shared with the service, whose index
picks the new fingerprints up at its next sync; this process keeps its own index copy in
``<RTF_INDEX_DIR>-stream``.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.catalog import Catalog, IngestedObjectResult
from app.settings import Settings
from encoder.lightcurve import LightCurve, LightCurveError
from encoder.readers.avro_container import AlertFormatError
from encoder.readers.kafka_message import SchemaSource, decode_message
from indexing.store import DeadLetter

if TYPE_CHECKING:
    from confluent_kafka import Message

log = logging.getLogger("rtf.stream")


@dataclass
class StreamConfig:
    bootstrap_servers: str
    topics: list[str]
    group_id: str = "rtf"
    batch_size: int = 500  # messages per micro-batch (one SQL transaction)
    batch_timeout: float = 1.0  # seconds to wait for a batch to fill
    buffered: int = 4  # decoded batches waiting for ingest before the consumer pauses
    schema_registry: str | None = None
    schema_dir: Path | None = None
    output_topic: str | None = None
    kafka: dict[str, str] = field(default_factory=dict)  # passed through to librdkafka
    stats_interval: float = 10.0


@dataclass
class _Batch:
    """Decoded messages: light curves with the message each came from, failures, and the offsets
    to commit once it is stored (the next offset of each partition)."""

    items: list[tuple[LightCurve, tuple[str, int, int], bytes]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    messages: int = 0


def _where(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message (only a message made by hand lacks them)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"not a consumed message: topic {topic!r}, partition {partition!r}, offset {offset!r}")
    return topic, partition, offset


@dataclass
class StreamStats:
    messages: int = 0
    alerts: int = 0  # new detections stored
    objects: int = 0
    dead_letters: int = 0
    batches: int = 0
    lag: int | None = None


class StreamConsumer:
    """The Kafka thread fetches and decodes micro-batches into a bounded queue; the calling thread
    ingests them and hands their offsets back to the Kafka thread, which commits them."""

    def __init__(self, config: StreamConfig, catalog: Catalog) -> None:
        from confluent_kafka import Consumer, Producer

        self.config, self.catalog = config, catalog
        self.schemas = (
            SchemaSource(config.schema_registry, config.schema_dir)
            if config.schema_registry or config.schema_dir
            else None
        )
        base = {"bootstrap.servers": config.bootstrap_servers} | config.kafka
        defaults = {"auto.offset.reset": "earliest", "queued.max.messages.kbytes": 65536}  # bounded prefetch
        # not overridable: offsets are committed by this class, after the SQL commit, and nothing else
        fixed = {"group.id": config.group_id, "enable.auto.commit": False, "enable.partition.eof": False}
        self.consumer = Consumer(base | defaults | config.kafka | fixed)
        self.producer = Producer(base) if config.output_topic else None
        self.stats = StreamStats()
        self._queue: queue.Queue[_Batch] = queue.Queue(maxsize=max(1, config.buffered))
        self._stop = threading.Event()
        self._commits: queue.Queue[dict[tuple[str, int], int]] = queue.Queue()
        self._fetch_done = threading.Event()  # the Kafka thread fetches no more
        self._drained = threading.Event()  # everything fetched is stored: commit and close
        self._abandoned = threading.Event()  # one side stopped on an error
        self._error: BaseException | None = None

    def stop(self) -> None:
        """Stop fetching; :meth:`run` then drains what was fetched, commits and returns."""
        self._stop.set()

    # ---------------------------------------------------------------- the Kafka thread
    # Every call on the consumer happens in this one thread (a synchronous commit from another
    # thread while this one sat in consume() never returned): the ingest side hands it the offsets
    # to commit once their transaction is in.
    def _poll(self, max_messages: int | None) -> None:
        try:
            self.consumer.subscribe(self.config.topics)
            fetched, last_lag = 0, 0.0
            carry: list[Message] = []
            while not self._drained.is_set():
                self._commit_pending()
                if time.monotonic() - last_lag >= self.config.stats_interval:
                    self.stats.lag, last_lag = self.lag(), time.monotonic()
                want = self.config.batch_size - len(carry)
                if max_messages is not None:
                    want = min(want, max_messages - fetched)
                if self._stop.is_set() or (want <= 0 and not carry):
                    self._fetch_done.set()  # nothing more is fetched; commits are still served
                    self._drained.wait(0.05)
                    continue
                msgs = carry + (self.consumer.consume(want, self.config.batch_timeout) if want > 0 else [])
                carry = []
                msgs = [m for m in msgs if self._usable(m)]
                if msgs:
                    fetched += len(msgs)
                    carry = self._enqueue(self._decode(msgs))
            self._commit_pending(final=True)
        except BaseException as exc:  # surfaced by run(): a consumer thread must not die silently
            self._error = exc
            self._abandoned.set()
        finally:
            self._fetch_done.set()
            try:
                self.consumer.close()
            except Exception:  # already closed, or the cluster is gone
                log.exception("closing the consumer")

    def _commit_pending(self, final: bool = False) -> None:
        """Commit the offsets of the batches stored since the last call (synchronously at the end)."""
        from confluent_kafka import KafkaException, TopicPartition

        merged: dict[tuple[str, int], int] = {}
        while True:
            try:
                merged.update(self._commits.get_nowait())
            except queue.Empty:
                break
        if not merged:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(merged.items())]
        try:
            if final:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # e.g. a rebalance moved the partition: its new owner replays (idempotent)
            log.warning("offsets not committed (the messages will be replayed, and change nothing): %s", exc)

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if not err.fatal():
            log.warning("kafka: %s", err)
            return False
        raise RuntimeError(f"kafka: {err}")

    def _enqueue(self, batch: _Batch) -> list[Message]:
        """Put a batch in the queue; while it is full, pause the partitions (poll keeps the group
        membership alive; a message that was already on its way is kept for the next batch)."""
        try:
            self._queue.put_nowait(batch)
            return []
        except queue.Full:
            pass
        assignment = self.consumer.assignment()
        self.consumer.pause(assignment)
        carry: list[Message] = []
        try:
            while not self._abandoned.is_set():
                self._commit_pending()
                try:
                    self._queue.put(batch, timeout=0.2)
                    return carry
                except queue.Full:
                    msg = self.consumer.poll(0)
                    if msg is not None and self._usable(msg):
                        carry.append(msg)
            return []  # the ingest side failed: nothing more is stored or committed
        finally:
            self.consumer.resume(assignment)

    def _decode(self, msgs: list[Message]) -> _Batch:
        batch = _Batch(messages=len(msgs))
        for m in msgs:
            where = _where(m)
            key = (where[0], where[1])
            batch.offsets[key] = max(batch.offsets.get(key, 0), where[2] + 1)
            value = m.value() or b""
            try:
                for lc in decode_message(value, self.schemas):
                    batch.items.append((lc, where, value))
            except (AlertFormatError, LightCurveError, ValueError) as exc:
                batch.letters.append(DeadLetter(*where, f"{type(exc).__name__}: {exc}", value))
        return batch

    # ---------------------------------------------------------------- ingest (calling thread)
    def run(self, max_messages: int | None = None) -> StreamStats:
        """Consume until :meth:`stop` (or ``max_messages``), then drain, commit and close."""
        poller = threading.Thread(target=self._poll, args=(max_messages,), name="rtf-stream-kafka", daemon=True)
        poller.start()
        last_stats, since = time.monotonic(), StreamStats()
        try:
            while not self._abandoned.is_set():
                try:
                    batch = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if self._fetch_done.is_set() and self._queue.empty():
                        break
                else:
                    self._store(batch)
                if time.monotonic() - last_stats >= self.config.stats_interval:
                    self._log_stats(time.monotonic() - last_stats, since)
                    last_stats, since = time.monotonic(), StreamStats(**vars(self.stats))
        except BaseException:
            self._abandoned.set()
            raise
        finally:
            self._stop.set()
            self._drained.set()  # the Kafka thread commits what was handed over, then closes
            poller.join(60)
            if self.producer is not None:
                self.producer.flush(30)
        if self._error is not None:
            raise self._error
        return self.stats

    def _store(self, batch: _Batch) -> None:
        letters = list(batch.letters)
        results = self._ingest([lc for lc, _, _ in batch.items], batch, letters)
        if letters:
            self.stats.dead_letters += self.catalog.store.add_dead_letters(letters)
            for d in letters:
                log.warning("dead letter %s[%d]@%d: %s", d.source, d.partition, d.offset, d.error[:200])
        if self.producer is not None and results:
            self._publish(results)
        self._commits.put(dict(batch.offsets))  # committed by the Kafka thread, after this transaction
        self.stats.messages += batch.messages
        self.stats.batches += 1

    def _ingest(self, lcs: list[LightCurve], batch: _Batch, letters: list[DeadLetter]) -> list[IngestedObjectResult]:
        """``Catalog.ingest`` of the batch; when one light curve is refused (e.g. a survey mismatch
        with the stored object), the others are ingested one by one and it becomes a dead letter."""
        if not lcs:
            return []
        try:
            results = self.catalog.ingest(lcs)
        except LightCurveError:
            results = []
            for lc, where, value in batch.items:
                try:
                    results += self.catalog.ingest([lc])
                except LightCurveError as exc:
                    letters.append(DeadLetter(*where, f"LightCurveError: {exc}", value))
        self.stats.alerts += sum(r.new_alerts for r in results)
        self.stats.objects += len(results)
        return results

    def _publish(self, results: list[IngestedObjectResult]) -> None:
        producer, topic = self.producer, self.config.output_topic
        if producer is None or topic is None:  # no output topic
            return
        version = self.catalog.version
        for r in results:
            vector = self.catalog.index.get_vector(r.object_id)
            body = {
                "object_id": r.object_id,
                "model": version,
                "class": r.label,
                "anomaly_score": r.anomaly_score,
                "model_score": r.model_score,
                "n_detections": r.n_detections,
                "fingerprint": None if vector is None else [round(float(x), 6) for x in vector],
            }
            producer.produce(topic, key=r.object_id.encode(), value=json.dumps(body).encode())
            producer.poll(0)

    def lag(self) -> int | None:
        """Messages not yet consumed on the assigned partitions (high watermark - position);
        called by the Kafka thread."""
        try:
            assignment = self.consumer.assignment()
            if not assignment:
                return 0
            # before the first message since the assignment a partition has no position: its committed offset is where it is
            committed = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.committed(assignment, timeout=2)}
            total = 0
            for tp in self.consumer.position(assignment):
                low, high = self.consumer.get_watermark_offsets(tp, timeout=2)
                at = tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), -1)
                total += high - (at if at >= 0 else low)
            return total
        except Exception:  # the broker does not answer now: no figure this time
            return None

    def _log_stats(self, seconds: float, before: StreamStats) -> None:
        s = self.stats
        log.info(
            "stream: %.0f messages/s, %.0f new alerts/s, lag %s, dead letters %d, %d batches",
            (s.messages - before.messages) / seconds,
            (s.alerts - before.alerts) / seconds,
            "?" if s.lag is None else s.lag,
            s.dead_letters,
            s.batches,
        )
        if _METRICS is not None:
            _METRICS.update(s)


class _Metrics:
    def __init__(self, port: int) -> None:
        from prometheus_client import Gauge, start_http_server

        self.messages = Gauge("rtf_stream_messages", "messages consumed")
        self.alerts = Gauge("rtf_stream_alerts", "new detections stored")
        self.dead = Gauge("rtf_stream_dead_letters", "messages stored as dead letters")
        self.lag = Gauge("rtf_stream_lag", "messages not yet consumed on the assigned partitions")
        start_http_server(port, addr="127.0.0.1")

    def update(self, s: StreamStats) -> None:
        self.messages.set(s.messages)
        self.alerts.set(s.alerts)
        self.dead.set(s.dead_letters)
        if s.lag is not None:
            self.lag.set(s.lag)


_METRICS: _Metrics | None = None


def _kafka_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"-X wants key=value, not {text!r}")
    return key.strip(), value


def main(argv: list[str] | None = None) -> int:
    global _METRICS
    p = argparse.ArgumentParser(
        prog="rtf-stream",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--bootstrap-servers", required=True, help="Kafka brokers, host:port[,host:port...]")
    p.add_argument(
        "--topic",
        action="append",
        required=True,
        dest="topics",
        help="a topic to consume (repeat for several; ^regex subscribes by pattern)",
    )
    p.add_argument("--group-id", default="rtf", help="consumer group: its committed offsets are where a restart resumes")
    p.add_argument("--batch-size", type=int, default=500, help="messages per micro-batch, one SQL transaction (500)")
    p.add_argument("--batch-timeout", type=float, default=1.0, help="seconds to wait for a batch to fill (1.0)")
    p.add_argument("--buffered", type=int, default=4, help="decoded batches waiting before the consumer pauses (4)")
    p.add_argument("--schema-registry", help="LSST: schema registry URL for the wire-format schema ids")
    p.add_argument("--schema-dir", type=Path, help="LSST: a folder of <schema id>.avsc files instead of a registry")
    p.add_argument("--output-topic", help="publish each ingested object's fingerprint, class and anomaly score here")
    p.add_argument(
        "-X",
        dest="kafka",
        action="append",
        type=_kafka_option,
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting passed through (security.protocol, sasl.*, ssl.*, ...)",
    )
    p.add_argument("--database-url", help="default: RTF_DATABASE_URL, as the service")
    p.add_argument("--index-dir", type=Path, help="this process's index copy (default: <RTF_INDEX_DIR>-stream)")
    p.add_argument("--max-messages", type=int, help="stop after this many messages (tests, benchmarks)")
    p.add_argument("--stats-interval", type=float, default=10.0, help="seconds between rate / lag log lines (10)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    update: dict = {"sync_interval": 0}
    if a.database_url:
        update["database_url"] = a.database_url
    update["index_dir"] = a.index_dir or settings.index_dir.with_name(settings.index_dir.name + "-stream")
    settings = settings.model_copy(update=update)
    config = StreamConfig(
        a.bootstrap_servers,
        a.topics,
        a.group_id,
        a.batch_size,
        a.batch_timeout,
        a.buffered,
        a.schema_registry,
        a.schema_dir,
        a.output_topic,
        dict(a.kafka),
        a.stats_interval,
    )
    if a.metrics_port:
        _METRICS = _Metrics(a.metrics_port)
    catalog = Catalog.open(settings)
    consumer = StreamConsumer(config, catalog)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: consumer.stop())
    log.info(
        "consuming %s from %s as group %s into %s (model %s)",
        ", ".join(a.topics),
        a.bootstrap_servers,
        a.group_id,
        settings.database_url.split("@")[-1],
        catalog.version,
    )
    try:
        s = consumer.run(a.max_messages)
    finally:
        catalog.close()
    log.info(
        "stopped: %d messages, %d new alerts, %d object updates, %d dead letters",
        s.messages,
        s.alerts,
        s.objects,
        s.dead_letters,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
