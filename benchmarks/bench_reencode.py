"""Re-encoding a catalogue with another model version while the service answers neighbours.

    python -m benchmarks.bench_reencode --n 100000 --keep var/bench-reencode   # builds once, then reuses

1. a synthetic survey of ``--n`` objects is ingested into a SQLite catalogue with the bundled
   checkpoint (``Catalog.ingest``; kept in ``--keep`` for the next run);
2. the service (``python -m app.server``) starts on it, and one client asks for the neighbours of
   random objects (``GET /v1/objects/{id}/neighbors?k=10``) at ``--qps`` queries a second;
3. after ``--warm`` seconds ``rtf-reencode --checkpoint <another version> --activate`` runs beside
   it (the other version: the bundled weights jittered, ``training.variants``).

Prints the re-encode time, and the neighbour latency (p50 / p99) and errors before, during and
after, with the version that answered.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from tqdm import tqdm

from benchmarks._service import ROOT, running_service


def build(db: Path, n: int) -> list[str]:
    from app.catalog import Catalog
    from app.settings import Settings
    from training.synthetic import SurveyConfig, generate_survey

    lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=n, seed=2027, min_detections=3))
    catalog = Catalog.open(Settings(database_url=f"sqlite:///{db}", index_dir=db.parent / "index", sync_interval=0))
    try:
        for s in tqdm(range(0, len(lcs), 500), desc="build catalogue", unit="batch"):
            catalog.ingest(lcs[s : s + 500])
    finally:
        catalog.close()
    return [lc.object_id for lc in lcs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--keep", type=Path, help="folder for the catalogue, reused when it holds one")
    p.add_argument("--qps", type=float, default=20.0, help="neighbour queries a second")
    p.add_argument("--warm", type=float, default=20.0, help="seconds of queries before the re-encode starts")
    p.add_argument("--batch-size", type=int, default=1000, help="rtf-reencode --batch-size")
    a = p.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="rtf-reencode-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "rtf.db"
    if not db.is_file():
        build(db, a.n)
    from sqlalchemy import create_engine, text

    with create_engine(f"sqlite:///{db}").connect() as conn:
        ids = list(conn.execute(text("SELECT object_id FROM objects")).scalars())
    run = Path(tempfile.mkdtemp(prefix="rtf-reencode-run-"))
    shutil.copy(db, run / "rtf.db")  # each run re-encodes the same catalogue from the bundled version
    from training.variants import jittered_checkpoint

    ckpt = run / "other.pt"
    other = jittered_checkpoint(ckpt, scale=0.02, seed=3)
    url = f"sqlite:///{run / 'rtf.db'}"
    env = {"RTF_DATABASE_URL": url, "RTF_INDEX_DIR": str(run / "index"), "RTF_SYNC_INTERVAL": "2"}
    with running_service(env, run / "server.log") as base:
        print(f"{len(ids)} objects; service ready on {httpx.get(base + '/readyz').json()['model']}")
        phase = ["before"]
        samples: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        errors: dict[str, int] = {"before": 0, "during": 0, "after": 0}
        served: dict[str, set] = {"before": set(), "during": set(), "after": set()}
        stop = threading.Event()

        def query() -> None:
            rng = random.Random(0)
            with httpx.Client(base_url=base, timeout=30) as http:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        r = http.get(f"/v1/objects/{rng.choice(ids)}/neighbors", params={"k": 10})
                        ok = r.status_code == 200 and len(r.json()["neighbors"]) == 10
                        if ok:
                            served[phase[0]].add(r.json()["model"])
                    except httpx.HTTPError:
                        ok = False
                    dt = time.perf_counter() - t0
                    samples[phase[0]].append(dt)
                    errors[phase[0]] += not ok
                    stop.wait(max(0.0, 1 / a.qps - dt))

        client = threading.Thread(target=query, daemon=True)
        client.start()
        time.sleep(a.warm)
        phase[0] = "during"
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "app.reencode", "--checkpoint", str(ckpt), "--activate",
                              "--database-url", url, "--batch-size", str(a.batch_size), "--no-progress"],
                             cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        seconds = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        phase[0] = "after"
        time.sleep(a.warm)
        stop.set()
        client.join(30)
    print(out.stdout.strip().splitlines()[-1])
    print(f"re-encode of {len(ids)} objects with --activate: {seconds:.0f} s ({len(ids) / seconds:.0f} objects/s)")
    for name, xs in samples.items():
        ms = np.array(xs) * 1e3
        print(
            f"neighbours {name:6s}: {len(ms):5d} queries, p50 {np.percentile(ms, 50):6.1f} ms, "
            f"p99 {np.percentile(ms, 99):6.1f} ms, errors {errors[name]}, answered by {sorted(served[name])}"
        )
    print(f"(the other version is {other})")


if __name__ == "__main__":
    main()
