"""Ray Data encoding vs the in-process encoder on the same light curves, side by side in one run.

    python -m benchmarks.bench_ray --n 40000 --files 8                 # archive: light-curve Parquet files
    python -m benchmarks.bench_ray --n 40000 --files 8 --store 5000    # ... and rtf-reencode of a catalogue

Archive: ``--n`` synthetic light curves in ``--files`` RTF light-curve Parquet files, encoded with
the bundled checkpoint (a) in this process (``Encoder.load(precision="auto", threads=--cpus)``,
file by file, chunks of 1000: what ``encode_archive`` does per file) and (b) by
``app.distributed.encode_archive`` on a local Ray with ``--cpus`` CPUs (``--cpus`` actors of one
thread, Parquet shards written). (b) is timed from the call (actor start and model load included;
``ray.init`` apart). Store: ``--store`` objects ingested into SQLite, then re-encoded with another
version (jittered weights) by ``reencode`` and by ``reencode_ray`` on copies of the database.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from app import distributed as dist
from encoder.checkpoint import DEFAULT_CHECKPOINT
from encoder.inference import Encoder
from encoder.readers import read_lightcurves_parquet, write_lightcurves_parquet
from training.synthetic import SurveyConfig, generate_survey


def archive(work: Path, n: int, files: int, cpus: int) -> dict:
    lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=n, seed=2028, min_detections=3))
    paths = []
    per = -(-len(lcs) // files)
    for i in range(files):
        paths.append(work / f"lc-{i:03d}.parquet")
        write_lightcurves_parquet(lcs[i * per : (i + 1) * per], paths[-1])
    cache = work / "cache"
    t = time.perf_counter()
    enc = Encoder.load(DEFAULT_CHECKPOINT, precision="auto", threads=cpus, cache_dir=cache)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    done = 0
    for path in paths:
        part = read_lightcurves_parquet(path)
        for s in range(0, len(part), 1000):
            done += dist.encode_lightcurves(enc, part[s : s + 1000]).num_rows
    inproc_s = time.perf_counter() - t
    t = time.perf_counter()
    dist.init_ray(None, num_cpus=cpus)
    init_s = time.perf_counter() - t
    spec = dist.EncoderSpec.of(enc, DEFAULT_CHECKPOINT, threads=1, cache_dir=cache)
    t = time.perf_counter()
    out = dist.encode_archive(paths, spec, work / "shards", concurrency=cpus)
    ray_s = time.perf_counter() - t
    got = sum(t.num_rows for t in dist.iter_shards(out))
    assert got == done, (got, done)
    return {
        "light_curves": done,
        "precision": enc.precision,
        "encoder_load_s": round(load_s, 1),
        "inprocess_s": round(inproc_s, 1),
        "inprocess_per_s": round(done / inproc_s),
        "ray_init_s": round(init_s, 1),
        "ray_s": round(ray_s, 1),
        "ray_per_s": round(done / ray_s),
        "ratio": round(inproc_s / ray_s, 2),
    }


def store(work: Path, n: int, cpus: int) -> dict:
    from app.catalog import Catalog
    from app.reencode import reencode
    from app.settings import Settings
    from indexing.store import Store
    from training.variants import jittered_checkpoint

    db = work / "rtf.db"
    settings = Settings(
        database_url=f"sqlite:///{db}",
        index_dir=work / "index",
        sync_interval=0,
        demo=False,
        cache_dir=work / "cache",
        threads=cpus,
    )
    catalog = Catalog.open(settings)
    lcs = generate_survey(SurveyConfig(survey="ztf", n_objects=n, seed=2029, min_detections=3))
    for s in range(0, len(lcs), 1000):
        catalog.ingest(lcs[s : s + 1000])
    catalog.close()
    ckpt = work / "other.pt"
    jittered_checkpoint(ckpt, scale=0.02, seed=3)
    enc = Encoder.load(ckpt, precision="auto", threads=cpus, cache_dir=work / "cache")
    out = {"objects": n, "precision": enc.precision}
    for name in ("inprocess", "ray"):
        shutil.copy(db, work / f"{name}.db")
        st = Store(f"sqlite:///{work / f'{name}.db'}")
        t = time.perf_counter()
        if name == "ray":
            spec = dist.EncoderSpec.of(enc, ckpt, threads=1, cache_dir=work / "cache")
            r = dist.reencode_ray(st, enc, spec, work / "fp-shards", concurrency=cpus)
        else:
            r = reencode(st, enc, progress=False)
        out[f"{name}_s"] = round(time.perf_counter() - t, 1)
        out[f"{name}_per_s"] = round(r.encoded / out[f"{name}_s"])
        st.close()
    out["ratio"] = round(out["inprocess_s"] / out["ray_s"], 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40_000, help="light curves of the archive run")
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--store", type=int, default=0, help="objects of the rtf-reencode run (0: skip it)")
    p.add_argument("--cpus", type=int, default=2)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rtf-bench-ray-"))
    try:
        res = {"archive": archive(work, a.n, a.files, a.cpus)}
        print(json.dumps(res), flush=True)
        if a.store:
            res["store"] = store(work, a.store, a.cpus)
        print(json.dumps(res, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
