"""The administration dialogs on SQLite and PostgreSQL: the audit viewer (pages, filters,
details, export, chain verification before and after tampering), private statistics (budget,
confirmation, release, exhaustion) and users and roles (create, change role, the last
administrator kept). Screenshots of each are saved next to the test's files (and into
$CF_SCREENSHOT_DIR when set) to be looked at."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QMessageBox, QWidget
from sqlalchemy import text

from clinic_app.domain.records import AuditAction, AuditOutcome, Role
from clinic_app.services.context import Actor, record_audit
from clinic_app.services.privacy.queries import AGE_BINS
from clinic_app.services.users import (
    PasswordHashing,
    authenticate,
    create_first_admin,
    create_user,
)
from clinic_app.storage.engine import Database

pytestmark = pytest.mark.gui

FAST = PasswordHashing(time_cost=1, memory_cost_kib=8, parallelism=1)
PASSWORD = "staple kettle orbit lamp"
WAIT_MS = 20_000


# -- helpers ----------------------------------------------------------------------------------
class MessageBoxes:
    """Answers every warning or error box the code under test opens, remembering its text."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.timer = QTimer()
        self.timer.setInterval(30)
        self.timer.timeout.connect(self._close_open_box)
        self.timer.start()

    def _close_open_box(self) -> None:
        for widget in QApplication.topLevelWidgets():
            if (
                isinstance(widget, QMessageBox)
                and widget.isVisible()
                and widget.icon() in (QMessageBox.Icon.Warning, QMessageBox.Icon.Critical)
            ):
                self.texts.append(f"{widget.text()} {widget.informativeText()}".strip())
                widget.done(QMessageBox.StandardButton.Ok)

    def joined(self) -> str:
        return "\n".join(self.texts)


@pytest.fixture
def message_boxes() -> Iterator[MessageBoxes]:
    boxes = MessageBoxes()
    yield boxes
    boxes.timer.stop()


def screenshot(widget: QWidget, name: str, folder: Path) -> Path:
    """Save what ``widget`` shows as a PNG (and into $CF_SCREENSHOT_DIR for a person to see)."""
    QApplication.processEvents()
    image = widget.grab()
    path = folder / f"{name}.png"
    assert image.save(str(path))
    extra = os.environ.get("CF_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        image.save(str(Path(extra) / f"{name}.png"))
    return path


@pytest.fixture
def admin(database: Database) -> Actor:
    create_first_admin(database, "admin", PASSWORD, display_name="Ada Admin", hashing=FAST)
    return authenticate(database, "admin", PASSWORD, workstation="ws-admin", hashing=FAST)


def tamper(database: Database, statement: str) -> None:
    """Change the trail as an attacker with database rights would (triggers out of the way)."""
    with database.engine.begin() as connection:
        if database.backend == "sqlite":
            connection.execute(text("DROP TRIGGER IF EXISTS trg_audit_events_no_update"))
        else:
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        connection.execute(text(statement))
        if database.backend == "postgresql":
            connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))


# -- audit viewer -----------------------------------------------------------------------------
@pytest.fixture
def busy_trail(database: Database, admin: Actor) -> Actor:
    """An admin, a clinician, one failed sign-in and 60 case reads: more than one page."""
    create_user(database, admin, "dr.jones", PASSWORD, Role.CLINICIAN, hashing=FAST)
    with pytest.raises(Exception, match="wrong password"):
        authenticate(database, "dr.jones", "not the password at all", hashing=FAST)
    clinician = authenticate(database, "dr.jones", PASSWORD, workstation="ws-ward", hashing=FAST)
    for index in range(60):
        with database.write() as session:
            record_audit(
                session,
                clinician,
                "case.read",
                AuditAction.READ,
                case_uid=f"CASE-{index % 3}",
                details={"index": index},
            )
    return admin


