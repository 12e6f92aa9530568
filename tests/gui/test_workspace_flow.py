"""The clinician's whole path through the real window: open a case, see every view filled,
analyse with the shipped model (in its own process), see the explanation, override, sign.

Real parts throughout: a SQLite case store in the data folder, files imported through the
ingest service (pydicom's real 12-lead ECG and scikit-image's real IHC micrograph), the demo
model bundle, the audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench._common import cpu_busy_fraction
from clinic_app.config.settings import Settings
from clinic_app.domain.records import CaseStatus, DecisionAction, Role

pytestmark = pytest.mark.gui

USER, PASSWORD = "dr-lee", "Correct-horse-battery-9"


class StallProbe:
    """A 10 ms timer on the GUI thread: the longest gap between ticks, wall and thread CPU."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.max_gap_s = 0.0
        self.max_cpu_s = 0.0
        self.ticks = 0

    def start(self) -> None:
        self._last = time.perf_counter()
        self._last_cpu = time.thread_time()
        self.timer.start()

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.max_gap_s = max(self.max_gap_s, now - self._last)
        self.max_cpu_s = max(self.max_cpu_s, cpu - self._last_cpu)
        self._last, self._last_cpu = now, cpu
        self.ticks += 1

    def stop(self) -> None:
        self.timer.stop()


def error_boxes() -> list[Any]:
    from PySide6.QtWidgets import QApplication

    return [
        w
        for w in QApplication.topLevelWidgets()
        if w.objectName() == "errorDialog" and w.isVisible()
    ]


@pytest.fixture
def session(qtbot, settings: Settings) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    from clinic_app.app import prepare
    from clinic_app.gui.main_window import MainWindow
    from clinic_app.services.app_services import AppServices
    from clinic_app.services.database import open_database
    from clinic_app.services.demo_cases import seed_demo_cases
    from clinic_app.services.model_host import shutdown_model_host
    from clinic_app.services.users import authenticate, create_first_admin, create_user

    prepare(settings, stderr_level=None)
    database = open_database(settings)
    admin = create_first_admin(database, "it-admin", "Admin-password-2026!")
    assert admin.role is Role.ADMIN
    admin_actor = authenticate(database, "it-admin", "Admin-password-2026!")
    create_user(
        database,
        admin_actor,
        USER,
        PASSWORD,
        Role.CLINICIAN,
        display_name="Dr Lee",
    )
    actor = authenticate(database, USER, PASSWORD)
    services = AppServices.create(settings, database)
    # the composite demo case built from package files: pydicom's real 12-lead ECG,
    # scikit-image's IHC micrograph and a note the team wrote
    (case,) = seed_demo_cases(services.cases, services.ingest, admin_actor, keys=["colon-ihc"])
    assert case.is_composite_demo
    window = MainWindow(settings, database, actor)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield {
        "window": window,
        "services": services,
        "actor": actor,
        "admin": admin_actor,
        "case": case.case_uid,
    }
    window.close()
    shutdown_model_host()
    from clinic_app.gui.workers import db_write_pool, inference_pool

    db_write_pool().waitForDone(30_000)
    inference_pool().waitForDone(60_000)
    database.dispose()


