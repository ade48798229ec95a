"""A bounded reader of Avro object container files: work and memory grow with the bytes read.

An Avro container is a header (magic, a metadata map with the writer's schema and codec, a
16-byte sync marker) followed by blocks (record count, byte size, data, sync marker). A
generic decoder trusts the declared counts: a 177-byte file whose schema is
``array<null>`` may declare 10^8 items, each zero bytes long, and a deflate block of 1 MB may
inflate to 1 GB. This reader checks everything it can before it allocates:

* the header's metadata entries are at most ``MAX_HEADER_BYTES``; the codec is ``null`` or
  ``deflate``; the schema parses and **no array has items that may take zero bytes**
  (``null``, an empty record, ``fixed`` of size 0), so every declared array item costs at
  least one byte of input and a count can never outrun the data;
* each block's byte size is at most what is left of the input and at most ``max_block_bytes``
  once inflated (deflate output is capped while inflating, never after); the inflated
  total is at most ``max_inflated_bytes``; the declared record count times the smallest
  record the schema allows fits in the block; records never run past their block;
* the running record count is checked against ``max_records`` *before* a block is decoded
  (:class:`AvroLimitError`), so an over-long batch is refused after reading block headers.

Records are decoded one at a time (``fastavro.schemaless_reader``), so a caller that converts
each record as it comes holds one decoded record at a time.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, BinaryIO

import fastavro

__all__ = [
    "AlertFormatError",
    "AvroLimitError",
    "AvroLimits",
    "encode_long",
    "iter_container_records",
    "min_encoded_size",
    "raw_container",
]

MAGIC = b"Obj\x01"
SYNC_SIZE = 16
MAX_HEADER_BYTES = 1 << 20  # one metadata entry (the schema is the largest: a ZTF schema is ~30 KB)
MAX_HEADER_ENTRIES = 64
CODECS = ("null", "deflate")


class AlertFormatError(ValueError):
    """The input is not a readable alert packet (garbage, truncated, or an unknown layout)."""


class AvroLimitError(AlertFormatError):
    """The container is readable but over a limit (records, block or inflated size)."""


@dataclass(frozen=True, slots=True)
class AvroLimits:
    """Bounds on one container. ``None`` means no bound (trusted files)."""

    max_records: int | None = None
    max_block_bytes: int = 16 << 20
    max_inflated_bytes: int | None = None


# ---------------------------------------------------------------------- binary primitives
def _read_long(fh: BinaryIO, first: bytes | None = None) -> int:
    """A zig-zag varint long (at most 10 bytes)."""
    shift, acc = 0, 0
    for i in range(10):
        b = first if (i == 0 and first) else fh.read(1)
        if not b:
            raise AlertFormatError("truncated: the input ends inside a number")
        byte = b[0]
        acc |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (acc >> 1) ^ -(acc & 1)
        shift += 7
    raise AlertFormatError("a number longer than 10 bytes")


def _read_exact(fh: BinaryIO, n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise AlertFormatError(f"truncated: {what} declares {n} bytes, {len(data)} follow")
    return data


def _read_header(fh: BinaryIO) -> dict[str, bytes]:
    """The file metadata map (``avro.schema``, ``avro.codec``, ...)."""
    meta: dict[str, bytes] = {}
    while True:
        count = _read_long(fh)
        if count == 0:
            return meta
        if count < 0:  # a negative count is followed by the block's byte size
            count = -count
            _read_long(fh)
        if len(meta) + count > MAX_HEADER_ENTRIES:
            raise AlertFormatError(f"more than {MAX_HEADER_ENTRIES} header metadata entries")
        for _ in range(count):
            key_len = _read_long(fh)
            if not 0 <= key_len <= 256:
                raise AlertFormatError(f"header metadata key of {key_len} bytes")
            key = _read_exact(fh, key_len, "a header key").decode("utf-8", "replace")
            size = _read_long(fh)
            if not 0 <= size <= MAX_HEADER_BYTES:
                raise AlertFormatError(f"header entry {key!r} of {size} bytes (at most {MAX_HEADER_BYTES})")
            meta[key] = _read_exact(fh, size, f"header entry {key!r}")


def _inflate(data: bytes, cap: int) -> bytes:
    """Raw deflate (Avro's codec) with the output capped at ``cap`` bytes while inflating."""
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data, cap + 1)
    except zlib.error as exc:
        raise AlertFormatError(f"deflate block does not inflate: {exc}") from None
    if len(out) > cap or d.unconsumed_tail:
        raise AvroLimitError(f"a deflate block inflates past {cap} bytes")
    return out


# ---------------------------------------------------------------------- schema checks
_PRIMITIVE_MIN = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8, "bytes": 1, "string": 1}


