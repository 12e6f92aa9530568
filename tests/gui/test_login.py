"""Signing in on SQLite and PostgreSQL: the login dialog (success, wrong password, locked
account), the first-run dialog (creates the administrator and signs in, refuses a mismatch or
a weak password inline), and sign_in() choosing between them."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialog
from sqlalchemy import select

from clinic_app import __version__
from clinic_app.domain.intended_use import INTENDED_USE_SHORT
from clinic_app.domain.records import Role
from clinic_app.gui.login import (
    PASSWORDS_DIFFER,
    SEED_DEMO_TEXT,
    FirstRunDialog,
    LoginDialog,
    sign_in,
)
from clinic_app.services.context import Actor
from clinic_app.services.users import (
    LOGIN_FAILED_MESSAGE,
    MAX_FAILED_LOGINS,
    PasswordHashing,
    create_first_admin,
    create_user,
    has_users,
)
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent, User

pytestmark = pytest.mark.gui

#: Cheap argon2id parameters, passed explicitly (as tests/services/test_users.py does).
FAST = PasswordHashing(time_cost=1, memory_cost_kib=8, parallelism=1)
ADMIN_PASSWORD = "correct horse battery"
PASSWORD = "staple kettle orbit lamp"


@pytest.fixture
def clinician_account(database: Database) -> str:
    create_first_admin(database, "root", ADMIN_PASSWORD, hashing=FAST)
    with database.read() as session:
        admin = Actor(
            session.scalar(select(User.id).where(User.username == "root")),
            "root",
            Role.ADMIN,
            "ws-test",
        )
    create_user(database, admin, "alice", PASSWORD, Role.CLINICIAN, hashing=FAST)
    return "alice"


def login_events(database: Database) -> list[AuditEvent]:
    with database.read() as session:
        query = select(AuditEvent).where(AuditEvent.event_type == "user.login")
        return list(session.scalars(query.order_by(AuditEvent.sequence)))


def new_login(qtbot: Any, database: Database) -> LoginDialog:
    dialog = LoginDialog(database, hashing=FAST, workstation="ws-9")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def attempt(qtbot: Any, dialog: LoginDialog, username: str, password: str) -> None:
    dialog.username_edit.setText(username)
    dialog.password_edit.setText(password)
    qtbot.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)
    assert dialog.busy
    qtbot.waitUntil(lambda: not dialog.busy, timeout=10_000)


def test_login_shows_product_version_and_intended_use(qtbot: Any, database: Database) -> None:
    dialog = new_login(qtbot, database)
    labels = [label.text() for label in dialog.findChildren(type(dialog.message))]
    assert any("ClinicFusion" in text and __version__ in text for text in labels)
    banner = dialog.findChild(type(dialog.message), "intendedUse")
    assert banner.isVisible() and banner.text() == INTENDED_USE_SHORT
    for widget in (dialog.username_edit, dialog.password_edit, dialog.sign_in_button):
        assert widget.accessibleName() and widget.toolTip()


def test_login_success_sets_the_actor_and_accepts(
    qtbot: Any, database: Database, clinician_account: str
) -> None:
    dialog = new_login(qtbot, database)
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        attempt(qtbot, dialog, "Alice", PASSWORD)
    assert dialog.result() == QDialog.DialogCode.Accepted
    actor = dialog.actor
    assert actor is not None and actor.username == "alice" and actor.role == Role.CLINICIAN
    assert actor.workstation == "ws-9"
    assert login_events(database)[-1].outcome == 0


def test_wrong_password_is_refused_inline_and_the_dialog_stays(
    qtbot: Any, database: Database, clinician_account: str
) -> None:
    dialog = new_login(qtbot, database)
    attempt(qtbot, dialog, "alice", "not the password")
    assert dialog.isVisible() and dialog.actor is None
    assert dialog.message.isVisible() and dialog.message.text().startswith(LOGIN_FAILED_MESSAGE)
    assert "color:" in dialog.message.styleSheet()
    assert dialog.password_edit.text() == ""  # cleared for the next try
    assert dialog.username_edit.text() == "alice"
    # Empty fields never reach the service.
    before = len(login_events(database))
    dialog.password_edit.clear()
    dialog.sign_in()
    assert not dialog.busy and "Type your user name and password" in dialog.message.text()
    assert len(login_events(database)) == before


def test_a_locked_account_is_refused_even_with_the_right_password(
    qtbot: Any, database: Database, clinician_account: str
) -> None:
    dialog = new_login(qtbot, database)
    for _ in range(MAX_FAILED_LOGINS):
        attempt(qtbot, dialog, "alice", "wrong guess")
    attempt(qtbot, dialog, "alice", PASSWORD)
    assert dialog.isVisible() and dialog.actor is None
    text = dialog.message.text()
    assert text.startswith(LOGIN_FAILED_MESSAGE) and "locked" in text
    assert login_events(database)[-1].details["reason"] == "locked"


def test_a_disabled_account_says_so(qtbot: Any, database: Database, clinician_account: str) -> None:
    from clinic_app.services.users import disable_user

    with database.read() as session:
        root_id = session.scalar(select(User.id).where(User.username == "root"))
    disable_user(database, Actor(root_id, "root", Role.ADMIN, "ws"), "alice")
    dialog = new_login(qtbot, database)
    attempt(qtbot, dialog, "alice", PASSWORD)
    assert "disabled" in dialog.message.text() and dialog.actor is None


def new_first_run(qtbot: Any, database: Database) -> FirstRunDialog:
    dialog = FirstRunDialog(database, hashing=FAST, workstation="ws-1")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def test_first_run_creates_the_admin_and_signs_in(qtbot: Any, database: Database) -> None:
    assert not has_users(database)
    dialog = new_first_run(qtbot, database)
    assert dialog.seed_demo_check.isChecked() and dialog.seed_demo_requested
    assert dialog.seed_demo_check.text() == SEED_DEMO_TEXT
    banner = dialog.findChild(type(dialog.message), "intendedUse")
    assert banner.isVisible() and banner.text() == INTENDED_USE_SHORT
    dialog.username_edit.setText("Chief")
    dialog.display_name_edit.setText("Dr Chief")
    dialog.password_edit.setText(ADMIN_PASSWORD)
    dialog.confirm_edit.setText(ADMIN_PASSWORD)
    assert "meets the policy" in dialog.policy_label.text()
    dialog.seed_demo_check.setChecked(False)
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    actor = dialog.actor
    assert actor is not None and actor.username == "chief" and actor.role == Role.ADMIN
    assert not dialog.seed_demo_requested
    assert has_users(database)
    with database.read() as session:
        user = session.scalars(select(User)).one()
        assert (user.username, user.display_name) == ("chief", "Dr Chief")
    events = login_events(database)
    assert len(events) == 1 and events[0].username == "chief" and events[0].outcome == 0


def test_first_run_refuses_a_mismatch_or_weak_password_inline(
    qtbot: Any, database: Database
) -> None:
    dialog = new_first_run(qtbot, database)
    dialog.password_edit.setText("short")
    assert "too short" in dialog.policy_label.text()
    dialog.password_edit.setText(ADMIN_PASSWORD)
    dialog.confirm_edit.setText(ADMIN_PASSWORD + "!")
    assert dialog.policy_label.text() == PASSWORDS_DIFFER
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    assert not dialog.busy and dialog.isVisible()
    assert dialog.message.isVisible() and dialog.message.text() == PASSWORDS_DIFFER
    assert not has_users(database)
    dialog.confirm_edit.setText(ADMIN_PASSWORD)
    dialog.username_edit.setText("system")  # reserved for the app itself
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    assert "reserved" in dialog.message.text() and not has_users(database)


def test_first_run_after_another_workstation_created_an_account(
    qtbot: Any, database: Database
) -> None:
    dialog = new_first_run(qtbot, database)
    create_first_admin(database, "elsewhere", ADMIN_PASSWORD, hashing=FAST)
    dialog.password_edit.setText(PASSWORD)
    dialog.confirm_edit.setText(PASSWORD)
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.busy, timeout=10_000)
    assert "first-run set-up is closed" in dialog.message.text()
    assert dialog.accounts_exist and dialog.actor is None


def _answer(qtbot: Any, fill: Any) -> None:
    """Fill in the modal dialog that exec() is about to show, from the event loop."""

    def later() -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(20, later)
            return
        fill(dialog)

    QTimer.singleShot(0, later)


def test_sign_in_runs_first_run_then_login(qtbot: Any, database: Database) -> None:
    first_runs: list[tuple[str, bool]] = []

    def set_up(dialog: Any) -> None:
        assert isinstance(dialog, FirstRunDialog)
        dialog.password_edit.setText(ADMIN_PASSWORD)
        dialog.confirm_edit.setText(ADMIN_PASSWORD)
        dialog.create_admin()

    _answer(qtbot, set_up)
    actor = sign_in(
        database,
        hashing=FAST,
        on_first_run=lambda actor, seed: first_runs.append((actor.username, seed)),
    )
    assert actor is not None and actor.username == "admin" and actor.role == Role.ADMIN
    assert first_runs == [("admin", True)]

    def log_in(dialog: Any) -> None:
        assert isinstance(dialog, LoginDialog)
        dialog.username_edit.setText("admin")
        dialog.password_edit.setText(ADMIN_PASSWORD)
        dialog.sign_in()

    _answer(qtbot, log_in)
    again = sign_in(database, hashing=FAST)
    assert again is not None and again.user_id == actor.user_id
    _answer(qtbot, lambda dialog: dialog.reject())
    assert sign_in(database, hashing=FAST) is None
