"""PNG and JPEG readers (Pillow): 8/16-bit grayscale, RGB, palette and alpha images → float32 [0, 1].

The size limits of :class:`~rfm_data.config.DicomConfig` (``max_side``, ``max_pixels``) apply here too and
are checked from the header, before any pixel is decompressed, so a decompression bomb costs only its
header. Pillow's own global bomb limit and truncated-image switch are not relied upon: the limit is ours,
and truncated files are always quarantined, even where an application set
``ImageFile.LOAD_TRUNCATED_IMAGES = True``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
import zlib
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from rfm_data.config import DicomConfig
from rfm_data.errors import QuarantineError, Reason
from rfm_data.readers import ReadOptions, readers
from rfm_data.records import Image2D, ImageMeta

_ORIENTATION = 0x0112  # EXIF tag: how a camera-made JPEG must be rotated for display
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)


@contextlib.contextmanager
def _strict_pillow() -> Iterator[None]:
    """Pillow settings for one read: truncated data raises, and the global bomb warning stays quiet (our
    own limit, checked from the header, is the one that applies)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _open(data: bytes, fmt: str) -> Image.Image:
    """Parse the header only (Pillow decodes lazily)."""
    try:
        return Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError:
        raise QuarantineError(Reason.BAD_DIMENSIONS, "image is larger than Pillow's hard limit") from None
    except (UnidentifiedImageError, *_DECODE_ERRORS) as err:
        raise QuarantineError(Reason.CORRUPT_IMAGE, f"not a readable {fmt} ({type(err).__name__})") from None


def _check_size(im: Image.Image, cfg: DicomConfig) -> None:
    width, height = im.size
    if width < 1 or height < 1:
        raise QuarantineError(Reason.BAD_DIMENSIONS, "width and height must be >= 1")
    if max(width, height) > cfg.max_side:
        raise QuarantineError(Reason.BAD_DIMENSIONS, f"a side exceeds max_side={cfg.max_side}")
    if width * height > cfg.max_pixels:
        raise QuarantineError(Reason.BAD_DIMENSIONS, f"width*height exceeds max_pixels={cfg.max_pixels}")


def _scaled(arr: np.ndarray, maximum: float) -> np.ndarray:
    # One pass from the integer array straight to float32: no float64 temporary.
    out: np.ndarray = np.multiply(arr, np.float32(1.0 / maximum), dtype=np.float32)
    return out


def _gray8(im: Image.Image) -> np.ndarray:
    return _scaled(np.asarray(im), 255.0)


def _gray16(im: Image.Image) -> np.ndarray:
    return _scaled(np.asarray(im), 65535.0)


def _int32(im: Image.Image) -> np.ndarray:
    # Mode "I" holds 16-bit grayscale PNGs in some Pillow versions; values beyond 16 bits are clipped.
    out: np.ndarray = np.clip(_scaled(np.asarray(im), 65535.0), 0.0, 1.0)
    return out


def _bilevel(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.float32)


def _with_alpha(im: Image.Image) -> np.ndarray:
    # Transparent regions become black, as when the development data was converted (composite on black).
    la = np.asarray(im.convert("LA"))
    out: np.ndarray = np.multiply(la[..., 0], la[..., 1], dtype=np.float32)
    out *= np.float32(1.0 / 65025.0)
    return out


def _palette(im: Image.Image) -> np.ndarray:
    return _with_alpha(im) if "transparency" in im.info else _gray8(im.convert("L"))


def _luminance(im: Image.Image) -> np.ndarray:
    # Pillow's L conversion is the ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B), the same as DICOM's YBR.
    return _gray8(im.convert("L"))


_MODES: dict[str, Callable[[Image.Image], np.ndarray]] = {
    "L": _gray8, "I;16": _gray16, "I;16L": _gray16, "I;16B": _gray16, "I": _int32, "1": _bilevel,
    "LA": _with_alpha, "RGBA": _with_alpha, "PA": _with_alpha, "P": _palette,
}
_BITS = {"I;16": 16, "I;16L": 16, "I;16B": 16, "I": 16, "1": 1}


def _pixels(im: Image.Image) -> np.ndarray:
    """Decode and convert to float32 (H, W) in [0, 1]; other modes (RGB, CMYK, YCbCr, ...) → luminance."""
    try:
        im.load()
        out = _MODES.get(im.mode, _luminance)(im)
    except _DECODE_ERRORS as err:
        raise QuarantineError(Reason.CORRUPT_IMAGE, f"pixel data could not be decoded ({type(err).__name__})") from None
    return np.ascontiguousarray(out)


def _upright(im: Image.Image) -> Image.Image:
    """Apply a JPEG's EXIF orientation (photographed films); PNGs from modalities never carry one."""
    try:
        rotated = im.getexif().get(_ORIENTATION, 1) not in (1, None)
    except _DECODE_ERRORS:
        return im  # unreadable EXIF is metadata damage, not image damage
    return ImageOps.exif_transpose(im) if rotated else im


def _check_complete(data: bytes, fmt: str) -> None:
    # Pillow decodes a PNG cut inside its last chunks without complaint (it skips the zlib checksum), so a
    # file without its IEND chunk is refused here: it was cut, and nothing proves the pixels are whole.
    if fmt == "PNG" and data.rfind(b"IEND", max(0, len(data) - 4096)) < 0:
        raise QuarantineError(Reason.CORRUPT_IMAGE, "PNG has no IEND chunk (truncated)")


def _read(data: bytes, fmt: str, options: ReadOptions) -> Image2D:
    with _strict_pillow():
        im = _open(data, fmt)
        try:
            _check_size(im, options.dicom)
            mode, (width, height) = im.mode, im.size
            _check_complete(data, fmt)
            pixels = _pixels(_upright(im) if fmt == "JPEG" else im)
        finally:
            im.close()
    meta = ImageMeta(photometric=mode, bits_stored=_BITS.get(mode, 8), orig_height=height, orig_width=width)
    return Image2D(pixels=pixels, meta=meta)


@readers.register("png")
def read_png(data: bytes, source: str, options: ReadOptions) -> Image2D:
    """Decode a PNG: 1/8/16-bit grayscale, palette, RGB(A) → float32 ``(H, W)`` in [0, 1].

    Args:
        data: The file's bytes.
        source: Where they came from (not parsed).
        options: Only the size limits (``options.dicom.max_side`` / ``max_pixels``) are used.

    Returns:
        ``Image2D``; ``meta.photometric`` is the Pillow mode (``"L"``, ``"I;16"``, ``"RGB"``...), identifiers
        are empty (PNG files carry none: dataset adapters supply them).

    Raises:
        QuarantineError: ``BAD_DIMENSIONS`` (from the header, before decoding) or ``CORRUPT_IMAGE``.
    """
    return _read(data, "PNG", options)


@readers.register("jpeg")
def read_jpeg(data: bytes, source: str, options: ReadOptions) -> Image2D:
    """Decode a JPEG (grayscale, RGB, CMYK) into luminance, honouring the EXIF orientation.

    Same contract as :func:`read_png`.
    """
    return _read(data, "JPEG", options)


__all__ = ["read_jpeg", "read_png"]
