"""The case's clinical note: rich-text editing stored as Markdown, PHI changes shown after save,
version history, and a read-only "Model view" with the words the model found relevant.

The note is kept as Markdown text (``QTextDocument.toMarkdown``) because the PHI scrubber and the
model read text, not HTML. Saving goes through the lead's wiring: ``saveRequested(markdown)`` ->
``IngestService.save_typed_note`` (scrubs PHI, stores a new version) -> ``show_saved(note)``.
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QBrush,
    QColor,
    QFont,
    QHelpEvent,
    QKeyEvent,
    QKeySequence,
    QLinearGradient,
    QPainter,
    QPaintEvent,
    QPalette,
    QTextCharFormat,
    QTextCursor,
    QTextFormat,
    QTextListFormat,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QTextEdit,
    QToolBar,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.cases import NoteInfo
from clinic_app.domain.explanations import NoteHighlights, WordRelevance
from clinic_app.domain.notes import plain_text_from_markdown

#: Background colours of relevance: warm supports the suggestion, cool argues against it.
SUPPORT_COLOUR = QColor(230, 97, 1)
OPPOSE_COLOUR = QColor(33, 102, 172)
#: Phi replacements are marked with this (semi-transparent, so it works on dark palettes).
PHI_MARK_COLOUR = QColor(255, 193, 7, 110)
#: Words whose |score| is below this share of the strongest word are not shaded (noise).
MIN_SHADED_SHARE = 0.05

_BLOCK_MARKER = re.compile(r"^\s*(?:[-*+]\s|\d+[.)]\s|#{1,6}\s|>|```|~~~|\|)")
_ESCAPED_TAG = re.compile(r"\\\[([A-Z][A-Z0-9>+ _-]*)\](?![(\[:])")


def format_when(moment: datetime) -> str:
    """'12 Nov 2026 14:02' in local time (stored times are aware UTC)."""
    local = moment.astimezone() if moment.tzinfo else moment
    return local.strftime("%d %b %Y %H:%M").lstrip("0")


def utf16_offsets(text: str) -> list[int]:
    """``offsets[i]`` is the UTF-16 position (what QTextCursor counts) of Python index ``i``."""
    offsets = [0] * (len(text) + 1)
    position = 0
    for index, char in enumerate(text):
        offsets[index] = position
        position += 2 if ord(char) > 0xFFFF else 1
    offsets[len(text)] = position
    return offsets


def markdown_for_editor(text: str) -> str:
    """Stored note text -> Markdown the editor loads without joining lines: a line break
    between two text lines (typical of plain-text note files) becomes a paragraph break."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    in_fence = False
    for index, line in enumerate(lines):
        out.append(line)
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if (
            not in_fence
            and line.strip()
            and following.strip()
            and not _BLOCK_MARKER.match(following)
            and not following.startswith(("  ", "\t"))
        ):
            out.append("")
    return "\n".join(out)


def tidy_markdown(markdown: str) -> str:
    """Qt's Markdown writer wraps at 80 columns and escapes '[': join the soft-wrapped lines of
    each paragraph and unescape the scrubber's tags ('[NAME]'), so the text the scrubber and the
    model read is the note as written and stays the same across load/save round trips."""
    lines = markdown.split("\n")
    out: list[str] = []
    in_fence = False
    for line in lines:
        fence = line.lstrip().startswith(("```", "~~~"))
        if (
            out
            and not in_fence
            and not fence
            and line.strip()
            and out[-1].strip()
            and not _BLOCK_MARKER.match(line)
            and not out[-1].lstrip().startswith("#")
            and not out[-1].endswith(("\\", "  "))
            and not out[-1].lstrip().startswith(("```", "~~~", "|"))
        ):
            out[-1] = out[-1].rstrip() + " " + line.strip()
        else:
            out.append(line.rstrip() if not in_fence else line)
        if fence:
            in_fence = not in_fence
    text = "\n".join(out).strip("\n")
    return _ESCAPED_TAG.sub(r"[\1]", text) + ("\n" if text else "")


