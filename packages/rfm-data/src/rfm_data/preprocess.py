"""Turn a decoded image ([0, 1] float) into the stored shard image: resized, padded, quantised."""

from __future__ import annotations

import numpy as np
from PIL import Image

from rfm_data.config import PixelDtype, PreprocessConfig, ResizeMode

_MAX = {PixelDtype.UINT8: 255, PixelDtype.UINT16: 65535}


def target_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(H, W) with the long side at ``long_side`` and the aspect ratio kept (each side >= 1)."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(pixels: np.ndarray, long_side: int, source_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Antialiased resize of a float32 (H, W) image so that its long side is ``long_side``.

    ``source_shape`` is the original geometry when ``pixels`` was decoded at reduced resolution: the output
    size follows the original aspect ratio, so it is the same whichever resolution the decoder produced.
    """
    height, width = source_shape or (pixels.shape[0], pixels.shape[1])
    h, w = target_size(height, width, long_side)
    if (h, w) == pixels.shape:
        return pixels
    # PIL's 32-bit float mode keeps 16-bit precision; its bilinear filter widens its support when
    # shrinking (antialiased), and reducing_gap box-reduces first, which makes 2500 px -> 256 px cheap.
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))  # mode "F"
    out = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(out, dtype=np.float32)


def pad_square(pixels: np.ndarray) -> np.ndarray:
    """Centre the image on a square black canvas."""
    h, w = pixels.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=pixels.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = pixels
    return out


def quantise(pixels: np.ndarray, dtype: PixelDtype) -> np.ndarray:
    """[0, 1] float → uint8 / uint16 with rounding (values outside [0, 1] are clipped)."""
    peak = _MAX[dtype]
    out: np.ndarray = np.rint(np.clip(pixels, 0.0, 1.0) * peak).astype(dtype.value)
    return out


def preprocess(pixels: np.ndarray, cfg: PreprocessConfig, source_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The stored image: resized to ``cfg.long_side``, optionally padded square, quantised to ``cfg.dtype``."""
    out = resize(pixels, cfg.long_side, source_shape)
    if cfg.resize is ResizeMode.PAD:
        out = pad_square(out)
    return quantise(out, cfg.dtype)
