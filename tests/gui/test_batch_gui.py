"""Batch mode in the real window: the triage worklist tab, importing many cases with the
import dialog, and exporting a case's report from the workspace.

Real parts: a SQLite case store, the ingest service reading files in its capped child process,
the shipped bundle's critical labels, the report service writing a real PDF (read back with
pdftotext when poppler is installed).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from clinic_app.config.settings import Settings
from clinic_app.domain.records import ReportKind, Role

pytestmark = pytest.mark.gui

USER, PASSWORD = "dr-okafor", "Correct-horse-battery-9"


@pytest.fixture
def session(qtbot, settings: Settings) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    from clinic_app.app import prepare
    from clinic_app.gui.main_window import MainWindow
    from clinic_app.services.app_services import AppServices
    from clinic_app.services.database import open_database
    from clinic_app.services.users import authenticate, create_first_admin, create_user

    prepare(settings, stderr_level=None)
    database = open_database(settings)
    create_first_admin(database, "it-admin", "Admin-password-2026!")
    admin = authenticate(database, "it-admin", "Admin-password-2026!")
    create_user(database, admin, USER, PASSWORD, Role.CLINICIAN, display_name="Dr Okafor")
    actor = authenticate(database, USER, PASSWORD)
    services = AppServices.create(settings, database)
    window = MainWindow(settings, database, actor)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield {"window": window, "services": services, "actor": actor, "database": database}
    window.close()
    from clinic_app.gui.workers import db_write_pool

    db_write_pool().waitForDone(30_000)
    database.dispose()


def test_worklist_tab_is_built_on_first_show_with_the_bundles_critical_labels(
    session: dict[str, Any], qtbot: Any
) -> None:
    window = session["window"]
    assert window.worklist is None  # not built at sign-in: it would slow the first window
    action = next(
        a
        for menu in window.menuBar().actions()
        if menu.menu() is not None
        for a in menu.menu().actions()
        if a.text() == "&Triage worklist"
    )
    assert action.shortcut().toString() == "Ctrl+T"
    action.trigger()
    assert window.home_tabs.currentIndex() == 1
    qtbot.waitUntil(lambda: window.worklist is not None, timeout=20_000)
    assert window.worklist.objectName() == "worklist"
    assert window.worklist.service.critical_codes == {
        "http://snomed.info/sct|164889003",
        "http://snomed.info/sct|363346000",
    }
    keys = {key for key, _ in window.all_shortcuts()}
    assert {"Ctrl+T", "Ctrl+Shift+I"} <= keys
    window.show_case_list()
    assert window.home_tabs.currentIndex() == 0


def test_import_many_cases_dialog_imports_good_files_and_names_the_bad_one(
    session: dict[str, Any], qtbot: Any, tmp_path: Path
) -> None:
    import skimage.data

    window, services, actor = session["window"], session["services"], session["actor"]
    source = tmp_path / "cases"
    case = source / "case-001"
    case.mkdir(parents=True)
    Image.fromarray(skimage.data.immunohistochemistry()[::4, ::4]).save(case / "biopsy.png")
    (case / "broken.dcm").write_bytes(b"DICM" + bytes(200))  # not a readable DICOM file
    (case / "vitals.json").write_text('{"heart_rate_bpm": 88}')

    dialog = window.batch_import_dialog()
    assert dialog is not None and dialog.isVisible()
    dialog.set_source(source)
    qtbot.waitUntil(lambda: dialog.import_button.isEnabled(), timeout=20_000)
    assert "1 case(s)" in dialog.summary.text()
    dialog.import_button.click()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=120_000)
    report = dialog.report
    assert not report.cancelled
    assert report.counts["imported"] >= 1 and report.counts["failed"] == 1
    text = dialog.details.toPlainText()
    assert "broken.dcm" in text
    (uid,) = report.created_case_uids
    detail = services.cases.get_case(actor, uid)
    assert [i.media_type for i in detail.inputs] == ["image/png"]
    assert "case-001" not in detail.summary.title  # the external id is never stored in clear
    dialog.close()


def test_report_is_exported_from_the_workspace_and_recorded(
    session: dict[str, Any], qtbot: Any, tmp_path: Path
) -> None:
    from sqlalchemy import select

    from clinic_app.storage.orm import Report

    window, services, actor = session["window"], session["services"], session["actor"]
    summary = services.cases.create_case(actor, title="Report export check")
    services.cases.add_vitals(actor, summary.case_uid, heart_rate_bpm=72.0)
    window.open_case(summary.case_uid)
    workspace = window.workspace
    qtbot.waitUntil(lambda: workspace.report_action.isEnabled(), timeout=20_000)
    dialog = workspace.export_report()
    assert dialog is not None
    dialog.folder_edit.setText(str(tmp_path / "reports"))
    dialog.kind_boxes[ReportKind.FHIR].setChecked(True)
    dialog.export_button.click()
    qtbot.waitUntil(lambda: bool(dialog.results), timeout=60_000)
    kinds = {r.kind for r in dialog.results}
    assert kinds == {ReportKind.PDF, ReportKind.FHIR}
    pdf = next(r.path for r in dialog.results if r.kind is ReportKind.PDF)
    assert pdf.read_bytes().startswith(b"%PDF")
    assert dialog.open_button.isEnabled()
    with session["database"].read() as db:
        stored = {(r.kind, r.sha256) for r in db.scalars(select(Report))}
    assert {(r.kind, r.sha256) for r in dialog.results} <= stored
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert summary.case_uid in text and "research" in text.lower()
    dialog.close()


def test_batch_analysis_queues_new_cases_and_a_worker_process_analyses_them(
    session: dict[str, Any], qtbot: Any
) -> None:
    """The panel queues the two unanalysed cases, starts `clinic-app batch run` detached and
    follows it to the end through the database; the worklist then lists them."""
    window, services, actor = session["window"], session["services"], session["actor"]
    uids = []
    for text in (
        "Palpitations for two days, irregular pulse on examination.",
        "Routine follow-up, no complaints, regular pulse.",
    ):
        summary = services.cases.create_case(actor, title="Batch check")
        services.cases.save_note(actor, summary.case_uid, text)
        uids.append(summary.case_uid)
    dialog = window.batch_analysis_dialog()
    assert dialog is not None
    qtbot.waitUntil(lambda: "No batch run yet" in dialog.state_label.text(), timeout=10_000)
    dialog.explain_box.setChecked(False)  # suggestions only: the quick path for triage
    with qtbot.waitSignal(dialog.casesAnalysed, timeout=240_000, raising=False):
        dialog.queue_button.click()
        qtbot.waitUntil(lambda: dialog.worker_pid is not None, timeout=20_000)
    qtbot.waitUntil(lambda: dialog.status is not None and dialog.status.finished, timeout=240_000)
    status = dialog.status
    assert (status.total, status.done, status.failed) == (2, 2, 0), dialog.failures.toPlainText()
    assert "finished" in dialog.state_label.text()
    for uid in uids:
        analysis = services.cases.get_case(actor, uid).latest_analysis
        assert analysis is not None and analysis.outputs["batch"]["run_id"] == status.run_id
    dialog.close()


def test_a_decision_in_the_worklist_moves_to_the_next_case_in_the_window(
    session: dict[str, Any], qtbot: Any
) -> None:
    """In the main window (not only the bare view): accepting with A moves on, and the case
    list is refreshed without pulling the worklist back to the case just decided."""
    from PySide6.QtCore import Qt

    from clinic_app.domain.cases import NewAnalysis, NewSuggestion

    window, services, actor = session["window"], session["services"], session["actor"]
    for risk in (0.9, 0.6):
        uid = services.cases.create_case(actor, title=f"Risk {risk}").case_uid
        services.cases.record_analysis(
            actor,
            uid,
            NewAnalysis(
                model_name="hand-made",
                model_version="1",
                bundle_sha256="0" * 64,
                input_sha256s=[],
                device="cpu",
                suggestions=[
                    NewSuggestion(
                        "http://snomed.info/sct", "164889003", "Atrial fibrillation", risk, risk,
                        evidence={"critical": True},
                    )
                ],
            ),
        )  # fmt: skip
    window.show_worklist()
    qtbot.waitUntil(lambda: window.worklist is not None, timeout=20_000)
    worklist = window.worklist
    qtbot.waitUntil(lambda: worklist.model.rowCount() == 2, timeout=20_000)
    first = worklist.current_item()
    assert first is not None and first.risk == 0.9
    worklist.setFocus()
    qtbot.keyClick(worklist.table, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: worklist.current_row() == 1, timeout=20_000)
    qtbot.wait(500)  # the case list refresh that follows must not move the selection back
    assert worklist.current_row() == 1
    assert services.cases.get_case(actor, first.case_uid).decisions
