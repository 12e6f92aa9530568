"""The clinician's decisions on a case: accept, override or reject each suggestion (a reason
required for override and reject), the final impression, signing with password re-entry, and
amending a signed case.

The panel only asks; the lead's wiring calls the services (``CaseService.decide``, ``sign``
after ``services.users.authenticate``, ``amend``), which audit every step and refuse what is
not allowed, then hands the refreshed ``CaseDetail`` back through ``set_case``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.cases import CaseDetail, DecisionInfo, SuggestionInfo
from clinic_app.domain.records import CaseStatus, DecisionAction

SNOMED_SYSTEM = "http://snomed.info/sct"
_D = TypeVar("_D", bound=QDialog)
SNOMED_CODE = re.compile(r"^\d{6,18}$")
_PAST = {
    DecisionAction.ACCEPT: "Accepted",
    DecisionAction.OVERRIDE: "Overridden",
    DecisionAction.REJECT: "Rejected",
}


_MARK = {
    DecisionAction.ACCEPT: "\u2714",
    DecisionAction.OVERRIDE: "\u270e",
    DecisionAction.REJECT: "\u2716",
}


def _format_when(moment: datetime) -> str:
    local = moment.astimezone() if moment.tzinfo else moment
    return local.strftime("%d %b %Y %H:%M").lstrip("0")


def _code(system: str | None, code: str | None) -> str:
    name = "SNOMED CT" if system == SNOMED_SYSTEM else (system or "")
    return f"{name} {code or ''}".strip()


def snomed_code_problem(code: str) -> str | None:
    """Why a typed SNOMED CT concept id is not acceptable (None when it is)."""
    code = code.strip()
    if not code:
        return "Enter the SNOMED CT code of the diagnosis you chose."
    if not SNOMED_CODE.match(code):
        return "A SNOMED CT code is 6 to 18 digits (e.g. 164889003)."
    return None


def describe_decision(decision: DecisionInfo, suggestion: SuggestionInfo | None) -> str:
    """One line: what was decided on which suggestion, by whom and when, and why."""
    what = suggestion.display if suggestion else f"suggestion {decision.suggestion_id}"
    text = f"{_PAST[decision.action]}: {what}"
    if decision.action is DecisionAction.OVERRIDE:
        text += (
            f" \u2192 {decision.override_display or ''} "
            f"({_code(decision.override_code_system, decision.override_code)})"
        )
    text += f" \u00b7 {decision.user} \u00b7 {_format_when(decision.decided_at)}"
    if decision.reason:
        text += f" \u2014 reason: {decision.reason}"
    return text


class ReasonDialog(QDialog):
    """Asks for a reason; OK stays disabled while it is empty (reject, amend)."""

    def __init__(self, title: str, prompt: str, ok_text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName("reasonDialog")
        self.prompt = QLabel(prompt)
        self.prompt.setWordWrap(True)
        self.reason = QPlainTextEdit()
        self.reason.setObjectName("reasonText")
        self.reason.setAccessibleName("Reason")
        self.reason.setToolTip("Required; it is kept with the case and in the audit trail")
        self.reason.setTabChangesFocus(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(ok_text)
        self.ok_button.setObjectName("reasonOk")
        self.ok_button.setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.reason.textChanged.connect(self._update)
        layout = QVBoxLayout(self)
        layout.addWidget(self.prompt)
        layout.addWidget(self.reason)
        layout.addWidget(self.buttons)
        self.resize(440, 220)

    def text(self) -> str:
        return self.reason.toPlainText().strip()

    def _update(self) -> None:
        self.ok_button.setEnabled(bool(self.text()))

    def accept(self) -> None:
        if self.text():  # Enter in a field must not get past an empty reason either
            super().accept()


class OverrideDialog(QDialog):
    """The diagnosis chosen instead of a suggestion (SNOMED CT code and name) and why."""

    def __init__(self, suggestion: SuggestionInfo, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Override suggestion")
        self.setObjectName("overrideDialog")
        intro = QLabel(
            f"Replace <b>{html.escape(suggestion.display)}</b> "
            f"({html.escape(_code(suggestion.code_system, suggestion.code))}) with the "
            "diagnosis you chose:"
        )
        intro.setWordWrap(True)
        self.code = QLineEdit()
        self.code.setObjectName("overrideCode")
        self.code.setAccessibleName("SNOMED CT code")
        self.code.setToolTip("The SNOMED CT concept id: 6 to 18 digits")
        self.code.setPlaceholderText("e.g. 164889003")
        self.display = QLineEdit()
        self.display.setObjectName("overrideDisplay")
        self.display.setAccessibleName("Diagnosis name")
        self.display.setToolTip("The diagnosis as it should appear in the report")
        self.display.setPlaceholderText("e.g. Atrial fibrillation")
        self.reason = QPlainTextEdit()
        self.reason.setObjectName("overrideReason")
        self.reason.setAccessibleName("Reason for the override")
        self.reason.setToolTip("Required; it is kept with the case and in the audit trail")
        self.reason.setTabChangesFocus(True)
        self.problem = QLabel()
        self.problem.setObjectName("overrideProblem")
        self.problem.setWordWrap(True)
        self.problem.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        form = QFormLayout()
        form.addRow("SNOMED CT code:", self.code)
        form.addRow("Diagnosis:", self.display)
        form.addRow("Reason:", self.reason)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Override")
        self.ok_button.setObjectName("overrideOk")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        for edit in (self.code, self.display):
            edit.textChanged.connect(self._update)
        self.reason.textChanged.connect(self._update)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.resize(480, 300)
        self._update()

    def problems(self) -> list[str]:
        found = []
        code_problem = snomed_code_problem(self.code.text())
        if code_problem:
            found.append(code_problem)
        if not self.display.text().strip():
            found.append("Enter the name of the diagnosis.")
        if not self.reason.toPlainText().strip():
            found.append("Give a reason for the override.")
        return found

    def override(self) -> tuple[str, str, str]:
        return SNOMED_SYSTEM, self.code.text().strip(), self.display.text().strip()

    def reason_text(self) -> str:
        return self.reason.toPlainText().strip()

    def _update(self) -> None:
        found = self.problems()
        self.ok_button.setEnabled(not found)
        # Only the code's format is worth shouting about while typing; the rest is a to-do.
        typed_code = self.code.text().strip()
        message = snomed_code_problem(typed_code) if typed_code else None
        self.problem.setText(f"\u26a0 {message}" if message else " ".join(found[:1]))

    def accept(self) -> None:
        if not self.problems():
            super().accept()


class SignDialog(QDialog):
    """Confirms the final impression and asks for the signer's password again."""

    def __init__(self, final_impression: str, username: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Sign case")
        self.setObjectName("signDialog")
        who = f" as <b>{html.escape(username)}</b>" if username else ""
        statement = QLabel(
            f"You are signing{who}. By signing you confirm that you reviewed the evidence and "
            "that the final impression below is your own clinical judgement. The signed case "
            "becomes read-only; changes later need an amendment."
        )
        statement.setWordWrap(True)
        impression = QPlainTextEdit(final_impression)
        impression.setReadOnly(True)
        impression.setObjectName("signImpression")
        impression.setAccessibleName("Final impression to be signed")
        impression.setMaximumHeight(90)
        self.password = QLineEdit()
        self.password.setObjectName("signPassword")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setAccessibleName("Your password")
        self.password.setToolTip("Enter your password again to sign")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Sign")
        self.ok_button.setObjectName("signOk")
        self.ok_button.setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.password.textChanged.connect(lambda text: self.ok_button.setEnabled(bool(text)))
        form = QFormLayout()
        form.addRow("Password:", self.password)
        layout = QVBoxLayout(self)
        layout.addWidget(statement)
        layout.addWidget(QLabel("<b>Final impression</b>"))
        layout.addWidget(impression)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.resize(480, 300)

    def accept(self) -> None:
        if self.password.text():
            super().accept()


class SuggestionRow(QFrame):
    """One suggestion with its latest decision and the accept / override / reject buttons."""

    def __init__(
        self, suggestion: SuggestionInfo, decision: DecisionInfo | None, parent: QWidget | None
    ) -> None:
        super().__init__(parent)
        self.suggestion = suggestion
        self.setObjectName(f"decisionRow_{suggestion.id}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        probability = (
            suggestion.calibrated_probability
            if suggestion.calibrated_probability is not None
            else suggestion.probability
        )
        confidence = (
            "insufficient confidence" if suggestion.abstained else f"{probability * 100:.0f} %"
        )
        title = QLabel(
            f"<b>{suggestion.rank}. {html.escape(suggestion.display)}</b> "
            f"<small>{html.escape(_code(suggestion.code_system, suggestion.code))} \u00b7 "
            f"{confidence}</small>"
        )
        title.setWordWrap(True)
        self.decision = decision
        if decision is None:
            status = "No decision yet"
        else:
            status = (
                f"{_MARK[decision.action]} <b>{_PAST[decision.action]}</b>"
                + (
                    f" \u2192 {html.escape(decision.override_display or '')}"
                    if decision.action is DecisionAction.OVERRIDE
                    else ""
                )
                + f" \u00b7 {html.escape(decision.user)}, {_format_when(decision.decided_at)}"
            )
        self.status = QLabel(status)
        self.status.setWordWrap(True)
        self.status.setObjectName("decisionStatus")
        if decision is None:
            self.status.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.accept_button = QPushButton("Accept")
        self.override_button = QPushButton("Override\u2026")
        self.reject_button = QPushButton("Reject\u2026")
        tips = {
            self.accept_button: "Agree with this suggestion",
            self.override_button: "Replace it with the diagnosis you chose (reason required)",
            self.reject_button: "Reject this suggestion (reason required)",
        }
        for button, tip in tips.items():
            button.setToolTip(tip)
            button.setAccessibleName(f"{button.text().rstrip(chr(0x2026))} {suggestion.display}")
        self.accept_button.setObjectName("acceptButton")
        self.override_button.setObjectName("overrideButton")
        self.reject_button.setObjectName("rejectButton")
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.override_button)
        buttons.addWidget(self.reject_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 5, 8, 5)
        layout.setSpacing(2)
        layout.addWidget(title)
        layout.addLayout(buttons)
        self.set_selected(False)

    def set_buttons_enabled(self, enabled: bool) -> None:
        for button in (self.accept_button, self.override_button, self.reject_button):
            button.setVisible(enabled)

    def set_selected(self, selected: bool) -> None:
        colour = self.palette().color(
            QPalette.ColorRole.Highlight if selected else QPalette.ColorRole.Mid
        )
        width = 2 if selected else 1
        self.setStyleSheet(
            f"SuggestionRow {{ border: {width}px solid {colour.name()}; border-radius: 4px; }}"
        )


