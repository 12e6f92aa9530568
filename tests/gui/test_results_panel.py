"""The results panel: ranked suggestions with calibrated bars, abstentions apart, evidence,
contributions, inputs banner, model identity and card link, intended use, empty state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton

from clinic_app.domain.cases import AnalysisInfo, SuggestionInfo
from clinic_app.domain.explanations import (
    AnalysisExplanation,
    NoteHighlights,
    TileHeatmap,
    TileScore,
    WordRelevance,
)
from clinic_app.domain.intended_use import INTENDED_USE_SHORT
from clinic_app.gui.results_panel import EMPTY_TEXT, ResultsPanel

pytestmark = pytest.mark.gui

SNOMED = "http://snomed.info/sct"
NOW = datetime(2026, 11, 12, 14, 2, tzinfo=UTC)
NOTE = "Patient reports palpitations for 5 days; pulse irregularly irregular at 110/min."


def _explanation() -> AnalysisExplanation:
    start = NOTE.index("palpitations")
    return AnalysisExplanation(
        label=f"{SNOMED}|164889003",
        label_display="Atrial fibrillation",
        contributions={"ecg": 0.31, "note": 0.12},
        gates={"ecg": 0.7, "note": 0.3},
        modalities_used=("ecg", "note"),
        modalities_missing={"pathology": "no slide in the case"},
        slide=TileHeatmap(
            "ab" * 32,
            4096,
            4096,
            512,
            tuple(TileScore(512 * i, 512 * i, 1 / (i + 1)) for i in range(4)),
            top=(2, 0),
        ),
        note=NoteHighlights(1, "x", NOTE, (WordRelevance(start, start + 12, 0.42),)),
        ecg_measurements={
            "heart_rate_bpm": 112.4,
            "qrs_ms": 92.0,
            "pr_ms": None,
            "r_peaks_s": [0.1, 0.5],
        },
    )


def _analysis() -> AnalysisInfo:
    suggestions = [
        SuggestionInfo(11, 1, SNOMED, "164889003", "Atrial fibrillation", 0.83, 0.78, False, {}),
        SuggestionInfo(
            12,
            2,
            SNOMED,
            "427084000",
            "Sinus tachycardia",
            0.41,
            None,
            False,
            {"note_snippets": ["rate 110/min"], "lead_share": {"II": 0.4}},
        ),
        SuggestionInfo(
            13, 3, SNOMED, "55827005", "Left ventricular hypertrophy", 0.1, 0.05, True, {}
        ),
    ]
    return AnalysisInfo(
        7,
        "clinicfusion-demo",
        "0.3.1",
        "f" * 64,
        ["a" * 64],
        "cpu",
        {"total": 800.0},
        {"explanation": _explanation().to_json()},
        NOW,
        suggestions,
    )


@pytest.fixture
def panel(qtbot) -> ResultsPanel:  # type: ignore[no-untyped-def]
    widget = ResultsPanel()
    qtbot.addWidget(widget)
    widget.resize(520, 1000)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def _texts(widget) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(label.text() for label in widget.findChildren(QLabel))


def test_empty_state(panel: ResultsPanel) -> None:
    assert panel.empty_label.isVisible() and panel.empty_label.text() == EMPTY_TEXT
    assert "Ctrl+R" in EMPTY_TEXT
    assert not panel.scroll_area.isVisible()
    assert panel.intended_use.isVisible() and panel.intended_use.text() == INTENDED_USE_SHORT
    assert not panel.composite_badge.isVisible()


def test_ranked_suggestions_evidence_and_contributions(  # type: ignore[no-untyped-def]
    qtbot, panel: ResultsPanel, tmp_path: Path
) -> None:
    analysis = _analysis()
    panel.set_analysis(analysis, AnalysisExplanation.from_outputs(analysis.outputs), True)
    assert not panel.empty_label.isVisible() and panel.scroll_area.isVisible()
    assert panel.composite_badge.isVisible()
    assert panel.composite_badge.text() == "Composite demo case"
    assert [c.suggestion.id for c in panel.cards] == [11, 12, 13]
    top, second, abstained = panel.cards
    assert top.bar.text == "78 %" and top.bar.value == pytest.approx(0.78)
    assert "calibrated probability" in top.bar.toolTip()
    assert second.bar.text == "41 %" and "not calibrated" in second.bar.toolTip()
    assert "SNOMED CT 164889003" in _texts(top)
    # Abstained: below its own heading, greyed and labelled.
    assert panel.abstained_heading.isVisible()
    assert panel.abstained_box.indexOf(abstained) >= 0
    assert panel.suggestions_box.indexOf(abstained) < 0
    assert abstained.bar.muted and "Insufficient confidence" in _texts(abstained)
    assert "insufficient confidence" in abstained.accessibleName()
    # Evidence of the explained suggestion comes from the explanation.
    text = _texts(top)
    assert "Heart rate: <b>112 bpm</b>" in text and "PR: <b>not measurable</b>" in text
    assert "r_peaks" not in text.lower()
    assert "<b>palpitations</b>" in text
    assert "rate 110/min" in _texts(second) and "Lead share" in _texts(second)
    # Inputs used / missing with the reason, model identity.
    banner = panel.inputs_banner.text()
    assert "ECG, Clinical note" in banner and "Pathology slide (no slide in the case)" in banner
    assert "clinicfusion-demo" in panel.model_label.text() and "0.3.1" in panel.model_label.text()
    # Contributions in plain language.
    assert panel.contributions_heading.text() == "<b>How much each input counted</b>"
    ecg_change = panel.findChild(QLabel, "contribution_ecg")
    assert ecg_change is not None and ecg_change.text() == "without it: 31 points lower"
    assert panel.findChild(QLabel, "contribution_note").text() == "without it: 12 points lower"
    image = panel.grab()
    assert image.save(str(tmp_path / "results.png"))


def test_clicks_select_open_tiles_and_model_card(qtbot, panel: ResultsPanel) -> None:  # type: ignore[no-untyped-def]
    analysis = _analysis()
    panel.set_analysis(analysis, AnalysisExplanation.from_outputs(analysis.outputs), False)
    second = panel.card(12)
    with qtbot.waitSignal(panel.suggestionSelected) as selected:
        qtbot.mouseClick(second, Qt.MouseButton.LeftButton)
    assert selected.args == [12] and second.selected and not panel.card(11).selected
    panel.card(11).setFocus()
    with qtbot.waitSignal(panel.suggestionSelected) as selected:
        qtbot.keyClick(panel.card(11), Qt.Key.Key_Return)
    assert selected.args == [11]
    # Top tiles jump to their index in the stored heatmap (most relevant first: 2, then 0).
    first_tile = panel.card(11).findChild(QPushButton, "tileButton_0")
    assert first_tile is not None and first_tile.isEnabled()
    with qtbot.waitSignal(panel.tileRequested) as tile:
        qtbot.mouseClick(first_tile, Qt.MouseButton.LeftButton)
    assert tile.args == [2]
    with qtbot.waitSignal(panel.modelCardRequested):
        qtbot.mouseClick(panel.model_card_link, Qt.MouseButton.LeftButton)
    assert panel.model_card_link.accessibleName() and panel.model_card_link.toolTip()
    panel.set_analysis(None, None, False)
    assert panel.cards == [] and panel.empty_label.isVisible()


def test_all_abstained_and_no_explanation(panel: ResultsPanel) -> None:
    only = SuggestionInfo(
        1,
        1,
        SNOMED,
        "35917007",
        "Adenocarcinoma",
        0.2,
        0.1,
        True,
        {"top_tiles": [{"x": 0, "y": 0, "attention": 0.9}]},
    )
    analysis = AnalysisInfo(2, "m", "1", "0" * 64, [], "cpu", {}, {}, NOW, [only])
    panel.set_analysis(analysis, None, False)
    assert "No suggestion" in _texts(panel)
    assert not panel.contributions_heading.isVisible()
    tile = panel.card(1).findChild(QPushButton, "tileButton_0")
    assert tile is not None and not tile.isEnabled()  # no heatmap to jump into
    assert "none recorded" in panel.inputs_banner.text()
