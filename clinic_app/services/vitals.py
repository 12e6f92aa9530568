"""Vital signs and demographics typed into the case form: parsed with their units, checked.

Every value is text as the clinician typed it ("98.6 °F", "120/80", "97 %", "72"). Values are
converted to the units the case store keeps (bpm, mmHg, %, °C, breaths/min) and checked against
plausible ranges (``domain.signals.VITAL_RANGES``). Each bad field gets its own InputError that
names the field and the accepted range, so the form can mark every one at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clinic_app.domain.errors import InputError
from clinic_app.domain.signals import VITAL_RANGES, Vitals
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor

#: A temperature typed with no unit is read in this unit unless the form says otherwise.
DEFAULT_TEMPERATURE_UNIT = "°C"
SEXES = ("female", "male", "other", "unknown")


@dataclass(frozen=True)
class VitalField:
    """One field of the vitals form: its key, label, stored unit and accepted range."""

    name: str
    label: str
    unit: str
    low: float
    high: float
    #: Unit spellings accepted after the number (lower case, spaces removed) -> factor to the
    #: stored unit; "" is the bare number.
    units: Mapping[str, float]

    @property
    def accepted(self) -> str:
        return f"{self.low:g}–{self.high:g} {self.unit}"


def _range(name: str) -> tuple[str, float, float]:
    return VITAL_RANGES[name]


_KPA_TO_MMHG = 7.50062
_PRESSURE_UNITS = {"": 1.0, "mmhg": 1.0, "kpa": _KPA_TO_MMHG}
_PER_MINUTE = {"": 1.0, "/min": 1.0, "min-1": 1.0, "permin": 1.0}

#: The form's fields in display order (temperature is handled with its unit, see below).
FIELDS: tuple[VitalField, ...] = (
    VitalField(
        "heart_rate_bpm",
        "Heart rate",
        "bpm",
        *_range("heart_rate_bpm")[1:],
        {**_PER_MINUTE, "bpm": 1.0, "beats/min": 1.0},
    ),
    VitalField(
        "systolic_mmhg", "Systolic pressure", "mmHg", *_range("systolic_mmhg")[1:], _PRESSURE_UNITS
    ),
    VitalField(
        "diastolic_mmhg",
        "Diastolic pressure",
        "mmHg",
        *_range("diastolic_mmhg")[1:],
        _PRESSURE_UNITS,
    ),
    VitalField("spo2_percent", "SpO₂", "%", *_range("spo2_percent")[1:], {"": 1.0, "%": 1.0}),
    VitalField(
        "temperature_c",
        "Temperature",
        "°C",
        *_range("temperature_c")[1:],
        {"": 1.0, "c": 1.0, "°c": 1.0, "degc": 1.0, "celsius": 1.0},
    ),
    VitalField(
        "respiratory_rate_per_min",
        "Respiratory rate",
        "breaths/min",
        *_range("respiratory_rate_per_min")[1:],
        {**_PER_MINUTE, "breaths/min": 1.0, "rpm": 1.0},
    ),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}
_FAHRENHEIT = {"f", "°f", "degf", "fahrenheit"}
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+))\s*(.*?)\s*$")
_BLOOD_PRESSURE = re.compile(r"^\s*(\d+(?:[.,]\d*)?)\s*/\s*(\d+(?:[.,]\d*)?)\s*(.*?)\s*$")


class VitalsInputError(InputError):
    """One or more fields of the vitals form are wrong; ``field_errors`` has one per field."""

    def __init__(self, field_errors: Mapping[str, InputError]) -> None:
        self.field_errors = dict(field_errors)
        messages = " ".join(str(e) for e in self.field_errors.values())
        super().__init__(messages or "The vital signs are not valid.")


def _number(text: str) -> tuple[float, str] | None:
    match = _NUMBER.match(text)
    if match is None:
        return None
    value = float(match.group(1).replace(",", "."))
    unit = match.group(2).lower().replace(" ", "").replace("º", "°")
    return value, unit


def _parse_field(field: VitalField, text: str, temperature_unit: str) -> float:
    parsed = _number(text)
    if parsed is None:
        raise InputError(
            f"{field.label}: '{text.strip()}' is not a number; enter a value in {field.accepted}."
        )
    value, unit = parsed
    if field.name == "temperature_c":
        unit = unit or temperature_unit.lower().replace(" ", "")
        if unit in _FAHRENHEIT:
            value = (value - 32.0) * 5.0 / 9.0
            unit = "°c"
    factor = field.units.get(unit)
    if factor is None:
        known = sorted(u for u in field.units if u) + (
            ["°F"] if field.name == "temperature_c" else []
        )
        raise InputError(
            f"{field.label}: the unit '{unit}' is not understood; use {', '.join(known)}."
        )
    value *= factor
    if not math.isfinite(value) or not field.low <= value <= field.high:
        hint = (
            " If you measured in °F, type the unit, e.g. '98.6 °F'."
            if field.name == "temperature_c" and 77.0 <= parsed[0] <= 113.0
            else ""
        )
        raise InputError(
            f"{field.label}: {value:.4g} {field.unit} is outside the accepted range "
            f"{field.accepted}; check the value and its unit.{hint}"
        )
    return round(value, 2)


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InputError(
            f"Measured at: '{text.strip()}' is not a date and time such as 2024-05-01 14:30."
        ) from exc
    if moment.tzinfo is None:
        moment = moment.astimezone()  # typed in the workstation's local time
    if moment > datetime.now(UTC) + timedelta(minutes=5):
        raise InputError("Measured at: the time is in the future.")
    return moment


def validate_vitals(
    form_values: Mapping[str, str],
) -> tuple[Vitals | None, dict[str, InputError]]:
    """Parse the form: (vitals, {}) when every field is right, else (None, errors by field).

    Keys are the field names of FIELDS, plus ``blood_pressure`` ("120/80"), ``temperature_unit``
    ("°C" or "°F", for a temperature typed without one) and ``measured_at`` (ISO date and time).
    """
    errors: dict[str, InputError] = {}
    values: dict[str, float] = {}
    unknown = (
        set(form_values)
        - set(FIELDS_BY_NAME)
        - {
            "blood_pressure",
            "temperature_unit",
            "measured_at",
        }
    )
    for key in sorted(unknown):
        errors[key] = InputError(f"'{key}' is not a vital sign this form records.")
    temperature_unit = (form_values.get("temperature_unit") or DEFAULT_TEMPERATURE_UNIT).strip()
    pressure = (form_values.get("blood_pressure") or "").strip()
    if pressure:
        match = _BLOOD_PRESSURE.match(pressure)
        if match is None:
            errors["blood_pressure"] = InputError(
                f"Blood pressure: '{pressure}' is not systolic/diastolic such as 120/80 mmHg."
            )
        else:
            unit = match.group(3)
            for name, part in (
                ("systolic_mmhg", match.group(1)),
                ("diastolic_mmhg", match.group(2)),
            ):
                if (form_values.get(name) or "").strip():
                    errors["blood_pressure"] = InputError(
                        "Blood pressure: give it either as systolic/diastolic or in the two "
                        "separate fields, not both."
                    )
                    break
                try:
                    values[name] = _parse_field(FIELDS_BY_NAME[name], f"{part} {unit}", "")
                except InputError as exc:
                    errors["blood_pressure"] = exc
    for field in FIELDS:
        text = (form_values.get(field.name) or "").strip()
        if not text:
            continue
        try:
            values[field.name] = _parse_field(field, text, temperature_unit)
        except InputError as exc:
            errors[field.name] = exc
    systolic, diastolic = values.get("systolic_mmhg"), values.get("diastolic_mmhg")
    if systolic is not None and diastolic is not None and diastolic >= systolic:
        key = "blood_pressure" if pressure else "diastolic_mmhg"
        errors[key] = InputError(
            f"Diastolic pressure: {diastolic:g} mmHg must be below the systolic pressure "
            f"({systolic:g} mmHg)."
        )
    measured_at = None
    moment_text = (form_values.get("measured_at") or "").strip()
    if moment_text:
        try:
            measured_at = _parse_time(moment_text)
        except InputError as exc:
            errors["measured_at"] = exc
    if errors:
        return None, errors
    if not values:
        return None, {"": InputError("Enter at least one vital sign.")}
    return Vitals(**values, measured_at=measured_at), {}


def parse_vitals(form_values: Mapping[str, str]) -> Vitals:
    """The form's vitals in stored units; VitalsInputError (an InputError) lists every bad field."""
    vitals, errors = validate_vitals(form_values)
    if errors or vitals is None:
        raise VitalsInputError(errors)
    return vitals


