"""Batch import from a folder of case folders or a manifest: bad files reported while good ones
import, de-duplication by keyed digest, re-runs that change nothing, cancel, no empty cases.

Real files written into tmp_path: a WFDB record (wfdb's writer), a PNG of scikit-image's IHC
micrograph, pydicom's 12-lead ECG (truncated: the corrupt file), a Word-like zip (unsupported).
Each good file costs a few child-process reads, so the tests use few of them; the manifest
tests mostly use vital signs, which need no child process.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from clinic_app.domain.errors import AccessDenied, InputError
from clinic_app.domain.records import Role
from clinic_app.services.batch_import import (
    CaseState,
    ImportReport,
    Outcome,
    plan_import,
    run_import,
    write_import_report,
)
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.identifiers import PatientIdentifierCipher
from clinic_app.services.ingest import IngestService
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import (
    AuditEvent,
    Case,
    CaseInput,
    ImportedSource,
    NoteVersion,
    Patient,
    VitalSigns,
)
from tests.services.test_cases import make_actor

SECRET = b"b" * 32
NOTE = "Palpitations for two days, worse on exertion. No chest pain. Known hypertension.\n"


@pytest.fixture
def cases(database: Database, tmp_path: Path) -> CaseService:
    return CaseService(
        database, tmp_path / "inputs", identifiers=PatientIdentifierCipher(b"i" * 64)
    )


@pytest.fixture
def ingest(cases: CaseService) -> IngestService:
    return IngestService(cases, SECRET)


@pytest.fixture
def clinician(database: Database) -> Actor:
    return make_actor(database, "dr_import", Role.CLINICIAN)


def write_wfdb(folder: Path, name: str = "rec") -> Path:
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(0, 4, 1 / 250)
    signal = np.stack([0.8 * np.sin(2 * np.pi * 1.2 * t), 0.5 * np.cos(2 * np.pi * 1.2 * t)], 1)
    wfdb.wrsamp(
        name,
        fs=250,
        units=["mV", "mV"],
        sig_name=["I", "II"],
        p_signal=signal,
        fmt=["16", "16"],
        write_dir=str(folder),
        comments=["Age: 58", "Sex: Female"],
    )
    return folder / f"{name}.hea"


def write_png(path: Path) -> Path:
    import skimage.data

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skimage.data.immunohistochemistry()[::4, ::4]).save(path)
    return path


def write_truncated_dicom(path: Path) -> Path:
    data = Path(str(get_testdata_file("waveform_ecg.dcm"))).read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 3])
    return path


def write_unsupported(path: Path) -> Path:
    """A Word-like document (a zip): not an image, ECG or plain-text note."""
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    return path


def row_counts(database: Database) -> dict[str, int]:
    tables = (Case, Patient, CaseInput, NoteVersion, VitalSigns, ImportedSource)
    with database.read() as session:
        return {
            t.__tablename__: session.scalar(select(func.count()).select_from(t)) or 0
            for t in tables
        }


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def by_source(report: ImportReport) -> dict[str, tuple[Outcome, str]]:
    return {Path(i.source).name: (i.outcome, i.message) for i in report.items}


def test_folder_import_reports_bad_files_keeps_good_ones_and_reruns_change_nothing(
    cases: CaseService,
    ingest: IngestService,
    clinician: Actor,
    database: Database,
    tmp_path: Path,
) -> None:
    root = tmp_path / "batch"
    write_wfdb(root / "S24-0012")
    (root / "S24-0012" / "note.txt").write_text(NOTE, encoding="utf-8")
    (root / "S24-0012" / "vitals.json").write_text(
        json.dumps({"heart_rate_bpm": 96, "blood_pressure": "150/95", "spo2_percent": "97 %"})
    )
    write_png(root / "S24-0013" / "biopsy.png")
    write_truncated_dicom(root / "S24-0013" / "ecg.dcm")
    write_unsupported(root / "S24-0014" / "referral.docx")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden files are ignored

    plan = plan_import(root)
    assert plan.problems == []
    assert [c.external_id for c in plan.cases] == ["S24-0012", "S24-0013", "S24-0014"]
    first = plan.cases[0]
    # The WFDB record is one input: its header with its signal file.
    assert [(i.path.name, [f.name for f in i.files]) for i in first.inputs] == [
        ("note.txt", ["note.txt"]),
        ("rec.hea", ["rec.dat", "rec.hea"]),
    ]
    assert len(first.vitals) == 1 and first.vitals[0].vitals.systolic_mmhg == 150
    assert first.case_id == "S24-0012" and [f.name for f in first.files] == ["note.txt", "rec.hea"]

    before = row_counts(database)
    fractions: list[float] = []
    report = run_import(
        cases, ingest, clinician, plan, progress=lambda fraction, _: fractions.append(fraction)
    )

    outcomes = by_source(report)
    assert outcomes["note.txt"][0] is Outcome.IMPORTED
    assert outcomes["rec.hea"][0] is Outcome.IMPORTED
    assert outcomes["biopsy.png"][0] is Outcome.IMPORTED
    assert outcomes["ecg.dcm"][0] is Outcome.FAILED
    assert "ecg.dcm is not a readable DICOM file" in outcomes["ecg.dcm"][1]
    assert outcomes["referral.docx"][0] is Outcome.FAILED
    assert "not a text file" in outcomes["referral.docx"][1]
    vitals = [i for i in report.items if i.kind == "vitals"]
    assert [v.outcome for v in vitals] == [Outcome.IMPORTED]
    # A case whose every input fails is not created.
    states = {c.case_id: c.state for c in report.cases}
    assert states == {
        "S24-0012": CaseState.CREATED,
        "S24-0013": CaseState.CREATED,
        "S24-0014": CaseState.NOT_CREATED,
    }
    assert len(report.created_case_uids) == 2 and report.case_uids == report.created_case_uids
    assert report.counts["imported"] == 4 and report.counts["failed"] == 2
    assert not report.ok
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    text = report.to_text()
    assert str(root / "S24-0013" / "ecg.dcm") in text and "referral.docx" in text
    for case_uid in report.created_case_uids:
        assert case_uid in text

    after = row_counts(database)
    assert after["cases"] - before["cases"] == 2
    assert after["case_inputs"] - before["case_inputs"] == 2  # the ECG and the image
    assert after["note_versions"] - before["note_versions"] == 1
    assert after["vital_signs"] - before["vital_signs"] == 1
    # Two case ids and three sources, keyed: never the plain sha256 of an id or a file.
    assert after["imported_sources"] == 5
    with database.read() as session:
        digests = set(session.scalars(select(ImportedSource.digest)))
        kinds = sorted(session.scalars(select(ImportedSource.kind)))
        titles = list(session.scalars(select(Case.title)))
    assert kinds == ["case", "case", "ecg", "image", "note"]
    assert hashlib.sha256(b"S24-0012").hexdigest() not in digests
    png = (root / "S24-0013" / "biopsy.png").read_bytes()
    assert hashlib.sha256(png).hexdigest() not in digests
    # The external id (often an accession number) is not written in clear.
    assert all(t.startswith("Imported ") and "S24" not in t for t in titles)
    detail = cases.get_case(clinician, report.created_case_uids[0])
    assert [n.text for n in detail.notes][-1].startswith("Palpitations")

    # The same import again: everything is a duplicate and nothing changes.
    files = stored_files(tmp_path / "inputs")
    again = run_import(cases, ingest, clinician, plan_import(root))
    assert row_counts(database) == after
    assert stored_files(tmp_path / "inputs") == files
    assert again.created_case_uids == []
    assert again.counts["imported"] == 0 and again.counts["duplicate"] == 4
    assert {i.source for i in again.items if i.outcome is Outcome.DUPLICATE} == {
        str(root / "S24-0012" / "note.txt"),
        str(root / "S24-0012" / "rec.hea"),
        str(root / "S24-0013" / "biopsy.png"),
        "vitals (S24-0012/vitals.json)",
    }
    duplicates = [i for i in again.items if i.outcome is Outcome.DUPLICATE and i.kind != "vitals"]
    assert all(i.message.startswith("already imported into case C-") for i in duplicates)
    assert {c.case_id: c.state for c in again.cases} == {
        "S24-0012": CaseState.UNCHANGED,
        "S24-0013": CaseState.UNCHANGED,
        "S24-0014": CaseState.NOT_CREATED,
    }

    # A new file in a known case folder goes into the same case (the id's digest maps it).
    (root / "S24-0012" / "addendum.md").write_text("Holter booked.\n", encoding="utf-8")
    third = run_import(cases, ingest, clinician, plan_import(root))
    assert {c.case_id: (c.state, c.case_uid) for c in third.cases}["S24-0012"] == (
        CaseState.ADDED_TO,
        report.cases[0].case_uid,
    )
    assert third.counts["imported"] == 1
    assert third.case_uids == [report.cases[0].case_uid] and third.created_case_uids == []
    assert row_counts(database)["cases"] == after["cases"]


def test_manifest_rows_with_problems_are_reported_by_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text(NOTE, encoding="utf-8")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "case_id,image,ecg,note,birth_year,sex,heart_rate_bpm,blood_pressure\n"
        "A-1,,,notes/a.txt,1961,F,72,120/80\n"
        "A-2,,,notes/missing.txt,,,,\n"
        "A-3,,,notes/a.txt,1700,,,\n"
        "A-4,,,,,,500,\n"
        ",,,notes/a.txt,,,,\n"
        "A-5,,,,,,,\n"
        "A-1,,,,,male,,\n",
        encoding="utf-8",
    )
    plan = plan_import(manifest)
    # A-1 has a second row that contradicts its sex: the whole case waits for a fix.
    assert plan.cases == []
    where = {(p.line, p.column) for p in plan.problems}
    assert (3, "note") in where  # missing file
    assert (4, "birth_year") in where
    assert (5, "heart_rate_bpm") in where
    assert (6, None) in where  # no case_id
    assert (7, None) in where  # nothing to import
    assert (8, "sex") in where  # contradicts line 2
    text = "\n".join(str(p) for p in plan.problems)
    assert f"{manifest}, line 3, column note: the file 'notes/missing.txt' does not exist" in text
    assert "line 4, column birth_year: Birth year: '1700' is not a year" in text
    assert "Heart rate: 500 bpm is outside the accepted range" in text

    manifest.write_text(
        "case_id,note,birth_year,sex,heart_rate_bpm\n"
        "A-1,notes/a.txt,1961,F,72\n"
        "A-1,,,,80\n"  # rows with the same case_id add to one case
        ",,,,\n"  # an empty row is skipped
        "A-2,notes/a.txt,,,\n",
        encoding="utf-8",
    )
    plan = plan_import(manifest)
    assert plan.problems == []
    assert [(c.external_id, c.birth_year, c.sex) for c in plan.cases] == [
        ("A-1", 1961, "female"),
        ("A-2", None, None),
    ]
    assert [v.vitals.heart_rate_bpm for v in plan.cases[0].vitals] == [72, 80]
    assert plan.cases[0].origin == "manifest.csv lines 2, 3"
    assert plan.cases[0].inputs[0].origin == "manifest.csv line 2, column note"


def test_an_unknown_column_refuses_the_whole_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,imgae,note,heart_rate\nX,a.png,n.txt,70\n", encoding="utf-8")
    plan = plan_import(manifest)
    assert plan.cases == []
    (problem,) = plan.problems
    assert "'imgae' (did you mean 'image'?)" in problem.message
    assert "'heart_rate' (did you mean 'heart_rate_bpm'?)" in problem.message
    assert "nothing was imported" in problem.message


def test_plan_refuses_what_is_neither_a_folder_nor_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        plan_import(tmp_path / "nowhere")
    (tmp_path / "cases.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match="neither a folder nor a manifest"):
        plan_import(tmp_path / "cases.xlsx")
    (tmp_path / "bad.json").write_text('[{"case_id": "X", "note": "n.txt"},\n  {oops}]')
    (problem,) = plan_import(tmp_path / "bad.json").problems
    assert problem.line == 2 and "not valid JSON" in problem.message


def test_json_manifest_imports_once_what_is_listed_twice_and_keeps_ids_encrypted(
    cases: CaseService,
    ingest: IngestService,
    clinician: Actor,
    database: Database,
    tmp_path: Path,
) -> None:
    (tmp_path / "shared-note.txt").write_text(NOTE, encoding="utf-8")
    entries = [
        {
            "case_id": "ACC-100",
            "note": "shared-note.txt",
            "patient_id": "mrn 00 4471",
            "birth_year": 1950,
            "sex": "male",
            "vitals": {"heart_rate_bpm": 64, "temperature_c": "98.6 °F"},
        },
        {"case_id": "ACC-101", "note": "shared-note.txt", "heart_rate_bpm": 88},
    ]
    manifest = tmp_path / "cases.json"
    manifest.write_text("[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n")
    plan = plan_import(manifest)
    assert plan.problems == []
    assert [c.origin for c in plan.cases] == ["cases.json line 2", "cases.json line 3"]
    assert plan.cases[0].vitals[0].vitals.temperature_c == 37.0
    # The same cases as JSON Lines plan the same way.
    lines = tmp_path / "cases.jsonl"
    lines.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    assert [c.external_id for c in plan_import(lines).cases] == ["ACC-100", "ACC-101"]

    report = run_import(cases, ingest, clinician, plan)
    assert report.counts["failed"] == 0 and report.ok
    notes = [i for i in report.items if i.kind != "vitals"]
    assert [i.outcome for i in notes] == [Outcome.IMPORTED, Outcome.DUPLICATE]
    first_uid = report.cases[0].case_uid
    assert (
        notes[1].message == f"listed twice in this import; imported into case {first_uid} (ACC-100)"
    )
    # ACC-101's note was a duplicate, but its vitals are its own: the case is created.
    assert [c.state for c in report.cases] == [CaseState.CREATED, CaseState.CREATED]
    assert row_counts(database)["note_versions"] == 1
    assert row_counts(database)["vital_signs"] == 2
    assert first_uid is not None
    assert cases.reveal_identifier(clinician, first_uid) == "MRN004471"
    with database.read() as session:
        patient = session.scalars(
            select(Patient).join(Case).where(Case.case_uid == first_uid)
        ).one()
        assert patient.birth_year == 1950 and patient.sex == "male"
        assert b"4471" not in (patient.identifier_encrypted or b"")

    path = write_import_report(report, tmp_path / "out" / "report.json")
    written = json.loads(path.read_text())
    assert written["counts"]["imported"] == 3 and written["created_case_uids"] == [
        c.case_uid for c in report.cases
    ]
    assert path.stat().st_mode & 0o077 == 0  # it names the external ids: this user only


def test_cancel_between_cases_keeps_what_is_done_and_reports_the_rest(
    cases: CaseService,
    ingest: IngestService,
    clinician: Actor,
    database: Database,
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "vitals.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps({"case_id": f"V-{n}", "heart_rate_bpm": 60 + n, "spo2_percent": 97})
            for n in range(3)
        )
        + "\n"
    )
    plan = plan_import(manifest)
    started: list[str] = []
    report = run_import(
        cases,
        ingest,
        clinician,
        plan,
        progress=lambda _, message: started.append(message),
        cancel=lambda: bool(started),  # cancel as soon as the first case has begun
    )
    assert report.cancelled and not report.ok
    assert [(c.case_id, c.state) for c in report.cases] == [
        ("V-0", CaseState.CREATED),
        ("V-1", CaseState.NOT_DONE),
        ("V-2", CaseState.NOT_DONE),
    ]
    assert report.counts["imported"] == 1 and report.counts["not_done"] == 2
    assert "CANCELLED" in report.to_text() and "Not done" in report.to_text()
    assert row_counts(database)["cases"] == 1

    resumed = run_import(cases, ingest, clinician, plan_import(manifest))
    assert [c.state for c in resumed.cases] == [
        CaseState.UNCHANGED,
        CaseState.CREATED,
        CaseState.CREATED,
    ]
    assert resumed.counts["duplicate"] == 1 and resumed.counts["imported"] == 2
    assert row_counts(database)["cases"] == 3


def test_a_role_that_cannot_create_cases_is_refused_and_audited(
    cases: CaseService, ingest: IngestService, database: Database, tmp_path: Path
) -> None:
    reviewer = make_actor(database, "rev", Role.REVIEWER)
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,heart_rate_bpm\nX,70\n", encoding="utf-8")
    with pytest.raises(AccessDenied):
        run_import(cases, ingest, reviewer, plan_import(manifest))
    assert row_counts(database)["cases"] == 0
    with database.read() as session:
        refused = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "case.import")
        ).one()
    assert refused.details["refused"] == "case.create"


def test_admin_actor_cannot_create_cases_itself(
    cases: CaseService, ingest: IngestService, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,heart_rate_bpm\nX,70\n", encoding="utf-8")
    with pytest.raises(AccessDenied):
        run_import(cases, ingest, Actor.system(), plan_import(manifest))


@pytest.mark.slow
def test_manifest_with_a_dicom_ecg_and_a_secondary_capture_image(
    cases: CaseService,
    ingest: IngestService,
    clinician: Actor,
    database: Database,
    tmp_path: Path,
) -> None:
    """pydicom's real 12-lead ECG and TCGA H&E tile through a manifest (slow: the ECG's
    metadata is scrubbed string by string by the learned tagger, several seconds here).
    The tile is a Secondary Capture that does not say it is free of burned-in text: a batch
    import never overrides that check, so it is reported with what to do."""
    ecg = Path(str(get_testdata_file("waveform_ecg.dcm")))
    tile = Path(str(get_testdata_file("SC_jpeg_no_color_transform.dcm")))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,ecg,image\nD-1,{ecg},{tile}\n", encoding="utf-8")
    report = run_import(cases, ingest, clinician, plan_import(manifest))
    outcomes = {i.kind or Path(i.source).name: i for i in report.items}
    assert outcomes["ecg"].outcome is Outcome.IMPORTED
    refused = outcomes[tile.name]
    assert refused.outcome is Outcome.FAILED and "burned-in annotation" in refused.message
    again = run_import(cases, ingest, clinician, plan_import(manifest))
    assert [i.outcome for i in again.items] == [Outcome.DUPLICATE, Outcome.FAILED]
    assert row_counts(database)["case_inputs"] == 1