def test_audit_viewer_pages_filters_details_and_export(
    qtbot, database: Database, busy_trail: Actor, tmp_path: Path
) -> None:
    from clinic_app.gui.admin import AuditViewerDialog

    dialog = AuditViewerDialog(database, busy_trail, export_dir=tmp_path)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.page_data is not None, timeout=WAIT_MS)
    page = dialog.page_data
    assert page is not None and page.total > 60 and page.pages == 2
    sequences = [dialog.model.entry(row).sequence for row in range(dialog.model.rowCount())]
    assert len(sequences) == 50 and sequences == sorted(sequences, reverse=True)  # newest first
    assert dialog.page_label.text() == "Page 1 of 2"
    assert not dialog.newer_button.isEnabled() and dialog.older_button.isEnabled()
    selected = dialog.selected_entry()
    assert selected is not None and selected.sequence == sequences[0]
    shown = json.loads(dialog.details.toPlainText())
    assert shown["sequence"] == selected.sequence and shown["hash"] == selected.hash

    dialog.older_page()
    qtbot.waitUntil(lambda: dialog.page_data is not None and dialog.page_data.page == 2)
    assert dialog.model.rowCount() == page.total - 50
    assert dialog.model.entry(0).sequence < sequences[-1]

    # Filters narrow the events; the failed sign-in is found by its outcome.
    dialog.set_filter(outcome=AuditOutcome.MINOR_FAILURE)
    dialog.apply_filters()
    qtbot.waitUntil(lambda: dialog.page_data is not None and dialog.page_data.page == 1)
    qtbot.waitUntil(lambda: not dialog.loading)
    failures = [dialog.model.entry(row) for row in range(dialog.model.rowCount())]
    assert [(e.event_type, e.username) for e in failures] == [("user.login", "dr.jones")]
    assert json.loads(dialog.details.toPlainText())["details"]["reason"] == "wrong_password"

    dialog.set_filter(event_type="case.*", case_uid="CASE-1", username="dr.jones")
    dialog.apply_filters()
    qtbot.waitUntil(lambda: not dialog.loading)
    rows = [dialog.model.entry(row) for row in range(dialog.model.rowCount())]
    assert len(rows) == 20 and {(e.case_uid, e.event_type) for e in rows} == {
        ("CASE-1", "case.read")
    }
    assert dialog.status.text().startswith("Events 1\u201320 of 20, newest first.")

    dialog.set_filter(event_type="user.*")
    dialog.apply_filters()
    qtbot.waitUntil(lambda: not dialog.loading)
    assert {dialog.model.entry(r).event_type for r in range(dialog.model.rowCount())} >= {
        "user.create",
        "user.login",
    }

    target = tmp_path / "trail.json"
    dialog.export_to(target, "fhir")
    qtbot.waitUntil(lambda: dialog.last_export is not None, timeout=WAIT_MS)
    assert dialog.last_export is not None and dialog.last_export.path == target
    bundle = json.loads(target.read_text(encoding="utf-8"))
    assert bundle["resourceType"] == "Bundle"
    assert len(bundle["entry"]) == dialog.last_export.events > 0
    assert dialog.status.kind == "ok"
    assert [key for key, _ in dialog.shortcuts()]
    screenshot(dialog, "audit-viewer", tmp_path)


def test_verify_chain_is_ok_then_finds_tampering(
    qtbot, database: Database, busy_trail: Actor, tmp_path: Path, message_boxes: MessageBoxes
) -> None:
    from clinic_app.gui.admin import AuditViewerDialog

    dialog = AuditViewerDialog(database, busy_trail)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.page_data is not None, timeout=WAIT_MS)

    qtbot.mouseClick(dialog.verify_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.verification is not None, timeout=WAIT_MS)
    result = dialog.verification
    assert result is not None and result.ok
    assert dialog.verify_result.kind == "ok"
    assert f"{result.events_checked} events checked" in dialog.verify_result.text()
    assert "Chain intact" in dialog.verify_result.text()

    tamper(database, "UPDATE audit_events SET workstation = 'ws-FORGED' WHERE sequence = 5")
    dialog.verify_chain()
    qtbot.waitUntil(lambda: dialog.verification is not None, timeout=WAIT_MS)
    broken = dialog.verification
    assert broken is not None and not broken.ok and broken.first_bad_sequence == 5
    assert dialog.verify_result.kind == "error"
    assert "FAILED at event 5" in dialog.verify_result.text()
    assert message_boxes.texts == []
    screenshot(dialog, "audit-viewer-tampered", tmp_path)


def test_audit_viewer_refuses_a_clinician_clearly(
    qtbot, database: Database, admin: Actor, message_boxes: MessageBoxes
) -> None:
    from clinic_app.gui.admin import AuditViewerDialog

    create_user(database, admin, "dr.jones", PASSWORD, Role.CLINICIAN, hashing=FAST)
    clinician = authenticate(database, "dr.jones", PASSWORD, hashing=FAST)
    dialog = AuditViewerDialog(database, clinician)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: bool(message_boxes.texts), timeout=WAIT_MS)
    assert "may not view the audit trail" in message_boxes.joined()
    assert dialog.status.kind == "error" and dialog.model.rowCount() == 0
    assert not dialog.export_button.isEnabled()


