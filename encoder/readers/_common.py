"""Helpers shared by the alert readers: input sources, Avro decoding with clear errors,
stamp checks, synthetic ids and merging per object."""

from __future__ import annotations

import contextlib
import io
import math
import zlib
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, repeat
from pathlib import Path
from typing import Any, BinaryIO

import fastavro
import numpy as np

from encoder.lightcurve import MAG_RANGE, MISSING_SENTINELS, NJY_ZERO_POINT, LightCurve, LightCurveError
from encoder.taxonomy import normalize_label

from .avro_container import AlertFormatError, AvroLimits, iter_container_records

Source = str | Path | bytes | bytearray | memoryview | BinaryIO

#: PLAsTiCC / SNANA FLUXCAL has AB zero point 27.5: nJy = FLUXCAL * 10 ** (-0.4 * (27.5 - 31.4)).
FLUXCAL_ZERO_POINT = 27.5
FLUXCAL_TO_NJY = 10.0 ** (-0.4 * (FLUXCAL_ZERO_POINT - NJY_ZERO_POINT))

#: Largest decompressed stamp accepted (a ZTF stamp is 20 KiB, an LSST one 34 KiB).
MAX_STAMP_DECOMPRESSED = 8 * 1024 * 1024
_FITS_BLOCK = 2880
_FITS_MAGIC = b"SIMPLE  ="
_AVRO_MAGIC = b"Obj\x01"


# ---------------------------------------------------------------------- sources
@contextlib.contextmanager
def open_source(source: Source) -> Iterator[BinaryIO]:
    """A binary file object for a path, raw bytes or an open binary file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)):
        with open(source, "rb") as fh:
            yield fh
    elif hasattr(source, "read"):
        yield source
    else:
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(source).__name__}")


def iter_avro_records(source: Source, limits: AvroLimits | None = None) -> Iterator[dict[str, Any]]:
    """Records of an Avro object container file, decoded within ``limits``
    (:mod:`encoder.readers.avro_container`); unreadable input raises AlertFormatError."""
    with open_source(source) as fh:
        head = fh.read(4)
        if head != _AVRO_MAGIC:
            if not head:
                raise AlertFormatError("empty input: expected an Avro object container file")
            raise AlertFormatError(
                f"not an Avro object container file (starts with {head!r}, expected {_AVRO_MAGIC!r}); "
                "send alert packets as Avro container files (Content-Type: avro/binary)"
            )
        stream = io.BytesIO(head + fh.read()) if not fh.seekable() else fh
        if stream is fh:
            fh.seek(-4, io.SEEK_CUR)
        for i, record in enumerate(iter_container_records(stream, limits)):
            if not isinstance(record, dict):
                raise AlertFormatError(f"record {i} is a {type(record).__name__}, not an alert record")
            yield record


def write_avro(dest: str | Path | BinaryIO, schema: dict, records: Iterable[dict], codec: str = "null") -> None:
    parsed = fastavro.parse_schema(schema)
    if isinstance(dest, (str, Path)):
        with open(dest, "wb") as fh:
            fastavro.writer(fh, parsed, records, codec=codec)
    else:
        fastavro.writer(dest, parsed, records, codec=codec)


# ---------------------------------------------------------------------- values
def column(rows: list[dict[str, Any]], name: str) -> np.ndarray:
    """One field of many records as float64; None, missing keys and non-numbers as NaN."""
    values = [r.get(name) for r in rows]
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        out = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            if v is not None:
                with contextlib.suppress(TypeError, ValueError):
                    out[i] = float(v)
        return out


def meta_matrix(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> np.ndarray:
    """(len(rows), len(fields)) float32 matrix of record fields, NaN where missing."""
    try:  # the fast path, when every value present is a number (JSON light curves: nulls excepted)
        flat = chain.from_iterable(map(r.get, fields, repeat(math.nan)) for r in rows)
        arr = np.fromiter(flat, dtype=np.float64, count=len(rows) * len(fields)).reshape(len(rows), len(fields))
    except (TypeError, ValueError):  # None, strings ...: NaN where not a number
        arr = np.column_stack([column(rows, f) for f in fields]) if rows else np.empty((0, len(fields)))
    with np.errstate(over="ignore"):  # beyond float32: inf, which LightCurve.build turns into NaN
        return arr.astype(np.float32)


def valid_limit(mag: np.ndarray) -> np.ndarray:
    """Limiting magnitudes that carry information (finite, in range, no sentinel)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(mag) & (mag >= MAG_RANGE[0]) & (mag <= MAG_RANGE[1]) & ~np.isin(mag, MISSING_SENTINELS)


