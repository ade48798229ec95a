"""Query parameters that several routes share, declared once (their checks and their docs)."""

from typing import Annotated

from fastapi import HTTPException, Path, Query

from app.schemas import FilterParams

PageSize = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]
#: every filter of indexing.filters.FILTERS, as query parameters
Filters = Annotated[FilterParams, Query()]
# no control characters (as at ingest; PostgreSQL rejects NUL in text, which was a 500)
ObjectId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f]+$",
        examples=["synztf2026_0000017"],
        description="an object id as stored (1-128 characters, no control characters)",
    ),
]


def unknown_object(object_id: str) -> HTTPException:
    return HTTPException(404, f"unknown object {object_id!r}")
