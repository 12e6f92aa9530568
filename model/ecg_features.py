"""Measured ECG features: heart rate, RR irregularity and PR, QRS, QT/QTc intervals.

They feed the model (one ECG token) and are the evidence shown to the clinician, so they are
computed by a small, readable delineator instead of a black box (neurokit2 would pull pandas,
scikit-learn and matplotlib into the runtime for the same figures):

1. R peaks: 5-15 Hz band-pass, squared derivative summed over the recorded leads, 120 ms moving
   average (Pan-Tompkins style), peaks at least 250 ms apart above an adaptive threshold.
2. Rate and rhythm from the RR intervals: mean heart rate, SDNN, RMSSD, coefficient of variation.
3. Intervals on the median beat of all leads (0.5-40 Hz): QRS onset/offset where the spatial
   velocity falls below 20 % of its QRS peak; T end by the tangent method on the RMS curve;
   P onset by threshold on the RMS curve before the QRS. A value outside its physiological range
   is reported as missing instead of guessed. Figures are approximate: verify on the tracing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from model.errors import ModelPackageError
from model.preprocess import zero_phase_filter

FloatArray = npt.NDArray[np.float32]
#: Model inputs: feature name -> (reference mean, scale) used to normalise it.
ECG_FEATURES: dict[str, tuple[float, float]] = {
    "heart_rate_bpm": (75.0, 25.0),
    "rr_cv": (0.05, 0.1),
    "rmssd_ms": (30.0, 50.0),
    "pr_ms": (160.0, 40.0),
    "qrs_ms": (95.0, 25.0),
    "qt_ms": (390.0, 50.0),
    "qtc_bazett_ms": (420.0, 40.0),
}
ECG_FEATURE_NAMES: tuple[str, ...] = tuple(ECG_FEATURES)
_RANGES = {"pr_ms": (60.0, 400.0), "qrs_ms": (40.0, 220.0), "qt_ms": (180.0, 700.0)}


@dataclass(frozen=True)
class EcgMeasurements:
    """What was measured; None where it could not be measured reliably."""

    heart_rate_bpm: float | None
    rr_mean_ms: float | None
    sdnn_ms: float | None
    rmssd_ms: float | None
    rr_cv: float | None
    pr_ms: float | None
    qrs_ms: float | None
    qt_ms: float | None
    qtc_bazett_ms: float | None
    qtc_fridericia_ms: float | None
    beat_count: int
    r_peaks_s: tuple[float, ...]

    def as_dict(self) -> dict[str, float | int | None]:
        """Plain numbers for storage and display (R peak times left out)."""
        data = asdict(self)
        data.pop("r_peaks_s")
        return data

    def feature_vector(self) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """Normalised values in ECG_FEATURE_NAMES order and which are present."""
        values = np.zeros(len(ECG_FEATURES), dtype=np.float32)
        present = np.zeros(len(ECG_FEATURES), dtype=bool)
        for i, (name, (mean, scale)) in enumerate(ECG_FEATURES.items()):
            value = getattr(self, name)
            if value is not None and math.isfinite(value):
                values[i], present[i] = (value - mean) / scale, True
        return values, present


def _bandpass(signal: np.ndarray, fs: float, low: float, high: float) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth band-pass over the last axis (all leads in one call)."""
    high = min(high, 0.45 * fs)
    return zero_phase_filter(signal, (2, (low, high), "bandpass", fs))


def detect_r_peaks(signal: np.ndarray, sampling_rate_hz: float) -> npt.NDArray[np.int64]:
    """Sample indices of the QRS complexes of a (lead, time) signal in mV."""
    from scipy.signal import find_peaks

    fs = sampling_rate_hz
    band = _bandpass(signal, fs, 5.0, 15.0)
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


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return values
    return np.convolve(values, np.ones(width) / width, mode="same")


def _median_beat(beats: Sequence[np.ndarray]) -> np.ndarray:
    """``np.median(np.stack(beats), axis=0)``, value for value, over equally shaped (lead,
    time) beats: stacked with the beat axis last and partitioned in place (a third of the
    time of partitioning along a strided first axis); NaN rules left to numpy."""
    columns = np.stack(beats, axis=-1)  # (lead, time, beat), ours to reorder
    if not np.isfinite(columns).all():
        return np.asarray(np.median(np.stack(beats), axis=0))
    count, half = columns.shape[-1], columns.shape[-1] // 2
    if count % 2:
        columns.partition(half, axis=-1)
        return np.asarray(columns[..., half])
    columns.partition((half - 1, half), axis=-1)
    return np.asarray((columns[..., half - 1] + columns[..., half]) / 2)


