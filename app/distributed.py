"""Encoding on Ray Data: re-encode the SQL catalogue, or encode light-curve archives, past one process.

    rtf-reencode --checkpoint new.pt --engine ray                          # a local Ray on this machine
    rtf-reencode --checkpoint new.pt --engine ray --ray-address HEAD:6379  # a Ray cluster (docs/scale.md)

The pipeline (one pass of :func:`reencode_ray`):

1. the driver pages through the stale objects of the version (``Store.stale_object_ids``) and
   keeps only each page's boundary ``(after, limit)``: a partition, not its ids;
2. ``map_batches`` over an actor pool of :class:`StoreEncoder` (each actor holds one ``Encoder``
   and one ``Store``; ``num_cpus`` per actor here, ``num_gpus`` on a GPU cluster) reads each
   partition's objects from SQL, encodes them with :func:`app.reencode.fingerprint_rows` (the
   in-process code, so the rows are the same) and returns a fingerprint table;
3. each actor writes its tables as Parquet shards (``<shard_dir>/<version>/pass-NNN-<id>/``);
4. the shards are loaded into SQL with ``Store.write_fingerprints``, with the revision each
   fingerprint was computed from: one whose object changed meanwhile is skipped and stays stale.

Passes repeat until nothing is stale, as in-process. Safe to kill and run again: shards left
unloaded by a killed run are loaded first (the revisions make that safe), then only what is still
stale is encoded. :func:`encode_archive` encodes RTF light-curve Parquet or alert Avro files the
same way (no SQL); :func:`load_index` puts shards into a ``VectorIndex`` or ``ShardedIndex``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.catalog import fingerprint_row
from app.reencode import ReencodeReport, fingerprint_rows
from encoder.inference import Encoder
from encoder.lightcurve import LightCurve
from indexing.classes import class_key
from indexing.store import FingerprintRow, Store, StoredObject

log = logging.getLogger("rtf.distributed")
LOADED = "_LOADED"  # marker file of a shard folder already loaded into SQL


@dataclass(frozen=True)
class EncoderSpec:
    """How each actor loads its encoder (pickled to the actors, so paths must exist on every node)."""

    checkpoint: str
    precision: str = "auto"  # pass the driver's resolved precision so that every actor runs the same graph
    threads: int = 1
    cache_dir: str | None = None

    def load(self) -> Encoder:
        return Encoder.load(self.checkpoint, precision=self.precision, threads=self.threads,
                            cache_dir=Path(self.cache_dir) if self.cache_dir else None)

    @classmethod
    def of(
        cls, encoder: Encoder, checkpoint: str | Path, *, threads: int = 1, cache_dir: str | Path | None = None
    ) -> EncoderSpec:
        """The spec that loads what ``encoder`` runs (its precision after an ``auto`` choice)."""
        return cls(str(Path(checkpoint).resolve()), encoder.precision, threads, str(cache_dir) if cache_dir else None)


# --------------------------------------------------------------------------- fingerprint tables
def schema(dim: int) -> pa.Schema:
    return pa.schema([
        ("object_id", pa.string()), ("vector", pa.list_(pa.float32(), dim)), ("label", pa.string()),
        ("fine_label", pa.string()), ("probabilities", pa.string()), ("anomaly_score", pa.float64()),
        ("model_score", pa.float64()), ("revision", pa.int64()), ("last_jd", pa.float64()), ("n_detections", pa.int64()),
    ])


def rows_table(
    rows: Sequence[FingerprintRow],
    dim: int,
    revision: dict[str, int],
    last_jd: Mapping[str, float | None],
    n_detections: Mapping[str, int],
) -> pa.Table:
    """Fingerprint rows as a table of :func:`schema` (plain Arrow types: readable without Ray)."""
    vec = np.stack([r.vector for r in rows]).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    ids = [r.object_id for r in rows]
    cols = [
        pa.array(ids, pa.string()),
        pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1), pa.float32()), dim),
        pa.array([r.label for r in rows], pa.string()),
        pa.array([r.fine_label for r in rows], pa.string()),
        pa.array([None if r.probabilities is None else json.dumps(r.probabilities) for r in rows], pa.string()),
        pa.array([r.anomaly_score for r in rows], pa.float64()),
        pa.array([r.model_score for r in rows], pa.float64()),
        pa.array([revision.get(o) for o in ids], pa.int64()),
        pa.array([last_jd.get(o) for o in ids], pa.float64()),
        pa.array([n_detections.get(o, 0) for o in ids], pa.int64()),
    ]
    return pa.Table.from_arrays(cols, schema=schema(dim))


def table_rows(table: pa.Table) -> tuple[list[FingerprintRow], dict[str, int]]:
    """The fingerprint rows of a shard table and the revisions they were computed from."""
    dim = table.schema.field("vector").type.list_size
    vec = table.column("vector").combine_chunks().values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    names = ["object_id", "label", "fine_label", "probabilities", "anomaly_score", "model_score", "revision"]
    d = table.select(names).to_pydict()
    rows = [
        FingerprintRow(o, vec[i].copy(), lab, None if p is None else json.loads(p), a, fine, m)
        for i, (o, lab, fine, p, a, m) in enumerate(zip(*(d[n] for n in names[:-1]), strict=True))
    ]
    revisions = {o: r for o, r in zip(d["object_id"], d["revision"], strict=True) if r is not None}
    return rows, revisions


def iter_shards(shard_dir: str | Path, batch_size: int = 1000) -> Iterator[pa.Table]:
    """The rows of a folder of shards, ``batch_size`` at a time (sorted file order: reproducible)."""
    for path in sorted(Path(shard_dir).rglob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            yield pa.Table.from_batches([batch])


# --------------------------------------------------------------------------- Ray Data actors
class StoreEncoder:
    """Ray Data actor: encodes partitions ``(after, limit)`` of a version's stale objects, read from SQL."""

    def __init__(self, url: str, spec: EncoderSpec, version: str, out: str) -> None:
        self.store, self.encoder, self.version, self.out = Store(url), spec.load(), version, out
        if self.encoder.version != version:  # a different file at the same path on this node
            raise RuntimeError(f"{spec.checkpoint} is {self.encoder.version} here, not {version}")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tables = []
        for after, limit in zip(batch["after"].tolist(), batch["limit"].tolist(), strict=True):
            ids = self.store.stale_object_ids(self.version, after=str(after), limit=int(limit))
            stored: dict[str, StoredObject] = self.store.read_objects(ids)
            rows = fingerprint_rows(self.encoder, stored)
            tables.append(
                rows_table(
                    rows,
                    self.encoder.dim,
                    {k: v.revision for k, v in stored.items()},
                    {k: v.state.last_jd for k, v in stored.items()},
                    {k: v.state.n_detections for k, v in stored.items()},
                )
            )
        return write_shard(tables, self.out)


