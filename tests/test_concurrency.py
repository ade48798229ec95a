"""Several service processes on one PostgreSQL database: three uvicorn subprocesses (separate
index dirs) ingest overlapping and disjoint alerts from threads while other threads query.
Afterwards, checked directly in SQL (indexing.store.Store): no lost detection, no duplicated
alert, every object's n_detections right; and every process's index matches SQL after a
restart (and without one when the catalogue has a ``sync``). Skips without a PostgreSQL server.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests._server import Server, as_json, synth_lightcurves

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N_SERVERS = 3
INGEST_THREADS_PER_SERVER = 2
MAX_SECONDS = 90


def _keys(lc) -> set[tuple[float, str]]:
    return {(round(float(t), 6), "ugrizy"[int(b)]) for t, b in zip(lc.time, lc.band, strict=True)}


def _requests_for(worker: int, shared, own, rng: random.Random) -> list[list]:
    """A worker's requests: every shared object in parts (early half, full, a late slice) in its
    own order, so processes merge the same objects at the same time, plus its own objects."""
    parts = []
    for lc in shared:
        n = len(lc)
        parts += [[lc.first(max(1, n // 2))], [lc], [lc._select(np.arange(n // 3, n), lc.ul_time > 0)]]
    parts += [[lc] for lc in own]
    rng.shuffle(parts)
    return [sum(parts[i : i + 3], []) for i in range(0, len(parts), 3)]  # small batches of 3 parts


def test_processes_share_one_database_without_losing_or_duplicating(postgres_url, tmp_path):
    from indexing.store import Store

    shared = synth_lightcurves(9, seed=5001)
    workers = N_SERVERS * INGEST_THREADS_PER_SERVER
    own = [synth_lightcurves(3, seed=6000 + w) for w in range(workers)]
    own = [[dataclasses.replace(lc, object_id=f"w{w}-{lc.object_id}") for lc in lcs] for w, lcs in enumerate(own)]
    base = synth_lightcurves(8, seed=4001)
    expected: dict[str, set] = {lc.object_id: _keys(lc) for lc in [*shared, *base, *(x for o in own for x in o)]}

    servers = [
        Server(
            {
                "RTF_DATABASE_URL": postgres_url,
                "RTF_INDEX_DIR": str(tmp_path / f"index{i}"),
                "RTF_DEMO": "0",
                "RTF_INDEX_SAVE_EVERY": "100000",
                "RTF_SYNC_INTERVAL": "1",
            }
        )
        for i in range(N_SERVERS)
    ]
    try:
        servers[0].start()  # migrates the fresh database first; the others start on it together
        for s in servers[1:]:
            s.start(wait=False)
        for s in servers[1:]:
            s.wait_ready()
        assert httpx.post(servers[0].url + "/v1/alerts", json=as_json(base), timeout=60).status_code == 200

        stop = threading.Event()
        errors: list[str] = []
        deadline = time.monotonic() + MAX_SECONDS

        def ingest(w: int) -> int:
            url = servers[w % N_SERVERS].url
            n = 0
            with httpx.Client(base_url=url, timeout=60) as client:
                for batch in _requests_for(w, shared, own[w], random.Random(w)):
                    if time.monotonic() > deadline:
                        errors.append(f"worker {w}: out of time")
                        break
                    r = client.post("/v1/alerts", json=as_json(batch))
                    if r.status_code != 200:
                        errors.append(f"worker {w}: {r.status_code} {r.text[:300]}")
                    n += 1
            return n

        def query(q: int) -> int:
            rng = random.Random(100 + q)
            n = 0
            with httpx.Client(timeout=60) as client:
                while not stop.is_set() and n < 400 and time.monotonic() < deadline:
                    url = servers[n % N_SERVERS].url
                    oid = rng.choice(base).object_id
                    for r in (
                        client.get(f"{url}/v1/objects/{oid}/neighbors", params={"k": 5}),
                        client.get(f"{url}/v1/objects/{oid}"),
                        client.get(f"{url}/v1/anomalies", params={"limit": 20}),
                    ):
                        if r.status_code != 200:
                            errors.append(f"query {r.url}: {r.status_code} {r.text[:300]}")
                    n += 1
            return n

        with ThreadPoolExecutor(workers + 2) as pool:
            queries = [pool.submit(query, q) for q in range(2)]
            ingests = [pool.submit(ingest, w) for w in range(workers)]
            n_ingests = sum(f.result() for f in ingests)
            stop.set()
            n_queries = sum(f.result() for f in queries)
        assert not errors, errors[:5]
        assert n_ingests > 0 and n_queries > 0

        # ---- SQL is the truth: every detection once, n_detections = the stored alerts
        store = Store(postgres_url)
        try:
            assert store.count_objects() == len(expected)
            for oid, keys in expected.items():
                h = store.get_history(oid)
                stored = [(round(t, 6), h.bands[b]) for t, b in zip(h.jd.tolist(), h.band.tolist(), strict=True)]
                assert len(stored) == len(set(stored)), f"{oid}: duplicated alerts"
                assert set(stored) == keys, f"{oid}: {len(keys - set(stored))} lost, {len(set(stored) - keys)} extra"
                assert store.get_object(oid).n_detections == len(keys), oid
            version = store.list_models()[0].version
            fingerprints = {oid: store.get_fingerprint(oid, version) for oid in expected}
            assert all(v is not None and np.isfinite(v).all() for v in fingerprints.values())
        finally:
            store.close()

        def index_matches_sql(server: Server) -> bool:
            if server.wait_ready()["objects"] != len(expected):
                return False
            with httpx.Client(base_url=server.url, timeout=60) as client:
                for oid, v in fingerprints.items():
                    # k=3: the "late-" copies share their originals' light curves, hence their vectors
                    hits = client.post("/v1/search", json={"vector": v.tolist(), "k": 3}).json()["neighbors"]
                    if not any(h["object_id"] == oid and h["similarity"] >= 0.999 for h in hits):
                        return False
            return True

        from app.catalog import Catalog

        if hasattr(Catalog, "sync"):  # multi-process index sync: consistent without a restart
            t_end = time.monotonic() + 60
            while not all(index_matches_sql(s) for s in servers) and time.monotonic() < t_end:
                time.sleep(1)
            assert all(index_matches_sql(s) for s in servers), "the indexes did not catch up with SQL"

        # ---- a crash restart (kill -9: no save on shutdown) rebuilds each stale index from SQL
        for s in servers:
            s.kill()
        for s in servers:
            s.start(wait=False)
        for s in servers:
            assert index_matches_sql(s), s.log()[-2000:]

        # ---- a graceful stop saves the index with the SQL marker of the moment, which includes the
        #      other processes' writes: the restarted index may then miss their objects (known issue)
        extra = [dataclasses.replace(lc, object_id=f"late-{lc.object_id}") for lc in base[:2]]
        assert httpx.post(servers[0].url + "/v1/alerts", json=as_json(extra), timeout=60).status_code == 200
        expected.update({lc.object_id: _keys(lc) for lc in extra})
        store = Store(postgres_url)
        fingerprints.update({lc.object_id: store.get_fingerprint(lc.object_id, version) for lc in extra})
        store.close()
        servers[1].stop()
        servers[1].start()
        # a graceful stop saves the index under the marker of a state it fully contains
        assert index_matches_sql(servers[1]), servers[1].log()[-3000:]
    finally:
        for s in servers:
            s.kill()
