"""The class attribute of an indexed fingerprint: one string holding the coarse and the fine class.

The index filters on one class attribute per vector. Keyed ``"SNcc/SNII"`` (``"SNcc"`` when the model
has no fine class for it), a filter on either level becomes a set of keys:
``keys_matching(index.class_names, coarse={"SNcc"})`` or ``fine={"SNII"}``.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def keys_matching(keys: Iterable[str], coarse: Iterable[str] = (), fine: Iterable[str] = ()) -> list[str]:
    """The keys whose coarse class is in ``coarse`` or whose fine class is in ``fine``."""
    coarse, fine = set(coarse), set(fine)
    return [k for k in keys if coarse_part(k) in coarse or fine_part(k) in fine]
