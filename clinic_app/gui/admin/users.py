"""User accounts and roles: list, create, change role, disable or enable, reset a password.

Every change goes through :mod:`clinic_app.services.users` on the database-writer thread; the
service enforces the rules (permissions, password policy, at least one active administrator)
and its message is shown as it is, so the dialog never has rules of its own that could differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.errors import InputError
from clinic_app.domain.records import Role
from clinic_app.gui.admin._common import (
    ModelIndex,
    RowTableModel,
    StatusLabel,
    WrappedLabel,
    add_action,
    background_for,
    compact_rows,
    db_write_for,
    local_time,
    named,
)
from clinic_app.gui.dialogs import show_error
from clinic_app.gui.theme import status_colour
from clinic_app.services import users as user_service
from clinic_app.services.context import Actor
from clinic_app.services.users import UserInfo, check_password_policy, validate_username
from clinic_app.storage.engine import Database

ROLE_NAMES = {
    Role.CLINICIAN: "Clinician",
    Role.REVIEWER: "Reviewer",
    Role.ADMIN: "Administrator",
    Role.DATA_SCIENTIST: "Data scientist",
}


def _last_sign_in(user: UserInfo) -> str:
    """The account's last successful sign-in, when the service reports it (``last_login_at``)."""
    value = getattr(user, "last_login_at", None)
    return local_time(value) if isinstance(value, datetime) else "never"


#: (header, value) per column. "Last sign-in" appears once UserInfo carries ``last_login_at``.
_COLUMNS: tuple[tuple[str, Callable[[UserInfo], str]], ...] = (
    ("User name", lambda user: user.username),
    ("Display name", lambda user: user.display_name),
    ("Role", lambda user: ROLE_NAMES[user.role]),
    ("Status", lambda user: user.status()),
    *(
        (("Last sign-in", _last_sign_in),)
        if "last_login_at" in {f.name for f in dataclasses.fields(UserInfo)}
        else ()
    ),
    ("Created", lambda user: local_time(user.created_at)),
    ("Password changed", lambda user: local_time(user.password_changed_at)),
)