def _plain(markdown: str) -> str:
    """A Markdown fragment without emphasis and heading marks (for short previews)."""
    return re.sub(r"[*_`]+|^#+\s*", "", markdown)


def scrubbed_spans_in_saved_text(scrubbed: Sequence[Any]) -> list[tuple[int, int, str, str]]:
    """(start, end, category, replacement) of each replacement in the SAVED text: the scrubber
    reports offsets into the original text, so each span moves by the length changes before it."""
    entries = sorted(
        (
            (int(e["start"]), int(e["end"]), str(e["category"]), str(e["replacement"]))
            for e in scrubbed
            if isinstance(e, dict) and {"start", "end", "category", "replacement"} <= set(e)
        ),
        key=lambda e: e[0],
    )
    shift = 0
    spans: list[tuple[int, int, str, str]] = []
    for start, end, category, replacement in entries:
        new_start = start + shift
        spans.append((new_start, new_start + len(replacement), category, replacement))
        shift += len(replacement) - (end - start)
    return spans


class RelevanceLegend(QWidget):
    """Two colour ramps: what the shading of the model view means."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noteRelevanceLegend")
        self.setAccessibleName("Relevance colour legend")
        self.setToolTip(
            "Warm shading: the word made the model more confident in the suggestion. "
            "Blue shading: it made the model less confident. Stronger colour, larger effect."
        )
        self.setMinimumHeight(self.fontMetrics().height() + 8)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = self.fontMetrics()
        height = metrics.height()
        y = (self.height() - height) // 2
        x = 0
        text_colour = self.palette().color(QPalette.ColorRole.WindowText)
        for caption, colour in (("supports", SUPPORT_COLOUR), ("argues against", OPPOSE_COLOUR)):
            painter.setPen(text_colour)
            painter.drawText(x, y + metrics.ascent(), caption)
            x += metrics.horizontalAdvance(caption) + 6
            ramp = QLinearGradient(x, 0, x + 90, 0)
            ramp.setColorAt(0.0, _shade(colour, 0.08))
            ramp.setColorAt(1.0, _shade(colour, 1.0))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QBrush(ramp))
            painter.drawRoundedRect(x, y + 2, 90, height - 4, 3, 3)
            x += 90 + 18
        painter.setPen(text_colour)
        painter.drawText(x, y + metrics.ascent(), "weak \u2192 strong")
        painter.end()


def _shade(colour: QColor, strength: float) -> QColor:
    """The highlight colour for a word of relative strength 0..1 (alpha carries the strength,
    so the text keeps the palette's colour and stays readable in light and dark themes)."""
    shaded = QColor(colour)
    shaded.setAlpha(int(35 + 170 * max(0.0, min(1.0, strength))))
    return shaded


class ModelTextView(QTextEdit):
    """Read-only view of the exact text the model read, with relevance shading and hover scores."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setObjectName("noteModelView")
        self.setAccessibleName("Note as read by the model")
        self.setToolTip("")
        self._starts: list[int] = []  # UTF-16 start of each shaded word, sorted
        self._words: list[tuple[int, int, float]] = []  # UTF-16 (start, end, score)
        self.label = "the suggestion"

    def show_highlights(self, highlights: NoteHighlights, label: str) -> None:
        self.label = label
        text = highlights.text.replace("\r", " ")  # same length: offsets stay valid
        self.setPlainText(text)
        offsets = utf16_offsets(text)
        strongest = max((abs(w.score) for w in highlights.words), default=0.0) or 1.0
        words: list[tuple[int, int, float]] = []
        cursor = QTextCursor(self.document())
        for word in sorted(highlights.words, key=lambda w: w.start):
            if not 0 <= word.start < word.end <= len(text):
                continue
            share = abs(word.score) / strongest
            start, end = offsets[word.start], offsets[word.end]
            words.append((start, end, word.score))
            if share < MIN_SHADED_SHARE:
                continue
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            fmt = QTextCharFormat()
            fmt.setBackground(_shade(SUPPORT_COLOUR if word.score > 0 else OPPOSE_COLOUR, share))
            fmt.setToolTip(self.describe(word.score))
            cursor.mergeCharFormat(fmt)
        self._words = words
        self._starts = [w[0] for w in words]

    def clear_highlights(self) -> None:
        self.clear()
        self._words, self._starts = [], []

    def describe(self, score: float) -> str:
        """The hover text of a word: its signed relevance and which way it points."""
        direction = "supports" if score > 0 else "argues against"
        return f"relevance {score:+.3f} ({direction} {self.label})"

    def tooltip_at_position(self, position: int) -> str | None:
        """Hover text for the word at a document position (UTF-16), or None between words."""
        index = bisect.bisect_right(self._starts, position) - 1
        if index >= 0:
            start, end, score = self._words[index]
            if start <= position < end:
                return self.describe(score)
        return None

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            position = self.cursorForPosition(event.pos()).position()
            # cursorForPosition snaps to the nearest gap: look at the character either side.
            tip = self.tooltip_at_position(position) or self.tooltip_at_position(position - 1)
            if tip:
                QToolTip.showText(event.globalPos(), tip, self.viewport())
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().viewportEvent(event)


class NoteEditor(QWidget):
    """Edit, save and review the case note; see what PHI scrubbing changed and what the model
    read.

    Signals: ``saveRequested(markdown)`` when the user saves (Ctrl+S or the Save button)."""

    saveRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noteEditor")
        self._note: NoteInfo | None = None
        self._loaded_markdown = ""
        self._read_only = False
        self._highlights: NoteHighlights | None = None
        self._versions: list[NoteInfo] = []
        self._phi_spans: list[tuple[int, int]] = []  # UTF-16 spans in the editor document

        self.version_label = QLabel("No note yet")
        self.version_label.setObjectName("noteVersionLabel")
        self.version_label.setAccessibleName("Note version")
        self.dirty_label = QLabel("")
        self.dirty_label.setObjectName("noteDirtyLabel")
        self.dirty_label.setAccessibleName("Unsaved changes indicator")
        header = QHBoxLayout()
        header.setContentsMargins(6, 4, 6, 2)
        header.addWidget(self.version_label, 1)
        header.addWidget(self.dirty_label)

        self.editor = QTextEdit()
        self.editor.setObjectName("noteText")
        self.editor.setAccessibleName("Clinical note")
        self.editor.setToolTip(
            "The case's clinical note; names, dates and numbers that "
            "identify the patient are removed when it is saved"
        )
        self.editor.setAcceptRichText(False)  # pasted HTML would not survive Markdown anyway
        self.editor.setTabChangesFocus(True)
        self.editor.document().modificationChanged.connect(self._update_dirty)
        self.editor.setPlaceholderText("Type the clinical note here\u2026")
        self.editor.installEventFilter(self)

        self.toolbar = QToolBar("Note formatting")
        self.toolbar.setObjectName("noteToolbar")
        self.toolbar.setAccessibleName("Note formatting")
        self._actions: dict[str, QAction] = {}
        self._add_action("bold", "Bold", QKeySequence.StandardKey.Bold, self._toggle_bold, True)
        self._add_action(
            "italic", "Italic", QKeySequence.StandardKey.Italic, self._toggle_italic, True
        )
        self._add_action(
            "bullets", "\u2022 List", QKeySequence("Ctrl+Shift+8"), self._toggle_bullets, True
        )
        self._add_action(
            "heading", "Heading", QKeySequence("Ctrl+Alt+2"), self._toggle_heading, True
        )
        self.toolbar.addSeparator()
        self._add_action("undo", "Undo", QKeySequence("Ctrl+Z"), self.editor.undo)
        self._add_action("redo", "Redo", QKeySequence("Ctrl+Shift+Z"), self.editor.redo)
        self.toolbar.addSeparator()
        self._add_action("save", "Save note", QKeySequence.StandardKey.Save, self.save)
        self._actions["bold"].setToolTip("Bold (Ctrl+B)")
        self._actions["italic"].setToolTip("Italic (Ctrl+I)")
        self._actions["bullets"].setToolTip("Bulleted list on/off (Ctrl+Shift+8)")
        self._actions["heading"].setToolTip("Heading on/off for this paragraph (Ctrl+Alt+2)")
        self._actions["undo"].setToolTip("Undo the last edit (Ctrl+Z)")
        self._actions["redo"].setToolTip("Redo (Ctrl+Shift+Z)")
        self._actions["save"].setToolTip(
            "Save the note as a new version; PHI is removed first (Ctrl+S)"
        )
        self._actions["undo"].setEnabled(False)
        self._actions["redo"].setEnabled(False)
        self.editor.undoAvailable.connect(self._actions["undo"].setEnabled)
        self.editor.redoAvailable.connect(self._actions["redo"].setEnabled)
        self.editor.currentCharFormatChanged.connect(self._sync_format_buttons)
        self.editor.cursorPositionChanged.connect(self._sync_format_buttons)

        self.phi_panel = QFrame()
        self.phi_panel.setObjectName("phiPanel")
        self.phi_panel.setFrameShape(QFrame.Shape.StyledPanel)
        self.phi_title = QLabel("")
        self.phi_title.setObjectName("phiTitle")
        self.phi_title.setWordWrap(True)
        self.phi_list = QListWidget()
        self.phi_list.setObjectName("phiList")
        self.phi_list.setAccessibleName("PHI removed on save")
        self.phi_list.setToolTip("What de-identification replaced; click to find it in the note")
        self.phi_list.setMaximumHeight(110)
        self.phi_list.currentRowChanged.connect(self._select_phi)
        phi_layout = QVBoxLayout(self.phi_panel)
        phi_layout.setContentsMargins(8, 6, 8, 6)
        phi_layout.addWidget(self.phi_title)
        phi_layout.addWidget(self.phi_list)
        self.phi_panel.hide()

        edit_page = QWidget()
        edit_layout = QVBoxLayout(edit_page)
        edit_layout.setContentsMargins(0, 0, 0, 0)
        edit_layout.addWidget(self.toolbar)
        edit_layout.addWidget(self.editor, 1)
        edit_layout.addWidget(self.phi_panel)

        self.model_notice = QLabel("")
        self.model_notice.setObjectName("noteChangedNotice")
        self.model_notice.setWordWrap(True)
        self.model_notice.setAccessibleName("Note changed since analysis")
        # Translucent amber reads as a warning on light and dark palettes; text keeps its colour.
        self.model_notice.setStyleSheet(
            "QLabel#noteChangedNotice { background: rgba(255, 193, 7, 70); "
            "border: 1px solid rgba(255, 160, 0, 160); border-radius: 3px; padding: 4px 6px; }"
        )
        self.model_notice.hide()
        self.model_caption = QLabel("")
        self.model_caption.setObjectName("noteModelCaption")
        self.model_caption.setWordWrap(True)
        self.legend = RelevanceLegend()
        self.model_view = ModelTextView()
        model_page = QWidget()
        model_layout = QVBoxLayout(model_page)
        model_layout.setContentsMargins(0, 4, 0, 0)
        model_layout.addWidget(self.model_caption)
        model_layout.addWidget(self.legend)
        model_layout.addWidget(self.model_notice)
        model_layout.addWidget(self.model_view, 1)

        self.history_list = QListWidget()
        self.history_list.setObjectName("noteHistoryList")
        self.history_list.setAccessibleName("Note versions")
        self.history_list.setToolTip("Earlier versions of the note (read-only)")
        self.history_view = QTextEdit()
        self.history_view.setReadOnly(True)
        self.history_view.setObjectName("noteHistoryView")
        self.history_view.setAccessibleName("Selected note version")
        self.history_list.currentRowChanged.connect(self._show_version)
        history_page = QSplitter(Qt.Orientation.Horizontal)
        history_page.addWidget(self.history_list)
        history_page.addWidget(self.history_view)
        history_page.setStretchFactor(1, 3)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("noteTabs")
        self.tabs.setAccessibleName("Note views")
        self.edit_tab_index = self.tabs.addTab(edit_page, "Note")
        self.model_tab_index = self.tabs.addTab(model_page, "Model view")
        self.history_tab_index = self.tabs.addTab(history_page, "History")
        self.tabs.setTabToolTip(self.edit_tab_index, "Edit the note")
        self.tabs.setTabToolTip(
            self.model_tab_index, "The exact text the model read, shaded by relevance"
        )
        self.tabs.setTabToolTip(self.history_tab_index, "Earlier versions of the note")
        self.tabs.setTabEnabled(self.model_tab_index, False)
        self.tabs.setTabEnabled(self.history_tab_index, False)
        # Comparing texts costs a Markdown export: done when the Model view is shown, not per key.
        self.tabs.currentChanged.connect(lambda _index: self._refresh_model_notice())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.tabs, 1)
        self._update_dirty()

    # -- public API -----------------------------------------------------------------------------
    def set_note(self, note: NoteInfo | None, read_only: bool) -> None:
        """Show a stored note (None: the case has none yet); read-only for signed cases.

        Reloading the version already shown (the case record refreshed after another write)
        keeps the text, any unsaved edits and the undo history."""
        same = (
            note is not None
            and self._note is not None
            and (note.version, note.sha256) == (self._note.version, self._note.sha256)
        )
        self._note = note
        if not same:
            self._load_text(note.text if note else "")
            self._show_phi(note, just_saved=False)
        self.set_read_only(read_only)
        self._show_version_label()
        self._refresh_model_notice()

    def show_saved(self, note: NoteInfo) -> None:
        """After a save: show the stored (scrubbed) text and what scrubbing changed."""
        self._note = note
        self._load_text(note.text)
        if not any(v.version == note.version for v in self._versions):
            self.set_versions([*self._versions, note])
        self._show_version_label()
        self._show_phi(note, just_saved=True)
        self._refresh_model_notice()

    def set_versions(self, versions: list[NoteInfo]) -> None:
        """The note's versions, oldest first, for the History tab."""
        self._versions = sorted(versions, key=lambda v: v.version)
        self.history_list.clear()
        for version in reversed(self._versions):
            item = QListWidgetItem(self._version_text(version))
            item.setData(Qt.ItemDataRole.UserRole, version.version)
            self.history_list.addItem(item)
        self.tabs.setTabEnabled(self.history_tab_index, bool(self._versions))
        if self._versions:
            self.history_list.setCurrentRow(0)
        self._show_version_label()

    @property
    def highlights(self) -> NoteHighlights | None:
        """The word relevance shown in the Model view (None before an analysis)."""
        return self._highlights

    def set_highlights(self, highlights: NoteHighlights | None, label: str | None = None) -> None:
        """Show what the model read, shaded by relevance to ``label`` (None: no analysis)."""
        self._highlights = highlights
        if highlights is None:
            self.model_view.clear_highlights()
            self.model_caption.setText("")
            self.model_notice.hide()
            if self.tabs.currentIndex() == self.model_tab_index:
                self.tabs.setCurrentIndex(self.edit_tab_index)
            self.tabs.setTabEnabled(self.model_tab_index, False)
            return
        shown_label = label or "the top suggestion"
        self.model_view.show_highlights(highlights, shown_label)
        version = (
            f"version {highlights.note_version}"
            if highlights.note_version is not None
            else "the note"
        )
        self.model_caption.setText(
            f"The text of {html.escape(version)} as the model read it (without formatting). "
            "Hover a word to see how "
            f"much it counted for <b>{html.escape(shown_label)}</b>."
        )
        self.tabs.setTabEnabled(self.model_tab_index, True)
        self.tabs.setCurrentIndex(self.model_tab_index)
        self._refresh_model_notice()

    def set_read_only(self, read_only: bool) -> None:
        """Signed cases cannot be edited; the Model view and History stay available."""
        self._read_only = read_only
        self.editor.setReadOnly(read_only)
        for name in ("bold", "italic", "bullets", "heading", "undo", "redo", "save"):
            self._actions[name].setEnabled(not read_only)
        if not read_only:
            self._actions["undo"].setEnabled(self.editor.document().isUndoAvailable())
            self._actions["redo"].setEnabled(self.editor.document().isRedoAvailable())
        self._update_dirty()

    def is_read_only(self) -> bool:
        return self._read_only

    def markdown(self) -> str:
        """The note as Markdown, as it would be saved."""
        return tidy_markdown(self.editor.document().toMarkdown())

    def is_dirty(self) -> bool:
        """True when the note has edits that are not saved."""
        return self.editor.document().isModified()

    def save(self) -> None:
        """Ask for the note to be saved (the lead scrubs and stores it, then calls show_saved)."""
        if self._read_only:
            return
        text = self.markdown()
        if not text.strip():
            self.dirty_label.setText("Nothing to save: the note is empty")
            return
        self.saveRequested.emit(text)

    def shortcuts(self) -> list[tuple[str, str]]:
        """Key sequence and what it does, for the Help list."""
        return [
            ("Ctrl+S", "Save the note (PHI is removed first)"),
            ("Ctrl+B", "Bold"),
            ("Ctrl+I", "Italic"),
            ("Ctrl+Shift+8", "Bulleted list on/off"),
            ("Ctrl+Alt+2", "Heading on/off"),
            ("Ctrl+Z", "Undo the last note edit"),
            ("Ctrl+Shift+Z", "Redo"),
        ]

    def phi_highlight_spans(self) -> list[tuple[int, int]]:
        """Where the saved note's replacements are marked (editor document positions)."""
        return list(self._phi_spans)

    # -- internals ------------------------------------------------------------------------------
    def _add_action(
        self,
        name: str,
        text: str,
        key: QKeySequence | QKeySequence.StandardKey,
        slot: Any,
        checkable: bool = False,
    ) -> None:
        action = QAction(text, self)
        action.setObjectName(f"note_{name}")
        action.setShortcut(key)
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setCheckable(checkable)
        if name == "bold":
            font = QFont(action.font())
            font.setBold(True)
            action.setFont(font)
        elif name == "italic":
            font = QFont(action.font())
            font.setItalic(True)
            action.setFont(font)
        action.triggered.connect(lambda _checked=False: slot())
        self.toolbar.addAction(action)
        button = self.toolbar.widgetForAction(action)
        if button is not None:
            button.setAccessibleName(text)
            button.setObjectName(f"note_{name}_button")
        self.addAction(action)  # so the shortcut works while the text has focus
        self._actions[name] = action

    def action(self, name: str) -> QAction:
        """One of the toolbar actions: bold, italic, bullets, heading, undo, redo, save."""
        return self._actions[name]

    def _load_text(self, text: str) -> None:
        document = self.editor.document()
        self.editor.setExtraSelections([])
        self._phi_spans = []
        self.editor.setMarkdown(markdown_for_editor(text))
        document.clearUndoRedoStacks()
        document.setModified(False)
        self._loaded_markdown = self.markdown()
        self._update_dirty()

    def _version_text(self, note: NoteInfo) -> str:
        author = note.author or "the system (demo set-up or import)"
        return (
            f"Version {note.version} \u00b7 saved by {author} \u00b7 {format_when(note.created_at)}"
        )

    def _show_version_label(self) -> None:
        if self._note is None:
            self.version_label.setText("No note yet \u2014 type one and press Ctrl+S to save it")
            return
        text = self._version_text(self._note)
        if self._versions and len(self._versions) > 1:
            text += f" \u00b7 {len(self._versions)} versions (see History)"
        self.version_label.setText(text)

    def _update_dirty(self, *_: object) -> None:
        if self._read_only:
            self.dirty_label.setText("Read-only: the case is signed")
        elif self.is_dirty():
            self.dirty_label.setText("\u25cf Unsaved changes")
        else:
            self.dirty_label.setText("Saved" if self._note is not None else "")
        self._refresh_model_notice()

    def _show_phi(self, note: NoteInfo | None, *, just_saved: bool) -> None:
        self.phi_list.clear()
        self._phi_spans = []
        self.editor.setExtraSelections([])
        spans = scrubbed_spans_in_saved_text(note.scrubbed) if note else []
        if note is None or (not spans and not just_saved):
            self.phi_panel.hide()
            return
        when = "on save" if just_saved else f"when version {note.version} was saved"
        if not spans:
            self.phi_title.setText(f"<b>PHI removed {when}: none found.</b>")
            self.phi_list.hide()
            self.phi_panel.show()
            return
        self.phi_title.setText(
            f"<b>PHI removed {when}: {len(spans)}</b> \u2014 the original words are not kept; "
            "each is marked in the note."
        )
        document_text = self.editor.document().toPlainText()
        offsets = utf16_offsets(document_text)
        selections: list[QTextEdit.ExtraSelection] = []
        search_from = 0
        for start, end, category, replacement in spans:
            context = _plain(note.text[max(0, start - 25) : start].split("\n")[-1])
            after = _plain(note.text[end : end + 25].split("\n")[0])
            label = f"{category} \u2192 {replacement}"
            item = QListWidgetItem(f"{label}    \u2026{context}{replacement}{after}\u2026")
            item.setToolTip(f"{category} replaced by \u201c{replacement}\u201d")
            found = document_text.find(replacement, search_from) if replacement else -1
            if found >= 0:
                search_from = found + len(replacement)
                span = (offsets[found], offsets[found + len(replacement)])
                self._phi_spans.append(span)
                item.setData(Qt.ItemDataRole.UserRole, span)
                selection = QTextEdit.ExtraSelection()
                cursor = QTextCursor(self.editor.document())
                cursor.setPosition(span[0])
                cursor.setPosition(span[1], QTextCursor.MoveMode.KeepAnchor)
                selection.cursor = cursor
                fmt = QTextCharFormat()
                fmt.setBackground(PHI_MARK_COLOUR)
                fmt.setProperty(QTextFormat.Property.FullWidthSelection, False)
                fmt.setToolTip(f"Removed {category}")
                selection.format = fmt
                selections.append(selection)
            self.phi_list.addItem(item)
        self.editor.setExtraSelections(selections)
        rows = min(self.phi_list.count(), 6)
        self.phi_list.setFixedHeight(rows * self.phi_list.sizeHintForRow(0) + 6)
        self.phi_list.show()
        self.phi_panel.show()

    def _select_phi(self, row: int) -> None:
        item = self.phi_list.item(row)
        span = item.data(Qt.ItemDataRole.UserRole) if item else None
        if not span:
            return
        cursor = QTextCursor(self.editor.document())
        cursor.setPosition(span[0])
        cursor.setPosition(span[1], QTextCursor.MoveMode.KeepAnchor)
        self.editor.setTextCursor(cursor)
        self.editor.ensureCursorVisible()

    def _show_version(self, row: int) -> None:
        item = self.history_list.item(row)
        if item is None:
            self.history_view.clear()
            return
        wanted = item.data(Qt.ItemDataRole.UserRole)
        for version in self._versions:
            if version.version == wanted:
                self.history_view.setMarkdown(markdown_for_editor(version.text))

    def _refresh_model_notice(self) -> None:
        highlights = self._highlights
        if highlights is None:
            self.model_notice.hide()
            return
        current = self._note.text if self._note is not None and not self.is_dirty() else None
        if current is None:
            current = self.markdown() if self.is_dirty() else ""
        # The model reads the note without its Markdown markup (domain.notes).
        changed = plain_text_from_markdown(current).strip() != highlights.text.strip()
        if (
            not changed
            and self._note is not None
            and highlights.note_version is not None
            and highlights.note_version != self._note.version
        ):
            changed = True
        if changed:
            self.model_notice.setText(
                "\u26a0 The note changed since this analysis: the shading below is for the text "
                "the model read then. Run the analysis again to explain the current note."
            )
            self.model_notice.show()
        else:
            self.model_notice.hide()

    # formatting -------------------------------------------------------------------------------
    def _merge(self, fmt: QTextCharFormat) -> None:
        """Format the selection, or what is typed next when nothing is selected."""
        self.editor.mergeCurrentCharFormat(fmt)

    def _toggle_bold(self) -> None:
        fmt = QTextCharFormat()
        bold = self.editor.fontWeight() <= QFont.Weight.Normal
        fmt.setFontWeight(QFont.Weight.Bold if bold else QFont.Weight.Normal)
        self._merge(fmt)

    def _toggle_italic(self) -> None:
        fmt = QTextCharFormat()
        fmt.setFontItalic(not self.editor.fontItalic())
        self._merge(fmt)

    def _toggle_bullets(self) -> None:
        cursor = self.editor.textCursor()
        cursor.beginEditBlock()
        current = cursor.currentList()
        if current is not None:
            block = cursor.block()
            current.remove(block)
            fmt = block.blockFormat()
            fmt.setIndent(0)
            cursor.setBlockFormat(fmt)
        else:
            cursor.createList(QTextListFormat.Style.ListDisc)
        cursor.endEditBlock()

    def _toggle_heading(self) -> None:
        cursor = self.editor.textCursor()
        cursor.beginEditBlock()
        block_format = cursor.blockFormat()
        heading = block_format.headingLevel() == 0
        block_format.setHeadingLevel(2 if heading else 0)
        cursor.setBlockFormat(block_format)
        cursor.select(QTextCursor.SelectionType.BlockUnderCursor)
        char_format = QTextCharFormat()
        char_format.setProperty(QTextFormat.Property.FontSizeAdjustment, 2 if heading else 0)
        char_format.setFontWeight(QFont.Weight.Bold if heading else QFont.Weight.Normal)
        cursor.mergeCharFormat(char_format)
        cursor.endEditBlock()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Return at the end of a heading starts a normal paragraph, as in word processors."""
        if (
            watched is self.editor
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            and not self.editor.isReadOnly()
        ):
            cursor = self.editor.textCursor()
            if cursor.blockFormat().headingLevel() > 0 and cursor.atBlockEnd():
                cursor.beginEditBlock()
                block_format = cursor.blockFormat()
                block_format.setHeadingLevel(0)
                normal = QTextCharFormat()
                normal.setProperty(QTextFormat.Property.FontSizeAdjustment, 0)
                normal.setFontWeight(QFont.Weight.Normal)
                cursor.insertBlock(block_format, normal)
                cursor.endEditBlock()
                self.editor.setTextCursor(cursor)
                return True
        return super().eventFilter(watched, event)

    def _sync_format_buttons(self, *_: object) -> None:
        self._actions["bold"].setChecked(self.editor.fontWeight() > QFont.Weight.Normal)
        self._actions["italic"].setChecked(self.editor.fontItalic())
        cursor = self.editor.textCursor()
        self._actions["bullets"].setChecked(cursor.currentList() is not None)
        self._actions["heading"].setChecked(cursor.blockFormat().headingLevel() > 0)


def word_at(highlights: NoteHighlights, index: int) -> WordRelevance | None:
    """The analysed word covering character ``index`` of ``highlights.text`` (for tests/tools)."""
    for word in highlights.words:
        if word.start <= index < word.end:
            return word
    return None
