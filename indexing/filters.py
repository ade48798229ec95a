"""The filters of neighbour searches and listings, declared once.

Each :class:`Filter` names one idea once: the same name is the query parameter and the body field of
the API (``app.routers``), the keyword of :meth:`indexing.vector_index.VectorIndex.search` and of the
store's listings (:meth:`indexing.store.Store.list_objects`, :meth:`~indexing.store.Store.anomalies`).
From the declaration come the index's mask (:func:`index_mask`), the SQL conditions
(:func:`sql_conditions`) and the API's parameters with their documentation.

A bound is inclusive, and an object without a value fails it. ``classes`` is a
:class:`~indexing.classes.ClassFilter` inside the index and the store (coarse and fine names apart);
the API takes names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexing.classes import ClassFilter


@dataclass(frozen=True)
class Filter:
    name: str
    attribute: str  # what it filters on: "class", "anomaly_score", "last_jd", "n_detections"
    bound: str  # "in" (one of), "min" (>=), "max" (<=)
    type: type
    description: str
    ge: float | None = None  # the range a value must be in (the API checks it)
    le: float | None = None
    alias: str | None = None  # its name as a query parameter where the name is not one a person writes


CLASS_HELP = (
    "a coarse class (SNIa, SNcc, CV, ...) or a fine one (SNII, SNIIn, KN, ...); a name that is both "
    "is the coarse class; GET /v1/models lists them"
)

# a table, one filter a row (the formatter would spread the two long rows over eight lines each)
FILTERS: tuple[Filter, ...] = (
    Filter("classes", "class", "in", list, f"only these predicted classes (repeat for several): {CLASS_HELP}",
           alias="class"),
    Filter("anomaly_min", "anomaly_score", "min", float, "only anomaly scores at least this", ge=0, le=1),
    Filter("anomaly_max", "anomaly_score", "max", float, "only anomaly scores at most this", ge=0, le=1),
    Filter("since", "last_jd", "min", float, "only objects last detected at or after this JD"),
    Filter("until", "last_jd", "max", float, "only objects last detected at or before this JD"),
    Filter("min_detections", "n_detections", "min", int, "only objects with at least this many detections",
           ge=0, le=100_000),
)  # fmt: skip
BY_NAME: dict[str, Filter] = {f.name: f for f in FILTERS}


def active(filters: Mapping[str, Any]) -> dict[str, Any]:
    """The filters that are set (``None`` is unset); TypeError for a name that is no filter."""
    unknown = set(filters) - BY_NAME.keys()
    if unknown:
        raise TypeError(f"unknown filters {sorted(unknown)}; the filters are {list(BY_NAME)}")
    return {k: v for k, v in filters.items() if v is not None}


def index_mask(
    filters: Mapping[str, Any],
    n: int,
    column: Callable[[str], np.ndarray],
    classes: Callable[[ClassFilter], np.ndarray],
) -> np.ndarray:
    """The rows (of ``n``) that pass every filter; ``column(attribute)`` gives an attribute's values
    (NaN: none), ``classes(class_filter)`` the rows whose class passes."""
    m = np.ones(n, dtype=bool)
    with np.errstate(invalid="ignore"):  # NaN compares False: no value fails a bound
        for name, value in active(filters).items():
            f = BY_NAME[name]
            if f.bound == "in":
                m &= classes(ClassFilter.of(value))
            elif f.bound == "min":
                m &= column(f.attribute)[:n] >= value
            else:
                m &= column(f.attribute)[:n] <= value
    return m


def sql_conditions(filters: Mapping[str, Any], columns: Mapping[str, Any]) -> list:
    """SQLAlchemy conditions for the filters; ``columns``: attribute -> column, and for ``class``
    the pair (coarse label column, fine label column)."""
    out = []
    for name, value in active(filters).items():
        f = BY_NAME[name]
        if f.bound == "in":
            out.append(ClassFilter.of(value).sql(*columns["class"]))
        elif f.bound == "min":
            out.append(columns[f.attribute] >= value)
        else:
            out.append(columns[f.attribute] <= value)
    return out