def _walk(curve: np.ndarray, start: int, step: int, threshold: float, limit: int, gap: int) -> int:
    """From ``start``, move by ``step`` while ``curve`` >= threshold, tolerating short dips."""
    index, below = start, 0
    while 0 < index + step < len(curve) and abs(index - start) < limit:
        index += step
        below = below + 1 if curve[index] < threshold else 0
        if below > gap:
            return index - step * below
    return index


def _in_range(name: str, value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    low, high = _RANGES[name]
    return value if low <= value <= high else None


def measure_ecg(
    signal: npt.ArrayLike, sampling_rate_hz: float, lead_mask: npt.ArrayLike | None = None
) -> EcgMeasurements:
    """Measure a (lead, time) ECG in mV; ``lead_mask`` marks the leads that were recorded."""
    data = np.asarray(signal)
    if data.ndim == 1:
        data = data[None, :]
    if lead_mask is not None:
        data = data[np.asarray(lead_mask, dtype=bool)]  # before the float64 copy: fewer rows
    data = np.asarray(data, dtype=np.float64)
    if not np.isfinite(data).all():
        data = np.nan_to_num(data)
    fs = float(sampling_rate_hz)
    if data.shape[0] == 0 or fs < 50:
        raise ModelPackageError("The ECG needs at least one lead sampled at 50 Hz or more.")
    empty = EcgMeasurements(None, None, None, None, None, None, None, None, None, None, 0, ())
    if data.shape[1] < 2 * fs:
        return empty
    peaks = detect_r_peaks(data, fs)
    if peaks.size < 3:
        return EcgMeasurements(None, None, None, None, None, None, None, None, None, None,
                               int(peaks.size), tuple(float(p / fs) for p in peaks))  # fmt: skip
    rr = np.diff(peaks) / fs * 1000.0
    rr_mean = float(rr.mean())
    sdnn = float(rr.std(ddof=1)) if rr.size > 1 else 0.0
    rmssd = float(np.sqrt(np.mean(np.diff(rr) ** 2))) if rr.size > 1 else 0.0
    heart_rate = 60000.0 / rr_mean
    pr, qrs, qt = _intervals(data, fs, peaks, float(np.median(rr)))
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


def _intervals(
    data: np.ndarray, fs: float, peaks: np.ndarray, rr_median_ms: float
) -> tuple[float | None, float | None, float | None]:
    """PR, QRS and QT (ms) on the median beat; None where not measurable."""
    pre = round(0.35 * fs)
    post = round(min(0.7, 0.92 * rr_median_ms / 1000.0) * fs)
    filtered = _bandpass(data, fs, 0.5, 40.0)
    beats = [
        filtered[:, p - pre : p + post] for p in peaks if p - pre >= 0 and p + post <= data.shape[1]
    ]
    if len(beats) < 2:
        return None, None, None
    beat = _median_beat(beats)  # (leads, pre + post)
    ms = fs / 1000.0
    velocity = _smooth(
        np.abs(np.diff(beat, axis=1, prepend=beat[:, :1])).sum(axis=0), round(12 * ms)
    )
    r = pre
    search = round(50 * ms)
    peak = int(np.argmax(velocity[r - search : r + search])) + r - search
    threshold = 0.1 * velocity[peak]
    onset = _walk(velocity, peak, -1, threshold, round(150 * ms), round(10 * ms))
    offset = _walk(velocity, peak, +1, threshold, round(150 * ms), round(10 * ms))
    qrs = _in_range("qrs_ms", float(offset - onset) / ms)
    corrected = beat - beat[:, [onset]]
    rms = _smooth(np.sqrt((corrected**2).mean(axis=0)), round(20 * ms))
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
                qt = _in_range("qt_ms", float(t_end - onset) / ms)
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
            pr = _in_range("pr_ms", float(onset - p_on) / ms)
    return pr, qrs, qt
