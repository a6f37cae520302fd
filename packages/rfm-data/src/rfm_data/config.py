"""Configuration dataclasses for ingestion (one per component), with ``str`` enums for every choice."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum

from rfm_data.errors import ConfigError

DEFAULT_KEY_ENV = "RFM_DEID_KEY"


class VoiMode(str, Enum):
    """How stored values become display values (DICOM PS3.3 C.11.2).

    ``auto`` is the standard-conforming default: the first VOI LUT in the file, else its first window
    (centre/width with the VOI LUT Function), else the full range of the Modality-LUT output.
    """

    AUTO = "auto"
    WINDOW = "window"  # first window only; min-max when the file has none
    MINMAX = "minmax"  # ignore VOI attributes, stretch the modality output to [0, 1]
    PERCENTILE = "percentile"  # robust 0.5-99.5 percentile stretch (for files with bad windows)


class FramePolicy(str, Enum):
    """What a 2D reader does with a multi-frame image."""

    FIRST = "first"
    MIDDLE = "middle"
    QUARANTINE = "quarantine"


class BurnedInPolicy(str, Enum):
    """Images flagged ``BurnedInAnnotation = YES`` may show PHI in the pixels."""

    QUARANTINE = "quarantine"
    KEEP = "keep"


class ResizeMode(str, Enum):
    KEEP_ASPECT = "keep_aspect"  # long side = target, short side scaled
    PAD = "pad"  # keep aspect, then pad to a square with zeros


class PixelDtype(str, Enum):
    UINT8 = "uint8"
    UINT16 = "uint16"


class Encoding(str, Enum):
    """How pixels are stored inside a shard."""

    RAW = "raw"  # little-endian array bytes (Parquet compresses the column with LZ4)
    PNG = "png"


@dataclass
class DicomConfig:
    voi: VoiMode = VoiMode.AUTO
    frame: FramePolicy = FramePolicy.FIRST
    max_pixels: int = 80_000_000  # refuse larger images before allocating (rows * cols * frames)
    max_side: int = 16_384
    # JPEG 2000 only: decode the coarsest wavelet level whose long side is still >= 2x the stored long side
    # (~7x faster on 2,500 px radiographs; stored pixels within ~1 grey level of a full decode on average).
    reduced_decode: bool = True
    max_voxels: int = 512 * 512 * 2048  # volumes (NIfTI, DICOM series): ~2 GiB as float32


@dataclass
class DeidConfig:
    """De-identification. The HMAC key comes from ``key`` or the ``key_env`` environment variable."""

    key: str | None = None
    key_env: str = DEFAULT_KEY_ENV
    burned_in: BurnedInPolicy = BurnedInPolicy.QUARANTINE

    def resolve_key(self) -> bytes:
        key = self.key or os.environ.get(self.key_env, "")
        if not key:
            raise ConfigError(
                f"deid.key is not set: pass --deid-key, set deid.key in the config, or export {self.key_env}"
                " (a secret of your site; the same key gives the same pseudonyms across runs)"
            )
        return key.encode("utf-8")


@dataclass
class PreprocessConfig:
    long_side: int = 256
    resize: ResizeMode = ResizeMode.KEEP_ASPECT
    dtype: PixelDtype = PixelDtype.UINT8
    encoding: Encoding = Encoding.RAW

    def __post_init__(self) -> None:
        if not 16 <= self.long_side <= 8192:
            raise ConfigError(f"preprocess.long_side={self.long_side} is out of range: use 16..8192 (e.g. 256 or 512)")


@dataclass
class IngestConfig:
    shard_size: int = 1024  # samples per shard
    workers: int = 0  # processes; 0 = os.cpu_count()
    require_report: bool = False  # quarantine images without a report text
    dicom: DicomConfig = field(default_factory=DicomConfig)
    deid: DeidConfig = field(default_factory=DeidConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ConfigError(f"shard_size={self.shard_size} must be >= 1 (e.g. 1024)")
        if self.workers < 0:
            raise ConfigError(f"workers={self.workers} must be >= 0 (0 = one per CPU core)")
