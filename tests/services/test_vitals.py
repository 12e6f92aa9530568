"""The vitals form: values typed with units are converted, checked, and every bad field named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from clinic_app.domain.errors import InputError
from clinic_app.domain.records import Role
from clinic_app.services.cases import CaseService
from clinic_app.services.vitals import (
    VitalsInputError,
    parse_demographics,
    parse_vitals,
    record_vitals,
    validate_vitals,
)
from clinic_app.storage.engine import Database
from tests.services.test_cases import make_actor


def test_units_are_converted_to_the_stored_ones() -> None:
    vitals = parse_vitals(
        {
            "heart_rate_bpm": "72 bpm",
            "blood_pressure": "120/80 mmHg",
            "spo2_percent": "97 %",
            "temperature_c": "98.6 °F",
            "respiratory_rate_per_min": "16/min",
        }
    )
    assert vitals.heart_rate_bpm == 72.0
    assert (vitals.systolic_mmhg, vitals.diastolic_mmhg) == (120.0, 80.0)
    assert vitals.spo2_percent == 97.0
    assert vitals.temperature_c == pytest.approx(37.0)
    assert vitals.respiratory_rate_per_min == 16.0


def test_the_form_unit_applies_to_a_bare_temperature_and_kpa_and_commas_are_read() -> None:
    vitals = parse_vitals(
        {"temperature_c": "100,4", "temperature_unit": "°F", "systolic_mmhg": "16 kPa"}
    )
    assert vitals.temperature_c == pytest.approx(38.0)
    assert vitals.systolic_mmhg == pytest.approx(120.01, abs=0.01)
    assert parse_vitals({"temperature_c": "37,2 C"}).temperature_c == pytest.approx(37.2)


def test_every_bad_field_gets_its_own_error_naming_it_and_the_range() -> None:
    vitals, errors = validate_vitals(
        {
            "heart_rate_bpm": "400",
            "spo2_percent": "ninety",
            "temperature_c": "98.6",  # Fahrenheit typed into a Celsius field
            "respiratory_rate_per_min": "12 parsecs",
        }
    )
    assert vitals is None
    assert set(errors) == {
        "heart_rate_bpm",
        "spo2_percent",
        "temperature_c",
        "respiratory_rate_per_min",
    }
    assert "Heart rate" in str(errors["heart_rate_bpm"]) and "10–350 bpm" in str(
        errors["heart_rate_bpm"]
    )
    assert "SpO₂" in str(errors["spo2_percent"]) and "not a number" in str(errors["spo2_percent"])
    assert "25–45 °C" in str(errors["temperature_c"]) and "°F" in str(errors["temperature_c"])
    assert "unit 'parsecs'" in str(errors["respiratory_rate_per_min"])
    with pytest.raises(VitalsInputError) as caught:
        parse_vitals({"heart_rate_bpm": "400", "spo2_percent": "ninety"})
    assert isinstance(caught.value, InputError)
    assert set(caught.value.field_errors) == {"heart_rate_bpm", "spo2_percent"}


def test_blood_pressure_needs_systolic_above_diastolic() -> None:
    _, errors = validate_vitals({"systolic_mmhg": "80", "diastolic_mmhg": "120"})
    assert "must be below the systolic" in str(errors["diastolic_mmhg"])
    _, errors = validate_vitals({"blood_pressure": "80/120"})
    assert "blood_pressure" in errors
    _, errors = validate_vitals({"blood_pressure": "high"})
    assert "120/80" in str(errors["blood_pressure"])
    _, errors = validate_vitals({"blood_pressure": "120/80", "systolic_mmhg": "120"})
    assert "not both" in str(errors["blood_pressure"])


def test_an_empty_form_and_unknown_fields_are_refused() -> None:
    with pytest.raises(InputError, match="at least one vital sign"):
        parse_vitals({"heart_rate_bpm": "  ", "spo2_percent": ""})
    _, errors = validate_vitals({"weight_kg": "80"})
    assert "weight_kg" in errors


def test_measurement_time_is_zoned_and_not_in_the_future() -> None:
    vitals = parse_vitals({"heart_rate_bpm": "60", "measured_at": "2024-05-01T14:30:00+02:00"})
    assert vitals.measured_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    local = parse_vitals({"heart_rate_bpm": "60", "measured_at": "2024-05-01 14:30"})
    assert local.measured_at is not None and local.measured_at.tzinfo is not None
    _, errors = validate_vitals({"heart_rate_bpm": "60", "measured_at": "2999-01-01T00:00"})
    assert "future" in str(errors["measured_at"])


def test_demographics_accept_an_age_or_a_birth_year() -> None:
    today = datetime(2025, 6, 1, tzinfo=UTC)
    assert parse_demographics({"age_years": "61", "sex": "F"}, today=today).birth_year == 1964
    parsed = parse_demographics({"birth_year": "1950", "sex": "male"}, today=today)
    assert (parsed.birth_year, parsed.sex) == (1950, "male")
    with pytest.raises(VitalsInputError) as caught:
        parse_demographics({"birth_year": "3000", "sex": "x"}, today=today)
    assert set(caught.value.field_errors) == {"birth_year", "sex"}


def test_record_vitals_stores_the_converted_values(database: Database, tmp_path: Path) -> None:
    cases = CaseService(database, tmp_path / "inputs")
    clinician = make_actor(database, "dr_vitals", Role.CLINICIAN)
    case = cases.create_case(clinician, title="Fever")
    vitals_id = record_vitals(
        cases, clinician, case.case_uid, {"temperature_c": "101.3 °F", "heart_rate_bpm": "104"}
    )
    assert vitals_id > 0
    stored = cases.get_case(clinician, case.case_uid).vitals[-1]
    assert stored["temperature_c"] == pytest.approx(38.5)
    assert stored["heart_rate_bpm"] == 104.0
    with pytest.raises(InputError, match="Heart rate"):
        record_vitals(cases, clinician, case.case_uid, {"heart_rate_bpm": "0"})
    assert len(cases.get_case(clinician, case.case_uid).vitals) == 1