class DecisionPanel(QWidget):
    """Accept / override / reject each suggestion, write the final impression, sign, amend.

    Signals: ``decisionRequested(suggestion_id, action, reason, override)``,
    ``signRequested(final_impression, password)``, ``amendRequested(reason)``."""

    decisionRequested = Signal(int, object, object, object)
    signRequested = Signal(str, str)
    amendRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None, username: str = "") -> None:
        super().__init__(parent)
        self.setObjectName("decisionPanel")
        self.username = username
        self.detail: CaseDetail | None = None
        self.rows: list[SuggestionRow] = []
        self.selected_id: int | None = None
        self.dialog: QDialog | None = None  # the dialog open now (tests drive it)

        self.empty_label = QLabel("Nothing to decide yet: analyse the case first.")
        self.empty_label.setObjectName("decisionEmpty")
        self.empty_label.setWordWrap(True)
        self.empty_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.rows_box = QVBoxLayout()
        self.rows_box.setSpacing(5)
        rows_widget = QWidget()
        rows_layout = QVBoxLayout(rows_widget)
        rows_layout.setContentsMargins(0, 0, 0, 0)
        rows_layout.addWidget(self.empty_label)
        rows_layout.addLayout(self.rows_box)
        rows_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(rows_widget)
        suggestions_box = QGroupBox("Suggestions")
        QVBoxLayout(suggestions_box).addWidget(scroll)

        self.decisions_list = QListWidget()
        self.decisions_list.setObjectName("decisionsList")
        self.decisions_list.setAccessibleName("Decisions made")
        self.decisions_list.setToolTip("Every decision on this case, oldest first")
        self.decisions_list.setWordWrap(True)
        decisions_box = QGroupBox("Decisions made")
        QVBoxLayout(decisions_box).addWidget(self.decisions_list)

        self.impression = QPlainTextEdit()
        self.impression.setObjectName("finalImpression")
        self.impression.setAccessibleName("Final impression")
        self.impression.setToolTip("Your final impression; it is what you sign")
        self.impression.setPlaceholderText("Final impression in your own words\u2026")
        self.impression.setTabChangesFocus(True)
        self.impression.setMaximumHeight(110)
        self.impression.textChanged.connect(self._update_sign_button)
        self.sign_button = QPushButton("Sign case\u2026")
        self.sign_button.setObjectName("signButton")
        self.sign_button.setAccessibleName("Sign case")
        self.sign_button.setToolTip("Sign with your password; the case becomes read-only")
        self.sign_button.clicked.connect(self.request_sign)
        self.sign_hint = QLabel()
        self.sign_hint.setObjectName("signHint")
        self.sign_hint.setWordWrap(True)
        self.sign_hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        sign_row = QHBoxLayout()
        sign_row.addWidget(self.sign_hint, 1)
        sign_row.addWidget(self.sign_button)
        self.impression_box = QGroupBox("Final impression")
        impression_layout = QVBoxLayout(self.impression_box)
        impression_layout.addWidget(self.impression)
        impression_layout.addLayout(sign_row)

        self.signed_label = QLabel()
        self.signed_label.setObjectName("signedLabel")
        self.signed_label.setAccessibleName("Sign-off")
        self.signed_label.setWordWrap(True)
        self.signed_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.signed_label.setStyleSheet(
            "QLabel#signedLabel { background: rgba(25, 135, 84, 45); "
            "border: 1px solid rgba(25, 135, 84, 150); border-radius: 3px; padding: 6px; }"
        )
        self.amend_button = QPushButton("Amend\u2026")
        self.amend_button.setObjectName("amendButton")
        self.amend_button.setAccessibleName("Amend signed case")
        self.amend_button.setToolTip(
            "Open a new version of the case for changes; the signed version is kept"
        )
        self.amend_button.clicked.connect(self.request_amend)
        amend_row = QHBoxLayout()
        amend_row.addStretch(1)
        amend_row.addWidget(self.amend_button)
        self.signed_box = QGroupBox("Signed")
        signed_layout = QVBoxLayout(self.signed_box)
        signed_layout.addWidget(self.signed_label)
        signed_layout.addLayout(amend_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(suggestions_box, 3)
        layout.addWidget(decisions_box, 2)
        layout.addWidget(self.impression_box)
        layout.addWidget(self.signed_box)

        self._actions: list[tuple[QAction, str]] = []
        self._shortcut("Ctrl+Alt+A", "Accept the selected suggestion", self._accept_selected)
        self._shortcut("Ctrl+Alt+O", "Override the selected suggestion", self._override_selected)
        self._shortcut("Ctrl+Alt+J", "Reject the selected suggestion", self._reject_selected)
        self._shortcut("Ctrl+Alt+S", "Sign the case", self.request_sign)
        self.set_case(None)

    # -- public API -----------------------------------------------------------------------------
    def set_case(self, detail: CaseDetail | None) -> None:
        """Show the case's suggestions, decisions and sign-off (read-only once signed)."""
        previous_uid = self.detail.summary.case_uid if self.detail else None
        self.detail = detail
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows = []
        self.decisions_list.clear()
        analysis = detail.latest_analysis if detail else None
        suggestions = (
            sorted(analysis.suggestions, key=lambda s: (s.abstained, s.rank)) if analysis else []
        )
        latest: dict[int | None, DecisionInfo] = {}
        every: dict[int | None, SuggestionInfo] = {
            s.id: s for a in (detail.analyses if detail else []) for s in a.suggestions
        }
        for decision in detail.decisions if detail else []:
            latest[decision.suggestion_id] = decision
            item = QListWidgetItem(describe_decision(decision, every.get(decision.suggestion_id)))
            item.setData(Qt.ItemDataRole.UserRole, decision.id)
            self.decisions_list.addItem(item)
        if detail is not None and not detail.decisions:
            self.decisions_list.addItem("No decisions yet.")
        read_only = self.is_read_only()
        for suggestion in suggestions:
            row = SuggestionRow(suggestion, latest.get(suggestion.id), self)
            row.accept_button.clicked.connect(
                lambda _c=False, sid=suggestion.id: self.accept_suggestion(sid)
            )
            row.override_button.clicked.connect(
                lambda _c=False, sid=suggestion.id: self.request_override(sid)
            )
            row.reject_button.clicked.connect(
                lambda _c=False, sid=suggestion.id: self.request_reject(sid)
            )
            row.set_buttons_enabled(not read_only)
            self.rows_box.addWidget(row)
            self.rows.append(row)
        if detail is None:
            self.empty_label.setText("No case open.")
        elif analysis is None:
            self.empty_label.setText("Nothing to decide yet: analyse the case first.")
        self.empty_label.setVisible(not self.rows)
        if detail is None or detail.summary.case_uid != previous_uid:
            self.impression.setPlainText("")
            self.selected_id = None
        if self.selected_id is not None:
            self.select_suggestion(self.selected_id)
        sign_off = detail.sign_off if detail else None
        self.impression_box.setVisible(detail is not None and not read_only)
        self.signed_box.setVisible(sign_off is not None or read_only)
        if detail is not None and read_only:
            if sign_off is not None:
                self.signed_label.setText(
                    f"<b>Signed by {html.escape(sign_off.user)}</b> on "
                    f"{html.escape(_format_when(sign_off.signed_at))} "
                    f"({html.escape(sign_off.meaning)})<br><b>Final impression:</b> "
                    f"{html.escape(sign_off.final_impression)}<br><small>Signed content sha256 "
                    f"{html.escape(sign_off.content_sha256[:16])}\u2026</small>"
                )
                self.signed_label.setToolTip(f"Signed content sha256 {sign_off.content_sha256}")
            else:
                self.signed_label.setText("This version is read-only.")
            if detail.summary.status is CaseStatus.AMENDED:
                self.signed_label.setText(
                    self.signed_label.text()
                    + "<br><i>Superseded: a newer version of this case was opened.</i>"
                )
        self.amend_button.setVisible(
            detail is not None and detail.summary.status is CaseStatus.SIGNED
        )
        for action, _ in self._actions:
            action.setEnabled(not read_only and detail is not None)
        self._update_sign_button()

    def is_read_only(self) -> bool:
        return self.detail is None or self.detail.summary.status.read_only

    def select_suggestion(self, suggestion_id: int) -> None:
        """Mark the suggestion under review (from the results panel)."""
        self.selected_id = suggestion_id
        for row in self.rows:
            row.set_selected(row.suggestion.id == suggestion_id)
            if row.suggestion.id == suggestion_id:
                row.accept_button.setFocus()

    def row(self, suggestion_id: int) -> SuggestionRow:
        return next(r for r in self.rows if r.suggestion.id == suggestion_id)

    def accept_suggestion(self, suggestion_id: int) -> None:
        if not self.is_read_only():
            self.decisionRequested.emit(suggestion_id, DecisionAction.ACCEPT, None, None)

    def request_override(self, suggestion_id: int) -> OverrideDialog | None:
        """Ask for the diagnosis chosen instead and the reason; emits on OK."""
        suggestion = self._suggestion(suggestion_id)
        if suggestion is None or self.is_read_only():
            return None
        dialog = OverrideDialog(suggestion, self)

        def done() -> None:
            self.decisionRequested.emit(
                suggestion_id, DecisionAction.OVERRIDE, dialog.reason_text(), dialog.override()
            )

        return self._open(dialog, done)

    def request_reject(self, suggestion_id: int) -> ReasonDialog | None:
        """Ask why the suggestion is rejected (required); emits on OK."""
        suggestion = self._suggestion(suggestion_id)
        if suggestion is None or self.is_read_only():
            return None
        dialog = ReasonDialog(
            "Reject suggestion",
            f"Why do you reject <b>{html.escape(suggestion.display)}</b>?",
            "Reject",
            self,
        )

        def done() -> None:
            self.decisionRequested.emit(suggestion_id, DecisionAction.REJECT, dialog.text(), None)

        return self._open(dialog, done)

    def request_sign(self) -> SignDialog | None:
        """Confirm and re-enter the password; emits signRequested on OK."""
        impression = self.impression.toPlainText().strip()
        if self.is_read_only() or not impression:
            return None
        dialog = SignDialog(impression, self.username, self)
        return self._open(
            dialog, lambda: self.signRequested.emit(impression, dialog.password.text())
        )

    def request_amend(self) -> ReasonDialog | None:
        """Ask why the signed case is amended; emits amendRequested on OK."""
        if self.detail is None or self.detail.summary.status is not CaseStatus.SIGNED:
            return None
        dialog = ReasonDialog(
            "Amend signed case",
            "Why does this signed case need an amendment? A new version is opened; the signed "
            "version stays as it was.",
            "Amend",
            self,
        )
        return self._open(dialog, lambda: self.amendRequested.emit(dialog.text()))

    def shortcuts(self) -> list[tuple[str, str]]:
        return [(action.shortcut().toString(), text) for action, text in self._actions]

    # -- internals ------------------------------------------------------------------------------
    def _open(self, dialog: _D, on_accept: Callable[[], None]) -> _D:
        self.dialog = dialog
        dialog.accepted.connect(on_accept)
        dialog.finished.connect(lambda _result: self._closed(dialog))
        dialog.open()
        return dialog

    def _closed(self, dialog: QDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()

    def _suggestion(self, suggestion_id: int) -> SuggestionInfo | None:
        return next((r.suggestion for r in self.rows if r.suggestion.id == suggestion_id), None)

    def _shortcut(self, keys: str, text: str, slot: Callable[[], object]) -> None:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(keys))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        self._actions.append((action, text))

    def _accept_selected(self) -> None:
        if self.selected_id is not None:
            self.accept_suggestion(self.selected_id)

    def _override_selected(self) -> None:
        if self.selected_id is not None:
            self.request_override(self.selected_id)

    def _reject_selected(self) -> None:
        if self.selected_id is not None:
            self.request_reject(self.selected_id)

    def _update_sign_button(self) -> None:
        has_text = bool(self.impression.toPlainText().strip())
        undecided = sum(
            1 for row in self.rows if not row.suggestion.abstained and row.decision is None
        )
        self.sign_button.setEnabled(has_text and not self.is_read_only())
        if not has_text:
            self.sign_hint.setText("Write the final impression to sign.")
        elif undecided:
            self.sign_hint.setText(f"{undecided} suggestion(s) without a decision.")
        else:
            self.sign_hint.setText("")
