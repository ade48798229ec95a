"""The vector index split into shards by object-id hash, behind :class:`~indexing.vector_index.VectorIndex`'s API.

* An object lives in shard ``zlib.crc32(object_id) % n_shards`` (stable across processes and
  machines, unlike ``hash()``), so an upsert, delete, lookup or ``exclude_ids`` touches one shard.
* A search fans out to every shard for its top k under the same filters and merges them by score.
  Ties are broken the way one flat :class:`VectorIndex` breaks them (faiss keeps the *later*
  label first among equal scores): every write gets a global sequence number, the analogue of the
  single index's label (an upsert takes a new one, compaction keeps the order), and the merge sorts
  by ``(-score, -sequence)``. So a sharded flat index returns exactly the ids, order and scores of
  one flat index on the same writes (``tests/test_shards.py``).
* Shards are in-process :class:`VectorIndex` objects by default (searched in parallel threads,
  faiss releases the GIL; but an unfiltered search of HNSW shards runs them one after the other:
  at 1M on 2 cores the thread hand-offs cost more than four 250K-graph searches, docs/scale.md), or Ray actors (``backend="ray"``, one per shard, spread over the
  cluster's nodes, each holding its own index): no RPC layer of our own, the calls are Ray's.
* Writes are validated (ids, vector shapes, finiteness) before any shard is touched, so a bad
  batch changes nothing; a shard's own failure afterwards (a lost actor) can leave a batch
  partly applied: re-run it (upserts are idempotent).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from indexing.vector_index import IndexConfig, Neighbor, VectorIndex, normalize

__all__ = ["IndexShard", "ShardedIndex", "shard_of"]

#: a search result row as shards return it: (object id, score, sequence number)
Hit = tuple[str, float, int]
_ATTRS = ("labels", "anomaly_scores", "last_jd", "n_detections")


def shard_of(object_id: str, n_shards: int) -> int:
    """The shard of an object: CRC-32 of its UTF-8 id modulo the number of shards."""
    return zlib.crc32(object_id.encode("utf-8")) % n_shards


class IndexShard:
    """One shard: a :class:`VectorIndex` and the global sequence number of each object's last write.

    The same class serves in-process and as a Ray actor (``ray.remote(IndexShard)``); its methods
    take and return plain picklable values."""

    def __init__(self, dim: int, config: IndexConfig | None = None) -> None:
        self.index = VectorIndex(dim, config)
        self.seq: dict[str, int] = {}

    def build(self, ids: list[str], vectors: np.ndarray, seqs: np.ndarray, attrs: dict[str, Any]) -> int:
        self.seq = dict(zip(ids, seqs.tolist(), strict=True))  # a repeated id keeps its last sequence
        self.index.build(ids, vectors, **attrs)
        return len(self.index)

    def upsert(self, ids: list[str], vectors: np.ndarray, seqs: np.ndarray, attrs: dict[str, Any]) -> int:
        self.seq.update(zip(ids, seqs.tolist(), strict=True))
        self.index.upsert(ids, vectors, **attrs)
        return len(ids)

    def delete(self, ids: list[str]) -> int:
        n = self.index.delete(ids)
        for o in ids:
            self.seq.pop(o, None)
        return n

    def search_batch(self, queries: np.ndarray, k: int, filters: dict[str, Any]) -> list[list[Hit]]:
        rows = self.index.search_batch(queries, k, **filters)
        seq = self.seq
        return [[(nb.object_id, nb.score, seq.get(nb.object_id, -1)) for nb in row] for row in rows]

    def get_vector(self, object_id: str) -> np.ndarray | None:
        return self.index.get_vector(object_id)

    def get_attributes(self, object_id: str) -> dict[str, Any] | None:
        return self.index.get_attributes(object_id)

    def contains(self, object_id: str) -> bool:
        return object_id in self.index

    def size(self) -> int:
        return len(self.index)

    def class_names(self) -> list[str]:
        return self.index.class_names

    def stats(self) -> dict[str, Any]:
        return self.index.stats()


def merge(rows: Sequence[Sequence[Hit]], k: int) -> list[Neighbor]:
    """The best k of per-shard top-k lists: by score, then the later write first (as faiss does)."""
    hits = sorted((h for row in rows for h in row), key=lambda h: (-h[1], -h[2]))
    return [Neighbor(h[0], h[1]) for h in hits[:k]]


class ShardedIndex:
    """Cosine k-NN over ``n_shards`` shards (see the module doc); the search API of :class:`VectorIndex`.

    ``backend="inprocess"`` (default) holds the shards here; ``backend="ray"`` starts one Ray
    actor per shard on the Ray cluster this process is connected to (``ray.init`` first), with
    ``ray_options`` passed to ``.options()`` (default ``num_cpus=1`` and the SPREAD strategy, so
    shards land on different nodes). ``parallel``: search in-process shards in threads (``None``: except
    unfiltered searches of HNSW shards; ``False``: never)."""

    def __init__(
        self,
        dim: int,
        n_shards: int = 4,
        config: IndexConfig | None = None,
        *,
        backend: str = "inprocess",
        ray_options: dict[str, Any] | None = None,
        parallel: bool | None = None,
    ) -> None:
        if n_shards < 1:
            raise ValueError("n_shards must be >= 1")
        if backend not in ("inprocess", "ray"):
            raise ValueError(f"backend must be 'inprocess' or 'ray', not {backend!r}")
        self.dim, self.n_shards, self.backend = int(dim), int(n_shards), backend
        self.config = config or IndexConfig()
        self._next_seq = 0
        self.parallel = parallel
        self._pool: ThreadPoolExecutor | None = None
        if backend == "ray":
            import ray

            opts = {"num_cpus": 1, "scheduling_strategy": "SPREAD"} | dict(ray_options or {})
            actor = ray.remote(IndexShard)
            self._shards: list[Any] = [actor.options(**opts).remote(self.dim, self.config) for _ in range(n_shards)]
        else:
            self._shards = [IndexShard(self.dim, self.config) for _ in range(n_shards)]
            if parallel is not False and n_shards > 1:
                self._pool = ThreadPoolExecutor(n_shards, thread_name_prefix="rtf-shard")

    # ----------------------------------------------------------------- calls
    def _call(self, shards: Sequence[int], method: str, args: Sequence[tuple], serial: bool = False) -> list[Any]:
        """``method(*args[i])`` on shard ``shards[i]`` for all i, concurrently; results in that order."""
        if self.backend == "ray":
            import ray

            return ray.get([getattr(self._shards[s], method).remote(*a) for s, a in zip(shards, args, strict=True)])
        fns = [getattr(self._shards[s], method) for s in shards]
        if self._pool is None or len(fns) == 1 or serial:
            return [fn(*a) for fn, a in zip(fns, args, strict=True)]
        # the first shard runs in this thread: one hand-off fewer (~20-50 us each on 2 cores)
        futures = [self._pool.submit(fn, *a) for fn, a in zip(fns[1:], args[1:], strict=True)]
        first = fns[0](*args[0])
        return [first] + [f.result() for f in futures]

    def _one(self, object_id: str, method: str) -> Any:
        return self._call([shard_of(object_id, self.n_shards)], method, [(object_id,)])[0]

    def close(self) -> None:
        """Stop the search threads, or the Ray actors."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        if self.backend == "ray":
            import ray

            for a in self._shards:
                ray.kill(a)
            self._shards = []

    # ----------------------------------------------------------------- introspection
    def __len__(self) -> int:
        return sum(self._call(range(self.n_shards), "size", [()] * self.n_shards))

    def __contains__(self, object_id: str) -> bool:
        return bool(self._one(object_id, "contains"))

    @property
    def class_names(self) -> list[str]:
        names: dict[str, None] = {}
        for part in self._call(range(self.n_shards), "class_names", [()] * self.n_shards):
            names.update(dict.fromkeys(part))
        return list(names)

    def stats(self) -> dict[str, Any]:
        shards = self._call(range(self.n_shards), "stats", [()] * self.n_shards)
        return {"backend": self.backend, "n_shards": self.n_shards, "count": sum(s["count"] for s in shards),
                "shards": shards}

    def get_vector(self, object_id: str) -> np.ndarray | None:
        return self._one(object_id, "get_vector")

    def get_attributes(self, object_id: str) -> dict[str, Any] | None:
        return self._one(object_id, "get_attributes")

    # ----------------------------------------------------------------- writes
    def _split(self, object_ids: Sequence[str], vectors: np.ndarray, attrs: dict[str, Any]):
        """Validate a write, number it, and cut it per shard: [(shard, (ids, vectors, seqs, attrs))]."""
        ids = [str(o) for o in object_ids]
        for o in ids:
            if not o or "\n" in o:
                raise ValueError(f"bad object id {o!r}")
        n = len(ids)
        # validated here, normalised by the shard: normalising twice would move the vectors by an ulp
        x = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim) if n else np.zeros((0, self.dim), np.float32)
        if n:
            normalize(x, self.dim)
        if len(x) != n:
            raise ValueError(f"{n} ids but {len(x)} vectors")
        given = {name: list(v) for name, v in attrs.items() if v is not None}
        for name, v in given.items():
            if len(v) != n:
                raise ValueError(f"{name} length differs from the number of ids")
        seqs = np.arange(self._next_seq, self._next_seq + n, dtype=np.int64)
        self._next_seq += n
        where = np.fromiter((shard_of(o, self.n_shards) for o in ids), dtype=np.int64, count=n)
        out = []
        for s in range(self.n_shards):
            rows = np.flatnonzero(where == s)
            if len(rows) == 0:
                continue
            rl = rows.tolist()
            part = {name: [v[i] for i in rl] for name, v in given.items()}
            out.append((s, ([ids[i] for i in rl], x[rows], seqs[rows], part)))
        return out

    def build(
        self,
        object_ids: Sequence[str],
        vectors: np.ndarray,
        *,
        labels: Sequence[str | None] | None = None,
        anomaly_scores: Iterable[float | None] | None = None,
        last_jd: Iterable[float | None] | None = None,
        n_detections: Iterable[int] | None = None,
    ) -> None:
        """Replace the whole content (every shard is rebuilt, empty ones included)."""
        attrs = dict(zip(_ATTRS, (labels, anomaly_scores, last_jd, n_detections), strict=True))
        parts = dict(self._split(object_ids, vectors, attrs))
        empty: tuple[list[str], np.ndarray, np.ndarray, dict[str, Any]] = (
            [],
            np.zeros((0, self.dim), np.float32),
            np.zeros(0, np.int64),
            {},
        )
        self._call(range(self.n_shards), "build", [parts.get(s, empty) for s in range(self.n_shards)])

    def upsert(
        self,
        object_ids: Sequence[str],
        vectors: np.ndarray,
        *,
        labels: Sequence[str | None] | None = None,
        anomaly_scores: Sequence[float | None] | None = None,
        last_jd: Sequence[float | None] | None = None,
        n_detections: Sequence[int] | None = None,
    ) -> None:
        """Add or replace vectors (an attribute left as None keeps a known object's value, as in VectorIndex)."""
        attrs = dict(zip(_ATTRS, (labels, anomaly_scores, last_jd, n_detections), strict=True))
        parts = self._split(object_ids, vectors, attrs)
        if parts:
            self._call([s for s, _ in parts], "upsert", [a for _, a in parts])

    def delete(self, object_ids: Iterable[str]) -> int:
        """Remove objects; returns how many were present."""
        per: dict[int, list[str]] = {}
        for o in dict.fromkeys(object_ids):
            per.setdefault(shard_of(o, self.n_shards), []).append(o)
        if not per:
            return 0
        return sum(self._call(list(per), "delete", [(v,) for v in per.values()]))

    # ----------------------------------------------------------------- reads
    def search(self, vector: np.ndarray, k: int = 10, **filters: Any) -> list[Neighbor]:
        """:meth:`VectorIndex.search` over all shards, with its filters (``indexing.filters``) and ``exclude_ids``."""
        return self.search_batch(np.asarray(vector, dtype=np.float32).reshape(1, -1), k, **filters)[0]

    def search_batch(self, vectors: np.ndarray, k: int = 10, **filters: Any) -> list[list[Neighbor]]:
        """:meth:`VectorIndex.search_batch`: each shard's top k under the filters, merged."""
        q = np.asarray(vectors, dtype=np.float32)
        normalize(q, self.dim)  # raises on a bad query before any shard is asked (the shards normalise it)
        q = q.reshape(-1, self.dim)
        filters = {key: v for key, v in filters.items() if v is not None}  # passed as given: each shard checks them
        excl = list(dict.fromkeys(filters.pop("exclude_ids", ()) or ()))
        if k <= 0:
            return [[] for _ in range(len(q))]
        args = []
        for s in range(self.n_shards):
            mine = [o for o in excl if shard_of(o, self.n_shards) == s]
            args.append((q, k, filters | ({"exclude_ids": mine} if mine else {})))
        serial = (
            self.backend == "inprocess"
            and self.parallel is None
            and not filters
            and self._shards[0].index.kind == "hnsw"
        )
        per_shard = self._call(range(self.n_shards), "search_batch", args, serial)
        return [merge([rows[i] for rows in per_shard], k) for i in range(len(q))]
