"""Perceptual image hashes (64-bit difference hash) computed from the shards that ingest wrote.

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

HASH_SIDE = 8


def dhash(pixels: npt.NDArray[np.generic]) -> int:
    """64-bit difference hash: is each of 8x9 grey cells brighter than its right neighbour."""
    grey = np.asarray(pixels, dtype=np.float32)
    small = Image.fromarray(grey, mode="F").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BILINEAR)
    cells = np.asarray(small)
    bits = (cells[:, 1:] > cells[:, :-1]).ravel()
    return int(np.packbits(bits, bitorder="little").view("<u8")[0])


def shard_hashes(dataset_url: str, shards: Sequence[str], shard_rows: Sequence[int]) -> npt.NDArray[np.uint64]:
    """dHash of each (shard, row) pair; rows without a shard (quarantined) get 0 and must be masked out."""
    out = np.zeros(len(shards), dtype=np.uint64)
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
