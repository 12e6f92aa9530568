"""The decision panel: accept / override / reject with required reasons, SNOMED code checks,
signing with password re-entry, read-only signed cases and amendments, driven through the
real case service for the round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from clinic_app.domain.cases import (
    AnalysisInfo,
    CaseDetail,
    CaseSummary,
    DecisionInfo,
    NewAnalysis,
    NewSuggestion,
    SignOffInfo,
    SuggestionInfo,
)
from clinic_app.domain.records import CaseStatus, DecisionAction, Role
from clinic_app.gui.decision_panel import (
    SNOMED_SYSTEM,
    DecisionPanel,
    describe_decision,
    snomed_code_problem,
)
from clinic_app.services.cases import CaseService
from clinic_app.storage.engine import Database
from tests.services.test_cases import make_actor

pytestmark = pytest.mark.gui

NOW = datetime(2026, 11, 12, 14, 2, tzinfo=UTC)


def _detail(
    status: CaseStatus = CaseStatus.ANALYSED,
    decisions: list[DecisionInfo] | None = None,
    sign_off: SignOffInfo | None = None,
) -> CaseDetail:
    suggestions = [
        SuggestionInfo(11, 1, SNOMED_SYSTEM, "164889003", "Atrial fibrillation", 0.8, 0.78, False),
        SuggestionInfo(12, 2, SNOMED_SYSTEM, "427084000", "Sinus tachycardia", 0.4, 0.36, False),
        SuggestionInfo(13, 3, SNOMED_SYSTEM, "55827005", "LV hypertrophy", 0.1, 0.05, True),
    ]
    analysis = AnalysisInfo(7, "m", "1", "0" * 64, [], "cpu", {}, {}, NOW, suggestions)
    summary = CaseSummary(
        "C-1", 1, "Palpitations", status, "P-1", False, None, None, None, NOW, NOW
    )
    return CaseDetail(summary, None, [], [], [], [analysis], decisions or [], sign_off)


@pytest.fixture
def panel(qtbot) -> DecisionPanel:  # type: ignore[no-untyped-def]
    widget = DecisionPanel(username="dr_lee")
    qtbot.addWidget(widget)
    widget.resize(560, 720)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_case(_detail())
    return widget


def test_accept_emits_at_once(qtbot, panel: DecisionPanel) -> None:  # type: ignore[no-untyped-def]
    assert [r.suggestion.id for r in panel.rows] == [11, 12, 13]
    with qtbot.waitSignal(panel.decisionRequested) as blocker:
        qtbot.mouseClick(panel.row(11).accept_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [11, DecisionAction.ACCEPT, None, None]


def test_reject_needs_a_reason(qtbot, panel: DecisionPanel) -> None:  # type: ignore[no-untyped-def]
    qtbot.mouseClick(panel.row(12).reject_button, Qt.MouseButton.LeftButton)
    dialog = panel.dialog
    assert dialog is not None and dialog.isVisible()
    assert not dialog.ok_button.isEnabled()
    with qtbot.assertNotEmitted(panel.decisionRequested):
        qtbot.keyClicks(dialog.reason, "   ")
        assert not dialog.ok_button.isEnabled()
        dialog.accept()  # what Enter would do: refused while empty
        assert dialog.isVisible()
    qtbot.keyClicks(dialog.reason, "Rate is explained by fever")
    with qtbot.waitSignal(panel.decisionRequested) as blocker:
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [12, DecisionAction.REJECT, "Rate is explained by fever", None]


def test_override_validates_the_code_and_needs_a_reason(qtbot, panel: DecisionPanel) -> None:  # type: ignore[no-untyped-def]
    panel.select_suggestion(12)
    qtbot.keyClick(
        panel.row(12).accept_button,
        Qt.Key.Key_O,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier,
    )
    dialog = panel.dialog
    assert dialog is not None and dialog.objectName() == "overrideDialog"
    qtbot.keyClicks(dialog.code, "16488")
    assert "6 to 18 digits" in dialog.problem.text() and not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.code, "9003x")
    assert "6 to 18 digits" in dialog.problem.text()
    qtbot.keyClick(dialog.code, Qt.Key.Key_Backspace)
    qtbot.keyClicks(dialog.display, "Atrial fibrillation")
    assert not dialog.ok_button.isEnabled()  # still no reason
    qtbot.keyClicks(dialog.reason, "Irregularly irregular without P waves")
    assert dialog.ok_button.isEnabled()
    with qtbot.waitSignal(panel.decisionRequested) as blocker:
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [
        12,
        DecisionAction.OVERRIDE,
        "Irregularly irregular without P waves",
        (SNOMED_SYSTEM, "164889003", "Atrial fibrillation"),
    ]
    assert snomed_code_problem("12345") and snomed_code_problem("1" * 19)
    assert snomed_code_problem("164889003") is None


def test_sign_asks_for_the_password(qtbot, panel: DecisionPanel) -> None:  # type: ignore[no-untyped-def]
    assert not panel.sign_button.isEnabled()  # no final impression yet
    qtbot.keyClicks(panel.impression, "Atrial fibrillation, rapid ventricular response.")
    assert panel.sign_button.isEnabled()
    assert "2 suggestion(s) without a decision" in panel.sign_hint.text()
    qtbot.mouseClick(panel.sign_button, Qt.MouseButton.LeftButton)
    dialog = panel.dialog
    assert dialog is not None and dialog.objectName() == "signDialog"
    assert not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.password, "correct horse")
    with qtbot.waitSignal(panel.signRequested) as blocker:
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["Atrial fibrillation, rapid ventricular response.", "correct horse"]


def test_signed_case_is_read_only_and_can_be_amended(  # type: ignore[no-untyped-def]
    qtbot, panel: DecisionPanel, tmp_path: Path
) -> None:
    decision = DecisionInfo(
        1,
        11,
        DecisionAction.OVERRIDE,
        "No P waves",
        SNOMED_SYSTEM,
        "49436004",
        "Atrial fibrillation",
        "dr_lee",
        NOW,
    )
    sign_off = SignOffInfo("AF with RVR.", "authorship", "dr_lee", NOW, "ab" * 32)
    panel.set_case(_detail(CaseStatus.SIGNED, [decision], sign_off))
    assert panel.is_read_only()
    assert not panel.row(11).accept_button.isVisible()
    assert not panel.impression_box.isVisible() and panel.signed_box.isVisible()
    assert "Signed by dr_lee" in panel.signed_label.text()
    assert "AF with RVR." in panel.signed_label.text()
    assert (
        panel.decisions_list.item(0)
        .text()
        .startswith(
            "Overridden: Atrial fibrillation \u2192 Atrial fibrillation (SNOMED CT 49436004)"
        )
    )
    with qtbot.assertNotEmitted(panel.decisionRequested):
        panel.accept_suggestion(11)
        assert panel.request_reject(11) is None
    qtbot.mouseClick(panel.amend_button, Qt.MouseButton.LeftButton)
    dialog = panel.dialog
    assert dialog is not None and not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.reason, "Late ECG report")
    with qtbot.waitSignal(panel.amendRequested) as blocker:
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["Late ECG report"]
    assert panel.grab().save(str(tmp_path / "decision_signed.png"))
    # A superseded (amended) version offers no second amendment.
    panel.set_case(_detail(CaseStatus.AMENDED, [decision], sign_off))
    assert not panel.amend_button.isVisible() and "Superseded" in panel.signed_label.text()


def test_round_trip_through_the_case_service(  # type: ignore[no-untyped-def]
    qtbot, panel: DecisionPanel, database: Database, tmp_path: Path
) -> None:
    clinician = make_actor(database, "dr_lee", Role.CLINICIAN)
    cases = CaseService(database, tmp_path / "inputs")
    case = cases.create_case(clinician, title="Palpitations")
    cases.record_analysis(
        clinician,
        case.case_uid,
        NewAnalysis(
            "m",
            "1",
            "0" * 64,
            [],
            "cpu",
            [
                NewSuggestion(SNOMED_SYSTEM, "164889003", "Atrial fibrillation", 0.8, 0.78),
                NewSuggestion(SNOMED_SYSTEM, "427084000", "Sinus tachycardia", 0.4, 0.3),
            ],
        ),
    )

    def decide(sid: int, action: DecisionAction, reason: str | None, override) -> None:  # type: ignore[no-untyped-def]
        cases.decide(clinician, case.case_uid, sid, action, reason=reason, override=override)
        panel.set_case(cases.get_case(clinician, case.case_uid))

    def sign(impression: str, password: str) -> None:
        assert password == "pw"
        cases.sign(clinician, case.case_uid, impression)
        panel.set_case(cases.get_case(clinician, case.case_uid))

    panel.decisionRequested.connect(decide)
    panel.signRequested.connect(sign)
    panel.set_case(cases.get_case(clinician, case.case_uid))
    first, second = (r.suggestion.id for r in panel.rows)
    qtbot.mouseClick(panel.row(first).accept_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(panel.row(second).reject_button, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(panel.dialog.reason, "Not tachycardic on review")
    qtbot.mouseClick(panel.dialog.ok_button, Qt.MouseButton.LeftButton)
    assert "\u2714" in panel.row(first).status.text()
    assert "Rejected" in panel.row(second).status.text()
    assert panel.decisions_list.count() == 2
    qtbot.keyClicks(panel.impression, "Atrial fibrillation.")
    assert panel.sign_hint.text() == ""
    qtbot.mouseClick(panel.sign_button, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(panel.dialog.password, "pw")
    qtbot.mouseClick(panel.dialog.ok_button, Qt.MouseButton.LeftButton)
    detail = cases.get_case(clinician, case.case_uid)
    assert detail.summary.status is CaseStatus.SIGNED and detail.sign_off is not None
    assert panel.is_read_only() and panel.amend_button.isVisible()
    assert describe_decision(detail.decisions[0], None).startswith("Accepted: suggestion")


def test_shortcuts_and_names(panel: DecisionPanel) -> None:
    keys = [k for k, _ in panel.shortcuts()]
    assert keys == ["Ctrl+Alt+A", "Ctrl+Alt+O", "Ctrl+Alt+J", "Ctrl+Alt+S"]
    row = panel.row(11)
    for button in (row.accept_button, row.override_button, row.reject_button, panel.sign_button):
        assert button.accessibleName() and button.toolTip()
    panel.set_case(None)
    assert panel.rows == [] and panel.empty_label.text() == "No case open."
