"""rtf-stream end to end on PostgreSQL: a 40,000-alert backlog drained, then a sustained rate.

    python -m benchmarks.bench_stream                          # 40,000-alert burst, then 333 alerts/s for 600 s
    python -m benchmarks.bench_stream --burst 5000 --duration 60   # a short run

The Kafka peer is librdkafka's in-process mock cluster (the only one on this machine), living in
this process; ``rtf-stream`` runs as a subprocess on a throwaway PostgreSQL database. Alerts are
ZTF packets (Avro containers with their 30-day history: each alert of an object carries its light
curve so far), made from a synthetic survey and serialised before the clock starts.

* **burst**: ``--burst`` alerts as a backlog. The mock cluster keeps only about 5 MB per partition
  (older messages are deleted, as a real broker's retention would), so the producer stays at most
  ``--max-backlog`` messages ahead of what is stored; the drain time is the time until every alert
  is stored, which is the consumer's throughput with a full queue in front of it.
* **sustained**: alerts produced at ``--rate`` a second for ``--duration`` seconds; reported: the
  stored rate, the backlog at its largest, and whether the consumer kept up.

Progress is read from the consumer group's committed offsets, which move only after the SQL
transaction of their batch: a figure counts only what was stored.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks._postgres import temporary_database

ROOT = Path(__file__).resolve().parents[1]


def alerts(n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` ZTF alert packets (key, bytes): each object's light curve revealed alert by alert."""
    from encoder.readers import write_ztf_avro
    from training.synthetic import SurveyConfig, generate_survey

    out: list[tuple[str, bytes]] = []
    lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=max(1, n // 6), seed=seed, min_detections=8))
    rng = np.random.default_rng(seed)
    with tqdm(total=n, desc="serialise alerts", unit="alert") as bar:
        while len(out) < n:
            for lc in lcs:
                k = int(rng.integers(1, len(lc) + 1))
                buf = io.BytesIO()
                write_ztf_avro([thirty_days_before(lc, lc.time[k - 1])], buf)
                out.append((lc.object_id, buf.getvalue()))
                bar.update(1)
                if len(out) == n:
                    break
            lcs = [lc for lc in lcs if len(lc) > 1]
    return out


def thirty_days_before(lc, jd: float):
    """What a ZTF alert at ``jd`` carries: the detection and the previous 30 days (prv_candidates)."""
    from dataclasses import replace

    det = (lc.time <= jd) & (lc.time >= jd - 30)
    ul = (lc.ul_time <= jd) & (lc.ul_time >= jd - 30)
    return replace(
        lc,
        time=lc.time[det],
        band=lc.band[det],
        flux=lc.flux[det],
        flux_err=lc.flux_err[det],
        meta=None if lc.meta is None else lc.meta[det],
        ul_time=lc.ul_time[ul],
        ul_band=lc.ul_band[ul],
        ul_mag=lc.ul_mag[ul],
        alert_id=None if lc.alert_id is None else lc.alert_id[det],
    )


def stored_rows(url: str) -> int:
    """Detections stored, all objects together (committed only)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT COALESCE(SUM(n_detections), 0) FROM lightcurves")).scalar())
    finally:
        engine.dispose()


class Progress:
    """Counts messages the consumer committed, from the group's committed offsets."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        import confluent_kafka

        self.ck, self.topic = confluent_kafka, topic
        self.consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group})

    def committed(self) -> int:
        parts = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
        tps = [self.ck.TopicPartition(self.topic, p) for p in parts]
        return sum(max(0, tp.offset) for tp in self.consumer.committed(tps, timeout=10))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--burst", type=int, default=40_000)
    p.add_argument("--rate", type=float, default=333.0)
    p.add_argument("--duration", type=float, default=600.0)
    p.add_argument("--max-backlog", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument(
        "--admin-url",
        default=os.environ.get("RTF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    a = p.parse_args()
    import confluent_kafka

    burst = alerts(a.burst, seed=1)
    steady = alerts(int(a.rate * a.duration), seed=2) if a.duration > 0 else []
    sizes = np.array([len(v) for _, v in burst])
    producer = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3, "linger.ms": 5})
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in producer.list_topics(timeout=10).brokers.values())

    def produce(items) -> None:
        for key, value in items:
            while True:
                try:
                    producer.produce("ztf", key=key.encode(), value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)

    with temporary_database(a.admin_url) as url, tempfile.TemporaryDirectory() as tmp:
        if url is None:
            return
        env = os.environ | {"RTF_DATABASE_URL": url, "RTF_INDEX_DIR": str(Path(tmp) / "index")}
        log = open(Path(tmp) / "stream.log", "wb")  # noqa: SIM115 - closed at the end
        proc = subprocess.Popen([sys.executable, "-m", "app.stream", "--bootstrap-servers", bootstrap, "--topic", "ztf",
                                 "--group-id", "bench", "--batch-size", str(a.batch_size), "--stats-interval", "10"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        progress = Progress(bootstrap, "bench", "ztf")
        try:
            produce(burst[:1])  # warm-up: the consumer is up and assigned
            producer.flush(30)
            while progress.committed() < 1:
                if proc.poll() is not None:
                    raise RuntimeError((Path(tmp) / "stream.log").read_text()[-3000:])
                time.sleep(0.5)
            # ---- burst
            t0, sent = time.perf_counter(), 1
            with tqdm(total=len(burst), desc="burst", unit="alert") as bar:
                while True:
                    done = progress.committed()
                    bar.n = done
                    bar.refresh()
                    if done >= len(burst):
                        break
                    room = min(len(burst) - sent, a.max_backlog - (sent - done))
                    if room > 0:
                        produce(burst[sent : sent + room])
                        producer.flush(30)
                        sent += room
                    time.sleep(0.1)
            drain = time.perf_counter() - t0
            print(
                f"burst: {len(burst)} alerts ({sizes.mean() / 1e3:.1f} KB each on average) stored in {drain:.1f} s "
                f"= {len(burst) / drain:.0f} alerts/s ({len(burst) / drain * 60:.0f} a minute)"
            )
            # ---- sustained
            if steady:
                base, t0, sent, worst = progress.committed(), time.perf_counter(), 0, 0
                with tqdm(total=len(steady), desc=f"{a.rate:g} alerts/s", unit="alert") as bar:
                    while sent < len(steady):
                        due = min(len(steady), int((time.perf_counter() - t0) * a.rate))
                        if due > sent:
                            produce(steady[sent:due])
                            sent = due
                        if int(time.perf_counter() * 2) % 10 == 0:  # every 5 s
                            done = progress.committed() - base
                            worst = max(worst, sent - done)
                            bar.n = done
                            bar.refresh()
                        time.sleep(0.05)
                    producer.flush(30)
                    produced_in = time.perf_counter() - t0
                    while progress.committed() - base < len(steady):
                        time.sleep(0.2)
                    total = time.perf_counter() - t0
                print(
                    f"sustained: {len(steady)} alerts produced at {len(steady) / produced_in:.0f} alerts/s for "
                    f"{produced_in:.0f} s, all stored {total - produced_in:.1f} s after the last was produced "
                    f"({len(steady) / total:.0f} alerts/s overall); largest backlog seen {worst} alerts"
                )
            print(f"detections in SQL: {stored_rows(url)}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
            log.close()
            text = (Path(tmp) / "stream.log").read_text()
            print("consumer:", [ln for ln in text.splitlines() if "stopped:" in ln][-1:] or text[-2000:])


if __name__ == "__main__":
    main()
