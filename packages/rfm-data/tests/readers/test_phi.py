"""PHI: nothing from a DICOM header but the allow-list leaves the reader; pseudonyms are keyed and stable;
``strip_phi`` applies the PS3.15 Basic Profile to files written back out."""

from __future__ import annotations

import dataclasses
import io
import logging
import pickle
import warnings
from collections.abc import Callable

import pydicom
import pytest
from pydicom.datadict import tag_for_keyword

from rfm_data.config import BurnedInPolicy
from rfm_data.deid import Pseudonymizer
from rfm_data.errors import QuarantineError, Reason
from rfm_data.readers import ReadOptions
from rfm_data.readers.dicom import read_dicom
from rfm_data.readers.dicom_phi import ACTIONS, BASIC_PROFILE_KEYWORDS, Action, strip_phi
from rfm_data.records import Image2D

MakeDicom = Callable[..., bytes]
Sentinels = Callable[[int], dict[str, str]]


def _leaks(blob: bytes | str, sentinels: dict[str, str]) -> list[str]:
    text = blob if isinstance(blob, bytes) else blob.encode()
    return [key for key, value in sentinels.items() if value.encode() in text]


def test_basic_profile_list() -> None:
    assert len(BASIC_PROFILE_KEYWORDS) >= 60 and len(set(BASIC_PROFILE_KEYWORDS)) == len(BASIC_PROFILE_KEYWORDS)
    assert all(tag_for_keyword(k) is not None for k in BASIC_PROFILE_KEYWORDS), "unknown keyword"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "AccessionNumber",
                    "InstitutionName", "ReferringPhysicianName", "StudyDate", "StudyInstanceUID", "SOPInstanceUID",
                    "PatientAddress", "OperatorsName", "DeviceSerialNumber", "StationName", "ImageComments"):
        assert keyword in BASIC_PROFILE_KEYWORDS
    assert ACTIONS["PatientName"] == Action.BLANK and ACTIONS["StudyInstanceUID"] == Action.REPLACE_UID
    assert ACTIONS["InstitutionName"] == Action.REMOVE


@pytest.mark.parametrize("syntax", ["explicit", "implicit", "rle", "jpeg2000_lossless"])
def test_no_sentinel_leaves_the_reader(
    make_dicom: MakeDicom, phi_sentinel_values: Sentinels, read_options: ReadOptions, syntax: str
) -> None:
    sentinels = phi_sentinel_values(7)
    assert len(sentinels) >= 100
    data = make_dicom(phi=True, instance=7, transfer_syntax=syntax, bits=12, burned_in=False)
    assert len(_leaks(data, sentinels)) == len(sentinels)  # the file really carries every one of them
    image = read_dicom(data, "memory://phi.dcm", read_options)
    assert isinstance(image, Image2D)
    for blob in (repr(image), repr(image.meta), str(dataclasses.asdict(image.meta)), pickle.dumps(image)):
        assert _leaks(blob, sentinels) == []
    assert image.meta.patient_id == read_options.pseudonymize("patient", sentinels["PatientID"])
    assert image.meta.study_id == read_options.pseudonymize("study", sentinels["StudyInstanceUID"])
    assert image.meta.series_id == read_options.pseudonymize("series", sentinels["SeriesInstanceUID"])
    assert image.meta.instance_id == read_options.pseudonymize("instance", sentinels["SOPInstanceUID"])


def _quarantine(data: bytes, options: ReadOptions) -> QuarantineError:
    with pytest.raises(QuarantineError) as info:
        read_dicom(data, "memory://phi.dcm", options)
    return info.value


