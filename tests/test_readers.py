"""Readers of real alert formats: every raw packet in ../shared/data (skipped when absent),
round trips through packets the project writes itself, and broken input."""

from __future__ import annotations

import gzip
import io
import json
import warnings
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from encoder.lightcurve import BANDS, META_FIELDS, META_INDEX, MJD_OFFSET, SURVEY_BANDS, LightCurve, LightCurveError
from encoder.readers import (
    FLUXCAL_TO_NJY,
    AlertFormatError,
    iter_alerts,
    iter_ztf_alerts,
    lightcurve_from_flux_table,
    lsst_packet_to_lightcurve,
    read_alerce_parquet,
    read_alert_avro,
    read_bts_coarse,
    read_bts_parquet,
    read_fink_parquet,
    read_lsst_avro,
    read_plasticc_parquet,
    read_ztf_alerts_parquet,
    read_ztf_avro,
    write_lsst_avro,
    write_ztf_avro,
    ztf_packet_to_lightcurve,
)
from encoder.readers.lsst_avro import LSST_ALERT_SCHEMA
from encoder.readers.ztf_avro import ZTF_ALERT_SCHEMA
from encoder.taxonomy import FINE_CLASSES

RAW_AVRO = (
    "lsst_v9.0_396950876717152_396950876717152.avro",
    "ztf_2018commissioning_396522680015040002.avro",
    "ztf_v2.0_472263571115095000.avro",
    "ztf_v3.2_697252845115015002.avro",
    "ztf_v3.2_739260766315010006.avro",
    "ztf_v3.3_1095578115815010005.avro",
    "ztf_v3.3_1628364324215010017.avro",
    "ztf_v3.3_472263571115115000.avro",
    "ztf_v3.3_ZTF19acihgng.avro",
    "ztf_v3.3_fink-broker-sample-alert-1.avro",
    "ztf_v3.5_1661382530015060001.avro",
    "ztf_v3.5_forcedphot_test_1660293514215020000.avro",
    "ztf_v4.02_fink_distributed_raw.avro",
    "ztf_v4.02_fink_distributed_with_fink_columns.avro",
    "ztf_v4.02_fink_multi31_part-3-305711.avro",
)
RAW_ZTF_AVRO = tuple(f for f in RAW_AVRO if f.startswith("ztf_"))
RAW_FINK_PARQUET = (
    "ztf_fink_rows_tde_ZTF20abfcszi_202008.parquet",
    "ztf_fink_science_rows_alert_samples.parquet",
)
FORCED_PACKET = "ztf_v3.5_forcedphot_test_1660293514215020000.avro"
CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")


# ---------------------------------------------------------------------- helpers
def fits_stamp(value: float = 1.0, gz: bool = True) -> bytes:
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    2",
        "NAXIS1  =                    3",
        "NAXIS2  =                    3",
        "END",
    ]
    header = "".join(c.ljust(80) for c in cards).ljust(2880).encode()
    data = np.full(9, value, dtype=">f4").tobytes().ljust(2880, b"\0")
    return gzip.compress(header + data, mtime=0) if gz else header + data  # mtime=0: same bytes every call


def assert_fits_stamp(data: bytes) -> None:
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    assert raw.startswith(b"SIMPLE  =") and len(raw) % 2880 == 0
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # ZTF's SIMPLE card is non-standard
        with fits.open(io.BytesIO(raw)) as hdul:
            assert hdul[0].data is not None and hdul[0].data.ndim == 2


def make_ztf_lc(object_id: str = "ZTF21abcdefg", n: int = 7, seed: int = 0, stamps: bool = True) -> LightCurve:
    rng = np.random.default_rng(seed)
    time = 2459300.5 + np.cumsum(rng.uniform(0.5, 3.0, n))
    band = np.array(["g", "r", "i"])[rng.integers(0, 3, n)]
    mag = rng.uniform(17.0, 20.5, n)
    mag_err = rng.uniform(0.02, 0.3, n)
    negative = np.zeros(n, dtype=bool)
    negative[1] = True
    meta = rng.uniform(0, 1, (n, len(META_FIELDS))).astype(np.float32)
    for f in ("nmtchps", "ndethist", "ncovhist"):
        meta[:, META_INDEX[f]] = rng.integers(0, 50, n)
    meta[:, META_INDEX["sigmapsf"]] = mag_err
    meta[2, META_INDEX["sgscore1"]] = np.nan
    meta[3, META_INDEX["ndethist"]] = np.nan
    ul_time = time[0] - np.array([3.0, 2.0, 1.0])
    return LightCurve.build(
        object_id,
        "ztf",
        time,
        band,
        mag=mag,
        mag_err=mag_err,
        negative=negative,
        meta=meta,
        ul_time=ul_time,
        ul_band=np.array(["g", "r", "g"]),
        ul_mag=np.array([20.5, 20.25, 21.0]),
        ra=150.125,
        dec=-2.5,
        stamps={"science": fits_stamp(1), "template": fits_stamp(2), "difference": fits_stamp(3)} if stamps else None,
        alert_id=np.arange(1000, 1000 + n) * 1_000_000_007,
    )


