"""`clinic-app report` and `clinic-app demo` end to end: the real parser, database, sign-in,
writers and files; the exporting clinician signs in and every export is audited in their name.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from clinic_app.cli import main
from clinic_app.config.settings import load_settings
from clinic_app.domain.records import Role
from clinic_app.services.context import Actor
from clinic_app.services.database import open_database
from clinic_app.services.users import create_user
from clinic_app.storage.orm import AuditEvent, Report

PASSWORD = "correct horse battery staple 42"


@dataclass
class CliSetup:
    data_dir: Path
    keys_dir: Path
    case_uid: str


@pytest.fixture(scope="module")
def _root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-report")


@pytest.fixture
def _keys(_isolated_environment: None, _root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One keys folder for the module's data dir (each test gets a fresh HOME)."""
    keys = _root / "keys"
    monkeypatch.setenv("CLINICFUSION_KEYS_DIR", str(keys))
    return keys


@pytest.fixture
def setup(_keys: Path, _root: Path) -> Iterator[CliSetup]:
    """A data dir with a clinician account and one unanalysed case with a note."""
    data_dir = _root / "data"
    if not (data_dir / "case.txt").exists():
        from clinic_app.services.cases import CaseService

        database = open_database(load_settings(data_dir))
        try:
            create_user(database, Actor.system(), "dr_cli", PASSWORD, Role.CLINICIAN)
            create_user(database, Actor.system(), "ds_cli", PASSWORD, Role.DATA_SCIENTIST)
            cases = CaseService(database, data_dir / "inputs")
            writer = Actor(None, "system", Role.CLINICIAN, "ws-test")
            case = cases.create_case(writer, title="Chest pain, note only", birth_year=1970)
            cases.save_note(writer, case.case_uid, "Chest pain on exertion for two weeks.")
        finally:
            database.dispose()
        (data_dir / "case.txt").write_text(case.case_uid)
    yield CliSetup(data_dir, _keys, (data_dir / "case.txt").read_text())


def _run(setup: CliSetup, *args: str) -> int:
    return main(["--data-dir", str(setup.data_dir), "report", *args])


def _events(setup: CliSetup, event_type: str) -> list[AuditEvent]:
    database = open_database(load_settings(setup.data_dir))
    try:
        with database.read() as session:
            return list(
                session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.event_type == event_type)
                    .order_by(AuditEvent.sequence)
                )
            )
    finally:
        database.dispose()


