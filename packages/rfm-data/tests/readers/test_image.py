"""PNG/JPEG readers on real chest X-rays from the development data, their re-encodings and corrupted copies."""

from __future__ import annotations

import dataclasses
import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from rfm_data.errors import QuarantineError, Reason
from rfm_data.readers import ReadOptions, detect_format, read_image, readers
from rfm_data.readers.image import read_jpeg, read_png
from rfm_data.records import Image2D


@pytest.fixture(scope="module")
def cxr_paths(shared_data: Path) -> list[Path]:
    """Three real CXRs: two adult (ieee8023), one paediatric (Kermany)."""
    covid = sorted((shared_data / "covid_chestxray_ieee8023" / "images").glob("*.png"))[:2]
    kermany = sorted((shared_data / "pediatric_pneumonia_kermany" / "images").glob("*.png"))[:1]
    assert len(covid) == 2 and len(kermany) == 1
    return covid + kermany


@pytest.fixture(scope="module")
def cxr(cxr_paths: list[Path]) -> np.ndarray:
    """The first CXR as uint8 (H, W), decoded independently of the reader under test."""
    with Image.open(cxr_paths[0]) as im:
        assert im.mode == "L"
        return np.array(im)


def _encode(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, fmt, **save)
    return buf.getvalue()


def _read(data: bytes, options: ReadOptions, **limits: int) -> Image2D:
    if limits:
        options = dataclasses.replace(options, dicom=dataclasses.replace(options.dicom, **limits))
    image = read_image(data, "memory://img", options)
    assert isinstance(image, Image2D)
    return image


def _reason(data: bytes, options: ReadOptions, **limits: int) -> Reason:
    with pytest.raises(QuarantineError) as info:
        _read(data, options, **limits)
    return info.value.reason


def test_registered() -> None:
    assert readers.get("png") is read_png and readers.get("jpeg") is read_jpeg


def test_real_pngs(cxr_paths: list[Path], read_options: ReadOptions) -> None:
    for path in cxr_paths:
        data = path.read_bytes()
        assert detect_format(data, path.name) == "png"
        image = _read(data, read_options)
        with Image.open(path) as im:
            expected = np.asarray(im.convert("L"), dtype=np.float32) / 255
        assert image.pixels.dtype == np.float32 and image.pixels.flags.c_contiguous
        np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
        assert (image.meta.orig_height, image.meta.orig_width) == expected.shape
        assert image.meta.photometric == "L" and image.meta.bits_stored == 8
        assert image.meta.patient_id == ""  # PNGs carry no identifiers


def test_16bit_png_keeps_precision(cxr: np.ndarray, read_options: ReadOptions) -> None:
    # Spread the 8-bit values over 16 bits plus a low-order ramp a reader truncating to 8 bits would lose.
    wide = cxr.astype(np.uint16) * 257 + (np.arange(cxr.size, dtype=np.uint16).reshape(cxr.shape) % 200)
    data = _encode(wide)  # uint16 → Pillow mode I;16 → 16-bit grayscale PNG
    image = _read(data, read_options)
    assert image.meta.bits_stored == 16
    np.testing.assert_allclose(image.pixels, wide / 65535.0, atol=1e-6)


def test_rgb_png_and_jpeg_become_luminance(cxr: np.ndarray, read_options: ReadOptions) -> None:
    rgb = np.stack([cxr, (cxr * 0.8).astype(np.uint8), (cxr * 0.5).astype(np.uint8)], axis=-1)
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255
    np.testing.assert_allclose(_read(_encode(rgb), read_options).pixels, luma, atol=1 / 255 + 1e-6)
    jpeg = _read(_encode(rgb, "JPEG", quality=95), read_options)
    assert jpeg.meta.photometric == "RGB"
    assert np.abs(jpeg.pixels - luma).mean() < 0.01


def test_grayscale_jpeg(cxr: np.ndarray, read_options: ReadOptions) -> None:
    image = _read(_encode(cxr, "JPEG", quality=95), read_options)
    assert np.abs(image.pixels - cxr / 255).mean() < 0.01


def test_palette_and_alpha(cxr: np.ndarray, read_options: ReadOptions) -> None:
    palette = Image.fromarray(cxr).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    buf = io.BytesIO()
    palette.save(buf, "PNG")
    expected = np.asarray(palette.convert("L"), dtype=np.float32) / 255
    np.testing.assert_allclose(_read(buf.getvalue(), read_options).pixels, expected, atol=1e-6)
    alpha = np.zeros_like(cxr)
    alpha[:, : cxr.shape[1] // 2] = 255  # right half transparent → black
    image = _read(_encode(np.stack([cxr, alpha], axis=-1), mode="LA"), read_options)
    left = cxr[:, : cxr.shape[1] // 2] / 255
    np.testing.assert_allclose(image.pixels[:, : cxr.shape[1] // 2], left, atol=1e-6)
    assert not image.pixels[:, cxr.shape[1] // 2 :].any()


def test_exif_orientation_is_applied(cxr: np.ndarray, read_options: ReadOptions) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image = _read(_encode(cxr, "JPEG", quality=95, exif=exif), read_options)
    assert image.pixels.shape == (cxr.shape[1], cxr.shape[0])
    assert np.abs(image.pixels - np.rot90(cxr, k=-1) / 255).mean() < 0.01


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_corrupt(
    cxr_paths: list[Path], cxr: np.ndarray, read_options: ReadOptions, fmt: str
) -> None:
    data = cxr_paths[0].read_bytes() if fmt == "PNG" else _encode(cxr, "JPEG")
    for cut in (len(data) // 3, len(data) // 2, len(data) - 20):
        assert _reason(data[:cut], read_options) == Reason.CORRUPT_IMAGE


def test_truncated_png_is_corrupt_even_when_pillow_is_lenient(cxr_paths: list[Path], read_options: ReadOptions,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # an application's global setting
    data = cxr_paths[1].read_bytes()
    assert _reason(data[: len(data) // 2], read_options) == Reason.CORRUPT_IMAGE
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # and we restored it


def test_corrupted_bytes(cxr_paths: list[Path], read_options: ReadOptions) -> None:
    data = bytearray(cxr_paths[2].read_bytes())
    idat = data.find(b"IDAT")
    data[idat + 20 : idat + 220] = np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes()
    assert _reason(bytes(data), read_options) == Reason.CORRUPT_IMAGE
    assert _reason(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, read_options) == Reason.CORRUPT_IMAGE
    with pytest.raises(QuarantineError) as info:  # JPEG bytes given to the PNG reader
        read_png(_encode(np.zeros((8, 8), np.uint8), "JPEG"), "x.png", read_options)
    assert info.value.reason == Reason.CORRUPT_IMAGE


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height 8-bit gray, with a tiny (wrong-sized) IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b""))


@pytest.mark.parametrize(("width", "height"), [(60000, 60000), (100_000, 10), (20_000, 1)])
def test_decompression_bomb_refused_from_header(read_options: ReadOptions, width: int, height: int) -> None:
    tracemalloc.start()
    try:
        reason = _reason(_bomb_png(width, height), read_options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reason == Reason.BAD_DIMENSIONS
    assert peak < 2**20


def test_size_limits_are_configurable(cxr_paths: list[Path], read_options: ReadOptions) -> None:
    data = cxr_paths[0].read_bytes()
    assert _reason(data, read_options, max_side=100) == Reason.BAD_DIMENSIONS
    assert _reason(data, read_options, max_pixels=1000) == Reason.BAD_DIMENSIONS
    assert _reason(_bomb_png(0, 10), read_options) in (Reason.BAD_DIMENSIONS, Reason.CORRUPT_IMAGE)
