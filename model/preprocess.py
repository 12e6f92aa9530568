"""Array-level preprocessing, from what the app hands over (arrays, strings) to what the network
takes: ECG resampling, lead mapping and filtering; tissue tiles from an image or a slide reader;
note chunking with character offsets; vitals as values + present flags.

numpy/scipy only (the tokenizer is passed in), so the app can prepare inputs without torch.
Everything is deterministic: the same input gives the same arrays.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from model.config import EcgConfig, FusionConfig, ImageConfig, TabularConfig, TextConfig
from model.errors import ModelPackageError

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
UInt8Array = npt.NDArray[np.uint8]

#: The 12 standard leads in the order of the network's input rows.
STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip
_LEAD_INDEX = {lead.lower(): i for i, lead in enumerate(STANDARD_LEADS)}
# Holter "modified limb leads" (MIT-BIH's MLII) stand in for the limb lead they approximate,
# as is usual for these records; D1-D3 / DI-DIII are the European names of I-III.
_LEAD_INDEX.update(
    {
        alias: _LEAD_INDEX[lead]
        for lead, aliases in {
            "i": ("mli", "ml1", "d1", "di"),
            "ii": ("mlii", "ml2", "d2", "dii"),
            "iii": ("mliii", "ml3", "d3", "diii"),
        }.items()
        for alias in aliases
    }
)
_LEAD_PREFIX = re.compile(r"^(?:mdc_ecg_lead_|ecg[ _-]?lead[ _-]?|lead[ _-]?)", re.IGNORECASE)
_LEAD_EPONYM = re.compile(r"\s*\((?:einthoven|goldberger|wilson)\)\s*$", re.IGNORECASE)
_UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


class ModelInputError(ModelPackageError, ValueError):
    """An input cannot be prepared for the model; the message says what to fix."""


# -- ECG -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedEcg:
    """A 12-lead signal at the model's rate, ready for the network."""

    signal: FloatArray  # (12, samples) mV, high-pass filtered, zeros in missing leads
    lead_mask: BoolArray  # (12,) True where the lead was recorded (or derived)
    sampling_rate_hz: int
    window_starts_s: tuple[float, ...]  # source time of each model window, for explanations
    derived_leads: tuple[str, ...]  # limb leads computed from two recorded ones
    source_duration_s: float


def standard_lead_index(name: str) -> int | None:
    """Row of a standard lead ("Lead I (Einthoven)", "AVR", "v1"), None for other leads."""
    core = _LEAD_PREFIX.sub("", _LEAD_EPONYM.sub("", name.strip())).strip()
    return _LEAD_INDEX.get(core.lower())