def record_vitals(
    cases: CaseService, actor: Actor, case_uid: str, form_values: Mapping[str, str]
) -> int:
    """Check the form and store its vital signs with the case (audited); returns their id."""
    vitals = parse_vitals(form_values)
    return cases.add_vitals(actor, case_uid, **vitals.as_dict())


# -- demographics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Demographics:
    """Birth year and sex as the case store keeps them (both optional)."""

    birth_year: int | None = None
    sex: str | None = None


def parse_demographics(
    form_values: Mapping[str, str], *, today: datetime | None = None
) -> Demographics:
    """``birth_year`` (or ``age_years``) and ``sex`` from the form; InputError names a bad one.

    An age is turned into a birth year (this year minus the age), as the store keeps years only.
    """
    now = today or datetime.now(UTC)
    errors: dict[str, InputError] = {}
    birth_year = None
    year_text = (form_values.get("birth_year") or "").strip()
    age_text = (form_values.get("age_years") or "").strip()
    if year_text and age_text:
        errors["age_years"] = InputError("Age: give either the age or the birth year, not both.")
    elif year_text:
        if not re.fullmatch(r"\d{4}", year_text) or not 1880 <= int(year_text) <= now.year:
            errors["birth_year"] = InputError(
                f"Birth year: '{year_text}' is not a year between 1880 and {now.year}."
            )
        else:
            birth_year = int(year_text)
    elif age_text:
        parsed = _number(age_text)
        if parsed is None or parsed[1] not in ("", "y", "yr", "yrs", "years", "year"):
            errors["age_years"] = InputError(f"Age: '{age_text}' is not an age in years.")
        elif not 0 <= parsed[0] <= 130:
            errors["age_years"] = InputError(
                f"Age: {parsed[0]:g} years is outside the accepted range 0–130 years."
            )
        else:
            birth_year = now.year - int(parsed[0])
    sex_text = (form_values.get("sex") or "").strip().lower()
    sex = None
    if sex_text:
        aliases = {"f": "female", "m": "male", "o": "other", "u": "unknown"}
        sex = aliases.get(sex_text, sex_text)
        if sex not in SEXES:
            errors["sex"] = InputError(f"Sex: '{sex_text}' is not one of {', '.join(SEXES)}.")
    if errors:
        raise VitalsInputError(errors)
    return Demographics(birth_year, sex)