def make_lsst_lc(object_id: str = "170000000000001", n: int = 6, seed: int = 1) -> LightCurve:
    rng = np.random.default_rng(seed)
    time = 2460800.5 + np.cumsum(rng.uniform(0.5, 3.0, n))
    alert_id = np.arange(1, n + 1, dtype=np.int64) * 1000
    alert_id[[0, 2]] = [-55, -77]  # forced photometry
    return LightCurve.build(
        object_id,
        "lsst",
        time,
        np.array(list("ugrizy"))[rng.integers(0, 6, n)],
        flux=rng.normal(500.0, 300.0, n),
        flux_err=rng.uniform(10.0, 50.0, n),
        ra=10.5,
        dec=-30.25,
        stamps={"difference": fits_stamp(gz=False)},
        alert_id=alert_id,
    )


def ztf_bytes(lcs: list[LightCurve], **kw: object) -> bytes:
    buf = io.BytesIO()
    write_ztf_avro(lcs, buf, **kw)
    return buf.getvalue()


def assert_same_photometry(a: LightCurve, b: LightCurve, rtol: float = 1e-6) -> None:
    assert a.object_id == b.object_id and a.survey == b.survey
    np.testing.assert_array_equal(a.time, b.time)
    np.testing.assert_array_equal(a.band, b.band)
    np.testing.assert_allclose(a.flux, b.flux, rtol=rtol)
    np.testing.assert_allclose(a.flux_err, b.flux_err, rtol=rtol)


def check_lightcurve(lc: LightCurve) -> None:
    assert len(lc) > 0
    assert np.all(np.diff(lc.time) >= 0)
    assert set(lc.band_names) <= set(SURVEY_BANDS[lc.survey])
    assert np.all(np.isfinite(lc.flux)) and np.all(lc.flux_err > 0)
    if lc.alert_id is not None:
        assert lc.alert_id.shape == lc.time.shape
    if lc.label is not None:
        assert lc.label in FINE_CLASSES


def raw_records(path: Path) -> list[dict]:
    with open(path, "rb") as fh:
        return list(fastavro.reader(fh))


# ---------------------------------------------------------------------- synthetic round trips
def test_ztf_schema_parses() -> None:
    fastavro.parse_schema(ZTF_ALERT_SCHEMA)
    fastavro.parse_schema(LSST_ALERT_SCHEMA)


def test_ztf_round_trip_keeps_photometry_metadata_limits_stamps() -> None:
    lc = make_ztf_lc()
    (back,) = read_ztf_avro(ztf_bytes([lc]))
    assert_same_photometry(lc, back)
    assert back.flux[1] < 0  # isdiffpos = 'f'
    np.testing.assert_array_equal(back.meta, lc.meta)  # float32 both ways, NaN kept
    np.testing.assert_array_equal(back.ul_time, lc.ul_time)
    np.testing.assert_array_equal(back.ul_band, lc.ul_band)
    np.testing.assert_allclose(back.ul_mag, lc.ul_mag, rtol=1e-7)
    np.testing.assert_array_equal(back.alert_id, lc.alert_id)
    assert back.stamps == lc.stamps
    assert (back.ra, back.dec) == (lc.ra, lc.dec)


def test_ztf_round_trip_without_history_or_ids() -> None:
    lc = make_ztf_lc(stamps=False)
    lc = LightCurve.build(lc.object_id, "ztf", lc.time, lc.band, flux=lc.flux, flux_err=lc.flux_err)
    (back,) = read_ztf_avro(ztf_bytes([lc], history=False))
    assert len(back) == 1 and back.time[0] == lc.time[-1]
    assert len(back.ul_time) == 0 and back.stamps is None and back.ra is None
    (full,) = read_ztf_avro(ztf_bytes([lc]))
    assert_same_photometry(lc, full)
    assert np.all(full.alert_id < 0)  # synthetic, stable
    (again,) = read_ztf_avro(ztf_bytes([lc]))
    np.testing.assert_array_equal(full.alert_id, again.alert_id)


def test_ztf_container_many_alerts_merged_per_object() -> None:
    a, b = make_ztf_lc("ZTF21aaaaaaa", seed=1), make_ztf_lc("ZTF21bbbbbbb", seed=2)
    data = ztf_bytes([a.first(3), b, a])  # a's history grows, as in a real stream
    streamed = list(iter_ztf_alerts(data))
    assert [lc.object_id for lc in streamed] == ["ZTF21aaaaaaa", "ZTF21bbbbbbb", "ZTF21aaaaaaa"]
    assert len(streamed[0]) == 3
    merged = read_ztf_avro(data)
    assert [lc.object_id for lc in merged] == ["ZTF21aaaaaaa", "ZTF21bbbbbbb"]
    assert_same_photometry(merged[0], a)
    assert_same_photometry(merged[1], b)
    assert read_alert_avro(data)[0].object_id == "ZTF21aaaaaaa"


