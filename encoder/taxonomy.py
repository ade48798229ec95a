"""Class names: fine types, the coarse classes of the seed design, and a normaliser for
the labels that real catalogues use (TNS, BTS, SIMBAD, ALeRCE, PLAsTiCC)."""

from __future__ import annotations

import re

#: Fine types. The last five are rare or anomalous in a transient stream.
FINE_CLASSES: tuple[str, ...] = (
    "SNIa", "SNIbc", "SNII", "SNIIn", "SLSN", "TDE", "AGN", "CV",
    "KN", "Microlensing", "Flare", "PISN", "Periodic",
)  # fmt: skip
#: Coarse classes: the seed's five first, then SLSN and everything else.
COARSE_CLASSES: tuple[str, ...] = ("SNIa", "SNcc", "CV", "AGN", "TDE", "SLSN", "Other")
SEED_COARSE_CLASSES: tuple[str, ...] = COARSE_CLASSES[:5]
#: Classes that an anomaly detector should rank above common supernovae.
RARE_FINE_CLASSES: frozenset[str] = frozenset({"SLSN", "TDE", "CV", "KN", "Microlensing", "Flare", "PISN", "Other"})

FINE_TO_COARSE: dict[str, str] = {
    "SNIa": "SNIa",
    "SNIbc": "SNcc",
    "SNII": "SNcc",
    "SNIIn": "SNcc",
    "SLSN": "SLSN",
    "TDE": "TDE",
    "AGN": "AGN",
    "CV": "CV",
    "KN": "Other",
    "Microlensing": "Other",
    "Flare": "Other",
    "PISN": "Other",
    "Periodic": "Other",
}

# Ordered (pattern, fine class) rules, matched against a lower-cased label with spaces removed.
_RULES: tuple[tuple[str, str | None], ...] = (
    (r"^slsn", "SLSN"),
    (r"^(sn)?ia|^snia|^sn1a|ia-?(91t|91bg|pec|csm|x)|^sniax", "SNIa"),
    (r"^(sn)?ii?n$|^sniin|^(sn)?ibn|^(sn)?icn", "SNIIn"),
    (r"^(sn)?i[bc]|^snibc|^sn(ib|ic)|ca-rich", "SNIbc"),
    (r"^(sn)?ii|^snii", "SNII"),
    (r"^tde", "TDE"),
    (r"^kn$|kilonova", "KN"),
    (r"mulens|microlens", "Microlensing"),
    (r"m-?dwarf|flare", "Flare"),
    (r"pisn|pair-?instab", "PISN"),
    (r"^(agn|qso|blazar|bllac|seyfert|liner|blazar)", "AGN"),
    (r"^(cv|nova|cataclyv|candidate_cv|dwarfnova|dn$)", "CV"),
    (r"^(eb|ea|rrl|rrlyr|ceph|dsct|lpv|mira|ellipvar|longperiodv|eb\*)", "Periodic"),
)


def normalize_label(label: str | None) -> str | None:
    """A catalogue label as a fine class, or None when it is no class we model."""
    if not label:
        return None
    key = re.sub(r"[\s_]+", "", label.strip().lower())
    if key in {"other", "ilrt", "lbv"}:
        return None
    for pattern, fine in _RULES:
        if re.search(pattern, key):
            return fine
    return None


def coarse_of(fine: str | None) -> str | None:
    return None if fine is None else FINE_TO_COARSE.get(fine)