class UsersTableModel(RowTableModel[UserInfo]):
    """The accounts, one row each; disabled and locked accounts are marked in colour."""

    COLUMNS = tuple(header for header, _ in _COLUMNS)

    @property
    def users(self) -> list[UserInfo]:
        return self.rows

    def set_users(self, users: list[UserInfo]) -> None:
        self.replace_rows(users)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        user = self.users[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return _COLUMNS[index.column()][1](user)
        if role == Qt.ItemDataRole.ForegroundRole and user.status() != "active":
            return status_colour(QApplication.palette(), "error")
        return None


class NewUserDialog(QDialog):
    """Asks for a new account's name, role and first password, checking the policy as typed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("newUserDialog")
        self.setWindowTitle("New user")
        self.username_edit = named(QLineEdit(), "newUserName")
        _describe(
            self.username_edit, "User name", "Letters, digits, '.', '_' or '-'; not case-sensitive"
        )
        self.display_edit = named(QLineEdit(), "newUserDisplayName")
        _describe(
            self.display_edit, "Display name", "The name shown on reports and in the audit trail"
        )
        self.role_combo = _role_combo("newUserRole")
        self.password_edit = _password_edit("newUserPassword", "Initial password")
        self.repeat_edit = _password_edit("newUserPasswordRepeat", "Repeat the password")
        self.policy_label = named(StatusLabel(), "newUserPolicy")
        form = QFormLayout()
        form.addRow("&User name:", self.username_edit)
        form.addRow("&Display name:", self.display_edit)
        form.addRow("&Role:", self.role_combo)
        form.addRow("&Password:", self.password_edit)
        form.addRow("R&epeat:", self.repeat_edit)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create user")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.policy_label)
        layout.addWidget(self.buttons)
        for edit in (self.username_edit, self.password_edit, self.repeat_edit):
            edit.textChanged.connect(self.check)
        self.setMinimumWidth(460)
        self.check()

    def check(self) -> bool:
        """Say what is wrong with the entries (or that they are fine); enable Create if fine."""
        problem = _password_problem(
            self.username_edit.text(), self.password_edit.text(), self.repeat_edit.text()
        )
        if problem is None:
            self.policy_label.show_status("\u2714 The password meets the policy.", "ok")
        else:
            self.policy_label.show_status(problem, "error" if self.password_edit.text() else None)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(problem is None)
        return problem is None

    def role(self) -> Role:
        return Role(self.role_combo.currentData())


class PasswordResetDialog(QDialog):
    """Asks an administrator for a new password for someone else's account."""

    def __init__(self, username: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.username = username
        self.setObjectName("passwordResetDialog")
        self.setWindowTitle(f"Reset password of {username}")
        self.password_edit = _password_edit("resetPassword", "New password")
        self.repeat_edit = _password_edit("resetPasswordRepeat", "Repeat the new password")
        self.policy_label = named(StatusLabel(), "resetPolicy")
        form = QFormLayout()
        form.addRow("&New password:", self.password_edit)
        form.addRow("&Repeat:", self.repeat_edit)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Reset password")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(
            WrappedLabel(
                f"The new password replaces the current one of '{username}' and lifts a lockout. "
                "Give it to the user in person; they should change it after signing in.",
            )
        )
        layout.addLayout(form)
        layout.addWidget(self.policy_label)
        layout.addWidget(self.buttons)
        for edit in (self.password_edit, self.repeat_edit):
            edit.textChanged.connect(self.check)
        self.setMinimumWidth(440)
        self.check()

    def check(self) -> bool:
        problem = _password_problem(
            self.username, self.password_edit.text(), self.repeat_edit.text()
        )
        if problem is None:
            self.policy_label.show_status("\u2714 The password meets the policy.", "ok")
        else:
            self.policy_label.show_status(problem, "error" if self.password_edit.text() else None)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(problem is None)
        return problem is None


def _password_problem(username: str, password: str, repeat: str) -> str | None:
    """The first thing wrong with a user name and password pair, in the service's words."""
    try:
        name = validate_username(username) if username.strip() else ""
        if not name:
            return "Enter a user name."
        if not password:
            return (
                f"Enter a password of at least {user_service.MIN_PASSWORD_LENGTH} characters; "
                "a few unrelated words are easy to remember."
            )
        check_password_policy(password, name)
    except InputError as exc:
        return str(exc)
    if password != repeat:
        return "The two passwords differ."
    return None


def _describe(widget: QWidget, name: str, tip: str) -> None:
    widget.setAccessibleName(name)
    widget.setToolTip(tip)


def _password_edit(object_name: str, name: str) -> QLineEdit:
    edit = named(QLineEdit(), object_name)
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    _describe(
        edit, name, f"At least {user_service.MIN_PASSWORD_LENGTH} characters, not the user name"
    )
    return edit


def _role_combo(object_name: str) -> QComboBox:
    combo = named(QComboBox(), object_name)
    for role, name in ROLE_NAMES.items():
        combo.addItem(name, role.value)
    _describe(combo, "Role", "What the account may do (see the README's permission table)")
    return combo


class UsersDialog(QDialog):
    """The accounts of this installation and what an administrator can change about them."""

    def __init__(self, database: Database, actor: Actor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.database = database
        self.actor = actor
        self.loading = False
        self.pending = 0
        self._shortcuts: list[tuple[str, str]] = []
        self.setObjectName("usersDialog")
        self.setWindowTitle("Users and roles")
        self.resize(900, 520)

        self.model = UsersTableModel(self)
        self.table = named(QTableView(), "usersTable")
        self.table.setModel(self.model)
        _describe(self.table, "User accounts", "Select an account to change it")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        compact_rows(self.table)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.table.doubleClicked.connect(lambda _index: self.change_selected_role())

        self.new_button = named(QPushButton("&New user\u2026"), "usersNewButton")
        _describe(self.new_button, "New user", "Create an account (Ctrl+N)")
        self.new_button.clicked.connect(self.open_new_user)
        self.role_combo = _role_combo("usersRoleCombo")
        self.role_button = named(QPushButton("Change &role"), "usersRoleButton")
        _describe(
            self.role_button, "Change role", "Give the selected account the role chosen on the left"
        )
        self.role_button.clicked.connect(self.change_selected_role)
        self.enable_button = named(QPushButton("&Disable"), "usersEnableButton")
        _describe(
            self.enable_button,
            "Disable or enable",
            "Stop the selected account signing in, or let it again (its history stays)",
        )
        self.enable_button.clicked.connect(self.toggle_selected_enabled)
        self.reset_button = named(QPushButton("Reset &password\u2026"), "usersResetButton")
        _describe(self.reset_button, "Reset password", "Give the selected account a new password")
        self.reset_button.clicked.connect(self.open_password_reset)

        actions = QHBoxLayout()
        actions.addWidget(self.new_button)
        actions.addStretch(1)
        actions.addWidget(QLabel("Role:"))
        actions.addWidget(self.role_combo)
        actions.addWidget(self.role_button)
        actions.addWidget(self.enable_button)
        actions.addWidget(self.reset_button)
        self.status = named(StatusLabel(), "usersStatus")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(
            WrappedLabel(
                "Accounts are never deleted, so the audit trail keeps naming who did what; "
                "disable an account instead. At least one active administrator always remains.",
            )
        )
        layout.addWidget(self.table, 1)
        layout.addLayout(actions)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        keys = self._shortcuts
        add_action(
            self,
            "New user",
            QKeySequence.StandardKey.New,
            "Create a user account",
            self.open_new_user,
            keys,
        )
        add_action(
            self,
            "Refresh",
            QKeySequence.StandardKey.Refresh,
            "Reload the accounts",
            self.refresh,
            keys,
        )
        self._update_buttons()
        self.refresh()

    def shortcuts(self) -> list[tuple[str, str]]:
        """(key sequence, what it does) for the Help page."""
        return list(self._shortcuts)

    # -- reading ------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.loading = True
        database, actor = self.database, self.actor
        background_for(
            self, lambda: user_service.list_users(database, actor), self._show_users, self._failed
        )

    def _show_users(self, users: list[UserInfo]) -> None:
        self.loading = False
        selected = self.selected_user()
        self.model.set_users(users)
        if selected is not None:
            self.select_user(selected.username)
        self._update_buttons()

    def user(self, username: str) -> UserInfo | None:
        return next((u for u in self.model.users if u.username == username), None)

    def selected_user(self) -> UserInfo | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.users[rows[0].row()] if rows else None

    def select_user(self, username: str) -> None:
        for row, user in enumerate(self.model.users):
            if user.username == username:
                self.table.selectRow(row)
                return

    def _update_buttons(self) -> None:
        user = self.selected_user()
        for button in (self.role_button, self.enable_button, self.reset_button, self.role_combo):
            button.setEnabled(user is not None and not self.pending)
        if user is not None:
            self.enable_button.setText(
                "&Enable" if not user.is_active or user.is_locked() else "&Disable"
            )
            self.role_combo.setCurrentIndex(self.role_combo.findData(user.role.value))

    # -- changes ------------------------------------------------------------------------------
    def _change(self, work: Callable[[], UserInfo], done_text: Callable[[UserInfo], str]) -> None:
        self.pending += 1
        self._update_buttons()

        def done(info: UserInfo) -> None:
            self.pending -= 1
            self.status.show_status(done_text(info), "ok")
            self.refresh()
            self.select_user(info.username)

        def failed(exc: Exception) -> None:
            self.pending -= 1
            self._update_buttons()
            self._failed(exc)

        db_write_for(self, work, done, failed)

    def _failed(self, exc: Exception) -> None:
        self.loading = False
        self.status.show_status(str(exc), "error")
        show_error(self, exc)

    def create_user(self, username: str, display_name: str, role: Role, password: str) -> None:
        database, actor = self.database, self.actor
        self._change(
            lambda: user_service.create_user(
                database, actor, username, password, role, display_name=display_name or None
            ),
            lambda info: f"Account '{info.username}' created ({ROLE_NAMES[info.role]}).",
        )

    def change_role(self, username: str, role: Role) -> None:
        database, actor = self.database, self.actor
        self._change(
            lambda: user_service.change_role(database, actor, username, role),
            lambda info: f"'{info.username}' is now {ROLE_NAMES[info.role].lower()}.",
        )

    def set_enabled(self, username: str, enabled: bool) -> None:
        database, actor = self.database, self.actor
        if enabled:
            self._change(
                lambda: user_service.enable_user(database, actor, username),
                lambda info: f"'{info.username}' may sign in again.",
            )
        else:
            self._change(
                lambda: user_service.disable_user(database, actor, username),
                lambda info: f"'{info.username}' is disabled and can no longer sign in.",
            )

    def reset_password(self, username: str, password: str) -> None:
        database, actor = self.database, self.actor
        self._change(
            lambda: user_service.change_password(database, actor, username, password),
            lambda info: f"The password of '{info.username}' was reset.",
        )

    # -- buttons ------------------------------------------------------------------------------
    def open_new_user(self) -> NewUserDialog:
        dialog = NewUserDialog(self)

        def finished(code: int) -> None:
            if code == QDialog.DialogCode.Accepted:
                self.create_user(
                    dialog.username_edit.text(),
                    dialog.display_edit.text(),
                    dialog.role(),
                    dialog.password_edit.text(),
                )
            dialog.deleteLater()

        dialog.finished.connect(finished)
        dialog.open()
        return dialog

    def change_selected_role(self) -> None:
        user = self.selected_user()
        if user is not None:
            self.change_role(user.username, Role(self.role_combo.currentData()))

    def toggle_selected_enabled(self) -> None:
        user = self.selected_user()
        if user is not None:
            self.set_enabled(user.username, not user.is_active or user.is_locked())

    def open_password_reset(self) -> PasswordResetDialog | None:
        user = self.selected_user()
        if user is None:
            return None
        dialog = PasswordResetDialog(user.username, self)

        def finished(code: int) -> None:
            if code == QDialog.DialogCode.Accepted:
                self.reset_password(user.username, dialog.password_edit.text())
            dialog.deleteLater()

        dialog.finished.connect(finished)
        dialog.open()
        return dialog
