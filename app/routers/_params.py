"""Query parameters that several routes share, declared once (their checks and their docs)."""

from typing import Annotated

from fastapi import Query

from app.schemas import FilterParams

PageSize = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]
#: every filter of indexing.filters.FILTERS, as query parameters
Filters = Annotated[FilterParams, Query()]
