"""Readers for real alert formats: ZTF and LSST Avro packets, Fink / project parquet
tables and PLAsTiCC-style flux tables, all producing :class:`~encoder.lightcurve.LightCurve`.

:func:`read_alert_avro` is the entry point for ``Content-Type: avro/binary`` bodies: it
decodes an Avro object container file and dispatches each record on its fields
(``candidate``: ZTF, ``diaSource``: LSST). Unreadable input raises
:class:`AlertFormatError` (a ValueError); a packet whose photometry is unusable raises
:class:`~encoder.lightcurve.LightCurveError` naming ``alerts[i].<field>``.
"""

from __future__ import annotations

from collections.abc import Iterator

from encoder.lightcurve import LightCurve

from ._common import (
    FLUXCAL_TO_NJY,
    AlertFormatError,
    Source,
    clean_stamp,
    iter_packets,
    merge_by_object,
    meta_matrix,
)
from .avro_container import AvroLimitError, AvroLimits
from .lightcurve_parquet import read_lightcurves_parquet, write_lightcurves_parquet
from .lsst_avro import iter_lsst_alerts, lsst_packet_to_lightcurve, read_lsst_avro, write_lsst_avro
from .parquet import read_alerce_parquet, read_bts_coarse, read_bts_parquet, read_fink_parquet, read_ztf_alerts_parquet
from .plasticc import lightcurve_from_flux_table, read_plasticc_parquet
from .ztf_avro import iter_ztf_alerts, read_ztf_avro, write_ztf_avro, ztf_packet_to_lightcurve

__all__ = [
    "read_lightcurves_parquet",
    "write_lightcurves_parquet",
    "FLUXCAL_TO_NJY",
    "AlertFormatError",
    "AvroLimitError",
    "AvroLimits",
    "clean_stamp",
    "iter_alerts",
    "iter_lsst_alerts",
    "iter_ztf_alerts",
    "lightcurve_from_flux_table",
    "lsst_packet_to_lightcurve",
    "meta_matrix",
    "packet_to_lightcurve",
    "read_alerce_parquet",
    "read_alert_avro",
    "read_bts_coarse",
    "read_bts_parquet",
    "read_fink_parquet",
    "read_lsst_avro",
    "read_plasticc_parquet",
    "read_ztf_alerts_parquet",
    "read_ztf_avro",
    "write_lsst_avro",
    "write_ztf_avro",
    "ztf_packet_to_lightcurve",
]


def packet_to_lightcurve(record: dict) -> LightCurve:
    """A decoded ZTF or LSST alert record as a LightCurve, chosen by its fields."""
    if "candidate" in record:
        return ztf_packet_to_lightcurve(record)
    if "diaSource" in record:
        return lsst_packet_to_lightcurve(record)
    keys = ", ".join(sorted(record)[:8])
    raise AlertFormatError(f"neither a ZTF ('candidate') nor an LSST ('diaSource') alert packet; fields: {keys}")


def iter_alerts(source: Source, limits: AvroLimits | None = None) -> Iterator[LightCurve]:
    """One LightCurve per ZTF or LSST packet of an Avro container, streaming."""
    return iter_packets(source, packet_to_lightcurve, limits)


def read_alert_avro(source: Source, limits: AvroLimits | None = None) -> list[LightCurve]:
    """All alert packets of an Avro container (ZTF, LSST or both), merged per object; ``limits``
    bound the work (:class:`AvroLimits`; over one raises :class:`AvroLimitError`)."""
    return merge_by_object(iter_alerts(source, limits))
