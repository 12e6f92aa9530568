"""The persistent privacy ledger: one (epsilon, delta) budget per dataset, charged per release.

Every amount is an exact :class:`~fractions.Fraction` (stored as text by ``ExactFraction``), so
ten releases of 0.1 spend exactly 1 and a budget of 3/10 allows exactly three of 1/10. Releases
compose by basic composition: the epsilons add up and so do the deltas.

A charge commits, with its ``privacy.release`` audit event, in its own transaction BEFORE the
statistic is computed: a crash or error afterwards wastes budget but can never release a
result that was not paid for. The budget row is locked (``FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` serialises writers already) so two workstations cannot both spend the last
of a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_app.domain.errors import AccessDenied, InputError, PrivacyBudgetExceeded
from clinic_app.domain.permissions import Permission, allowed
from clinic_app.domain.records import AuditAction
from clinic_app.services.context import Actor, record_audit, record_denied
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import PrivacyBudget, PrivacyCharge

#: The datasets a budget can be set for. Each names a fixed part of the data with its own
#: privacy unit; every query says which of them it reads, so a release can never be charged to
#: a budget other than the one that protects the people in it.
DATASETS: dict[str, str] = {
    "clinical": "patients of the clinic's own cases (not the composite demo cases); "
    "privacy unit: one patient",
    "demo": "patients of the composite demo cases only; privacy unit: one patient",
    "audit": "the audit trail, for oversight summaries; privacy unit: one audit event",
}
DEFAULT_DATASET = "clinical"

_MAX_STORED_CHARS = 64  # ExactFraction is String(64); PostgreSQL enforces the length


def exact_text(value: Fraction) -> str:
    """``value`` exactly and readably: a decimal when it has one (``0.1``), else ``1/3``."""
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = value * 10**places
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
    if places == 0:
        return f"{sign}{digits}"
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def parse_amount(text: str, name: str) -> Fraction:
    """An epsilon or delta typed by a person (``0.1``, ``1/10``, ``1e-6``), parsed exactly."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError) as exc:
        raise InputError(
            f"'{text}' is not a number for {name}.",
            hint="Write it as a decimal such as 0.1 or as a fraction such as 1/10.",
        ) from exc
    return value


@dataclass(frozen=True)
class BudgetStatus:
    """A dataset's budget and what has been spent of it, exactly."""

    dataset: str
    epsilon_total: Fraction
    delta_total: Fraction
    epsilon_spent: Fraction
    delta_spent: Fraction
    releases: int

    @property
    def epsilon_remaining(self) -> Fraction:
        return self.epsilon_total - self.epsilon_spent

    @property
    def delta_remaining(self) -> Fraction:
        return self.delta_total - self.delta_spent

    def to_json(self) -> dict[str, Any]:
        """Exact values as ``n/d`` strings (JSON numbers would be floats)."""
        return {
            "dataset": self.dataset,
            "epsilon_total": str(self.epsilon_total),
            "delta_total": str(self.delta_total),
            "epsilon_spent": str(self.epsilon_spent),
            "delta_spent": str(self.delta_spent),
            "epsilon_remaining": str(self.epsilon_remaining),
            "delta_remaining": str(self.delta_remaining),
            "releases": self.releases,
        }


@dataclass(frozen=True)
class Charge:
    """A committed charge: the release it pays for may now be computed and shown."""

    charge_id: int
    dataset: str
    query: str
    mechanism: str
    epsilon: Fraction
    delta: Fraction
    budget_after: BudgetStatus


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise InputError(
            f"There is no dataset called '{dataset}'.",
            hint=f"Use one of: {', '.join(DATASETS)}.",
        )
    return dataset