def read_lightcurve_file(path: str) -> list[LightCurve]:
    """RTF light-curve Parquet (``*.parquet``) or alert Avro (``*.avro``, ZTF/LSST, merged by object)."""
    from encoder.readers import merge_by_object, read_alert_avro, read_lightcurves_parquet

    if path.endswith(".avro"):
        return merge_by_object(read_alert_avro(path))
    return read_lightcurves_parquet(path)


class ArchiveEncoder:
    """Ray Data actor: encodes whole light-curve files (rows ``{"path": ...}``)."""

    def __init__(self, spec: EncoderSpec, out: str, chunk: int = 1000) -> None:
        self.encoder, self.out, self.chunk = spec.load(), out, chunk

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tables = []
        for path in batch["path"].tolist():
            lcs = read_lightcurve_file(str(path))
            for s in range(0, len(lcs), self.chunk):
                tables.append(encode_lightcurves(self.encoder, lcs[s : s + self.chunk]))
        return write_shard(tables, self.out)


def write_shard(tables: list[pa.Table], out: str) -> dict[str, np.ndarray]:
    """One Parquet shard file of a batch's tables, written by the actor itself (a separate Ray Data
    write stage would start more worker processes: seconds each on 2 cores); returns its row count."""
    table = pa.concat_tables(tables) if tables else None
    if table is None or table.num_rows == 0:
        return {"rows": np.array([0], np.int64)}
    Path(out).mkdir(parents=True, exist_ok=True)
    name = Path(out) / f"{uuid.uuid4().hex}.parquet"
    pq.write_table(table, name.with_suffix(".tmp"))
    name.with_suffix(".tmp").rename(name)  # a killed actor leaves no half-written shard behind
    return {"rows": np.array([table.num_rows], np.int64)}