@functools.lru_cache(maxsize=32)
def _resampling_filter(up: int, down: int, dtype: str) -> npt.NDArray[np.floating[Any]]:
    """The anti-aliasing FIR that ``resample_poly`` designs by default (Kaiser, beta 5), once per
    rate pair: designing it costs as much as filtering a short record. Read-only (shared)."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    taps = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    taps = np.asarray(taps, dtype=np.dtype(dtype))
    taps.setflags(write=False)
    return taps


def resample_signal(samples: FloatArray, from_hz: float, to_hz: float) -> FloatArray:
    """Polyphase resampling along the last axis (anti-aliased); identity when rates match."""
    if math.isclose(from_hz, to_hz, rel_tol=1e-9):
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(to_hz / from_hz).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    window: Any = ("kaiser", 5.0)
    if up != down and samples.dtype in (np.float32, np.float64):
        # resample_poly copies the taps it is given, so the cached array stays untouched.
        window = _resampling_filter(up, down, samples.dtype.str)
    out = resample_poly(samples, up, down, axis=-1, window=window)
    return np.asarray(out, dtype=np.float32)


def map_to_standard_leads(
    samples: FloatArray, lead_names: Sequence[str], derive_limb_leads: bool = True
) -> tuple[FloatArray, BoolArray, tuple[str, ...]]:
    """(n, S) with names -> (12, S), lead mask, derived lead names.

    Non-standard leads (MLII, Frank leads) are not standard leads and are left out. With two of
    I, II, III recorded, the other limb leads follow from Einthoven's and Goldberger's laws."""
    if samples.ndim != 2 or samples.shape[0] != len(lead_names):
        raise ModelInputError(
            f"The ECG needs samples shaped (lead, time) with one name per lead; got "
            f"{samples.shape} and {len(lead_names)} names."
        )
    out = np.zeros((12, samples.shape[1]), dtype=np.float32)
    mask = np.zeros(12, dtype=bool)
    for row, name in enumerate(lead_names):
        index = standard_lead_index(name)
        if index is not None and not mask[index]:
            out[index] = samples[row]
            mask[index] = True
    derived: list[str] = []
    if derive_limb_leads:
        lead_1, lead_2, lead_3 = out[0], out[1], out[2]
        if mask[0] and mask[1] and not mask[2]:
            out[2], mask[2] = lead_2 - lead_1, True
            derived.append("III")
        elif mask[0] and mask[2] and not mask[1]:
            out[1], mask[1] = lead_1 + lead_3, True
            derived.append("II")
        elif mask[1] and mask[2] and not mask[0]:
            out[0], mask[0] = lead_2 - lead_3, True
            derived.append("I")
        if mask[0] and mask[1]:
            goldberger = {
                3: -(out[0] + out[1]) / 2,  # aVR
                4: out[0] - out[1] / 2,  # aVL
                5: out[1] - out[0] / 2,  # aVF
            }
            for index, values in goldberger.items():
                if not mask[index]:
                    out[index], mask[index] = values, True
                    derived.append(STANDARD_LEADS[index])
    return out, mask, tuple(derived)


@functools.lru_cache(maxsize=64)
def _butterworth_design(
    order: int, cutoffs_hz: tuple[float, ...], kind: str, sampling_rate_hz: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(sos, sosfilt_zi(sos)), read-only: shared by every call with these settings."""
    from scipy.signal import butter, sosfilt_zi

    cutoff: float | list[float] = cutoffs_hz[0] if len(cutoffs_hz) == 1 else list(cutoffs_hz)
    sos = np.asarray(butter(order, cutoff, btype=kind, fs=sampling_rate_hz, output="sos"))
    steady = np.asarray(sosfilt_zi(sos))
    sos.setflags(write=False)
    steady.setflags(write=False)
    return sos, steady


def butterworth_sos(
    order: int, cutoffs_hz: tuple[float, ...], kind: str, sampling_rate_hz: float
) -> npt.NDArray[np.float64]:
    """Butterworth second-order sections as ``scipy.signal.butter(..., output="sos")`` gives
    them, designed once per (order, cutoffs, kind, rate): the design costs more than filtering
    a 10 s record at 100 Hz. A fresh (writable) copy, as scipy's sosfilt wants one."""
    return _butterworth_design(order, cutoffs_hz, kind, sampling_rate_hz)[0].copy()


def zero_phase_filter(
    samples: npt.NDArray[np.floating[Any]],
    design: tuple[int, tuple[float, ...], str, float],
    padlen: int | None = None,
) -> npt.NDArray[np.float64]:
    """``scipy.signal.sosfiltfilt(sos, samples, axis=-1, padlen=padlen)`` of a (row, time)
    array with the Butterworth ``design`` (order, cutoffs, kind, rate), value for value.

    The same steps (odd extension, steady-state initial conditions, forward pass, backward
    pass, trim) run on scipy's compiled filter loop directly, with the design and its initial
    conditions cached and no copies beyond the two the passes need: on a 12-lead 10 s record
    this halves the cost. Anything unusual goes to scipy's own sosfiltfilt."""
    from scipy.signal import sosfiltfilt

    sos, steady = _butterworth_design(*design)
    try:
        from scipy.signal._sosfilt import _sosfilt
    except ImportError:  # pragma: no cover - a scipy that moved its private loop
        _sosfilt = None
    dtype = np.result_type(sos, samples)
    zeros = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    edge = 3 * (2 * sos.shape[0] + 1 - zeros) if padlen is None else padlen
    if (
        _sosfilt is None
        or samples.ndim != 2
        or dtype not in (np.float32, np.float64)
        or not 0 < edge < samples.shape[-1] - 1
    ):
        return np.asarray(sosfiltfilt(sos.copy(), samples, axis=-1, padlen=padlen))
    x = samples
    extended = np.concatenate(  # scipy's odd_ext, in the input's dtype as there
        (2 * x[:, :1] - x[:, edge:0:-1], x, 2 * x[:, -1:] - x[:, -2 : -(edge + 2) : -1]), axis=1
    )
    forward = np.asarray(extended, dtype=dtype, order="C")  # ours: filtered in place
    sections = sos.astype(dtype)  # a writable copy, as the compiled loop wants
    state = np.ascontiguousarray(extended[:, :1, None] * steady[None, :, :], dtype=dtype)
    _sosfilt(sections, forward, state)
    state = np.ascontiguousarray(forward[:, -1:, None] * steady[None, :, :], dtype=dtype)
    backward = np.ascontiguousarray(forward[:, ::-1])
    _sosfilt(sections, backward, state)
    return np.asarray(backward[:, ::-1][:, edge:-edge])


