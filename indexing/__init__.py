"""Vector index (FAISS) and SQL metadata store. Never imports torch, ``encoder`` or ``app``.

* :mod:`indexing.vector_index` — :class:`VectorIndex`: cosine k-NN with filters, upsert/delete.
* :mod:`indexing.store` — :class:`Store`: SQLAlchemy repository (SQLite / PostgreSQL).
* :mod:`indexing.history` — :class:`History`: an object's light curve as SQL stores it (columns).
* :mod:`indexing.persistence` — atomic save / verified load of an index with its manifest.
* :mod:`indexing.sync` — :func:`load_or_rebuild` at start-up.
"""

from indexing.history import History
from indexing.persistence import IndexLoadError, load_index, save_index
from indexing.store import (
    FingerprintBatch,
    FingerprintRow,
    IngestBatch,
    IngestResult,
    ModelInfo,
    ObjectState,
    Store,
    StoredObject,
)
from indexing.sync import LoadReport, load_or_rebuild, rebuild_from_store
from indexing.vector_index import IndexConfig, Neighbor, VectorIndex

__all__ = [
    "FingerprintBatch",
    "FingerprintRow",
    "History",
    "IndexConfig",
    "IndexLoadError",
    "IngestBatch",
    "IngestResult",
    "LoadReport",
    "ModelInfo",
    "Neighbor",
    "ObjectState",
    "Store",
    "StoredObject",
    "VectorIndex",
    "load_index",
    "load_or_rebuild",
    "rebuild_from_store",
    "save_index",
]
