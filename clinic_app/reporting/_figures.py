"""Vector and raster figures of the PDF report: ECG on a calibrated grid, slide overlay, bars.

Everything is drawn straight onto the reportlab canvas at true scale (an ECG millimetre is a
paper millimetre when printed at 100 %). Long polylines and grids are written as one PDF path
each, and the heatmap overlay is one image, so a report stays fast to make and to print.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from reportlab.graphics.shapes import Drawing, Line, Rect, String
from reportlab.lib.colors import Color, HexColor
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import Flowable

from clinic_app.domain.explanations import EcgRelevanceMap, TileHeatmap
from clinic_app.domain.signals import STANDARD_LEADS, EcgRecording
from clinic_app.reporting.data import SlideFigure
from clinic_app.reporting.fonts import FONTS

# ECG paper: the conventions of every 12-lead printout.
PAPER_SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
CAL_MM = 10.0  # room at the start of each row for the 1 mV calibration pulse
ECG_MINOR = HexColor("#F4C7CE")
ECG_MAJOR = HexColor("#E07B8A")
ECG_TRACE = HexColor("#111111")
#: Relevance shading is drawn in blocks of at least this many seconds (one big square).
SHADE_BLOCK_S = 0.2
RELEVANCE_RGB = (0.13, 0.42, 0.78)  # blue: distinct from the pink grid and the black trace
#: Polyline resolution: 0.2 mm of paper per min/max pair keeps every QRS peak (a printer dot
#: is ~0.04-0.1 mm) while cutting a 1 kHz recording to 250 points per second.
ECG_BIN_MM = 0.2
#: Inside the grid, coordinates are integers in 0.05 mm (finer than a 600 dpi printer dot).
UNITS_PER_MM = 20
UNITS_PER_PT = UNITS_PER_MM / mm

MODALITY_NAMES = {
    "pathology": "Pathology slide",
    "ecg": "ECG",
    "note": "Clinical note",
    "tabular": "Vital signs",
}

# matplotlib's "coolwarm" at 9 points (CLAM-style attention heatmaps): blue low, red high.
_COOLWARM = np.array(
    [
        (59, 76, 192),
        (98, 130, 234),
        (141, 176, 254),
        (185, 208, 249),
        (221, 220, 220),
        (245, 196, 172),
        (244, 152, 122),
        (221, 95, 75),
        (180, 4, 38),
    ],
    dtype=np.float64,
)
HEATMAP_ALPHA = 0.5
GREY = HexColor("#5F6B7A")
colors_white = HexColor("#FFFFFF")
LIGHT = HexColor("#E6EAF0")
GATE = HexColor("#8A98AB")
BAR_SUPPORT = HexColor("#2F6DB5")
BAR_OPPOSE = HexColor("#C8553D")


def modality_name(modality: str) -> str:
    return MODALITY_NAMES.get(modality, modality.capitalize())


def colour_map(values: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """RGB (0-255, float) of "coolwarm" for values in [0, 1] (clipped)."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_COOLWARM))
    return np.stack([np.interp(v, stops, _COOLWARM[:, c]) for c in range(3)], axis=-1)


