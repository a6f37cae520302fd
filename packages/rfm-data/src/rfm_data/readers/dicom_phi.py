"""The PS3.15 Annex E Basic Application Level Confidentiality Profile, as data, and :func:`strip_phi`.

rfm's readers never need this list to stay safe: they copy an explicit *allow-list* of attributes out of a
file (see :mod:`rfm_data.readers.dicom`), so nothing else can leak. The list exists for users who write
DICOM files back out (a de-identified export) and for tests that fill every listed attribute with a
sentinel and then check that none of them reaches a shard, a manifest or a log.

Actions follow Table E.1-1: ``Z``/``D`` attributes are blanked (kept present, as their IODs require),
``U`` attributes (UIDs) are replaced by new ``2.25`` UIDs, consistently within one call and across calls
that share a key, and ``X`` attributes are removed. Overlays, curves and private tags are removed too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from enum import Enum

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence


class Action(str, Enum):
    """What the Basic Profile does to one attribute."""

    BLANK = "Z"  # keep the attribute, empty value (Z, and D where a dummy value is allowed to be empty)
    REPLACE_UID = "U"  # replace with a new UID, consistent within the dataset
    REMOVE = "X"


# Type 1/2 attributes of common IODs: blanking keeps the file valid where removal would not.
_BLANK: tuple[str, ...] = (
    "AccessionNumber", "ContentCreatorName", "ContentDate", "ContentTime", "ContrastBolusAgent",
    "FillerOrderNumberImagingServiceRequest", "PatientBirthDate", "PatientID", "PatientName", "PatientSex",
    "PersonName", "PlacerOrderNumberImagingServiceRequest", "ReferringPhysicianName", "StudyDate", "StudyID",
    "StudyTime", "VerifyingObserverIdentificationCodeSequence", "VerifyingObserverName",
    "VerifyingObserverSequence", "VerifyingOrganization",
)

_UIDS: tuple[str, ...] = (
    "AffectedSOPInstanceUID", "ConcatenationUID", "ContextGroupExtensionCreatorUID", "CreatorVersionUID",
    "DeviceUID", "DimensionOrganizationUID", "DoseReferenceUID", "FailedSOPInstanceUIDList", "FiducialUID",
    "FrameOfReferenceUID", "InstanceCreatorUID", "IrradiationEventUID", "LargePaletteColorLookupTableUID",
    "MediaStorageSOPInstanceUID", "ReferencedFrameOfReferenceUID",
    "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID", "ReferencedSOPInstanceUID",
    "ReferencedSOPInstanceUIDInFile", "RelatedFrameOfReferenceUID", "RequestedSOPInstanceUID",
    "SeriesInstanceUID", "SOPInstanceUID", "StorageMediaFileSetUID", "StudyInstanceUID",
    "SynchronizationFrameOfReferenceUID", "TemplateExtensionCreatorUID", "TemplateExtensionOrganizationUID",
    "TransactionUID", "UID",
)

_REMOVE: tuple[str, ...] = (
    "AcquisitionComments", "AcquisitionContextSequence", "AcquisitionDate", "AcquisitionDateTime",
    "AcquisitionDeviceProcessingDescription", "AcquisitionProtocolDescription", "AcquisitionTime",
    "ActualHumanPerformersSequence", "AdditionalPatientHistory", "AdmissionID", "AdmittingDate",
    "AdmittingDiagnosesCodeSequence", "AdmittingDiagnosesDescription", "AdmittingTime", "Allergies",
    "AuthorObserverSequence", "BranchOfService", "CassetteID", "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription", "ConsultingPhysicianName",
    "ContentCreatorIdentificationCodeSequence", "ContentSequence", "ContributionDescription",
    "CountryOfResidence", "CurrentPatientLocation", "CustodialOrganizationSequence", "DataSetTrailingPadding",
    "DerivationDescription", "DetectorID", "DeviceSerialNumber", "DigitalSignaturesSequence",
    "DischargeDiagnosisDescription", "DistributionAddress", "DistributionName", "EthnicGroup", "FrameComments",
    "GantryID", "GeneratorID", "GraphicAnnotationSequence", "HumanPerformerName", "HumanPerformerOrganization",
    "IconImageSequence", "IdentifyingComments", "ImageComments", "ImagePresentationComments",
    "ImagingServiceRequestComments", "Impressions", "InstanceCreationDate", "InstanceCreationTime",
    "InstitutionAddress", "InstitutionCodeSequence", "InstitutionName", "InstitutionalDepartmentName",
    "InsurancePlanIdentification", "IntendedRecipientsOfResultsIdentificationSequence",
    "InterpretationApproverSequence", "InterpretationAuthor", "InterpretationDiagnosisDescription",
    "InterpretationIDIssuer", "InterpretationRecorder", "InterpretationText", "InterpretationTranscriber",
    "IssuerOfAdmissionID", "IssuerOfPatientID", "IssuerOfServiceEpisodeID", "LastMenstrualDate", "MAC",
    "MedicalAlerts", "MedicalRecordLocator", "MilitaryRank", "ModifiedAttributesSequence",
    "ModifiedImageDescription", "ModifyingDeviceID", "NameOfPhysiciansReadingStudy",
    "NamesOfIntendedRecipientsOfResults", "Occupation", "OperatorIdentificationSequence", "OperatorsName",
    "OrderCallbackPhoneNumber", "OrderEnteredBy", "OrderEntererLocation", "OriginalAttributesSequence",
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "ParticipantSequence", "PatientAddress",
    "PatientAge", "PatientBirthName", "PatientBirthTime", "PatientComments", "PatientInstitutionResidence",
    "PatientInsurancePlanCodeSequence", "PatientMotherBirthName", "PatientPrimaryLanguageCodeSequence",
    "PatientPrimaryLanguageModifierCodeSequence", "PatientReligiousPreference", "PatientSexNeutered",
    "PatientSize", "PatientState", "PatientTelecomInformation", "PatientTelephoneNumbers",
    "PatientTransportArrangements", "PatientWeight", "PerformedLocation", "PerformedProcedureStepDescription",
    "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformedStationAETitle",
    "PerformedStationGeographicLocationCodeSequence", "PerformedStationName",
    "PerformedStationNameCodeSequence", "PerformingPhysicianIdentificationSequence", "PerformingPhysicianName",
    "PersonAddress", "PersonIdentificationCodeSequence", "PersonTelecomInformation", "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence", "PlateID", "PreMedication", "PregnancyStatus",
    "ProtocolName", "ReasonForStudy", "ReasonForTheImagingServiceRequest",
    "ReferencedDigitalSignatureSequence", "ReferencedImageSequence", "ReferencedPatientAliasSequence",
    "ReferencedPatientSequence", "ReferencedPerformedProcedureStepSequence",
    "ReferencedSOPInstanceMACSequence", "ReferencedStudySequence", "ReferringPhysicianAddress",
    "ReferringPhysicianIdentificationSequence", "ReferringPhysicianTelephoneNumbers", "RegionOfResidence",
    "RequestAttributesSequence", "RequestedContrastAgent", "RequestedProcedureComments",
    "RequestedProcedureDescription", "RequestedProcedureID", "RequestedProcedureLocation",
    "RequestingPhysician", "RequestingService", "ResponsibleOrganization", "ResponsiblePerson",
    "ResultsComments", "ResultsDistributionListSequence", "ResultsIDIssuer", "ReviewDate", "ReviewTime",
    "ReviewerName", "ScheduledHumanPerformersSequence", "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence", "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription", "ScheduledProcedureStepEndDate", "ScheduledProcedureStepEndTime",
    "ScheduledProcedureStepLocation", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
    "ScheduledStationAETitle", "ScheduledStationGeographicLocationCodeSequence", "ScheduledStationName",
    "ScheduledStationNameCodeSequence", "ScheduledStudyLocation", "ScheduledStudyLocationAETitle",
    "SeriesDate", "SeriesDescription", "SeriesTime", "ServiceEpisodeDescription", "ServiceEpisodeID",
    "SmokingStatus", "SourceImageSequence", "SpecialNeeds", "StationName", "StudyComments",
    "StudyDescription", "StudyIDIssuer", "TextComments", "TextString", "TimezoneOffsetFromUTC", "TopicAuthor",
    "TopicKeywords", "TopicSubject", "TopicTitle", "VisitComments",
)

#: Every attribute keyword of the Basic Profile that has a fixed tag (overlays and curves, which live in
#: repeating groups, are handled by :func:`strip_phi` separately).
ACTIONS: dict[str, Action] = {
    **{k: Action.REMOVE for k in _REMOVE},
    **{k: Action.BLANK for k in _BLANK},
    **{k: Action.REPLACE_UID for k in _UIDS},
}
BASIC_PROFILE_KEYWORDS: tuple[str, ...] = tuple(sorted(ACTIONS))

# Overlay data/comments (60xx,3000/4000) and all curve groups (50xx,eeee) may carry PHI.
_OVERLAY_ELEMENTS = frozenset({0x3000, 0x4000})


def _is_overlay_or_curve(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    is_overlay = 0x6000 <= group <= 0x601E and group % 2 == 0 and element in _OVERLAY_ELEMENTS
    return is_overlay or (0x5000 <= group <= 0x501E and group % 2 == 0)


class _UidMapper:
    """Old UID → new ``2.25.<128-bit>`` UID, keyed so that references stay consistent."""

    def __init__(self, key: bytes | None) -> None:
        # Without a key, a random one per call still keeps references consistent within the dataset.
        self._key = key if key is not None else secrets.token_bytes(32)

    def __call__(self, uid: str) -> str:
        digest = hmac.new(self._key, uid.strip().encode(), hashlib.sha256).digest()
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _apply(ds: Dataset, elem: DataElement, new_uid: _UidMapper) -> None:
    if _is_overlay_or_curve(elem.tag):
        del ds[elem.tag]
        return
    action = ACTIONS.get(elem.keyword)
    if action is None:
        return
    _HANDLERS[action](ds, elem, new_uid)


def _blank(ds: Dataset, elem: DataElement, new_uid: _UidMapper) -> None:
    elem.value = Sequence() if elem.VR == "SQ" else None


def _remove(ds: Dataset, elem: DataElement, new_uid: _UidMapper) -> None:
    del ds[elem.tag]


def _replace_uid(ds: Dataset, elem: DataElement, new_uid: _UidMapper) -> None:
    if elem.VM == 0:
        return
    if elem.VM > 1:
        elem.value = [new_uid(str(v)) for v in elem.value]
    else:
        elem.value = new_uid(str(elem.value))


_HANDLERS: dict[Action, Callable[[Dataset, DataElement, _UidMapper], None]] = {
    Action.BLANK: _blank,
    Action.REMOVE: _remove,
    Action.REPLACE_UID: _replace_uid,
}


def strip_phi(ds: Dataset, *, uid_key: bytes | None = None, remove_private: bool = True) -> Dataset:
    """Apply the Basic Profile to ``ds`` in place (nested sequences and file meta included) and return it.

    Args:
        ds: The dataset to de-identify; it is modified.
        uid_key: Secret key for UID replacement. With a key the same original UID always maps to the same
            new UID (series stay together across files and runs); without one, UIDs are consistent only
            within this call.
        remove_private: Remove private tags (the profile's default; keep them only after review).

    Returns:
        ``ds`` itself, with ``PatientIdentityRemoved = "YES"`` and ``DeidentificationMethod`` set.

    Note:
        This removes attributes only: pixels may still show burned-in text (check ``BurnedInAnnotation``).
    """
    new_uid = _UidMapper(uid_key)
    ds.walk(lambda parent, elem: _apply(parent, elem, new_uid))
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = new_uid(str(meta.MediaStorageSOPInstanceUID))
    if remove_private:
        ds.remove_private_tags()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PS3.15 E Basic Profile (rfm-data)"
    code = Dataset()  # PS3.16 CID 7050: DCM 113100 is the Basic Application Confidentiality Profile
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    return ds


__all__ = ["ACTIONS", "BASIC_PROFILE_KEYWORDS", "Action", "strip_phi"]
