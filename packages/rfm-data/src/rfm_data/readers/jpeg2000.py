"""Reduced-resolution JPEG 2000 decoding: decode only the wavelet levels the stored image needs.

A JPEG 2000 codestream is a wavelet pyramid: its level-``r`` low-pass band is the image at 1/2**r size, and
decoding it skips the finer levels entirely. Ingest stores CXRs at a 256-512 px long side, so a 2,500 px
radiograph decodes ~8-20x faster at the coarsest level that still covers the target (measured in
tools/benchmarks/bench_ingest.py). Pillow exposes this through ``Image.reduce``; pydicom's codec plugins
decode full resolution only.
"""

from __future__ import annotations

import io
import struct

import numpy as np

_SOC_SIZ = b"\xff\x4f\xff\x51"  # start of codestream, then the SIZ marker segment


def codestream_precision(frame: bytes) -> tuple[int, bool, int] | None:
    """(bit depth, signed, components) of a raw J2K codestream's first component; None if not one."""
    if frame[:4] != _SOC_SIZ or len(frame) < 4 + 38 + 3:
        return None
    components = struct.unpack(">H", frame[4 + 36 : 4 + 38])[0]
    ssiz = frame[4 + 38]
    return (ssiz & 0x7F) + 1, bool(ssiz & 0x80), components


def reduction_for(long_side: int, min_long_side: int, max_levels: int = 5) -> int:
    """The largest level r with ``long_side / 2**r >= min_long_side`` (0 = full resolution)."""
    r = 0
    while r < max_levels and long_side // 2 ** (r + 1) >= min_long_side:
        r += 1
    return r


def decode_reduced(frame: bytes, long_side: int, min_long_side: int, bits_stored: int) -> np.ndarray | None:
    """Stored values of a grayscale unsigned J2K frame at the coarsest level >= ``min_long_side``.

    Returns None whenever the fast path does not apply (not a raw codestream, colour, signed, a precision
    other than ``bits_stored``, no reduction possible, no Pillow JPEG 2000 support); the caller then
    decodes at full resolution with pydicom's plugins.
    """
    info = codestream_precision(frame)
    level = reduction_for(long_side, min_long_side)
    if info is None or level == 0:
        return None
    bits, signed, components = info
    if signed or components != 1 or bits != bits_stored or bits > 16:
        return None
    from PIL import Image, features

    if not features.check("jpg_2000"):
        return None
    with Image.open(io.BytesIO(frame)) as im:
        # The J2K plugin reads this attribute (it shadows the Image.reduce method) to skip finer levels.
        im.reduce = level  # type: ignore[method-assign, assignment]
        im.load()
        arr = np.asarray(im)
    if arr.dtype == np.uint16 and 8 < bits < 16:
        arr = arr >> (16 - bits)  # Pillow scales sub-16-bit precision up to the full 16-bit range
    return arr
