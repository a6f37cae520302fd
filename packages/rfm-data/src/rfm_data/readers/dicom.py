"""DICOM reader: one Part 10 file (or a bare dataset) → a display-ready :class:`~rfm_data.records.Image2D`.

Order of work, chosen so that bad files cost little and never crash ingestion:

1. Parse the header with pydicom up to Pixel Data (``stop_before_pixels``: the pixel bytes are never copied,
   the decoder later reads its frame straight from the file's buffer) and check the element structure for
   truncation ourselves, because pydicom silently accepts cut files.
2. Refuse before allocating: dimensions, frames, bit depth, burned-in annotation, transfer syntax and codec.
3. Decode only the frame that is needed, then apply the grayscale pipeline of PS3.3 C.11: Modality LUT
   (rescale), VOI (LUT, window or a stretch), then MONOCHROME1 inversion. Colour images become luminance.
4. Copy an allow-list of non-identifying attributes into :class:`~rfm_data.records.ImageMeta` and pass every
   identifier through the pseudonymizer. Nothing else from the header leaves this module.

pydicom's warnings quote header values (which may be PHI), so parsing and decoding run with value
validation off and warnings silenced; quarantine details name what is wrong, never a value.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom import config as pydicom_config
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import Decoder, get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.pixels.utils import as_pixel_options

from rfm_data.config import BurnedInPolicy, DicomConfig, FramePolicy, VoiMode
from rfm_data.errors import QuarantineError, Reason
from rfm_data.readers import ReadOptions, readers
from rfm_data.readers.jpeg2000 import decode_reduced
from rfm_data.records import Image2D, ImageMeta

CODECS_HINT = 'install the codec plugins: pip install "rfm-data[codecs]"'
_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_BITS_ALLOCATED = frozenset({1, 8, 16, 32, 64})
# A bare dataset (no preamble) starts with a group 0x0002 or 0x0008 tag, little or big endian.
_BARE_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as DICOM's YBR_FULL


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value warnings, whose messages quote header values (possible PHI)."""
    settings = pydicom_config.settings
    previous = settings.reading_validation_mode
    settings.reading_validation_mode = pydicom_config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode = previous


# ------------------------------------------------------------------------------------ structure (truncation)
class _TruncatedError(Exception):
    pass


@dataclass(frozen=True)
class _Encoding:
    implicit: bool
    little: bool

    def unpack(self, fmt: str, buf: bytes, pos: int) -> tuple[int, ...]:
        fmt = ("<" if self.little else ">") + fmt  # standard sizes: H = 2 bytes, L = 4 bytes
        if pos + struct.calcsize(fmt) > len(buf):
            raise _TruncatedError
        return struct.unpack_from(fmt, buf, pos)


_EXPLICIT_LE = _Encoding(implicit=False, little=True)
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


def _element_header(buf: bytes, pos: int, enc: _Encoding) -> tuple[int, int, int]:
    """(tag, value length, position of the value) of the element at ``pos``."""
    group, element = enc.unpack("HH", buf, pos)
    if enc.implicit or group == 0xFFFE:  # items and delimiters have no VR in any encoding
        return group << 16 | element, enc.unpack("L", buf, pos + 4)[0], pos + 8
    if buf[pos + 4 : pos + 6] in _LONG_VRS:
        return group << 16 | element, enc.unpack("L", buf, pos + 8)[0], pos + 12
    return group << 16 | element, enc.unpack("H", buf, pos + 6)[0], pos + 8


def _skip_items(buf: bytes, pos: int, enc: _Encoding) -> int:
    """Skip the items of an undefined-length value up to and including its sequence delimiter."""
    while True:
        tag, length, pos = _element_header(buf, pos, enc)
        if tag == 0xFFFEE0DD:
            return pos
        pos = _skip_elements(buf, pos, enc, nested=True) if length == _UNDEFINED else pos + length


_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
                  b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}) | _LONG_VRS


