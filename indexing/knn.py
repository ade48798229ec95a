"""Exact inner-product neighbours of many queries in a reference set (FAISS flat), as
``encoder.rarity.Knn`` takes them: the catalogue ranking's isolation, measured in bulk."""

from __future__ import annotations

import faiss
import numpy as np


def flat_knn(queries: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, reference rows), each (n, k), best first; k is capped at the reference's size."""
    index = faiss.IndexFlatIP(reference.shape[1])
    index.add(np.ascontiguousarray(reference, dtype=np.float32))
    sims, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(reference)))
    return sims, rows.astype(np.int64)
