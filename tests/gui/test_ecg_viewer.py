"""The ECG viewer on real recordings: pydicom's 12-lead DICOM ECG and MIT-BIH record 100."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QColor, QDropEvent, QImage
from PySide6.QtWidgets import QAbstractButton, QComboBox, QScrollBar
from pytestqt.qtbot import QtBot
from scipy.signal import find_peaks

from clinic_app.domain.explanations import EcgRelevanceMap
from clinic_app.domain.signals import EcgAnnotation, EcgRecording
from clinic_app.gui.ecg import EMPTY_TEXT, EcgViewer
from clinic_app.gui.ecg.layout import TWELVE_LEAD_GRID, envelope, finite_runs
from clinic_app.gui.ecg.paper import MAJOR_GRID_COLOUR, RELEVANCE_COLOUR
from clinic_app.io.readers import read_input

pytestmark = pytest.mark.gui

DICOM_ECG = Path(pydicom.__file__).parent / "data/test_files/waveform_ecg.dcm"


@pytest.fixture(scope="module")
def twelve_lead() -> EcgRecording:
    recording = read_input(DICOM_ECG)
    assert isinstance(recording, EcgRecording)
    return recording


@pytest.fixture
def viewer(qtbot: QtBot) -> EcgViewer:
    widget = EcgViewer()
    qtbot.addWidget(widget)
    widget.resize(1400, 1000)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def _mit_bih_100(shared_data: Path) -> EcgRecording:
    header = shared_data / "ecg" / "wfdb-samples" / "100.hea"
    if not header.is_file():
        pytest.skip(f"{header} is absent")
    recording = read_input(header)
    assert isinstance(recording, EcgRecording)
    return recording


def _paper_image(viewer: EcgViewer) -> QImage:
    return viewer.paper.grab().toImage()


def _close(colour: QColor, expected: QColor, tolerance: int = 12) -> bool:
    return all(
        abs(a - b) <= tolerance
        for a, b in zip(
            (colour.red(), colour.green(), colour.blue()),
            (expected.red(), expected.green(), expected.blue()),
            strict=True,
        )
    )


def test_empty_state_invites_a_drop_and_disables_the_controls(viewer: EcgViewer) -> None:
    assert viewer.stack.currentWidget() is viewer.empty_label
    assert viewer.empty_label.text() == EMPTY_TEXT
    assert viewer.paper_geometry() is None
    assert not viewer.speed_combo.isEnabled() and not viewer.gain_combo.isEnabled()
    assert viewer.caliper_readout() is None


def test_twelve_leads_are_laid_out_3x4_with_a_rhythm_strip(
    viewer: EcgViewer, twelve_lead: EcgRecording, tmp_path: Path
) -> None:
    viewer.set_recording(twelve_lead, "pydicom waveform_ecg.dcm")
    g = viewer.paper_geometry()
    assert g is not None and g.twelve_lead
    assert viewer.stack.currentIndex() == 1
    assert len(g.rows) == 4
    for row, leads in zip(g.rows[:3], TWELVE_LEAD_GRID, strict=True):
        assert tuple(s.lead for s in row.segments) == leads
        # consecutive 2.5 s columns, as on paper, side by side across the trace width
        assert [s.start_s for s in row.segments] == pytest.approx([0.0, 2.5, 5.0, 7.5])
        assert [s.end_s for s in row.segments] == pytest.approx([2.5, 5.0, 7.5, 10.0])
        for left, right in zip(row.segments, row.segments[1:], strict=False):
            assert left.x1 == pytest.approx(right.x0)
        assert not row.is_rhythm
    rhythm = g.rows[3]
    assert rhythm.is_rhythm and [s.lead for s in rhythm.segments] == ["II"]
    assert (rhythm.segments[0].start_s, rhythm.segments[0].end_s) == pytest.approx((0.0, 10.0))
    assert viewer.rhythm_combo.currentText() == "II"

    # every cell has ink: the trace was drawn where its label says
    image = _paper_image(viewer)
    for row in g.rows:
        for segment in row.segments:
            dark = 0
            for x in range(int(segment.x0) + 3, int(segment.x1) - 3, 2):
                for y in range(int(row.top), int(row.bottom), 2):
                    if QColor(image.pixel(x, y)).lightness() < 90:
                        dark += 1
            assert dark > 20, f"no trace drawn for lead {segment.lead}"

    # the rhythm strip lead can be changed
    viewer.set_rhythm_lead("V1")
    g = viewer.paper_geometry()
    assert g is not None and g.rows[-1].segments[0].lead == "V1"
    assert viewer.rhythm_combo.currentText() == "V1"
    viewer.set_rhythm_lead("II")

    shot = tmp_path / "ecg-12-lead.png"
    assert viewer.grab().save(str(shot)) and shot.stat().st_size > 10_000


def test_grid_is_one_millimetre_at_the_screens_dpi(
    viewer: EcgViewer, twelve_lead: EcgRecording
) -> None:
    viewer.set_recording(twelve_lead)
    viewer.set_zoom(1.0)
    g = viewer.paper_geometry()
    assert g is not None
    dpi = viewer.screen().logicalDotsPerInch()
    assert g.zoom == 1.0
    assert g.minor_grid_px == pytest.approx(dpi / 25.4)
    assert g.major_grid_px == pytest.approx(5 * dpi / 25.4)

    # the painted 5 mm lines really are 5 mm apart: scan a row of the footer margin
    viewer.set_zoom(2.0)
    g = viewer.paper_geometry()
    assert g is not None and g.px_per_mm == pytest.approx(2.0 * dpi / 25.4)
    image = _paper_image(viewer)
    y = int(g.height - 1.5 * g.px_per_mm)
    major_columns = [
        x
        for x in range(image.width())
        if _close(QColor(image.pixel(x, y)), MAJOR_GRID_COLOUR, tolerance=30)
    ]
    starts = [x for i, x in enumerate(major_columns) if i == 0 or x - major_columns[i - 1] > 1]
    gaps = np.diff(starts)
    assert len(gaps) > 20
    assert np.all(np.abs(gaps - g.major_grid_px) <= 1.0)

    # the fitted zoom fills the viewer's width
    viewer.set_zoom(None)
    g = viewer.paper_geometry()
    assert g is not None
    assert 0.8 * viewer.scroll_area.viewport().width() < g.width <= viewer.width()


def test_speed_and_gain_scale_time_and_amplitude(
    viewer: EcgViewer, twelve_lead: EcgRecording
) -> None:
    viewer.set_recording(twelve_lead)
    g25 = viewer.paper_geometry()
    assert g25 is not None
    assert (g25.speed_mm_per_s, g25.gain_mm_per_mv) == (25.0, 10.0)
    assert g25.px_per_s == pytest.approx(25 * g25.px_per_mm)
    assert g25.px_per_mv == pytest.approx(10 * g25.px_per_mm)
    assert g25.window_s == pytest.approx(10.0)

    viewer.speed_combo.setCurrentIndex(viewer.speed_combo.findData(50.0))
    g50 = viewer.paper_geometry()
    assert g50 is not None
    assert g50.px_per_s == pytest.approx(2 * g25.px_per_s)
    assert g50.window_s == pytest.approx(5.0)  # the page shows 5 s, columns of 1.25 s
    assert g50.rows[0].segments[1].start_s == pytest.approx(1.25)
    assert viewer.time_scroll.isVisibleTo(viewer)  # the other 5 s are a scroll away

    # 12.5 mm/s: a 20 s page; the 10 s recording fills half of it, every lead still drawn
    viewer.set_speed(12.5)
    g12 = viewer.paper_geometry()
    assert g12 is not None
    assert g12.px_per_s == pytest.approx(g25.px_per_s / 2)
    assert (g12.window_s, g12.span_s) == pytest.approx((20.0, 10.0))
    assert [s.end_s for s in g12.rows[0].segments] == pytest.approx([2.5, 5.0, 7.5, 10.0])
    assert g12.trace_right - g12.trace_left == pytest.approx(10.0 * g12.px_per_s)
    assert not viewer.time_scroll.isVisibleTo(viewer)

    viewer.set_speed(25.0)
    viewer.set_gain(20.0)
    g20 = viewer.paper_geometry()
    assert g20 is not None
    assert viewer.gain_combo.currentData() == 20.0
    assert g20.px_per_mv == pytest.approx(2 * g25.px_per_mv)
    row = g20.rows[0]
    assert row.baseline - g20.y_at(row, 1.0) == pytest.approx(2 * g25.px_per_mv)
    with pytest.raises(ValueError):
        viewer.set_speed(30.0)
    with pytest.raises(ValueError):
        viewer.set_gain(7.0)


def _r_peaks(recording: EcgRecording, lead: str) -> np.ndarray:
    signal = recording.samples[recording.lead_names.index(lead)].astype(np.float64)
    signal = signal - np.median(signal)
    rate = recording.sampling_rate_hz
    peaks, _ = find_peaks(signal, height=0.6 * signal.max(), distance=int(0.3 * rate))
    assert len(peaks) >= 8
    return peaks


def test_calipers_between_r_peaks_read_interval_and_rate(
    qtbot: QtBot, viewer: EcgViewer, twelve_lead: EcgRecording
) -> None:
    viewer.set_recording(twelve_lead)
    rate = twelve_lead.sampling_rate_hz
    peaks = _r_peaks(twelve_lead, "II")
    first, second = int(peaks[1]), int(peaks[2])
    expected_ms = (second - first) / rate * 1000.0

    viewer.place_calipers("II", first / rate, second / rate)
    readout = viewer.caliper_readout()
    assert readout is not None
    interval_ms, bpm = readout
    assert interval_ms == pytest.approx(expected_ms, abs=1000.0 / rate)
    assert bpm == pytest.approx(60000.0 / interval_ms)
    assert 50 < bpm < 75  # the device measured RR 982 ms
    assert f"{interval_ms:.0f} ms" in viewer.caliper_label.text()

    qtbot.keyClick(viewer.paper, Qt.Key.Key_Escape)
    assert viewer.caliper_readout() is None and viewer.calipers() is None

    # two clicks with the mouse on lead II's cell: exact to a pixel's worth of time
    g = viewer.paper_geometry()
    assert g is not None
    row = g.row_of("II")
    assert row is not None
    y = round(row.baseline)
    pixel_ms = 1000.0 / g.px_per_s
    for x in (g.x_at(first / rate), g.x_at(second / rate)):
        qtbot.mouseClick(viewer.paper, Qt.MouseButton.LeftButton, pos=QPoint(round(x), y))
    readout = viewer.caliper_readout()
    assert readout is not None
    assert readout[0] == pytest.approx(expected_ms, abs=pixel_ms + 1000.0 / rate)
    calipers = viewer.calipers()
    assert calipers is not None and calipers.lead == "II" and calipers.row == row.index

    # a drag places both at once; a new press starts over
    xa, xb = round(g.x_at(first / rate)), round(g.x_at(second / rate))
    qtbot.mousePress(viewer.paper, Qt.MouseButton.LeftButton, pos=QPoint(xa, y))
    qtbot.mouseMove(viewer.paper, QPoint((xa + xb) // 2, y))
    qtbot.mouseMove(viewer.paper, QPoint(xb, y))
    qtbot.mouseRelease(viewer.paper, Qt.MouseButton.LeftButton, pos=QPoint(xb, y))
    readout = viewer.caliper_readout()
    assert readout is not None
    assert readout[0] == pytest.approx(expected_ms, abs=pixel_ms + 1000.0 / rate)
    viewer.clear_calipers()
    assert viewer.caliper_readout() is None


def _relevance(recording: EcgRecording, hot_lead: str, hot_bin: int) -> EcgRelevanceMap:
    values = tuple(
        tuple(1.0 if (name == hot_lead and k == hot_bin) else 0.0 for k in range(20))
        for name in recording.lead_names
    )
    return EcgRelevanceMap("sha", recording.lead_names, 0.5, 0.0, values)


def test_relevance_shading_only_when_set_and_toggled_on(
    qtbot: QtBot, viewer: EcgViewer, twelve_lead: EcgRecording
) -> None:
    viewer.set_recording(twelve_lead)
    assert not viewer.relevance_shown()
    assert viewer.relevance_toggle.isHidden() and viewer.relevance_legend.isHidden()
    g = viewer.paper_geometry()
    assert g is not None
    v2 = g.row_of("V2")
    assert v2 is not None
    # V2's cell covers 5.0-7.5 s; shade 5.5-6.0 s
    x, y = round(g.x_at(5.75)), round(v2.top + 2 * g.px_per_mm)
    before = QColor(_paper_image(viewer).pixel(x, y))

    viewer.set_relevance(_relevance(twelve_lead, "V2", 11), "Atrial fibrillation")
    assert viewer.relevance_shown()
    assert viewer.relevance_toggle.isVisibleTo(viewer) and viewer.relevance_toggle.isChecked()
    assert "shaded: relevance to Atrial fibrillation" in viewer.relevance_legend.text()
    regions = viewer.paper.shaded_regions()
    assert len(regions) == 1
    rect, alpha = regions[0]
    assert rect.left() == pytest.approx(g.x_at(5.5)) and rect.right() == pytest.approx(g.x_at(6.0))
    assert rect.top() == pytest.approx(v2.top) and alpha > 0.5
    shaded = QColor(_paper_image(viewer).pixel(x, y))
    assert shaded != before
    # warmer: towards orange, less blue than the pink paper
    assert shaded.blue() < before.blue() - 40
    assert abs(shaded.red() - RELEVANCE_COLOUR.red()) < abs(before.blue() - RELEVANCE_COLOUR.red())

    viewer.relevance_toggle.setChecked(False)
    assert not viewer.relevance_shown() and viewer.relevance_legend.isHidden()
    assert QColor(_paper_image(viewer).pixel(x, y)) == before
    viewer.relevance_toggle.setChecked(True)
    assert viewer.relevance_shown()

    viewer.set_relevance(None)
    assert not viewer.relevance_shown() and viewer.relevance_toggle.isHidden()


def test_measurements_are_printed_when_given(viewer: EcgViewer, twelve_lead: EcgRecording) -> None:
    viewer.set_recording(twelve_lead)
    assert viewer.measurements_label.isHidden()
    viewer.set_measurements(
        {"heart_rate_bpm": 61.2, "qrs_ms": 78.0, "qtc_bazett_ms": None, "measured_seconds": 0.02}
    )
    text = viewer.measurements_label.text()
    assert "HR</b> 61.2 bpm" in text and "QRS</b> 78 ms" in text
    assert "QTc" not in text and "measured" not in text.lower().replace("measured:", "")
    assert viewer.measurements_label.isVisibleTo(viewer)
    viewer.set_measurements(None)
    assert viewer.measurements_label.isHidden()


@pytest.mark.data
def test_mit_bih_two_leads_with_beat_and_rhythm_annotations(
    qtbot: QtBot, viewer: EcgViewer, shared_data: Path, tmp_path: Path
) -> None:
    recording = _mit_bih_100(shared_data)
    rate = recording.sampling_rate_hz
    viewer.set_recording(recording, "MIT-BIH 100")
    g = viewer.paper_geometry()
    assert g is not None and not g.twelve_lead
    assert [row.segments[0].lead for row in g.rows] == ["MLII", "V5"]
    assert g.rows[0].is_rhythm and g.rows[0].lane_top is not None

    beats = [a for a in recording.annotations if a.kind == "beat" and a.sample / rate <= 10.0]
    items = viewer.annotation_items()
    drawn = [item for item in items if item.kind == "beat"]
    assert [item.symbol for item in drawn] == [a.symbol for a in beats]
    for item, beat in zip(drawn, beats, strict=True):
        assert item.rect.center().x() == pytest.approx(g.x_at(beat.sample / rate))
    rhythms = [item for item in items if item.kind == "rhythm"]
    assert len(rhythms) == 1 and rhythms[0].text.startswith("(N)")
    assert "normal sinus rhythm" in rhythms[0].description

    # 30 minutes: the time bar moves the page; the one PVC of the record is labelled in red
    assert viewer.time_scroll.isVisibleTo(viewer)
    pvc = next(a for a in recording.annotations if a.symbol == "V")
    viewer.set_time_offset(pvc.sample / rate - 5.0)
    g = viewer.paper_geometry()
    assert g is not None and g.offset_s == pytest.approx(pvc.sample / rate - 5.0, abs=1e-3)
    marked = [item for item in viewer.annotation_items() if item.symbol == "V"]
    assert len(marked) == 1
    assert marked[0].description.startswith("Premature ventricular contraction")
    assert marked[0].rect.center().x() == pytest.approx(g.x_at(pvc.sample / rate))
    centre = marked[0].rect.center()
    assert "Premature ventricular" in viewer.paper.describe_point(centre.x(), centre.y())

    # keys on the paper page through the recording
    viewer.set_time_offset(0.0)
    qtbot.keyClick(viewer.paper, Qt.Key.Key_PageDown)
    assert viewer.time_offset() == pytest.approx(10.0)
    qtbot.keyClick(viewer.paper, Qt.Key.Key_Right)
    assert viewer.time_offset() == pytest.approx(11.0)
    qtbot.keyClick(viewer.paper, Qt.Key.Key_PageUp)
    assert viewer.time_offset() == pytest.approx(1.0)
    assert "0:01.0–0:11.0 of 30:05.6" in viewer.time_label.text()

    viewer.set_rhythm_lead("V5")
    g = viewer.paper_geometry()
    assert g is not None and g.rows[1].is_rhythm and g.rows[1].lane_top is not None

    shot = tmp_path / "ecg-mit-bih-100.png"
    assert viewer.grab().save(str(shot)) and shot.stat().st_size > 10_000


def test_microvolt_samples_are_drawn_in_millivolts(qtbot: QtBot) -> None:
    rate = 500.0
    t = np.arange(int(5 * rate)) / rate
    beat = np.exp(-(((t % 1.0) - 0.5) ** 2) / (2 * 0.01**2)).astype(np.float32)  # 1 mV spikes
    images = []
    for units, scale in (("mV", 1.0), ("uV", 1000.0), ("µV", 1000.0)):
        viewer = EcgViewer()
        qtbot.addWidget(viewer)
        viewer.resize(1000, 600)
        viewer.set_recording(EcgRecording((beat * scale)[None, :], rate, ("V",), units=units))
        images.append(_paper_image(viewer))
        assert "not recognised" not in viewer.info_label.text()
    assert images[0] == images[1] == images[2]


def test_other_leads_get_full_width_rows_and_gaps_stay_gaps(qtbot: QtBot) -> None:
    rate = 250.0
    n = int(8 * rate)
    samples = np.sin(np.arange(n) / rate * 2 * np.pi)[None, :].repeat(3, axis=0)
    samples[1, 500:700] = np.nan
    recording = EcgRecording(
        samples.astype(np.float32),
        rate,
        ("lead I", "Lead aVF (Goldberger)", "vx"),
        annotations=(EcgAnnotation(100, "beat", "N"), EcgAnnotation(0, "rhythm", "+", "(AFIB")),
    )
    viewer = EcgViewer()
    qtbot.addWidget(viewer)
    viewer.resize(1000, 800)
    viewer.set_recording(recording)
    g = viewer.paper_geometry()
    assert g is not None and not g.twelve_lead
    assert [row.segments[0].lead for row in g.rows] == ["I", "aVF", "vx"]  # names normalised
    assert g.rows[0].is_rhythm
    assert not viewer.time_scroll.isVisibleTo(viewer)  # 8 s fits the 10 s page
    items = viewer.annotation_items()
    assert {(i.kind, i.symbol) for i in items} == {("beat", "N"), ("rhythm", "AFIB")}
    band = next(i for i in items if i.kind == "rhythm")
    assert band.rect.right() == pytest.approx(g.x_at(8.0))
    assert "atrial fibrillation" in band.description
    # the invalid stretch breaks the aVF trace in two: four polylines for three leads
    _positions, levels = envelope(samples[1], 1.0)
    assert finite_runs(levels) == [(0, 500), (700, n)]
    assert len(viewer.paper._build_traces(g, 1.0)) == 4


def test_envelope_keeps_spikes_and_order() -> None:
    values = np.zeros(100)
    values[37] = 5.0
    values[62] = -3.0
    positions, levels = envelope(values, 10.0)
    assert len(levels) == 20  # two points per column
    assert levels.max() == 5.0 and levels.min() == -3.0
    assert np.all(np.diff(positions) >= 0)
    raw_positions, raw = envelope(values, 1.5)
    assert np.array_equal(raw, values) and raw_positions[-1] == 99


def test_painting_never_stalls_the_event_loop(
    qtbot: QtBot, viewer: EcgViewer, twelve_lead: EcgRecording
) -> None:
    """Repaint the full 12-lead page (shading and calipers on) with cold trace caches, back to
    back; a 10 ms timer probe must never wait 50 ms for the event loop. The machine is shared,
    so a run may be repeated twice: a paint that stalls stalls every run, a neighbour's burst
    does not."""
    viewer.set_recording(twelve_lead)
    viewer.set_relevance(_relevance(twelve_lead, "II", 4), "Sinus rhythm")
    viewer.place_calipers("II", 1.0, 2.0)

    def worst_gap_s() -> float:
        gaps: list[float] = []
        last = [time.perf_counter()]

        def probe() -> None:
            now = time.perf_counter()
            gaps.append(now - last[0])
            last[0] = now

        def repaint() -> None:
            viewer.paper._traces = None  # the worst case: rebuild every polyline
            viewer.paper.repaint()

        probe_timer, paint_timer = QTimer(), QTimer()
        probe_timer.setInterval(10)
        probe_timer.timeout.connect(probe)
        paint_timer.setInterval(0)
        paint_timer.timeout.connect(repaint)
        probe_timer.start()
        paint_timer.start()
        qtbot.wait(600)
        paint_timer.stop()
        probe_timer.stop()
        assert len(gaps) > 10
        return max(gaps[1:])

    runs = []
    for _attempt in range(3):
        runs.append(worst_gap_s())
        if runs[-1] < 0.050:
            break
    assert min(runs) < 0.050, f"event loop stalled {[round(r * 1000) for r in runs]} ms"


def test_shortcuts_accessibility_and_drop(
    qtbot: QtBot, viewer: EcgViewer, twelve_lead: EcgRecording, tmp_path: Path
) -> None:
    shortcuts = viewer.shortcuts()
    assert ("Esc", "Clear the calipers (on the paper)") in shortcuts
    assert all(keys and text for keys, text in shortcuts)
    for widget in viewer.findChildren(QComboBox) + viewer.findChildren(QAbstractButton):
        assert widget.accessibleName() and widget.toolTip() and widget.objectName()
    time_bar = viewer.findChild(QScrollBar, "ecgTimeScroll")
    assert time_bar is not None and time_bar.accessibleName() and time_bar.toolTip()
    assert viewer.objectName() == "ecgViewer" and viewer.paper.accessibleName()

    viewer.set_recording(twelve_lead)
    viewer.paper.setFocus()
    qtbot.keyClick(viewer.paper, Qt.Key.Key_BracketRight)
    assert viewer.paper_geometry().speed_mm_per_s == 50.0  # type: ignore[union-attr]
    qtbot.keyClick(viewer.paper, Qt.Key.Key_BracketLeft)
    assert viewer.paper_geometry().speed_mm_per_s == 25.0  # type: ignore[union-attr]

    dropped: list[list[Path]] = []
    viewer.files_dropped.connect(dropped.append)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "100.hea"))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    viewer.dropEvent(event)
    assert dropped == [[tmp_path / "100.hea"]]

    viewer.clear()
    assert viewer.stack.currentWidget() is viewer.empty_label and viewer.recording() is None
