"""DICOM reader: real files built by ``make_dicom`` from a real radiograph, and pydicom's bundled files."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from rfm_data.config import BurnedInPolicy, DicomConfig, FramePolicy, VoiMode
from rfm_data.errors import QuarantineError, Reason
from rfm_data.readers import ReadOptions, read_image, readers
from rfm_data.readers.dicom import CODECS_HINT, read_dicom
from rfm_data.records import Image2D

MakeDicom = Callable[..., bytes]


def _read(data: bytes, options: ReadOptions, **dicom: object) -> Image2D:
    opts = dataclasses.replace(options, dicom=dataclasses.replace(options.dicom, **dicom)) if dicom else options
    image = read_dicom(data, "memory://x.dcm", opts)
    assert isinstance(image, Image2D)
    return image


def _reason(data: bytes, options: ReadOptions, **dicom: object) -> Reason:
    with pytest.raises(QuarantineError) as info:
        _read(data, options, **dicom)
    return info.value.reason


def _bundled(name: str) -> bytes:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled with this pydicom")
    return Path(path).read_bytes()


def test_registered_and_detected(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    assert readers.get("dicom") is read_dicom
    image = read_image(make_dicom(), "s3-style/name-without-suffix", read_options)
    assert isinstance(image, Image2D)


# ------------------------------------------------------------------------------------------ pixel fidelity
LOSSLESS = [
    {},
    {"bits": 8},
    {"bits": 12},
    {"bits": 12, "signed": True},
    {"bits": 16, "signed": True},
    {"photometric": "MONOCHROME1"},
    {"photometric": "MONOCHROME1", "bits": 12, "signed": True},
    {"bits": 12, "slope": 2.5, "intercept": -1024.0},
    {"transfer_syntax": "implicit"},
    {"transfer_syntax": "deflated"},
    {"transfer_syntax": "rle", "bits": 12, "signed": True},
    {"transfer_syntax": "rle", "bits": 8, "photometric": "MONOCHROME1"},
    {"transfer_syntax": "jpeg2000_lossless", "bits": 12},
    {"transfer_syntax": "jpeg2000_lossless", "bits": 16, "signed": True},
    {"transfer_syntax": "jpegls_lossless", "bits": 12},
]


@pytest.mark.parametrize("options", LOSSLESS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_lossless_roundtrip_matches_source(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions, options: dict[str, object]
) -> None:
    image = _read(make_dicom(**options), read_options)
    assert image.pixels.dtype == np.float32 and image.pixels.shape == dicom_base_image.shape
    assert image.pixels.flags.c_contiguous
    bits = int(options.get("bits", 16))  # type: ignore[call-overload]
    np.testing.assert_allclose(image.pixels, dicom_base_image, atol=1.0 / (2**bits - 1) + 1e-5)


def test_slope_negative_without_photometric_change_inverts(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions
) -> None:
    # A negative slope maps bright stored values to low modality values: the display must follow.
    image = _read(make_dicom(bits=12, slope=-1.0, intercept=0.0), read_options)
    np.testing.assert_allclose(image.pixels, 1.0 - dicom_base_image, atol=1e-3)
    # MONOCHROME1 inverts the VOI output whatever the modality LUT did: stored 4095-v, modality v, display 1-v.
    data = make_dicom(bits=12, slope=-1.0, intercept=4095.0, photometric="MONOCHROME1")
    np.testing.assert_allclose(_read(data, read_options).pixels, 1.0 - dicom_base_image, atol=1e-3)


def test_jpeg_baseline_is_close(make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions) -> None:
    image = _read(make_dicom(transfer_syntax="jpeg_baseline", bits=8), read_options)
    error = np.abs(image.pixels - dicom_base_image)
    assert error.mean() < 0.01 and error.max() < 0.1  # lossy, quality 95


@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpeg_baseline"])
def test_rgb_becomes_luminance(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions, syntax: str
) -> None:
    image = _read(make_dicom(photometric="RGB", bits=8, transfer_syntax=syntax), read_options)
    luma = (0.299 + 0.587 * 0.8 + 0.114 * 0.5) * dicom_base_image  # the fixture's (1, 0.8, 0.5) tint
    atol = 0.08 if syntax == "jpeg_baseline" else 1.5 / 255
    assert np.abs(image.pixels - luma).mean() < atol / 4
    np.testing.assert_allclose(image.pixels, luma, atol=atol)


# ------------------------------------------------------------------------------------------------ frames
@pytest.mark.parametrize(("policy", "frame"), [(FramePolicy.FIRST, 0), (FramePolicy.MIDDLE, 2)])
@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpeg2000_lossless"])
def test_multiframe_picks_the_policy_frame(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions,
    policy: FramePolicy, frame: int, syntax: str,
) -> None:
    image = _read(make_dicom(frames=5, bits=12, transfer_syntax=syntax), read_options, frame=policy)
    expected = np.roll(dicom_base_image, 13 * frame, axis=1)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-3)
    assert image.meta.frames == 5


def test_multiframe_quarantine_policy(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    assert _reason(make_dicom(frames=3), read_options, frame=FramePolicy.QUARANTINE) == Reason.NOT_2D
    _read(make_dicom(frames=1), read_options, frame=FramePolicy.QUARANTINE)  # single frame is fine


# --------------------------------------------------------------------------------------------------- VOI
def _modality(base: np.ndarray, bits: int = 12, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    return np.rint(base * (2**bits - 1)) * slope + intercept


def test_window_linear_follows_ps33(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions
) -> None:
    c, w = 1500.0, 1001.0
    image = _read(make_dicom(bits=12, windows=[(c, w), (10.0, 20.0)]), read_options)  # first window wins
    x = _modality(dicom_base_image)
    expected = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)
    assert (image.pixels == 0).any() and (image.pixels == 1).any()  # the window really clips


def test_window_in_modality_units(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions
) -> None:
    # The window applies to rescaled values (e.g. HU), not to stored values.
    c, w, slope, intercept = 200.0, 2000.0, 2.0, -3000.0
    data = make_dicom(bits=12, slope=slope, intercept=intercept, windows=[(c, w)], voi_function="LINEAR_EXACT")
    x = _modality(dicom_base_image, slope=slope, intercept=intercept)
    np.testing.assert_allclose(_read(data, read_options).pixels, np.clip((x - c) / w + 0.5, 0, 1), atol=1e-5)


def test_window_sigmoid(make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions) -> None:
    c, w = 2000.0, 800.0
    image = _read(make_dicom(bits=12, windows=[(c, w)], voi_function="SIGMOID"), read_options)
    expected = 1.0 / (1.0 + np.exp(-4.0 * (_modality(dicom_base_image) - c) / w))
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)


def test_monochrome1_inverts_after_window(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions
) -> None:
    c, w = 1000.0, 1500.0
    image = _read(make_dicom(bits=12, photometric="MONOCHROME1", windows=[(c, w)]), read_options)
    stored = np.rint((1.0 - dicom_base_image) * 4095)  # the fixture stores MONOCHROME1 inverted
    expected = 1.0 - np.clip((stored - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)


def test_voi_lut_sequence_wins_in_auto(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions
) -> None:
    data = make_dicom(bits=12, voi_lut=True, windows=[(100.0, 10.0)])
    expected = np.sqrt(_modality(dicom_base_image) / 4095)  # the fixture's LUT: sqrt of the normalised value
    np.testing.assert_allclose(_read(data, read_options).pixels, expected, atol=2e-5)
    # window mode ignores the LUT and uses the window instead
    windowed = _read(data, read_options, voi=VoiMode.WINDOW).pixels
    assert windowed.mean() > 0.9  # centre 100 / width 10 on 0..4095 data: almost everything is white


def test_voi_lut_signed_pixels(make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions) -> None:
    data = make_dicom(bits=12, signed=True, voi_lut=True)  # LUT's first mapped value is negative
    expected = np.sqrt(_modality(dicom_base_image) / 4095)
    np.testing.assert_allclose(_read(data, read_options).pixels, expected, atol=2e-5)


def test_minmax_and_percentile_ignore_file_voi(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions
) -> None:
    data = make_dicom(bits=12, windows=[(100.0, 10.0)], voi_lut=True)
    np.testing.assert_allclose(_read(data, read_options, voi=VoiMode.MINMAX).pixels, dicom_base_image, atol=1e-3)
    robust = _read(data, read_options, voi=VoiMode.PERCENTILE).pixels
    lo, hi = np.percentile(dicom_base_image, [0.5, 99.5])
    np.testing.assert_allclose(robust, np.clip((dicom_base_image - lo) / (hi - lo), 0, 1), atol=0.01)


@pytest.mark.parametrize("mode", [VoiMode.AUTO, VoiMode.WINDOW])
def test_invalid_or_missing_window_falls_back_to_minmax(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions, mode: VoiMode
) -> None:
    for data in (make_dicom(bits=12), make_dicom(bits=12, windows=[(100.0, 0.0)])):
        np.testing.assert_allclose(_read(data, read_options, voi=mode).pixels, dicom_base_image, atol=1e-3)


# ----------------------------------------------------------------------------------------- burned-in, meta
def test_burned_in_policy(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    data = make_dicom(burned_in=True)
    assert _reason(data, read_options) == Reason.BURNED_IN_ANNOTATION
    kept = read_dicom(data, "x.dcm", dataclasses.replace(read_options, burned_in=BurnedInPolicy.KEEP))
    assert isinstance(kept, Image2D) and kept.meta.burned_in_annotation is True
    assert _read(make_dicom(burned_in=False), read_options).meta.burned_in_annotation is False


def test_metadata_allow_list(make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions) -> None:
    data = make_dicom(bits=12, frames=2, view=" ll ", modality="cr", transfer_syntax="rle",
                      extra={"BodyPartExamined": "chest", "PixelSpacing": [0.2, 0.25]})
    meta = _read(data, read_options).meta
    assert (meta.modality, meta.view, meta.body_part) == ("CR", "LL", "CHEST")
    assert meta.pixel_spacing == (0.2, 0.25)  # PixelSpacing wins over ImagerPixelSpacing
    assert (meta.bits_stored, meta.frames, meta.photometric) == (12, 2, "MONOCHROME2")
    assert (meta.orig_height, meta.orig_width) == dicom_base_image.shape
    assert meta.transfer_syntax == pydicom.uid.RLELossless
    assert meta.patient_id == read_options.pseudonymize("patient", "patient-0")
    assert meta.study_id.startswith("study-") and meta.series_id.startswith("series-")
    assert meta.instance_id.startswith("instance-")


def test_imager_pixel_spacing_and_absent_ids(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    meta = _read(make_dicom(drop=("PatientID",)), read_options).meta
    assert meta.pixel_spacing == pytest.approx((0.143, 0.139))
    assert meta.patient_id == ""  # absent is not an identity


# ------------------------------------------------------------------------------------------ bad input
def test_png_renamed_and_random_bytes_are_not_dicom(shared_data: Path, read_options: ReadOptions) -> None:
    png = next((shared_data / "covid_chestxray_ieee8023" / "images").glob("*.png")).read_bytes()
    assert _reason(png, read_options) == Reason.NOT_DICOM
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert _reason(noise, read_options) == Reason.NOT_DICOM
    assert _reason(b'{"report": "not an image"}' * 10, read_options) == Reason.NOT_DICOM


@pytest.mark.parametrize("syntax", ["explicit", "implicit", "rle", "jpeg2000_lossless"])
def test_truncated_files(make_dicom: MakeDicom, read_options: ReadOptions, syntax: str) -> None:
    data = make_dicom(bits=12, frames=2, transfer_syntax=syntax, phi=True)
    pixel_start = data.rfind(b"\xe0\x7f\x10\x00")
    for cut in (600, 1500, pixel_start + 20, (pixel_start + len(data)) // 2, len(data) - 9, len(data) - 1):
        assert _reason(data[:cut], read_options) == Reason.TRUNCATED, f"cut at {cut} of {len(data)}"


def test_bundled_malformed_files(read_options: ReadOptions) -> None:
    assert _reason(_bundled("MR_truncated.dcm"), read_options) == Reason.TRUNCATED
    assert _reason(_bundled("rtplan_truncated.dcm"), read_options) == Reason.TRUNCATED
    assert _reason(_bundled("rtplan.dcm"), read_options) == Reason.MISSING_PIXEL_DATA
    assert _reason(_bundled("waveform_ecg.dcm"), read_options) == Reason.MISSING_PIXEL_DATA
    assert _reason(_bundled("badVR.dcm"), read_options) == Reason.BAD_DIMENSIONS  # NumberOfFrames "1A"
    assert _reason(_bundled("JPEG-lossy.dcm"), read_options) == Reason.DECODE_ERROR  # 12-bit JPEG, no codec
    assert _reason(_bundled("JPEG2000-embedded-sequence-delimiter.dcm"), read_options) == Reason.DECODE_ERROR


def test_missing_pixel_data(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    assert _reason(make_dicom(drop=("PixelData",)), read_options) == Reason.MISSING_PIXEL_DATA


def test_native_pixel_data_shorter_than_header(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    base = pydicom.dcmread(io.BytesIO(make_dicom()))
    data = make_dicom(extra={"Rows": int(base.Rows) + 40})
    assert _reason(data, read_options) == Reason.TRUNCATED


@pytest.mark.parametrize(
    ("extra", "limits"),
    [
        ({"Rows": 0}, {}),
        ({"Columns": 0}, {}),
        ({"NumberOfFrames": 0}, {}),
        ({"Rows": 20_000}, {}),  # beyond max_side
        ({"BitsAllocated": 12}, {}),
        ({"SamplesPerPixel": 2}, {}),
        ({}, {"max_side": 100}),
        ({}, {"max_pixels": 10_000}),
    ],
)
def test_bad_dimensions(
    make_dicom: MakeDicom, read_options: ReadOptions, extra: dict[str, int], limits: dict[str, int]
) -> None:
    assert _reason(make_dicom(extra=extra), read_options, **limits) == Reason.BAD_DIMENSIONS


def _peak_bytes(fn: Callable[[], Reason]) -> tuple[Reason, int]:
    tracemalloc.start()
    try:
        reason = fn()
        return reason, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpeg2000_lossless"])
def test_huge_header_is_refused_with_bounded_memory(
    make_dicom: MakeDicom, read_options: ReadOptions, syntax: str
) -> None:
    data = make_dicom(transfer_syntax=syntax, extra={"Rows": 60000, "Columns": 60000})
    reason, peak = _peak_bytes(lambda: _reason(data, read_options))
    assert reason == Reason.BAD_DIMENSIONS
    assert peak < 4 * len(data) + 2**20  # 60000 x 60000 x 2 bytes would be 7.2 GB


def test_native_length_check_guards_even_without_limits(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    # Native pixel data shorter than the header claims is refused before decoding, whatever the limits say.
    data = make_dicom(extra={"Rows": 60000, "Columns": 60000})
    reason, peak = _peak_bytes(lambda: _reason(data, read_options, max_side=65535, max_pixels=2**40))
    assert reason == Reason.TRUNCATED and peak < 4 * len(data) + 2**20


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.100", "1.2.3.4.5.6"])  # MPEG-2 video; made up
def test_unknown_transfer_syntax(make_dicom: MakeDicom, read_options: ReadOptions, syntax: str) -> None:
    data = bytearray(make_dicom(transfer_syntax="rle"))
    ds = pydicom.dcmread(io.BytesIO(bytes(data)))
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(out)
    assert _reason(out.getvalue(), read_options) == Reason.UNSUPPORTED_SYNTAX


def test_corrupt_codestream_is_decode_error(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    data = bytearray(make_dicom(transfer_syntax="jpeg2000_lossless", bits=12))
    start = data.find(b"\xff\x4f\xff\x51")  # J2K SOC + SIZ markers
    data[start : start + 64] = bytes(64)
    assert _reason(bytes(data), read_options) == Reason.DECODE_ERROR


_CODEC_MISSING_SCRIPT = """
import sys
for name in ("libjpeg", "gdcm", "jpeg_ls", "pylibjpeg"):  # as if rfm-data[codecs] were not installed
    sys.modules[name] = None
