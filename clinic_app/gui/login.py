"""Signing in: the login dialog, the first-run dialog that creates the administrator, and
:func:`sign_in`, which shows whichever of them this database needs.

Both dialogs show the product, its version and the intended-use statement before anyone
signs in. Passwords are checked (argon2, about 0.1 s) and sign-ins audited on the database
writer thread, so the dialog stays responsive; a refusal is shown inline, in the dialog,
with the service's own words.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from clinic_app._version import __version__
from clinic_app.config.assets import asset_path
from clinic_app.domain.errors import ClinicError
from clinic_app.domain.intended_use import INTENDED_USE, INTENDED_USE_SHORT
from clinic_app.gui.workers import run_db_write
from clinic_app.services.context import Actor
from clinic_app.services.users import (
    DEFAULT_HASHING,
    PasswordHashing,
    authenticate,
    check_password_policy,
    create_first_admin,
    has_users,
    validate_username,
)
from clinic_app.storage.engine import Database

log = logging.getLogger(__name__)

PRODUCT_NAME = "ClinicFusion"
SEED_DEMO_TEXT = (
    "Add composite demo cases (built from public data shipped with the app; not real patients)"
)
PASSWORDS_DIFFER = "The two passwords differ: type the same password twice."
_BANNER_STYLE = (
    "QLabel#intendedUse { background: #fff3cd; color: #664d03; border: 1px solid #e0c36a; "
    "border-radius: 4px; padding: 6px 10px; }"
)


def _status_colour(widget: QWidget, kind: str) -> QColor:
    """An error red or success green that reads on the widget's (light or dark) background."""
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    colours = {"error": ("#b3261e", "#ff8a80"), "ok": ("#1e7b34", "#7fd69a")}[kind]
    return QColor(colours[1] if dark else colours[0])


def _header(subtitle: str) -> QWidget:
    """Icon, product name and version, what the dialog is for, and the intended use."""
    header = QWidget()
    icon = QLabel()
    icon.setPixmap(QIcon(str(asset_path("icons", "clinicfusion.svg"))).pixmap(48, 48))
    icon.setAccessibleName(f"{PRODUCT_NAME} logo")
    name = QLabel(f"<b style='font-size:15pt'>{PRODUCT_NAME}</b>&nbsp;&nbsp;version {__version__}")
    name.setObjectName("productName")
    what = QLabel(subtitle)
    what.setWordWrap(True)
    titles = QVBoxLayout()
    titles.setSpacing(2)
    titles.addWidget(name)
    titles.addWidget(what)
    top = QHBoxLayout()
    top.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
    top.addLayout(titles, 1)
    banner = QLabel(INTENDED_USE_SHORT)
    banner.setObjectName("intendedUse")
    banner.setWordWrap(True)
    banner.setStyleSheet(_BANNER_STYLE)
    banner.setToolTip(INTENDED_USE)
    banner.setAccessibleName("Intended use")
    layout = QVBoxLayout(header)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addLayout(top)
    layout.addSpacing(6)
    layout.addWidget(banner)
    return header