def int_id(value: Any) -> int | None:
    """An integer id, or None (null, NaN, non-numeric); ``value`` is anything a decoder produced."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if np.isfinite(f) else None


def synthetic_ids(jd: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Stable negative ids for detections that have none: from (jd to 1e-6 day, band)."""
    jd = np.nan_to_num(np.asarray(jd, dtype=np.float64))
    return -(np.round(jd * 1e6).astype(np.int64) * 8 + np.asarray(band, dtype=np.int64) + 1)


def clean_stamp(data: object) -> bytes | None:
    """Stamp bytes if they are FITS or gzipped FITS, else None (missing or corrupt).

    Checked cheaply, as this runs on every alert: a plain stamp must start with a FITS
    header and fill whole 2880-byte blocks; a gzipped one must decompress to a FITS
    header and its gzip trailer must give a whole number of FITS blocks (which catches
    truncation and garbage; a bit flip inside the deflate stream is left to the decoder).
    """
    if isinstance(data, dict):
        data = data.get("stampData")
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        return None
    data = bytes(data)
    if data[:2] == b"\x1f\x8b":
        if len(data) < 18:
            return None
        size = int.from_bytes(data[-4:], "little")  # ISIZE: uncompressed length mod 2**32
        if size == 0 or size % _FITS_BLOCK or size > MAX_STAMP_DECOMPRESSED:
            return None
        try:
            head = zlib.decompressobj(wbits=31).decompress(data, len(_FITS_MAGIC))
        except zlib.error:
            return None
        return data if head == _FITS_MAGIC else None
    if data[: len(_FITS_MAGIC)] != _FITS_MAGIC or len(data) % _FITS_BLOCK:
        return None
    return data


def packet_label(record: dict[str, Any]) -> str | None:
    """A fine class from a broker's TNS crossmatch column (Fink: ``tns`` or ``tnsclass``), if any."""
    for key in ("tns", "tnsclass"):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            label = normalize_label(value.replace("(TNS)", "").strip())
            if label is not None:
                return label
    return None


def with_context(exc: LightCurveError, prefix: str) -> LightCurveError:
    """The same error with its field prefixed (``alerts[3].detections``)."""
    return LightCurveError(f"{prefix}.{exc.field}", exc.message)


def merge_by_object(lcs: Iterable[LightCurve]) -> list[LightCurve]:
    """One light curve per (survey, object_id), in first-seen order; newer packets win."""
    groups: dict[tuple[str, str], list[LightCurve]] = {}
    for lc in lcs:
        groups.setdefault((lc.survey, lc.object_id), []).append(lc)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        group.sort(key=lambda lc: float(lc.time[-1]))  # stable: ties keep input order
        merged = group[0]
        for lc in group[1:]:
            merged = merged.merge(lc)
        out.append(merged)
    return out


def coordinates(row: dict[str, Any]) -> tuple[float | None, float | None]:
    """(ra, dec) of a packet row in degrees, or (None, None) when missing or impossible."""
    raw_ra, raw_dec = row.get("ra"), row.get("dec")
    if raw_ra is None or raw_dec is None:
        return None, None
    try:
        ra, dec = float(raw_ra), float(raw_dec)
    except (TypeError, ValueError):
        return None, None
    if not (np.isfinite(ra) and np.isfinite(dec) and -90.0 <= dec <= 90.0):
        return None, None
    ra %= 360.0
    return (0.0 if ra >= 360.0 else ra), dec  # -1e-20 % 360 is 360.0


def iter_packets(
    source: Source, convert: Callable[[dict[str, Any]], LightCurve], limits: AvroLimits | None = None
) -> Iterator[LightCurve]:
    """``convert`` applied to every record of an Avro container; errors say which record."""
    for i, record in enumerate(iter_avro_records(source, limits)):
        try:
            yield convert(record)
        except AlertFormatError as exc:
            raise AlertFormatError(f"record {i}: {exc}") from None
        except LightCurveError as exc:
            raise with_context(exc, f"alerts[{i}]") from None