def _actual_encoding(buf: bytes, pos: int, enc: _Encoding) -> _Encoding:
    """Some writers use implicit VR where the syntax says explicit (always so inside UN sequences), or the
    reverse; like pydicom, decide per dataset from whether its first element carries a VR."""
    if pos + 6 > len(buf) or buf[pos : pos + 2] == b"\xfe\xff" or buf[pos : pos + 2] == b"\xff\xfe":
        return enc
    has_vr = buf[pos + 4 : pos + 6] in _VRS
    return enc if has_vr != enc.implicit else _Encoding(implicit=not has_vr, little=enc.little)


def _skip_elements(buf: bytes, pos: int, enc: _Encoding, nested: bool) -> int:
    """Skip data elements; nested datasets end at an item delimiter, the top level at the end of ``buf``."""
    enc = _actual_encoding(buf, pos, enc)
    while nested or pos < len(buf):
        tag, length, value_pos = _element_header(buf, pos, enc)
        if tag == 0xFFFEE00D:
            return value_pos
        pos = _skip_items(buf, value_pos, enc) if length == _UNDEFINED else value_pos + length
        if pos > len(buf):
            raise _TruncatedError
    return pos


def _meta_end(data: bytes) -> int:
    """Offset of the dataset after the file meta group (always explicit VR little endian)."""
    pos = 132
    while pos + 2 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        _, length, value_pos = _element_header(data, pos, _EXPLICIT_LE)
        pos = value_pos + length
    if pos > len(data):
        raise _TruncatedError
    return pos


def _is_truncated(data: bytes, start: int, enc: _Encoding) -> bool:
    """True when an element's declared length runs past the end of ``data`` (pydicom reads such files)."""
    try:
        _skip_elements(data, start, enc, nested=False)
    except _TruncatedError:
        return True
    except RecursionError:  # absurdly deep nesting: not truncated, but not ours to walk either
        return False
    return False


# ---------------------------------------------------------------------------------------------- header
@dataclass(frozen=True)
class _PixelData:
    """The PixelData value; native data is a view into the file's bytes, decoded in place without a copy."""

    value: memoryview | bytes
    encapsulated: bool


def _pixel_element(data: bytes, pos: int, enc: _Encoding) -> _PixelData | None:
    """The PixelData element starting at ``pos`` (where pydicom's header parse stopped), if it is one."""
    try:
        tag, length, value_pos = _element_header(data, pos, enc)
        if tag != _PIXEL_DATA:  # end of file, or Float/Double Float Pixel Data (not supported)
            return None
        if length == _UNDEFINED:  # encapsulated: fragments up to the sequence delimiter (8 bytes)
            # pydicom's frame parser needs bytes here; compressed data is small next to its decoding.
            return _PixelData(data[value_pos : _skip_items(data, value_pos, enc) - 8], True)
    except _TruncatedError:
        return None
    return _PixelData(memoryview(data)[value_pos : value_pos + length], False)


def _read_header(data: bytes, has_preamble: bool) -> tuple[Dataset, int]:
    """Header up to (not including) PixelData, and the offset where PixelData starts."""
    fp = io.BytesIO(data)
    with _quiet_pydicom():
        ds = dcmread(fp, force=not has_preamble, stop_before_pixels=True)
    return ds, fp.tell()


def _inflated(data: bytes) -> tuple[Dataset, _PixelData | None]:
    # Deflated datasets are inflated by pydicom into a new buffer: offsets into ``data`` mean nothing.
    with _quiet_pydicom():
        ds = dcmread(io.BytesIO(data))
    if _PIXEL_DATA not in ds:
        return ds, None
    return ds, _PixelData(ds.PixelData, bool(ds["PixelData"].is_undefined_length))