def test_read_sources_path_bytes_file(tmp_path: Path) -> None:
    lc = make_ztf_lc()
    path = tmp_path / "alerts.avro"
    assert write_ztf_avro([lc, make_ztf_lc("ZTF21other00")], path) == 2
    for source in (path, str(path), path.read_bytes(), open(path, "rb")):  # noqa: SIM115
        lcs = read_alert_avro(source)
        assert [x.object_id for x in lcs] == ["ZTF21abcdefg", "ZTF21other00"]


def test_lsst_round_trip_with_forced_sources() -> None:
    lc = make_lsst_lc()
    buf = io.BytesIO()
    assert write_lsst_avro([lc], buf) == 1
    (back,) = read_lsst_avro(buf.getvalue())
    assert_same_photometry(lc, back, rtol=1e-6)  # psfFlux is a float
    np.testing.assert_array_equal(back.alert_id, lc.alert_id)
    assert back.stamps == lc.stamps and (back.ra, back.dec) == (lc.ra, lc.dec)
    assert back.meta is None
    (auto,) = read_alert_avro(buf.getvalue())
    assert auto.survey == "lsst" and len(auto) == len(lc)
    (no_forced,) = read_lsst_avro(buf.getvalue(), forced=False)
    assert len(no_forced) == len(lc) - 2 and np.all(no_forced.alert_id > 0)


def test_write_refuses_wrong_survey() -> None:
    with pytest.raises(ValueError, match="ZTF"):
        ztf_bytes([make_lsst_lc()])
    with pytest.raises(ValueError, match="LSST"):
        write_lsst_avro([make_ztf_lc()], io.BytesIO())


# ---------------------------------------------------------------------- packets as dicts
def ztf_record(**candidate: object) -> dict:
    cand = {
        "jd": 2459500.5,
        "fid": 1,
        "magpsf": 18.0,
        "sigmapsf": 0.1,
        "isdiffpos": "t",
        "candid": 42,
        "ra": 10.0,
        "dec": 20.0,
        "rb": 0.9,
        "sgscore1": -999.0,
        "diffmaglim": 20.5,
    } | candidate
    return {"objectId": "ZTF21xxxxxxx", "candid": 42, "candidate": cand, "prv_candidates": []}


@pytest.mark.parametrize(("flag", "negative"), [("t", False), ("1", False), ("f", True), ("0", True), (None, False)])
def test_isdiffpos(flag: str | None, negative: bool) -> None:
    lc = ztf_packet_to_lightcurve(ztf_record(isdiffpos=flag))
    assert (lc.flux[0] < 0) == negative
    assert lc.mag[0] == pytest.approx(18.0) if not negative else np.isnan(lc.mag[0])


def test_packet_metadata_nonsense_and_synthetic_ids() -> None:
    rec = ztf_record()
    rec["prv_candidates"] = [
        {"jd": 2459490.5, "fid": 2, "magpsf": 18.5, "sigmapsf": 0.1, "isdiffpos": "t", "candid": None},
        {"jd": 2459491.5, "fid": 1, "magpsf": None, "sigmapsf": None, "diffmaglim": 20.1},  # limit
        {"jd": 2459492.5, "fid": 2, "magpsf": None, "diffmaglim": -999.0},  # no usable limit
        {"jd": 2459493.5, "fid": 2, "magpsf": 18.0, "sigmapsf": 0.0},  # bad error: dropped
        {"jd": 2459494.5, "fid": 7, "magpsf": 18.0, "sigmapsf": 0.1},  # unknown filter: dropped
        {"jd": 2459500.5, "fid": 1, "magpsf": 18.2, "sigmapsf": 0.1, "candid": 41},  # duplicate of candidate
    ]
    lc = ztf_packet_to_lightcurve(rec)
    assert len(lc) == 2 and list(lc.band_names) == ["r", "g"]
    assert lc.mag[1] == pytest.approx(18.0)  # the candidate wins the duplicate
    assert lc.alert_id[1] == 42 and lc.alert_id[0] < 0
    assert lc.alert_id[0] == ztf_packet_to_lightcurve(rec).alert_id[0]  # stable
    np.testing.assert_array_equal(lc.ul_time, [2459491.5])
    assert np.isnan(lc.meta_field("sgscore1")[1])  # -999 -> NaN
    assert lc.meta_field("rb")[1] == pytest.approx(0.9)
    assert np.isnan(lc.meta_field("rb")[0])  # history row lacks it
    assert lc.meta_field("sigmapsf")[1] == pytest.approx(0.1)


