"""Fixtures shared by every rfm-data test: real DICOM files built with pydicom from a real image.

``make_dicom(...)`` returns the bytes of a complete DICOM Part 10 file whose pixels come from a real chest
X-ray of the development data (or, in a fresh clone without it, from pydicom's bundled CT slice), encoded
so that a *correct* reader returns (close to) ``dicom_base_image`` for the default minmax-like display:
MONOCHROME1 files store inverted values, signed files store shifted values, and so on.

``phi=True`` fills every plain-valued attribute of the PS3.15 Basic Profile with a unique, greppable
sentinel; ``phi_sentinel_values(instance)`` returns exactly those values so tests can search shards,
manifests and logs for them.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import uid
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder
from pydicom.sequence import Sequence as DicomSequence

from rfm_data.deid import Pseudonymizer
from rfm_data.readers import ReadOptions
from rfm_data.readers.dicom_phi import BASIC_PROFILE_KEYWORDS

SENTINEL_MARK = "7f3a"  # every text sentinel contains it (case-insensitively): grep -i 7f3a finds them all
_UID_ROOT = "1.2.826.0.1.3680043.8.498.7373"  # pydicom's root + a fixed arc: valid, unique, greppable

TRANSFER_SYNTAXES: dict[str, str] = {
    "explicit": uid.ExplicitVRLittleEndian,
    "implicit": uid.ImplicitVRLittleEndian,
    "deflated": uid.DeflatedExplicitVRLittleEndian,
    "rle": uid.RLELossless,
    "jpeg2000_lossless": uid.JPEG2000Lossless,
    "jpegls_lossless": uid.JPEGLSLossless,
    "jpeg_baseline": uid.JPEGBaseline8Bit,
}
_NATIVE = {uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian}


# --------------------------------------------------------------------------------------------- base image
def _load_base_image(shared_data: Path | None) -> np.ndarray:
    """A real radiograph as float64 (H, W), stretched to exactly [0, 1] (so minmax display is the identity)."""
    img: np.ndarray | None = None
    if shared_data is not None:
        images = sorted((shared_data / "covid_chestxray_ieee8023" / "images").glob("*.png"))
        if images:
            with Image.open(images[0]) as im:
                img = np.asarray(im.convert("L"), dtype=np.float64)
    if img is None:  # fresh clone: pydicom's bundled CT slice is real pixel data too
        img = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm")).pixel_array.astype(np.float64)
    return (img - img.min()) / (img.max() - img.min())


@pytest.fixture(scope="session")
def dicom_base_image(request: pytest.FixtureRequest) -> np.ndarray:
    """The real image (float64 (H, W) in [0, 1], read-only) that ``make_dicom`` encodes into every file."""
    try:
        root: Path | None = request.getfixturevalue("shared_data")
    except (pytest.skip.Exception, pytest.FixtureLookupError):
        root = None
    img = _load_base_image(root)
    img.setflags(write=False)
    return img


# ----------------------------------------------------------------------------------------------- sentinels
def _uid(*arcs: int) -> str:
    return ".".join([_UID_ROOT, *(str(a) for a in arcs)])


def _sentinel(keyword: str, vr: str, idx: int, instance: int) -> str | None:
    """A valid, unique value of ``vr`` for ``keyword``; ``None`` for VRs we do not fill (SQ, binary)."""
    day = dt.date(1873, 1, 1) + dt.timedelta(days=instance * 400 + idx)
    time = f"23{idx % 60:02d}59.7{idx:03d}{instance % 100:02d}"
    makers: dict[str, Callable[[], str]] = {
        "PN": lambda: f"PHI-{keyword[:44]}-{SENTINEL_MARK}-{instance}",
        "LO": lambda: f"PHI-{idx:03d}-{keyword[:40]}-{SENTINEL_MARK}-{instance}",
        "LT": lambda: f"PHI-{keyword}-{SENTINEL_MARK}-{instance} free text",
        "ST": lambda: f"PHI-{keyword}-{SENTINEL_MARK}-{instance} free text",
        "UT": lambda: f"PHI-{keyword}-{SENTINEL_MARK}-{instance} free text",
        "SH": lambda: f"PHI-{SENTINEL_MARK}-{idx:03d}-{instance}",
        "AE": lambda: f"PHI-{SENTINEL_MARK}-{idx:03d}-{instance}",
        "CS": lambda: f"PHI_{SENTINEL_MARK.upper()}_{idx:03d}_{instance}",
        "DA": lambda: day.strftime("%Y%m%d"),
        "TM": lambda: time,
        "DT": lambda: day.strftime("%Y%m%d") + time,
        "UI": lambda: _uid(idx, instance),
        "AS": lambda: f"{100 + instance % 900:03d}Y",
        "DS": lambda: f"{idx}.73{instance}",
    }
    maker = makers.get(vr)
    return maker() if maker is not None else None


def phi_sentinels(instance: int = 0) -> dict[str, str]:
    """Keyword → sentinel value for every plain-valued Basic Profile attribute (plus one nested one).

    ``instance`` varies the values (UIDs included) so that several PHI files can coexist in one dataset.
    The nested ``OtherPatientIDsSequence[0].PatientID`` is keyed ``"OtherPatientIDsSequence/PatientID"``.
    """
    out: dict[str, str] = {}
    for idx, keyword in enumerate(BASIC_PROFILE_KEYWORDS):
        tag = tag_for_keyword(keyword)
        if tag is None or tag >> 16 in (0x0000, 0x0002):
            continue  # command set / file meta elements cannot live in a stored dataset
        value = _sentinel(keyword, dictionary_VR(tag), idx, instance)
        if value is not None:
            out[keyword] = value
    out["OtherPatientIDsSequence/PatientID"] = f"PHI-OtherPatientIDsSequence-PatientID-{SENTINEL_MARK}-{instance}"
    return out


def _fill_phi(ds: Dataset, instance: int) -> None:
    for key, value in phi_sentinels(instance).items():
        if "/" not in key:
            setattr(ds, key, value)
    item = Dataset()
    item.PatientID = phi_sentinels(instance)["OtherPatientIDsSequence/PatientID"]
    item.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = DicomSequence([item])


@pytest.fixture(scope="session")
def phi_sentinel_values() -> Callable[[int], dict[str, str]]:
    """``phi_sentinel_values(instance=0) -> {keyword: value}``: what ``make_dicom(phi=True, instance=...)``
    writes. Every text value contains ``"7f3a"``; dates are in 1873-1875, UIDs start with
    ``1.2.826.0.1.3680043.8.498.7373.``."""
    return phi_sentinels


# ------------------------------------------------------------------------------------------ pixel encoding
def _frames(base: np.ndarray, frames: int) -> np.ndarray:
    # Each frame is shifted so that a test can tell which frame a reader returned.
    return np.stack([np.roll(base, 13 * k, axis=1) for k in range(frames)])


def _stored_values(img: np.ndarray, bits: int, signed: bool, photometric: str) -> np.ndarray:
    """Integer stored values that a correct reader maps back to ``img`` (frames, H, W[, 3])."""
    maxv = 2**bits - 1
    if photometric == "MONOCHROME1":
        img = 1.0 - img  # MONOCHROME1: high values are dark, so store the inverse
    if photometric == "RGB":
        img = np.stack([img, 0.8 * img, 0.5 * img], axis=-1)  # a tint: luminance != any one channel
    stored = np.rint(img * maxv).astype(np.int64)
    if signed:
        stored -= 2 ** (bits - 1)
    alloc = 8 if bits <= 8 else 16
    return stored.astype(f"{'int' if signed else 'uint'}{alloc}")


def _set_pixel_module(ds: Dataset, stored: np.ndarray, bits: int, signed: bool, photometric: str) -> None:
    frames, rows, cols = stored.shape[:3]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = (stored[0] if frames == 1 else stored).tobytes()


def _voi_lut_item(stored: np.ndarray, slope: float, intercept: float) -> Dataset:
    """A square-root VOI LUT over the modality range: display = sqrt(normalised modality value)."""
    modality = stored.astype(np.float64) * slope + intercept
    first, last = int(np.floor(modality.min())), int(np.ceil(modality.max()))
    n = last - first + 1
    x = np.arange(n, dtype=np.float64) / max(n - 1, 1)
    item = Dataset()
    item.LUTDescriptor = [n % 65536, first, 16]
    item["LUTDescriptor"].VR = "SS" if first < 0 else "US"
    # OW, not US: a 16-bit LUT over a 16-bit range exceeds the 64 KiB limit of an explicit-VR US element.
    item.LUTData = np.rint(np.sqrt(x) * 65535).astype("<u2").tobytes()
    item["LUTData"].VR = "OW"
    item.LUTExplanation = "sqrt"
    return item


# ----------------------------------------------------------------------------------------------- datasets
def _base_dataset(instance: int, modality: str, view: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = uid.DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = _uid(900, 3, instance)
    ds.StudyInstanceUID = _uid(900, 1, instance)
    ds.SeriesInstanceUID = _uid(900, 2, instance)
    ds.PatientID = f"patient-{instance}"
    ds.Modality = modality
    ds.ViewPosition = view
    ds.BodyPartExamined = "CHEST"
    ds.ImagerPixelSpacing = [0.143, 0.139]
    ds.InstanceNumber = instance + 1
    return ds


def _set_voi(ds: Dataset, stored: np.ndarray, opts: Mapping[str, Any]) -> None:
    ds.RescaleSlope = opts["slope"]
    ds.RescaleIntercept = opts["intercept"]
    ds.RescaleType = "US"
    if opts["windows"]:
        ds.WindowCenter = [float(c) for c, _ in opts["windows"]]
        ds.WindowWidth = [float(w) for _, w in opts["windows"]]
    if opts["voi_function"]:
        ds.VOILUTFunction = opts["voi_function"]
    if opts["voi_lut"]:
        ds.VOILUTSequence = DicomSequence([_voi_lut_item(stored, opts["slope"], opts["intercept"])])


def _jpeg_baseline(ds: Dataset, stored: np.ndarray) -> None:
    if stored.dtype != np.uint8:
        raise ValueError("jpeg_baseline needs bits=8 and signed=False")
    rgb = stored.ndim == 4
    mode, kwargs = ("RGB", {"subsampling": 1}) if rgb else ("L", {})  # 4:2:2, as YBR_FULL_422 requires
    frames = []
    for frame in stored:
        buf = io.BytesIO()
        Image.fromarray(frame, mode=mode).save(buf, "JPEG", quality=95, **kwargs)
        frames.append(buf.getvalue())
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    if rgb:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"


def _encode(ds: Dataset, stored: np.ndarray, syntax: str) -> None:
    if syntax in _NATIVE:
        return
    if syntax == uid.JPEGBaseline8Bit:
        _jpeg_baseline(ds, stored)  # pydicom has no JPEG baseline encoder; Pillow's libjpeg is real
        return
    encoder = get_encoder(syntax)
    if not encoder.is_available:
        pytest.skip(f"no {syntax.name} encoder installed ({'; '.join(encoder.missing_dependencies)})")
    ds.compress(syntax, stored[0] if stored.shape[0] == 1 else stored, generate_instance_uid=False)


def _to_bytes(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=syntax == uid.ImplicitVRLittleEndian,
               little_endian=True)
    return buf.getvalue()


def build_dicom(base: np.ndarray, **options: Any) -> bytes:
    """See the ``make_dicom`` fixture."""
    opts: dict[str, Any] = {
        "photometric": "MONOCHROME2", "bits": 16, "signed": False, "slope": 1.0, "intercept": 0.0,
        "windows": (), "voi_function": None, "voi_lut": False, "frames": 1, "transfer_syntax": "explicit",
        "burned_in": None, "phi": False, "instance": 0, "modality": "DX", "view": "PA", "extra": {},
        "drop": (),
    }
    unknown = set(options) - set(opts)
    if unknown:
        raise TypeError(f"make_dicom: unknown options {sorted(unknown)}")
    opts.update(options)
    syntax = uid.UID(TRANSFER_SYNTAXES.get(opts["transfer_syntax"], opts["transfer_syntax"]))
    stored = _stored_values(_frames(base, opts["frames"]), opts["bits"], opts["signed"], opts["photometric"])
    ds = _base_dataset(opts["instance"], opts["modality"], opts["view"])
    if opts["phi"]:
        _fill_phi(ds, opts["instance"])
    _set_pixel_module(ds, stored, opts["bits"], opts["signed"], opts["photometric"])
    _set_voi(ds, stored, opts)
    if opts["burned_in"] is not None:
        ds.BurnedInAnnotation = "YES" if opts["burned_in"] else "NO"
    _encode(ds, stored, syntax)
    for keyword, value in dict(opts["extra"]).items():
        setattr(ds, keyword, value)
    for keyword in opts["drop"]:
        delattr(ds, keyword)
    return _to_bytes(ds, syntax)


@pytest.fixture
def make_dicom(dicom_base_image: np.ndarray) -> Callable[..., bytes]:
    """Factory of real DICOM files: ``make_dicom(**options) -> bytes`` (a Part 10 file with preamble).

    Options (all keyword, defaults in brackets):
        photometric: ``"MONOCHROME2"``, ``"MONOCHROME1"`` or ``"RGB"`` (channels = (1, 0.8, 0.5) x image).
        bits: BitsStored, 8, 12 or 16 [16]; BitsAllocated is 8 for 8 bits, else 16.
        signed: PixelRepresentation 1, stored = unsigned value - 2**(bits-1) [False].
        slope, intercept: RescaleSlope / RescaleIntercept attributes [1.0, 0.0] (stored values unchanged).
        windows: sequence of (centre, width) in modality units; several = multi-valued attributes [()].
        voi_function: VOILUTFunction, e.g. ``"LINEAR_EXACT"`` or ``"SIGMOID"`` [None].
        voi_lut: add a VOI LUT Sequence mapping the modality range to sqrt(normalised value) [False].
        frames: NumberOfFrames; frame k is the image rolled 13*k columns to the right [1].
        transfer_syntax: a key of ``TRANSFER_SYNTAXES`` (``explicit``, ``implicit``, ``deflated``, ``rle``,
            ``jpeg2000_lossless``, ``jpegls_lossless``, ``jpeg_baseline``) or a UID [``"explicit"``].
            Skips the test when the encoder is not installed (JPEG-LS needs pyjpegls).
        burned_in: BurnedInAnnotation YES/NO; None leaves it out [None].
        phi: fill every plain-valued Basic Profile attribute with ``phi_sentinel_values(instance)`` [False].
        instance: varies UIDs, PatientID (``patient-<instance>``) and sentinels between files [0].
        modality, view: Modality and ViewPosition [``"DX"``, ``"PA"``].
        extra: ``{keyword: value}`` set last (after compression), e.g. ``{"Rows": 60000}`` [{}].
        drop: keywords deleted last, e.g. ``("PixelData",)`` [()].

    With the default display (minmax), a correct reader returns ~``dicom_base_image`` (frame 0) for every
    photometric/bit depth/sign/slope combination (RGB: ``0.8256 * image``, the luminance of the tint).
    """

    def make(**options: Any) -> bytes:
        with warnings.catch_warnings():  # tests write deliberately odd values (lower-case CS, huge Rows)
            warnings.simplefilter("ignore")
            return build_dicom(dicom_base_image, **options)

    return make


@pytest.fixture(scope="session")
def deid_key() -> bytes:
    """A fixed test HMAC key for pseudonyms (never a real site secret)."""
    return b"rfm-test-key-not-secret"


@pytest.fixture
def read_options(deid_key: bytes) -> ReadOptions:
    """Default reader options with the test key; change fields with ``dataclasses.replace``."""
    return ReadOptions(pseudonymize=Pseudonymizer(deid_key))


# ------------------------------------------------------------------------------------------- CT series
ORIENTATIONS: dict[str, tuple[float, ...]] = {
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "oblique": (1.0, 0.0, 0.0, 0.0, float(np.cos(0.3)), float(np.sin(0.3))),  # tilted 0.3 rad about x
}


def build_ct_series(count: int = 5, spacing: float = 2.5, orientation: str | tuple[float, ...] = "axial",
                    seed: int = 0) -> list[bytes]:
    """See the ``make_ct_series`` fixture."""
    ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    orientation = ORIENTATIONS[orientation] if isinstance(orientation, str) else orientation
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal, origin = np.cross(row, col), np.asarray(ct.ImagePositionPatient, float)
    stored = ct.pixel_array
    files = []
    for k in range(count):
        ds = ct.copy()
        ds.PixelData = np.roll(stored, 7 * k, axis=0).tobytes()  # slice k is identifiable by its roll
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [float(v) for v in origin + k * spacing * normal]
        ds.SliceThickness = 5.0  # deliberately not the spacing: readers must use the positions
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = _uid(800, k)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append(buf.getvalue())
    order = np.random.default_rng(seed).permutation(count)
    return [files[i] for i in order]


@pytest.fixture
def make_ct_series() -> Callable[..., list[bytes]]:
    """Factory of a real CT series: ``make_ct_series(count=5, spacing=2.5, orientation="axial", seed=0)``.

    Every slice is pydicom's bundled CT_small.dcm (real HU data, RescaleIntercept -1024, 128x128, PixelSpacing
    0.661468) with its pixels rolled down by 7*k rows for slice k, ImagePositionPatient = original + k*spacing
    along the slice normal, SliceThickness 5.0 (never the spacing) and its own SOPInstanceUID. The list is
    shuffled with ``seed``. ``orientation`` is ``"axial"``, ``"oblique"`` (tilted 0.3 rad about x) or six
    direction cosines.
    """
    return build_ct_series

