"""Resident memory of the service, idle and after use, by how it runs the model.

    python -m benchmarks.bench_memory --n 3000

A demo catalogue of ``--n`` synthetic objects is ingested once (the service's own demo seeding);
then, for each precision, the service (``python -m app.server``) starts on that database and
answers nothing for a few seconds (idle RSS), then 200 neighbour queries, 5 plots and 50 single
light curves posted to ``/v1/fingerprints`` (RSS after use). ``onnx`` serves the checkpoint's
serving export (ONNX Runtime alone), ``fp32`` the PyTorch model. Whether libtorch is mapped into
the process is read from ``/proc/<pid>/maps``.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._service import ROOT, service_process


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def has_libtorch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def use(base: str) -> None:
    ids = [o["object_id"] for o in httpx.get(base + "/v1/objects", params={"limit": 500}).json()["items"]]
    rng = random.Random(0)
    with httpx.Client(base_url=base, timeout=60) as c:
        for _ in range(200):
            c.get(f"/v1/objects/{rng.choice(ids)}/neighbors", params={"k": 10}).raise_for_status()
        for oid in ids[:5]:
            c.get(f"/v1/objects/{oid}/plot").raise_for_status()
        for oid in ids[:50]:
            lc = c.get(f"/v1/objects/{oid}").json()["lightcurve"]
            c.post("/v1/fingerprints", json={"lightcurves": [lc]}).raise_for_status()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000, help="demo catalogue size")
    p.add_argument("--idle", type=float, default=5.0, help="seconds idle before the first reading")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rtf-mem-"))
    demo = work / "demo.parquet"
    subprocess.run([sys.executable, "-m", "training.synthetic.cli", "--survey", "ztf", "--n", str(a.n), "--seed",
                    "2026", "--min-detections", "3", "--out", str(demo)], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    env = {
        "RTF_DATABASE_URL": f"sqlite:///{work / 'rtf.db'}",
        "RTF_INDEX_DIR": str(work / "index"),
        "RTF_DEMO": "1",
        "RTF_DEMO_FILE": str(demo),
        "RTF_CACHE_DIR": str(work / "cache"),
    }
    with service_process(env | {"RTF_PRECISION": "onnx"}, work / "seed.log"):
        pass  # the demo is ingested before the service answers /readyz
    print(f"| precision | libtorch mapped | RSS idle (MB) | RSS after use (MB) |  ({a.n} objects)")
    print("|---|---|---|---|")
    for precision in ("onnx", "fp32"):
        with service_process(env | {"RTF_PRECISION": precision}, work / f"{precision}.log") as (base, proc):
            time.sleep(a.idle)
            idle = rss_mb(proc.pid)
            use(base)
            print(f"| {precision} | {has_libtorch(proc.pid)} | {idle:.0f} | {rss_mb(proc.pid):.0f} |", flush=True)


if __name__ == "__main__":
    main()