def test_packet_without_usable_detection_names_the_field() -> None:
    with pytest.raises(LightCurveError) as err:
        ztf_packet_to_lightcurve(ztf_record(magpsf=None))
    assert err.value.field == "detections"
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(ZTF_ALERT_SCHEMA), [])  # an empty container is fine
    assert read_alert_avro(buf.getvalue()) == []


def test_forced_photometry_rows() -> None:
    rec = ztf_record()
    rec["prv_candidates"] = [
        {"jd": 2459495.5, "fid": 2, "forcediffimflux": -1000.0, "forcediffimfluxunc": 20.0, "magzpsci": 26.0,
         "procstatus": "0", "diffmaglim": 20.3},
        {"jd": 2459496.5, "fid": 2, "forcediffimflux": -99999.0, "forcediffimfluxunc": 20.0, "magzpsci": 26.0,
         "procstatus": "0", "diffmaglim": 20.4},
    ]  # fmt: skip
    rec["fp_hists"] = [
        {
            "jd": 2459497.5,
            "fid": 1,
            "forcediffimflux": 500.0,
            "forcediffimfluxunc": 30.0,
            "magzpsci": 26.5,
            "procstatus": "0",
            "diffmaglim": 20.0,
        }
    ]
    plain = ztf_packet_to_lightcurve(rec)
    assert len(plain) == 1 and len(plain.ul_time) == 2  # forced rows as limits, fp_hists ignored
    forced = ztf_packet_to_lightcurve(rec, forced_photometry=True)
    assert len(forced) == 3 and len(forced.ul_time) == 1  # the -99999 row stays a limit
    assert forced.flux[0] == pytest.approx(-1000.0 * 10 ** (-0.4 * (26.0 - 31.4)))
    assert forced.flux[1] == pytest.approx(500.0 * 10 ** (-0.4 * (26.5 - 31.4)))
    assert np.all(forced.alert_id[:2] < 0) and forced.alert_id[2] == 42


def test_lsst_record_by_fields() -> None:
    rec = {
        "diaSource": {
            "diaSourceId": 7,
            "diaObjectId": 99,
            "midpointMjdTai": 60800.25,
            "ra": 1.0,
            "dec": 2.0,
            "psfFlux": -120.0,
            "psfFluxErr": 15.0,
            "band": "y",
        },
        "prvDiaSources": [
            {
                "diaSourceId": 6,
                "diaObjectId": 99,
                "midpointMjdTai": 60799.25,
                "psfFlux": float("nan"),
                "psfFluxErr": 15.0,
                "band": "y",
            }
        ],
        "prvDiaForcedSources": None,
        "cutoutDifference": b"not a fits file",
    }
    lc = lsst_packet_to_lightcurve(rec)
    assert lc.object_id == "99" and len(lc) == 1 and lc.band_names == ["y"]
    assert lc.time[0] == 60800.25 + MJD_OFFSET and lc.flux[0] == -120.0 and lc.alert_id[0] == 7
    assert lc.stamps is None


# ---------------------------------------------------------------------- broken input
@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"Obj\x01", b"Obj\x01" + bytes(range(256)) * 4, bytes(np.random.default_rng(3).bytes(5000))],
    ids=["empty", "text", "magic-only", "magic-garbage", "random"],
)
def test_garbage_raises_alert_format_error(data: bytes) -> None:
    with pytest.raises(AlertFormatError):
        read_alert_avro(data)


def test_truncated_avro_raises_alert_format_error() -> None:
    data = ztf_bytes([make_ztf_lc(f"ZTF21trunc{i:03d}", seed=i) for i in range(5)])
    for cut in (len(data) // 3, len(data) // 2, len(data) - 10):
        with pytest.raises(AlertFormatError):
            read_alert_avro(data[:cut])
    with pytest.raises(AlertFormatError):
        read_ztf_avro(data[:100])


def test_non_alert_avro_raises_alert_format_error() -> None:
    buf = io.BytesIO()
    schema = {"type": "record", "name": "thing", "fields": [{"name": "x", "type": "int"}]}
    fastavro.writer(buf, fastavro.parse_schema(schema), [{"x": 1}])
    with pytest.raises(AlertFormatError, match="neither a ZTF"):
        read_alert_avro(buf.getvalue())
    with pytest.raises(AlertFormatError, match="not a ZTF"):
        read_ztf_avro(buf.getvalue())
    with pytest.raises(AlertFormatError, match="not an LSST"):
        read_lsst_avro(buf.getvalue())
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema("int"), [1, 2])
    with pytest.raises(AlertFormatError):
        read_alert_avro(buf.getvalue())


