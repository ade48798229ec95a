"""Query parameters that several routes share, declared once (their checks and their docs)."""

from typing import Annotated

from fastapi import Query

from app.schemas import CLASS_HELP

PageSize = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]
ClassName = Annotated[str | None, Query(alias="class", max_length=64, description=f"only this predicted class: {CLASS_HELP}")]
Since = Annotated[float | None, Query(description="last detection at or after this JD")]
MinDetections = Annotated[int | None, Query(ge=0, le=100_000, description="at least this many detections")]
