"""Alert packets as Kafka delivers them: one message, one alert.

* **ZTF** (and brokers that forward its packets): the message is an Avro object container file
  with its writer schema (``Obj\\x01`` ...), read by :func:`encoder.readers.read_alert_avro`.
* **LSST** (Rubin's alert stream): Confluent wire format, a zero byte, a 4-byte big-endian schema
  id, then one schemaless Avro record; the schema comes from a schema registry
  (``GET {url}/schemas/ids/{id}``) or from a local folder holding ``<id>.avsc`` files.

Schemas are checked before use as container schemas are (an array whose items may take zero
bytes is refused), so a message costs work in proportion to its size.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import fastavro

from encoder.lightcurve import LightCurve
from encoder.readers import packet_to_lightcurve, read_alert_avro
from encoder.readers.avro_container import MAGIC, AlertFormatError, AvroLimits, min_encoded_size

__all__ = ["SchemaSource", "decode_message", "wire_message"]

WIRE_MAGIC = 0


class SchemaSource:
    """Writer schemas by id, from a schema registry URL or a folder of ``<id>.avsc`` files; cached."""

    def __init__(self, registry_url: str | None = None, folder: str | Path | None = None, *, timeout: float = 10.0):
        if registry_url is None and folder is None:
            raise ValueError("give a schema registry URL or a folder of <id>.avsc files")
        self.registry_url = registry_url.rstrip("/") if registry_url else None
        self.folder = Path(folder) if folder is not None else None
        self.timeout = timeout
        self._cache: dict[int, Any] = {}
        self._lock = threading.Lock()

    def get(self, schema_id: int) -> Any:
        """The parsed schema of ``schema_id``; AlertFormatError when it is unknown or unusable."""
        with self._lock:
            if schema_id not in self._cache:
                self._cache[schema_id] = self._parse(self._fetch(schema_id), schema_id)
            return self._cache[schema_id]

    def _fetch(self, schema_id: int) -> Any:
        if self.folder is not None:
            path = self.folder / f"{schema_id}.avsc"
            if path.is_file():
                return json.loads(path.read_text())
            if self.registry_url is None:
                raise AlertFormatError(f"schema id {schema_id}: no {path}")
        url = f"{self.registry_url}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as r:  # noqa: S310 - an operator's URL
                return json.loads(json.loads(r.read())["schema"])
        except Exception as exc:  # HTTP errors, timeouts, a body that is not a registry answer
            raise AlertFormatError(f"schema id {schema_id}: not found at {url} ({exc})") from exc

    @staticmethod
    def _parse(schema: Any, schema_id: int) -> Any:
        try:
            min_encoded_size(schema)
            return fastavro.parse_schema(schema)
        except AlertFormatError as exc:
            raise AlertFormatError(f"schema id {schema_id}: {exc}") from None
        except Exception as exc:  # fastavro's SchemaParseException and friends
            raise AlertFormatError(f"schema id {schema_id}: not a usable Avro schema ({exc})") from None


def decode_message(
    value: bytes | None, schemas: SchemaSource | None = None, limits: AvroLimits | None = None
) -> list[LightCurve]:
    """The light curves of one Kafka message (an Avro container, or the Confluent wire format).
    Raises AlertFormatError (or LightCurveError) naming what is wrong."""
    if not value:
        raise AlertFormatError("empty message")
    if value[:4] == MAGIC:
        return read_alert_avro(value, limits)
    if value[0] == WIRE_MAGIC and len(value) > 5:
        if schemas is None:
            raise AlertFormatError("a Confluent wire-format message, but no schema registry or schema folder is set")
        schema = schemas.get(int.from_bytes(value[1:5], "big"))
        buf = io.BytesIO(value[5:])
        try:
            record = fastavro.schemaless_reader(buf, schema)
        except Exception as exc:  # truncated or garbage data: EOFError, ValueError, ...
            raise AlertFormatError(f"undecodable wire-format record: {type(exc).__name__}: {exc}") from None
        if buf.tell() != len(value) - 5:
            raise AlertFormatError(f"{len(value) - 5 - buf.tell()} bytes after the record")
        if not isinstance(record, dict):
            raise AlertFormatError("the record is not an alert packet")
        return [packet_to_lightcurve(record)]
    raise AlertFormatError(f"neither an Avro container nor Confluent wire format (first bytes {value[:5]!r})")


def wire_message(record: dict[str, Any], schema: Any, schema_id: int) -> bytes:
    """One record in the Confluent wire format (what LSST's stream carries; tests, benchmarks)."""
    buf = io.BytesIO()
    buf.write(bytes([WIRE_MAGIC]) + int(schema_id).to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()