@pytest.mark.parametrize(
    "bad",
    [b"garbage", fits_stamp()[:-30], fits_stamp()[:40], gzip.compress(b"not fits" * 400), fits_stamp(gz=False)[:100]],
    ids=["garbage", "truncated-gz", "header-only", "gz-not-fits", "truncated-plain"],
)
def test_corrupt_stamp_means_no_stamp(bad: bytes) -> None:
    lc = make_ztf_lc()
    lc = LightCurve.build(
        lc.object_id,
        "ztf",
        lc.time,
        lc.band,
        flux=lc.flux,
        flux_err=lc.flux_err,
        stamps={"science": bad, "difference": fits_stamp(5)},
    )
    (back,) = read_ztf_avro(ztf_bytes([lc]))
    assert back.stamps == {"difference": fits_stamp(5)}


def test_missing_stamp_in_packet_dict() -> None:
    rec = ztf_record()
    rec["cutoutScience"] = None
    rec["cutoutTemplate"] = {"fileName": "x", "stampData": None}
    rec["cutoutDifference"] = {"fileName": "x", "stampData": fits_stamp()}
    assert ztf_packet_to_lightcurve(rec).stamps == {"difference": fits_stamp()}


# ---------------------------------------------------------------------- flux tables
def test_lightcurve_from_flux_table_units() -> None:
    fluxcal = 10 ** (-0.4 * (20.0 - 27.5))
    df = pd.DataFrame(
        {
            "mjd": [60001.0, 60000.0, 60000.0],
            "band": ["r", "g", "g"],
            "flux": [fluxcal, fluxcal, fluxcal],
            "fluxerr": [1.0, 1.0, 2.0],
        }
    )
    lc = lightcurve_from_flux_table(df, "obj1", zero_point=27.5, label="SN Ia")
    assert len(lc) == 2 and lc.band_names == ["g", "r"] and lc.time[0] == 60000.0 + MJD_OFFSET
    np.testing.assert_allclose(lc.mag, 20.0)
    assert lc.flux_err[0] == pytest.approx(FLUXCAL_TO_NJY) and lc.label == "SNIa"
    njy = lightcurve_from_flux_table(df.rename(columns={"mjd": "jd", "fluxerr": "flux_err"}).assign(jd=2460000.5), "o")
    assert njy.flux[0] == pytest.approx(fluxcal)
    with pytest.raises(LightCurveError, match="flux_err"):
        lightcurve_from_flux_table(df.assign(fluxerr=[1.0, -1.0, 1.0]), "obj1")


def test_plasticc_and_bts_tables_synthetic(tmp_path: Path) -> None:
    fluxcal = 10 ** (-0.4 * (21.0 - 27.5))
    table = pa.table(
        {
            "object_id": ["p1", "p2", "p3"],
            "label": ["SNIa-91bg", "Mira", "KN"],
            "mjd": [[60000.0, 60001.0, 60002.0], [60000.0], []],
            "band": [["u", "y", "q"], ["z"], []],
            "flux": [[fluxcal, -5.0, 1.0], [3.0], []],
            "fluxerr": [[1.0, 2.0, 1.0], [0.0], []],
            "detected": [[True, False, True], [True], []],
            "meta": [json.dumps({"ra": 10.0, "decl": -5.0}), None, None],
        }
    )
    pq.write_table(table, tmp_path / "plasticc.parquet")
    lcs = read_plasticc_parquet(tmp_path / "plasticc.parquet")
    assert [lc.object_id for lc in lcs] == ["p1"]  # p2: zero error, p3: empty; band 'q' dropped
    lc = lcs[0]
    assert lc.survey == "lsst" and lc.band_names == ["u", "y"] and lc.label == "SNIa"
    assert lc.mag[0] == pytest.approx(21.0) and lc.flux[1] == pytest.approx(-5.0 * FLUXCAL_TO_NJY)
    assert (lc.ra, lc.dec) == (10.0, -5.0)
    assert len(read_plasticc_parquet(tmp_path / "plasticc.parquet", detected_only=True)[0]) == 1

    bts = pa.table(
        {
            "object_id": ["ZTF1", "ZTF2"],
            "label": ["SN Ib/c", "ILRT"],
            "coarse": ["SNIbc", "other"],
            "jd": [[2459000.5, 2459001.5], [2459000.5]],
            "fid": [[1, 2], [3]],
            "mag": [[18.0, 18.5], [19.0]],
            "magerr": [[0.1, 0.1], [0.2]],
        }
    )
    pq.write_table(bts, tmp_path / "bts.parquet")
    lcs = read_bts_parquet(tmp_path / "bts.parquet")
    assert [(lc.object_id, lc.label, len(lc)) for lc in lcs] == [("ZTF1", "SNIbc", 2), ("ZTF2", None, 1)]
    assert read_bts_coarse(tmp_path / "bts.parquet") == {"ZTF1": "SNIbc", "ZTF2": "other"}


