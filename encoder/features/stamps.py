"""Cutout stamps: gzipped FITS bytes → a normalized (3, 63, 63) tensor.

:func:`decode_stamp` never raises on bad input: corrupt, truncated, non-2-D, oversized
(gzip bombs: decompression stops at :data:`MAX_DECOMPRESSED_BYTES`) or wrongly sized
stamps give ``None``; stamps within :data:`SIZE_TOLERANCE` pixels of 63 are centre
cropped / padded (padding is NaN, later 0). ZTF edge-of-CCD stamps that are much
smaller than 63 pixels are refused.

:func:`stamp_tensor` stacks science, template and difference (in
:data:`~encoder.lightcurve.STAMP_KINDS` order), each normalized on its own:
``arcsinh((x - median) / robust_sigma)`` with robust_sigma = 1.4826 × MAD (falling back
to the standard deviation, then 1), non-finite pixels → 0. A missing or undecodable
stamp of the three is all zeros; no decodable stamp at all → ``None``.
"""

from __future__ import annotations

import io
import warnings
import zlib

import numpy as np

from encoder.lightcurve import STAMP_KINDS, LightCurve

STAMP_SIZE = 63
#: Stamps up to this many pixels off 63 per axis are cropped / padded, not refused.
SIZE_TOLERANCE = 2
#: Cap on decompressed bytes (a 63×63 float64 FITS is ~40 kB).
MAX_DECOMPRESSED_BYTES = 2 * 1024 * 1024
#: Cap on the compressed input.
MAX_INPUT_BYTES = 2 * 1024 * 1024
#: Largest image axis accepted in a FITS header before the data is read.
MAX_AXIS = 256


def _gunzip_capped(data: bytes) -> bytes | None:
    """Decompress (possibly concatenated) gzip members, refusing more than the cap."""
    out = bytearray()
    buf = data
    while buf:
        d = zlib.decompressobj(wbits=31)
        try:
            chunk = d.decompress(buf, MAX_DECOMPRESSED_BYTES + 1 - len(out))
        except zlib.error:
            return None
        out += chunk
        if len(out) > MAX_DECOMPRESSED_BYTES or d.unconsumed_tail:
            return None
        if not d.eof:
            return None  # truncated stream
        buf = d.unused_data
        if buf and not buf.startswith(b"\x1f\x8b"):
            break  # trailing garbage after the last member: ignore it as gzip does
    return bytes(out)


def _fit_size(img: np.ndarray, tolerance: int) -> np.ndarray | None:
    out = img
    for axis in (0, 1):
        n = out.shape[axis]
        diff = n - STAMP_SIZE
        if abs(diff) > tolerance:
            return None
        if diff > 0:
            start = diff // 2
            out = np.take(out, np.arange(start, start + STAMP_SIZE), axis=axis)
        elif diff < 0:
            pad = [(0, 0), (0, 0)]
            pad[axis] = ((-diff) // 2, -diff - (-diff) // 2)
            out = np.pad(out, pad, constant_values=np.nan)
    return out


def decode_stamp(data: bytes | None, tolerance: int = SIZE_TOLERANCE) -> np.ndarray | None:
    """Gzipped or plain FITS bytes → (63, 63) float32 image, or ``None``.

    ``tolerance``: how many pixels per axis a stamp may be off 63 and still be centre
    cropped / NaN padded (ZTF edge-of-CCD stamps are ~48-53 rows: raise it to keep them).
    """
    try:
        if data is None or not isinstance(data, bytes | bytearray | memoryview):
            return None
        data = bytes(data)
        if not data or len(data) > MAX_INPUT_BYTES:
            return None
        if data[:2] == b"\x1f\x8b":
            raw = _gunzip_capped(data)
            if raw is None:
                return None
        else:
            raw = data
        if not raw.startswith(b"SIMPLE"):
            return None
        from astropy.io import fits

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=True) as hdul:
                for hdu in hdul:
                    hdr = hdu.header
                    if hdr.get("NAXIS", 0) != 2:
                        continue
                    n1, n2 = int(hdr.get("NAXIS1", 0)), int(hdr.get("NAXIS2", 0))
                    if not (0 < n1 <= MAX_AXIS and 0 < n2 <= MAX_AXIS):
                        return None
                    img = np.asarray(hdu.data, dtype=np.float32)
                    if img.ndim != 2:
                        return None
                    fitted = _fit_size(img, tolerance)
                    return None if fitted is None else np.ascontiguousarray(fitted, dtype=np.float32)
        return None
    except Exception:  # noqa: BLE001 - bad bytes of any kind mean "no stamp"
        return None


def normalize_stamp(img: np.ndarray) -> np.ndarray:
    """arcsinh((x - median) / robust sigma), non-finite → 0, float32."""
    x = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(x.shape, dtype=np.float32)
    v = x[finite]
    med = float(np.median(v))
    sigma = 1.4826 * float(np.median(np.abs(v - med)))
    if not sigma > 0:
        sigma = float(np.std(v))
    if not sigma > 0:
        sigma = 1.0
    out = np.arcsinh((np.where(finite, x, med) - med) / sigma)
    out[~finite] = 0.0
    return out.astype(np.float32)


def stamp_tensor(lc: LightCurve) -> np.ndarray | None:
    """(3, 63, 63) float32 science / template / difference, or ``None`` without stamps."""
    stamps = lc.stamps or {}
    out = np.zeros((len(STAMP_KINDS), STAMP_SIZE, STAMP_SIZE), dtype=np.float32)
    found = False
    for i, kind in enumerate(STAMP_KINDS):
        img = decode_stamp(stamps.get(kind))
        if img is not None:
            out[i] = normalize_stamp(img)
            found = True
    return out if found else None


__all__ = ["STAMP_SIZE", "decode_stamp", "normalize_stamp", "stamp_tensor"]
