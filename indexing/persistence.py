"""Crash-safe persistence of a :class:`~indexing.vector_index.VectorIndex`.

Layout of ``index_dir``::

    manifest.json          the commit point, replaced atomically last
    index-<token>.faiss    faiss.write_index of the index
    meta-<token>.npz       ids (utf-8, newline separated), tombstones, filter attributes

Each file is written to a temporary file in the same directory, fsync'ed and ``os.replace``d;
the directory is fsync'ed too. A new save writes new ``<token>`` files, then the manifest, then
deletes the previous generation, so a crash at any point leaves either the old or the new
complete set. The manifest ties the files to the model version, vector dim, count, the SQL state
marker (:meth:`indexing.store.Store.state_marker`) and their sha256, so a missing, corrupt, or
stale file is detected by :func:`load_index`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexing.vector_index import IndexConfig, VectorIndex

__all__ = ["FORMAT", "IndexLoadError", "atomic_write", "load_index", "read_manifest", "save_index"]

FORMAT = 1
MANIFEST = "manifest.json"


class IndexLoadError(Exception):
    """The saved index is missing, corrupt, or does not match the expected state."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> str:
    """Call ``write(tmp_path)``, fsync, then atomically replace ``path``. Returns the sha256 of the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        digest = hashlib.sha256()
        with open(tmp_path, "rb+") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
        return digest.hexdigest()
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def save_index(index: VectorIndex, index_dir: str | Path, *, model_version: str, sql_marker: str) -> dict[str, Any]:
    """Persist ``index`` as a new generation in ``index_dir``; returns the manifest.

    ``sql_marker`` must describe the SQL state the index reflects: read it with
    ``store.state_marker(model_version)`` right after applying your own ingests to the index
    (sound when this process is the only writer of the fingerprints / objects).
    Writers of the index are blocked during the save; readers are not.
    """
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    token = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    index_name, meta_name = f"index-{token}.faiss", f"meta-{token}.npz"
    with index.frozen():
        faiss_index, arrays, info = index.export_state()
        index_sha = atomic_write(index_dir / index_name, lambda p: faiss.write_index(faiss_index, str(p)))

        def write_meta(p: Path) -> None:
            with open(p, "wb") as f:
                # allow_pickle (the default) named, so that **arrays can only be arrays
                np.savez(f, allow_pickle=True, **arrays)

        meta_sha = atomic_write(index_dir / meta_name, write_meta)
        manifest = {
            "format": FORMAT,
            "model_version": model_version,
            "dim": index.dim,
            "count": len(index),
            "sql_marker": sql_marker,
            "kind": info["kind"],
            "n_labels": info["n_labels"],
            "n_dead": info["n_dead"],
            "class_names": info["class_names"],
            "index_file": index_name,
            "index_sha256": index_sha,
            "meta_file": meta_name,
            "meta_sha256": meta_sha,
            "faiss_version": faiss.__version__,
            "saved_at": time.time(),
        }
    atomic_write(index_dir / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1)))
    for old in list(index_dir.glob("index-*.faiss")) + list(index_dir.glob("meta-*.npz")):
        if old.name not in (index_name, meta_name):
            old.unlink(missing_ok=True)
    return manifest


def read_manifest(index_dir: str | Path) -> dict[str, Any]:
    path = Path(index_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise IndexLoadError(f"no manifest in {index_dir}") from exc
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"unreadable manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexLoadError(f"unknown manifest format in {path}")
    return manifest


def load_index(
    index_dir: str | Path,
    *,
    model_version: str,
    sql_marker: str | None,
    dim: int | None = None,
    config: IndexConfig | None = None,
    verify_checksums: bool = True,
) -> tuple[VectorIndex, dict[str, Any]]:
    """Load the saved index; raise :class:`IndexLoadError` when it is missing, corrupt, or stale
    (model version, dim or — unless ``sql_marker`` is None — SQL marker differ)."""
    index_dir = Path(index_dir)
    m = read_manifest(index_dir)
    if m.get("model_version") != model_version:
        raise IndexLoadError(f"index is for model {m.get('model_version')!r}, not {model_version!r}")
    if dim is not None and m.get("dim") != dim:
        raise IndexLoadError(f"index dim {m.get('dim')} != {dim}")
    if sql_marker is not None and m.get("sql_marker") != sql_marker:
        raise IndexLoadError(f"stale index: SQL state {sql_marker!r} != saved {m.get('sql_marker')!r}")
    index_path, meta_path = index_dir / str(m.get("index_file")), index_dir / str(m.get("meta_file"))
    for p, key in ((index_path, "index_sha256"), (meta_path, "meta_sha256")):
        if not p.is_file():
            raise IndexLoadError(f"missing {p}")
        if verify_checksums and file_sha256(p) != m.get(key):
            raise IndexLoadError(f"checksum mismatch: {p}")
    try:
        faiss_index = faiss.read_index(str(index_path))
        with np.load(meta_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        info = {k: m[k] for k in ("kind", "n_labels", "n_dead", "class_names")}
        vi = VectorIndex.from_state(int(m["dim"]), config, faiss_index, arrays, info)
    except Exception as exc:  # faiss raises RuntimeError, numpy ValueError/KeyError/...
        raise IndexLoadError(f"corrupt index in {index_dir}: {exc}") from exc
    if len(vi) != m.get("count"):
        raise IndexLoadError(f"index holds {len(vi)} objects, manifest says {m.get('count')}")
    return vi, m
