"""The analysis results: ranked suggestions with calibrated probabilities, the evidence behind
each, how much each input counted, which inputs were used or missing, and the model's identity.

Suggestions are support for a clinician who reviews the evidence, never directives: abstained
suggestions are shown apart as "Insufficient confidence", and the intended-use statement is
always at the bottom.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFocusEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
)
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.cases import AnalysisInfo, SuggestionInfo
from clinic_app.domain.explanations import AnalysisExplanation
from clinic_app.domain.intended_use import INTENDED_USE, INTENDED_USE_SHORT

EMPTY_TEXT = "Not analysed yet \u2014 press Analyse (Ctrl+R)"
SNOMED_SYSTEM = "http://snomed.info/sct"

#: Plain names of the model's inputs (the model and the case store use different keys).
MODALITY_NAMES = {
    "pathology": "Pathology slide",
    "image": "Pathology slide",
    "slide": "Pathology slide",
    "ecg": "ECG",
    "note": "Clinical note",
    "text": "Clinical note",
    "vitals": "Vital signs",
}
#: ECG measurement keys -> (label, unit); anything else is shown with its own key.
ECG_LABELS = {
    "heart_rate_bpm": ("Heart rate", "bpm"),
    "rr_mean_ms": ("Mean RR", "ms"),
    "sdnn_ms": ("SDNN", "ms"),
    "rmssd_ms": ("RMSSD", "ms"),
    "rr_cv": ("RR variability (CV)", ""),
    "pr_ms": ("PR", "ms"),
    "qrs_ms": ("QRS", "ms"),
    "qt_ms": ("QT", "ms"),
    "qtc_bazett_ms": ("QTc (Bazett)", "ms"),
    "qtc_fridericia_ms": ("QTc (Fridericia)", "ms"),
    "beat_count": ("Beats", ""),
}
_HIDDEN_EVIDENCE_KEYS = {"r_peaks_s"}  # long arrays a clinician does not read as numbers


def modality_name(key: str) -> str:
    return MODALITY_NAMES.get(key.lower(), key.replace("_", " ").capitalize())


def shown_probability(suggestion: SuggestionInfo) -> tuple[float, bool]:
    """The probability to show and whether it is calibrated."""
    if suggestion.calibrated_probability is not None:
        return suggestion.calibrated_probability, True
    return suggestion.probability, False


def code_text(suggestion: SuggestionInfo) -> str:
    system = "SNOMED CT" if suggestion.code_system == SNOMED_SYSTEM else suggestion.code_system
    return f"{system} {suggestion.code}"


def _format_when(moment: datetime) -> str:
    local = moment.astimezone() if moment.tzinfo else moment
    return local.strftime("%d %b %Y %H:%M").lstrip("0")


def _format_number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def _muted_colour(palette: QPalette) -> QColor:
    return palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText)


class ValueBar(QWidget):
    """A horizontal bar for a value in [0, 1] with its number written beside it (custom-painted
    so it follows the palette and is not mistaken for a progress indicator)."""

    def __init__(
        self, value: float, text: str, *, muted: bool = False, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.value = max(0.0, min(1.0, value))
        self.text = text
        self.muted = muted
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName(text)
        self.setToolTip(text)

    def sizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        return QSize(160, metrics.height() + 6)

    def minimumSizeHint(self) -> QSize:
        return QSize(80, self.fontMetrics().height() + 6)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        metrics = self.fontMetrics()
        text_width = metrics.horizontalAdvance(self.text) + 8
        track = QRectF(0.5, 3.5, max(10.0, self.width() - text_width - 1.0), self.height() - 7.0)
        groove = QColor(palette.color(QPalette.ColorRole.WindowText))
        groove.setAlpha(40)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(groove)
        painter.drawRoundedRect(track, 3, 3)
        fill = QColor(
            _muted_colour(palette) if self.muted else palette.color(QPalette.ColorRole.Highlight)
        )
        filled = QRectF(track)
        filled.setWidth(track.width() * self.value)
        if filled.width() > 0:
            painter.setBrush(fill)
            painter.drawRoundedRect(filled, 3, 3)
        painter.setPen(
            _muted_colour(palette) if self.muted else palette.color(QPalette.ColorRole.WindowText)
        )
        painter.drawText(
            QRectF(track.right() + 6, 0, text_width, self.height()),
            int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft),
            self.text,
        )
        painter.end()


class SuggestionCard(QFrame):
    """One suggestion: rank, diagnosis, code, probability bar and the evidence behind it.
    Click, Enter or Space selects it (for the decision panel)."""

    activated = Signal(int)

    def __init__(
        self,
        suggestion: SuggestionInfo,
        evidence: Mapping[str, Any],
        tile_index: Mapping[tuple[int, int], int],
        on_tile: Any,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.suggestion = suggestion
        self.setObjectName(f"suggestion_{suggestion.id}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        probability, calibrated = shown_probability(suggestion)
        percent = f"{probability * 100:.0f} %"
        self.setAccessibleName(
            f"Suggestion {suggestion.rank}: {suggestion.display}, "
            + ("insufficient confidence" if suggestion.abstained else f"probability {percent}")
        )
        self.setToolTip("Click to review and decide on this suggestion")
        self.selected = False

        title = QLabel(
            f"<b>{suggestion.rank}. {html.escape(suggestion.display)}</b>"
            f"&nbsp;&nbsp;<span style='font-size: small'>{html.escape(code_text(suggestion))}"
            "</span>"
        )
        title.setObjectName("suggestionTitle")
        title.setWordWrap(True)
        title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        caption = "calibrated probability" if calibrated else "model score (not calibrated)"
        self.bar = ValueBar(probability, f"{percent}", muted=suggestion.abstained, parent=self)
        self.bar.setObjectName("probabilityBar")
        self.bar.setToolTip(
            f"{caption}: {probability:.3f}"
            + ("" if calibrated else f" (raw {suggestion.probability:.3f})")
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 8)
        layout.setSpacing(3)
        layout.addWidget(title)
        if suggestion.abstained:
            note = QLabel(
                "Insufficient confidence \u2014 the model abstains; do not rely on this suggestion."
            )
            note.setObjectName("abstainedNote")
            note.setWordWrap(True)
            layout.addWidget(note)
        row = QHBoxLayout()
        caption_label = QLabel(caption.capitalize() + ":")
        caption_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        row.addWidget(caption_label)
        row.addWidget(self.bar, 1)
        layout.addLayout(row)
        self.evidence_widgets = _evidence_widgets(evidence, tile_index, on_tile)
        for widget in self.evidence_widgets:
            layout.addWidget(widget)
        if suggestion.abstained:
            for label in self.findChildren(QLabel):
                label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self._restyle()

    def set_selected(self, selected: bool) -> None:
        self.selected = selected
        self._restyle()

    def _restyle(self) -> None:
        palette = self.palette()
        if self.selected:
            border = palette.color(QPalette.ColorRole.Highlight).name()
            width = 2
        else:
            border = palette.color(QPalette.ColorRole.Mid).name()
            width = 1
        self.setStyleSheet(
            f"SuggestionCard {{ border: {width}px solid {border}; border-radius: 5px; }}"
        )

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.activated.emit(self.suggestion.id)
        super().mousePressEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.activated.emit(self.suggestion.id)
            return
        super().keyPressEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        parent = self.parentWidget()
        while parent is not None and not isinstance(parent, QScrollArea):
            parent = parent.parentWidget()
        if isinstance(parent, QScrollArea):
            parent.ensureWidgetVisible(self)


def _evidence_widgets(
    evidence: Mapping[str, Any], tile_index: Mapping[tuple[int, int], int], on_tile: Any
) -> list[QWidget]:
    """Widgets for whatever evidence is there: ECG measurements as a grid, tiles as buttons,
    note snippets as quotes, anything else as 'name: value'."""
    widgets: list[QWidget] = []
    for key, value in evidence.items():
        if key in _HIDDEN_EVIDENCE_KEYS or value in (None, "", [], {}):
            continue
        lowered = key.lower()
        if "ecg" in lowered and isinstance(value, Mapping):
            widgets.append(_ecg_grid(value))
        elif "tile" in lowered and isinstance(value, list):
            widgets.append(_tile_row(value, tile_index, on_tile))
        elif ("note" in lowered or "snippet" in lowered or "span" in lowered) and isinstance(
            value, list
        ):
            widgets.append(_snippets(value))
        else:
            label = QLabel(
                f"<i>{html.escape(key.replace('_', ' ').capitalize())}:</i> "
                f"{html.escape(_generic(value))}"
            )
            label.setWordWrap(True)
            widgets.append(label)
    return widgets


def _generic(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k.replace('_', ' ')} {_format_number(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        text = ", ".join(_generic(v) for v in value[:8])
        return text + (f" \u2026 ({len(value)} in all)" if len(value) > 8 else "")
    return _format_number(value)


def _ecg_grid(measurements: Mapping[str, Any]) -> QWidget:
    box = QWidget()
    box.setObjectName("ecgEvidence")
    box.setAccessibleName("ECG measurements")
    box.setToolTip("Measured on the tracing by the app; approximate \u2014 verify on the ECG")
    grid = QGridLayout(box)
    grid.setContentsMargins(0, 2, 0, 0)
    grid.setHorizontalSpacing(14)
    grid.setVerticalSpacing(0)
    heading = QLabel("<i>ECG measurements</i>")
    grid.addWidget(heading, 0, 0, 1, 6)
    shown = [
        (k, v)
        for k, v in measurements.items()
        if k not in _HIDDEN_EVIDENCE_KEYS and not isinstance(v, list | tuple | dict)
    ]
    for index, (key, value) in enumerate(shown):
        label, unit = ECG_LABELS.get(key, (key.replace("_", " "), ""))
        text = "not measurable" if value is None else f"{_format_number(value)} {unit}".strip()
        cell = QLabel(f"{html.escape(label)}: <b>{html.escape(text)}</b>")
        grid.addWidget(cell, 1 + index // 3, index % 3)
    return box


def _tile_row(tiles: list[Any], tile_index: Mapping[tuple[int, int], int], on_tile: Any) -> QWidget:
    box = QWidget()
    box.setObjectName("tileEvidence")
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 2, 0, 0)
    layout.addWidget(QLabel("<i>Top slide regions:</i>"))
    for position, tile in enumerate(tiles[:6]):
        if isinstance(tile, Mapping):
            x, y = int(tile.get("x", -1)), int(tile.get("y", -1))
            score = tile.get("attention", tile.get("score"))
            index = tile.get("index")
            target = int(index) if index is not None else tile_index.get((x, y))
        elif isinstance(tile, int):
            x = y = -1
            score = None
            target = tile
        else:
            continue
        text = f"#{position + 1}" + (f" \u00b7 {float(score):.2f}" if score is not None else "")
        button = QPushButton(text)
        button.setObjectName(f"tileButton_{position}")
        button.setFlat(True)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        link = button.palette().color(QPalette.ColorRole.Link).name()
        button.setStyleSheet(
            f"QPushButton {{ color: {link}; text-decoration: underline; border: none; "
            "padding: 0 4px; } QPushButton:disabled { color: palette(mid); "
            "text-decoration: none; }"
        )
        button.setAccessibleName(f"Show slide region {position + 1}")
        where = f" at x {x:,}, y {y:,} (full-resolution pixels)" if x >= 0 else ""
        if target is None:
            button.setEnabled(False)
            button.setToolTip(f"Region {position + 1}{where}; not in the stored heatmap")
        else:
            button.setToolTip(f"Show region {position + 1}{where} on the slide")
            button.clicked.connect(lambda _checked=False, t=target: on_tile(t))
        layout.addWidget(button)
    layout.addStretch(1)
    return box


def _snippets(snippets: list[Any]) -> QWidget:
    box = QWidget()
    box.setObjectName("noteEvidence")
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 2, 0, 0)
    layout.setSpacing(0)
    layout.addWidget(QLabel("<i>From the note:</i>"))
    for snippet in snippets[:5]:
        word = ""
        if isinstance(snippet, Mapping):
            text = str(snippet.get("text", snippet.get("snippet", "")))
            score = snippet.get("score")
            word = str(snippet.get("highlight", ""))
        else:
            text, score = str(snippet), None
        if not text:
            continue
        suffix = f" <small>({float(score):+.2f})</small>" if score is not None else ""
        shown = html.escape(text)
        if word and html.escape(word) in shown:
            shown = shown.replace(html.escape(word), f"<b>{html.escape(word)}</b>", 1)
        label = QLabel(f"\u201c{shown}\u201d{suffix}")
        label.setWordWrap(True)
        label.setIndent(10)
        layout.addWidget(label)
    return box


class ResultsPanel(QWidget):
    """Ranked suggestions with evidence, input contributions and the model's identity.

    Signals: ``suggestionSelected(id)`` when a suggestion is clicked, ``tileRequested(index)``
    (index into ``explanation.slide.tiles``) when an evidence tile is clicked,
    ``modelCardRequested()`` from the "Model card" link."""

    suggestionSelected = Signal(int)
    tileRequested = Signal(int)
    modelCardRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultsPanel")
        self.analysis: AnalysisInfo | None = None
        self.explanation: AnalysisExplanation | None = None
        self.cards: list[SuggestionCard] = []

        self.empty_label = QLabel(EMPTY_TEXT)
        self.empty_label.setObjectName("resultsEmpty")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.composite_badge = QLabel("Composite demo case")
        self.composite_badge.setObjectName("compositeBadge")
        self.composite_badge.setAccessibleName("Composite demo case")
        self.composite_badge.setToolTip(
            "Built from unrelated public recordings for demonstration; not one real patient"
        )
        self.composite_badge.setStyleSheet(
            "QLabel#compositeBadge { background: rgba(111, 66, 193, 60); "
            "border: 1px solid rgba(111, 66, 193, 170); border-radius: 8px; padding: 1px 8px; "
            "font-weight: 600; }"
        )
        self.model_label = QLabel()
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        self.model_card_link = QPushButton("Model card")
        self.model_card_link.setObjectName("modelCardLink")
        self.model_card_link.setFlat(True)
        self.model_card_link.setAccessibleName("Open the model card")
        self.model_card_link.setToolTip(
            "What the model was trained on, how well it did, and its limits"
        )
        self.model_card_link.setCursor(Qt.CursorShape.PointingHandCursor)
        link = self.palette().color(QPalette.ColorRole.Link).name()
        self.model_card_link.setStyleSheet(
            f"QPushButton#modelCardLink {{ color: {link}; text-decoration: underline; "
            "border: none; padding: 0 4px; }"
        )
        self.model_card_link.clicked.connect(self.modelCardRequested)
        header = QHBoxLayout()
        header.addWidget(self.model_label, 1)
        header.addWidget(self.model_card_link)
        header.addWidget(self.composite_badge)

        self.inputs_banner = QLabel()
        self.inputs_banner.setObjectName("inputsBanner")
        self.inputs_banner.setAccessibleName("Inputs used and missing")
        self.inputs_banner.setWordWrap(True)
        self.inputs_banner.setTextFormat(Qt.TextFormat.RichText)
        self.inputs_banner.setStyleSheet(
            "QLabel#inputsBanner { background: rgba(13, 110, 253, 40); "
            "border: 1px solid rgba(13, 110, 253, 120); border-radius: 3px; padding: 4px 6px; }"
        )

        self.suggestions_box = QVBoxLayout()
        self.suggestions_box.setSpacing(6)
        self.abstained_heading = QLabel("<b>Insufficient confidence</b>")
        self.abstained_heading.setObjectName("abstainedHeading")
        self.abstained_heading.setToolTip(
            "The model was not confident enough to suggest these; they are listed for "
            "completeness only"
        )
        self.abstained_box = QVBoxLayout()
        self.abstained_box.setSpacing(6)

        self.contributions_heading = QLabel("<b>How much each input counted</b>")
        self.contributions_heading.setObjectName("contributionsHeading")
        self.contributions_caption = QLabel()
        self.contributions_caption.setWordWrap(True)
        self.contributions_caption.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.contributions_grid = QGridLayout()
        self.contributions_grid.setHorizontalSpacing(10)

        self.intended_use = QLabel(INTENDED_USE_SHORT)
        self.intended_use.setObjectName("intendedUseNote")
        self.intended_use.setWordWrap(True)
        self.intended_use.setToolTip(INTENDED_USE)
        self.intended_use.setStyleSheet(
            "QLabel#intendedUseNote { background: rgba(255, 193, 7, 60); "
            "border: 1px solid rgba(224, 195, 106, 200); border-radius: 3px; padding: 4px 6px; }"
        )

        self.content = QWidget()
        self.content.setObjectName("resultsContent")
        content_layout = QVBoxLayout(self.content)
        content_layout.setContentsMargins(8, 8, 8, 8)
        content_layout.addLayout(header)
        content_layout.addWidget(self.inputs_banner)
        suggestions_heading = QLabel("<b>Suggestions</b> (most probable first)")
        suggestions_heading.setObjectName("suggestionsHeading")
        content_layout.addWidget(suggestions_heading)
        content_layout.addLayout(self.suggestions_box)
        content_layout.addWidget(self.abstained_heading)
        content_layout.addLayout(self.abstained_box)
        content_layout.addSpacing(6)
        content_layout.addWidget(self.contributions_heading)
        content_layout.addWidget(self.contributions_caption)
        content_layout.addLayout(self.contributions_grid)
        content_layout.addStretch(1)

        self.scroll_area = QScrollArea()
        self.scroll_area.setObjectName("resultsScroll")
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setWidget(self.content)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty_label, 1)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(self.intended_use)
        self.set_analysis(None, None, False)

    # -- public API -----------------------------------------------------------------------------
    def set_analysis(
        self,
        analysis: AnalysisInfo | None,
        explanation: AnalysisExplanation | None,
        composite: bool,
    ) -> None:
        """Show an analysis (None: the empty state) and its explanation, if stored."""
        self.analysis = analysis
        self.explanation = explanation
        self.composite_badge.setVisible(composite)
        self._clear()
        self.empty_label.setVisible(analysis is None)
        self.scroll_area.setVisible(analysis is not None)
        if analysis is None:
            return
        self.model_label.setText(
            f"<b>{html.escape(analysis.model_name)}</b> {html.escape(analysis.model_version)}"
            f" \u00b7 analysed {html.escape(_format_when(analysis.created_at))}"
            f" \u00b7 {html.escape(analysis.device)}"
        )
        self.model_label.setToolTip(f"Model bundle sha256 {analysis.bundle_sha256}")
        self.inputs_banner.setText(self._inputs_text(analysis, explanation))
        tile_index = self._tile_index(explanation)
        ranked = sorted(analysis.suggestions, key=lambda s: (s.abstained, s.rank))
        for suggestion in ranked:
            card = SuggestionCard(
                suggestion,
                self._evidence_for(suggestion, explanation),
                tile_index,
                self.tileRequested.emit,
            )
            card.activated.connect(self.select_suggestion)
            card.activated.connect(self.suggestionSelected)
            (self.abstained_box if suggestion.abstained else self.suggestions_box).addWidget(card)
            self.cards.append(card)
        if not any(not s.abstained for s in ranked):
            none = QLabel("No suggestion: the model was not confident about any diagnosis.")
            none.setObjectName("noSuggestion")
            none.setWordWrap(True)
            self.suggestions_box.addWidget(none)
        self.abstained_heading.setVisible(any(s.abstained for s in ranked))
        self._show_contributions(explanation)

    def select_suggestion(self, suggestion_id: int) -> None:
        """Mark one suggestion as the one under review."""
        for card in self.cards:
            card.set_selected(card.suggestion.id == suggestion_id)

    def shortcuts(self) -> list[tuple[str, str]]:
        return [
            ("Tab / Shift+Tab", "Move between suggestions"),
            ("Enter or Space", "Review and decide on the focused suggestion"),
        ]

    def card(self, suggestion_id: int) -> SuggestionCard:
        """The card of one suggestion (for tests and the lead)."""
        return next(c for c in self.cards if c.suggestion.id == suggestion_id)

    # -- internals ------------------------------------------------------------------------------
    def _clear(self) -> None:
        for card in self.cards:
            card.setParent(None)
            card.deleteLater()
        self.cards = []
        for box in (self.suggestions_box, self.abstained_box, self.contributions_grid):
            while box.count():
                item = box.takeAt(0)
                widget = item.widget() if item is not None else None
                if widget is not None:
                    widget.setParent(None)
                    widget.deleteLater()

    @staticmethod
    def _inputs_text(analysis: AnalysisInfo, explanation: AnalysisExplanation | None) -> str:
        if explanation is None:
            used = analysis.outputs.get("modalities_used") or []
            missing = analysis.outputs.get("modalities_missing") or {}
        else:
            used, missing = list(explanation.modalities_used), explanation.modalities_missing
        used_text = ", ".join(html.escape(modality_name(m)) for m in used) or "none recorded"
        text = f"<b>Inputs used:</b> {used_text}"
        if missing:
            parts = [
                f"{html.escape(modality_name(m))} ({html.escape(str(why))})"
                for m, why in dict(missing).items()
            ]
            text += f"<br><b>Missing:</b> {'; '.join(parts)}"
        else:
            text += " \u00b7 nothing missing"
        return text

    @staticmethod
    def _tile_index(explanation: AnalysisExplanation | None) -> dict[tuple[int, int], int]:
        if explanation is None or explanation.slide is None:
            return {}
        return {(t.x, t.y): i for i, t in enumerate(explanation.slide.tiles)}

    @staticmethod
    def _evidence_for(
        suggestion: SuggestionInfo, explanation: AnalysisExplanation | None
    ) -> dict[str, Any]:
        """The suggestion's own evidence; the explained (top) suggestion also gets the ECG
        measurements, top tiles and strongest note words of the explanation, if not there."""
        evidence = dict(suggestion.evidence)
        if explanation is None or explanation.label != (
            f"{suggestion.code_system}|{suggestion.code}"
        ):
            return evidence
        if explanation.ecg_measurements and not any("ecg" in k.lower() for k in evidence):
            evidence["ecg_measurements"] = explanation.ecg_measurements
        slide = explanation.slide
        if slide is not None and slide.top and not any("tile" in k.lower() for k in evidence):
            evidence["top_tiles"] = [
                {
                    "x": slide.tiles[i].x,
                    "y": slide.tiles[i].y,
                    "score": slide.tiles[i].score,
                    "index": i,
                }
                for i in slide.top[:5]
                if 0 <= i < len(slide.tiles)
            ]
        note = explanation.note
        if note is not None and not any(
            "note" in k.lower() or "snippet" in k.lower() for k in evidence
        ):
            strongest = sorted((w for w in note.words if w.score > 0), key=lambda w: -w.score)[:3]
            evidence["note_snippets"] = [
                {
                    "text": _context(note.text, w.start, w.end),
                    "score": w.score,
                    "highlight": note.text[w.start : w.end],
                }
                for w in strongest
            ]
        return evidence

    def _show_contributions(self, explanation: AnalysisExplanation | None) -> None:
        visible = explanation is not None and bool(explanation.gates or explanation.contributions)
        self.contributions_heading.setVisible(visible)
        self.contributions_caption.setVisible(visible)
        if explanation is None or not visible:
            return
        self.contributions_caption.setText(
            "<i>Weight</i>: the share of the model\u2019s attention each input received. "
            f"<i>Without it</i>: how the probability of {html.escape(explanation.label_display)}"
            " would change if that input were left out."
        )
        modalities: list[str] = list(
            dict.fromkeys(
                [*explanation.modalities_used, *explanation.gates, *explanation.contributions]
            )
        )
        for row, modality in enumerate(modalities):
            name = QLabel(modality_name(modality))
            gate = explanation.gates.get(modality)
            bar = ValueBar(gate or 0.0, f"{(gate or 0.0) * 100:.0f} %")
            bar.setObjectName(f"gateBar_{modality}")
            bar.setToolTip(
                f"{modality_name(modality)} received {(gate or 0.0) * 100:.0f} % of "
                "the fusion weight"
            )
            change = QLabel(
                _contribution_text(
                    explanation.contributions.get(modality, None),
                    modality in explanation.contributions,
                )
            )
            change.setObjectName(f"contribution_{modality}")
            self.contributions_grid.addWidget(name, row, 0)
            self.contributions_grid.addWidget(bar, row, 1)
            self.contributions_grid.addWidget(change, row, 2)
        self.contributions_grid.setColumnStretch(1, 1)


def _contribution_text(value: float | None, known: bool) -> str:
    if not known:
        return ""
    if value is None:
        return "only input"
    points = value * 100
    if abs(points) < 0.5:
        return "without it: no change"
    direction = "lower" if points > 0 else "higher"
    return f"without it: {abs(points):.0f} points {direction}"


def _context(text: str, start: int, end: int, width: int = 40) -> str:
    """The words around a span, on one line, for a note snippet."""
    left = text[max(0, start - width) : start].replace("\n", " ")
    right = text[end : end + width].replace("\n", " ")
    left = left.split(" ", 1)[-1] if start - width > 0 and " " in left else left
    right = right.rsplit(" ", 1)[0] if end + width < len(text) and " " in right else right
    return f"\u2026{left}{text[start:end]}{right}\u2026".strip()