def test_one_case_to_a_pdf_file_as_a_signed_in_clinician(
    setup: CliSetup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLINICFUSION_PASSWORD", PASSWORD)
    target = tmp_path / "out" / "report.pdf"
    assert _run(setup, setup.case_uid, "-o", str(target), "--user", "dr_cli") == 0
    assert f"Wrote {target} (pdf" in capsys.readouterr().out
    payload = target.read_bytes()
    assert payload.startswith(b"%PDF-")
    exported = _events(setup, "report.export")[-1]
    assert exported.username == "dr_cli" and exported.role == "clinician"
    assert exported.details["sha256"] == hashlib.sha256(payload).hexdigest()
    assert _events(setup, "user.login")[-1].username == "dr_cli"
    assert _events(setup, "user.logout")[-1].username == "dr_cli"

    # the file exists now: refused without --overwrite, replaced with it
    assert _run(setup, setup.case_uid, "-o", str(target), "--user", "dr_cli") == 65
    assert "exists already" in capsys.readouterr().err
    assert _run(setup, setup.case_uid, "-o", str(target), "--user", "dr_cli", "--overwrite") == 0


def test_several_formats_into_a_folder_with_json(
    setup: CliSetup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLINICFUSION_USER", "dr_cli")
    monkeypatch.setenv("CLINICFUSION_PASSWORD", PASSWORD)
    folder = tmp_path / "reports"
    code = _run(
        setup, setup.case_uid, "--format", "pdf,fhir", "-f", "dicom", "-o", str(folder), "--json"
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(r["kind"] for r in out["reports"]) == ["dicom_pdf", "fhir", "pdf"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{setup.case_uid}-v1{ext}" for ext in (".pdf", ".dcm", ".fhir.json")
    )
    for line in out["reports"]:
        assert hashlib.sha256(Path(line["path"]).read_bytes()).hexdigest() == line["sha256"]


def test_many_cases_to_a_zip_report_the_missing_one(
    setup: CliSetup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    target = tmp_path / "batch.zip"
    code = _run(
        setup,
        setup.case_uid,
        "C-NOSUCHCASE",
        "-o",
        str(target),
        "--user",
        "dr_cli",
        "--password-stdin",
    )
    assert code == 1  # one case failed; the other was exported
    printed = capsys.readouterr().out
    assert "1 of 2 case(s)" in printed and "not exported: C-NOSUCHCASE" in printed
    with zipfile.ZipFile(target) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        (entry,) = manifest["reports"]
        assert hashlib.sha256(archive.read(entry["file"])).hexdigest() == entry["sha256"]
    assert manifest["generated_by"] == "dr_cli"
    assert manifest["failures"][0]["case_uid"] == "C-NOSUCHCASE"
    database = open_database(load_settings(setup.data_dir))
    try:
        with database.read() as session:
            recorded = set(session.scalars(select(Report.sha256)))
    finally:
        database.dispose()
    assert entry["sha256"] in recorded


def test_all_cases_filtered_by_status(
    setup: CliSetup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLINICFUSION_PASSWORD", PASSWORD)
    folder = tmp_path / "all"
    assert _run(setup, "--all", "-o", str(folder), "--user", "dr_cli") == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [r["case_uid"] for r in manifest["reports"]] == [setup.case_uid]
    capsys.readouterr()
    code = _run(setup, "--all", "--status", "signed", "-o", str(tmp_path / "x"), "--user", "dr_cli")
    assert code == 65 and "no cases to export" in capsys.readouterr().err


def test_who_may_export(
    setup: CliSetup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = str(tmp_path / "r.pdf")
    assert _run(setup, setup.case_uid, "-o", target) == 77  # nobody signed in
    assert "needs a signed-in clinician or reviewer" in capsys.readouterr().err
    monkeypatch.setenv("CLINICFUSION_PASSWORD", "not the password at all")
    assert _run(setup, setup.case_uid, "-o", target, "--user", "dr_cli") == 77
    capsys.readouterr()
    monkeypatch.setenv("CLINICFUSION_PASSWORD", PASSWORD)
    assert _run(setup, setup.case_uid, "-o", target, "--user", "ds_cli") == 77
    assert "may not export reports" in capsys.readouterr().err
    assert not Path(target).exists()
    assert _run(setup, setup.case_uid, "-o", target, "--user", "dr_cli", "-f", "docx") == 65


@pytest.mark.slow  # analyses a demo case: about 20 s here, 45 s on a busy 2-core machine
def test_demo_seeds_analyses_and_writes_reports(
    _isolated_environment: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLINICFUSION_KEYS_DIR", str(tmp_path / "keys"))
    data_dir = tmp_path / "data"
    reports = tmp_path / "demo-reports"
    started = time.perf_counter()
    code = main(
        [
            "--data-dir",
            str(data_dir),
            "demo",
            "--case",
            "palpitations",
            "--device",
            "cpu",
            "--reports",
            str(reports),
            "--json",
        ]
    )
    seconds = time.perf_counter() - started
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out["composite"] is True and "Composite demo case" in out["notice"]
    (case_uid,) = out["demo_cases"]
    assert out["analysed"] == [case_uid]
    assert sorted(r["kind"] for r in out["reports"]) == ["dicom_pdf", "fhir", "pdf"]
    for report in out["reports"]:
        assert hashlib.sha256(Path(report["path"]).read_bytes()).hexdigest() == report["sha256"]
    manifest = json.loads((reports / "manifest.json").read_text())
    assert all(r["composite_demo"] and r["model"] for r in manifest["reports"])

    # again: nothing to seed or analyse; the reports are written afresh
    assert main(["--data-dir", str(data_dir), "demo", "--reports", str(reports)]) == 0
    printed = capsys.readouterr().out
    assert "nothing was created" in printed and "Composite demo case" in printed
    assert f"{case_uid}-v1.pdf" in printed and "Analysed" not in printed
    assert seconds < 120, seconds
