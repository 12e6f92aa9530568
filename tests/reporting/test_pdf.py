"""The PDF explanation report: rendered with poppler (pdftoppm, pdftotext, pdffonts) and read."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinic_app.domain.errors import ConfigError
from clinic_app.domain.explanations import NoteHighlights, TileHeatmap, TileScore, WordRelevance
from clinic_app.domain.signals import EcgRecording
from clinic_app.reporting import fonts as report_fonts
from clinic_app.reporting._figures import (
    CAL_MM,
    EcgGrid,
    heatmap_overlay,
    plan_ecg_layout,
)
from clinic_app.reporting.data import COMPOSITE_NOTICE, INTENDED_USE, EcgFigure, ReportData
from clinic_app.reporting.pdf import note_excerpt, render_pdf
from tests.reporting import sample

POPPLER = all(shutil.which(tool) for tool in ("pdftoppm", "pdftotext", "pdffonts", "pdfinfo"))
needs_poppler = pytest.mark.skipif(
    not POPPLER, reason="poppler-utils (pdftoppm, pdftotext, pdffonts, pdfinfo) is not installed"
)


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def _text(pdf_path: Path) -> str:
    """pdftotext output with whitespace (line breaks of wrapped lines) collapsed."""
    return " ".join(_run("pdftotext", "-enc", "UTF-8", str(pdf_path), "-").split())


def _pages(pdf_path: Path, out: Path, dpi: int = 50) -> list[np.ndarray]:
    _run("pdftoppm", "-png", "-r", str(dpi), str(pdf_path), str(out / "page"))
    files = sorted(out.glob("page-*.png"), key=lambda p: int(p.stem.split("-")[-1]))
    return [np.asarray(Image.open(f).convert("L"), dtype=np.float64) for f in files]


def _page_count(pdf_path: Path) -> int:
    match = re.search(r"^Pages:\s+(\d+)", _run("pdfinfo", str(pdf_path)), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def _write(tmp_path: Path, data: ReportData, name: str = "report.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(render_pdf(data))
    return path


@pytest.fixture(scope="module")
def typical() -> ReportData:
    return sample.report_data()


@pytest.fixture(scope="module")
def typical_pdf(typical: ReportData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "typical.pdf"
    path.write_bytes(render_pdf(typical))
    return path


def test_same_data_gives_the_same_bytes(typical: ReportData, typical_pdf: Path) -> None:
    assert render_pdf(typical) == typical_pdf.read_bytes()
    assert typical_pdf.read_bytes().startswith(b"%PDF-1.")


@needs_poppler
def test_every_page_renders_and_none_is_blank(typical_pdf: Path, tmp_path: Path) -> None:
    pages = _pages(typical_pdf, tmp_path)
    assert len(pages) == _page_count(typical_pdf) == 4
    for number, page in enumerate(pages, start=1):
        assert page.var() > 200, f"page {number} looks blank"
    # page 3 is the ECG printout on A4 landscape
    assert pages[2].shape[1] > pages[2].shape[0]
    assert all(p.shape[0] > p.shape[1] for i, p in enumerate(pages) if i != 2)


@needs_poppler
def test_text_names_model_suggestions_decisions_and_statements(
    typical: ReportData, typical_pdf: Path
) -> None:
    text = _text(typical_pdf)
    assert sample.MODEL_VERSION in text
    assert typical.model is not None and typical.model.bundle_sha256 in text
    for item in typical.suggestions:
        assert item.display in text
        assert item.code in text
    assert "abstained – review" in text
    assert "Overridden" in text and "Accepted" in text
    assert sample.OVERRIDE_REASON in text
    assert " ".join(sample.FINAL_IMPRESSION.split()) in text
    assert "Electronically signed by dr.rossi" in text
    assert " ".join(INTENDED_USE.split()) in text
    assert "Composite demo case" in text
    assert " ".join(COMPOSITE_NOTICE.split()) in text
    assert "Page 1 of 4" in text and "Page 4 of 4" in text
    assert "25 mm/s, 10 mm/mV" in text
    assert "Case c-7f3a9e21-5b8d · version 3" in text
    assert "Patient pseudonym PSN-4471-KQ" in text
    assert typical.institution in text and typical.footer in text
    assert "Macro AUROC (test)" in text and "0.727 (0.50–0.79)" in text


@needs_poppler
def test_unicode_micro_plus_minus_greek_and_dashes_survive(typical_pdf: Path) -> None:
    text = _text(typical_pdf)
    assert "982 ± 21" in text  # measurement
    assert "0.5 µm/px" in text  # slide facts
    assert "β-blocker" in text  # note excerpt and final impression
    assert "50 µm" in text  # scale bar
    assert "0.727 (0.50–0.79)" in text  # en dash


@needs_poppler
def test_every_font_is_embedded_truetype(typical_pdf: Path) -> None:
    lines = _run("pdffonts", str(typical_pdf)).splitlines()[2:]
    assert lines, "no fonts listed"
    names = set()
    for line in lines:
        parts = line.split()
        name, emb = parts[0], parts[-5]
        names.add(name.split("+")[-1])
        assert emb == "yes", f"font {name} is not embedded: {line}"
        assert "TrueType" in line
    assert {"DejaVuSans", "DejaVuSans-Bold"} <= names
    assert not any("Helvetica" in n or "Times" in n for n in names)


@needs_poppler
def test_creation_date_is_the_generation_time(typical_pdf: Path) -> None:
    info = _run("pdfinfo", "-isodates", str(typical_pdf))
    assert re.search(r"CreationDate:\s+2026-03-02T10:00:12(Z|\+00)", info), info


@needs_poppler
@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            {"analysed": False, "signed": False},
            ["No analysis yet", "Not signed", "not analysed", "No decisions recorded"],
        ),
        ({"ecg": False}, ["No ECG (not in this case)."]),
        ({"slide": False, "ecg": False}, ["No slide (not in this case).", "No ECG"]),
        ({"note": False}, ["No note (not in this case)."]),
        ({"signed": False, "composite": False}, ["Not signed.", "no final impression"]),
    ],
)
def test_reports_without_some_parts_say_so(
    variant: dict[str, bool], expected: list[str], tmp_path: Path
) -> None:
    data = sample.report_data(**variant)
    path = _write(tmp_path, data)
    text = _text(path)
    for phrase in expected:
        assert phrase in text
    assert ("Composite demo case" in text) == data.is_composite_demo
    assert " ".join(INTENDED_USE.split()) in text
    pages = _pages(path, tmp_path)
    assert len(pages) == _page_count(path) >= 2
    assert all(page.var() > 100 for page in pages)


@needs_poppler
def test_settings_leave_heatmaps_and_highlights_out(typical: ReportData, tmp_path: Path) -> None:
    data = sample.replace(typical, include_heatmaps=False, include_note_highlights=False)
    text = _text(_write(tmp_path, data))
    assert "Heatmaps were left out of this report by setting" in text
    assert "Word highlights were left out of this report by setting" in text
    assert "Relevance overlay" not in text
    assert "Most relevant words" not in text
    assert "CARDIOLOGY CLINIC NOTE" in text  # the plain excerpt starts at the top


@needs_poppler
def test_a_two_lead_holter_style_ecg_and_a_long_note_render(
    typical: ReportData, tmp_path: Path
) -> None:
    assert typical.ecg is not None
    recording = typical.ecg.recording
    two = EcgRecording(
        samples=np.ascontiguousarray(recording.samples[[1, 10]]),
        sampling_rate_hz=recording.sampling_rate_hz,
        lead_names=("MLII", "V5"),
    )
    filler = "Routine follow-up without change. " * 1500  # ~50,000 characters
    text = filler + sample.NOTE + " " + filler
    offset = len(filler)
    assert typical.note is not None
    words = tuple(
        WordRelevance(w.start + offset, w.end + offset, w.score) for w in typical.note.words
    )
    note = NoteHighlights(3, "0" * 64, text, words)
    data = sample.replace(
        typical,
        ecg=EcgFigure(two, None, {}),
        note=note,
        slide=dataclasses.replace(typical.slide, microns_per_pixel=None),
    )
    path = _write(tmp_path, data)
    out = _text(path)
    assert "MLII" in out and "2 leads, 10 s each" in out
    assert "No ECG relevance map is stored" in out
    assert "pixel size unknown (no scale bar)" in out
    match = re.search(r"Excerpt: ([\d,]+) of ([\d,]+) characters", out)
    assert match is not None
    shown, total = (int(g.replace(",", "")) for g in match.groups())
    assert total == len(text) and shown <= 2400
    assert "sinus rhythm" in out
    assert _page_count(path) <= 5


def test_ecg_layout_is_the_standard_twelve_lead_printout(typical: ReportData) -> None:
    assert typical.ecg is not None
    layout = plan_ecg_layout(typical.ecg.recording, typical.ecg.relevance)
    assert layout.rows == 4
    assert len(layout.cells) == 13
    columns = [[c.lead for c in layout.cells if c.x_mm == x] for x in sorted({
        c.x_mm for c in layout.cells if c.row < 3})]  # fmt: skip
    assert columns == [
        ["I", "II", "III", "II"],
        ["aVR", "aVL", "aVF"],
        ["V1", "V2", "V3"],
        ["V4", "V5", "V6"],
    ]
    rhythm = layout.cells[-1]
    assert (rhythm.lead, rhythm.t0, rhythm.t1, rhythm.row) == ("II", 0.0, 10.0, 3)
    assert all(abs((c.t1 - c.t0) - 2.5) < 1e-9 for c in layout.cells[:-1])
    # true scale: 10 s at 25 mm/s = 250 mm after the calibration pulse
    assert layout.width_mm == CAL_MM + 250.0
    grid = EcgGrid(typical.ecg.recording, typical.ecg.relevance)
    assert grid.wrap(0, 0)[0] == pytest.approx((CAL_MM + 250.0) * 72 / 25.4)


def test_ecg_layout_for_a_long_recording_shows_ten_seconds() -> None:
    samples = np.zeros((1, 30 * 250), dtype=np.float32)
    layout = plan_ecg_layout(EcgRecording(samples, 250.0, ("II",)), None)
    assert layout.window_s == 10.0 and layout.rows == 1
    assert "0–10 s of a 30 s recording" in layout.description


def test_heatmap_overlay_tints_scored_tiles_only() -> None:
    thumb = np.full((40, 80, 3), 200, dtype=np.uint8)
    heatmap = TileHeatmap("x", 800, 400, 200, (TileScore(0, 0, 1.0), TileScore(200, 0, 0.0)))
    out = heatmap_overlay(thumb, heatmap)
    assert out.shape == thumb.shape
    high, low, untouched = out[5, 5], out[5, 25], out[30, 60]
    assert high[0] > high[2]  # red end of the colour map
    assert low[2] > low[0]  # blue end
    assert (untouched == 200).all()


def test_note_excerpt_prefers_sentences_around_the_top_words() -> None:
    note = sample.note_highlights()
    spans, words = note_excerpt(note, highlights=True)
    assert words[0].score == pytest.approx(0.92)
    shown = " ".join(note.text[a:b] for a, b in spans)
    assert "sinus rhythm" in shown and "Pulse regular" in shown
    assert all(abs(w.score) >= 0.1 * 0.92 for w in words)
    plain, none = note_excerpt(note, highlights=False)
    assert none == [] and note.text[plain[0][0] :].startswith("CARDIOLOGY CLINIC NOTE")


def test_a_missing_font_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="DejaVu Sans was not found"):
        report_fonts.font_directory()


def test_naive_times_render(typical: ReportData) -> None:
    data = sample.replace(typical, generated_at=datetime(2026, 3, 2, 10, 0), sign_off=None)
    assert render_pdf(data).startswith(b"%PDF")


def test_a_modalitys_missing_reason_is_given_once_for_the_input_the_analysis_considered(
    typical: ReportData, tmp_path: Path
) -> None:
    from clinic_app.reporting.data import InputLine

    reason = "no tissue found on the slide"
    data = sample.replace(
        typical,
        inputs=(
            InputLine("pathology", "slide-a.svs", False, "a" * 64),
            InputLine(
                "pathology",
                "slide-b.svs (not analysed: another input of this kind was)",
                False,
                "b" * 64,
            ),
        ),
        inputs_missing={"pathology": reason},
    )
    text = _text(_write(tmp_path, data))
    assert text.count(reason) == 1
    assert f"slide-a.svs — not used: {reason}" in text