def min_encoded_size(schema: Any) -> int:
    """The fewest bytes a datum of ``schema`` can take; raises AlertFormatError where an array's
    items may take zero bytes (a declared count would then cost nothing to send)."""
    named: dict[str, int] = {}

    def walk(s: Any, namespace: str | None, depth: int) -> int:
        if depth > 64:
            raise AlertFormatError("schema nested more than 64 levels deep")
        if isinstance(s, str):
            if s in _PRIMITIVE_MIN:
                return _PRIMITIVE_MIN[s]
            full = s if "." in s or namespace is None else f"{namespace}.{s}"
            if full in named or s in named:
                return named.get(full, named.get(s, 0))
            raise AlertFormatError(f"schema refers to an unknown type {s!r}")
        if isinstance(s, list):  # union: the branch index, then the smallest branch
            if not s:
                raise AlertFormatError("schema has an empty union")
            return 1 + min(walk(b, namespace, depth + 1) for b in s)
        if not isinstance(s, dict) or "type" not in s:
            raise AlertFormatError(f"not an Avro schema: {str(s)[:80]}")
        t = s["type"]
        if t in _PRIMITIVE_MIN or isinstance(t, (list, dict)):
            return walk(t, namespace, depth + 1)
        if t in ("record", "error", "enum", "fixed"):
            name = str(s.get("name", ""))
            ns = s.get("namespace", namespace)
            full = name if "." in name or not ns else f"{ns}.{name}"
            named[full] = named[name] = 0  # a lower bound while the type is being walked (recursion)
            if t == "enum":
                size = 1
            elif t == "fixed":
                size = int(s.get("size", 0))
            else:
                fields = s.get("fields")
                if not isinstance(fields, list):
                    raise AlertFormatError(f"record {name!r} without a fields list")
                ns_inner = full.rsplit(".", 1)[0] if "." in full else ns
                size = sum(walk(f.get("type") if isinstance(f, dict) else None, ns_inner, depth + 1) for f in fields)
            named[full] = named[name] = size
            return size
        if t == "array":
            if walk(s.get("items"), namespace, depth + 1) == 0:
                raise AlertFormatError("schema has an array whose items may take zero bytes; refused")
            return 1
        if t == "map":
            walk(s.get("values"), namespace, depth + 1)
            return 1  # every entry carries a key string, so at least one byte
        raise AlertFormatError(f"schema has an unknown type {t!r}")

    return walk(schema, None, 0)


# ---------------------------------------------------------------------- records
@lru_cache(maxsize=64)
def _checked_schema(raw: bytes) -> tuple[int, Any]:
    """(smallest record size, parsed schema) of a container's schema text. Cached by the text: a
    stream carries the same schema in every message, and parsing it cost more than the record."""
    try:
        schema = json.loads(raw)
        return min_encoded_size(schema), fastavro.parse_schema(schema)
    except AlertFormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, fastavro.schema.SchemaParseException) as exc:
        raise AlertFormatError(f"unreadable schema: {type(exc).__name__}: {exc}") from None


def iter_container_records(fh: BinaryIO, limits: AvroLimits | None = None) -> Iterator[Any]:
    """Records of an Avro object container, within ``limits`` (see the module doc)."""
    limits = limits or AvroLimits()
    if _read_exact(fh, 4, "the magic") != MAGIC:
        raise AlertFormatError("not an Avro object container file")
    meta = _read_header(fh)
    codec = meta.get("avro.codec", b"null").decode("ascii", "replace") or "null"
    if codec not in CODECS:
        raise AlertFormatError(f"codec {codec!r} is not supported; use one of {list(CODECS)}")
    if "avro.schema" not in meta:
        raise AlertFormatError("the header has no avro.schema")
    min_size, parsed = _checked_schema(meta["avro.schema"])
    sync = _read_exact(fh, SYNC_SIZE, "the sync marker")
    records, inflated = 0, 0
    while True:
        first = fh.read(1)
        if not first:
            return
        count, size = _read_long(fh, first), _read_long(fh)
        if count < 0 or size < 0:
            raise AlertFormatError(f"block with {count} records of {size} bytes")
        if limits.max_records is not None and records + count > limits.max_records:
            raise AvroLimitError(f"more than {limits.max_records} records (a block declares {count} after {records})")
        if size > limits.max_block_bytes:
            raise AvroLimitError(f"a block of {size} bytes; at most {limits.max_block_bytes}")
        data = _read_exact(fh, size, "a block")
        if _read_exact(fh, SYNC_SIZE, "a sync marker") != sync:
            raise AlertFormatError(f"bad sync marker after {records} records")
        if codec == "deflate":
            cap = limits.max_block_bytes
            if limits.max_inflated_bytes is not None:
                cap = min(cap, limits.max_inflated_bytes - inflated)
            data = _inflate(data, max(cap, 0))
        inflated += len(data)
        if limits.max_inflated_bytes is not None and inflated > limits.max_inflated_bytes:
            raise AvroLimitError(f"the blocks hold more than {limits.max_inflated_bytes} bytes")
        if count * min_size > len(data):
            raise AlertFormatError(f"a block declares {count} records in {len(data)} bytes")
        buf = io.BytesIO(data)
        for _ in range(count):
            try:
                record = fastavro.schemaless_reader(buf, parsed)
            except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on corrupt data
                raise AlertFormatError(f"corrupt record {records}: {type(exc).__name__}: {exc}") from None
            records += 1
            yield record
        if buf.tell() != len(data):
            raise AlertFormatError(f"{len(data) - buf.tell()} bytes left over in a block after {records} records")


# ---------------------------------------------------------------------- raw writing
def encode_long(n: int) -> bytes:
    """Avro's zig-zag varint of ``n``."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def raw_container(schema: Any, blocks: list[tuple[int, bytes]], codec: str = "null") -> bytes:
    """A container of hand-made blocks, ``(declared record count, block bytes)``, written as given
    (deflate-compressed when ``codec`` is deflate): hostile input for tests and benchmarks."""
    sync = bytes(range(SYNC_SIZE))

    def text(b: bytes) -> bytes:
        return encode_long(len(b)) + b

    head = MAGIC + encode_long(2) + text(b"avro.schema") + text(json.dumps(schema).encode())
    head += text(b"avro.codec") + text(codec.encode()) + encode_long(0) + sync
    out = [head]
    for count, data in blocks:
        if codec == "deflate":
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            data = c.compress(data) + c.flush()
        out.append(encode_long(count) + encode_long(len(data)) + data + sync)
    return b"".join(out)
