"""rtf-reencode: give the stored catalogue the fingerprints of another model version.

    rtf-reencode --checkpoint runs/mine/model.pt             # write the new version beside the old
    rtf-reencode --checkpoint runs/mine/model.pt --activate  # ... then switch the service to it
    rtf-reencode --list                                      # versions and their counts
    rtf-reencode --drop rtf-ae64-0123456789                  # delete a version that is not active
    rtf-reencode --checkpoint runs/mine/model.pt --engine ray [--ray-address HEAD:6379]  # on Ray Data

Every stored light curve is read from SQL, encoded with the checkpoint, and its fingerprint,
classes and anomaly score are written under the checkpoint's version; the active version keeps
serving meanwhile. Batches commit one by one and only objects without an up-to-date fingerprint
of the version are encoded, so the command is safe to kill and to run again: it goes on where it
stopped. Objects that receive alerts during the run are encoded again in a later pass.
``--activate`` switches atomically: ingest waits while the last stale objects are encoded, then
the version becomes active, and running services switch to it at their next index sync.
The database is ``RTF_DATABASE_URL`` (as for the service) unless ``--database-url`` is given.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from app.catalog import fingerprint_row, stored_lightcurve
from encoder.inference import Encoder
from indexing.persistence import file_sha256
from indexing.store import FingerprintRow, Store, StoredObject

log = logging.getLogger("rtf.reencode")


@dataclass
class ReencodeReport:
    version: str
    encoded: int  # fingerprints written
    passes: int
    seconds: float
    activated: bool = False
    finished_at_switch: int = 0  # stale objects encoded inside the switch


def fingerprint_rows(encoder: Encoder, stored: dict[str, StoredObject]) -> list[FingerprintRow]:
    """Fingerprints and predictions of stored objects (those with a light curve)."""
    lcs = [lc for s in stored.values() if (lc := stored_lightcurve(s)) is not None]
    if not lcs:
        return []
    enc = encoder.encode(lcs)
    rows = []
    for i, lc in enumerate(lcs):
        if not np.isfinite(enc.vectors[i]).all():  # the service refuses such light curves at ingest
            log.warning("%s: fingerprint not finite under %s; left stale", lc.object_id, encoder.version)
            continue
        rows.append(fingerprint_row(encoder, enc, i, lc.object_id))
    return rows


def reencode(
    store: Store,
    encoder: Encoder,
    *,
    batch_size: int = 1000,
    activate: bool = False,
    progress: bool = True,
    max_passes: int = 10,
) -> ReencodeReport:
    """Encode every stale object of ``encoder.version`` (see ``Store.count_stale``), pass after pass
    until none is left (objects ingested meanwhile become stale again), then optionally activate."""
    version, t0 = encoder.version, time.perf_counter()
    encoded = passes = 0
    while passes < max_passes:
        todo = store.count_stale(version)
        if todo == 0:
            break
        passes += 1
        after = ""
        with tqdm(total=todo, desc=f"re-encode {version} (pass {passes})", unit="obj", disable=not progress) as bar:
            while ids := store.stale_object_ids(version, after=after, limit=batch_size):
                after = ids[-1]
                stored = store.read_objects(ids)
                res = store.write_fingerprints(
                    version, fingerprint_rows(encoder, stored), {k: v.revision for k, v in stored.items()}
                )
                encoded += res.fingerprints_written
                bar.update(len(ids))
    report = ReencodeReport(version, encoded, passes, 0.0)
    if activate:
        report.finished_at_switch = store.activate(version, lambda stored: fingerprint_rows(encoder, stored))
        report.activated = True
    report.seconds = time.perf_counter() - t0
    return report


def register(store: Store, checkpoint: Path, encoder: Encoder) -> None:
    store.register_model(
        encoder.version, path=str(checkpoint.resolve()), sha256=file_sha256(checkpoint), dim=encoder.dim,
        class_names=encoder.coarse_classes, metrics=encoder.metrics.get("val"),
    )


def print_versions(store: Store) -> None:
    counts, objects, active = store.fingerprint_counts(), store.count_objects(), store.active_version()
    print(f"{objects} objects")
    for m in store.list_models():
        mark = "*" if m.version == active else " "
        print(f"{mark} {m.version:28s} {counts.get(m.version, 0):>9d} fingerprints  "
              f"{store.count_stale(m.version):>9d} stale  {m.path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="rtf-reencode",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", type=Path, help="encode the catalogue with this checkpoint (.pt)")
    what.add_argument("--list", action="store_true", help="list the model versions with their counts")
    what.add_argument("--drop", metavar="VERSION", help="delete a version that is not active, with its fingerprints")
    what.add_argument(
        "--activate-version", metavar="VERSION", help="make an already complete version active (no encoding)"
    )
    p.add_argument("--activate", action="store_true", help="with --checkpoint: make the version active when done")
    p.add_argument("--database-url", help="default: RTF_DATABASE_URL, as the service")
    p.add_argument("--batch-size", type=int, default=1000, help="objects per committed batch (default 1000)")
    p.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--engine",
        choices=("inprocess", "ray"),
        default="inprocess",
        help="encode in this process (default) or on Ray Data (app.distributed, docs/scale.md)",
    )
    p.add_argument("--ray-address", help="with --engine ray: the cluster (HOST:6379, ray://HOST:10001); default a local Ray")
    p.add_argument(
        "--shard-dir",
        type=Path,
        help="with --engine ray: fingerprint shards (a folder every node shares; default var/fingerprint-shards)",
    )
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from app.settings import Settings

    settings = Settings()
    a.database_url = a.database_url or settings.database_url
    store = Store(a.database_url)
    store.migrate()
    try:
        if a.list:
            print_versions(store)
        elif a.drop:
            print(f"dropped {a.drop}: {store.drop_model(a.drop)} fingerprints")
        elif a.activate_version:
            store.activate(a.activate_version)
            print(f"active: {a.activate_version}")
        else:
            encoder = Encoder.load(a.checkpoint, threads=a.threads, precision="auto", cache_dir=settings.cache_dir)
            register(store, a.checkpoint, encoder)
            if a.engine == "ray":
                from app.distributed import EncoderSpec, init_ray, reencode_ray

                init_ray(a.ray_address)
                spec = EncoderSpec.of(encoder, a.checkpoint, threads=1, cache_dir=settings.cache_dir)
                shards = a.shard_dir or Path(settings.cache_dir).parent / "fingerprint-shards"
                r = reencode_ray(store, encoder, spec, shards, partition_size=a.batch_size, activate=a.activate)
            else:
                r = reencode(store, encoder, batch_size=a.batch_size, activate=a.activate, progress=not a.no_progress)
            state = "active" if r.activated else f"not active (active: {store.active_version()})"
            print(f"{r.version}: {r.encoded} fingerprints written in {r.passes} passes, {r.seconds:.1f} s; {state}")
    except (KeyError, ValueError, RuntimeError) as exc:  # StaleVersion is a RuntimeError
        print(f"rtf-reencode: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
