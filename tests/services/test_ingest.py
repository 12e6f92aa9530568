"""Importing files into a case: read safely, de-identify, store content-addressed, verify on read.

Real files only: pydicom's DICOM ECG and images, WFDB records written with wfdb's writer,
PNGs written with Pillow (with identifying text chunks), the CMU-1 SVS when ../shared is present.
"""

from __future__ import annotations

import shutil
import zipfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, PngImagePlugin
from pydicom.data import get_testdata_file

from clinic_app.domain.errors import InputError, ReadOnlyCase, StorageError
from clinic_app.domain.notes import ClinicalNote
from clinic_app.domain.records import Modality, Role
from clinic_app.domain.signals import EcgRecording
from clinic_app.io.readers import InputKind, LoadedImage
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.ingest import IngestService, load_stored
from clinic_app.storage.engine import Database
from tests.services.test_cases import make_actor

SECRET = b"k" * 32


@pytest.fixture
def cases(database: Database, tmp_path: Path) -> CaseService:
    return CaseService(database, tmp_path / "inputs")


@pytest.fixture
def ingest(cases: CaseService) -> IngestService:
    return IngestService(cases, SECRET)


@pytest.fixture
def clinician(database: Database) -> Actor:
    return make_actor(database, "dr_lin", Role.CLINICIAN)


def _stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _write_wfdb(folder: Path) -> Path:
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(0, 10, 1 / 250)
    signal = np.stack([0.8 * np.sin(2 * np.pi * 1.1 * t), 0.5 * np.cos(2 * np.pi * 1.1 * t)], 1)
    wfdb.wrsamp(
        "smith_john",
        fs=250,
        units=["mV", "mV"],
        sig_name=["I", "II"],
        p_signal=signal,
        fmt=["16", "16"],
        write_dir=str(folder),
        comments=[
            "Age: 61",
            "Sex: Male",
            "Dx: 426783006",
            "Admitted 03/14/2021 by Dr. Jonathan Smithers, MRN 00482913, tel 617-555-0142",
        ],
        base_date=__import__("datetime").date(2021, 3, 14),
        base_time=__import__("datetime").time(9, 30, 0),
    )
    return folder / "smith_john.hea"


def test_wfdb_record_is_stored_as_one_deidentified_archive(
    ingest: IngestService, cases: CaseService, clinician: Actor, tmp_path: Path
) -> None:
    header = _write_wfdb(tmp_path / "src")
    case = cases.create_case(clinician, title="Palpitations")
    result = ingest.import_file(clinician, case.case_uid, header)

    assert result.kind is InputKind.ECG and result.input is not None
    assert result.input.modality is Modality.ECG
    assert result.input.original_name == "ecg-wfdb"  # file names may identify the patient
    assert result.summary["leads"] == ["I", "II"] and result.summary["sampling_rate_hz"] == 250
    _, stored = cases.stored_input(clinician, case.case_uid, result.input.id)
    with zipfile.ZipFile(stored) as archive:
        names = archive.namelist()
        text = archive.read("record.hea").decode()
    assert names == ["record.hea", "record.dat"]
    for identifying in ("Smithers", "Jonathan", "00482913", "617-555-0142", "smith_john"):
        assert identifying not in text, identifying
    # Dates move by the patient's shift, in the record line and in the comments alike.
    shifted = date(2021, 3, 14) + timedelta(days=ingest.date_shift_days(case.patient_pseudonym))
    assert "14/03/2021" not in text and "03/14/2021" not in text
    assert f"{shifted:%d/%m/%Y}" in text.splitlines()[0]
    assert f"Admitted {shifted:%m/%d/%Y}" in text
    assert "Dx: 426783006" in text and "Age: 61" in text  # clinical content kept

    loaded = load_stored(stored)
    assert isinstance(loaded, EcgRecording)
    original = __import__("wfdb").rdrecord(str(header.with_suffix("")))
    np.testing.assert_allclose(loaded.samples, original.p_signal.T, atol=1e-3)


def test_dicom_ecg_gets_a_consistent_pseudonym(
    ingest: IngestService, cases: CaseService, clinician: Actor, tmp_path: Path
) -> None:
    source = Path(str(get_testdata_file("waveform_ecg.dcm")))
    original = pydicom.dcmread(source)
    case = cases.create_case(clinician, title="Chest pain", patient_pseudonym="P-TEST-1")
    result = ingest.import_file(clinician, case.case_uid, source)
    assert result.kind is InputKind.ECG and result.input is not None
    _, stored = cases.stored_input(clinician, case.case_uid, result.input.id)
    copy = pydicom.dcmread(stored)
    assert copy.PatientName != original.PatientName
    assert copy.StudyInstanceUID != original.StudyInstanceUID
    assert str(original.PatientName).encode() not in stored.read_bytes()

    # The same patient in another case gets the same pseudonym in the DICOM header.
    second = cases.create_case(clinician, title="Follow-up", patient_pseudonym="P-TEST-1")
    again = ingest.import_file(clinician, second.case_uid, source)
    assert again.input is not None
    _, stored_again = cases.stored_input(clinician, second.case_uid, again.input.id)
    assert pydicom.dcmread(stored_again).PatientID == copy.PatientID


