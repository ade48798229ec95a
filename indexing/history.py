"""The stored photometry of one object, column by column: one SQL row per object, not per detection.

A light curve is read and written whole (ingest merges the posted points into the stored history
under the object's lock and writes the result back), so storing it as one binary value of
parallel arrays costs one row per object instead of one row, an index entry and a JSON text per
detection. The encoding is versioned and self-describing (band names and metadata field names
travel with the arrays), so a reader never depends on the writer's constants:

    b"RTH1" | uint32 header length | JSON header | arrays, little-endian, in header order
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = ["History", "HistoryFormatError"]

MAGIC = b"RTH1"
_HEAD = struct.Struct("<4sI")


class HistoryFormatError(ValueError):
    """A stored history value that this reader cannot decode."""


def _empty(dtype: str) -> np.ndarray:
    return np.empty(0, dtype=dtype)


@dataclass(slots=True, eq=False)
class History:
    """Detections and upper limits of one object. ``band`` / ``ul_band`` index ``bands``;
    ``meta`` is (n, len(meta_fields)) float32 with NaN where a field is missing."""

    jd: np.ndarray
    band: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    bands: tuple[str, ...]
    meta: np.ndarray | None = None
    meta_fields: tuple[str, ...] = ()
    alert_id: np.ndarray | None = None
    ul_jd: np.ndarray = field(default_factory=lambda: _empty("<f8"))
    ul_band: np.ndarray = field(default_factory=lambda: _empty("u1"))
    ul_mag: np.ndarray = field(default_factory=lambda: _empty("<f8"))

    def __len__(self) -> int:
        return len(self.jd)

    @property
    def first_jd(self) -> float | None:
        return float(self.jd.min()) if len(self.jd) else None

    @property
    def last_jd(self) -> float | None:
        return float(self.jd.max()) if len(self.jd) else None

    # ------------------------------------------------------------------ bytes
    def to_bytes(self) -> bytes:
        n, m = len(self.jd), len(self.ul_jd)
        has_meta = self.meta is not None and len(self.meta_fields) > 0
        header = _header(n, m, self.bands, self.meta_fields if has_meta else (), self.alert_id is not None)
        parts = [
            _HEAD.pack(MAGIC, len(header)),
            header,
            np.ascontiguousarray(self.jd, "<f8").tobytes(),
            np.ascontiguousarray(self.band, "u1").tobytes(),
            np.ascontiguousarray(self.flux, "<f8").tobytes(),
            np.ascontiguousarray(self.flux_err, "<f8").tobytes(),
        ]
        if has_meta:
            parts.append(np.ascontiguousarray(self.meta, "<f4").tobytes())
        if self.alert_id is not None:
            parts.append(np.ascontiguousarray(self.alert_id, "<i8").tobytes())
        parts += [
            np.ascontiguousarray(self.ul_jd, "<f8").tobytes(),
            np.ascontiguousarray(self.ul_band, "u1").tobytes(),
            np.ascontiguousarray(self.ul_mag, "<f8").tobytes(),
        ]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> History:
        try:
            magic, size = _HEAD.unpack_from(data)
            if magic != MAGIC:
                raise HistoryFormatError(f"unknown history format {magic!r}")
            h = json.loads(data[_HEAD.size : _HEAD.size + size])
            n, m, k = int(h["n"]), int(h["m"]), len(h["meta"])
            reader = _Reader(data, _HEAD.size + size)
            jd, band = reader.take("<f8", n), reader.take("u1", n)
            flux, flux_err = reader.take("<f8", n), reader.take("<f8", n)
            meta = reader.take("<f4", n * k).reshape(n, k) if k else None
            alert_id = reader.take("<i8", n) if h["alert_id"] else None
            ul_jd, ul_band, ul_mag = reader.take("<f8", m), reader.take("u1", m), reader.take("<f8", m)
            if reader.offset != len(data):
                raise HistoryFormatError(f"{len(data) - reader.offset} trailing bytes")
        except (struct.error, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, HistoryFormatError):
                raise
            raise HistoryFormatError(f"corrupt history: {exc}") from exc
        return cls(
            jd, band, flux, flux_err, tuple(h["bands"]), meta, tuple(h["meta"]), alert_id, ul_jd, ul_band, ul_mag
        )


@lru_cache(maxsize=256)
def _header(n: int, m: int, bands: tuple[str, ...], meta: tuple[str, ...], alert_id: bool) -> bytes:
    return json.dumps(
        {"n": n, "m": m, "bands": list(bands), "meta": list(meta), "alert_id": alert_id}, separators=(",", ":")
    ).encode()


class _Reader:
    def __init__(self, data: bytes, offset: int) -> None:
        self.data, self.offset = data, offset

    def take(self, dtype: str, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        end = self.offset + dt.itemsize * count
        if count < 0 or end > len(self.data):
            raise HistoryFormatError("truncated history")
        out = np.frombuffer(self.data, dtype=dt, count=count, offset=self.offset).astype(dt.newbyteorder("="))
        self.offset = end
        return out