def test_alert_table_synthetic(tmp_path: Path) -> None:
    def det(jd: float, fid: int, mag: float, sig: float, isdiffpos: str, candid: int | None, **meta: float) -> dict:
        row = {
            "jd": jd,
            "fid": fid,
            "magpsf": mag,
            "sigmapsf": sig,
            "isdiffpos": isdiffpos,
            "candid": candid,
            "ra": 10.0 + jd - 2459000.5,
            "dec": -5.0,
        } | {f: None for f in META_FIELDS if f != "sigmapsf"}
        return row | meta

    table = pa.table(
        {
            "object_id": ["ZTF1", "ZTF2", "ZTF3"],
            "label": ["SN Ia", None, "QSO"],
            "alerts": [
                [
                    det(2459000.5, 1, 18.0, 0.1, "t", 11, rb=0.5, sgscore1=-999.0),
                    det(2459001.5, 2, 18.5, 0.1, "0", None),
                ],
                [det(2459000.5, 3, 19.0, 0.0, "t", 21)],  # invalid error: no usable detection, skipped
                [det(2459002.5, 1, 17.0, 0.2, "-1", 31)],
            ],
            "upper_limits": [[{"jd": 2458999.5, "fid": 1, "diffmaglim": 20.5}], None, []],
        }
    )
    pq.write_table(table, tmp_path / "alerts.parquet")
    cutouts = pa.table(
        {
            "object_id": ["ZTF1", "ZTF3"],
            "cutout_science": [fits_stamp(), b"junk"],
            "cutout_template": [None, None],
            "cutout_difference": [fits_stamp(2), None],
        }
    )
    pq.write_table(cutouts, tmp_path / "cutouts.parquet")
    lcs = read_ztf_alerts_parquet(tmp_path / "alerts.parquet", cutouts_path=tmp_path / "cutouts.parquet")
    assert [lc.object_id for lc in lcs] == ["ZTF1", "ZTF3"]
    a, c = lcs
    assert a.label == "SNIa" and c.label == "AGN"
    assert a.flux[0] > 0 and a.flux[1] < 0 and c.flux[0] < 0
    assert a.alert_id[0] == 11 and a.alert_id[1] < 0
    assert a.meta_field("rb")[0] == pytest.approx(0.5) and np.isnan(a.meta_field("sgscore1")[0])
    assert a.meta_field("sigmapsf")[1] == pytest.approx(0.1)
    assert (a.ra, a.dec) == (11.0, -5.0)  # the newest row's position
    np.testing.assert_array_equal(a.ul_mag, [20.5])
    assert a.stamps == {"science": fits_stamp(), "difference": fits_stamp(2)} and c.stamps is None
    assert read_alerce_parquet(tmp_path / "alerts.parquet")[0].stamps is None


# ---------------------------------------------------------------------- real raw packets
def test_raw_folder_lists_every_file(shared_data: Path) -> None:
    raw = shared_data / "ztf_alerts" / "raw"
    assert {p.name for p in raw.glob("*.avro")} == set(RAW_AVRO)
    assert {p.name for p in raw.glob("*.parquet")} == set(RAW_FINK_PARQUET)


@pytest.mark.parametrize("name", RAW_AVRO)
def test_real_avro_packet(shared_data: Path, name: str) -> None:
    path = shared_data / "ztf_alerts" / "raw" / name
    records = raw_records(path)
    lcs = read_alert_avro(path)
    ztf = "candidate" in records[0]
    expected_ids = {r["objectId"] if ztf else str(r["diaSource"]["diaObjectId"]) for r in records}
    assert {lc.object_id for lc in lcs} == expected_ids
    by_id = {lc.object_id: lc for lc in lcs}
    for rec in records:
        lc = by_id[rec["objectId"] if ztf else str(rec["diaSource"]["diaObjectId"])]
        check_lightcurve(lc)
        assert lc.survey == ("ztf" if ztf else "lsst")
        assert lc.stamps is not None and set(lc.stamps) == {"science", "template", "difference"}
        for data in lc.stamps.values():
            assert_fits_stamp(data)
        if ztf:
            cand = rec["candidate"]
            assert (lc.ra, lc.dec) == pytest.approx((cand["ra"], cand["dec"]))
            assert rec["candid"] in lc.alert_id
            i = int(np.flatnonzero(lc.alert_id == rec["candid"])[0])
            assert lc.time[i] == cand["jd"] and lc.band[i] == BANDS.index("gri"[cand["fid"] - 1])
            assert lc.meta is not None and lc.meta_field("sigmapsf")[i] == pytest.approx(cand["sigmapsf"])
            assert np.isfinite(lc.meta_field("rb")[i]) and np.isfinite(lc.meta_field("diffmaglim")[i])
            assert (lc.flux[i] < 0) == (cand["isdiffpos"] in ("f", "0"))
        else:
            src = rec["diaSource"]
            assert lc.time[-1] == src["midpointMjdTai"] + MJD_OFFSET
            assert lc.flux[-1] == pytest.approx(src["psfFlux"]) and lc.band_names[-1] == src["band"]
            assert lc.alert_id[-1] == src["diaSourceId"]