def as_rgb(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """(H, W, 3) uint8 from grey (H, W), RGBA or RGB arrays."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def downsample(rgb: npt.NDArray[np.uint8], max_side: int) -> npt.NDArray[np.uint8]:
    """The image shrunk (area-averaged) so its longer side is at most ``max_side``."""
    from PIL import Image

    rgb = as_rgb(rgb)
    height, width = rgb.shape[:2]
    if max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(np.ascontiguousarray(rgb[..., :3]), mode="RGB")
    return np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.uint8)


def jpeg_reader(rgb: npt.NDArray[np.uint8], max_side: int = 900) -> tuple[ImageReader, int, int]:
    """An RGB array as a JPEG reportlab embeds unchanged (DCT), downsampled to ``max_side``."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(downsample(rgb, max_side)[..., :3]), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88, optimize=False, subsampling=0)
    buffer.seek(0)
    return ImageReader(buffer), image.width, image.height


def heatmap_overlay(
    thumbnail: npt.NDArray[np.uint8], heatmap: TileHeatmap
) -> npt.NDArray[np.uint8]:
    """The thumbnail with each scored tile tinted by its relevance (one array, vectorised)."""
    height, width = thumbnail.shape[:2]
    tile = max(1, heatmap.tile_size_level0)
    if not heatmap.tiles:
        return thumbnail.copy()
    xs = np.array([t.x for t in heatmap.tiles], dtype=np.int64)
    ys = np.array([t.y for t in heatmap.tiles], dtype=np.int64)
    scores = np.array([t.score for t in heatmap.tiles], dtype=np.float64)
    origin_x, origin_y = int(xs.min() % tile), int(ys.min() % tile)
    ix = (xs - origin_x) // tile
    iy = (ys - origin_y) // tile
    grid = np.full((int(iy.max()) + 1, int(ix.max()) + 1), np.nan)
    finite = np.isfinite(scores)
    grid_scores = np.where(finite, scores, -np.inf)
    flat = np.full(grid.size, -np.inf)
    np.maximum.at(flat, iy * grid.shape[1] + ix, grid_scores)
    grid = np.where(np.isfinite(flat), flat, np.nan).reshape(grid.shape)
    # Each thumbnail pixel -> the tile under it (nearest neighbour in level-0 space).
    sx = heatmap.level0_width / width
    sy = heatmap.level0_height / height
    col = np.floor(((np.arange(width) + 0.5) * sx - origin_x) / tile).astype(np.int64)
    row = np.floor(((np.arange(height) + 0.5) * sy - origin_y) / tile).astype(np.int64)
    col_ok = (col >= 0) & (col < grid.shape[1])
    row_ok = (row >= 0) & (row < grid.shape[0])
    # Colour the (small) tile grid once, then spread it over the pixels by indexing; blend in
    # 8.8 fixed point (uint16), which is several times faster than floats on a big thumbnail.
    scored_grid = np.isfinite(grid)
    tint_grid = np.rint(colour_map(grid)).astype(np.uint16)
    weight_grid = np.where(scored_grid, round(HEATMAP_ALPHA * 256), 0).astype(np.uint16)
    rows_idx = np.clip(row, 0, grid.shape[0] - 1)
    cols_idx = np.clip(col, 0, grid.shape[1] - 1)
    tint = tint_grid[rows_idx][:, cols_idx]
    weight = weight_grid[rows_idx][:, cols_idx]
    weight[~row_ok, :] = 0
    weight[:, ~col_ok] = 0
    weight = weight[..., None]
    base = thumbnail[..., :3].astype(np.uint16)
    blended = (base * (256 - weight) + tint * weight + 128) >> 8
    result: npt.NDArray[np.uint8] = blended.astype(np.uint8)
    return result


def nice_scale_length(max_um: float) -> float:
    """The largest 1-2-5 length (µm) not above ``max_um``."""
    if max_um <= 0 or not math.isfinite(max_um):
        return 0.0
    exponent = math.floor(math.log10(max_um))
    for factor in (5.0, 2.0, 1.0):
        value = factor * 10.0**exponent
        if value <= max_um:
            return value
    return 10.0 ** (exponent - 1) * 5.0


def format_length_um(value_um: float) -> str:
    if value_um >= 1000:
        return f"{value_um / 1000:g} mm"
    return f"{value_um:g} µm"


# --------------------------------------------------------------------------------------------
# Modality contribution chart


def contribution_chart(
    contributions: dict[str, float | None], gates: dict[str, float], width: float
) -> Drawing:
    """Horizontal bars: probability drop without each modality (pp) and its fusion gate."""
    modalities = list(dict.fromkeys([*contributions, *gates]))
    row_h, top = 6.5 * mm, 5 * mm
    height = top + row_h * max(1, len(modalities)) + 2 * mm
    drawing = Drawing(width, height)
    drawing.initialFontName = FONTS.regular  # else the renderer references Helvetica
    label_w, value_w, gate_w, gap = 34 * mm, 20 * mm, 34 * mm, 4 * mm
    bar_w = width - label_w - value_w - gate_w - 2 * gap - 14 * mm
    known = [abs(v) for v in contributions.values() if v is not None and math.isfinite(v)]
    span = max([0.05, *known])
    negative = any(v is not None and v < 0 for v in contributions.values())
    zero_x = label_w + (bar_w / 2 if negative else 0.0)
    half = bar_w / 2 if negative else bar_w
    gate_x = label_w + bar_w + value_w + 2 * gap
    head_y = height - top + 1.5 * mm

    def text(x: float, y: float, value: str, size: float = 7.5, **kw: Any) -> None:
        kw.setdefault("fontName", FONTS.regular)
        drawing.add(String(x, y, value, fontSize=size, **kw))

    text(
        label_w, head_y, "Drop in probability when left out (percentage points)", 7, fillColor=GREY
    )
    text(gate_x, head_y, "Fusion gate weight", 7, fillColor=GREY)
    axis_top = height - top
    drawing.add(Line(zero_x, 2 * mm, zero_x, axis_top, strokeColor=GREY, strokeWidth=0.6))
    for index, modality in enumerate(modalities):
        y = axis_top - (index + 1) * row_h + 2 * mm
        text(0, y + 1 * mm, modality_name(modality), 8.5, fontName=FONTS.bold)
        value = contributions.get(modality)
        if value is None or not math.isfinite(value):
            note = "only input: not measurable" if modality in contributions else "not measured"
            text(zero_x + 2 * mm, y + 1 * mm, note, 7.5, fillColor=GREY)
        else:
            length = half * min(1.0, abs(value) / span)
            x0 = zero_x if value >= 0 else zero_x - length
            colour = BAR_SUPPORT if value >= 0 else BAR_OPPOSE
            drawing.add(Rect(x0, y, length, 4.5 * mm, fillColor=colour, strokeColor=None))
            text(label_w + bar_w + gap, y + 1 * mm, f"{value * 100:+.1f} pp", 8.5)
        gate = gates.get(modality)
        if gate is not None and math.isfinite(gate):
            gw = gate_w * min(1.0, max(0.0, gate))
            drawing.add(Rect(gate_x, y, gate_w, 4.5 * mm, fillColor=LIGHT, strokeColor=None))
            drawing.add(Rect(gate_x, y, gw, 4.5 * mm, fillColor=GATE, strokeColor=None))
            text(gate_x + gate_w + 2 * mm, y + 1 * mm, f"{gate:.2f}", 8.5)
        else:
            text(gate_x, y + 1 * mm, "not fused", 7.5, fillColor=GREY)
    return drawing


# --------------------------------------------------------------------------------------------
# Slide: thumbnail, overlay, top tiles


class SlidePanel(Flowable):  # type: ignore[misc]
    """Thumbnail and heatmap overlay side by side, scale bars, colour bar and the top tiles."""

    def __init__(self, slide: SlideFigure, width: float, *, include_heatmap: bool) -> None:
        super().__init__()
        self.slide = slide
        self.width = width
        self.show_heatmap = include_heatmap and slide.heatmap is not None
        thumb = slide.thumbnail
        h, w = int(thumb.shape[0]), int(thumb.shape[1])
        panels = 2 if self.show_heatmap else 1
        gap = 6 * mm
        box_w = (width - gap * (panels - 1)) / panels if panels == 2 else width * 0.6
        box_h = 95 * mm
        scale = min(box_w / max(1, w), box_h / max(1, h))
        self.img_w, self.img_h = w * scale, h * scale
        self.gap = gap
        self.caption_h = 5 * mm
        self.legend_h = 9 * mm if self.show_heatmap else 0.0
        tiles = slide.top_tiles[:6]
        self.tiles = tiles
        self.tile_side = min(26 * mm, (width - 5 * 4 * mm) / 6)
        self.tiles_h = (self.tile_side + 13 * mm) if tiles else 0.0
        self.height = self.caption_h + self.img_h + self.legend_h + self.tiles_h + 2 * mm
        # ~200 dpi at the printed size is plenty; the overlay is computed at that size too.
        shown = downsample(as_rgb(thumb), 700)
        self.plain = jpeg_reader(shown)[0]
        self.overlay = (
            jpeg_reader(heatmap_overlay(shown, slide.heatmap))[0]
            if self.show_heatmap and slide.heatmap is not None
            else None
        )

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return self.width, self.height

    def _scale_bar(self, x: float, y: float) -> None:
        mpp = self.slide.microns_per_pixel
        if not mpp or self.slide.level0_width <= 0:
            return
        um_per_pt = mpp * self.slide.level0_width / self.img_w
        length_um = nice_scale_length(um_per_pt * self.img_w * 0.3)
        if length_um <= 0:
            return
        length = length_um / um_per_pt
        canvas = self.canv
        canvas.setFillColor(Color(1, 1, 1, alpha=0.8))
        canvas.rect(x + 2 * mm, y + 2 * mm, length + 4 * mm, 7 * mm, stroke=0, fill=1)
        canvas.setFillColor(ECG_TRACE)
        canvas.rect(x + 4 * mm, y + 3.5 * mm, length, 1.2 * mm, stroke=0, fill=1)
        canvas.setFont(FONTS.regular, 6.5)
        canvas.drawCentredString(x + 4 * mm + length / 2, y + 5.6 * mm, format_length_um(length_um))

    def draw(self) -> None:
        canvas = self.canv
        top = self.height
        y_img = top - self.caption_h - self.img_h
        canvas.setFont(FONTS.bold, 8)
        canvas.setFillColor(GREY)
        canvas.drawString(0, top - 3.5 * mm, "Slide thumbnail")
        canvas.drawImage(self.plain, 0, y_img, self.img_w, self.img_h)
        canvas.setStrokeColor(LIGHT)
        canvas.rect(0, y_img, self.img_w, self.img_h, stroke=1, fill=0)
        self._scale_bar(0, y_img)
        heatmap = self.slide.heatmap
        if self.overlay is not None and heatmap is not None:
            x = self.img_w + self.gap
            canvas.setFillColor(GREY)
            canvas.setFont(FONTS.bold, 8)
            canvas.drawString(x, top - 3.5 * mm, "Relevance overlay (MIL attention per tile)")
            canvas.drawImage(self.overlay, x, y_img, self.img_w, self.img_h)
            self._scale_bar(x, y_img)
            self._mark_top_tiles(x, y_img, heatmap)
            self._colour_bar(x, y_img - self.legend_h)
        if self.tiles:
            self._tile_strip(self.tiles_h)

    def _mark_top_tiles(self, x: float, y: float, heatmap: TileHeatmap) -> None:
        canvas = self.canv
        sx = self.img_w / max(1, self.slide.level0_width)
        sy = self.img_h / max(1, self.slide.level0_height)
        side = heatmap.tile_size_level0
        canvas.setLineWidth(0.9)
        canvas.setFont(FONTS.bold, 6.5)
        label = 3 * mm
        placed: list[tuple[float, float]] = []
        for rank, (_, _, tx, ty) in enumerate(self.tiles, start=1):
            w, h = max(1.2, side * sx), max(1.2, side * sy)
            rx, ry = x + tx * sx, y + self.img_h - ty * sy - h
            canvas.setStrokeColor(ECG_TRACE)
            canvas.rect(rx, ry, w, h, stroke=1, fill=0)
            # the number inside a big box, beside a small one; left out where it would cover
            # another number (clustered tiles), the strip below still lists them all
            lx = rx if w >= 2 * label else rx - label
            ly = ry + h - label if h >= 2 * label else ry + h
            lx = min(max(lx, x), x + self.img_w - label)
            ly = min(max(ly, y), y + self.img_h - label)
            if any(abs(lx - px) < label and abs(ly - py) < label for px, py in placed):
                continue
            placed.append((lx, ly))
            canvas.setFillColor(colors_white)
            canvas.rect(lx, ly, label, label, stroke=1, fill=1)
            canvas.setFillColor(ECG_TRACE)
            canvas.drawCentredString(lx + label / 2, ly + 0.7 * mm, str(rank))

    def _colour_bar(self, x: float, y: float) -> None:
        canvas = self.canv
        ramp = colour_map(np.linspace(0.0, 1.0, 128)).astype(np.uint8)[None, :, :]
        bar_w = 40 * mm
        canvas.drawImage(jpeg_reader(np.repeat(ramp, 2, axis=0))[0], x, y + 3.5 * mm, bar_w, 3 * mm)
        canvas.setFont(FONTS.regular, 6.5)
        canvas.setFillColor(GREY)
        canvas.drawString(x, y + 0.6 * mm, "0 (low)")
        canvas.drawRightString(x + bar_w, y + 0.6 * mm, "1 (most relevant tile)")
        canvas.drawString(
            x + bar_w + 3 * mm, y + 4 * mm, f"tint opacity {HEATMAP_ALPHA:.0%}; boxes: top tiles"
        )

    def _tile_strip(self, strip_h: float) -> None:
        canvas = self.canv
        side = self.tile_side
        step = side + 4 * mm
        canvas.setFont(FONTS.bold, 8)
        canvas.setFillColor(GREY)
        canvas.drawString(0, strip_h - 4 * mm, "Most relevant tiles (level-0 pixel coordinates)")
        y = strip_h - 6 * mm - side
        tile_um = None
        if self.slide.microns_per_pixel and self.slide.heatmap is not None:
            tile_um = self.slide.heatmap.tile_size_level0 * self.slide.microns_per_pixel
        for rank, (crop, score, tx, ty) in enumerate(self.tiles, start=1):
            x = (rank - 1) * step
            canvas.drawImage(jpeg_reader(crop, max_side=300)[0], x, y, side, side)
            canvas.setStrokeColor(LIGHT)
            canvas.rect(x, y, side, side, stroke=1, fill=0)
            canvas.setFillColor(ECG_TRACE)
            canvas.setFont(FONTS.bold, 7)
            canvas.drawString(x, y - 3.2 * mm, f"#{rank}  score {score:.2f}")
            canvas.setFont(FONTS.regular, 6.5)
            canvas.drawString(x, y - 6.2 * mm, f"x {tx:,}  y {ty:,}")
            if tile_um is not None:
                canvas.drawString(x, y - 9.0 * mm, f"side {format_length_um(round(tile_um, 1))}")


# --------------------------------------------------------------------------------------------
# ECG


@dataclass(frozen=True)
class EcgCell:
    """One lead's piece of the printout: recording time [t0, t1) drawn from ``x_mm``."""

    lead_index: int
    lead: str
    t0: float
    t1: float
    x_mm: float
    row: int


@dataclass(frozen=True)
class EcgLayout:
    cells: tuple[EcgCell, ...]
    rows: int
    row_pitch_mm: float
    width_mm: float
    height_mm: float
    window_start_s: float
    window_s: float
    description: str
    separators_mm: tuple[float, ...]


def plan_ecg_layout(
    recording: EcgRecording, relevance: EcgRelevanceMap | None, *, max_height_mm: float = 120.0
) -> EcgLayout:
    """Standard 3x4 + lead II rhythm strip for 12 leads; sensible strips for fewer."""
    duration = recording.duration_s
    start = 0.0
    if relevance is not None and 0.0 <= relevance.start_s < duration:
        start = relevance.start_s
    window = max(0.0, min(10.0, duration - start))
    names = recording.lead_names
    index = {name: i for i, name in enumerate(names)}
    cells: list[EcgCell] = []
    separators: list[float] = []
    if len(names) >= 5:
        if all(lead in index for lead in STANDARD_LEADS):
            order = [index[lead] for lead in STANDARD_LEADS]
        else:
            order = list(range(len(names)))
        columns = 4
        grid_rows = math.ceil(len(order) / columns)
        col_s = window / columns
        for position, lead_index in enumerate(order):
            col, row = divmod(position, grid_rows)
            t0 = start + col * col_s
            cells.append(
                EcgCell(
                    lead_index,
                    names[lead_index],
                    t0,
                    t0 + col_s,
                    CAL_MM + col * col_s * PAPER_SPEED_MM_S,
                    row,
                )
            )
        separators = [CAL_MM + c * col_s * PAPER_SPEED_MM_S for c in range(1, columns)]
        rhythm = index.get("II", order[0])
        cells.append(EcgCell(rhythm, names[rhythm], start, start + window, CAL_MM, grid_rows))
        rows = grid_rows + 1
        described = (
            f"{grid_rows}×{columns} leads at {col_s:g} s each + {window:g} s rhythm strip "
            f"({names[rhythm]})"
        )
    else:
        for row, name in enumerate(names):
            cells.append(EcgCell(row, name, start, start + window, CAL_MM, row))
        rows = max(1, len(names))
        described = f"{rows} lead{'s' if rows > 1 else ''}, {window:g} s each"
    pitch = min(30.0, max_height_mm / rows)
    height = math.ceil(rows * pitch / 5.0) * 5.0
    width = CAL_MM + math.ceil(window * PAPER_SPEED_MM_S / 5.0) * 5.0
    if duration > window + 1e-6:
        described += f"; {start:g}–{start + window:g} s of a {duration:g} s recording"
    return EcgLayout(
        tuple(cells), rows, pitch, width, height, start, window, described, tuple(separators)
    )


def _decimate(values: npt.NDArray[np.float64], per_bin: int) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.float64]
]:  # fmt: skip
    """Min/max pairs per bin of ``per_bin`` samples, in time order: (sample positions, values)."""
    n = values.size
    positions = np.arange(n, dtype=np.float64)
    if per_bin < 3 or n < 2 * per_bin:
        return positions, values
    bins = n // per_bin
    block = values[: bins * per_bin].reshape(bins, per_bin)
    filled = np.where(np.isnan(block), np.nanmean(block) if np.isfinite(block).any() else 0, block)
    lo = filled.argmin(axis=1)
    hi = filled.argmax(axis=1)
    first = np.minimum(lo, hi)
    second = np.maximum(lo, hi)
    base = np.arange(bins) * per_bin
    idx = np.stack([base + first, base + second], axis=1).reshape(-1)
    tail = np.arange(bins * per_bin, n)
    idx = np.concatenate([idx, tail])
    return positions[idx], values[idx]


