"""The explanation report as a PDF (reportlab; no Qt, so the CLI makes it headless).

A4 portrait pages, with the ECG on an A4 landscape page so the standard 250 mm of a 10 s
12-lead printout fits at true scale. Every page carries the case header, the research-use line
and "page n of N". Fonts are embedded DejaVu (µ, ±, Greek). The same ``ReportData`` always gives
the same bytes (reportlab's invariant mode, creation date = ``generated_at``), so a report's
sha256 is reproducible.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any
from xml.sax.saxutils import escape

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Frame,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from clinic_app.domain.explanations import NoteHighlights, WordRelevance
from clinic_app.reporting._figures import (
    GREY,
    RELEVANCE_RGB,
    SHADE_BLOCK_S,
    EcgGrid,
    SlidePanel,
    contribution_chart,
    format_length_um,
    modality_name,
)
from clinic_app.reporting.data import (
    EcgFigure,
    ModelSummary,
    ReportData,
    ReportDecision,
    ReportSuggestion,
    SlideFigure,
)
from clinic_app.reporting.fonts import FONTS, register_fonts

REPORT_TITLE = "ClinicFusion explanation report"
RESEARCH_LINE = (
    "For research and demonstration only – not a validated or cleared medical device; "
    "suggestions support, and never replace, a clinician's judgement."
)
SNOMED = "http://snomed.info/sct"

NAVY = colors.HexColor("#1F3A5F")
INK = colors.HexColor("#1B1F24")
RULE = colors.HexColor("#C9D2DC")
HEAD_FILL = colors.HexColor("#E9EEF4")
ZEBRA = colors.HexColor("#F6F8FA")
ABSTAIN_FILL = colors.HexColor("#FFF4D6")
CRITICAL = colors.HexColor("#A61B1B")
INTENDED_FILL = colors.HexColor("#EEF3F8")
COMPOSITE_FILL = colors.HexColor("#FFF1CC")
COMPOSITE_EDGE = colors.HexColor("#B7791F")
UNSIGNED_FILL = colors.HexColor("#FBEAEA")
SUPPORT_HL = "#FFD08A"  # orange: the word supports the suggestion
OPPOSE_HL = "#A9CCF5"  # blue: the word speaks against it

PORTRAIT = A4
LANDSCAPE = landscape(A4)
MARGIN_X = 18 * mm
TOP_MARGIN = 27 * mm
BOTTOM_MARGIN = 19 * mm
LAND_MARGIN_X = 12 * mm
CONTENT_W = PORTRAIT[0] - 2 * MARGIN_X

NOTE_MAX_CHARS = 2400
NOTE_TOP_WORDS = 12


# --------------------------------------------------------------------------------------------
# Text helpers


def _when(value: datetime | None) -> str:
    """A time as the report prints it: UTC when the value knows its zone."""
    if value is None:
        return "–"
    if value.tzinfo is not None:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return value.strftime("%Y-%m-%d %H:%M")


def _pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value * 100:.1f} %"


def _x(text: object) -> str:
    return escape(str(text))


class _Styles:
    """The paragraph styles (all in the embedded DejaVu family)."""

    def __init__(self) -> None:
        base = ParagraphStyle(
            "body",
            fontName=FONTS.regular,
            bulletFontName=FONTS.regular,
            fontSize=8.8,
            leading=11.8,
            textColor=INK,
        )
        self.body = base
        self.small = ParagraphStyle("small", parent=base, fontSize=7.6, leading=10)
        self.muted = ParagraphStyle("muted", parent=self.small, textColor=GREY)
        self.cell = ParagraphStyle("cell", parent=base, fontSize=8.2, leading=10.4)
        self.cell_bold = ParagraphStyle("cellb", parent=self.cell, fontName=FONTS.bold)
        self.head = ParagraphStyle(
            "head", parent=self.cell, fontName=FONTS.bold, fontSize=7.8, textColor=NAVY
        )
        self.mono = ParagraphStyle("mono", parent=self.cell, fontName=FONTS.mono, fontSize=7.4)
        self.title = ParagraphStyle(
            "title", parent=base, fontName=FONTS.bold, fontSize=15, leading=19, textColor=NAVY
        )
        self.h2 = ParagraphStyle(
            "h2",
            parent=base,
            fontName=FONTS.bold,
            fontSize=11,
            leading=14,
            textColor=NAVY,
            spaceBefore=9,
            spaceAfter=4,
            alignment=TA_LEFT,
        )
        self.banner = ParagraphStyle("banner", parent=base, fontSize=8.8, leading=12)
        self.bullet = ParagraphStyle("bullet", parent=base, leftIndent=11, bulletIndent=2)
        self.note = ParagraphStyle("note", parent=base, fontSize=8.8, leading=13.2, spaceAfter=4)


def _table(
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float],
    *,
    extra: Sequence[tuple[Any, ...]] = (),
    header: bool = True,
) -> Table:
    """A calm data table: light header, hairline rules, zebra rows, DejaVu everywhere."""
    table = Table(list(rows), colWidths=list(widths), repeatRows=1 if header else 0)
    style: list[tuple[Any, ...]] = [
        ("FONTNAME", (0, 0), (-1, -1), FONTS.regular),
        ("FONTSIZE", (0, 0), (-1, -1), 8.2),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
    ]
    if header:
        style += [
            ("BACKGROUND", (0, 0), (-1, 0), HEAD_FILL),
            ("LINEBELOW", (0, 0), (-1, 0), 0.8, NAVY),
        ]
        for index in range(2, len(rows), 2):
            style.append(("BACKGROUND", (0, index), (-1, index), ZEBRA))
    style.extend(extra)
    table.setStyle(TableStyle(style))
    return table


def _boxed(content: list[Any], fill: colors.Color, edge: colors.Color, width: float) -> Table:
    box = Table([[content]], colWidths=[width])
    box.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), FONTS.regular),
                ("BACKGROUND", (0, 0), (-1, -1), fill),
                ("BOX", (0, 0), (-1, -1), 1.1, edge),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("RIGHTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return box


# --------------------------------------------------------------------------------------------
# Page furniture: header, footer, "page n of N"


class _ReportCanvas(Canvas):  # type: ignore[misc]
    """Keeps every page until the end so the footer can say "page n of N"."""

    def __init__(self, *args: Any, generated_at: datetime, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []
        stamp = generated_at.astimezone(UTC) if generated_at.tzinfo else generated_at
        pdf_date = stamp.strftime("D:%Y%m%d%H%M%S+00'00'")
        self.setDateFormatter(lambda *_: pdf_date)

    def showPage(self) -> None:
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for number, state in enumerate(self._pages, start=1):
            self.__dict__.update(state)
            width = self._pagesize[0]
            margin = MARGIN_X if width < self._pagesize[1] else LAND_MARGIN_X
            self.setFont(FONTS.bold, 7.5)
            self.setFillColor(INK)
            self.drawRightString(width - margin, 10 * mm, f"Page {number} of {total}")
            super().showPage()
        super().save()


def _furniture(data: ReportData) -> Callable[[Canvas, Any], None]:
    """The header and footer drawn on every page (the page count is added at save)."""
    case = f"Case {data.case_uid} · version {data.case_version}"
    patient = f"Patient pseudonym {data.patient_pseudonym}"
    institution = data.institution.strip() or "ClinicFusion"
    generated = f"Report generated {_when(data.generated_at)} by {data.generated_by}"

    def draw(canvas: Canvas, doc: Any) -> None:
        width, height = canvas._pagesize
        margin = MARGIN_X if width < height else LAND_MARGIN_X
        canvas.saveState()
        top = height - 11 * mm
        canvas.setFillColor(NAVY)
        canvas.setFont(FONTS.bold, 9.5)
        canvas.drawString(margin, top, institution)
        canvas.setFont(FONTS.regular, 8)
        canvas.setFillColor(INK)
        canvas.drawString(margin, top - 4.2 * mm, REPORT_TITLE)
        canvas.setFont(FONTS.bold, 8.5)
        canvas.drawRightString(width - margin, top, case)
        canvas.setFont(FONTS.regular, 8)
        canvas.drawRightString(width - margin, top - 4.2 * mm, patient)
        canvas.setStrokeColor(NAVY)
        canvas.setLineWidth(0.8)
        canvas.line(margin, top - 6.5 * mm, width - margin, top - 6.5 * mm)
        canvas.setFont(FONTS.italic, 6.8)
        canvas.setFillColor(GREY)
        canvas.drawString(margin, top - 10 * mm, RESEARCH_LINE)
        canvas.setStrokeColor(RULE)
        canvas.setLineWidth(0.5)
        canvas.line(margin, 14 * mm, width - margin, 14 * mm)
        canvas.setFont(FONTS.regular, 7)
        canvas.setFillColor(GREY)
        lines = [generated]
        if data.footer.strip():
            lines.insert(0, data.footer.strip())
        for index, text in enumerate(lines):
            canvas.drawString(margin, (10 - 3.6 * index) * mm, text)
        canvas.restoreState()

    return draw


# --------------------------------------------------------------------------------------------
# Sections


def _banners(data: ReportData, s: _Styles) -> list[Any]:
    flow: list[Any] = [
        Paragraph(_x(data.title) or "Untitled case", s.title),
        Spacer(1, 2 * mm),
        _boxed(
            [Paragraph(f"<b>Intended use.</b> {_x(data.intended_use)}", s.banner)],
            INTENDED_FILL,
            NAVY,
            CONTENT_W,
        ),
    ]
    if data.composite_notice:
        flow += [
            Spacer(1, 2 * mm),
            _boxed(
                [
                    Paragraph("<b>Composite demo case</b>", s.banner),
                    Paragraph(_x(data.composite_notice), s.banner),
                ],
                COMPOSITE_FILL,
                COMPOSITE_EDGE,
                CONTENT_W,
            ),
        ]
    return flow


def _meta(data: ReportData, s: _Styles) -> list[Any]:
    model = data.model
    left = [
        ("Case", data.title or "–"),
        ("Pseudonymous case id", f"{data.case_uid} (version {data.case_version})"),
        ("Status", data.status),
        ("Created", _when(data.created_at)),
    ]
    right: list[tuple[str, str]] = [("Model", "no analysis yet")]
    if model is not None:
        right = [("Model", model.name), ("Version", model.version), ("Ran on", model.device)]
    right.append(("Analysed", _when(data.analysed_at) if data.analysed_at else "not analysed"))
    rows: list[list[Any]] = []
    for index in range(max(len(left), len(right))):
        cells: list[Any] = []
        for pairs in (left, right):
            if index < len(pairs):
                key, value = pairs[index]
                cells += [Paragraph(_x(key), s.head), Paragraph(_x(value), s.cell)]
            else:
                cells += ["", ""]
        rows.append(cells)
    wide = [
        (
            "Report generated",
            Paragraph(_x(f"{_when(data.generated_at)} by {data.generated_by}"), s.cell),
        )
    ]
    if model is not None:  # the full hash on one line, so it can be read and compared
        wide.append(("Model bundle SHA-256", Paragraph(_x(model.bundle_sha256), s.mono)))
    extra: list[tuple[Any, ...]] = [("LINEBELOW", (0, 0), (-1, -1), 0.3, RULE)]
    for key, value in wide:
        rows.append([Paragraph(key, s.head), value, "", ""])
        extra.append(("SPAN", (1, len(rows) - 1), (3, len(rows) - 1)))
    table = _table(rows, [30 * mm, 57 * mm, 24 * mm, 63 * mm], header=False, extra=extra)
    return [Paragraph("Case and analysis", s.h2), table]


def _inputs(data: ReportData, s: _Styles) -> list[Any]:
    rows: list[list[Any]] = [
        [Paragraph(t, s.head) for t in ("Modality", "Input", "Used", "Input SHA-256")]
    ]
    extra: list[tuple[Any, ...]] = []
    seen = set()
    for line in data.inputs:
        # The modality's reason belongs to the input the analysis considered, which comes
        # first; later inputs of the kind say themselves why they were not analysed.
        reason = None if line.modality in seen else data.inputs_missing.get(line.modality)
        seen.add(line.modality)
        description = line.description
        if not line.used and reason:
            description = f"{description} — not used: {reason}"
        sha = f"{line.sha256[:16]}…" if line.sha256 else "–"
        rows.append(
            [
                Paragraph(_x(modality_name(line.modality)), s.cell_bold),
                Paragraph(_x(description), s.cell),
                Paragraph("yes" if line.used else "<b>no</b>", s.cell),
                Paragraph(_x(sha), s.mono),
            ]
        )
    for modality, reason in data.inputs_missing.items():
        if modality in seen:
            continue
        rows.append(
            [
                Paragraph(_x(modality_name(modality)), s.cell_bold),
                Paragraph(f"<i>Missing:</i> {_x(reason)}", s.cell),
                Paragraph("<b>no</b>", s.cell),
                Paragraph("–", s.mono),
            ]
        )
    if len(rows) == 1:
        return [Paragraph("Inputs", s.h2), Paragraph("This case has no inputs.", s.muted)]
    table = _table(rows, [30 * mm, 100 * mm, 13 * mm, 31 * mm], extra=extra)
    return [Paragraph("Inputs used and missing", s.h2), table]


_DECISION_WORDS = {"accept": "Accepted", "override": "Overridden", "reject": "Rejected"}


def _code_text(suggestion: ReportSuggestion) -> str:
    system = "SNOMED CT" if suggestion.code_system == SNOMED else suggestion.code_system
    return f"{system} {suggestion.code}"


def _suggestions(data: ReportData, s: _Styles) -> list[Any]:
    title = Paragraph("Suggestions", s.h2)
    if data.model is None:
        return [
            title,
            Paragraph(
                "No analysis yet: this case has not been analysed, so there are no suggestions, "
                "explanations or model card; the inputs are shown as they are.",
                s.muted,
            ),
        ]
    if not data.suggestions:
        return [title, Paragraph("The analysis made no suggestions.", s.muted)]
    head = ["#", "Finding", "Code", "Calibrated", "Raw", "Model call", "Critical", "Decision"]
    rows: list[list[Any]] = [[Paragraph(h, s.head) for h in head]]
    extra: list[tuple[Any, ...]] = []
    for row_index, item in enumerate(data.suggestions, start=1):
        call = (
            Paragraph("<b>abstained – review</b>", s.cell)
            if item.abstained
            else Paragraph("suggested", s.cell)
        )
        critical = (
            Paragraph(f'<font color="#{CRITICAL.hexval()[2:]}"><b>critical</b></font>', s.cell)
            if item.critical
            else Paragraph("–", s.cell)
        )
        decision = _DECISION_WORDS.get(item.decision or "", item.decision or "pending")
        rows.append(
            [
                Paragraph(str(item.rank), s.cell),
                Paragraph(_x(item.display), s.cell_bold),
                Paragraph(_x(_code_text(item)), s.cell),
                Paragraph(f"<b>{_pct(item.calibrated_probability)}</b>", s.cell),
                Paragraph(_pct(item.probability), s.cell),
                call,
                critical,
                Paragraph(_x(decision), s.cell),
            ]
        )
        if item.abstained:
            extra.append(("BACKGROUND", (0, row_index), (-1, row_index), ABSTAIN_FILL))
    for index in range(len(rows)):
        extra.append(("ALIGN", (3, index), (4, index), "RIGHT"))
    table = _table(
        rows,
        [7 * mm, 45 * mm, 25 * mm, 19 * mm, 14 * mm, 23 * mm, 17 * mm, 24 * mm],
        extra=extra,
    )
    calibration = data.model.calibration or "the bundle's calibration"
    legend = Paragraph(
        f"<b>Calibrated</b>: probability after calibration ({_x(calibration)}); "
        "<b>Raw</b>: the model's uncalibrated output. <b>Abstained – review</b>: the model's "
        "prediction set was unsure about this label, so it makes no call and a clinician must "
        "review it. <b>Critical</b>: flagged critical in the model bundle.",
        s.muted,
    )
    return [title, table, Spacer(1, 1.5 * mm), legend]


def _contributions(data: ReportData, s: _Styles) -> list[Any]:
    title = Paragraph("How much each input counted", s.h2)
    if data.model is None:
        return []
    if not data.contributions and not data.gates:
        return [title, Paragraph("No modality contributions were stored.", s.muted)]
    label = _x(data.explained_label or "the top suggestion")
    text = Paragraph(
        f"For <b>{label}</b>: each bar is how many percentage points the calibrated "
        "probability drops when that input is left out (negative: it rises); the gate is the "
        "weight the fusion layer gave the input (gates sum to 1).",
        s.muted,
    )
    chart = contribution_chart(data.contributions, data.gates, CONTENT_W)
    return [KeepTogether([title, text, Spacer(1, 1.5 * mm), chart])]


def _missing_reason(data: ReportData, modality: str, default: str) -> str:
    reason = data.inputs_missing.get(modality)
    return f"{default} ({reason})." if reason else f"{default}."


def _slide(data: ReportData, s: _Styles) -> list[Any]:
    title = Paragraph("Pathology slide", s.h2)
    slide: SlideFigure | None = data.slide
    if slide is None:
        return [title, Paragraph(_missing_reason(data, "pathology", "No slide"), s.muted)]
    facts = [f"level 0: {slide.level0_width:,} × {slide.level0_height:,} px"]
    if slide.microns_per_pixel:
        facts.append(f"{slide.microns_per_pixel:.3g} µm/px")
    else:
        facts.append("pixel size unknown (no scale bar)")
    if slide.heatmap is not None:
        facts.append(f"tiles {slide.heatmap.tile_size_level0} px")
        if slide.microns_per_pixel:
            side = slide.heatmap.tile_size_level0 * slide.microns_per_pixel
            facts[-1] += f" ({format_length_um(round(side, 1))})"
        facts.append(f"{len(slide.heatmap.tiles):,} tiles scored")
    lines = [Paragraph(" · ".join(_x(f) for f in facts), s.muted)]
    analysed = data.model is not None  # without an analysis nothing is explained yet
    if not analysed:
        lines.append(Paragraph("No analysis yet: thumbnail only.", s.muted))
    elif not data.include_heatmaps:
        lines.append(
            Paragraph("Heatmaps were left out of this report by setting; thumbnail only.", s.muted)
        )
    elif slide.heatmap is None:
        lines.append(Paragraph("No heatmap is stored for this slide; thumbnail only.", s.muted))
    elif data.explained_label:
        lines.append(
            Paragraph(
                f"Relevance for <b>{_x(data.explained_label)}</b>: the model's attention over "
                "the tiles it read, the highest tile scaled to 1.",
                s.muted,
            )
        )
    panel = SlidePanel(slide, CONTENT_W, include_heatmap=data.include_heatmaps and analysed)
    return [KeepTogether([title, *lines, Spacer(1, 2 * mm), panel])]


def _ecg(data: ReportData, s: _Styles) -> list[Any]:
    figure: EcgFigure | None = data.ecg
    title = Paragraph("ECG", s.h2)
    if figure is None:
        return [title, Paragraph(_missing_reason(data, "ecg", "No ECG"), s.muted)]
    recording = figure.recording
    if recording.lead_count == 0 or recording.samples.shape[1] < 2:
        return [title, Paragraph("The ECG has no samples to draw.", s.muted)]
    relevance = figure.relevance if data.model is not None else None
    grid = EcgGrid(recording, relevance)
    caption = Paragraph(
        f"<b>25 mm/s, 10 mm/mV</b> · 1 mm / 5 mm grid · calibration pulse 1 mV · "
        f"{_x(grid.layout.description)} · {recording.sampling_rate_hz:g} Hz. "
        "Print at 100 % (no fit to page) for true scale.",
        s.muted,
    )
    r, g, b = RELEVANCE_RGB
    shade = colors.Color(r, g, b).hexval()[2:]
    if relevance is not None:
        label = _x(data.explained_label or "the top suggestion")
        legend_text = (
            f'<font color="#{shade}">■</font> Shading: relevance for <b>{label}</b> per lead and '
            f"{max(relevance.bin_s, SHADE_BLOCK_S):g} s block (darker = more relevant, relative "
            "to the most relevant block on this page; blocks under 15 % of it are left clear)."
        )
    else:
        legend_text = "No ECG relevance map is stored; the trace is shown without shading."
    flow: list[Any] = [
        title,
        caption,
        Spacer(1, 2 * mm),
        grid,
        Spacer(1, 1.5 * mm),
        Paragraph(legend_text, s.muted),
    ]
    flow += _measurements(figure, s, grid.width)
    return flow


def _measurements(figure: EcgFigure, s: _Styles, width: float) -> list[Any]:
    items = list(figure.measurements.items())
    if not items:
        return [Paragraph("No ECG measurements were stored.", s.muted)]
    per_row = min(6, len(items))
    rows: list[list[Any]] = []
    for start in range(0, len(items), per_row):
        row: list[Any] = []
        for name, (value, unit) in items[start : start + per_row]:
            row.append(
                [
                    Paragraph(_x(name), s.head),
                    Paragraph(f"<b>{_x(value)}</b> {_x(unit)}", s.cell),
                ]
            )
        row += [""] * (per_row - len(row))
        rows.append(row)
    table = _table(
        rows,
        [width / per_row] * per_row,
        header=False,
        extra=[("BOX", (0, 0), (-1, -1), 0.5, RULE), ("INNERGRID", (0, 0), (-1, -1), 0.3, RULE)],
    )
    table.hAlign = "LEFT"
    return [Spacer(1, 2 * mm), Paragraph("Measurements", s.head), Spacer(1, 1 * mm), table]


def _sentences(text: str) -> list[tuple[int, int]]:
    """Sentence and line spans of a note (start, end), whitespace between them left out."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in re.finditer(r"(?<=[.!?])\s+|\s*\n\s*", text):
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _window(text: str, span: tuple[int, int], centre: int, half: int = 220) -> tuple[int, int]:
    """A long sentence cut to about ``2 * half`` characters around ``centre``, at spaces."""
    start, end = span
    if end - start <= 2 * half:
        return span
    lo = max(start, centre - half)
    hi = min(end, centre + half)
    space = text.rfind(" ", start, lo + 1)
    lo = space + 1 if space > start else lo
    space = text.find(" ", hi, end)
    hi = space if space != -1 else hi
    return lo, hi