@pytest.mark.parametrize("name", [f for f in RAW_ZTF_AVRO if "multi31" not in f])
def test_real_ztf_counts_match_an_independent_count(shared_data: Path, name: str) -> None:
    (rec,) = raw_records(shared_data / "ztf_alerts" / "raw" / name)
    rows = [rec["candidate"], *(rec.get("prv_candidates") or [])]
    dets = {(r["jd"], r["fid"]) for r in rows if r.get("magpsf") is not None}
    limits = {(r["jd"], r["fid"]) for r in rows if r.get("magpsf") is None and r.get("diffmaglim") is not None}
    lc = ztf_packet_to_lightcurve(rec)
    assert len(lc) == len(dets)
    assert len(lc.ul_time) == len(limits)
    assert lc.label is None or lc.label in FINE_CLASSES


def test_real_ztf_streaming_and_labels(shared_data: Path) -> None:
    path = shared_data / "ztf_alerts" / "raw" / "ztf_v4.02_fink_multi31_part-3-305711.avro"
    lcs = list(iter_ztf_alerts(path))
    assert len(lcs) == 31 and len({lc.object_id for lc in lcs}) == 31
    assert [lc.object_id for lc in iter_alerts(path)] == [lc.object_id for lc in lcs]
    labels = {lc.label for lc in lcs}
    assert {"SNII", "SNIa"} <= labels  # from Fink's TNS crossmatch column


def test_real_forced_photometry_packet(shared_data: Path) -> None:
    path = shared_data / "ztf_alerts" / "raw" / FORCED_PACKET
    (rec,) = raw_records(path)
    (plain,) = read_ztf_avro(path)
    assert len(plain) == 1 and len(plain.ul_time) == len(rec["prv_candidates"])
    (forced,) = read_ztf_avro(path, forced_photometry=True)
    assert len(forced) == 1 + len(rec["prv_candidates"]) and len(forced.ul_time) == 0
    assert np.sum(forced.alert_id < 0) == len(rec["prv_candidates"])
    row = rec["prv_candidates"][0]
    i = int(np.flatnonzero(forced.time == row["jd"])[0])
    expected = row["forcediffimflux"] * 10 ** (-0.4 * (row["magzpsci"] - 31.4))
    assert forced.flux[i] == pytest.approx(expected, rel=1e-6)


def test_real_truncated_packet(shared_data: Path) -> None:
    data = (shared_data / "ztf_alerts" / "raw" / "ztf_v3.3_ZTF19acihgng.avro").read_bytes()
    with pytest.raises(AlertFormatError):
        read_alert_avro(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["ztf_v3.3_ZTF19acihgng.avro", "ztf_v4.02_fink_distributed_with_fink_columns.avro"])
def test_real_packet_round_trip(shared_data: Path, name: str) -> None:
    (lc,) = read_ztf_avro(shared_data / "ztf_alerts" / "raw" / name)
    (back,) = read_ztf_avro(ztf_bytes([lc]))
    assert_same_photometry(lc, back)
    np.testing.assert_array_equal(back.meta, lc.meta)
    np.testing.assert_array_equal(back.alert_id, lc.alert_id)
    np.testing.assert_array_equal(back.ul_time, lc.ul_time)
    np.testing.assert_array_equal(back.ul_mag, lc.ul_mag)
    assert back.stamps == lc.stamps and (back.ra, back.dec) == (lc.ra, lc.dec)


def test_real_lsst_packet(shared_data: Path) -> None:
    (lc,) = read_lsst_avro(shared_data / "ztf_alerts" / "raw" / RAW_AVRO[0])
    assert lc.object_id == "396950876717152" and lc.survey == "lsst"
    assert lc.band_names == ["g"] and lc.flux[0] == pytest.approx(373.9613, rel=1e-6)
    buf = io.BytesIO()
    write_lsst_avro([lc], buf)
    (back,) = read_alert_avro(buf.getvalue())
    assert_same_photometry(lc, back)
    assert back.stamps == lc.stamps


@pytest.mark.parametrize("name", RAW_FINK_PARQUET)
def test_real_fink_parquet(shared_data: Path, name: str) -> None:
    path = shared_data / "ztf_alerts" / "raw" / name
    table = pq.read_table(path, columns=["objectId"])
    lcs = read_fink_parquet(path)
    assert {lc.object_id for lc in lcs} == set(table.column("objectId").to_pylist())
    for lc in lcs:
        check_lightcurve(lc)
        assert lc.meta is not None and lc.stamps and set(lc.stamps) == {"science", "template", "difference"}
    assert_fits_stamp(lcs[0].stamps["science"])


