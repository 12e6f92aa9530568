"""ECG recordings and vital signs as the rest of the app sees them (stdlib + numpy only).

Readers in ``clinic_app.io`` return these; services store them; the model receives their arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from clinic_app.domain.errors import InputError

#: The 12 standard leads, in the conventional order the model and the ECG viewer use.
STANDARD_LEADS: tuple[str, ...] = (
    "I",
    "II",
    "III",
    "aVR",
    "aVL",
    "aVF",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)


@dataclass(frozen=True, slots=True)
class EcgAnnotation:
    """One annotation from the record: a beat (``kind='beat'``) or a rhythm episode.

    ``sample`` counts from the start of ``EcgRecording.samples`` at ``sampling_rate_hz``;
    ``end_sample`` is set for episodes (rhythm changes run until the next one).
    ``symbol`` is the WFDB symbol ("N", "V", "A", "+"); ``label`` the rhythm ("AFIB") or text.
    """

    sample: int
    kind: str  # "beat" | "rhythm" | "note"
    symbol: str
    label: str = ""
    end_sample: int | None = None
    lead: str | None = None


@dataclass(frozen=True, slots=True)
class EcgRecording:
    """A multi-lead recording in physical units.

    ``samples`` has shape (lead, time), dtype float32, in millivolts; NaN marks samples the
    device flagged as invalid. ``lead_names`` uses the 12 standard names ("I", "aVR", "V1")
    where a source name matches one, else the source's own name. ``metadata`` holds what the
    file said about the recording (header comments, device, age, sex, diagnosis codes) after
    any de-identification the caller applied.
    """

    samples: npt.NDArray[np.float32]
    sampling_rate_hz: float
    lead_names: tuple[str, ...]
    start: datetime | None = None
    annotations: tuple[EcgAnnotation, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    units: str = "mV"

    def __post_init__(self) -> None:
        if self.samples.ndim != 2:
            raise InputError(f"An ECG needs samples shaped (lead, time); got {self.samples.shape}.")
        if self.samples.shape[0] != len(self.lead_names):
            raise InputError(
                f"The ECG has {self.samples.shape[0]} signals "
                f"but {len(self.lead_names)} lead names."
            )
        if not (math.isfinite(self.sampling_rate_hz) and self.sampling_rate_hz > 0):
            raise InputError(f"The ECG sampling rate {self.sampling_rate_hz} Hz is not valid.")

    @property
    def duration_s(self) -> float:
        return int(self.samples.shape[1]) / self.sampling_rate_hz

    @property
    def lead_count(self) -> int:
        return int(self.samples.shape[0])


# name -> (unit, plausible low, plausible high): outside the range is refused as a typing or
# unit error (a temperature of 98.6 was typed in Fahrenheit; an SpO2 of 0.97 is a fraction).
VITAL_RANGES: dict[str, tuple[str, float, float]] = {
    "heart_rate_bpm": ("beats/min", 10.0, 350.0),
    "systolic_mmhg": ("mmHg", 30.0, 300.0),
    "diastolic_mmhg": ("mmHg", 10.0, 200.0),
    "spo2_percent": ("%", 30.0, 100.0),
    "temperature_c": ("°C", 25.0, 45.0),
    "respiratory_rate_per_min": ("breaths/min", 2.0, 80.0),
}


@dataclass(frozen=True, slots=True)
class Vitals:
    """Vital signs typed by the clinician, in fixed units, each optional but at least one set."""

    heart_rate_bpm: float | None = None
    systolic_mmhg: float | None = None
    diastolic_mmhg: float | None = None
    spo2_percent: float | None = None
    temperature_c: float | None = None
    respiratory_rate_per_min: float | None = None
    measured_at: datetime | None = None

    def __post_init__(self) -> None:
        present = {name: getattr(self, name) for name in VITAL_RANGES}
        present = {name: value for name, value in present.items() if value is not None}
        if not present:
            raise InputError("Enter at least one vital sign.")
        for name, value in present.items():
            unit, low, high = VITAL_RANGES[name]
            label = name.rsplit("_", 1)[0].replace("_", " ")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"The {label} must be a number ({unit}).")
            if not math.isfinite(value) or not low <= value <= high:
                raise InputError(
                    f"The {label} {value:g} {unit} is outside {low:g}–{high:g} {unit}; "
                    "check the value and its unit."
                )
        if (
            self.systolic_mmhg is not None
            and self.diastolic_mmhg is not None
            and self.diastolic_mmhg >= self.systolic_mmhg
        ):
            raise InputError(
                f"The diastolic pressure ({self.diastolic_mmhg:g} mmHg) must be below the "
                f"systolic pressure ({self.systolic_mmhg:g} mmHg)."
            )
        if self.measured_at is not None and self.measured_at.tzinfo is None:
            raise InputError("The measurement time needs a time zone.")

    def as_dict(self) -> dict[str, float | datetime]:
        """The values that are set, keyed by field name (what ``CaseService.add_vitals`` takes)."""
        names = (*VITAL_RANGES, "measured_at")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}
