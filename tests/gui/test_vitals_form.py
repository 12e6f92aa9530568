"""The vitals form: typed values checked inline against the accepted ranges, the temperature
unit, what it emits, the history table and read-only signed cases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from clinic_app.domain.cases import CaseDetail, CaseSummary
from clinic_app.domain.records import CaseStatus
from clinic_app.gui.vitals_form import FAHRENHEIT, ROWS_BY_KEY, VitalsForm, check_value

pytestmark = pytest.mark.gui

NOW = datetime(2026, 11, 12, 14, 2, tzinfo=UTC)


@pytest.fixture
def form(qtbot) -> VitalsForm:  # type: ignore[no-untyped-def]
    widget = VitalsForm()
    qtbot.addWidget(widget)
    widget.resize(640, 620)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def _detail(status: CaseStatus = CaseStatus.NEW, vitals: list[dict] | None = None) -> CaseDetail:  # type: ignore[type-arg]
    summary = CaseSummary(
        "C-0001", 1, "Palpitations", status, "P-7F3A", False, None, None, None, NOW, NOW
    )
    return CaseDetail(summary, None, [], [], vitals or [], [], [], None)


def test_typed_values_are_emitted_for_the_service(qtbot, form: VitalsForm) -> None:  # type: ignore[no-untyped-def]
    qtbot.keyClicks(form.inputs["heart_rate_bpm"], "112")
    qtbot.keyClicks(form.inputs["systolic_mmhg"], "138")
    qtbot.keyClicks(form.inputs["diastolic_mmhg"], "84")
    qtbot.keyClicks(form.inputs["spo2_percent"], "96")
    form.temperature_unit.setCurrentText(FAHRENHEIT)
    qtbot.keyClicks(form.inputs["temperature_c"], "99.1")
    with qtbot.waitSignal(form.saveRequested) as blocker:
        qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    values = blocker.args[0]
    assert values["heart_rate_bpm"] == "112" and values["systolic_mmhg"] == "138"
    assert values["temperature_c"] == "99.1" and values["temperature_unit"] == "\u00b0F"
    assert "respiratory_rate_per_min" not in values  # empty fields are left out
    measured = datetime.fromisoformat(values["measured_at"])
    assert measured.tzinfo is not None
    assert abs((measured - datetime.now(UTC)).total_seconds()) < 120


def test_emitted_values_parse_in_the_vitals_service(qtbot, form: VitalsForm) -> None:  # type: ignore[no-untyped-def]
    vitals = pytest.importorskip("clinic_app.services.vitals")
    form.temperature_unit.setCurrentText(FAHRENHEIT)
    qtbot.keyClicks(form.inputs["temperature_c"], "98.6")
    qtbot.keyClicks(form.inputs["respiratory_rate_per_min"], "18")
    parsed = vitals.parse_vitals(form.values())
    assert parsed.temperature_c == pytest.approx(37.0)
    assert parsed.respiratory_rate_per_min == 18


def test_out_of_range_and_bad_values_are_marked_inline(qtbot, form: VitalsForm) -> None:  # type: ignore[no-untyped-def]
    assert form.range_labels["heart_rate_bpm"].text() == "10\u2013350 bpm"
    qtbot.keyClicks(form.inputs["heart_rate_bpm"], "720")
    error = form.error_labels["heart_rate_bpm"]
    assert error.isVisible() and "outside 10\u2013350 bpm" in error.text()
    qtbot.keyClick(form.inputs["heart_rate_bpm"], Qt.Key.Key_Backspace)
    assert not error.isVisible()  # 72 is fine
    qtbot.keyClicks(form.inputs["spo2_percent"], "ninety")
    assert "is not a number" in form.error_labels["spo2_percent"].text()
    qtbot.keyClicks(form.inputs["systolic_mmhg"], "80")
    qtbot.keyClicks(form.inputs["diastolic_mmhg"], "95")
    with qtbot.assertNotEmitted(form.saveRequested):
        qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    assert "must be below the systolic" in form.error_labels["diastolic_mmhg"].text()
    assert form.inputs["diastolic_mmhg"].hasFocus()  # the first wrong field, top down


def test_temperature_unit_changes_the_range_and_hints_at_a_wrong_unit(  # type: ignore[no-untyped-def]
    qtbot, form: VitalsForm
) -> None:
    qtbot.keyClicks(form.inputs["temperature_c"], "98.6")
    error = form.error_labels["temperature_c"]
    assert error.isVisible() and "Is it in \u00b0F?" in error.text()
    form.temperature_unit.setCurrentText(FAHRENHEIT)
    assert not error.isVisible()
    assert form.range_labels["temperature_c"].text() == "77\u2013113 \u00b0F"
    assert check_value(ROWS_BY_KEY["temperature_c"], "37", FAHRENHEIT) is not None


def test_empty_form_is_refused(qtbot, form: VitalsForm) -> None:  # type: ignore[no-untyped-def]
    with qtbot.assertNotEmitted(form.saveRequested):
        form.save()
    assert form.form_error.isVisible() and "at least one" in form.form_error.text()


def test_service_errors_are_shown_on_their_fields(form: VitalsForm) -> None:
    form.show_errors(
        {
            "spo2_percent": "SpO\u2082: 140 % is outside the accepted range 30\u2013100 %.",
            "measured_at": "Measured at: the time is in the future.",
        }
    )
    assert "140 %" in form.error_labels["spo2_percent"].text()
    assert "in the future" in form.form_error.text()


def test_history_and_demographics_and_read_only(qtbot, form: VitalsForm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    earlier = datetime(2026, 11, 12, 8, 0, tzinfo=UTC)
    vitals = [
        {
            "measured_at": earlier,
            "heart_rate_bpm": 88.0,
            "systolic_mmhg": 130.0,
            "diastolic_mmhg": 80.0,
            "spo2_percent": 98.0,
            "temperature_c": 36.8,
            "respiratory_rate_per_min": 14.0,
        },
        {
            "measured_at": NOW,
            "heart_rate_bpm": 112.0,
            "systolic_mmhg": 138.0,
            "diastolic_mmhg": 84.0,
            "spo2_percent": 96.0,
            "temperature_c": 37.3,
            "respiratory_rate_per_min": None,
        },
    ]
    form.set_case(_detail(CaseStatus.SIGNED, vitals), read_only=False)
    form.set_demographics("P-7F3A", 1958, "female")
    assert "P-7F3A" in form.demographics.text() and "born 1958" in form.demographics.text()
    assert "female" in form.demographics.text()
    assert "BP 138/84 mmHg" in form.latest.text() and "Heart rate 112 bpm" in form.latest.text()
    assert form.history.rowCount() == 2
    assert form.history.item(0, 1).text() == "112" and form.history.item(1, 1).text() == "88"
    assert form.history.item(0, 6).text() == "\u2014"
    # A signed case: nothing can be entered or saved.
    assert form.inputs["heart_rate_bpm"].isReadOnly() and not form.save_button.isEnabled()
    with qtbot.assertNotEmitted(form.saveRequested):
        form.save()
    image = form.grab()
    assert image.save(str(tmp_path / "vitals.png"))
    assert form.shortcuts() == [("Ctrl+Shift+S", "Save the vital signs typed in the form")]


def test_accessible_names_and_tooltips(form: VitalsForm) -> None:
    for key, edit in form.inputs.items():
        assert edit.accessibleName() and edit.toolTip(), key
    for widget in (form.save_button, form.temperature_unit, form.measured_at, form.history):
        assert widget.accessibleName() and widget.toolTip()
