"""The statistics: exact counts per privacy unit, the noisy release path, labels and deltas."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
from sqlalchemy import select

from clinic_app.domain.errors import InputError
from clinic_app.domain.records import DecisionAction, Role
from clinic_app.services.context import Actor
from clinic_app.services.privacy import QUERIES, QueryParams, SeededRandom, release, set_budget
from clinic_app.services.privacy.queries import age_bin, month_window
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import (
    Analysis,
    Case,
    Decision,
    Patient,
    PrivacyCharge,
    Suggestion,
)
from tests.services.test_privacy_ledger import make_actor

NOW = datetime(2025, 6, 15, 12, tzinfo=UTC)
MI, AF, ST = "22298006", "49436004", "164889003"  # SNOMED: myocardial infarction, AF, ST change
HUGE = Fraction(10**6)  # noise scale 1e-6: the released counts equal the exact ones


def at(month: int, day: int) -> datetime:
    return datetime(2025, month, day, 9, tzinfo=UTC)


def seed(database: Database) -> None:
    """Four clinic patients (one of unknown age) and one composite-demo patient."""
    clinician = make_actor(database, Role.CLINICIAN, "dr-a")
    reviewer = make_actor(database, Role.REVIEWER, "dr-b")
    with database.write() as s:
        p1, p2, p3, p4, p5 = (
            Patient(pseudonym=f"P{i}", birth_year=year)
            for i, year in enumerate([1950, 1985, 1987, None, 2020], start=1)
        )
        s.add_all([p1, p2, p3, p4, p5])

        def case(
            patient: Patient, when: datetime, top: str | None = None, demo: bool = False
        ) -> Case:
            row = Case(
                case_uid=f"c-{patient.pseudonym}-{when.month}",
                patient=patient,
                created_at=when,
                top_suggestion=top,
                is_composite_demo=demo,
            )
            s.add(row)
            return row

        def analysis(
            row: Case, when: datetime, actor: Actor, *codes: str, abstain: bool = False
        ) -> Analysis:
            result = Analysis(
                case=row,
                model_name="m",
                model_version="1",
                bundle_sha256="0" * 64,
                device="cpu",
                requested_by_id=actor.user_id,
                created_at=when,
            )
            for rank, code in enumerate(codes, start=1):
                result.suggestions.append(
                    Suggestion(
                        rank=rank,
                        code_system="http://snomed.info/sct",
                        code=code,
                        display=code,
                        probability=0.5,
                        abstained=abstain and rank == 1,
                    )
                )
            s.add(result)
            return result

        def decide(row: Case, when: datetime, action: DecisionAction, **extra: object) -> None:
            reason = None if action is DecisionAction.ACCEPT else "clinical judgement"
            s.add(
                Decision(
                    case=row,
                    action=action,
                    reason=reason,
                    user_id=clinician.user_id,
                    decided_at=when,
                    **extra,
                )
            )

        case_a = case(p1, at(1, 10))
        a_a = analysis(case_a, at(1, 10), clinician, MI, AF)
        case_b = case(p1, at(3, 1), top="ignored: the analysis abstained")
        analysis(case_b, at(3, 2), reviewer, ST, abstain=True)
        case_c = case(p2, at(2, 1), top=AF)
        case_d = case(p3, at(4, 1))
        analysis(case_d, at(4, 1), clinician, ST)
        a_d = analysis(case_d, at(4, 5), clinician, MI, ST)
        case(p4, at(5, 1))
        case_f = case(p5, at(5, 5), demo=True)
        analysis(case_f, at(5, 5), clinician, MI)
        s.flush()
        decide(case_a, at(1, 11), DecisionAction.ACCEPT, suggestion_id=a_a.suggestions[0].id)
        decide(case_b, at(3, 3), DecisionAction.OVERRIDE, override_code=AF)
        decide(case_c, at(2, 3), DecisionAction.OVERRIDE, override_code=ST)
        decide(case_d, at(4, 2), DecisionAction.REJECT)
        decide(case_d, at(4, 6), DecisionAction.ACCEPT, suggestion_id=a_d.suggestions[0].id)


@pytest.fixture
def admin(database: Database) -> Actor:
    actor = make_actor(database, Role.ADMIN)
    for dataset in ("clinical", "demo", "audit"):
        set_budget(database, actor, dataset, Fraction(10**9), Fraction(1, 100))
    seed(database)
    return actor


def exact(
    database: Database, name: str, dataset: str = "clinical", max_per_patient: int = 1
) -> dict[tuple[str, ...], int]:
    query = QUERIES[name]
    window = month_window(None, None, NOW)
    values = QueryParams(now=NOW, months=window, max_per_patient=max_per_patient)
    with database.read() as session:
        return dict(query.count(session, dataset, values))


def test_exact_counts_take_one_contribution_per_patient(database: Database, admin: Actor) -> None:
    assert exact(database, "suggested_diagnosis") == {(MI,): 2, (AF,): 1}
    assert exact(database, "suggested_diagnosis", "demo") == {(MI,): 1}
    assert exact(database, "accepted_diagnosis") == {(AF,): 1, (ST,): 1, (MI,): 1}
    assert exact(database, "override_rate") == {("overrides",): 2, ("decisions",): 3}
    assert exact(database, "age_histogram") == {
        ("70-79",): 1,
        ("40-49",): 1,
        ("30-39",): 1,
        ("unknown",): 1,
    }
    assert exact(database, "age_histogram", "demo") == {("0-9",): 1}
    assert exact(database, "analyses_by_role_month") == {
        ("clinician", "2025-01"): 1,
        ("clinician", "2025-04"): 1,
    }
    assert exact(database, "analyses_by_role_month", max_per_patient=2) == {
        ("clinician", "2025-01"): 1,
        ("reviewer", "2025-03"): 1,
        ("clinician", "2025-04"): 2,
    }


def test_a_release_with_public_labels_reports_every_label(database: Database, admin: Actor) -> None:
    result = release(
        database, admin, "suggested_diagnosis", HUGE, codes=[MI, AF, "not-seen"], now=NOW
    )
    assert result.rows == [((MI,), 2), ((AF,), 1), (("not-seen",), 0)]
    assert result.delta == 0  # pure epsilon-DP: the labels are public
    assert result.noise["scale"] == "1/1000000"
    assert result.budget_after.epsilon_spent == HUGE


def test_labels_from_the_data_need_a_delta_and_pass_a_threshold(
    database: Database, admin: Actor
) -> None:
    with pytest.raises(InputError, match="needs a delta"):
        release(database, admin, "suggested_diagnosis", HUGE, now=NOW)
    with database.read() as session:
        assert list(session.scalars(select(PrivacyCharge))) == []  # refused before charging
    result = release(
        database, admin, "suggested_diagnosis", HUGE, delta=Fraction(1, 10**6), now=NOW
    )
    assert result.noise["threshold"] == "2"
    assert result.rows == [((MI,), 2)]  # AF rests on one patient: not shown
    assert result.delta == Fraction(1, 10**6)


def test_the_override_rate_releases_noisy_numerator_and_denominator(
    database: Database, admin: Actor
) -> None:
    result = release(database, admin, "override_rate", HUGE, now=NOW)
    assert result.rows == [(("overrides",), 2), (("decisions",), 3)]
    assert result.noise["sensitivity_l1"] == "2"
    assert result.summary == {"override_rate": "0.667"}
    noisy = release(database, admin, "override_rate", Fraction(1, 2), rng=SeededRandom(5), now=NOW)
    assert noisy.noise["scale"] == "4"
    assert [cell for cell, _ in noisy.rows] == [("overrides",), ("decisions",)]


def test_analyses_per_role_and_month_cover_the_window(database: Database, admin: Actor) -> None:
    result = release(
        database, admin, "analyses_by_role_month", HUGE, since="2025-01", until="2025-04", now=NOW
    )
    assert len(result.rows) == 5 * 4  # four roles and "unknown", four months
    shown = {cell: value for cell, value in result.rows if value}
    assert shown == {("clinician", "2025-01"): 1, ("clinician", "2025-04"): 1}
    capped = release(database, admin, "analyses_by_role_month", HUGE, max_per_patient=2, now=NOW)
    assert capped.noise["sensitivity_l1"] == "2"


def test_age_histogram_and_demo_scope(database: Database, admin: Actor) -> None:
    result = release(database, admin, "age_histogram", HUGE, dataset="demo", now=NOW)
    assert dict(result.rows)[("0-9",)] == 1
    assert sum(value for _, value in result.rows) == 1
    assert [label for (label,), _ in result.rows][-2:] == ["100+", "unknown"]


def test_audit_activity_is_released_from_the_audit_dataset(
    database: Database, admin: Actor
) -> None:
    now = datetime.now(UTC)
    with pytest.raises(InputError, match="reads the audit dataset"):
        release(database, admin, "audit_activity", HUGE, dataset="clinical")
    result = release(
        database,
        admin,
        "audit_activity",
        HUGE,
        event_types=["privacy.budget_set", "privacy.release"],
        since=f"{now.year:04d}-{now.month:02d}",
        now=now,
    )
    month = f"{now.year:04d}-{now.month:02d}"
    # three budgets set by the fixture; this release's own event is committed before counting
    assert dict(result.rows) == {("privacy.budget_set", month): 3, ("privacy.release", month): 1}
    assert result.dataset == "audit"


def test_the_gaussian_mechanism_charges_its_delta(database: Database, admin: Actor) -> None:
    result = release(
        database,
        admin,
        "override_rate",
        Fraction(1),
        delta=Fraction(1, 10**6),
        mechanism="gaussian",
        rng=SeededRandom(2),
        now=NOW,
    )
    assert result.mechanism == "discrete_gaussian"
    assert result.delta == Fraction(1, 10**6)
    assert Fraction(result.noise["sigma_squared"]) > 2  # L2^2 = 2 at epsilon 1
    assert result.budget_after.delta_spent == Fraction(1, 10**6)
    with pytest.raises(InputError, match="needs a delta"):
        release(database, admin, "override_rate", Fraction(1), mechanism="gaussian")


def test_unknown_names_and_bad_windows_are_refused(database: Database, admin: Actor) -> None:
    with pytest.raises(InputError, match="no statistic called"):
        release(database, admin, "patient_names", Fraction(1))
    with pytest.raises(InputError, match="YYYY-MM"):
        release(database, admin, "analyses_by_role_month", Fraction(1), since="March")
    with pytest.raises(InputError, match="ends"):
        release(
            database, admin, "analyses_by_role_month", Fraction(1), since="2025-05", until="2025-01"
        )


def test_age_bins_and_default_month_window() -> None:
    assert age_bin(1950, 2025) == "70-79"
    assert age_bin(1925, 2025) == "100+"
    assert age_bin(2025, 2025) == "0-9"
    assert age_bin(None, 2025) == "unknown"
    assert age_bin(2030, 2025) == "unknown"
    window = month_window(None, None, NOW)
    assert window[0] == "2024-07" and window[-1] == "2025-06" and len(window) == 12