def highpass(samples: FloatArray, sampling_rate_hz: float, cutoff_hz: float) -> FloatArray:
    """Zero-phase Butterworth high-pass (baseline wander removal); identity for cutoff 0."""
    if cutoff_hz <= 0 or samples.shape[-1] < 32:
        return samples
    padlen = min(samples.shape[-1] - 1, 3 * round(sampling_rate_hz / cutoff_hz))
    design = (2, (cutoff_hz,), "highpass", float(sampling_rate_hz))
    return np.asarray(zero_phase_filter(samples, design, padlen), dtype=np.float32)


def prepare_ecg(
    samples: npt.ArrayLike,
    sampling_rate_hz: float,
    lead_names: Sequence[str],
    config: EcgConfig,
    units: str = "mV",
) -> PreparedEcg:
    """Resample to the model rate, map to 12 leads (+ mask), high-pass, cap the length.

    A record longer than ``max_windows`` windows keeps that many evenly spaced windows (their
    source times are in ``window_starts_s``); NaN samples (device-flagged) become 0."""
    array = np.asarray(samples, dtype=np.float64)
    scale = _UNIT_SCALE.get(units.strip().lower())
    if scale is None:
        raise ModelInputError(f"The ECG unit {units!r} is not known; give mV, uV or V.")
    if not (math.isfinite(sampling_rate_hz) and sampling_rate_hz > 0):
        raise ModelInputError(f"The ECG sampling rate {sampling_rate_hz} Hz is not valid.")
    if array.ndim != 2 or array.shape[1] < 2:
        raise ModelInputError(f"The ECG needs samples shaped (lead, time); got {array.shape}.")
    if scale != 1.0:
        array = array * scale
    if not np.isfinite(array).all():  # a copy only when there is something to replace
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    mapped, mask, derived = map_to_standard_leads(array.astype(np.float32), lead_names)
    if not mask.any():
        raise ModelInputError(
            "The ECG has none of the 12 standard leads (I, II, III, aVR, aVL, aVF, V1-V6); "
            "the model cannot read it."
        )
    rate = config.sampling_rate_hz
    signal = resample_signal(mapped, sampling_rate_hz, rate)
    signal = highpass(signal, rate, config.highpass_hz) * mask[:, None]
    win = round(config.window_s * rate)
    count = max(1, -(-signal.shape[1] // win))
    starts = [i * win for i in range(count)]
    if count > config.max_windows:
        picks = np.linspace(0, count - 1, config.max_windows).round().astype(int)
        starts = [starts[i] for i in picks]
        padded = np.pad(signal, ((0, 0), (0, count * win - signal.shape[1])))
        signal = np.concatenate([padded[:, s : s + win] for s in starts], axis=1)
    return PreparedEcg(
        signal=np.ascontiguousarray(signal, dtype=np.float32),
        lead_mask=mask,
        sampling_rate_hz=rate,
        window_starts_s=tuple(s / rate for s in starts),
        derived_leads=derived,
        source_duration_s=array.shape[1] / sampling_rate_hz,
    )


# -- pathology tiles ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedTiles:
    """Tissue tiles at the model's tile size, with where they came from."""

    tiles: UInt8Array  # (N, tile, tile, 3) RGB
    coords: IntArray  # (N, 2) (x, y) of each tile's top-left corner, level-0 source pixels
    source_tile_size: float  # tile side in level-0 source pixels
    tissue_fraction: FloatArray  # (N,)
    candidates: int  # tissue tiles found before the cap


class SlideReader(Protocol):
    """What tiling needs from a slide (clinic_app's SlideSource satisfies it)."""

    @property
    def info(self) -> Any: ...  # .levels[i].width/.height/.downsample, .microns_per_pixel

    def read_region(
        self, level: int, x: int, y: int, width: int, height: int
    ) -> npt.NDArray[np.uint8]: ...

    def thumbnail(self, max_size: int = 1024) -> npt.NDArray[np.uint8]: ...


def tissue_mask(rgb: UInt8Array) -> BoolArray:
    """Pixels that look like stained tissue: not near-white background, not black border.

    Tissue: channel spread above 18 or mean brightness below 200, and brightness above 25. For
    8-bit RGB the test runs on the channel sum in integers (mean < 200 is sum < 600, mean > 25
    is sum > 75, exactly), which is several times faster than the float mean."""
    if rgb.dtype == np.uint8 and rgb.ndim >= 1 and rgb.shape[-1] == 3:
        red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
        total = red.astype(np.uint16) + green + blue
        fast: BoolArray = ((spread > 18) | (total < 600)) & (total > 75)
        return fast
    pixels = rgb.astype(np.int16)
    spread16 = pixels.max(axis=-1) - pixels.min(axis=-1)
    brightness = pixels.mean(axis=-1)
    mask: BoolArray = ((spread16 > 18) | (brightness < 200)) & (brightness > 25)
    return mask


def _resize(rgb: UInt8Array, size: int) -> UInt8Array:
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    from PIL import Image

    resized = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _select(candidates: list[int], cap: int) -> list[int]:
    """At most ``cap`` of ``candidates`` (raster order), evenly spaced: covers the whole slide."""
    if len(candidates) <= cap:
        return candidates
    picks = np.linspace(0, len(candidates) - 1, cap).round().astype(int)
    return [candidates[i] for i in picks]


def _grid_positions(width: int, height: int, step: float) -> list[tuple[int, int]]:
    cols = max(1, math.ceil(width / step - 1e-9))
    rows = max(1, math.ceil(height / step - 1e-9))
    return [(round(c * step), round(r * step)) for r in range(rows) for c in range(cols)]


def tile_image(
    image: npt.ArrayLike, config: ImageConfig, microns_per_pixel: float | None = None
) -> PreparedTiles:
    """A small image as a grid of tiles at the target resolution; background tiles dropped.

    Unknown resolution: pixels are taken as already at ``target_mpp``. Edges are padded white.
    If no tile has enough tissue, the tiles with the most tissue are kept (never empty)."""
    rgb = np.asarray(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ModelInputError(f"A pathology image must be (height, width, 3) RGB; got {rgb.shape}.")
    rgb = np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8, copy=False)
    scale = (microns_per_pixel / config.target_mpp) if microns_per_pixel else 1.0
    source_tile = config.tile_size / scale
    height, width = rgb.shape[:2]
    positions = _grid_positions(width, height, source_tile)
    side = max(1, round(source_tile))
    # One tissue mask for the whole image, sliced per tile: the white padding of edge tiles is
    # never tissue, so a tile's fraction is its slice's count over the full tile area.
    tissue = tissue_mask(rgb)
    area = side * side
    fractions = [np.count_nonzero(tissue[y : y + side, x : x + side]) / area for x, y in positions]

    def crop(index: int) -> UInt8Array:
        x, y = positions[index]
        piece = rgb[y : y + side, x : x + side]
        if piece.shape[0] < side or piece.shape[1] < side:
            piece = np.pad(
                piece,
                ((0, side - piece.shape[0]), (0, side - piece.shape[1]), (0, 0)),
                constant_values=255,
            )
        return piece

    return _finish_tiles(crop, positions, fractions, source_tile, config)


def _finish_tiles(
    crop: Callable[[int], UInt8Array],
    positions: Sequence[tuple[int, int]],
    fractions: Sequence[float],
    source_tile: float,
    config: ImageConfig,
) -> PreparedTiles:
    candidates = [i for i, f in enumerate(fractions) if f >= config.min_tissue_fraction]
    found = len(candidates)
    if not candidates:  # keep the most tissue-like tiles rather than nothing
        order = sorted(range(len(fractions)), key=lambda i: (-fractions[i], i))
        candidates = sorted(order[: config.max_tiles])
    chosen = _select(candidates, config.max_tiles)
    tiles = np.stack([_resize(crop(i), config.tile_size) for i in chosen])
    return PreparedTiles(
        tiles=tiles,
        coords=np.asarray([positions[i] for i in chosen], dtype=np.int64).reshape(-1, 2),
        source_tile_size=source_tile,
        tissue_fraction=np.asarray([fractions[i] for i in chosen], dtype=np.float32),
        candidates=found,
    )


def tile_slide(reader: SlideReader, config: ImageConfig) -> PreparedTiles:
    """Tissue tiles of a (possibly huge) slide: find tissue on the thumbnail, then read only
    the chosen tiles from the level closest to the target resolution."""
    info = reader.info
    level0 = info.levels[0]
    mpp = info.microns_per_pixel[0] if info.microns_per_pixel else None
    scale = (mpp / config.target_mpp) if mpp else 1.0
    source_tile = config.tile_size / scale
    if level0.width * level0.height <= 4096 * 4096 and len(info.levels) == 1:
        whole = reader.read_region(0, 0, 0, level0.width, level0.height)
        return tile_image(whole, config, mpp)
    thumb = np.asarray(reader.thumbnail(1024))
    thumb_scale = thumb.shape[1] / level0.width
    positions = _grid_positions(level0.width, level0.height, source_tile)
    tissue = tissue_mask(thumb)
    fractions = []
    for x, y in positions:
        x0, y0 = int(x * thumb_scale), int(y * thumb_scale)
        x1 = max(x0 + 1, int((x + source_tile) * thumb_scale))
        y1 = max(y0 + 1, int((y + source_tile) * thumb_scale))
        region = tissue[y0:y1, x0:x1]
        fractions.append(float(region.mean()) if region.size else 0.0)
    candidates = [i for i, f in enumerate(fractions) if f >= config.min_tissue_fraction]
    if not candidates:
        order = sorted(range(len(fractions)), key=lambda i: (-fractions[i], i))
        candidates = sorted(order[: config.max_tiles])
    chosen = set(_select(candidates, config.max_tiles))
    level = max(
        (i for i, lv in enumerate(info.levels) if lv.downsample <= source_tile / config.tile_size),
        default=0,
        key=lambda i: info.levels[i].downsample,
    )
    downsample = info.levels[level].downsample
    side = max(1, round(source_tile / downsample))
    crops: list[UInt8Array] = []
    for i, (x, y) in enumerate(positions):
        if i in chosen:
            crops.append(
                np.asarray(
                    reader.read_region(
                        level, round(x / downsample), round(y / downsample), side, side
                    ),
                    dtype=np.uint8,
                )[:, :, :3]
            )
        else:
            crops.append(np.zeros((1, 1, 3), dtype=np.uint8))  # never used: not chosen
    kept = [i for i in range(len(positions)) if i in chosen]
    found = sum(1 for f in fractions if f >= config.min_tissue_fraction)
    tiles = np.stack([_resize(crops[i], config.tile_size) for i in kept])
    return PreparedTiles(
        tiles=tiles,
        coords=np.asarray([positions[i] for i in kept], dtype=np.int64).reshape(-1, 2),
        source_tile_size=source_tile,
        tissue_fraction=np.asarray([fractions[i] for i in kept], dtype=np.float32),
        candidates=found,
    )


# -- notes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedNote:
    """A note as overlapping token chunks, each token mapped back to its characters."""

    input_ids: IntArray  # (C, L) with [CLS] ... [SEP] and padding
    attention_mask: IntArray  # (C, L)
    offsets: IntArray  # (C, L, 2) character [start, end) per token; (0, 0) for special/pad
    token_count: int  # tokens in the whole note (without special tokens)
    truncated: bool  # True when the note was longer than max_chunks chunks could hold


def prepare_note(text: str, tokenizer: Any, config: TextConfig) -> PreparedNote:
    """Tokenise once with offsets, then cut into chunks of ``max_tokens_per_chunk`` (with
    ``chunk_overlap`` tokens shared between neighbours), at most ``max_chunks`` from the start."""
    if not isinstance(text, str) or not text.strip():
        raise ModelInputError("The note is empty; write or import a note before analysing it.")
    encoded = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
    )
    ids: list[int] = list(encoded["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in encoded["offset_mapping"]]
    length = config.max_tokens_per_chunk
    body = length - 2
    stride = body - config.chunk_overlap
    starts = list(range(0, max(1, len(ids) - config.chunk_overlap), stride)) or [0]
    truncated = len(starts) > config.max_chunks
    starts = starts[: config.max_chunks]
    chunk_count = len(starts)
    input_ids = np.full((chunk_count, length), tokenizer.pad_token_id, dtype=np.int64)
    attention = np.zeros((chunk_count, length), dtype=np.int64)
    spans = np.zeros((chunk_count, length, 2), dtype=np.int64)
    for row, start in enumerate(starts):
        piece = ids[start : start + body]
        input_ids[row, 0] = tokenizer.cls_token_id
        input_ids[row, 1 : 1 + len(piece)] = piece
        input_ids[row, 1 + len(piece)] = tokenizer.sep_token_id
        attention[row, : len(piece) + 2] = 1
        spans[row, 1 : 1 + len(piece)] = offsets[start : start + body]
    return PreparedNote(
        input_ids=input_ids,
        attention_mask=attention,
        offsets=spans,
        token_count=len(ids),
        truncated=truncated,
    )


# -- vitals and demographics -----------------------------------------------------------------
@dataclass(frozen=True)
class PreparedTabular:
    values: FloatArray  # (F,) raw values in the config's feature order, 0 where missing
    present: BoolArray  # (F,)
    ignored: tuple[str, ...]  # keys given that the model does not use


_SEX = {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}
_ALIASES = {"age": "age_years", "sex": "sex_male"}


def prepare_tabular(values: Mapping[str, Any], config: TabularConfig) -> PreparedTabular:
    """Vitals and demographics by name; None/NaN/absent = missing. ``sex`` may be M/F/male/
    female (other values count as missing); ``age`` is an alias of ``age_years``."""
    names = config.feature_names
    out = np.zeros(len(names), dtype=np.float32)
    present = np.zeros(len(names), dtype=bool)
    ignored = []
    for key, raw in values.items():
        name = _ALIASES.get(key, key)
        if name not in names:
            ignored.append(key)
            continue
        if raw is None:
            continue
        if name == "sex_male" and isinstance(raw, str):
            value = _SEX.get(raw.strip().lower())
            if value is None:
                continue
        elif isinstance(raw, bool) or not isinstance(raw, int | float | np.floating | np.integer):
            raise ModelInputError(f"The value of {key} must be a number, not {raw!r}.")
        else:
            value = float(raw)
        if not math.isfinite(value):
            continue
        index = names.index(name)
        out[index], present[index] = value, True
    return PreparedTabular(values=out, present=present, ignored=tuple(sorted(ignored)))


# -- a case ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedCase:
    """One case's prepared inputs; any subset may be None, but not all of them."""

    pathology: PreparedTiles | None = None
    ecg: PreparedEcg | None = None
    ecg_features: tuple[FloatArray, BoolArray] | None = None  # normalised values, present
    note: PreparedNote | None = None
    tabular: PreparedTabular | None = None

    def modalities(self) -> tuple[str, ...]:
        names = []
        if self.pathology is not None:
            names.append("pathology")
        if self.ecg is not None:
            names.append("ecg")
        if self.note is not None:
            names.append("note")
        if self.tabular is not None and bool(self.tabular.present.any()):
            names.append("tabular")
        return tuple(names)

    def check(self, config: FusionConfig) -> None:
        """Raise ModelInputError if the case has nothing the model reads."""
        given = self.modalities()
        usable = [m for m in given if m in config.modalities]
        if not usable:
            raise ModelInputError(
                "The case has none of the inputs this model reads "
                f"({', '.join(config.modalities)}); add at least one."
            )