def encode_lightcurves(encoder: Encoder, lcs: list[LightCurve]) -> pa.Table:
    """A fingerprint table of light curves (no revision: they are not from the store)."""
    if not lcs:
        return rows_table([], encoder.dim, {}, {}, {})
    enc = encoder.encode(lcs)
    keep = [i for i in range(len(lcs)) if np.isfinite(enc.vectors[i]).all()]
    rows = [fingerprint_row(encoder, enc, i, lcs[i].object_id) for i in keep]
    last = {lcs[i].object_id: float(lcs[i].time.max()) for i in keep}
    return rows_table(rows, encoder.dim, {}, last, {lcs[i].object_id: len(lcs[i]) for i in keep})


# --------------------------------------------------------------------------- driver
def init_ray(address: str | None = None, **kwargs: Any) -> None:
    """Connect to the Ray cluster at ``address`` (``HOST:6379``, ``ray://HOST:10001``, ``auto``) or
    start a local one (``address=None``); a no-op when this process is connected already."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **kwargs)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False


def _pool(concurrency: int | None) -> int:
    import ray

    return concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))


def _drain(ds: Any) -> int:
    """Run a pipeline whose actors write the shards; the rows they wrote (no aggregation tasks)."""
    return sum(int(b["rows"].sum()) for b in ds.iter_batches(batch_size=None, batch_format="numpy"))


def partitions(store: Store, version: str, size: int) -> list[dict[str, Any]]:
    """The stale objects of ``version`` as keyset pages ``{"after", "limit"}`` (ids stay in SQL)."""
    out, after = [], ""
    while ids := store.stale_object_ids(version, after=after, limit=size):
        out.append({"after": after, "limit": size})
        after = ids[-1]
    return out


def encode_store(
    url: str,
    spec: EncoderSpec,
    version: str,
    out: Path,
    *,
    partition_size: int = 1000,
    concurrency: int | None = None,
    num_gpus: float = 0.0,
) -> int:
    """One Ray Data pass over the stale objects: Parquet shards in ``out``; returns the partitions."""
    import ray.data

    store = Store(url)
    try:
        parts = partitions(store, version, partition_size)
    finally:
        store.close()
    if not parts:
        return 0
    n = min(_pool(concurrency), len(parts))
    items = ray.data.from_items(parts, override_num_blocks=min(len(parts), 4 * n))
    ds = items.map_batches(
        StoreEncoder,
        fn_constructor_args=(url, spec, version, str(out)),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n),
        num_cpus=spec.threads,
        num_gpus=num_gpus or None,
    )
    _drain(ds)
    return len(parts)


def load_shards(store: Store, version: str, shard_dir: Path, batch_size: int = 1000) -> tuple[int, int]:
    """Write a folder of shards into SQL (``write_fingerprints`` per batch, with the revisions) and
    mark it loaded; returns (fingerprints written, skipped because their object changed)."""
    written = skipped = 0
    for table in iter_shards(shard_dir, batch_size):
        rows, revisions = table_rows(table)
        res = store.write_fingerprints(version, rows, revisions)
        written, skipped = written + res.fingerprints_written, skipped + res.fingerprints_skipped
    (shard_dir / LOADED).write_text(json.dumps({"written": written, "skipped": skipped}))
    return written, skipped


def pending_shards(shard_root: Path, version: str) -> list[Path]:
    """Shard folders of ``version`` that a killed run wrote but did not load."""
    root = shard_root / version
    return sorted(p for p in root.glob("pass-*") if p.is_dir() and not (p / LOADED).exists()) if root.is_dir() else []


def reencode_ray(
    store: Store,
    encoder: Encoder,
    spec: EncoderSpec,
    shard_root: Path,
    *,
    partition_size: int = 1000,
    concurrency: int | None = None,
    num_gpus: float = 0.0,
    activate: bool = False,
    max_passes: int = 10,
) -> ReencodeReport:
    """:func:`app.reencode.reencode` on Ray Data (connect with :func:`init_ray` first). ``encoder``
    (in the driver) only finishes the last stale objects inside ``--activate``'s switch."""
    version, t0 = encoder.version, time.perf_counter()
    encoded = passes = 0
    for old in pending_shards(shard_root, version):  # a killed run's output: load it, stale rows are skipped
        encoded += load_shards(store, version, old, partition_size)[0]
        log.info("loaded the shards a previous run left in %s", old)
    while passes < max_passes and store.count_stale(version) > 0:
        passes += 1
        out = shard_root / version / f"pass-{int(time.time())}-{passes:03d}-{uuid.uuid4().hex[:8]}"
        n = encode_store(
            store.url, spec, version, out, partition_size=partition_size, concurrency=concurrency, num_gpus=num_gpus
        )
        if n == 0:
            break
        written, skipped = load_shards(store, version, out, partition_size)
        encoded += written
        log.info(
            "pass %d: %d partitions, %d fingerprints written, %d skipped (changed meanwhile)",
            passes,
            n,
            written,
            skipped,
        )
    report = ReencodeReport(version, encoded, passes, 0.0)
    if activate:
        report.finished_at_switch = store.activate(version, lambda stored: fingerprint_rows(encoder, stored))
        report.activated = True
    report.seconds = time.perf_counter() - t0
    return report