from pathlib import Path
from pydicom.data import get_testdata_file
from rfm_data.deid import Pseudonymizer
from rfm_data.errors import QuarantineError
from rfm_data.readers import ReadOptions
from rfm_data.readers.dicom import read_dicom
try:
    read_dicom(Path(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")).read_bytes(), "x",
               ReadOptions(pseudonymize=Pseudonymizer(b"k")))
except QuarantineError as err:
    print(err.reason.value, "|", err.detail)
"""


def test_codec_missing_names_the_extra() -> None:
    # A fresh interpreter in which the codec plugins cannot be imported, as on a core-only install.
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-c", _CODEC_MISSING_SCRIPT], capture_output=True, text=True,
                            env=env, timeout=120, check=True)
    reason, detail = result.stdout.strip().split(" | ")
    assert reason == Reason.CODEC_MISSING.value
    assert 'pip install "rfm-data[codecs]"' in detail and CODECS_HINT in detail


# ---------------------------------------------------------------------------------- pydicom's real files
def test_bundled_mr_in_every_encoding_decodes_identically(read_options: ReadOptions) -> None:
    reference = _read(_bundled("MR_small.dcm"), read_options).pixels
    assert reference.std() > 0.1
    for name in ("MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_RLE.dcm",
                 "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm"):
        np.testing.assert_allclose(_read(_bundled(name), read_options).pixels, reference, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    ("name", "shape"),
    [("CT_small.dcm", (128, 128)), ("JPEG2000.dcm", (1024, 256)), ("JPGExtended.dcm", (1024, 256)),
     ("JPEGLSNearLossless_16.dcm", (50, 10)), ("examples_palette.dcm", (350, 800)),
     ("examples_ybr_color.dcm", (240, 320)), ("SC_rgb_jpeg_dcmtk.dcm", (100, 100)), ("image_dfl.dcm", (512, 512)),
     ("liver_1frame.dcm", (512, 512)), ("rtdose.dcm", (10, 10)), ("UN_sequence.dcm", None),
     ("SC_rgb_jpeg.dcm", (256, 256)), ("no_meta.dcm", None)],
)
def test_bundled_files_decode(read_options: ReadOptions, name: str, shape: tuple[int, int] | None) -> None:
    data = _bundled(name)
    if name == "UN_sequence.dcm":  # no pixels, but the implicit-VR sequence inside UN must not look truncated
        assert _reason(data, read_options) == Reason.MISSING_PIXEL_DATA
        return
    if name == "no_meta.dcm":  # a bare dataset after one stray byte: the byte fails it, the rest is a CT
        assert _reason(data, read_options) == Reason.NOT_DICOM
        data, shape = data[1:], (128, 128)
    image = _read(data, read_options)
    assert image.pixels.shape == shape and image.pixels.dtype == np.float32
    assert float(image.pixels.min()) >= 0.0 and float(image.pixels.max()) <= 1.0
    assert image.pixels.std() > 1e-3  # real content, not a constant (SC_rgb_jpeg is mostly white)


def test_ct_hu_window(read_options: ReadOptions) -> None:
    # CT_small has RescaleIntercept -1024 and no window: minmax of HU equals minmax of stored values.
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    stored = ds.pixel_array.astype(np.float64)
    expected = (stored - stored.min()) / (stored.max() - stored.min())
    np.testing.assert_allclose(_read(_bundled("CT_small.dcm"), read_options).pixels, expected, atol=1e-5)


def test_bare_dataset_without_preamble_or_meta(
    make_dicom: MakeDicom, dicom_base_image: np.ndarray, read_options: ReadOptions
) -> None:
    for syntax in ("explicit", "implicit"):
        ds = pydicom.dcmread(io.BytesIO(make_dicom(bits=12, transfer_syntax=syntax)))
        ds.preamble, ds.file_meta = None, pydicom.dataset.FileMetaDataset()
        out = io.BytesIO()
        pydicom.dcmwrite(out, ds, implicit_vr=syntax == "implicit", little_endian=True)  # no preamble, no meta
        bare = out.getvalue()
        assert bare[128:132] != b"DICM"
        image = _read(bare, read_options)
        np.testing.assert_allclose(image.pixels, dicom_base_image, atol=1e-3)


def test_default_config_matches_documentation() -> None:
    cfg = DicomConfig()
    assert (cfg.voi, cfg.frame) == (VoiMode.AUTO, FramePolicy.FIRST)
