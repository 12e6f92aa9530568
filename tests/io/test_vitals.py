"""Vitals typed by the clinician: plausible ranges, unit mistakes refused, at least one value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from clinic_app.domain.errors import InputError
from clinic_app.domain.signals import VITAL_RANGES, Vitals


def test_a_normal_set_is_accepted_and_listed() -> None:
    when = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    vitals = Vitals(
        heart_rate_bpm=72,
        systolic_mmhg=120,
        diastolic_mmhg=80,
        spo2_percent=97,
        temperature_c=36.8,
        respiratory_rate_per_min=14,
        measured_at=when,
    )
    assert vitals.as_dict() == {
        "heart_rate_bpm": 72,
        "systolic_mmhg": 120,
        "diastolic_mmhg": 80,
        "spo2_percent": 97,
        "temperature_c": 36.8,
        "respiratory_rate_per_min": 14,
        "measured_at": when,
    }


def test_one_value_is_enough_and_none_is_refused() -> None:
    assert Vitals(heart_rate_bpm=60).as_dict() == {"heart_rate_bpm": 60}
    with pytest.raises(InputError, match="at least one vital sign"):
        Vitals()


@pytest.mark.parametrize("name", list(VITAL_RANGES))
def test_range_edges(name: str) -> None:
    _, low, high = VITAL_RANGES[name]
    edges: list[dict[str, Any]] = [{name: low}, {name: high}]
    assert [Vitals(**edge).as_dict()[name] for edge in edges] == [low, high]
    for outside in (low - 0.1, high + 0.1):
        values: dict[str, Any] = {name: outside}
        with pytest.raises(InputError, match="check the value and its unit"):
            Vitals(**values)


def test_fahrenheit_typed_as_celsius_is_refused() -> None:
    with pytest.raises(InputError, match=r"temperature 98\.6 °C is outside 25–45 °C"):
        Vitals(temperature_c=98.6)


def test_spo2_as_a_fraction_is_refused() -> None:
    with pytest.raises(InputError, match=r"spo2 0\.97 % is outside 30–100 %"):
        Vitals(spo2_percent=0.97)


@pytest.mark.parametrize(("systolic", "diastolic"), [(120, 120), (80, 120)])
def test_diastolic_must_be_below_systolic(systolic: float, diastolic: float) -> None:
    with pytest.raises(InputError, match=r"diastolic pressure .* must be below the systolic"):
        Vitals(systolic_mmhg=systolic, diastolic_mmhg=diastolic)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "72", True])
def test_non_numbers_are_refused(value: object) -> None:
    with pytest.raises(InputError):
        Vitals(heart_rate_bpm=value)  # type: ignore[arg-type]


def test_a_naive_measurement_time_is_refused() -> None:
    with pytest.raises(InputError, match="time zone"):
        Vitals(heart_rate_bpm=70, measured_at=datetime(2026, 3, 1, 9, 30))
