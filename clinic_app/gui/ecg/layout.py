"""Paper geometry of the ECG viewer, in millimetres and pixels, without Qt (easy to test).

The page is laid out like a printed 12-lead ECG: a calibration margin, 250 mm of trace (10 s at
25 mm/s), three rows of four leads whose columns show consecutive 2.5 s stretches, and a rhythm
strip over the whole window. Every row maps time to x the same way, so a caliper on any row
reads the same interval and a column boundary is a moment in time, not a gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clinic_app.domain.signals import STANDARD_LEADS

#: Paper speeds and gains offered (mm/s, mm/mV); 25 and 10 are the clinical standard.
SPEEDS_MM_PER_S: tuple[float, ...] = (12.5, 25.0, 50.0)
GAINS_MM_PER_MV: tuple[float, ...] = (5.0, 10.0, 20.0)
DEFAULT_SPEED_MM_PER_S = 25.0
DEFAULT_GAIN_MM_PER_MV = 10.0

#: The 3x4 layout of a 12-lead printout: rows of leads, columns of consecutive time.
TWELVE_LEAD_GRID: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)

MM_PER_INCH = 25.4
HEADER_MM = 10.0  # title and calibration text
CALIBRATION_MARGIN_MM = 15.0  # room for a 0.2 s calibration pulse even at 50 mm/s
TRACE_WIDTH_MM = 250.0  # 10 s at 25 mm/s, as on an A4/letter printout
RIGHT_MARGIN_MM = 5.0
FOOTER_MM = 10.0
ANNOTATION_LANE_MM = 10.0  # rhythm episodes (upper half) and beat symbols (lower half)
ROW_HEIGHT_MV = 4.0  # each row spans +-2 mV around its baseline at any gain
CALIBRATION_PULSE_S = 0.2
CALIBRATION_PULSE_MV = 1.0
PAPER_WIDTH_MM = CALIBRATION_MARGIN_MM + TRACE_WIDTH_MM + RIGHT_MARGIN_MM


@dataclass(frozen=True, slots=True)
class LeadSegment:
    """One lead drawn over ``start_s``..``end_s`` between x ``x0`` and ``x1`` on a row."""

    lead: str
    signal_index: int  # row of ``EcgRecording.samples``
    start_s: float
    end_s: float
    x0: float
    x1: float


@dataclass(frozen=True, slots=True)
class EcgRow:
    """A horizontal band of paper: its leads, its baseline and, for the rhythm strip, the lane
    above it where beat symbols and rhythm episodes are written."""

    index: int
    top: float
    bottom: float
    baseline: float
    segments: tuple[LeadSegment, ...]
    is_rhythm: bool = False
    lane_top: float | None = None  # annotation lane above ``top`` (rhythm row only)

    def segment_at_x(self, x: float) -> LeadSegment | None:
        """The lead drawn at ``x`` (the first/last one when ``x`` lies in a margin)."""
        if not self.segments:
            return None
        for segment in self.segments:
            if segment.x0 <= x < segment.x1:
                return segment
        return self.segments[0] if x < self.segments[0].x0 else self.segments[-1]


@dataclass(frozen=True, slots=True)
class EcgGeometry:
    """Where everything goes for one recording at one speed, gain, zoom and time offset.

    Pixels are logical pixels of the widget; ``px_per_mm`` is the screen's logical DPI / 25.4
    times the zoom factor, so at zoom 1 one millimetre of grid is one physical millimetre."""

    px_per_mm: float
    zoom: float
    speed_mm_per_s: float
    gain_mm_per_mv: float
    offset_s: float
    window_s: float  # seconds across the full trace width at this speed
    span_s: float  # seconds drawn: the window, or less of a recording shorter than it
    width: float
    height: float
    trace_left: float
    trace_right: float
    rows: tuple[EcgRow, ...]
    twelve_lead: bool

    @property
    def page_right(self) -> float:
        """Right end of the full trace width (where right-aligned header text ends)."""
        return (CALIBRATION_MARGIN_MM + TRACE_WIDTH_MM) * self.px_per_mm

    @property
    def px_per_s(self) -> float:
        return self.px_per_mm * self.speed_mm_per_s

    @property
    def px_per_mv(self) -> float:
        return self.px_per_mm * self.gain_mm_per_mv

    @property
    def minor_grid_px(self) -> float:
        """Spacing of the 1 mm lines in pixels."""
        return self.px_per_mm

    @property
    def major_grid_px(self) -> float:
        """Spacing of the 5 mm lines in pixels."""
        return 5.0 * self.px_per_mm

    def x_at(self, time_s: float) -> float:
        return self.trace_left + (time_s - self.offset_s) * self.px_per_s

    def time_at(self, x: float) -> float:
        return self.offset_s + (x - self.trace_left) / self.px_per_s

    def y_at(self, row: EcgRow, millivolts: float) -> float:
        return row.baseline - millivolts * self.px_per_mv

    def row_at(self, y: float) -> EcgRow | None:
        """The row whose band (with its annotation lane) contains ``y``."""
        for row in self.rows:
            top = row.lane_top if row.lane_top is not None else row.top
            if top <= y < row.bottom:
                return row
        return None

    def segment(self, lead: str) -> LeadSegment | None:
        """The first segment showing ``lead`` (the 3x4 cell rather than the rhythm strip)."""
        for row in self.rows:
            for segment in row.segments:
                if segment.lead == lead:
                    return segment
        return None

    def row_of(self, lead: str) -> EcgRow | None:
        for row in self.rows:
            if any(segment.lead == lead for segment in row.segments):
                return row
        return None

    @property
    def rhythm_row(self) -> EcgRow | None:
        return next((row for row in self.rows if row.is_rhythm), None)


def has_twelve_leads(lead_names: tuple[str, ...]) -> bool:
    """Whether all 12 standard leads are present, so the 3x4 layout can be drawn."""
    return set(STANDARD_LEADS) <= set(lead_names)


def window_seconds(speed_mm_per_s: float) -> float:
    """Seconds of signal across the trace width at this paper speed (10 s at 25 mm/s)."""
    return TRACE_WIDTH_MM / speed_mm_per_s


def compute_geometry(
    lead_names: tuple[str, ...],
    rhythm_lead: str | None,
    *,
    px_per_mm: float,
    zoom: float,
    speed_mm_per_s: float,
    gain_mm_per_mv: float,
    offset_s: float,
    duration_s: float,
    with_annotation_lane: bool,
) -> EcgGeometry:
    """Lay out the page: the 3x4 grid plus a rhythm strip when the 12 standard leads are
    present (other leads as full-width rows under the grid), else one full-width row per lead
    with the rhythm lead's row carrying the annotation lane.

    A recording shorter than the page (10 s at 12.5 mm/s fills only half of it) keeps its
    calibrated speed and its four columns split what there is, so no lead is left blank."""
    window = window_seconds(speed_mm_per_s)
    span = max(min(window, duration_s), 1e-6)
    mm = px_per_mm
    trace_left = CALIBRATION_MARGIN_MM * mm
    trace_right = trace_left + span * speed_mm_per_s * mm
    row_height = ROW_HEIGHT_MV * gain_mm_per_mv * mm
    lane = ANNOTATION_LANE_MM * mm
    index_of = {name: i for i, name in enumerate(lead_names)}
    twelve = has_twelve_leads(lead_names)
    if rhythm_lead not in index_of:
        rhythm_lead = ("II" if twelve else lead_names[0]) if lead_names else None

    def full_width(name: str) -> tuple[LeadSegment, ...]:
        return (
            LeadSegment(name, index_of[name], offset_s, offset_s + span, trace_left, trace_right),
        )

    plans: list[tuple[tuple[LeadSegment, ...], bool]] = []
    if twelve:
        column_s = span / 4
        column_px = (trace_right - trace_left) / 4
        for grid_row in TWELVE_LEAD_GRID:
            cells = tuple(
                LeadSegment(
                    name,
                    index_of[name],
                    offset_s + c * column_s,
                    offset_s + (c + 1) * column_s,
                    trace_left + c * column_px,
                    trace_left + (c + 1) * column_px,
                )
                for c, name in enumerate(grid_row)
            )
            plans.append((cells, False))
        plans.extend((full_width(n), False) for n in lead_names if n not in STANDARD_LEADS)
        if rhythm_lead is not None:
            plans.append((full_width(rhythm_lead), True))
    else:
        plans.extend((full_width(n), n == rhythm_lead) for n in lead_names)

    rows: list[EcgRow] = []
    y = HEADER_MM * mm
    for segments, is_rhythm in plans:
        lane_top = None
        if is_rhythm and with_annotation_lane:
            lane_top = y
            y += lane
        rows.append(
            EcgRow(
                index=len(rows),
                top=y,
                bottom=y + row_height,
                baseline=y + row_height / 2,
                segments=segments,
                is_rhythm=is_rhythm,
                lane_top=lane_top,
            )
        )
        y += row_height
    height = y + FOOTER_MM * mm
    return EcgGeometry(
        px_per_mm=px_per_mm,
        zoom=zoom,
        speed_mm_per_s=speed_mm_per_s,
        gain_mm_per_mv=gain_mm_per_mv,
        offset_s=offset_s,
        window_s=window,
        span_s=span,
        width=PAPER_WIDTH_MM * mm,
        height=height,
        trace_left=trace_left,
        trace_right=trace_right,
        rows=tuple(rows),
        twelve_lead=twelve,
    )


def envelope(
    values: npt.NDArray[np.floating], samples_per_column: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Decimate ``values`` to at most two points per drawing column (min/max envelope).

    Returns (sample positions, values): with fewer than two samples per column the samples
    themselves; else, per column of ``k`` samples, its minimum and maximum at the column's
    centre in the order they occur, so spikes (pacing, QRS) survive and the line stays
    continuous. A column holding NaN (an invalid stretch) stays NaN, which breaks the line."""
    data = np.asarray(values, dtype=np.float64)
    n = data.shape[0]
    k = math.floor(samples_per_column)
    if k < 2 or n <= 2 * k:
        return np.arange(n, dtype=np.float64), data
    columns = math.ceil(n / k)
    padded = np.empty(columns * k, dtype=np.float64)
    padded[:n] = data
    padded[n:] = data[-1]
    blocks = padded.reshape(columns, k)
    with np.errstate(invalid="ignore"):
        low_at = np.argmin(blocks, axis=1)
        high_at = np.argmax(blocks, axis=1)
    rows = np.arange(columns)
    low = blocks[rows, low_at]
    high = blocks[rows, high_at]
    invalid = np.isnan(blocks).any(axis=1)
    low[invalid] = np.nan
    high[invalid] = np.nan
    low_first = low_at <= high_at
    first = np.where(low_first, low, high)
    second = np.where(low_first, high, low)
    centre = rows * k + (k - 1) / 2.0
    positions = np.repeat(centre, 2)
    out = np.empty(columns * 2, dtype=np.float64)
    out[0::2] = first
    out[1::2] = second
    return positions, out


def finite_runs(values: npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    """Half-open index ranges of consecutive finite values (where a polyline may be drawn)."""
    finite = np.isfinite(values)
    if finite.all():
        return [(0, int(values.shape[0]))] if values.shape[0] else []
    edges = np.flatnonzero(np.diff(np.concatenate(([False], finite, [False])).astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2], strict=True) if b - a > 1]


#: Multipliers of ``EcgRecording.units`` to millivolts.
_TO_MILLIVOLTS = {
    "mv": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,  # micro sign
    "μv": 1e-3,  # Greek mu
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "nv": 1e-6,
}


def millivolt_factor(units: str) -> float | None:
    """What multiplies samples in ``units`` into millivolts; None for a unit that is unknown."""
    return _TO_MILLIVOLTS.get(units.strip().lower())
