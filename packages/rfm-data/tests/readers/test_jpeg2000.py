"""Reduced-resolution JPEG 2000 decoding: same geometry and nearly the same pixels as a full decode."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import get_frame

from rfm_data.config import PreprocessConfig
from rfm_data.preprocess import preprocess
from rfm_data.readers import ReadOptions, read_image
from rfm_data.readers.jpeg2000 import codestream_precision, decode_reduced, reduction_for


def _frame(data: bytes) -> bytes:
    from io import BytesIO

    ds = dcmread(BytesIO(data))
    return get_frame(ds.PixelData, 0, number_of_frames=1)


def test_reduction_level_keeps_the_long_side_above_the_minimum() -> None:
    assert reduction_for(2500, 512) == 2  # 625 px
    assert reduction_for(2500, 256) == 3  # 312 px
    assert reduction_for(300, 256) == 0
    assert reduction_for(100_000, 1, max_levels=5) == 5


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_codestream_precision_is_read_from_the_siz_marker(make_dicom: Callable[..., bytes], bits: int) -> None:
    frame = _frame(make_dicom(transfer_syntax="jpeg2000_lossless", bits=bits))
    assert codestream_precision(frame) == (bits, False, 1)
    assert codestream_precision(b"\x89PNG....") is None


def test_reduced_decode_matches_a_downsampled_full_decode(
    make_dicom: Callable[..., bytes], read_options: ReadOptions
) -> None:
    data = make_dicom(transfer_syntax="jpeg2000_lossless", bits=12, windows=[(2048, 4096)])
    full = read_image(data, "x.dcm", read_options)
    reduced_opts = ReadOptions(read_options.pseudonymize, decode_long_side=64)
    reduced = read_image(data, "x.dcm", reduced_opts)
    assert max(reduced.pixels.shape) < max(full.pixels.shape)
    assert max(reduced.pixels.shape) >= 64
    assert reduced.meta.orig_height == full.meta.orig_height  # metadata describes the source, not the decode
    shape = (full.meta.orig_height, full.meta.orig_width)
    cfg = PreprocessConfig(long_side=32)
    a = preprocess(full.pixels, cfg).astype(np.float64)
    b = preprocess(reduced.pixels, cfg, shape).astype(np.float64)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 4.0  # grey levels of 255: same anatomy, sub-pixel alignment differs


def test_signed_and_full_resolution_requests_take_the_normal_path(
    make_dicom: Callable[..., bytes], read_options: ReadOptions
) -> None:
    signed = _frame(make_dicom(transfer_syntax="jpeg2000_lossless", bits=12, signed=True))
    assert decode_reduced(signed, 256, 64, 12) is None
    data = make_dicom(transfer_syntax="jpeg2000_lossless", bits=12, windows=[(2048, 4096)])
    assert decode_reduced(_frame(data), 256, 200, 12) is None  # no level fits: full resolution
    out = read_image(data, "x.dcm", ReadOptions(read_options.pseudonymize, decode_long_side=10_000))
    assert out.pixels.shape == read_image(data, "x.dcm", read_options).pixels.shape


def test_statistics_based_display_decodes_at_full_resolution(
    make_dicom: Callable[..., bytes], read_options: ReadOptions
) -> None:
    # Without a window the display is min-max of the pixels, which a low-pass decode would change.
    data = make_dicom(transfer_syntax="jpeg2000_lossless", bits=12)
    reduced = read_image(data, "x.dcm", ReadOptions(read_options.pseudonymize, decode_long_side=64))
    assert np.array_equal(reduced.pixels, read_image(data, "x.dcm", read_options).pixels)