def test_open_analyse_explain_override_and_sign(qtbot, session: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    window, services, uid = session["window"], session["services"], session["case"]
    workspace = window.workspace

    # the case list shows the case; opening it fills all three viewers
    qtbot.waitUntil(lambda: window.case_list.model.rowCount() >= 1, timeout=20_000)
    window.open_case(uid)
    qtbot.waitUntil(lambda: workspace.detail is not None, timeout=30_000)
    qtbot.waitUntil(lambda: workspace.slide_viewer.source is not None, timeout=30_000)
    assert workspace.ecg_viewer.recording() is not None
    assert len(workspace.ecg_viewer.recording().lead_names) == 12
    assert "immunohistochemistry" in workspace.note_editor.markdown().lower()
    assert not workspace.composite_badge.isHidden()
    assert window.stack.currentWidget() is workspace

    # analyse in the worker while a timer probes the event loop
    probe = StallProbe()
    busy_before = cpu_busy_fraction(0.3)
    probe.start()
    workspace.analyse()
    assert workspace.progress.isVisible() and workspace.cancel_button.isVisible()
    qtbot.waitUntil(lambda: workspace.job is None, timeout=240_000)
    probe.stop()
    assert probe.ticks > 50
    # While the model runs, the GUI thread never computes for 50 ms at a stretch; the
    # wall-clock gap is checked too unless other processes were starving this one of CPU.
    assert probe.max_cpu_s < 0.05, f"GUI thread busy for {probe.max_cpu_s * 1000:.0f} ms"
    if busy_before < 0.25:
        assert probe.max_gap_s < 0.05, f"event loop stalled {probe.max_gap_s * 1000:.0f} ms"

    # Then the views fill in stages, one per event-loop turn. Drawing them is layout and
    # painting on the GUI thread (about 30-40 ms at worst here); a shared machine can add a
    # hiccup, so a stall must show in each of three attempts to fail.
    attempts: list[float] = []
    display = StallProbe()
    display.start()
    qtbot.waitUntil(
        lambda: (
            workspace.detail is not None
            and workspace.detail.latest_analysis is not None
            and workspace.note_editor.highlights is not None
        ),
        timeout=30_000,
    )
    qtbot.wait(200)
    display.stop()
    attempts.append(display.max_cpu_s)
    updates: list[int] = []
    workspace.viewsUpdated.connect(lambda: updates.append(1))
    while min(attempts) >= 0.05 and len(attempts) < 3:
        display = StallProbe()
        seen = len(updates)
        display.start()
        workspace._show_detail(workspace.detail)
        qtbot.waitUntil(lambda: len(updates) > seen, timeout=20_000)  # noqa: B023
        qtbot.wait(200)
        display.stop()
        attempts.append(display.max_cpu_s)
    assert min(attempts) < 0.05, f"showing the results kept the GUI busy: {attempts}"

    analysis = workspace.detail.latest_analysis
    assert analysis.model_name == "clinicfusion-demo"
    explanation = workspace.explanation
    assert explanation is not None
    assert set(explanation.modalities_used) >= {"ecg", "note"}
    # heatmap, ECG relevance and note highlights reached the views
    if explanation.slide is not None:
        assert workspace.slide_viewer.heatmap is explanation.slide
    assert explanation.ecg is not None and workspace.ecg_viewer.relevance is explanation.ecg
    assert explanation.note is not None and explanation.note.words
    assert workspace.note_editor.highlights is explanation.note
    assert workspace.results_panel.analysis is analysis

    # override the top suggestion with a reason, then sign with the password
    top = analysis.suggestions[0]
    workspace.decision_panel.decisionRequested.emit(
        top.id,
        DecisionAction.OVERRIDE,
        "Irregularly irregular rhythm on the strip; clinical picture fits AF.",
        ("http://snomed.info/sct", "49436004", "Atrial fibrillation"),
    )
    qtbot.waitUntil(lambda: bool(workspace.detail.decisions), timeout=20_000)
    decision = workspace.detail.decisions[-1]
    assert decision.action is DecisionAction.OVERRIDE and decision.override_code == "49436004"

    # a wrong password is refused with one clear message, and nothing is signed
    workspace.decision_panel.signRequested.emit("Atrial fibrillation.", "not-my-password")
    qtbot.waitUntil(lambda: bool(error_boxes()), timeout=20_000)
    box = error_boxes()[0]
    assert "password" in box.text().lower()
    box.close()
    assert workspace.detail.sign_off is None
    workspace.decision_panel.signRequested.emit(
        "Atrial fibrillation; anticoagulation review.", PASSWORD
    )
    qtbot.waitUntil(lambda: workspace.detail.summary.status is CaseStatus.SIGNED, timeout=20_000)
    assert not workspace.analyse_action.isEnabled()

    from clinic_app.services.audit import AuditFilter, show

    page = show(services.database, session["admin"], AuditFilter(case_uid=uid), page_size=500)
    kinds = {entry.event_type for entry in page.entries}
    assert {"case.read", "case.input.read", "case.analyse", "case.decide", "case.sign"} <= kinds


def test_dropped_files_go_into_a_new_case_and_a_bad_one_is_named(  # type: ignore[no-untyped-def]
    qtbot, session: dict[str, Any], tmp_path: Path
) -> None:
    window, services, actor = session["window"], session["services"], session["actor"]
    note = tmp_path / "referral.txt"
    note.write_text(
        "Referral: 58-year-old with exertional chest tightness for three weeks, relieved by "
        "rest. Smoker. Father had a myocardial infarction at 60. Please assess.",
        encoding="utf-8",
    )
    broken = tmp_path / "ecg-from-usb.dcm"
    broken.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00" * 20)
    before = services.cases.list_cases(actor).total
    window.import_files(None, [note, broken])
    qtbot.waitUntil(lambda: window.import_report is not None, timeout=60_000)
    text = window.import_report.text()
    assert "ecg-from-usb.dcm" in text and "referral.txt" not in text
    window.import_report.close()
    page = services.cases.list_cases(actor)
    assert page.total == before + 1
    new_uid = page.items[0].case_uid
    detail = services.cases.get_case(actor, new_uid)
    assert detail.latest_note is not None and "chest tightness" in detail.latest_note.text
    assert detail.inputs == []  # nothing of the broken file was stored
    qtbot.waitUntil(lambda: window.workspace.case_uid == new_uid, timeout=20_000)