def test_png_keeps_pixels_and_loses_its_metadata(
    ingest: IngestService, cases: CaseService, clinician: Actor, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, size=(96, 128, 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Dr. Jonathan Smithers")
    info.add_text("Comment", "Patient Jane Roe, MRN 00482913")
    source = tmp_path / "roe_jane_biopsy.png"
    Image.fromarray(pixels).save(source, pnginfo=info)

    case = cases.create_case(clinician, title="Biopsy")
    result = ingest.import_file(clinician, case.case_uid, source)
    assert result.kind is InputKind.IMAGE and result.input is not None
    _, stored = cases.stored_input(clinician, case.case_uid, result.input.id)
    data = stored.read_bytes()
    assert b"Smithers" not in data and b"00482913" not in data
    loaded = load_stored(stored)
    assert isinstance(loaded, LoadedImage) and loaded.info.dimensions == (128, 96)
    np.testing.assert_array_equal(np.asarray(Image.open(stored).convert("RGB")), pixels)


def test_note_file_becomes_a_scrubbed_note_version(
    ingest: IngestService, cases: CaseService, clinician: Actor, tmp_path: Path
) -> None:
    source = tmp_path / "referral.txt"
    text = "Seen by Dr. Jonathan Smithers on 03/14/2021. MRN: 00482913. Palpitations, 5 days.\n"
    source.write_bytes(text.encode("cp1252"))
    case = cases.create_case(clinician, title="Referral")
    result = ingest.import_file(clinician, case.case_uid, source)
    assert result.kind is InputKind.NOTE and result.note is not None
    assert "Smithers" not in result.note.text and "00482913" not in result.note.text
    assert "Palpitations, 5 days." in result.note.text
    assert result.note.scrubbed  # what was changed is recorded
    assert cases.get_case(clinician, case.case_uid).latest_note == result.note


def test_a_bad_file_changes_nothing(
    ingest: IngestService, cases: CaseService, clinician: Actor, tmp_path: Path
) -> None:
    good = Path(str(get_testdata_file("CT_small.dcm")))
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(good.read_bytes()[:-1000])
    case = cases.create_case(clinician, title="Scan")
    with pytest.raises(InputError, match=r"cut\.dcm"):
        ingest.import_file(clinician, case.case_uid, bad)
    assert cases.get_case(clinician, case.case_uid).inputs == []
    assert _stored_files(cases.inputs_dir) == []


def test_a_changed_stored_file_is_refused_on_read(
    ingest: IngestService, cases: CaseService, clinician: Actor, tmp_path: Path
) -> None:
    header = _write_wfdb(tmp_path / "src")
    case = cases.create_case(clinician, title="Holter")
    result = ingest.import_file(clinician, case.case_uid, header)
    assert result.input is not None
    stored = Path(result.input.stored_path)
    stored.chmod(0o644)
    with stored.open("r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00\x01")
    with pytest.raises(StorageError, match="has changed on disk"):
        cases.stored_input(clinician, case.case_uid, result.input.id)
    stored.unlink()
    with pytest.raises(StorageError, match="cannot be read"):
        cases.stored_input(clinician, case.case_uid, result.input.id)


def test_a_signed_case_refuses_imports_before_parsing(
    ingest: IngestService, cases: CaseService, clinician: Actor, tmp_path: Path
) -> None:
    case = cases.create_case(clinician, title="Done")
    cases.sign(clinician, case.case_uid, "Normal.")
    with pytest.raises(ReadOnlyCase):
        ingest.import_file(clinician, case.case_uid, tmp_path / "never-read.dcm")


@pytest.mark.data
def test_svs_is_stored_without_label_and_macro(
    ingest: IngestService, cases: CaseService, clinician: Actor, shared_data: Path
) -> None:
    source = shared_data / "pathology" / "slides" / "cmu-1-small-region.svs"
    case = cases.create_case(clinician, title="Slide")
    result = ingest.import_file(clinician, case.case_uid, source)
    assert result.kind is InputKind.SLIDE and result.input is not None
    _, stored = cases.stored_input(clinician, case.case_uid, result.input.id)
    loaded = load_stored(stored)
    assert isinstance(loaded, LoadedImage)
    assert not {"label", "macro"} & set(loaded.info.associated_images)
    assert loaded.info.dimensions == (2220, 2967)


def test_inspect_summaries_and_clear_errors(tmp_path: Path) -> None:
    from clinic_app.services.ingest import inspect_files

    header = _write_wfdb(tmp_path / "src")
    note = tmp_path / "note.txt"
    note.write_text("Dr. Jonathan Smithers saw the patient.")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    results = inspect_files([header, note, junk, tmp_path / "absent.hea"])
    assert [r.ok for r in results] == [True, True, False, False]
    ecg = results[0].summary
    assert ecg is not None and ecg["kind"] == "ecg" and ecg["duration_s"] == 10.0
    assert "Smithers" not in str(ecg["metadata"])
    assert results[2].error and "junk.dcm" in results[2].error
    assert results[3].error and "absent.hea" in results[3].error


def test_loaded_kinds_are_domain_objects(tmp_path: Path) -> None:
    from clinic_app.io.readers import read_input_isolated

    note = tmp_path / "n.txt"
    note.write_text("Chest pain since Tuesday.")
    assert isinstance(read_input_isolated(note), ClinicalNote)
    shutil.copy(str(get_testdata_file("CT_small.dcm")), tmp_path / "ct")
    image = read_input_isolated(tmp_path / "ct")  # found by content, no extension needed
    assert isinstance(image, LoadedImage) and image.info.grayscale
