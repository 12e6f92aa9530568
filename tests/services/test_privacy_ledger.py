"""The privacy ledger on SQLite and PostgreSQL: exact budgets, charge-first, audit, roles."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_app.domain.errors import AccessDenied, InputError, PrivacyBudgetExceeded
from clinic_app.domain.records import AuditAction, AuditOutcome, Role
from clinic_app.services.context import Actor
from clinic_app.services.privacy import (
    Query,
    QueryParams,
    SeededRandom,
    budget_status,
    parse_amount,
    release,
    set_budget,
)
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent, PrivacyBudget, PrivacyCharge, User

TENTH = Fraction(1, 10)


def make_actor(database: Database, role: Role, username: str | None = None) -> Actor:
    name = username or f"{role.value}-1"
    with database.write() as session:
        user = User(username=name, display_name=name.title(), role=role, password_hash="unused")
        session.add(user)
        session.flush()
        user_id = user.id
    return Actor(user_id=user_id, username=name, role=role, workstation="test-ws")


def audit_events(database: Database, event_type: str) -> list[AuditEvent]:
    with database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.event_type == event_type)
                .order_by(AuditEvent.sequence)
            )
        )


@pytest.fixture
def admin(database: Database) -> Actor:
    return make_actor(database, Role.ADMIN)


def release_ages(database: Database, actor: Actor, epsilon: Fraction, seed: int = 0) -> None:
    release(database, actor, "age_histogram", epsilon, rng=SeededRandom(seed))


def test_three_tenths_allow_exactly_three_releases_of_a_tenth(
    database: Database, admin: Actor
) -> None:
    set_budget(database, admin, "clinical", Fraction(3, 10), Fraction(0))
    for seed in range(3):
        release_ages(database, admin, TENTH, seed)
    with pytest.raises(PrivacyBudgetExceeded) as refused:
        release_ages(database, admin, TENTH)
    message = str(refused.value)
    assert "needs epsilon 0.1" in message
    assert "only epsilon 0 and delta 0 are left" in message
    status = budget_status(database, admin, "clinical")
    assert status is not None
    assert status.epsilon_spent == Fraction(3, 10)
    assert status.epsilon_remaining == Fraction(0)
    assert status.releases == 3


def test_ten_releases_of_0_1_spend_a_budget_of_1_exactly(database: Database, admin: Actor) -> None:
    set_budget(database, admin, "clinical", parse_amount("1.0", "budget"), Fraction(0))
    for seed in range(10):
        release_ages(database, admin, parse_amount("0.1", "--epsilon"), seed)
    status = budget_status(database, admin, "clinical")
    assert status is not None
    assert status.epsilon_spent == 1
    assert status.epsilon_remaining == 0
    with pytest.raises(PrivacyBudgetExceeded):
        release_ages(database, admin, Fraction(1, 10**9))
    with database.read() as session:
        stored = list(session.scalars(select(PrivacyCharge.epsilon)))
    assert stored == [Fraction(1, 10)] * 10


def test_amounts_are_parsed_exactly() -> None:
    assert parse_amount("0.1", "e") == Fraction(1, 10)
    assert parse_amount("1/10", "e") == Fraction(1, 10)
    assert parse_amount("1e-6", "d") == Fraction(1, 10**6)
    with pytest.raises(InputError):
        parse_amount("a tenth", "e")


def _failing_count(session: Session, dataset: str, params: QueryParams) -> Counter[tuple[str, ...]]:
    raise RuntimeError("the database went away after the charge")


FAILING = Query(
    name="failing_query",
    title="A query that fails after it has been charged",
    datasets=("clinical",),
    unit="patient",
    columns=("x",),
    count=_failing_count,
    cells=lambda params: [("a",)],
)


def test_the_charge_is_committed_before_the_computation(database: Database, admin: Actor) -> None:
    set_budget(database, admin, "clinical", Fraction(1), Fraction(0))
    with pytest.raises(RuntimeError):
        release(database, admin, FAILING, Fraction(1, 4))
    with database.read() as session:
        charges = list(session.scalars(select(PrivacyCharge)))
    assert [(c.query, c.epsilon, c.mechanism) for c in charges] == [
        ("failing_query", Fraction(1, 4), "discrete_laplace")
    ]
    status = budget_status(database, admin, "clinical")
    assert status is not None and status.epsilon_remaining == Fraction(3, 4)
    assert len(audit_events(database, "privacy.release")) == 1


def test_each_release_writes_one_audit_event_with_spent_and_remaining(
    database: Database, admin: Actor
) -> None:
    set_budget(database, admin, "clinical", Fraction(1, 2), Fraction(0))
    release_ages(database, admin, Fraction(1, 5))
    release_ages(database, admin, Fraction(1, 5))
    events = audit_events(database, "privacy.release")
    assert len(events) == 2
    last = events[-1]
    assert last.action == AuditAction.EXECUTE
    assert last.outcome == AuditOutcome.SUCCESS
    assert last.username == admin.username
    assert last.details["query"] == "age_histogram"
    assert last.details["epsilon"] == "1/5"
    assert last.details["epsilon_spent"] == "2/5"
    assert last.details["epsilon_remaining"] == "1/10"
    assert last.details["noise"]["scale"] == "5"

    with pytest.raises(PrivacyBudgetExceeded):
        release_ages(database, admin, Fraction(1, 5))
    refused = audit_events(database, "privacy.release")[-1]
    assert len(audit_events(database, "privacy.release")) == 3
    assert refused.outcome == AuditOutcome.MINOR_FAILURE
    assert "only epsilon 0.1" in refused.details["refused"]


def test_budget_changes_are_audited_and_cannot_undercut_spending(
    database: Database, admin: Actor
) -> None:
    set_budget(database, admin, "clinical", Fraction(1), Fraction(1, 10**6))
    release_ages(database, admin, Fraction(1, 2))
    raised = set_budget(database, admin, "clinical", Fraction(2), Fraction(1, 10**6))
    assert raised.epsilon_remaining == Fraction(3, 2)
    with pytest.raises(InputError, match="cannot go below"):
        set_budget(database, admin, "clinical", Fraction(1, 4), Fraction(0))
    events = audit_events(database, "privacy.budget_set")
    assert [e.action for e in events] == [AuditAction.UPDATE, AuditAction.UPDATE]
    assert events[1].details["previous_epsilon_total"] == "1"
    assert events[1].details["epsilon_total"] == "2"
    with database.read() as session:
        budget = session.scalars(select(PrivacyBudget)).one()
    assert budget.epsilon_total == 2 and budget.set_by_id == admin.user_id


def test_a_dataset_without_a_budget_releases_nothing(database: Database, admin: Actor) -> None:
    with pytest.raises(PrivacyBudgetExceeded, match="No privacy budget has been set"):
        release_ages(database, admin, TENTH)
    assert budget_status(database, admin, "clinical") is None


def test_budgets_are_per_dataset(database: Database, admin: Actor) -> None:
    set_budget(database, admin, "clinical", Fraction(1, 10), Fraction(0))
    set_budget(database, admin, "demo", Fraction(1), Fraction(0))
    release(database, admin, "age_histogram", Fraction(1, 2), dataset="demo")
    clinical, demo = (budget_status(database, admin, d) for d in ("clinical", "demo"))
    assert clinical is not None and clinical.epsilon_spent == 0
    assert demo is not None and demo.epsilon_spent == Fraction(1, 2)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DATA_SCIENTIST])
def test_admins_and_data_scientists_may_release(database: Database, role: Role) -> None:
    set_budget(database, make_actor(database, Role.ADMIN, "root"), "clinical", Fraction(1), 0)
    actor = make_actor(database, role)
    release_ages(database, actor, TENTH)
    with database.read() as session:
        spender = session.scalars(select(PrivacyCharge.user_id)).one()
    assert spender == actor.user_id


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.REVIEWER])
def test_clinical_roles_may_not_release(database: Database, role: Role) -> None:
    set_budget(database, make_actor(database, Role.ADMIN, "root"), "clinical", Fraction(1), 0)
    actor = make_actor(database, role)
    with pytest.raises(AccessDenied, match="may not release statistics"):
        release_ages(database, actor, TENTH)
    with database.read() as session:
        assert list(session.scalars(select(PrivacyCharge))) == []
    denied = audit_events(database, "privacy.release")
    assert [(e.username, e.outcome) for e in denied] == [
        (actor.username, AuditOutcome.MINOR_FAILURE)
    ]


@pytest.mark.parametrize("role", [Role.DATA_SCIENTIST, Role.CLINICIAN, Role.REVIEWER])
def test_only_admins_set_budgets(database: Database, role: Role) -> None:
    actor = make_actor(database, role)
    with pytest.raises(AccessDenied, match="may not set privacy budgets"):
        set_budget(database, actor, "clinical", Fraction(100), Fraction(0))
    with database.read() as session:
        assert list(session.scalars(select(PrivacyBudget))) == []
    assert [e.outcome for e in audit_events(database, "privacy.budget_set")] == [
        AuditOutcome.MINOR_FAILURE
    ]


def test_invalid_amounts_are_refused(database: Database, admin: Actor) -> None:
    with pytest.raises(InputError):
        set_budget(database, admin, "clinical", Fraction(-1), Fraction(0))
    with pytest.raises(InputError):
        set_budget(database, admin, "clinical", Fraction(1), Fraction(1))
    with pytest.raises(InputError, match="no dataset called"):
        set_budget(database, admin, "everything", Fraction(1), Fraction(0))
    set_budget(database, admin, "clinical", Fraction(1), Fraction(0))
    with pytest.raises(InputError):
        release_ages(database, admin, Fraction(0))
    with pytest.raises(InputError, match="too many digits"):
        release_ages(database, admin, Fraction(1, 10**70))
