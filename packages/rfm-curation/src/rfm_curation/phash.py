"""Perceptual image hashes (256-bit difference hash) computed from the shards that ingest wrote.

Decision: hashes are computed on demand from the stored, preprocessed pixels (one shard read and one decode
per image, each shard read once) rather than stored in the manifest: they are needed only when perceptual
deduplication is asked for, and the stored pixels are already de-identified and resized, so the hash is
insensitive to the source format, bit depth and size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from rfm_data import io
from rfm_data.shards import decode_pixels, read_shard

# 16 x 16 and not the classic 8 x 8: chest X-rays all share one layout, and on the bundled sample 8 x 8 hashes
# of different patients differ by 1-2 bits of 64, while 16 x 16 hashes differ by >= 22 of 256 (a re-encoded,
# re-windowed copy by about 1).
HASH_SIDE = 16
HASH_BYTES = HASH_SIDE * HASH_SIDE // 8


def dhash(pixels: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """256-bit difference hash as 32 bytes: is each of 16x17 grey cells brighter than its right neighbour."""
    grey = np.asarray(pixels, dtype=np.float32)
    small = Image.fromarray(grey, mode="F").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BILINEAR)
    cells = np.asarray(small)
    return np.packbits((cells[:, 1:] > cells[:, :-1]).ravel())


def shard_hashes(dataset_url: str, shards: Sequence[str], shard_rows: Sequence[int]) -> npt.NDArray[np.uint8]:
    """dHash codes ``(n, 32)`` of each (shard, row) pair; rows without pixels (quarantined) get zeros."""
    out = np.zeros((len(shards), HASH_BYTES), dtype=np.uint8)
    by_shard: dict[str, list[int]] = {}
    for i, shard in enumerate(shards):
        if shard and shard_rows[i] >= 0:
            by_shard.setdefault(shard, []).append(i)
    columns = ["image", "height", "width", "dtype", "encoding"]
    for shard, positions in sorted(by_shard.items()):
        table = read_shard(io.join(dataset_url, shard), columns).to_pydict()
        for i in positions:
            r = shard_rows[i]
            pixels = decode_pixels(table["image"][r], table["height"][r], table["width"][r], table["dtype"][r],
                                   table["encoding"][r])
            out[i] = dhash(pixels)
    return out
