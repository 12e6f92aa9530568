"""The triage worklist on SQLite and PostgreSQL, driven by the keyboard alone: J/K move, A
accepts and moves on, O and R ask for a reason (Enter confirms, Esc cancels), S signs after the
final impression and the password, Enter opens the case; progress, filters, and a 100-row page
reviewed without stalling the event loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from bench.worklist_gui import bulk_insert_analysed_cases
from clinic_app.domain.records import CaseStatus, DecisionAction, Role
from clinic_app.domain.worklist import FLAG_CRITICAL, WorklistStatus
from clinic_app.gui.worklist import COLUMNS, ITEM_ROLE, WorklistView
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.worklist import WorklistService
from clinic_app.storage.engine import Database
from tests.gui.test_case_list import StallProbe
from tests.services.test_worklist import AF, MALIGNANT, PAC, PVC, SINUS, analysed_case

pytestmark = pytest.mark.gui

PASSWORD = "Correct-horse-battery-9"


@pytest.fixture
def cases(database: Database, tmp_path: Path) -> CaseService:
    return CaseService(database, tmp_path / "inputs")


@pytest.fixture
def clinician(database: Database) -> Actor:
    """A clinician with a real (cheaply hashed) password, for the signature."""
    from clinic_app.services.users import (
        PasswordHashing,
        authenticate,
        create_first_admin,
        create_user,
    )

    cheap = PasswordHashing(time_cost=1, memory_cost_kib=8, parallelism=1)
    create_first_admin(database, "it-admin", "Admin-password-2026!", hashing=cheap)
    admin = authenticate(database, "it-admin", "Admin-password-2026!", hashing=cheap)
    create_user(database, admin, "dr-lee", PASSWORD, Role.CLINICIAN, hashing=cheap)
    return authenticate(database, "dr-lee", PASSWORD, hashing=cheap)


@pytest.fixture
def four(cases: CaseService, clinician: Actor) -> list[str]:
    """Four analysed cases, in risk order."""
    uids = [
        analysed_case(cases, clinician, "High risk", [(AF, 0.90, False), (SINUS, 0.2, False)]),
        analysed_case(
            cases, clinician, "Abstained critical", [(SINUS, 0.97, False), (MALIGNANT, 0.6, True)]
        ),
        analysed_case(
            cases, clinician, "Borderline", [(SINUS, 0.55, False), (MALIGNANT, 0.3, False)]
        ),
        analysed_case(
            cases,
            clinician,
            "Unsure",
            [(PVC, 0.80, False), (SINUS, 0.45, True), (PAC, 0.05, True)],
            missing={"ecg": "no ECG"},
        ),
    ]
    with cases.database.write() as session:  # the last one is a composite demo case
        from sqlalchemy import update

        from clinic_app.storage.orm import Case

        session.execute(update(Case).where(Case.case_uid == uids[3]).values(is_composite_demo=True))
    return uids


@pytest.fixture
def views() -> Iterator[list[WorklistView]]:
    made: list[WorklistView] = []
    yield made
    from clinic_app.gui.workers import db_write_pool

    db_write_pool().waitForDone(30_000)
    for view in made:
        view.wait_for_background()


def new_view(qtbot: Any, cases: CaseService, actor: Actor, views: list[WorklistView]) -> Any:
    view = WorklistView(WorklistService(cases), actor)
    views.append(view)
    qtbot.addWidget(view)
    view.resize(1400, 640)
    view.show()
    qtbot.waitExposed(view)
    view.activateWindow()
    qtbot.waitUntil(lambda: not view.loading and view.current_item() is not None)
    return view


def press(qtbot: Any, view: WorklistView, key: Qt.Key) -> None:
    """A key typed where the keyboard focus is (as a person would)."""
    qtbot.keyClick(QApplication.focusWidget() or view.table, key)


def type_in(qtbot: Any, field: Any, text: str) -> None:
    """Type into ``field`` once it has the keyboard focus (no click needed to get there)."""
    qtbot.waitUntil(lambda: QApplication.focusWidget() is field)
    qtbot.keyClicks(field, text)


def current_title(view: WorklistView) -> str:
    item = view.current_item()
    assert item is not None
    return item.title


def error_texts() -> list[str]:
    return [
        w.text()
        for w in QApplication.topLevelWidgets()
        if w.objectName() == "errorDialog" and w.isVisible()
    ]


def wait_saved(qtbot: Any, view: WorklistView) -> None:
    """Wait for the decision or signature to be written; no error may have been shown."""
    qtbot.waitUntil(lambda: not view.busy, timeout=20_000)
    assert error_texts() == []


def test_keyboard_only_review_of_four_cases(
    qtbot: Any,
    cases: CaseService,
    clinician: Actor,
    four: list[str],
    views: list[WorklistView],
) -> None:
    view = new_view(qtbot, cases, clinician, views)
    assert [item.title for item in view.model.items] == [
        "High risk",
        "Abstained critical",
        "Borderline",
        "Unsure",
    ]
    assert view.progress.text() == "0 of 4 reviewed"
    assert view.table.hasFocus()

    # J / K and Down / Up move between cases; the review pane follows
    press(qtbot, view, Qt.Key.Key_J)
    assert current_title(view) == "Abstained critical"
    assert "Abstained critical" in view.case_heading.text()
    press(qtbot, view, Qt.Key.Key_K)
    assert current_title(view) == "High risk"
    press(qtbot, view, Qt.Key.Key_Down)
    press(qtbot, view, Qt.Key.Key_Up)
    assert current_title(view) == "High risk"
    assert view.suggestion_list.currentRow() == 0  # the top suggestion is chosen
    assert "\u26a0 critical" in view.suggestion_list.item(0).text()

    # A accepts the top suggestion and moves on to the next undecided case
    press(qtbot, view, Qt.Key.Key_A)
    wait_saved(qtbot, view)
    high = view.model.items[0]
    assert high.decided and high.status is CaseStatus.IN_REVIEW
    assert high.decisions[0].action is DecisionAction.ACCEPT
    assert high.decisions[0].suggestion_id == high.suggestions[0].id
    assert current_title(view) == "Abstained critical"
    assert view.progress.text() == "1 of 4 reviewed"

    # O: Esc cancels without a decision; then code, name and reason, Enter confirms
    press(qtbot, view, Qt.Key.Key_O)
    dialog = view.dialog
    assert dialog is not None and dialog.objectName() == "overrideDialog"
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: view.dialog is None)
    assert not view.model.items[1].decided and current_title(view) == "Abstained critical"
    press(qtbot, view, Qt.Key.Key_O)
    dialog = view.dialog
    assert dialog is not None
    type_in(qtbot, dialog.code, "5370000")
    qtbot.keyClick(dialog.code, Qt.Key.Key_Tab)
    type_in(qtbot, dialog.display, "Atrial flutter")
    qtbot.keyClick(dialog.display, Qt.Key.Key_Tab)
    type_in(qtbot, dialog.reason, "Sawtooth flutter waves")
    qtbot.keyClick(dialog.reason, Qt.Key.Key_Return)
    wait_saved(qtbot, view)
    overridden = view.model.items[1]
    assert overridden.decisions[0].action is DecisionAction.OVERRIDE
    assert "override" in overridden.flags
    assert current_title(view) == "Borderline"

    # R with 2: reject the second suggestion (malignancy) with a reason
    press(qtbot, view, Qt.Key.Key_2)
    assert view.chosen_suggestion() is not None
    assert view.chosen_suggestion().code == MALIGNANT  # type: ignore[union-attr]
    press(qtbot, view, Qt.Key.Key_R)
    dialog = view.dialog
    assert dialog is not None and dialog.objectName() == "reasonDialog"
    type_in(qtbot, dialog.reason, "No tissue in this case")
    qtbot.keyClick(dialog.reason, Qt.Key.Key_Return)
    wait_saved(qtbot, view)
    rejected = view.model.items[2]
    assert rejected.decisions[0].action is DecisionAction.REJECT
    malignant = next(s for s in rejected.suggestions if s.code == MALIGNANT)
    assert rejected.decisions[0].suggestion_id == malignant.id
    assert current_title(view) == "Unsure"
    assert view.progress.text() == "3 of 4 reviewed"
    assert not view.composite_badge.isHidden()  # the composite demo case says so

    # S: the final impression, Enter, the password, Enter: signed
    press(qtbot, view, Qt.Key.Key_S)
    impression = view.dialog
    assert impression is not None and impression.objectName() == "finalImpressionDialog"
    type_in(qtbot, impression.reason, "Ventricular ectopy; ECG to be repeated.")
    qtbot.keyClick(impression.reason, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: view.dialog is not None and view.dialog.objectName() == "signDialog")
    sign = view.dialog
    type_in(qtbot, sign.password, PASSWORD)
    qtbot.keyClick(sign.password, Qt.Key.Key_Return)
    wait_saved(qtbot, view)
    qtbot.waitUntil(lambda: view.model.items[3].signed, timeout=20_000)
    assert view.progress.text() == "4 of 4 reviewed"
    detail = cases.get_case(clinician, four[3])
    assert detail.sign_off is not None and detail.sign_off.user == "dr-lee"
    assert detail.sign_off.final_impression == "Ventricular ectopy; ECG to be repeated."

    # a signed case takes no more decisions; Enter opens the case for the lead's window
    press(qtbot, view, Qt.Key.Key_A)
    assert "signed" in view.message.text()
    with qtbot.waitSignal(view.openCase) as opened:
        press(qtbot, view, Qt.Key.Key_Return)
    assert opened.args == [four[3]]

    # back to the first case: the draft impression is what was accepted
    for _ in range(3):
        press(qtbot, view, Qt.Key.Key_K)
    assert current_title(view) == "High risk"
    press(qtbot, view, Qt.Key.Key_S)
    assert view.dialog is not None
    assert view.dialog.text() == "Atrial fibrillation"
    qtbot.keyClick(view.dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: view.dialog is None)


def test_a_wrong_password_signs_nothing(
    qtbot: Any,
    cases: CaseService,
    clinician: Actor,
    four: list[str],
    views: list[WorklistView],
) -> None:
    view = new_view(qtbot, cases, clinician, views)
    press(qtbot, view, Qt.Key.Key_S)
    type_in(qtbot, view.dialog.reason, "Atrial fibrillation")
    qtbot.keyClick(view.dialog.reason, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: view.dialog is not None and view.dialog.objectName() == "signDialog")
    type_in(qtbot, view.dialog.password, "not my password")
    qtbot.keyClick(view.dialog.password, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bool(error_texts()), timeout=20_000)
    assert "password" in error_texts()[0].lower()
    assert not view.busy and not view.model.items[0].signed
    assert cases.get_case(clinician, four[0]).sign_off is None


def test_filters_sort_and_shortcuts(
    qtbot: Any,
    cases: CaseService,
    clinician: Actor,
    four: list[str],
    views: list[WorklistView],
) -> None:
    view = new_view(qtbot, cases, clinician, views)
    titles = lambda: [item.title for item in view.model.items]  # noqa: E731

    def settle() -> None:
        qtbot.waitUntil(lambda: not view.loading)

    view.sort_switch.setCurrentIndex(1)  # uncertainty
    settle()
    assert titles() == ["Unsure", "Abstained critical", "Borderline", "High risk"]
    view.flagged_only.setChecked(True)
    settle()
    assert titles() == ["Unsure", "Abstained critical", "High risk"]
    first = view.model.index(2, 1).data(ITEM_ROLE)
    assert first.flags == (FLAG_CRITICAL,)
    assert "50 %" in view.model.index(2, 1).data(Qt.ItemDataRole.ToolTipRole)
    view.flagged_only.setChecked(False)
    press(qtbot, view, Qt.Key.Key_A)  # "Unsure" is current: accept its top suggestion
    wait_saved(qtbot, view)
    view.reviewer_filter.setCurrentIndex(view.reviewer_filter.findData(":unassigned"))
    settle()
    assert titles() == ["Abstained critical", "Borderline", "High risk"]
    view.reviewer_filter.setCurrentIndex(view.reviewer_filter.findData(":me"))
    settle()
    assert titles() == ["Unsure"]
    view.reviewer_filter.setCurrentIndex(0)
    view.status_filter.setCurrentIndex(view.status_filter.findData(WorklistStatus.ANALYSED))
    settle()
    assert titles() == ["Abstained critical", "Borderline", "High risk"]
    assert view.progress.text() == "0 of 3 reviewed"

    keys = dict(view.shortcuts())
    assert keys["J / Down"] == "Next case" and keys["K / Up"] == "Previous case"
    assert {"A", "O", "R", "S", "F5", "1\u20139"} <= set(keys)
    assert "Return" in next(k for k, text in keys.items() if text.startswith("Open"))
    for widget in (
        view.sort_switch,
        view.status_filter,
        view.reviewer_filter,
        view.flagged_only,
        view.auto_advance,
        view.progress,
        view.table,
        view.suggestion_list,
        view.accept_button,
        view.override_button,
        view.reject_button,
        view.sign_button,
        view.open_button,
    ):
        assert widget.accessibleName(), widget.objectName()
        assert widget.toolTip(), widget.objectName()
    assert view.model.columnCount() == len(COLUMNS)
    with qtbot.waitSignal(view.pageLoaded):
        press(qtbot, view, Qt.Key.Key_F5)


def test_a_page_of_100_cases_is_reviewed_without_stalling(
    qtbot: Any, cases: CaseService, clinician: Actor, views: list[WorklistView]
) -> None:
    bulk_insert_analysed_cases(cases.database, 240, composite_every=7)
    view = new_view(qtbot, cases, clinician, views)
    assert len(view.model.items) == 100 and view.total == 120  # analysed or in review
    view.grab()  # lay out and paint once
    with StallProbe() as probe:
        for _ in range(99):
            press(qtbot, view, Qt.Key.Key_J)
            qtbot.wait(2)
        assert view.current_row() == 99
        press(qtbot, view, Qt.Key.Key_J)  # past the last row: the next page
        qtbot.waitUntil(lambda: view.offset == 100 and not view.loading, timeout=20_000)
        qtbot.wait(30)
    assert view.current_row() == 0 and view.page_label.text() == "Cases 101\u2013120 of 120"
    assert len(probe.cpu_gaps_ms) > 20
    assert max(probe.cpu_gaps_ms) < 50, sorted(probe.cpu_gaps_ms)[-5:]
    if probe.others_busy < 0.25:
        assert sorted(probe.wall_gaps_ms)[-2] < 50, sorted(probe.wall_gaps_ms)[-5:]
    press(qtbot, view, Qt.Key.Key_K)  # before the first row: the previous page, last row
    qtbot.waitUntil(lambda: view.offset == 0 and not view.loading, timeout=20_000)
    assert view.current_row() == 99
