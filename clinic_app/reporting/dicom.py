"""The PDF report as a DICOM Encapsulated PDF (PS3.3 A.45.1), for a PACS or a VNA.

Pseudonymous by construction: PatientName and PatientID are the patient pseudonym, the birth
date and sex are empty, and every UID is derived (pydicom ``generate_uid`` with entropy) from
the pseudonymous case id, so a re-export of the same case lands in the same study and series
and the same PDF bytes give the same SOP Instance UID.

Choices worth knowing:
- ConceptNameCodeSequence is LOINC 47045-0 "Study report" (HL7 C80 document class): the report
  covers a multimodal study (slide, ECG, note), so a single-discipline code such as 11526-1
  "Pathology study" or 11524-6 "EKG study" would misdescribe it.
- BurnedInAnnotation is "YES": the PDF itself shows the pseudonym, the case id and dates, so a
  downstream de-identifier must treat the document as carrying identifiers.
- DocumentTitle names the case id, not the free-text case title (which a user may have typed
  anything into); the title is in the PDF.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from clinic_app._version import __version__
from clinic_app.domain.errors import InputError
from clinic_app.reporting.data import ReportData

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
LOINC = "LN"
STUDY_REPORT = ("47045-0", "Study report")
_ENTROPY_ROOT = "clinicfusion-report"


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value


def _date(value: datetime) -> str:
    return _utc(value).strftime("%Y%m%d")


def _time(value: datetime) -> str:
    return _utc(value).strftime("%H%M%S")


def report_uids(pdf: bytes, data: ReportData) -> tuple[str, str, str]:
    """(StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID): deterministic, pseudonymous."""
    from pydicom.uid import generate_uid

    digest = hashlib.sha256(pdf).hexdigest()
    study = generate_uid(entropy_srcs=[_ENTROPY_ROOT, "study", data.case_uid])
    series = generate_uid(entropy_srcs=[_ENTROPY_ROOT, "series", data.case_uid])
    instance = generate_uid(
        entropy_srcs=[_ENTROPY_ROOT, "instance", data.case_uid, str(data.case_version), digest]
    )
    return str(study), str(series), str(instance)


def _check_length(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InputError(
            f"The {field} '{value[:20]}…' is {len(value)} characters long; DICOM allows "
            f"{limit}, so the report cannot be exported as DICOM."
        )


def encapsulated_pdf(pdf: bytes, data: ReportData) -> bytes:
    """A DICOM Part-10 Encapsulated PDF Storage file holding ``pdf``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID, ExplicitVRLittleEndian

    if not pdf.startswith(b"%PDF-"):
        raise InputError("The report to encapsulate is not a PDF document.")
    _check_length("patient pseudonym", data.patient_pseudonym, 64)
    study_uid, series_uid, sop_uid = report_uids(pdf, data)
    generated = _utc(data.generated_at)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8
    # SOP Common
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = _date(generated)
    ds.InstanceCreationTime = _time(generated)
    if data.generated_at.tzinfo is not None:
        ds.TimezoneOffsetFromUTC = "+0000"
    # Patient: pseudonymous only
    ds.PatientName = data.patient_pseudonym
    ds.PatientID = data.patient_pseudonym
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "ClinicFusion pseudonymous case store; no direct identifiers"
    # General Study: one study per case
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = _date(data.created_at)
    ds.StudyTime = _time(data.created_at)
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.StudyDescription = "ClinicFusion case review"
    # Encapsulated Document Series
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = "ClinicFusion explanation reports"
    ds.SeriesDate = _date(generated)
    ds.SeriesTime = _time(generated)
    # General Equipment + SC Equipment
    ds.Manufacturer = "ClinicFusion"
    ds.ManufacturerModelName = "ClinicFusion"
    versions = [f"ClinicFusion {__version__}"]
    if data.model is not None:
        versions.append(f"{data.model.name} {data.model.version}"[:64])
    ds.SoftwareVersions = versions
    ds.ConversionType = "WSD"  # workstation: made by software, not scanned
    # Encapsulated Document
    ds.InstanceNumber = data.case_version
    ds.ContentDate = _date(generated)
    ds.ContentTime = _time(generated)
    zone = "+0000" if data.generated_at.tzinfo is not None else ""
    ds.AcquisitionDateTime = generated.strftime("%Y%m%d%H%M%S") + zone
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = f"ClinicFusion explanation report, case {data.case_uid} v{data.case_version}"
    concept = Dataset()
    concept.CodeValue, concept.CodeMeaning = STUDY_REPORT
    concept.CodingSchemeDesignator = LOINC
    ds.ConceptNameCodeSequence = Sequence([concept])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    # OB must have even length: PS3.3 C.24.2.1 pads with one trailing NUL byte.
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")

    _validate(ds)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds.save_as(buffer, enforce_file_format=True, implicit_vr=False, little_endian=True)
    except (ValueError, TypeError, UserWarning) as error:
        raise InputError(f"The DICOM report could not be written: {error}") from error
    return buffer.getvalue()


def _validate(ds: Dataset) -> None:
    """Every value against its VR (length, characters) in pydicom's strict mode.

    Done here rather than by switching pydicom's global validation setting, which other
    threads (a batch export) may be using."""
    from pydicom import config
    from pydicom.multival import MultiValue
    from pydicom.valuerep import validate_value

    for element in ds.iterall():
        if element.VR in ("SQ", "OB", "UN"):
            continue
        values = element.value if isinstance(element.value, MultiValue) else [element.value]
        try:
            for value in values:
                # pydicom's IS/DS/PN objects are checked as the text they will be written as
                text_vr = element.VR in ("IS", "DS", "PN")
                validate_value(element.VR, str(value) if text_vr else value, config.RAISE)
        except ValueError as error:
            raise InputError(
                f"The DICOM report's {element.keyword or element.tag} is not valid: {error}"
            ) from error