def _parse(data: bytes) -> tuple[Dataset, _PixelData | None]:
    """Parse the header without touching pixels; NOT_DICOM / TRUNCATED / DECODE_ERROR otherwise."""
    has_preamble = data[128:132] == b"DICM"
    if not has_preamble and data[:2] not in _BARE_STARTS:
        raise QuarantineError(Reason.NOT_DICOM, "no DICM prefix and no DICOM dataset at offset 0")
    try:
        start = _meta_end(data) if has_preamble else 0
        ds, stop = _read_header(data, has_preamble)
    except InvalidDicomError:
        raise QuarantineError(Reason.NOT_DICOM, "pydicom does not recognise the file") from None
    except Exception as err:  # pydicom raises many types on corrupt input; all mean "unparseable"
        reason = Reason.TRUNCATED if isinstance(err, _TruncatedError) or _is_truncated(
            data, 0, _EXPLICIT_LE) else Reason.DECODE_ERROR
        raise QuarantineError(reason, f"header parse failed ({type(err).__name__})") from None
    if _declared_syntax(ds) == uid.DeflatedExplicitVRLittleEndian:
        return _inflated(data)
    enc = _actual_encoding(data, start, _encoding_of(ds) or _EXPLICIT_LE)
    if _is_truncated(data, start, enc):
        raise QuarantineError(Reason.TRUNCATED, "an element runs past the end of the file")
    if len(ds) == 0:  # checked after truncation: pydicom drops every element when pixel data is cut short
        raise QuarantineError(Reason.NOT_DICOM, "no data elements could be parsed")
    return ds, _pixel_element(data, stop, enc)


def _declared_syntax(ds: Dataset) -> uid.UID | None:
    meta = getattr(ds, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    return uid.UID(str(value).strip()) if value else None


def _encoding_of(ds: Dataset) -> _Encoding | None:
    implicit, little = ds.original_encoding
    return None if implicit is None or little is None else _Encoding(implicit=implicit, little=little)


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    """An integer attribute; a missing or unparseable one is BAD_DIMENSIONS (these are all geometry)."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            value = default  # an empty optional attribute (e.g. NumberOfFrames) means its default
        if value is None:
            raise ValueError
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise QuarantineError(Reason.BAD_DIMENSIONS, f"{keyword} is missing or not an integer") from None


@dataclass(frozen=True)
class _Geometry:
    rows: int
    cols: int
    frames: int
    samples: int
    bits_allocated: int


def _geometry(ds: Dataset, cfg: DicomConfig) -> _Geometry:
    """Validate the pixel module against the limits before any pixel buffer is allocated."""
    with _quiet_pydicom():
        geom = _Geometry(_int(ds, "Rows"), _int(ds, "Columns"), _int(ds, "NumberOfFrames", 1),
                         _int(ds, "SamplesPerPixel", 1), _int(ds, "BitsAllocated"))
    if min(geom.rows, geom.cols, geom.frames) < 1:
        raise QuarantineError(Reason.BAD_DIMENSIONS, "rows, columns and frames must be >= 1")
    if max(geom.rows, geom.cols) > cfg.max_side:
        raise QuarantineError(Reason.BAD_DIMENSIONS, f"a side exceeds max_side={cfg.max_side}")
    if geom.rows * geom.cols * geom.frames > cfg.max_pixels:
        raise QuarantineError(Reason.BAD_DIMENSIONS, f"rows*columns*frames exceeds max_pixels={cfg.max_pixels}")
    if geom.bits_allocated not in _BITS_ALLOCATED or geom.samples not in (1, 3):
        raise QuarantineError(Reason.BAD_DIMENSIONS, "unsupported BitsAllocated or SamplesPerPixel")
    return geom


def _burned_in(ds: Dataset, policy: BurnedInPolicy) -> bool:
    flagged = str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"
    if flagged and policy == BurnedInPolicy.QUARANTINE:
        raise QuarantineError(Reason.BURNED_IN_ANNOTATION, "BurnedInAnnotation is YES (text in the pixels)")
    return flagged


def _syntax(ds: Dataset, pixels: _PixelData) -> uid.UID:
    """The transfer syntax, inferred from the parsed encoding for native pixels when the meta lacks it."""
    syntax = _declared_syntax(ds)
    if syntax is not None:
        return syntax
    enc = _encoding_of(ds)
    if enc is None or pixels.encapsulated:
        raise QuarantineError(Reason.UNSUPPORTED_SYNTAX, "no transfer syntax and compressed pixel data")
    if enc.implicit:
        return uid.ImplicitVRLittleEndian
    return uid.ExplicitVRLittleEndian if enc.little else uid.ExplicitVRBigEndian


def _decoder(syntax: uid.UID) -> Decoder:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise QuarantineError(Reason.UNSUPPORTED_SYNTAX, f"no decoder exists for transfer syntax {syntax}") from None
    if not decoder.is_available:
        name = syntax.name if syntax.is_transfer_syntax else str(syntax)
        raise QuarantineError(Reason.CODEC_MISSING, f"cannot decode {name}: {CODECS_HINT}")
    return decoder


def _check_native_length(ds: Dataset, geom: _Geometry, pixels: _PixelData, syntax: uid.UID) -> None:
    """Native pixel data shorter than rows*cols*frames*samples*bits says: the file lost its tail."""
    if syntax.is_encapsulated or pixels.encapsulated:
        return  # encapsulated frames carry their own lengths; the codec reports a short frame
    count = geom.rows * geom.cols * geom.frames * geom.samples
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        count = count * 2 // 3  # native 4:2:2 stores two chroma samples per two pixels
    expected = math.ceil(count * geom.bits_allocated / 8)
    if len(pixels.value) < expected:
        raise QuarantineError(Reason.TRUNCATED, f"pixel data has {len(pixels.value)} of {expected} bytes")


def _frame_index(frames: int, policy: FramePolicy) -> int:
    if frames == 1:
        return 0
    index = {FramePolicy.FIRST: 0, FramePolicy.MIDDLE: frames // 2}.get(policy)
    if index is None:
        raise QuarantineError(Reason.NOT_2D, f"multi-frame image ({frames} frames) and frame policy {policy.value}")
    return index


def _decode(decoder: Decoder, ds: Dataset, pixels: _PixelData, syntax: uid.UID, index: int) -> np.ndarray:
    """Decode one frame straight from the file's bytes (pydicom reads only that frame's data)."""
    try:
        with _quiet_pydicom():
            options = as_pixel_options(ds, transfer_syntax_uid=syntax, pixel_keyword="PixelData")
            arr, _ = decoder.as_array(pixels.value, index=index, **options)  # as_rgb (YBR → RGB) by default
    except Exception as err:  # codec plugins raise arbitrary types; each one is a per-file decode failure
        raise QuarantineError(Reason.DECODE_ERROR, f"pixel decoding failed ({type(err).__name__})") from None
    return arr


# --------------------------------------------------------------------------------------------- display
def _first_float(ds: Dataset, keyword: str) -> float | None:
    """First value of a (possibly multi-valued) numeric attribute; None when absent or not finite."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        first = float(value[0]) if isinstance(value, Sequence) and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return first if math.isfinite(first) else None