def _path(xs_mm: npt.NDArray[np.float64], ys_mm: npt.NDArray[np.float64]) -> str:
    """PDF path operators (m/l) in grid units (see ``UNITS_PER_MM``); NaN breaks the line."""
    finite = np.isfinite(ys_mm) & np.isfinite(xs_mm)
    if not finite.any():
        return ""
    xi = np.rint(np.where(finite, xs_mm, 0.0) * UNITS_PER_MM).astype(np.int64)
    yi = np.rint(np.where(finite, ys_mm, 0.0) * UNITS_PER_MM).astype(np.int64)
    starts = finite & ~np.concatenate(([False], finite[:-1]))
    same = np.concatenate(([False], (xi[1:] == xi[:-1]) & (yi[1:] == yi[:-1])))
    keep = finite & (starts | ~same)
    ops = np.where(starts, "m", "l")[keep].tolist()
    return "\n".join(
        f"{x} {y} {op}" for x, y, op in zip(xi[keep].tolist(), yi[keep].tolist(), ops, strict=True)
    )


def _to_millivolts(recording: EcgRecording) -> npt.NDArray[np.float64]:
    factor = {"uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}.get(recording.units.lower(), 1.0)
    return np.asarray(recording.samples, dtype=np.float64) * factor


class EcgGrid(Flowable):  # type: ignore[misc]
    """The ECG at 25 mm/s and 10 mm/mV on 1/5 mm pink paper, relevance shaded behind it."""

    def __init__(self, recording: EcgRecording, relevance: EcgRelevanceMap | None) -> None:
        super().__init__()
        self.recording = recording
        self.relevance = relevance
        self.layout = plan_ecg_layout(recording, relevance)
        self.width = self.layout.width_mm * mm
        self.height = self.layout.height_mm * mm

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return self.width, self.height

    def _baseline_mm(self, row: int) -> float:
        """Baseline of a row, in mm from the bottom of the grid."""
        pitch = self.layout.row_pitch_mm
        return self.layout.height_mm - (row + 0.62) * pitch

    def draw(self) -> None:
        canvas = self.canv
        layout = self.layout
        canvas.saveState()
        clip = canvas.beginPath()
        clip.rect(0, 0, self.width, self.height)
        canvas.clipPath(clip, stroke=0, fill=0)
        canvas.scale(mm / UNITS_PER_MM, mm / UNITS_PER_MM)  # integer coordinates: short paths
        self._shade()
        self._grid()
        self._calibration()
        self._traces()
        canvas.restoreState()
        canvas.setFont(FONTS.bold, 7.5)
        canvas.setFillColor(ECG_TRACE)
        pitch = layout.row_pitch_mm
        for cell in layout.cells:
            top = layout.height_mm - cell.row * pitch
            canvas.drawString((cell.x_mm + 1.2) * mm, (top - 3.6) * mm, cell.lead)
        canvas.setStrokeColor(ECG_TRACE)
        canvas.setLineWidth(0.8)
        for row in range(layout.rows - 1 if layout.separators_mm else 0):
            base = self._baseline_mm(row)
            for x in layout.separators_mm:
                canvas.line(x * mm, (base - 3) * mm, x * mm, (base + 3) * mm)

    def _shade(self) -> None:
        relevance = self.relevance
        if relevance is None or relevance.bin_s <= 0:
            return
        canvas = self.canv
        rows = {name: i for i, name in enumerate(relevance.lead_names)}
        pitch = self.layout.row_pitch_mm
        r, g, b = RELEVANCE_RGB
        # Bins narrower than one big square (0.2 s, 5 mm) are pooled (max) into big squares:
        # 1 mm stripes are invisible on paper, and clinicians read the ECG by big squares.
        factor = max(1, round(SHADE_BLOCK_S / relevance.bin_s))
        bin_s = relevance.bin_s * factor
        pooled = [
            [
                max((v for v in row[i : i + factor] if math.isfinite(v)), default=0.0)
                for i in range(0, len(row), factor)
            ]
            for row in relevance.values
        ]
        cells: list[tuple[float, tuple[float, float, float, float]]] = []
        for cell in self.layout.cells:
            row_index = rows.get(cell.lead)
            if row_index is None or row_index >= len(pooled):
                continue
            values = pooled[row_index]
            top = self.layout.height_mm - cell.row * pitch
            k0 = max(0, math.floor((cell.t0 - relevance.start_s) / bin_s))
            k1 = min(len(values), math.ceil((cell.t1 - relevance.start_s) / bin_s))
            for k in range(k0, k1):
                value = values[k]
                b0 = max(cell.t0, relevance.start_s + k * bin_s)
                b1 = min(cell.t1, relevance.start_s + (k + 1) * bin_s)
                if not math.isfinite(value) or value <= 0 or b1 <= b0:
                    continue
                x0 = cell.x_mm + (b0 - cell.t0) * PAPER_SPEED_MM_S
                width = (b1 - b0) * PAPER_SPEED_MM_S
                cells.append((value, (x0, top - pitch, width, pitch)))
        # Relevance is relative to the most relevant bin of the whole recording, so the bins a
        # page shows are often small: scale to the page's own maximum and lift mid values
        # (square root), or the shading is too faint to see on paper. The legend says so.
        peak = max((value for value, _ in cells), default=0.0)
        by_alpha: dict[int, list[tuple[float, float, float, float]]] = {}
        for value, rect in cells:
            share = value / peak
            if share < 0.15:
                continue
            level = min(10, max(1, round(math.sqrt(share) * 10)))  # few alpha states
            by_alpha.setdefault(level, []).append(rect)
        u = UNITS_PER_MM
        for level, rects in sorted(by_alpha.items()):
            canvas.setFillColor(Color(r, g, b, alpha=0.055 * level))
            canvas.addLiteral(
                "\n".join(
                    f"{round(x * u)} {round(y * u)} {round(w * u)} {round(h * u)} re"
                    for x, y, w, h in rects
                )
                + "\nf"
            )

    def _grid(self) -> None:
        canvas = self.canv
        w_mm, h_mm = self.layout.width_mm, self.layout.height_mm
        u = UNITS_PER_MM
        top, right = round(h_mm * u), round(w_mm * u)
        for step_kind, colour, width in (("minor", ECG_MINOR, 0.25), ("major", ECG_MAJOR, 0.6)):
            canvas.setStrokeColor(colour)
            canvas.setLineWidth(width * UNITS_PER_PT)
            lines: list[str] = []
            for i in range(round(w_mm) + 1):
                if (i % 5 == 0) == (step_kind == "major"):
                    lines.append(f"{i * u} 0 m {i * u} {top} l")
            for j in range(round(h_mm) + 1):
                if (j % 5 == 0) == (step_kind == "major"):
                    lines.append(f"0 {j * u} m {right} {j * u} l")
            canvas.addLiteral("\n".join(lines) + "\nS")

    def _calibration(self) -> None:
        canvas = self.canv
        canvas.setStrokeColor(ECG_TRACE)
        canvas.setLineWidth(0.7 * UNITS_PER_PT)
        canvas.setLineJoin(0)
        paths = []
        for row in range(self.layout.rows):
            b = self._baseline_mm(row)
            points = [(1, b), (2.5, b), (2.5, b + GAIN_MM_MV), (7.5, b + GAIN_MM_MV), (7.5, b)]
            points.append((CAL_MM - 1, b))
            xs = np.array([p[0] for p in points], dtype=np.float64)
            ys = np.array([p[1] for p in points], dtype=np.float64)
            paths.append(_path(xs, ys))
        canvas.addLiteral("\n".join(paths) + "\nS")

    def _traces(self) -> None:
        canvas = self.canv
        recording = self.recording
        fs = recording.sampling_rate_hz
        data = _to_millivolts(recording)
        per_bin = int(fs * ECG_BIN_MM / PAPER_SPEED_MM_S)
        canvas.setStrokeColor(ECG_TRACE)
        canvas.setLineWidth(0.55 * UNITS_PER_PT)
        canvas.setLineJoin(1)
        paths: list[str] = []
        for cell in self.layout.cells:
            i0 = max(0, round(cell.t0 * fs))
            i1 = min(data.shape[1], round(cell.t1 * fs) + 1)
            segment = data[cell.lead_index, i0:i1]
            if segment.size < 2 or not np.isfinite(segment).any():
                continue
            segment = segment - float(np.nanmedian(segment))
            positions, values = _decimate(segment, per_bin)
            xs = cell.x_mm + positions / fs * PAPER_SPEED_MM_S
            ys = self._baseline_mm(cell.row) + values * GAIN_MM_MV
            paths.append(_path(xs, ys))
        canvas.addLiteral("\n".join(p for p in paths if p) + "\nS")
