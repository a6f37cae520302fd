"""Image readers, one per format, in a registry: ``readers.get("dicom")(data, source, options)``.

A reader turns the bytes of one file into an :class:`~rfm_data.records.Image2D` (or a
:class:`~rfm_data.records.Volume`), or raises :class:`~rfm_data.errors.QuarantineError` with a specific
reason. Readers import their heavy dependencies lazily so the core package stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rfm_data.config import BurnedInPolicy, DicomConfig
from rfm_data.deid import Pseudonymizer
from rfm_data.errors import QuarantineError, Reason
from rfm_data.records import Image2D, Volume
from rfm_data.registry import Registry


@dataclass
class ReadOptions:
    """Everything a reader may need besides the bytes."""

    pseudonymize: Pseudonymizer
    dicom: DicomConfig = field(default_factory=DicomConfig)
    burned_in: BurnedInPolicy = BurnedInPolicy.QUARANTINE
    # A reader may decode at reduced resolution if the long side stays >= this (None: always full size).
    # Ingest passes the stored long side: pixels it would throw away by resizing are never decoded.
    decode_long_side: int | None = None


ReadFn = Callable[[bytes, str, ReadOptions], Image2D | Volume]
readers: Registry[Image2D | Volume] = Registry("image reader")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_SUFFIX_FORMATS = {".dcm": "dicom", ".dicom": "dicom", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg",
                   ".nii": "nifti", ".nii.gz": "nifti"}


def detect_format(data: bytes, name: str = "") -> str:
    """Reader name for ``data``: magic bytes first, the file suffix only as a hint for DICOM/NIfTI."""
    if data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    lower = name.lower()
    for suffix, fmt in _SUFFIX_FORMATS.items():
        if lower.endswith(suffix):
            # DICOM without preamble and NIfTI have no reliable magic at offset 0: let the reader decide.
            return fmt
    raise QuarantineError(Reason.UNSUPPORTED_FORMAT, "bytes are not DICOM, PNG, JPEG or NIfTI")


def read_image(data: bytes, source: str, options: ReadOptions, fmt: str = "") -> Image2D | Volume:
    """Decode one file with the reader for ``fmt`` (detected from the bytes when empty)."""
    name = fmt or detect_format(data, source)
    if name not in readers:
        raise QuarantineError(Reason.UNSUPPORTED_FORMAT, f"no reader for format {name!r}")
    return readers.get(name)(data, source, options)


def _register_builtin() -> None:
    # Imported for their @readers.register side effects; each module imports its codecs lazily.
    from rfm_data.readers import dicom, image, volume  # noqa: F401


_register_builtin()
__all__ = ["ReadFn", "ReadOptions", "detect_format", "read_image", "readers"]