def encode_archive(
    paths: Sequence[str | Path], spec: EncoderSpec, out: Path, *, concurrency: int | None = None, num_gpus: float = 0.0
) -> Path:
    """Encode light-curve files (one Ray Data row per file) into Parquet fingerprint shards in ``out``."""
    import ray.data

    files = [{"path": str(Path(p).resolve())} for p in paths]
    n = min(_pool(concurrency), len(files))
    items = ray.data.from_items(files, override_num_blocks=max(1, len(files)))
    ds = items.map_batches(
        ArchiveEncoder,
        fn_constructor_args=(spec, str(out)),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n),
        num_cpus=spec.threads,
        num_gpus=num_gpus or None,
    )
    _drain(ds)
    return out


def load_index(shard_dir: Path, index: Any, batch_size: int = 50_000) -> int:
    """Upsert shards into a ``VectorIndex`` or ``ShardedIndex`` with the filter attributes."""
    n = 0
    for table in iter_shards(shard_dir, batch_size):
        dim = table.schema.field("vector").type.list_size
        vec = table.column("vector").combine_chunks().values.to_numpy(zero_copy_only=False).reshape(-1, dim)
        d = table.select(["object_id", "label", "fine_label", "anomaly_score", "last_jd", "n_detections"]).to_pydict()
        index.upsert(
            d["object_id"],
            vec,
            labels=[class_key(c, f) for c, f in zip(d["label"], d["fine_label"], strict=True)],
            anomaly_scores=d["anomaly_score"],
            last_jd=d["last_jd"],
            n_detections=d["n_detections"],
        )
        n += len(vec)
    return n
