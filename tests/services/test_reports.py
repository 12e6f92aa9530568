"""Explanation reports from stored cases: the ReportData gathered, the files exported (PDF,
DICOM Encapsulated PDF, FHIR), their sha256 stored and audited, batch export with a manifest.

The model runs once per module (the composite demo case "colon-ihc": pydicom's real 12-lead
ECG, scikit-image's real IHC micrograph and a note) on SQLite; each back end then records that
same analysis for its own copy of the case, so both back ends are tested without a second run.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from clinic_app.config.settings import Settings, load_settings
from clinic_app.domain.cases import AnalysisInfo, NewAnalysis, NewSuggestion
from clinic_app.domain.errors import AccessDenied, InputError, StorageError
from clinic_app.domain.records import DecisionAction, ReportKind, Role
from clinic_app.reporting.data import COMPOSITE_NOTICE, INTENDED_USE, ReportData
from clinic_app.services.case_analysis import analyse_case
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.demo_cases import seed_demo_cases
from clinic_app.services.ingest import IngestService
from clinic_app.services.reports import (
    MANIFEST_NAME,
    build_report_data,
    export_report,
    export_reports,
    format_measurements,
    model_summary,
)
from clinic_app.storage.engine import Database, create_database_engine
from clinic_app.storage.migrate import upgrade
from clinic_app.storage.orm import AuditEvent, Report
from tests.conftest import PROJECT_ROOT, _postgres_admin_url
from tests.services.test_cases import make_actor

DEMO_BUNDLE = PROJECT_ROOT / "assets" / "bundles" / "clinicfusion-demo"
ANALYSED_KEY = "colon-ihc"  # slide (IHC micrograph), 12-lead ECG and note
PLAIN_KEY = "palpitations"  # ECG and note; left unanalysed
STAMP = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


@dataclass
class Source:
    """The demo cases on SQLite, one of them analysed by the real model."""

    settings: Settings
    database: Database
    cases: CaseService
    ingest: IngestService
    clinician: Actor
    analysed_uid: str
    plain_uid: str
    analysis: AnalysisInfo


@dataclass
class Reported:
    backend: str
    settings: Settings
    database: Database
    cases: CaseService
    ingest: IngestService
    clinician: Actor
    analysed_uid: str
    plain_uid: str
    top_display: str
    rejected_display: str


def _new_analysis(info: AnalysisInfo) -> NewAnalysis:
    """A stored analysis as the NewAnalysis that recorded it (to record it again elsewhere)."""
    return NewAnalysis(
        model_name=info.model_name,
        model_version=info.model_version,
        bundle_sha256=info.bundle_sha256,
        input_sha256s=list(info.input_sha256s),
        device=info.device,
        suggestions=[
            NewSuggestion(
                s.code_system,
                s.code,
                s.display,
                s.probability,
                s.calibrated_probability,
                s.abstained,
                dict(s.evidence),
            )
            for s in info.suggestions
        ],
        timings_ms=dict(info.timings_ms),
        outputs=dict(info.outputs),
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """One real analysis of the demo case (SQLite), shared by every test of this module."""
    root = tmp_path_factory.mktemp("reports-source")
    settings = load_settings(root / "data", environ={"CLINICFUSION_KEYS_DIR": str(root / "keys")})
    database = Database(create_database_engine(f"sqlite:///{root / 'cases.sqlite3'}"))
    upgrade(database)
    cases = CaseService(database, settings.inputs_dir)
    ingest = IngestService.from_settings(cases, settings)
    analysed, plain = _seed(cases, ingest)
    clinician = make_actor(database, "dr_report", Role.CLINICIAN)
    info = analyse_case(cases, settings, clinician, analysed, bundle=DEMO_BUNDLE, device="cpu")
    yield Source(settings, database, cases, ingest, clinician, analysed, plain, info)
    database.dispose()


def _seed(cases: CaseService, ingest: IngestService) -> tuple[str, str]:
    """(analysed, plain) case ids of the two demo cases."""
    plain, analysed = seed_demo_cases(cases, ingest, Actor.system(), keys=[PLAIN_KEY, ANALYSED_KEY])
    assert analysed.title.startswith("Composite demo case — colonic")
    return analysed.case_uid, plain.case_uid


@contextmanager
def _postgres_database() -> Iterator[Database]:
    """A fresh PostgreSQL database for the module (conftest's ``database`` is per test)."""
    admin_url = _postgres_admin_url()
    if admin_url is None:
        pytest.skip("no PostgreSQL server: set CF_TEST_POSTGRES_URL to test on one")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"cf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    database = Database(create_database_engine(url))
    try:
        upgrade(database)
        yield database
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def reported(request: pytest.FixtureRequest, source: Source) -> Iterator[Reported]:
    """The analysed demo case (decided and signed) and an unanalysed one on one back end.

    SQLite: the source database itself. PostgreSQL: the same demo cases seeded with the same
    keys (so the same de-identified files and hashes) and the source's analysis recorded."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            database, cases, ingest = source.database, source.cases, source.ingest
            analysed, plain, clinician = source.analysed_uid, source.plain_uid, source.clinician
            info = source.analysis
        else:
            database = stack.enter_context(_postgres_database())
            cases = CaseService(database, source.settings.inputs_dir)
            ingest = IngestService.from_settings(cases, source.settings)
            analysed, plain = _seed(cases, ingest)
            clinician = make_actor(database, "dr_report", Role.CLINICIAN)
            info = cases.record_analysis(clinician, analysed, _new_analysis(source.analysis))
        top, second = info.suggestions[0], info.suggestions[1]
        cases.decide(clinician, analysed, top.id, DecisionAction.ACCEPT)
        cases.decide(
            clinician,
            analysed,
            second.id,
            DecisionAction.REJECT,
            reason="Rate and rhythm on the tracing do not support it",
        )
        cases.sign(clinician, analysed, "Sinus rhythm; no acute change on this ECG.")
        yield Reported(
            backend=request.param,
            settings=source.settings,
            database=database,
            cases=cases,
            ingest=ingest,
            clinician=clinician,
            analysed_uid=analysed,
            plain_uid=plain,
            top_display=top.display,
            rejected_display=second.display,
        )


def _data(reported: Reported, case_uid: str) -> ReportData:
    return build_report_data(
        reported.cases, reported.settings, reported.clinician, case_uid, generated_at=STAMP
    )


def _events(database: Database, event_type: str) -> list[AuditEvent]:
    with database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.event_type == event_type)
                .order_by(AuditEvent.sequence)
            )
        )


def _reports(database: Database) -> list[tuple[str, str, str]]:
    with database.read() as session:
        return [
            (r.kind.value, r.sha256, r.path)
            for r in session.scalars(select(Report).order_by(Report.id))
        ]


# -- the data -----------------------------------------------------------------------------------
def test_report_data_of_an_analysed_decided_signed_case(reported: Reported) -> None:
    data = _data(reported, reported.analysed_uid)
    assert data.case_uid == reported.analysed_uid and data.case_version == 1
    assert data.is_composite_demo and data.composite_notice == COMPOSITE_NOTICE
    assert data.status == "signed" and data.generated_at == STAMP
    assert data.generated_by == "dr_report" and data.intended_use == INTENDED_USE

    model = data.model
    assert model is not None
    assert (model.name, model.device) == ("clinicfusion-demo", "cpu")
    assert (
        model.bundle_sha256
        == hashlib.sha256((DEMO_BUNDLE / "metadata.json").read_bytes()).hexdigest()
    )
    metrics = dict(model.metrics)
    assert "95 % CI" in metrics["Macro AUROC (test, 331 cases)"]
    assert any(name.startswith("AUROC Atrial fibrillation") for name in metrics)
    assert model.calibration.startswith("Platt scaling per label on 217 validation cases")
    assert "composite" in model.training_data and "1,544 for training" in model.training_data
    assert any("another site" in limit for limit in model.limits)
    assert any(limit.startswith("Goal not met") for limit in model.limits)
    assert "research and demonstration" in model.intended_use

    # suggestions: ranked, calibrated, with the clinician's decision and the critical flags
    assert [s.rank for s in data.suggestions] == sorted(s.rank for s in data.suggestions)
    decided = {s.display: s.decision for s in data.suggestions}
    assert decided[reported.top_display] == "accept"
    assert decided[reported.rejected_display] == "reject"
    assert all(s.calibrated_probability is not None for s in data.suggestions)
    critical = {s.display for s in data.suggestions if s.critical}
    assert critical <= {"Atrial fibrillation", "Malignant neoplastic disease"}
    actions = [(d.action, d.suggestion_display, d.reason) for d in data.decisions]
    assert actions[0] == ("accept", reported.top_display, None)
    assert actions[1][:2] == ("reject", reported.rejected_display) and actions[1][2]
    assert data.sign_off is not None and data.sign_off.user == "dr_report"
    assert data.sign_off.final_impression.startswith("Sinus rhythm")

    # explanation: what the model read and why, fitted to the files shown
    assert data.explained_label is not None
    assert {line.modality for line in data.inputs if line.used} == {"pathology", "ecg", "note"}
    assert data.inputs_missing == {"tabular": "this model does not read tabular inputs"}
    assert set(data.gates) == {"pathology", "ecg", "note"}
    assert sum(data.gates.values()) == pytest.approx(1.0, abs=1e-3)
    slide = data.slide
    assert slide is not None and slide.heatmap is not None
    assert slide.thumbnail.dtype == np.uint8 and slide.thumbnail.shape[2] == 3
    assert (slide.level0_width, slide.level0_height) == (512, 512)  # the IHC micrograph
    assert 1 <= len(slide.top_tiles) <= 4
    scores = [score for _, score, _, _ in slide.top_tiles]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.0)
    size = slide.heatmap.tile_size_level0
    for crop, _, x, y in slide.top_tiles:
        assert crop.shape[2] == 3 and 0 < crop.shape[0] <= 256
        assert 0 <= x <= 512 - size and 0 <= y <= 512 - size
    ecg = data.ecg
    assert ecg is not None and ecg.recording.lead_count == 12
    assert ecg.relevance is not None and ecg.relevance.lead_names == ecg.recording.lead_names
    heart_rate, unit = ecg.measurements["Heart rate"]
    assert unit == "bpm" and 40 <= float(heart_rate) <= 120
    assert ecg.measurements["QTc (Bazett)"][1] == "ms"
    note = data.note
    assert note is not None and note.words and "**" not in note.text
    assert data.extra["analysis_id"] > 0


def test_report_data_of_a_case_without_analysis(reported: Reported) -> None:
    data = _data(reported, reported.plain_uid)
    assert data.model is None and data.analysed_at is None
    assert data.suggestions == () and data.decisions == () and data.sign_off is None
    assert data.is_composite_demo and data.status == "new"
    assert {line.modality for line in data.inputs} >= {"ecg", "note"}
    assert not any(line.used for line in data.inputs)
    assert data.ecg is not None and data.ecg.relevance is None and data.ecg.measurements == {}
    assert data.note is not None and data.note.words == ()  # the note, nothing highlighted
    assert data.slide is None


def test_report_settings_leave_out_heatmaps_and_note(reported: Reported) -> None:
    settings = replace(
        reported.settings,
        report_include_heatmaps=False,
        report_include_note_highlights=False,
        report_institution="Demo Clinic",
        report_footer="Internal use",
    )
    data = build_report_data(reported.cases, settings, reported.clinician, reported.analysed_uid)
    assert data.slide is not None and data.slide.heatmap is None and data.slide.top_tiles == ()
    assert data.note is None
    assert not data.include_heatmaps and not data.include_note_highlights
    assert (data.institution, data.footer) == ("Demo Clinic", "Internal use")


def test_model_summary_says_when_the_bundle_is_not_installed(settings: Settings) -> None:
    analysis = AnalysisInfo(
        id=1,
        model_name="retired-model",
        model_version="0.9",
        bundle_sha256="ab" * 32,
        input_sha256s=[],
        device="cpu",
        timings_ms={},
        outputs={},
        created_at=STAMP,
        suggestions=[],
    )
    summary = model_summary(settings, analysis)
    assert (summary.name, summary.version, summary.bundle_sha256) == (
        "retired-model",
        "0.9",
        "ab" * 32,
    )
    assert "not installed" in summary.training_data and summary.metrics == ()
    assert summary.intended_use == INTENDED_USE


def test_measurements_carry_units_and_say_what_was_not_measurable() -> None:
    shown = format_measurements({"heart_rate_bpm": 71.6, "rr_cv": 0.0312, "pr_ms": None})
    assert shown == {
        "Heart rate": ("72", "bpm"),
        "PR interval": ("not measurable", ""),
        "RR variability (CV)": ("3.1", "%"),
    }


def test_a_stored_file_that_changed_stops_the_report(reported: Reported, tmp_path: Path) -> None:
    from PIL import Image

    case = reported.cases.create_case(reported.clinician, title="Changed file")
    image = tmp_path / "micrograph.png"
    Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)).save(image)
    stored = reported.ingest.import_file(reported.clinician, case.case_uid, image).input
    assert stored is not None
    path = Path(stored.stored_path)
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"tampered")
        with pytest.raises(StorageError, match=f"report of case {case.case_uid} cannot be made"):
            _data(reported, case.case_uid)
        with pytest.raises(StorageError):
            export_report(
                reported.cases,
                reported.settings,
                reported.clinician,
                case.case_uid,
                ReportKind.PDF,
                tmp_path / "out.pdf",
            )
        assert not (tmp_path / "out.pdf").exists()
    finally:
        path.write_bytes(original)


def test_exporting_needs_the_report_permission(reported: Reported, tmp_path: Path) -> None:
    scientist = make_actor(reported.database, f"ds_{reported.backend}", Role.DATA_SCIENTIST)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(AccessDenied):
        export_report(
            reported.cases,
            reported.settings,
            scientist,
            reported.analysed_uid,
            ReportKind.PDF,
            out,
        )
    refused = [e for e in _events(reported.database, "report.export") if e.outcome != 0]
    assert refused and refused[-1].username == scientist.username
    assert not list(out.iterdir())


# -- the files ------------------------------------------------------------------------------------
def _pdf_text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    done = subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, check=True, timeout=60
    )
    return " ".join(done.stdout.decode("utf-8").split())


def _render_pages(path: Path, folder: Path) -> list[Path]:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    folder.mkdir()
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(path), str(folder / "page")],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return sorted(folder.glob("page*.png"))


def test_pdf_report_is_written_recorded_and_audited(reported: Reported, tmp_path: Path) -> None:
    exported = export_report(
        reported.cases,
        reported.settings,
        reported.clinician,
        reported.analysed_uid,
        ReportKind.PDF,
        tmp_path,
        generated_at=STAMP,
    )
    assert exported.path == tmp_path / f"{reported.analysed_uid}-v1.pdf"
    payload = exported.path.read_bytes()
    assert payload.startswith(b"%PDF-") and exported.size_bytes == len(payload)
    assert exported.sha256 == hashlib.sha256(payload).hexdigest()
    assert ("pdf", exported.sha256, str(exported.path)) in _reports(reported.database)
    audited = _events(reported.database, "report.export")[-1]
    assert audited.case_uid == reported.analysed_uid and audited.username == "dr_report"
    assert audited.details["sha256"] == exported.sha256 and audited.details["kind"] == "pdf"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left

    text = _pdf_text(exported.path)
    assert "1.0.0" in text and "clinicfusion-demo" in text  # model name and version
    assert reported.top_display in text and reported.rejected_display in text
    assert "accept" in text.lower() and "reject" in text.lower()
    assert "Rate and rhythm on the tracing do not support it" in text
    assert "For research and demonstration only" in text
    assert "Composite demo case" in text
    assert reported.analysed_uid in text
    pages = _render_pages(exported.path, tmp_path / "pages")
    assert pages and all(page.stat().st_size > 1000 for page in pages)

    # once written, a second export to the same file is refused unless asked
    with pytest.raises(InputError, match="exists already"):
        export_report(
            reported.cases,
            reported.settings,
            reported.clinician,
            reported.analysed_uid,
            ReportKind.PDF,
            exported.path,
        )
    again = export_report(
        reported.cases,
        reported.settings,
        reported.clinician,
        reported.analysed_uid,
        ReportKind.PDF,
        exported.path,
        overwrite=True,
    )
    assert again.path == exported.path and again.path.read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize(
    ("kind", "out_name", "file_name"),
    [
        (ReportKind.DICOM_PDF, "report.dcm", "report.dcm"),
        (ReportKind.FHIR, "", "{uid}-v1.fhir.json"),
    ],
)
def test_dicom_and_fhir_reports_are_written_recorded_and_audited(
    reported: Reported, tmp_path: Path, kind: ReportKind, out_name: str, file_name: str
) -> None:
    exported = export_report(
        reported.cases,
        reported.settings,
        reported.clinician,
        reported.analysed_uid,
        kind,
        tmp_path / out_name if out_name else tmp_path,
        generated_at=STAMP,
    )
    assert exported.path == tmp_path / file_name.format(uid=reported.analysed_uid)
    payload = exported.path.read_bytes()
    assert exported.sha256 == hashlib.sha256(payload).hexdigest()
    assert (kind.value, exported.sha256, str(exported.path)) in _reports(reported.database)
    audited = _events(reported.database, "report.export")[-1]
    assert audited.details["sha256"] == exported.sha256 and audited.details["kind"] == kind.value


def test_dicom_and_fhir_carry_the_very_pdf_exported_with_them(
    reported: Reported, tmp_path: Path
) -> None:
    pydicom = pytest.importorskip("pydicom")
    fhir_bundle = pytest.importorskip("fhir.resources.R4B.bundle")
    summary = export_reports(
        reported.cases,
        reported.settings,
        reported.clinician,
        [reported.analysed_uid],
        tmp_path,
        kinds=(ReportKind.PDF, ReportKind.DICOM_PDF, ReportKind.FHIR),
        generated_at=STAMP,
    )
    assert not summary.failures and len(summary.reports) == 3
    stem = tmp_path / f"{reported.analysed_uid}-v1"
    pdf = stem.with_suffix(".pdf").read_bytes()

    dataset = pydicom.dcmread(stem.with_suffix(".dcm"))
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
    assert dataset.MIMETypeOfEncapsulatedDocument == "application/pdf"
    document = bytes(dataset.EncapsulatedDocument)
    assert document[: len(pdf)] == pdf and document[len(pdf) :] in (b"", b"\x00")  # even length
    assert str(dataset.PatientID) == "P-DEMO-COLON-IHC"  # the pseudonym, never a record number

    resource = json.loads(Path(f"{stem}.fhir.json").read_text(encoding="utf-8"))
    bundle = fhir_bundle.Bundle.model_validate(resource)  # R4B models (R4 DiagnosticReport)
    assert bundle.type == "collection"
    found = [entry["resource"] for entry in resource["entry"]]
    (report,) = [r for r in found if r["resourceType"] == "DiagnosticReport"]
    forms = [f for f in report["presentedForm"] if f.get("contentType") == "application/pdf"]
    assert len(forms) == 1 and base64.b64decode(forms[0]["data"]) == pdf
    observations = [r for r in found if r["resourceType"] == "Observation"]
    assert len(report["result"]) == len(observations)
    snomed = {
        coding["code"]
        for observation in observations
        for coding in observation["code"].get("coding", [])
        if coding.get("system") == "http://snomed.info/sct"
    }
    suggested = {s.code for s in _data(reported, reported.analysed_uid).suggestions}
    assert snomed == suggested  # one SNOMED-coded Observation per suggestion


def test_batch_export_to_a_zip_with_manifest_goes_past_a_missing_case(
    reported: Reported, tmp_path: Path
) -> None:
    before = len(_reports(reported.database))
    out = tmp_path / "out" / "batch.zip"
    seen: list[float] = []
    summary = export_reports(
        reported.cases,
        reported.settings,
        reported.clinician,
        [reported.analysed_uid, "C-NOSUCHCASE", reported.plain_uid],
        out,
        kinds=(ReportKind.PDF, ReportKind.DICOM_PDF, ReportKind.FHIR),
        progress=lambda fraction, _: seen.append(fraction),
        generated_at=STAMP,
    )
    assert summary.manifest == out and not summary.cancelled
    assert summary.cases_requested == 3 and summary.cases_exported == 2
    assert [f.case_uid for f in summary.failures] == ["C-NOSUCHCASE"]
    assert "There is no case C-NOSUCHCASE" in summary.failures[0].reason
    assert seen[-1] == 1.0
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read(MANIFEST_NAME))
        members = {name: archive.read(name) for name in names - {MANIFEST_NAME}}
    assert names == {MANIFEST_NAME} | {
        f"{uid}-v1{ext}"
        for uid in (reported.analysed_uid, reported.plain_uid)
        for ext in (".pdf", ".dcm", ".fhir.json")
    }
    assert len(manifest["reports"]) == 6 and manifest["cases_exported"] == 2
    assert manifest["failures"][0]["case_uid"] == "C-NOSUCHCASE"
    recorded = _reports(reported.database)[before:]
    assert len(recorded) == 6
    for entry in manifest["reports"]:
        payload = members[entry["file"]]
        assert entry["sha256"] == hashlib.sha256(payload).hexdigest()
        assert entry["bytes"] == len(payload) and entry["generated_at"] == STAMP.isoformat()
        assert (entry["kind"], entry["sha256"], f"{out}!{entry['file']}") in set(recorded)
        assert entry["composite_demo"] is True
        if entry["case_uid"] == reported.analysed_uid:
            model = _data(reported, entry["case_uid"]).model
            assert model is not None and entry["model"]["name"] == "clinicfusion-demo"
            assert entry["model"]["bundle_sha256"] == model.bundle_sha256
        else:
            assert entry["model"] is None
    assert [p.name for p in out.parent.iterdir()] == ["batch.zip"]  # staging removed
    with pytest.raises(InputError, match="exists already"):
        export_reports(
            reported.cases, reported.settings, reported.clinician, [reported.plain_uid], out
        )


def test_batch_export_to_a_folder_stops_when_cancelled(reported: Reported, tmp_path: Path) -> None:
    asked: list[int] = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 1  # after the first case

    summary = export_reports(
        reported.cases,
        reported.settings,
        reported.clinician,
        [reported.plain_uid, reported.analysed_uid],
        tmp_path / "reports",
        cancel=cancel,
    )
    assert summary.cancelled and summary.cases_exported == 1
    manifest = json.loads((tmp_path / "reports" / MANIFEST_NAME).read_text())
    assert manifest["cancelled"] is True
    assert [r["file"] for r in manifest["reports"]] == [f"{reported.plain_uid}-v1.pdf"]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(
        [MANIFEST_NAME, f"{reported.plain_uid}-v1.pdf"]
    )
    data = (tmp_path / "reports" / f"{reported.plain_uid}-v1.pdf").read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["reports"][0]["sha256"]
    assert io.BytesIO(data).read(5) == b"%PDF-"