def _message_label(name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setVisible(False)
    return label


def _password_edit(name: str, accessible: str, tooltip: str) -> QLineEdit:
    edit = QLineEdit()
    edit.setObjectName(name)
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    edit.setAccessibleName(accessible)
    edit.setToolTip(tooltip)
    return edit


def _explain(exc: Exception) -> str:
    """A sentence for the dialog: a ClinicError's own words, else a pointer to the log."""
    if isinstance(exc, ClinicError):
        return str(exc)
    log.error("Sign-in failed unexpectedly", exc_info=exc)
    return (
        "Something unexpected went wrong and was written to the log file. Please send the log "
        f"to your IT team. ({type(exc).__name__})"
    )


class LoginDialog(QDialog):
    """User name and password; on success ``actor`` is the signed-in user and the dialog accepts.

    A refusal (wrong password, locked or disabled account) is shown in red in the dialog,
    which stays open for another try."""

    def __init__(
        self,
        database: Database,
        parent: QWidget | None = None,
        *,
        hashing: PasswordHashing = DEFAULT_HASHING,
        workstation: str | None = None,
        username: str = "",
    ) -> None:
        super().__init__(parent)
        self.setObjectName("loginDialog")
        self.setWindowTitle(f"Sign in \u2014 {PRODUCT_NAME}")
        self.setMinimumWidth(460)
        self.database = database
        self.hashing = hashing
        self.workstation = workstation
        self._actor: Actor | None = None
        self._busy = False

        self.username_edit = QLineEdit(username)
        self.username_edit.setObjectName("username")
        self.username_edit.setAccessibleName("User name")
        self.username_edit.setToolTip("Your ClinicFusion user name (not case-sensitive)")
        self.username_edit.setMaxLength(64)
        self.password_edit = _password_edit("password", "Password", "Your password")
        self.message = _message_label("loginError")
        self.sign_in_button = QPushButton("Sign in")
        self.sign_in_button.setObjectName("signInButton")
        self.sign_in_button.setDefault(True)
        self.sign_in_button.setAccessibleName("Sign in")
        self.sign_in_button.setToolTip("Sign in with this user name and password (Enter)")
        self.sign_in_button.clicked.connect(self.sign_in)
        buttons = QDialogButtonBox()
        buttons.addButton(self.sign_in_button, QDialogButtonBox.ButtonRole.AcceptRole)
        cancel = buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setToolTip("Close without signing in")
        cancel.setAccessibleName("Cancel")
        buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("&User name:", self.username_edit)
        form.addRow("&Password:", self.password_edit)
        layout = QVBoxLayout(self)
        layout.addWidget(_header("Sign in to open the case list."))
        layout.addSpacing(8)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addStretch(1)
        layout.addWidget(buttons)
        (self.password_edit if username else self.username_edit).setFocus()

    @property
    def actor(self) -> Actor | None:
        """The signed-in user, once sign-in succeeded."""
        return self._actor

    @property
    def busy(self) -> bool:
        """True while the password is being checked."""
        return self._busy

    def sign_in(self) -> None:
        """Check the user name and password in the background."""
        if self._busy:
            return
        username, password = self.username_edit.text().strip(), self.password_edit.text()
        if not username or not password:
            self._show_error("Type your user name and password.")
            (self.password_edit if username else self.username_edit).setFocus()
            return
        self._set_busy(True)
        self._show_message("Signing in\u2026", None)
        database, hashing, workstation = self.database, self.hashing, self.workstation
        run_db_write(
            lambda: authenticate(database, username, password, workstation, hashing=hashing),
            self._signed_in,
            self._refused,
        )

    def _signed_in(self, actor: Actor) -> None:
        self._set_busy(False)
        self._actor = actor
        self.message.setVisible(False)
        self.accept()

    def _refused(self, exc: Exception) -> None:
        self._set_busy(False)
        self._show_error(_explain(exc))
        self.password_edit.clear()
        self.password_edit.setFocus()

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        for widget in (self.username_edit, self.password_edit, self.sign_in_button):
            widget.setEnabled(not busy)

    def _show_error(self, text: str) -> None:
        self._show_message(text, _status_colour(self, "error"))

    def _show_message(self, text: str, colour: QColor | None) -> None:
        self.message.setStyleSheet("" if colour is None else f"color: {colour.name()};")
        self.message.setText(text)
        self.message.setVisible(True)


class FirstRunDialog(QDialog):
    """Creates the first administrator, then signs them in (``actor``); offers demo cases.

    Shown while the database has no account at all. The password policy is checked as the
    password is typed, and again by the service."""

    def __init__(
        self,
        database: Database,
        parent: QWidget | None = None,
        *,
        hashing: PasswordHashing = DEFAULT_HASHING,
        workstation: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("firstRunDialog")
        self.setWindowTitle(f"First start \u2014 {PRODUCT_NAME}")
        self.setMinimumWidth(520)
        self.database = database
        self.hashing = hashing
        self.workstation = workstation
        self._actor: Actor | None = None
        self._busy = False
        #: True when another workstation created an account meanwhile: sign in instead.
        self.accounts_exist = False

        explanation = QLabel(
            "This database has no user accounts yet. Create the <b>administrator</b> account "
            "now: the administrator signs in, creates accounts for clinicians and reviewers, "
            "and can read the audit trail. Choose a password of at least 12 characters "
            "\u2014 a few unrelated words are easy to remember and hard to guess."
        )
        explanation.setObjectName("firstRunExplanation")
        explanation.setWordWrap(True)
        self.username_edit = QLineEdit("admin")
        self.username_edit.setObjectName("adminUsername")
        self.username_edit.setAccessibleName("Administrator user name")
        self.username_edit.setToolTip(
            "Letters, digits, '.', '_' or '-'; used to sign in (not case-sensitive)"
        )
        self.username_edit.setMaxLength(64)
        self.display_name_edit = QLineEdit()
        self.display_name_edit.setObjectName("adminDisplayName")
        self.display_name_edit.setPlaceholderText("e.g. Dr Ada Lovelace")
        self.display_name_edit.setAccessibleName("Display name")
        self.display_name_edit.setToolTip("How the name appears in the audit trail and reports")
        self.display_name_edit.setMaxLength(200)
        self.password_edit = _password_edit(
            "adminPassword", "Password", "At least 12 characters, not the user name"
        )
        self.confirm_edit = _password_edit(
            "adminPasswordConfirm", "Confirm password", "Type the same password again"
        )
        self.policy_label = QLabel()
        self.policy_label.setObjectName("passwordPolicy")
        self.policy_label.setWordWrap(True)
        self.seed_demo_check = QCheckBox(SEED_DEMO_TEXT)
        self.seed_demo_check.setObjectName("seedDemoCheck")
        self.seed_demo_check.setChecked(True)
        self.seed_demo_check.setAccessibleName("Add composite demo cases")
        self.seed_demo_check.setToolTip(
            "A few composite demo cases, each marked \u201cComposite demo case\u201d, to try "
            "the viewers and the analysis; they can be left out"
        )
        self.message = _message_label("firstRunError")
        self.create_button = QPushButton("Create administrator and sign in")
        self.create_button.setObjectName("createAdminButton")
        self.create_button.setDefault(True)
        self.create_button.setAccessibleName("Create administrator and sign in")
        self.create_button.setToolTip("Create the account and sign in with it (Enter)")
        self.create_button.clicked.connect(self.create_admin)
        buttons = QDialogButtonBox()
        buttons.addButton(self.create_button, QDialogButtonBox.ButtonRole.AcceptRole)
        cancel = buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setToolTip("Close; nothing is created")
        cancel.setAccessibleName("Cancel")
        buttons.rejected.connect(self.reject)
        for edit in (self.username_edit, self.password_edit, self.confirm_edit):
            edit.textChanged.connect(self._update_policy)

        form = QFormLayout()
        form.addRow("&User name:", self.username_edit)
        form.addRow("&Display name:", self.display_name_edit)
        form.addRow("&Password:", self.password_edit)
        form.addRow("&Confirm password:", self.confirm_edit)
        form.addRow("", self.policy_label)
        layout = QVBoxLayout(self)
        layout.addWidget(_header("First start: set up the administrator account."))
        layout.addSpacing(8)
        layout.addWidget(explanation)
        layout.addLayout(form)
        layout.addWidget(self.seed_demo_check)
        layout.addWidget(self.message)
        layout.addStretch(1)
        layout.addWidget(buttons)
        self._update_policy()
        margins = layout.contentsMargins()
        checkbox_width = self.seed_demo_check.sizeHint().width() + margins.left() + margins.right()
        self.setMinimumWidth(max(520, checkbox_width))
        self.password_edit.setFocus()

    @property
    def actor(self) -> Actor | None:
        """The new administrator, signed in, once set-up succeeded."""
        return self._actor

    @property
    def seed_demo_requested(self) -> bool:
        """Whether the composite demo cases should be added after set-up."""
        return self.seed_demo_check.isChecked()

    @property
    def busy(self) -> bool:
        return self._busy

    def problem(self) -> str | None:
        """Why the form cannot be submitted yet (user name, password policy, confirmation)."""
        try:
            name = validate_username(self.username_edit.text())
            check_password_policy(self.password_edit.text(), name)
        except ClinicError as exc:
            return str(exc)
        if self.password_edit.text() != self.confirm_edit.text():
            return PASSWORDS_DIFFER
        return None

    def _update_policy(self) -> None:
        """Say as the user types whether the password meets the policy (and matches)."""
        password = self.password_edit.text()
        if not password:
            self.policy_label.setStyleSheet("")
            self.policy_label.setText("At least 12 characters, and not the user name.")
            return
        problem = self.problem()
        if problem == PASSWORDS_DIFFER and not self.confirm_edit.text():
            problem = None
            text = "\u2713 The password meets the policy; now type it again below."
        else:
            text = problem or "\u2713 The password meets the policy and both entries match."
        colour = _status_colour(self, "error" if problem else "ok")
        self.policy_label.setStyleSheet(f"color: {colour.name()};")
        self.policy_label.setText(text)

    def create_admin(self) -> None:
        """Create the administrator and sign in, in the background; refusals shown inline."""
        if self._busy:
            return
        problem = self.problem()
        if problem is not None:
            self._show(problem, error=True)
            if problem == PASSWORDS_DIFFER:
                self.confirm_edit.setFocus()
            return
        username = self.username_edit.text()
        display_name = self.display_name_edit.text().strip() or None
        password = self.password_edit.text()
        database, hashing, workstation = self.database, self.hashing, self.workstation

        def create_and_sign_in() -> Actor:
            info = create_first_admin(
                database, username, password, display_name=display_name, hashing=hashing
            )
            return authenticate(database, info.username, password, workstation, hashing=hashing)

        self._set_busy(True)
        self._show("Creating the administrator account\u2026", error=False)
        run_db_write(create_and_sign_in, self._created, self._refused)

    def _created(self, actor: Actor) -> None:
        self._set_busy(False)
        self._actor = actor
        self.accept()

    def _refused(self, exc: Exception) -> None:
        self._set_busy(False)
        self._show(_explain(exc), error=True)
        self.accounts_exist = has_users(self.database)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        for widget in (
            self.username_edit,
            self.display_name_edit,
            self.password_edit,
            self.confirm_edit,
            self.create_button,
        ):
            widget.setEnabled(not busy)

    def _show(self, text: str, *, error: bool) -> None:
        colour = _status_colour(self, "error")
        self.message.setStyleSheet(f"color: {colour.name()};" if error else "")
        self.message.setText(text)
        self.message.setVisible(True)


def sign_in(
    database: Database,
    parent: QWidget | None = None,
    *,
    hashing: PasswordHashing = DEFAULT_HASHING,
    on_first_run: Callable[[Actor, bool], None] | None = None,
) -> Actor | None:
    """Show the first-run dialog (no account yet) or the login dialog; the signed-in Actor, or
    None when the user cancelled.

    After a first run, ``on_first_run(actor, seed_demo_requested)`` lets the caller add the
    composite demo cases. If another workstation created an account while the first-run
    dialog was open, the login dialog follows."""
    while True:
        if not has_users(database):
            first_run = FirstRunDialog(database, parent, hashing=hashing)
            accepted = first_run.exec() == QDialog.DialogCode.Accepted
            actor = first_run.actor
            if accepted and actor is not None:
                if on_first_run is not None:
                    on_first_run(actor, first_run.seed_demo_requested)
                return actor
            if first_run.accounts_exist:
                continue
            return None
        login = LoginDialog(database, parent, hashing=hashing)
        accepted = login.exec() == QDialog.DialogCode.Accepted
        return login.actor if accepted else None