def _check_amount(value: Fraction, name: str, *, allow_zero: bool, below_one: bool) -> Fraction:
    if not isinstance(value, Fraction | int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a fractions.Fraction, not {type(value).__name__}")
    value = Fraction(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be {'at least 0' if allow_zero else 'above 0'}.")
    if below_one and value >= 1:
        raise InputError(f"{name} must be below 1; values near 1 give no privacy at all.")
    if len(f"{value.numerator}/{value.denominator}") > _MAX_STORED_CHARS:
        raise InputError(
            f"{name} {value} has too many digits to record exactly.",
            hint="Use a simpler number, such as 0.1 or 1/1000000.",
        )
    return value


def _status(budget: PrivacyBudget, charges: list[PrivacyCharge]) -> BudgetStatus:
    return BudgetStatus(
        dataset=budget.dataset,
        epsilon_total=budget.epsilon_total,
        delta_total=budget.delta_total,
        epsilon_spent=sum((charge.epsilon for charge in charges), Fraction(0)),
        delta_spent=sum((charge.delta for charge in charges), Fraction(0)),
        releases=len(charges),
    )


def _charges(session: Session, budget: PrivacyBudget) -> list[PrivacyCharge]:
    return list(
        session.scalars(
            select(PrivacyCharge)
            .where(PrivacyCharge.budget_id == budget.id)
            .order_by(PrivacyCharge.id)
        )
    )


def _budget(session: Session, dataset: str, *, lock: bool) -> PrivacyBudget | None:
    statement = select(PrivacyBudget).where(PrivacyBudget.dataset == dataset)
    if lock:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def _require(database: Database, actor: Actor, permission: Permission, event_type: str) -> None:
    """Refuse (and audit the refusal) unless ``actor`` holds ``permission``."""
    try:
        actor.require(permission)
    except AccessDenied as exc:
        action = AuditAction.UPDATE if event_type == "privacy.budget_set" else AuditAction.EXECUTE
        record_denied(database, actor, event_type, action, exc.message)
        raise


def set_budget(
    database: Database, actor: Actor, dataset: str, epsilon: Fraction, delta: Fraction
) -> BudgetStatus:
    """Create or change ``dataset``'s total budget (admins only); audited as privacy.budget_set.

    A total below what has already been spent is refused: spent budget cannot be given back.
    """
    check_dataset(dataset)
    _require(database, actor, Permission.PRIVACY_BUDGET_SET, "privacy.budget_set")
    epsilon = _check_amount(epsilon, "The epsilon budget", allow_zero=True, below_one=False)
    delta = _check_amount(delta, "The delta budget", allow_zero=True, below_one=True)
    with database.write() as session:
        budget = _budget(session, dataset, lock=True)
        previous: dict[str, str | None] = {"epsilon": None, "delta": None}
        if budget is None:
            budget = PrivacyBudget(
                dataset=dataset, epsilon_total=epsilon, delta_total=delta, set_by_id=actor.user_id
            )
            session.add(budget)
            session.flush()
            charges: list[PrivacyCharge] = []
        else:
            charges = _charges(session, budget)
            spent = _status(budget, charges)
            if epsilon < spent.epsilon_spent or delta < spent.delta_spent:
                raise InputError(
                    f"The budget of dataset '{dataset}' cannot go below what releases have "
                    f"already spent (epsilon {exact_text(spent.epsilon_spent)}, delta "
                    f"{exact_text(spent.delta_spent)}).",
                    hint="Set a total at least that large; spent budget cannot be given back.",
                )
            previous = {"epsilon": str(budget.epsilon_total), "delta": str(budget.delta_total)}
            budget.epsilon_total = epsilon
            budget.delta_total = delta
            budget.set_by_id = actor.user_id
        status = _status(budget, charges)
        record_audit(
            session,
            actor,
            "privacy.budget_set",
            AuditAction.UPDATE,
            details={
                "dataset": dataset,
                "epsilon_total": str(epsilon),
                "delta_total": str(delta),
                "previous_epsilon_total": previous["epsilon"],
                "previous_delta_total": previous["delta"],
                "epsilon_remaining": str(status.epsilon_remaining),
                "delta_remaining": str(status.delta_remaining),
            },
        )
    return status


def budget_status(database: Database, actor: Actor, dataset: str) -> BudgetStatus | None:
    """``dataset``'s budget and spending, or None when no budget has been set for it."""
    check_dataset(dataset)
    if not allowed(actor.role, Permission.PRIVACY_BUDGET_SET):
        actor.require(Permission.STATS_RELEASE)
    with database.read() as session:
        budget = _budget(session, dataset, lock=False)
        return None if budget is None else _status(budget, _charges(session, budget))


def charge(
    database: Database,
    actor: Actor,
    *,
    dataset: str,
    query: str,
    mechanism: str,
    epsilon: Fraction,
    delta: Fraction,
    details: dict[str, Any] | None = None,
) -> Charge:
    """Spend (epsilon, delta) of ``dataset``'s budget for one release and COMMIT it.

    Writes the charge and its ``privacy.release`` audit event (with the amounts spent and left)
    in one transaction. Raises PrivacyBudgetExceeded, and audits the refusal, when the budget
    is missing or too small; AccessDenied without ``stats.release``.
    """
    check_dataset(dataset)
    _require(database, actor, Permission.STATS_RELEASE, "privacy.release")
    epsilon = _check_amount(epsilon, "Epsilon", allow_zero=False, below_one=False)
    delta = _check_amount(delta, "Delta", allow_zero=True, below_one=True)
    refusal: PrivacyBudgetExceeded | None = None
    with database.write() as session:
        budget = _budget(session, dataset, lock=True)
        if budget is None:
            refusal = PrivacyBudgetExceeded(
                f"No privacy budget has been set for dataset '{dataset}', so nothing can be "
                "released from it.",
                hint=f"An administrator sets one with `clinic-app stats budget --dataset {dataset}"
                " --set-epsilon E --set-delta D`.",
            )
        else:
            before = _status(budget, _charges(session, budget))
            if epsilon > before.epsilon_remaining or delta > before.delta_remaining:
                refusal = PrivacyBudgetExceeded(
                    f"Releasing '{query}' from dataset '{dataset}' needs epsilon "
                    f"{exact_text(epsilon)} and delta {exact_text(delta)}, but only epsilon "
                    f"{exact_text(before.epsilon_remaining)} and delta "
                    f"{exact_text(before.delta_remaining)} are left of its budget "
                    f"(epsilon {exact_text(before.epsilon_total)}, delta "
                    f"{exact_text(before.delta_total)}).",
                    hint="Ask for a smaller epsilon, or ask an administrator whether the budget "
                    "may be raised.",
                )
            else:
                row = PrivacyCharge(
                    budget_id=budget.id,
                    query=query,
                    mechanism=mechanism,
                    epsilon=epsilon,
                    delta=delta,
                    user_id=actor.user_id,
                )
                session.add(row)
                session.flush()
                after = BudgetStatus(
                    dataset=dataset,
                    epsilon_total=before.epsilon_total,
                    delta_total=before.delta_total,
                    epsilon_spent=before.epsilon_spent + epsilon,
                    delta_spent=before.delta_spent + delta,
                    releases=before.releases + 1,
                )
                record_audit(
                    session,
                    actor,
                    "privacy.release",
                    AuditAction.EXECUTE,
                    details={
                        **(details or {}),
                        "charge_id": row.id,
                        "dataset": dataset,
                        "query": query,
                        "mechanism": mechanism,
                        "epsilon": str(epsilon),
                        "delta": str(delta),
                        "epsilon_spent": str(after.epsilon_spent),
                        "delta_spent": str(after.delta_spent),
                        "epsilon_remaining": str(after.epsilon_remaining),
                        "delta_remaining": str(after.delta_remaining),
                    },
                )
                result = Charge(
                    charge_id=row.id,
                    dataset=dataset,
                    query=query,
                    mechanism=mechanism,
                    epsilon=epsilon,
                    delta=delta,
                    budget_after=after,
                )
    if refusal is not None:
        record_denied(database, actor, "privacy.release", AuditAction.EXECUTE, refusal.message)
        raise refusal
    return result
