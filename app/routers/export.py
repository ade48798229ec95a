"""GET /v1/export/fingerprints: every fingerprint of the served version as an Arrow IPC stream."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from app.catalog import Catalog
from app.deps import CatalogDep, require_read_key
from app.routers._docs import errors
from indexing.classes import coarse_part, fine_part

router = APIRouter(prefix="/v1", tags=["export"])
ARROW_STREAM = "application/vnd.apache.arrow.stream"


class _Chunks:
    """A write-only file whose bytes are handed out as they are written."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def arrow_batches(catalog: Catalog, batch_size: int = 50_000) -> Iterator[bytes]:
    """The stream's bytes: one record batch per ``batch_size`` fingerprints, from one SQL snapshot."""
    dim = catalog.encoder.dim
    schema = pa.schema(
        [
            ("object_id", pa.string()),
            ("fingerprint", pa.list_(pa.float32(), dim)),
            ("label", pa.string()),
            ("fine_label", pa.string()),
            ("anomaly_score", pa.float64()),
            ("last_jd", pa.float64()),
            ("n_detections", pa.int64()),
        ],
        metadata={"model": catalog.version},
    )
    sink = _Chunks()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), schema) as writer:
        yield sink.take()
        with catalog.store.scan_fingerprints(catalog.version, batch_size) as scan:
            for b in scan:
                vectors = pa.FixedSizeListArray.from_arrays(pa.array(b.vectors.reshape(-1), pa.float32()), dim)
                writer.write_batch(
                    pa.record_batch(
                        [
                            pa.array(b.object_ids, pa.string()),
                            vectors,
                            pa.array(map(coarse_part, b.labels), pa.string()),
                            pa.array(map(fine_part, b.labels), pa.string()),
                            pa.array(b.anomaly_score),
                            pa.array(b.last_jd),
                            pa.array(b.n_detections),
                        ],
                        schema=schema,
                    )
                )
                yield sink.take()
    yield sink.take()


@router.get(
    "/export/fingerprints",
    summary="Export fingerprints",
    response_class=StreamingResponse,
    dependencies=[Depends(require_read_key)],
    responses={
        **errors(401),
        200: {
            "content": {ARROW_STREAM: {}},
            "description": "Arrow IPC stream: object_id, fingerprint (float32 x dim), label, anomaly_score, last_jd, "
            "n_detections; the model version in the schema metadata",
        },
    },
)
def export_fingerprints(catalog: CatalogDep) -> StreamingResponse:
    """Every fingerprint of the served model version with its filter attributes, streamed (read it with
    `pyarrow.ipc.open_stream`, or `pandas.read_feather`-style tools that take Arrow streams)."""
    return StreamingResponse(
        arrow_batches(catalog),
        media_type=ARROW_STREAM,
        headers={"Content-Disposition": f'attachment; filename="{catalog.version}.arrows"'},
    )
