"""The report as a DICOM Encapsulated PDF: reads back, holds the same PDF, pseudonymous."""

from __future__ import annotations

import dataclasses
import io
import warnings

import pydicom
import pytest
from pydicom import config

from clinic_app.domain.errors import InputError
from clinic_app.reporting.data import ReportData
from clinic_app.reporting.dicom import ENCAPSULATED_PDF_STORAGE, encapsulated_pdf, report_uids
from clinic_app.reporting.pdf import render_pdf
from tests.reporting import sample


@pytest.fixture(scope="module")
def data() -> ReportData:
    return sample.report_data()


@pytest.fixture(scope="module")
def pdf(data: ReportData) -> bytes:
    return render_pdf(data)


def _read(blob: bytes) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return pydicom.dcmread(io.BytesIO(blob))


def test_round_trip_gives_back_the_same_pdf(data: ReportData, pdf: bytes) -> None:
    ds = _read(encapsulated_pdf(pdf, data))
    assert ds.file_meta.MediaStorageSOPClassUID == ENCAPSULATED_PDF_STORAGE
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    stored = bytes(ds.EncapsulatedDocument)
    assert len(stored) % 2 == 0
    assert stored[: ds.EncapsulatedDocumentLength] == pdf
    assert ds.Modality == "DOC" and ds.BurnedInAnnotation == "YES"
    assert ds.Manufacturer == "ClinicFusion"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "47045-0"
    assert ds.ConceptNameCodeSequence[0].CodingSchemeDesignator == "LN"
    assert ds.ContentDate == "20260302" and ds.ContentTime == "100012"
    assert data.case_uid in ds.DocumentTitle


def test_an_odd_length_pdf_is_padded_and_its_length_recorded(data: ReportData) -> None:
    odd = b"%PDF-1.4\n%tiny\n%%EOF\n"
    assert len(odd) % 2 == 1
    ds = _read(encapsulated_pdf(odd, data))
    assert ds.EncapsulatedDocumentLength == len(odd)
    assert bytes(ds.EncapsulatedDocument) == odd + b"\x00"


def test_only_pseudonymous_identifiers(data: ReportData, pdf: bytes) -> None:
    ds = _read(encapsulated_pdf(pdf, data))
    assert str(ds.PatientName) == data.patient_pseudonym == ds.PatientID
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""
    assert ds.AccessionNumber == "" and ds.ReferringPhysicianName == ""
    assert ds.PatientIdentityRemoved == "YES"
    assert data.title not in str(ds.DocumentTitle)  # free text stays in the PDF only


def test_uids_are_deterministic_per_case_and_content(data: ReportData, pdf: bytes) -> None:
    study, series, instance = report_uids(pdf, data)
    assert report_uids(pdf, data) == (study, series, instance)
    other_pdf = report_uids(pdf + b"\n", data)
    assert other_pdf[:2] == (study, series) and other_pdf[2] != instance
    other_case = report_uids(pdf, dataclasses.replace(data, case_uid="c-other"))
    assert other_case[0] != study
    ds = _read(encapsulated_pdf(pdf, data))
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
        study,
        series,
        instance,
    )
    assert encapsulated_pdf(pdf, data) == encapsulated_pdf(pdf, data)


def test_the_dataset_is_valid_in_pydicom_strict_mode(data: ReportData, pdf: bytes) -> None:
    ds = _read(encapsulated_pdf(pdf, data))
    previous = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.RAISE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for element in ds.iterall():  # re-assigning validates each value strictly
                if element.VR not in ("SQ", "OB"):
                    ds_value = element.value
                    element.value = ds_value
            ds.save_as(io.BytesIO(), enforce_file_format=True)
    finally:
        config.settings.writing_validation_mode = previous


def test_no_analysis_and_bad_inputs(data: ReportData, pdf: bytes) -> None:
    bare = sample.report_data(analysed=False, signed=False, slide=False, ecg=False)
    ds = _read(encapsulated_pdf(render_pdf(bare), bare))
    assert ds.SoftwareVersions == "ClinicFusion 0.1.0" or "ClinicFusion" in ds.SoftwareVersions
    assert ds.DocumentTitle.startswith("ClinicFusion explanation report")
    with pytest.raises(InputError, match="not a PDF"):
        encapsulated_pdf(b"hello", data)
    with pytest.raises(InputError, match="patient pseudonym"):
        encapsulated_pdf(pdf, dataclasses.replace(data, patient_pseudonym="P" * 65))