def _top_words(note: NoteHighlights) -> list[WordRelevance]:
    words = [w for w in note.words if w.score and math.isfinite(w.score) and w.end > w.start]
    words.sort(key=lambda w: (-abs(w.score), w.start))
    if not words:
        return []
    floor = 0.1 * abs(words[0].score)  # leave out the near-zero tail
    return [w for w in words[:NOTE_TOP_WORDS] if abs(w.score) >= floor]


def _mark(text: str, lo: int, hi: int, words: Sequence[WordRelevance]) -> str:
    """Escaped text[lo:hi] with the given words highlighted (support orange, against blue)."""
    out: list[str] = []
    cursor = lo
    for word in sorted(words, key=lambda w: w.start):
        if word.start < cursor or word.end > hi or word.start < lo:
            continue
        out.append(_x(text[cursor : word.start]))
        colour = SUPPORT_HL if word.supports else OPPOSE_HL
        out.append(f'<font backColor="{colour}">{_x(text[word.start : word.end])}</font>')
        cursor = word.end
    out.append(_x(text[cursor:hi]))
    return "".join(out)


def note_excerpt(
    note: NoteHighlights, *, highlights: bool, max_chars: int = NOTE_MAX_CHARS
) -> tuple[list[tuple[int, int]], list[WordRelevance]]:
    """The note spans to print (in text order) and the highlighted words.

    With highlights: the sentences around the most relevant words, most relevant first, until
    ``max_chars``; without: the note's opening sentences."""
    text = note.text
    spans = _sentences(text)
    if not highlights:
        chosen, used = [], 0
        for span in spans:
            piece = _window(text, span, span[0], max_chars // 2)
            if used and used + piece[1] - piece[0] > max_chars // 2:
                break
            chosen.append(piece)
            used += piece[1] - piece[0]
        return chosen, []
    top = _top_words(note)
    picked: dict[tuple[int, int], None] = {}
    used = 0
    for word in top:
        for span in spans:
            if span[0] <= word.start < span[1]:
                piece = _window(text, span, word.start)
                if piece in picked or any(p[0] <= word.start < p[1] for p in picked):
                    break
                if used + piece[1] - piece[0] > max_chars and picked:
                    break
                picked[piece] = None
                used += piece[1] - piece[0]
                break
    if not picked:
        return note_excerpt(note, highlights=False, max_chars=max_chars)
    return sorted(picked), top


def _note(data: ReportData, s: _Styles) -> list[Any]:
    title = Paragraph("Clinical note (excerpt)", s.h2)
    note = data.note
    if note is None:
        return [title, Paragraph(_missing_reason(data, "note", "No note"), s.muted)]
    highlights = data.include_note_highlights and bool(note.words) and data.model is not None
    spans, words = note_excerpt(note, highlights=highlights)
    shown = sum(b - a for a, b in spans)
    version = f"note version {note.note_version}, " if note.note_version is not None else ""
    flow: list[Any] = [
        title,
        Paragraph(
            f"Excerpt: {shown:,} of {len(note.text):,} characters ({version}the exact text the "
            f"model read; sha256 {note.text_sha256[:12]}…). Gaps are marked […].",
            s.muted,
        ),
    ]
    if highlights:
        label = _x(data.explained_label or "the top suggestion")
        flow.append(
            Paragraph(
                f'<font backColor="{SUPPORT_HL}">&nbsp;supports&nbsp;</font> and '
                f'<font backColor="{OPPOSE_HL}">&nbsp;speaks against&nbsp;</font> '
                f"<b>{label}</b>: the {len(words)} words with the largest relevance.",
                s.muted,
            )
        )
    elif data.model is None:
        flow.append(Paragraph("No analysis yet: no word highlights.", s.muted))
    elif not data.include_note_highlights:
        flow.append(Paragraph("Word highlights were left out of this report by setting.", s.muted))
    flow.append(Spacer(1, 1.5 * mm))
    paragraphs: list[str] = []
    previous_end: int | None = None
    current: list[str] = []
    for lo, hi in spans:
        gap = text_gap(note.text, previous_end, lo)
        if gap and current:
            paragraphs.append(" ".join(current))
            current = []
        prefix = "[…] " if gap and (previous_end is not None or lo > 0) else ""
        if current and "\n" in note.text[previous_end:lo]:
            current.append("<br/>")
        current.append(prefix + _mark(note.text, lo, hi, words))
        previous_end = hi
    if current:
        tail = " […]" if previous_end is not None and note.text[previous_end:].strip() else ""
        paragraphs.append(" ".join(current) + tail)
    body = [Paragraph(p, s.note) for p in paragraphs]
    flow.append(_boxed(body, colors.white, RULE, CONTENT_W))
    if highlights and words:
        listed = ", ".join(
            f"{_x(note.text[w.start : w.end])} ({w.score:+.2f})" for w in words[:NOTE_TOP_WORDS]
        )
        flow += [Spacer(1, 1.5 * mm), Paragraph(f"Most relevant words: {listed}.", s.muted)]
    return flow


def text_gap(text: str, previous_end: int | None, start: int) -> bool:
    """Whether printable text was left out between the previous span and this one."""
    begin = 0 if previous_end is None else previous_end
    return bool(text[begin:start].strip())


def _decisions(data: ReportData, s: _Styles) -> list[Any]:
    title = Paragraph("Clinician decisions", s.h2)
    if not data.decisions:
        return [title, Paragraph("No decisions recorded.", s.muted)]
    head = ["Action", "Suggestion", "Reason", "Override code", "By", "When"]
    rows: list[list[Any]] = [[Paragraph(h, s.head) for h in head]]
    for decision in data.decisions:
        rows.append(_decision_row(decision, s))
    table = _table(rows, [23 * mm, 34 * mm, 46 * mm, 30 * mm, 18 * mm, 23 * mm])
    return [title, table]


def _decision_row(decision: ReportDecision, s: _Styles) -> list[Any]:
    code = "–"
    if decision.override_code:
        system = "SNOMED CT" if decision.override_code_system == SNOMED else "code"
        code = f"{decision.override_display or ''} ({system} {decision.override_code})".strip()
    return [
        Paragraph(f"<b>{_x(_DECISION_WORDS.get(decision.action, decision.action))}</b>", s.cell),
        Paragraph(_x(decision.suggestion_display or "free diagnosis"), s.cell),
        Paragraph(_x(decision.reason or "–"), s.cell),
        Paragraph(_x(code), s.cell),
        Paragraph(_x(decision.user), s.cell),
        Paragraph(_x(_when(decision.decided_at)), s.cell),
    ]


def _signature(data: ReportData, s: _Styles) -> list[Any]:
    title = Paragraph("Final impression and signature", s.h2)
    sign = data.sign_off
    if sign is None:
        box = _boxed(
            [
                Paragraph("<b>Not signed.</b>", s.banner),
                Paragraph(
                    "No clinician has signed this case: the report is preliminary and there is "
                    "no final impression.",
                    s.banner,
                ),
            ],
            UNSIGNED_FILL,
            CRITICAL,
            CONTENT_W,
        )
        return [KeepTogether([title, box])]
    content = [
        Paragraph("<b>Final impression</b>", s.banner),
        Paragraph(_x(sign.final_impression), s.body),
        Spacer(1, 3 * mm),
        Paragraph(
            f"Electronically signed by <b>{_x(sign.user)}</b> on {_x(_when(sign.signed_at))}. "
            f"Meaning of the signature: {_x(sign.meaning)}.",
            s.body,
        ),
        Paragraph(f"Signed content SHA-256: {_x(sign.content_sha256)}", s.mono),
    ]
    return [KeepTogether([title, _boxed(content, colors.white, NAVY, CONTENT_W)])]


def _model_card(model: ModelSummary | None, s: _Styles) -> list[Any]:
    title = Paragraph("Model card summary", s.h2)
    if model is None:
        return [title, Paragraph("No analysis yet: no model was used.", s.muted)]
    flow: list[Any] = [
        title,
        Paragraph(f"<b>{_x(model.name)}</b>, version {_x(model.version)}", s.body),
        Spacer(1, 1.5 * mm),
        Paragraph(f"<b>Intended use.</b> {_x(model.intended_use)}", s.body),
        Spacer(1, 1.5 * mm),
        Paragraph(f"<b>Training data.</b> {_x(model.training_data or 'not stated')}", s.body),
    ]
    if model.calibration:
        flow += [
            Spacer(1, 1.5 * mm),
            Paragraph(f"<b>Calibration.</b> {_x(model.calibration)}", s.body),
        ]
    if model.metrics:
        rows: list[list[Any]] = [
            [Paragraph("Metric", s.head), Paragraph("Value (95 % CI)", s.head)]
        ]
        rows += [[Paragraph(_x(k), s.cell), Paragraph(_x(v), s.cell)] for k, v in model.metrics]
        flow += [Spacer(1, 2 * mm), _table(rows, [90 * mm, 84 * mm])]
    else:
        flow.append(Paragraph("No evaluation metrics are recorded in the model card.", s.muted))
    if model.limits:
        flow += [Spacer(1, 2 * mm), Paragraph("<b>Known limits</b>", s.body)]
        flow += [
            Paragraph(_x(limit), s.bullet, bulletText="•")
            for limit in model.limits
            if limit.strip()
        ]
    return flow


# --------------------------------------------------------------------------------------------


def _story(data: ReportData) -> list[Any]:
    s = _Styles()

    story: list[Any] = [*_banners(data, s), *_meta(data, s), *_inputs(data, s)]
    story += _suggestions(data, s)
    story += _contributions(data, s)
    story += _slide(data, s)
    if data.ecg is not None and data.ecg.recording.lead_count > 0:
        story += [NextPageTemplate("landscape"), PageBreak(), *_ecg(data, s)]
        story += [NextPageTemplate("portrait"), PageBreak()]
    else:
        story += _ecg(data, s)
    story += _note(data, s)
    story += [CondPageBreak(50 * mm), *_decisions(data, s), *_signature(data, s)]
    story += [CondPageBreak(70 * mm), *_model_card(data.model, s)]
    return story


def render_pdf(data: ReportData) -> bytes:
    """The case's explanation report as PDF bytes (deterministic for the same data)."""
    register_fonts()
    # Binary streams: ASCII85 only makes files 25 % larger, and reportlab's pure-Python
    # encoder (its C accelerator is a separate package) took most of the render time.
    rl_config.useA85 = 0
    buffer = io.BytesIO()
    doc = BaseDocTemplate(
        buffer,
        pagesize=PORTRAIT,
        title=f"{REPORT_TITLE} – case {data.case_uid} v{data.case_version}",
        author=f"ClinicFusion ({data.generated_by})",
        subject=(data.model.name + " " + data.model.version) if data.model else "no analysis",
        creator="ClinicFusion",
        keywords="research use only; not a medical device",
        invariant=1,
        pageCompression=1,
        initialFontName=FONTS.regular,
        leftMargin=MARGIN_X,
        rightMargin=MARGIN_X,
        topMargin=TOP_MARGIN,
        bottomMargin=BOTTOM_MARGIN,
    )
    furniture = _furniture(data)
    portrait_frame = Frame(
        MARGIN_X,
        BOTTOM_MARGIN,
        PORTRAIT[0] - 2 * MARGIN_X,
        PORTRAIT[1] - TOP_MARGIN - BOTTOM_MARGIN,
        id="portrait",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    land_frame = Frame(
        LAND_MARGIN_X,
        BOTTOM_MARGIN - 2 * mm,
        LANDSCAPE[0] - 2 * LAND_MARGIN_X,
        LANDSCAPE[1] - TOP_MARGIN - BOTTOM_MARGIN + 2 * mm,
        id="landscape",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    doc.addPageTemplates(
        [
            PageTemplate("portrait", [portrait_frame], onPage=furniture, pagesize=PORTRAIT),
            PageTemplate("landscape", [land_frame], onPage=furniture, pagesize=LANDSCAPE),
        ]
    )
    doc.build(_story(data), canvasmaker=partial(_ReportCanvas, generated_at=data.generated_at))
    return buffer.getvalue()
