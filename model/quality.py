"""Input quality checks run before the model sees a modality.

Each check returns None when the input is usable, else a short reason a clinician understands
("the ECG is flat in every lead ..."). The predictor then treats that modality as missing and
reports the reason, rather than letting the model read a disconnected ECG, a blank slide or an
empty note. numpy only; the thresholds are deliberately loose so that real, noisy recordings
pass and only inputs that carry no usable signal are rejected.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from model.preprocess import STANDARD_LEADS, ModelInputError, PreparedTiles, tissue_mask

#: Shortest ECG the model reads (one or two beats are not a rhythm).
MIN_ECG_SECONDS = 2.5
#: A lead whose peak-to-peak range (mV) or standard deviation (mV) is below these is flat.
FLAT_PEAK_TO_PEAK_MV = 0.05
FLAT_STD_MV = 0.01
#: Above this robust peak-to-peak range (mV) on most leads the units are probably wrong.
IMPLAUSIBLE_PEAK_TO_PEAK_MV = 10.0
#: A lead is saturated when this fraction of its samples sits on its min/max rail in plateaus.
SATURATED_FRACTION = 0.02
#: A rail plateau lasts at least this long (a real R-wave peak holds its value for a few ms).
SATURATION_PLATEAU_S = 0.008
#: A lead with more than this fraction of missing (NaN/inf) samples is unusable.
MISSING_FRACTION = 0.5
MIN_NOTE_WORDS = 3
MIN_NOTE_LETTER_FRACTION = 0.4
MAX_NOTE_CONTROL_FRACTION = 0.05
#: Tiles whose pixels barely vary (std in grey levels) are a uniform colour, not tissue.
UNIFORM_TILE_STD = 3.0

_WORD = re.compile(r"[^\W\d_]{1,}")
_CONTROL_CATEGORIES = ("Cc", "Cs", "Co", "Cn")
# The same character classes for 7-bit text, as byte sets (counted by bytes.translate).
_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())
_ASCII_CONTROL = bytes(
    c
    for c in range(128)
    if not chr(c).isspace() and unicodedata.category(chr(c)) in _CONTROL_CATEGORIES
)
_ASCII_LETTER = bytes(c for c in range(128) if chr(c).isalpha())


def _lead_label(index: int, count: int, lead_names: Sequence[str] | None) -> str:
    if lead_names is not None:
        return str(lead_names[index])
    return STANDARD_LEADS[index] if count == len(STANDARD_LEADS) else f"lead {index + 1}"


def _join(names: Sequence[str]) -> str:
    return ", ".join(names)


def _plateau_fraction(values: npt.NDArray[np.float64], min_run: int) -> float:
    """Fraction of samples sitting on the lead's min or max in runs of at least ``min_run``."""
    high, low = float(values.max()), float(values.min())
    tolerance = 1e-6 * max(high - low, 1e-9)
    rail = (values >= high - tolerance) | (values <= low + tolerance)
    edges = np.diff(np.concatenate(([0], rail.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    return float(lengths[lengths >= min_run].sum()) / values.size


def _plateau_fractions(
    rows: npt.NDArray[np.float64], high: npt.NDArray[np.float64], low: npt.NDArray[np.float64],
    min_run: int,
) -> npt.NDArray[np.float64]:  # fmt: skip
    """:func:`_plateau_fraction` of every row of a finite (lead, time) array at once (same
    arithmetic per row, so the same fractions)."""
    count, length = rows.shape
    tolerance = 1e-6 * np.maximum(high - low, 1e-9)
    rail = (rows >= (high - tolerance)[:, None]) | (rows <= (low + tolerance)[:, None])
    padded = np.zeros((count, length + 2), dtype=np.int8)
    padded[:, 1:-1] = rail
    edges = np.diff(padded, axis=1).ravel()  # every row starts and ends off the rail
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    long_runs = lengths >= min_run
    on_rail = np.bincount(
        starts[long_runs] // (length + 1), weights=lengths[long_runs], minlength=count
    )
    return np.asarray(on_rail / length, dtype=np.float64)


def _robust_range(values: npt.NDArray[np.float64]) -> float:
    """Peak-to-peak range ignoring the 0.5 % most extreme samples at each end (spikes)."""
    low, high = np.percentile(values, [0.5, 99.5])
    return float(high - low)


def lead_problems(
    signal: npt.ArrayLike,
    lead_mask: npt.ArrayLike,
    sampling_rate_hz: float,
) -> dict[int, str]:
    """Per present lead that cannot be read: row -> "missing", "flat", "saturated" or
    "implausible" (amplitude above 10 mV). Usable leads are not listed."""
    array = np.asarray(signal, dtype=np.float64)
    mask = np.asarray(lead_mask, dtype=bool).reshape(-1)
    if array.ndim != 2 or array.shape[0] != mask.size:
        raise ModelInputError(
            f"ECG quality checks need samples shaped (lead, time) with one mask entry per lead; "
            f"got {array.shape} and {mask.size} mask entries."
        )
    min_run = max(2, round(SATURATION_PLATEAU_S * sampling_rate_hz))
    present = np.flatnonzero(mask)
    rows = np.ascontiguousarray(array[present] if present.size < mask.size else array)
    if rows.shape[1] >= 2 and bool(np.isfinite(rows).all()):
        return _finite_lead_problems(rows, present, min_run)
    problems: dict[int, str] = {}
    for row in present:
        lead = array[row]
        finite = lead[np.isfinite(lead)]
        if lead.size == 0 or finite.size < (1 - MISSING_FRACTION) * lead.size or finite.size < 2:
            problems[int(row)] = "missing"
        elif np.ptp(finite) < FLAT_PEAK_TO_PEAK_MV or float(finite.std()) < FLAT_STD_MV:
            problems[int(row)] = "flat"
        elif _robust_range(finite) > IMPLAUSIBLE_PEAK_TO_PEAK_MV:
            problems[int(row)] = "implausible"
        elif _plateau_fraction(finite, min_run) >= SATURATED_FRACTION:
            problems[int(row)] = "saturated"
    return problems


def _finite_lead_problems(
    rows: npt.NDArray[np.float64], present: npt.NDArray[np.intp], min_run: int
) -> dict[int, str]:
    """:func:`lead_problems` for present rows with no missing sample (the usual case): the
    per-lead extremes and rail runs in whole-array operations, the robust range (a sort) only
    where the full range could exceed the limit (the robust range never exceeds it)."""
    high, low = rows.max(axis=1), rows.min(axis=1)
    spans = high - low
    saturated = _plateau_fractions(rows, high, low, min_run) >= SATURATED_FRACTION
    problems: dict[int, str] = {}
    for index, row in enumerate(present):
        values = rows[index]
        if spans[index] < FLAT_PEAK_TO_PEAK_MV or float(values.std()) < FLAT_STD_MV:
            problems[int(row)] = "flat"
        elif (
            spans[index] > IMPLAUSIBLE_PEAK_TO_PEAK_MV
            and _robust_range(values) > IMPLAUSIBLE_PEAK_TO_PEAK_MV
        ):
            problems[int(row)] = "implausible"
        elif saturated[index]:
            problems[int(row)] = "saturated"
    return problems


def check_ecg(
    signal: npt.ArrayLike,
    lead_mask: npt.ArrayLike,
    sampling_rate_hz: float,
    *,
    lead_names: Sequence[str] | None = None,
) -> str | None:
    """Why an ECG cannot be read, or None.

    ``signal`` is (lead, time) in mV as recorded, before filtering (clipping and missing
    samples are invisible after ``prepare_ecg``); ``lead_mask`` marks recorded rows. Lead names
    in the reason are the 12 standard leads for 12 rows, else ``lead_names`` or "lead k".
    Individual bad leads in an otherwise good record are not a reason (see
    :func:`lead_problems`); the record is rejected when it is too short, has no lead, or when
    most present leads are missing, flat, clipped or implausibly large."""
    array = np.asarray(signal, dtype=np.float64)
    mask = np.asarray(lead_mask, dtype=bool).reshape(-1)
    if not (math.isfinite(sampling_rate_hz) and sampling_rate_hz > 0):
        return f"the ECG sampling rate ({sampling_rate_hz} Hz) is not valid"
    if array.size == 0 or not mask.any():
        return "no ECG lead was recorded"
    problems = lead_problems(array, mask, sampling_rate_hz)
    duration = array.shape[1] / sampling_rate_hz
    if duration < MIN_ECG_SECONDS:
        return (
            f"the ECG is only {duration:.1f} s long; at least {MIN_ECG_SECONDS:g} s are needed "
            "to read the rhythm"
        )
    present = [int(i) for i in np.flatnonzero(mask)]
    count = array.shape[0]

    def named(kind: str) -> list[str]:
        return [_lead_label(i, count, lead_names) for i in present if problems.get(i) == kind]

    majority = len(present) / 2
    missing, flat = named("missing"), named("flat")
    implausible, saturated = named("implausible"), named("saturated")
    if len(missing) > majority:
        return f"most ECG samples are missing (no data) in leads {_join(missing)}"
    if len(flat) == len(present):
        return (
            "the ECG is flat in every lead (no signal above 0.05 mV): electrodes disconnected "
            "or nothing recorded"
        )
    if len(implausible) > majority:
        return (
            f"the ECG amplitude is implausible (over {IMPLAUSIBLE_PEAK_TO_PEAK_MV:g} mV peak to "
            f"peak in leads {_join(implausible)}): the samples are probably not in millivolts"
        )
    if len(saturated) >= majority:
        return (
            f"the ECG is clipped (saturated at the recorder's limits) in leads "
            f"{_join(saturated)}: amplitudes and waveforms cannot be trusted"
        )
    if len(problems) == len(present):
        parts = [
            f"{kind} in {_join(names)}"
            for kind, names in (
                ("no data", missing),
                ("flat", flat),
                ("implausible amplitude", implausible),
                ("clipped", saturated),
            )
            if names
        ]
        return f"no ECG lead is usable ({'; '.join(parts)})"
    return None


def _tissue_texture(
    tile: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_] | None = None
) -> float:
    """Largest per-channel standard deviation over the tile's tissue-like pixels (0 if none):
    stained tissue has texture; a uniformly coloured image (or its white padding) has none."""
    pixels = tile[tissue_mask(tile) if mask is None else mask]
    return float(pixels.astype(np.float32).std(axis=0).max()) if pixels.shape[0] > 1 else 0.0


def check_tiles(tiles: PreparedTiles) -> str | None:
    """Why a slide or image gives the model nothing to read, or None."""
    if tiles.tiles.shape[0] == 0:
        return "the slide or image gave no tiles to analyse"
    if tiles.candidates == 0:
        best = float(tiles.tissue_fraction.max()) if tiles.tissue_fraction.size else 0.0
        return (
            f"no tissue found in the slide (the best tile is {best:.0%} tissue): it looks blank "
            "or background only"
        )
    # One mask for all tiles; stop at the first tile with texture (the usual case: the first).
    masks = tissue_mask(tiles.tiles)
    if not any(
        _tissue_texture(tile, mask) >= UNIFORM_TILE_STD
        for tile, mask in zip(tiles.tiles, masks, strict=True)
    ):
        return "the slide or image is a uniform colour with no visible tissue structure"
    return None


def check_note(text: str) -> str | None:
    """Why a clinical note gives the model nothing to read, or None."""
    stripped = text.strip()
    if not stripped:
        return "the note is empty"
    if stripped.isascii():  # the usual note: count classes in C instead of per character
        raw = stripped.encode("ascii")
        visible_count = len(raw.translate(None, _ASCII_SPACE))
        control = len(raw) - len(raw.translate(None, _ASCII_CONTROL))
        letters = len(raw) - len(raw.translate(None, _ASCII_LETTER))
    else:
        visible = [c for c in stripped if not c.isspace()]
        visible_count = len(visible)
        control = sum(
            1 for c in visible if unicodedata.category(c) in _CONTROL_CATEGORIES or c == "\ufffd"
        )
        letters = sum(1 for c in visible if c.isalpha())
    if control > MAX_NOTE_CONTROL_FRACTION * visible_count:
        return "the note looks like binary data, not text (wrong file or encoding?)"
    if letters < MIN_NOTE_LETTER_FRACTION * visible_count:
        return "the note is mostly numbers or symbols, not words the model can read"
    words = len(_WORD.findall(stripped))
    if words < MIN_NOTE_WORDS:
        return (
            f"the note has only {words} word{'s' if words != 1 else ''}; at least "
            f"{MIN_NOTE_WORDS} are needed"
        )
    return None