def _modality(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values → modality values (e.g. HU) as a new float32 array we own and may modify in place."""
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    out = arr.astype(np.float32)
    slope = _first_float(ds, "RescaleSlope")
    intercept = _first_float(ds, "RescaleIntercept") or 0.0
    if slope is not None and slope not in (0.0, 1.0):  # a zero slope is invalid: ignore it, keep the signal
        out *= np.float32(slope)
    if intercept:
        out += np.float32(intercept)
    return out


def _stretch(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] to [0, 1] in place, clipping outside; a flat range gives zeros."""
    if not hi > lo:
        values.fill(0.0)
        return values
    values -= np.float32(lo)
    values *= np.float32(1.0 / (hi - lo))
    return np.clip(values, 0.0, 1.0, out=values)


def _minmax(values: np.ndarray, ds: Dataset) -> np.ndarray:
    return _stretch(values, float(values.min()), float(values.max()))


def _percentile(values: np.ndarray, ds: Dataset) -> np.ndarray:
    # Percentiles of a regular subsample (~1M pixels): same result to display precision, several times faster.
    step = max(1, int(math.sqrt(values.size / 1_000_000)))
    lo, hi = np.percentile(values[::step, ::step], [0.5, 99.5])
    return _stretch(values, float(lo), float(hi))


def _linear(values: np.ndarray, centre: float, width: float) -> np.ndarray | None:
    if width < 1:  # PS3.3 C.11.2.1.2.1: LINEAR requires width >= 1
        return None
    if width == 1:
        return (values > centre - 0.5).astype(np.float32)
    return _stretch(values, centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2)


def _linear_exact(values: np.ndarray, centre: float, width: float) -> np.ndarray | None:
    return _stretch(values, centre - width / 2, centre + width / 2) if width > 0 else None


def _sigmoid(values: np.ndarray, centre: float, width: float) -> np.ndarray | None:
    if not width > 0:
        return None
    # 1 / (1 + exp(-4(x-c)/w)) written with tanh, which cannot overflow.
    values -= np.float32(centre)
    values *= np.float32(2.0 / width)
    np.tanh(values, out=values)
    values += 1.0
    values *= 0.5
    return values


_VOI_FUNCTIONS: dict[str, Callable[[np.ndarray, float, float], np.ndarray | None]] = {
    "LINEAR": _linear, "LINEAR_EXACT": _linear_exact, "SIGMOID": _sigmoid,
}


def _window(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The first window of the file with its VOI LUT Function; None when there is no valid window."""
    centre, width = _first_float(ds, "WindowCenter"), _first_float(ds, "WindowWidth")
    if centre is None or width is None:
        return None
    name = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    # An unknown function name is treated as the standard default, LINEAR.
    return _VOI_FUNCTIONS.get(name, _linear)(values, centre, width)


def _lut_entries(item: Dataset, count: int, little: bool) -> np.ndarray | None:
    data = item.get("LUTData")
    if data is None:
        return None
    if isinstance(data, bytes):  # OW: always 16-bit words
        lut = np.frombuffer(data, dtype="<u2" if little else ">u2")
    else:
        lut = np.atleast_1d(np.asarray(data, dtype=np.int64))
    return lut[:count].astype(np.float32) if lut.size else None


def _voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The first VOI LUT of the VOI LUT Sequence, output scaled by its declared bit depth."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    item = seq[0]
    try:
        count, first, bits = (int(v) for v in item.LUTDescriptor)
    except (AttributeError, TypeError, ValueError):
        return None
    count = count or 65536  # PS3.3 C.11.2.1.1: 0 means 2**16 entries
    if first >= 32768 and int(ds.get("PixelRepresentation", 0) or 0) == 1:
        first -= 65536  # the descriptor's first value is signed for signed pixels
    lut = _lut_entries(item, count, little=ds.original_encoding[1] is not False)
    if lut is None or not 1 <= bits <= 16:
        return None
    lut *= np.float32(1.0 / (2**bits - 1))
    np.clip(lut, 0.0, 1.0, out=lut)
    # In place on our own float32 copy, then uint16 indices (a LUT has <= 2**16 entries): no 8-byte
    # temporaries per pixel. Adding 0.5 before the truncating cast rounds to the nearest entry.
    np.clip(values, first, first + lut.size - 1, out=values)
    values -= np.float32(first - 0.5)
    out: np.ndarray = np.take(lut, values.astype(np.uint16), mode="clip")
    return out


def _auto(values: np.ndarray, ds: Dataset) -> np.ndarray:
    for step in (_voi_lut, _window):
        out = step(values, ds)
        if out is not None:
            return out
    return _minmax(values, ds)


def _window_or_minmax(values: np.ndarray, ds: Dataset) -> np.ndarray:
    out = _window(values, ds)
    return out if out is not None else _minmax(values, ds)


_VOI_MODES: dict[VoiMode, Callable[[np.ndarray, Dataset], np.ndarray]] = {
    VoiMode.AUTO: _auto, VoiMode.WINDOW: _window_or_minmax, VoiMode.MINMAX: _minmax,
    VoiMode.PERCENTILE: _percentile,
}


def _luminance(arr: np.ndarray, ds: Dataset, bits_stored: int) -> np.ndarray:
    """Colour → luminance in [0, 1] (VOI does not apply to colour images, PS3.3 C.11.2)."""
    if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        bits_stored = arr.dtype.itemsize * 8  # the palette's own entry size (8 or 16 bits)
    if arr.ndim == 2:
        return arr.astype(np.float32) * np.float32(1.0 / (2**bits_stored - 1))
    out = arr @ _LUMA if arr.dtype.itemsize < 4 else arr.astype(np.float32) @ _LUMA
    out *= np.float32(1.0 / (2**bits_stored - 1))
    return np.clip(out, 0.0, 1.0, out=out)


def _display(arr: np.ndarray, ds: Dataset, geom: _Geometry, bits_stored: int, voi: VoiMode) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if geom.samples == 3 or photometric == "PALETTE COLOR":
        return _luminance(arr, ds, bits_stored)
    with _quiet_pydicom():
        values = _modality(arr, ds)
        out = _VOI_MODES[voi](values, ds)
    if photometric == "MONOCHROME1":  # after VOI, as the standard orders it: high values are dark
        out = np.subtract(np.float32(1.0), out, out=out)
    return np.ascontiguousarray(out, dtype=np.float32)


# ------------------------------------------------------------------------------------------------ meta
def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed attribute is treated as absent: metadata never fails a readable image
        return ""
    return "" if value is None else str(value).strip()


_CODE_STRING = re.compile(r"[A-Z0-9 _]{1,16}")


def _code(ds: Dataset, keyword: str) -> str:
    """A Code String (CS) attribute, upper-cased; anything that is not a valid CS value is dropped, so a
    site that types free text (possibly PHI) into ViewPosition or BodyPartExamined leaks nothing."""
    value = _text(ds, keyword).upper()
    return value if _CODE_STRING.fullmatch(value) else ""


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm from PixelSpacing, else ImagerPixelSpacing (projection radiographs)."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            values = [float(v) for v in ds.get(keyword) or ()]
        except (TypeError, ValueError):
            continue
        if len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values):
            return values[0], values[1]
    return None


def _meta(ds: Dataset, geom: _Geometry, syntax: uid.UID, options: ReadOptions, burned_in: bool) -> ImageMeta:
    """The allow-list: only these attributes leave the reader, identifiers pseudonymised."""
    pseudo = options.pseudonymize
    with _quiet_pydicom():
        return ImageMeta(
            modality=_code(ds, "Modality"),
            view=_code(ds, "ViewPosition"),
            body_part=_code(ds, "BodyPartExamined"),
            pixel_spacing=_spacing(ds),
            patient_id=pseudo("patient", _text(ds, "PatientID")),
            study_id=pseudo("study", _text(ds, "StudyInstanceUID")),
            series_id=pseudo("series", _text(ds, "SeriesInstanceUID")),
            instance_id=pseudo("instance", _text(ds, "SOPInstanceUID")),
            photometric=_code(ds, "PhotometricInterpretation"),
            bits_stored=_bits_stored(ds, geom),
            frames=geom.frames,
            orig_height=geom.rows,
            orig_width=geom.cols,
            transfer_syntax=str(syntax),
            burned_in_annotation=burned_in,
        )


def _bits_stored(ds: Dataset, geom: _Geometry) -> int:
    try:
        bits = int(ds.get("BitsStored", geom.bits_allocated))
    except (TypeError, ValueError):
        return geom.bits_allocated
    return bits if 1 <= bits <= geom.bits_allocated else geom.bits_allocated


# ---------------------------------------------------------------------------------------------- reader
@dataclass(frozen=True)
class DicomFile:
    """A parsed and checked DICOM file whose pixels are not decoded yet (shared with the series reader).

    ``dataset`` holds the whole header, PHI included: it must not leave rfm_data's readers.
    """

    dataset: Dataset
    pixels: _PixelData
    geometry: _Geometry
    syntax: uid.UID
    decoder: Decoder
    burned_in: bool

    def decode(self, index: int) -> np.ndarray:
        """Stored values of frame ``index`` (colour converted to RGB)."""
        return _decode(self.decoder, self.dataset, self.pixels, self.syntax, index)


def open_dicom(data: bytes, options: ReadOptions) -> DicomFile:
    """Parse and run every check that needs no pixel decoding (see :func:`read_dicom` for the reasons)."""
    ds, pixels = _parse(data)
    if pixels is None:
        raise QuarantineError(Reason.MISSING_PIXEL_DATA, "the dataset has no PixelData element")
    geom = _geometry(ds, options.dicom)
    burned_in = _burned_in(ds, options.burned_in)
    syntax = _syntax(ds, pixels)
    decoder = _decoder(syntax)
    _check_native_length(ds, geom, pixels, syntax)
    return DicomFile(ds, pixels, geom, syntax, decoder, burned_in)


def modality_values(dcm: DicomFile, index: int = 0) -> np.ndarray:
    """Decode frame ``index`` of a grayscale file into modality units (e.g. HU), float32 ``(H, W)``."""
    if dcm.geometry.samples != 1:
        raise QuarantineError(Reason.BAD_DIMENSIONS, "colour pixels where grayscale values are needed")
    arr = dcm.decode(index)
    with _quiet_pydicom():
        return _modality(arr, dcm.dataset)


def image_meta(dcm: DicomFile, options: ReadOptions) -> ImageMeta:
    """The de-identified allow-list of ``dcm``'s attributes."""
    return _meta(dcm.dataset, dcm.geometry, dcm.syntax, options, dcm.burned_in)


_J2K_SYNTAXES = {uid.JPEG2000Lossless, uid.JPEG2000}


def _fixed_display(ds: Dataset, voi: VoiMode) -> bool:
    """True when the display mapping comes from the file, not from image statistics (min-max, percentiles),
    which a low-pass decode would shift."""
    has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
    return has_voi and voi in (VoiMode.AUTO, VoiMode.WINDOW)


def _decode_reduced(dcm: DicomFile, options: ReadOptions, bits_stored: int) -> np.ndarray | None:
    """Single-frame grayscale JPEG 2000 at the coarsest wavelet level covering ``options.decode_long_side``."""
    geom = dcm.geometry
    if (options.decode_long_side is None or dcm.syntax not in _J2K_SYNTAXES or geom.frames != 1
            or geom.samples != 1 or _int(dcm.dataset, "PixelRepresentation", 0) != 0
            or not _fixed_display(dcm.dataset, options.dicom.voi)):
        return None
    try:
        frame = get_frame(bytes(dcm.pixels.value), 0, number_of_frames=1)
        return decode_reduced(frame, max(geom.rows, geom.cols), options.decode_long_side, bits_stored)
    except Exception:  # anything odd: the full-resolution path decodes it or reports why it cannot
        return None


@readers.register("dicom")
def read_dicom(data: bytes, source: str, options: ReadOptions) -> Image2D:
    """Decode one DICOM file into a display-ready grayscale image.

    Args:
        data: The file's bytes (a Part 10 file, or a bare dataset without preamble/meta).
        source: Where the bytes came from (for the caller's records; never parsed).
        options: Pseudonymizer, :class:`~rfm_data.config.DicomConfig` (VOI mode, frame policy, size limits)
            and the burned-in annotation policy.

    Returns:
        ``Image2D`` with float32 ``(H, W)`` pixels in [0, 1] (0 = black) and de-identified ``ImageMeta``.

    Raises:
        QuarantineError: ``NOT_DICOM``, ``TRUNCATED``, ``MISSING_PIXEL_DATA``, ``BAD_DIMENSIONS``,
            ``BURNED_IN_ANNOTATION``, ``UNSUPPORTED_SYNTAX``, ``CODEC_MISSING``, ``NOT_2D`` or ``DECODE_ERROR``.
    """
    dcm = open_dicom(data, options)
    index = _frame_index(dcm.geometry.frames, options.dicom.frame)
    meta = image_meta(dcm, options)
    arr = _decode_reduced(dcm, options, meta.bits_stored)
    if arr is None:
        arr = dcm.decode(index)
    pixels = _display(arr, dcm.dataset, dcm.geometry, meta.bits_stored, options.dicom.voi)
    return Image2D(pixels=pixels, meta=meta)


__all__ = ["CODECS_HINT", "DicomFile", "image_meta", "modality_values", "open_dicom", "read_dicom"]