# ---------------------------------------------------------------------- real tables
def test_real_ztf_alerts_parquet(shared_data: Path) -> None:
    path = shared_data / "ztf_alerts" / "alerts.parquet"
    info = pq.read_table(path, columns=["object_id", "n_det", "n_ul", "label"]).to_pandas().set_index("object_id")
    lcs = read_ztf_alerts_parquet(path, cutouts_path=shared_data / "ztf_alerts" / "cutouts.parquet")
    assert len(lcs) == len(info) == 1547
    for lc in lcs[::50]:
        check_lightcurve(lc)
        row = info.loc[lc.object_id]
        assert 0 < len(lc) <= row.n_det and len(lc.ul_time) <= row.n_ul
        assert lc.meta is not None and lc.ra is not None and lc.alert_id is not None
    with_stamps = [lc for lc in lcs if lc.stamps]
    assert len(with_stamps) > 1000
    assert_fits_stamp(with_stamps[0].stamps["difference"])
    labelled = [lc for lc in lcs if lc.label]
    assert len(labelled) > 100 and {lc.label for lc in labelled} <= set(FINE_CLASSES)
    assert sum(len(lc.ul_time) for lc in lcs) > 10_000


def test_real_bts_parquet(shared_data: Path) -> None:
    path = shared_data / "ztf_bts_dev.parquet"
    lcs = read_bts_parquet(path)
    assert len(lcs) == 1197
    for lc in lcs[::40]:
        check_lightcurve(lc)
        assert lc.meta is None and lc.stamps is None and len(lc.ul_time) == 0
    labels = [lc.label for lc in lcs]
    assert labels.count("SNIa") > 800 and sum(lb is None for lb in labels) <= 5
    coarse = read_bts_coarse(path)
    assert all(coarse[lc.object_id] == "SNIa" for lc in lcs if lc.label == "SNIa")


def test_real_alerce_parquet(shared_data: Path) -> None:
    lcs = read_alerce_parquet(shared_data / "alerce_lc_classifier.parquet")
    assert len(lcs) == 243
    for lc in lcs:
        check_lightcurve(lc)
    assert any(len(lc.ul_time) for lc in lcs) and any((lc.flux < 0).any() for lc in lcs)
    assert "Periodic" in {lc.label for lc in lcs}


def test_real_plasticc_parquet(shared_data: Path) -> None:
    path = shared_data / "plasticc_train.parquet"
    lcs = read_plasticc_parquet(path)
    assert len(lcs) == 7848
    first = pq.read_table(path, columns=["object_id", "mjd", "band", "flux"]).slice(0, 1).to_pylist()[0]
    lc = lcs[0]
    assert lc.object_id == first["object_id"] and lc.survey == "lsst" and lc.ra is not None
    j = int(np.argmin(first["mjd"]))
    k = int(np.flatnonzero((lc.time == first["mjd"][j] + MJD_OFFSET) & (lc.band == BANDS.index(first["band"][j])))[0])
    assert lc.flux[k] == pytest.approx(first["flux"][j] * FLUXCAL_TO_NJY, rel=1e-6)
    assert {lc.label for lc in lcs} <= set(FINE_CLASSES)
    assert {"SNIa", "KN", "Microlensing", "Flare", "Periodic"} <= {lc.label for lc in lcs}
    for lc in lcs[::500]:
        check_lightcurve(lc)
    detected = read_plasticc_parquet(path, detected_only=True)
    assert sum(len(x) for x in detected) < sum(len(x) for x in lcs)


def test_meta_matrix_reads_numbers_and_turns_the_rest_into_nan():
    from encoder.readers import meta_matrix

    fields = ("a", "b", "c")
    numbers = [{"a": 1.5, "b": 2}, {"c": -3.25}, {}]  # every value a number: the np.fromiter path
    np.testing.assert_array_equal(
        meta_matrix(numbers, fields), np.array([[1.5, 2, np.nan], [np.nan, np.nan, -3.25], [np.nan] * 3], np.float32)
    )
    mixed = [{"a": 1.5, "b": None}, {"b": "2.5", "c": "bad"}, {"a": True}]  # None, strings: the fallback
    np.testing.assert_array_equal(
        meta_matrix(mixed, fields),
        np.array([[1.5, np.nan, np.nan], [np.nan, 2.5, np.nan], [1, np.nan, np.nan]], np.float32),
    )
    assert meta_matrix([], fields).shape == (0, 3)
    assert meta_matrix([{"a": 1e300}], fields)[0, 0] == np.inf  # beyond float32: LightCurve.build makes it NaN
