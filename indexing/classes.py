"""The class attribute of an indexed fingerprint: one string holding the coarse and the fine class.

The index filters on one class attribute per vector. Keyed ``"SNcc/SNII"`` (``"SNcc"`` when the model
has no fine class for it), a filter on either level becomes a set of keys:
``ClassFilter(coarse={"SNcc"}).keys(index.class_names)`` or ``ClassFilter(fine={"SNII"})...``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import or_

SEPARATOR = "/"


def class_key(coarse: str | None, fine: str | None) -> str | None:
    if coarse is None:
        return None
    return coarse if fine is None else f"{coarse}{SEPARATOR}{fine}"


def coarse_part(key: str | None) -> str | None:
    return None if key is None else key.split(SEPARATOR, 1)[0]


def fine_part(key: str | None) -> str | None:
    if key is None:
        return None
    return key.partition(SEPARATOR)[2] or None


@dataclass(frozen=True)
class ClassFilter:
    """A class filter: objects whose coarse class is in ``coarse`` or whose fine class is in ``fine``."""

    coarse: frozenset[str] = frozenset()
    fine: frozenset[str] = frozenset()

    @classmethod
    def of(cls, value: ClassFilter | str | Iterable[str]) -> ClassFilter:
        """A filter as given: a ClassFilter, or names that are matched as the coarse class."""
        if isinstance(value, ClassFilter):
            return value
        return cls(frozenset([value] if isinstance(value, str) else value))

    def keys(self, keys: Iterable[str]) -> list[str]:
        """The class keys (of an index) that pass."""
        return [k for k in keys if coarse_part(k) in self.coarse or fine_part(k) in self.fine]

    def sql(self, coarse_column, fine_column):
        """The SQL condition on the stored coarse and fine label columns."""
        return or_(coarse_column.in_(sorted(self.coarse)), fine_column.in_(sorted(self.fine)))