# -- private statistics -----------------------------------------------------------------------
def confirm(qtbot, dialog) -> str:  # type: ignore[no-untyped-def]
    """Accept the "spend and release" confirmation; returns what it said."""
    dialog.request_release()
    qtbot.waitUntil(lambda: dialog.confirmation is not None and dialog.confirmation.isVisible())
    box = dialog.confirmation
    said = f"{box.text()} {box.informativeText()}"
    box.button(QMessageBox.StandardButton.Yes).click()
    return said


def test_privacy_release_spends_epsilon_and_stops_when_exhausted(
    qtbot, database: Database, admin: Actor, tmp_path: Path, message_boxes: MessageBoxes
) -> None:
    from clinic_app.gui.admin import PrivacyStatsDialog

    dialog = PrivacyStatsDialog(database, admin)
    qtbot.addWidget(dialog)
    dialog.show()
    titles = [dialog.query_combo.itemText(i) for i in range(dialog.query_combo.count())]
    assert "Patients by age in 10-year bins" in titles and len(titles) == 6
    dialog.set_query("age_histogram", "demo")
    qtbot.waitUntil(lambda: dialog.budget_known, timeout=WAIT_MS)
    assert dialog.budget is None and not dialog.release_button.isEnabled()
    assert "No budget" in dialog.budget_label.text()
    assert dialog.budget_editor.isVisible()

    dialog.set_dataset_budget(Fraction(3, 10), Fraction(0))
    qtbot.waitUntil(lambda: dialog.budget is not None and dialog.budget_known, timeout=WAIT_MS)
    assert dialog.budget is not None and dialog.budget.epsilon_remaining == Fraction(3, 10)
    dialog.epsilon_spin.setValue(0.1)
    assert dialog.epsilon() == Fraction(1, 10)
    assert dialog.release_button.isEnabled()

    said = confirm(qtbot, dialog)
    assert "\u03b5 0.1" in said and "0.3 remains now and 0.2 will remain after" in said
    qtbot.waitUntil(lambda: dialog.released is not None, timeout=WAIT_MS)
    released = dialog.released
    assert released is not None and released.budget_after.epsilon_remaining == Fraction(2, 10)
    assert dialog.result_table.rowCount() == len(AGE_BINS)
    assert dialog.result_table.horizontalHeaderItem(2).text() == "95% interval"
    assert len(dialog.chart.rows) == len(AGE_BINS)
    assert "scale 10" in dialog.noise_label.text() and "\u00b130" in dialog.noise_label.text()
    assert "\u03b5 0.2 of 0.3" in dialog.after_label.text()
    assert "Remaining: \u03b5 0.2 of 0.3" in dialog.budget_label.text()
    screenshot(dialog, "privacy-released", tmp_path)

    dialog.epsilon_spin.setValue(0.2)
    confirm(qtbot, dialog)
    qtbot.waitUntil(
        lambda: dialog.released is not None and dialog.released.budget_after.releases == 2,
        timeout=WAIT_MS,
    )
    assert dialog.budget is not None and dialog.budget.epsilon_remaining == 0
    dialog.epsilon_spin.setValue(0.05)
    assert not dialog.release_button.isEnabled()
    assert (
        dialog.spend_label.kind == "error" and "more than the 0 left" in dialog.spend_label.text()
    )
    screenshot(dialog, "privacy-exhausted", tmp_path)

    # Were the button pressed anyway (another workstation spent it), the service refuses.
    dialog.release_now()
    qtbot.waitUntil(lambda: bool(message_boxes.texts), timeout=WAIT_MS)
    assert "only epsilon 0 and delta 0 are left" in message_boxes.joined()
    assert dialog.status.kind == "error" and "Not released" in dialog.status.text()
    qtbot.waitUntil(lambda: dialog.budget_known, timeout=WAIT_MS)  # the refresh that follows