def test_quarantine_messages_carry_no_phi(
    make_dicom: MakeDicom, phi_sentinel_values: Sentinels, read_options: ReadOptions
) -> None:
    sentinels = phi_sentinel_values(3)
    full = make_dicom(phi=True, instance=3, bits=12)
    bad = {
        Reason.BURNED_IN_ANNOTATION: make_dicom(phi=True, instance=3, burned_in=True),
        Reason.TRUNCATED: full[: len(full) - 500],
        Reason.BAD_DIMENSIONS: make_dicom(phi=True, instance=3, extra={"Rows": 0}),
        Reason.MISSING_PIXEL_DATA: make_dicom(phi=True, instance=3, drop=("PixelData",)),
        Reason.DECODE_ERROR: make_dicom(phi=True, instance=3, extra={"BitsStored": 40}),
    }
    for reason, data in bad.items():
        err = _quarantine(data, read_options)
        assert err.reason == reason
        assert _leaks(f"{err} {err.detail!r} {err!r}", sentinels) == []
        # no chained pydicom exception (whose message may quote a value) shows up in a logged traceback
        assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_no_phi_in_warnings_or_logs(
    make_dicom: MakeDicom, phi_sentinel_values: Sentinels, read_options: ReadOptions, caplog: pytest.LogCaptureFixture
) -> None:
    # Values invalid for their VR make pydicom warn *quoting the value*; the reader must not let that out.
    sentinels = phi_sentinel_values(5)
    free_text = "phi free text 7f3a view"
    bad_uid = "1.2.840.7f3a.PHI"  # not a valid UI: pydicom's validation warning would quote it
    data = make_dicom(phi=True, instance=5, view=free_text,
                      extra={"BodyPartExamined": sentinels["PatientName"], "StudyInstanceUID": bad_uid})
    caplog.set_level(logging.DEBUG)
    caplog.clear()  # building the file logged pydicom's complaints about the odd values; reading must not
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_dicom(data, "memory://phi.dcm", read_options)
    messages = " ".join(str(w.message) for w in caught) + " ".join(r.getMessage() for r in caplog.records)
    assert _leaks(messages, {**sentinels, "view": free_text, "uid": bad_uid}) == []
    assert image.meta.study_id == read_options.pseudonymize("study", bad_uid)
    assert image.meta.view == "" and image.meta.body_part == ""  # not valid code strings: dropped, not kept
    assert isinstance(image, Image2D)


def test_pseudonyms_are_keyed_and_stable(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    first = make_dicom(phi=True, instance=1)
    again = read_dicom(first, "a", read_options).meta
    same = read_dicom(first, "b", read_options).meta
    assert dataclasses.astuple(again) == dataclasses.astuple(same)
    other_key = dataclasses.replace(read_options, pseudonymize=Pseudonymizer(b"another site's key"))
    moved = read_dicom(first, "a", other_key).meta
    for field in ("patient_id", "study_id", "series_id", "instance_id"):
        assert getattr(again, field) != getattr(moved, field)
        assert getattr(again, field).startswith(field.split("_")[0] + "-")
    second = read_dicom(make_dicom(phi=True, instance=2), "c", read_options).meta
    assert second.patient_id != again.patient_id and second.instance_id != again.instance_id
    same_patient = read_dicom(make_dicom(phi=False, instance=4, extra={"PatientID": "MRN-1"}), "d", read_options)
    also = read_dicom(make_dicom(phi=False, instance=9, extra={"PatientID": "MRN-1"}), "e", read_options)
    assert same_patient.meta.patient_id == also.meta.patient_id
    assert same_patient.meta.instance_id != also.meta.instance_id


def _stripped(data: bytes, key: bytes | None) -> pydicom.Dataset:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add_new(0x00111010, "LO", "PHI-private-7f3a")  # a private tag, removed by default
    ds.add_new(0x00110010, "LO", "SITE PRIVATE")
    return strip_phi(ds, uid_key=key)


def _bytes(ds: pydicom.Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_strip_phi_removes_every_sentinel(
    make_dicom: MakeDicom, phi_sentinel_values: Sentinels, read_options: ReadOptions
) -> None:
    sentinels = {**phi_sentinel_values(2), "private": "PHI-private-7f3a"}
    data = make_dicom(phi=True, instance=2, bits=12, transfer_syntax="rle")
    clean = _bytes(_stripped(data, key=b"export-key"))
    assert _leaks(clean, sentinels) == []
    ds = pydicom.dcmread(io.BytesIO(clean))
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == "" and "InstitutionName" not in ds
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID  # references stay consistent
    assert str(ds.SOPInstanceUID).startswith("2.25.")
    before = read_dicom(data, "x", read_options).pixels
    after = read_dicom(clean, "x", read_options).pixels
    assert (before == after).all()  # pixels untouched


def test_strip_phi_uid_mapping(make_dicom: MakeDicom) -> None:
    data = make_dicom(phi=True, instance=4)
    keyed = [_stripped(data, key=b"k1") for _ in range(2)]
    assert keyed[0].StudyInstanceUID == keyed[1].StudyInstanceUID  # same key: same study across runs
    assert _stripped(data, key=b"k2").StudyInstanceUID != keyed[0].StudyInstanceUID
    unkeyed = [_stripped(data, key=None) for _ in range(2)]
    assert unkeyed[0].StudyInstanceUID != unkeyed[1].StudyInstanceUID  # random per call without a key
    assert keyed[0].StudyInstanceUID != keyed[0].SeriesInstanceUID


def test_burned_in_flag_survives_as_meta_only(make_dicom: MakeDicom, read_options: ReadOptions) -> None:
    keep = dataclasses.replace(read_options, burned_in=BurnedInPolicy.KEEP)
    image = read_dicom(make_dicom(phi=True, burned_in=True), "x", keep)
    assert isinstance(image, Image2D) and image.meta.burned_in_annotation
