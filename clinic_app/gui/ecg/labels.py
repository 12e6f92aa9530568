"""Words for what the ECG viewer shows: WFDB beat and rhythm codes, model measurements."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: WFDB/MIT-BIH beat and note symbols (PhysioNet "Annotation codes").
BEAT_NAMES: dict[str, str] = {
    "N": "normal beat",
    "L": "left bundle branch block beat",
    "R": "right bundle branch block beat",
    "B": "bundle branch block beat",
    "A": "atrial premature beat",
    "a": "aberrated atrial premature beat",
    "J": "nodal (junctional) premature beat",
    "S": "supraventricular premature beat",
    "V": "premature ventricular contraction",
    "r": "R-on-T premature ventricular contraction",
    "F": "fusion of ventricular and normal beat",
    "e": "atrial escape beat",
    "j": "nodal (junctional) escape beat",
    "n": "supraventricular escape beat",
    "E": "ventricular escape beat",
    "/": "paced beat",
    "f": "fusion of paced and normal beat",
    "Q": "unclassifiable beat",
    "?": "beat not classified during learning",
    "!": "ventricular flutter wave",
    "x": "non-conducted P wave (blocked APC)",
    "|": "isolated QRS-like artefact",
    "~": "change in signal quality",
    "+": "rhythm change",
    '"': "comment",
    "[": "start of ventricular flutter/fibrillation",
    "]": "end of ventricular flutter/fibrillation",
    "p": "peak of P wave",
    "t": "peak of T wave",
    "u": "peak of U wave",
}

#: Symbols drawn in red (ventricular origin) and blue (supraventricular ectopy).
VENTRICULAR_SYMBOLS = frozenset("VrFE!")
SUPRAVENTRICULAR_SYMBOLS = frozenset("AaJSxn")

#: MIT-BIH rhythm labels (the text after "(" in a "+" annotation).
RHYTHM_NAMES: dict[str, str] = {
    "N": "normal sinus rhythm",
    "SBR": "sinus bradycardia",
    "AB": "atrial bigeminy",
    "AFIB": "atrial fibrillation",
    "AFL": "atrial flutter",
    "B": "ventricular bigeminy",
    "BII": "2° heart block",
    "IVR": "idioventricular rhythm",
    "NOD": "nodal (junctional) rhythm",
    "P": "paced rhythm",
    "PREX": "pre-excitation (WPW)",
    "SVTA": "supraventricular tachyarrhythmia",
    "T": "ventricular trigeminy",
    "VFL": "ventricular flutter",
    "VT": "ventricular tachycardia",
}


def rhythm_code(label: str) -> str:
    """``"(AFIB"`` or ``"AFIB"`` -> ``"AFIB"``."""
    return label.strip().lstrip("(").strip()


def rhythm_name(label: str) -> str:
    """A readable name for a rhythm label, or the label itself when it is not a known code."""
    code = rhythm_code(label)
    return RHYTHM_NAMES.get(code, code)


def beat_name(symbol: str) -> str:
    return BEAT_NAMES.get(symbol, f"annotation {symbol!r}")


#: Model measurement keys (model.ecg_features.EcgMeasurements) -> (label, unit).
_MEASUREMENT_LABELS: dict[str, tuple[str, str]] = {
    "heart_rate_bpm": ("HR", "bpm"),
    "rr_mean_ms": ("RR", "ms"),
    "pr_ms": ("PR", "ms"),
    "qrs_ms": ("QRS", "ms"),
    "qt_ms": ("QT", "ms"),
    "qtc_bazett_ms": ("QTc (Bazett)", "ms"),
    "qtc_fridericia_ms": ("QTc (Fridericia)", "ms"),
    "sdnn_ms": ("SDNN", "ms"),
    "rmssd_ms": ("RMSSD", "ms"),
    "rr_cv": ("RR CV", ""),
    "beat_count": ("beats", ""),
}
#: Keys that describe the computation, not the patient.
_NOT_SHOWN = frozenset({"measured_seconds"})
_UNIT_SUFFIXES = {"_ms": "ms", "_bpm": "bpm", "_deg": "°", "_mv": "mV", "_s": "s", "_hz": "Hz"}


def _number(value: float) -> str:
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"


def _value_text(value: Any, unit: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping) and "value" in value:
        return _value_text(value["value"], str(value.get("unit", unit)))
    if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[1], str):
        return _value_text(value[0], value[1])
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        return f"{_number(float(value))} {unit}".strip()
    return f"{value} {unit}".strip()


def measurement_items(measurements: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value with unit) for every measurement present, known ones first in the
    conventional reading order (HR, RR, PR, QRS, QT, QTc), others after with their own names."""
    items: list[tuple[str, str]] = []
    for key, (label, unit) in _MEASUREMENT_LABELS.items():
        if key in measurements:
            text = _value_text(measurements[key], unit)
            if text is not None:
                items.append((label, text))
    for key, value in measurements.items():
        if key in _MEASUREMENT_LABELS or key in _NOT_SHOWN:
            continue
        name, unit = str(key), ""
        for suffix, suffix_unit in _UNIT_SUFFIXES.items():
            if name.lower().endswith(suffix):
                name, unit = name[: -len(suffix)], suffix_unit
                break
        text = _value_text(value, unit)
        if text is not None:
            items.append((name.replace("_", " "), text))
    return items