def test_privacy_dialog_for_a_data_scientist_has_no_budget_editor(
    qtbot, database: Database, admin: Actor
) -> None:
    from clinic_app.gui.admin import PrivacyStatsDialog

    create_user(database, admin, "ds", PASSWORD, Role.DATA_SCIENTIST, hashing=FAST)
    scientist = authenticate(database, "ds", PASSWORD, hashing=FAST)
    dialog = PrivacyStatsDialog(database, scientist)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.budget_known, timeout=WAIT_MS)
    assert not dialog.budget_editor.isVisible()
    assert "by an administrator" in dialog.spend_label.text()
    dialog.set_query("override_rate")
    assert not dialog.codes_edit.isVisible() and not dialog.months_row.isVisible()
    dialog.set_query("suggested_diagnosis")
    assert dialog.codes_edit.isVisible() and dialog.needs_delta()
    dialog.codes_edit.setText("164889003, 426783006")
    assert not dialog.needs_delta()
    assert dialog.release_request().codes == ("164889003", "426783006")
    qtbot.waitUntil(lambda: dialog.budget_known, timeout=WAIT_MS)


def test_noise_interval_matches_the_distributions() -> None:
    from clinic_app.gui.admin import noise_half_width
    from clinic_app.services.privacy.mechanisms import discrete_laplace_pmf

    half = noise_half_width({"scale": "10"})
    assert half is not None
    inside = sum(discrete_laplace_pmf(y, 10) for y in range(-half, half + 1))
    narrower = sum(discrete_laplace_pmf(y, 10) for y in range(-half + 1, half))
    assert inside >= 0.95 > narrower
    gaussian = noise_half_width({"sigma_squared": "100"})
    assert gaussian in (19, 20)  # about 1.96 sigma for sigma 10


# -- users ------------------------------------------------------------------------------------
def test_users_dialog_creates_changes_role_and_keeps_an_admin(
    qtbot, database: Database, admin: Actor, tmp_path: Path, message_boxes: MessageBoxes
) -> None:
    from clinic_app.gui.admin import UsersDialog

    dialog = UsersDialog(database, admin)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.user("admin") is not None, timeout=WAIT_MS)

    new_user = dialog.open_new_user()
    ok = new_user.buttons.button(QDialogButtonBox.StandardButton.Ok)
    qtbot.keyClicks(new_user.username_edit, "dr.jones")
    new_user.display_edit.setText("Dr Jane Jones")
    new_user.role_combo.setCurrentIndex(new_user.role_combo.findData(Role.CLINICIAN.value))
    qtbot.keyClicks(new_user.password_edit, "short")
    assert not ok.isEnabled() and "too short" in new_user.policy_label.text()
    assert new_user.policy_label.kind == "error"
    screenshot(new_user, "users-new-user-policy", tmp_path)
    new_user.password_edit.setText(PASSWORD)
    assert "differ" in new_user.policy_label.text()
    new_user.repeat_edit.setText(PASSWORD)
    assert ok.isEnabled() and new_user.policy_label.kind == "ok"
    ok.click()
    qtbot.waitUntil(lambda: dialog.user("dr.jones") is not None, timeout=WAIT_MS)
    created = dialog.user("dr.jones")
    assert created is not None and created.role == Role.CLINICIAN
    assert created.display_name == "Dr Jane Jones"
    authenticate(database, "dr.jones", PASSWORD)  # the account works

    dialog.select_user("dr.jones")
    dialog.role_combo.setCurrentIndex(dialog.role_combo.findData(Role.REVIEWER.value))
    dialog.change_selected_role()
    qtbot.waitUntil(
        lambda: (user := dialog.user("dr.jones")) is not None and user.role == Role.REVIEWER,
        timeout=WAIT_MS,
    )

    dialog.set_enabled("dr.jones", False)
    qtbot.waitUntil(
        lambda: (user := dialog.user("dr.jones")) is not None and not user.is_active,
        timeout=WAIT_MS,
    )
    dialog.select_user("dr.jones")
    assert dialog.enable_button.text() == "&Enable"
    screenshot(dialog, "users", tmp_path)

    dialog.set_enabled("admin", False)
    qtbot.waitUntil(lambda: bool(message_boxes.texts), timeout=WAIT_MS)
    assert "'admin' is the only active administrator and cannot be disabled" in (
        message_boxes.joined()
    )
    assert dialog.status.kind == "error"
    dialog.change_role("admin", Role.CLINICIAN)
    qtbot.waitUntil(lambda: len(message_boxes.texts) == 2, timeout=WAIT_MS)
    assert "cannot be made a clinician" in message_boxes.texts[1]
    qtbot.waitUntil(lambda: dialog.pending == 0)
    admin_row = dialog.user("admin")
    assert admin_row is not None and admin_row.is_active and admin_row.role == Role.ADMIN
    assert [key for key, _ in dialog.shortcuts()]
    qtbot.waitUntil(lambda: not dialog.loading, timeout=WAIT_MS)
