"""Aggregate statistics that leave the app only through a differential-privacy mechanism.

Each :class:`Query` says which dataset it reads, its privacy unit and its sensitivity: how much
the released vector of counts can change, in L1 (Laplace) and squared L2 (Gaussian) norm, when
one unit is added or removed. Patient-level queries bound every patient to ONE contribution
(their most recent case, decision or analysis), so their sensitivity is 1; the override rate
releases two counts a patient can both change (L1 2, L2^2 2); analyses per role and month take
at most ``max_per_patient`` analyses per patient (sensitivity ``max_per_patient``).

The cells of a histogram must not themselves reveal anyone: their labels come from a public
list (roles, months, age bins, or the SNOMED codes / event types the caller names). When the
caller names none, the labels come from the data and only cells whose noisy count reaches a
stability threshold are shown, which costs a delta (see ``mechanisms.stability_threshold``).

:func:`release` charges the ledger (committed) first, then reads the exact counts and noises
them with integer-valued noise from an exact sampler.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from clinic_app.domain.errors import InputError
from clinic_app.domain.records import DecisionAction, Role
from clinic_app.services.context import Actor
from clinic_app.services.privacy.ledger import BudgetStatus, charge, check_dataset
from clinic_app.services.privacy.mechanisms import (
    CryptoRandom,
    RandomSource,
    discrete_gaussian,
    discrete_laplace,
    gaussian_sigma_squared,
    stability_threshold,
)
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import (
    Analysis,
    AuditEvent,
    Case,
    Decision,
    Patient,
    Suggestion,
    User,
)

Cell = tuple[str, ...]
MECHANISMS = ("laplace", "gaussian")
MAX_MONTHS = 120
AGE_BIN_WIDTH = 10
AGE_BINS: tuple[str, ...] = (
    *(f"{low}-{low + AGE_BIN_WIDTH - 1}" for low in range(0, 100, AGE_BIN_WIDTH)),
    "100+",
    "unknown",
)
UNKNOWN_ROLE = "unknown"


@dataclass(frozen=True)
class QueryParams:
    """What a caller may choose about a release besides its epsilon and delta."""

    now: datetime
    months: tuple[str, ...] = ()
    codes: tuple[str, ...] | None = None
    event_types: tuple[str, ...] | None = None
    max_per_patient: int = 1


@dataclass(frozen=True)
class Query:
    """One releasable statistic: which data it reads, its cells and its sensitivity."""

    name: str
    title: str
    datasets: tuple[str, ...]  # the first is the default
    unit: str
    columns: tuple[str, ...]
    count: Callable[[Session, str, QueryParams], Counter[Cell]]
    cells: Callable[[QueryParams], list[Cell] | None]  # None: labels come from the data
    l1_sensitivity: Callable[[QueryParams], int] = lambda params: 1
    l2_sensitivity_squared: Callable[[QueryParams], int] = lambda params: 1
    summary: Callable[[dict[Cell, int]], dict[str, str]] | None = None


@dataclass(frozen=True)
class Release:
    """Noisy counts as released, with what they cost and how they were made."""

    query: str
    title: str
    dataset: str
    mechanism: str
    epsilon: Fraction
    delta: Fraction
    columns: tuple[str, ...]
    rows: list[tuple[Cell, int]]
    noise: dict[str, str]
    charge_id: int
    budget_after: BudgetStatus
    released_at: datetime
    summary: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "title": self.title,
            "dataset": self.dataset,
            "mechanism": self.mechanism,
            "epsilon": str(self.epsilon),
            "delta": str(self.delta),
            "noise": self.noise,
            "rows": [
                {**dict(zip(self.columns, cell, strict=True)), "count": value}
                for cell, value in self.rows
            ],
            "summary": self.summary,
            "charge_id": self.charge_id,
            "budget": self.budget_after.to_json(),
            "released_at": self.released_at.isoformat(),
        }


# -- helpers ---------------------------------------------------------------------------------
def month_of(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def _parse_month(text: str) -> tuple[int, int]:
    try:
        year_text, month_text = text.strip().split("-")
        year, month = int(year_text), int(month_text)
    except ValueError as exc:
        raise InputError(f"'{text}' is not a month; write it as YYYY-MM, e.g. 2025-03.") from exc
    if not (1 <= month <= 12 and 1900 <= year <= 9999):
        raise InputError(f"'{text}' is not a month; write it as YYYY-MM, e.g. 2025-03.")
    return year, month


def month_window(since: str | None, until: str | None, now: datetime) -> tuple[str, ...]:
    """The months from ``since`` to ``until`` inclusive; by default the 12 up to ``now``'s."""
    end = _parse_month(until) if until else _parse_month(month_of(now))
    if since:
        start = _parse_month(since)
    else:
        index = end[0] * 12 + end[1] - 1 - 11
        start = (index // 12, index % 12 + 1)
    first, last = start[0] * 12 + start[1] - 1, end[0] * 12 + end[1] - 1
    if last < first:
        raise InputError(f"The month window ends ({until}) before it starts ({since}).")
    if last - first + 1 > MAX_MONTHS:
        raise InputError(f"The month window is longer than {MAX_MONTHS} months; shorten it.")
    return tuple(f"{index // 12:04d}-{index % 12 + 1:02d}" for index in range(first, last + 1))


def _window_bounds(months: Sequence[str]) -> tuple[datetime, datetime]:
    """[start of the first month, start of the month after the last) in UTC, for SQL."""
    first_year, first_month = _parse_month(months[0])
    last_year, last_month = _parse_month(months[-1])
    after = (last_year + last_month // 12, last_month % 12 + 1)
    return (
        datetime(first_year, first_month, 1, tzinfo=UTC),
        datetime(after[0], after[1], 1, tzinfo=UTC),
    )


def _case_scope(dataset: str) -> ColumnElement[bool]:
    """Which cases a patient-level dataset covers."""
    return Case.is_composite_demo.is_(dataset == "demo")


def _latest_per_patient(rows: Iterable[tuple[int, Any, Any]]) -> dict[int, Any]:
    """``(patient_id, order_key, value)`` -> the value with the greatest order key per patient."""
    best: dict[int, tuple[Any, Any]] = {}
    for patient_id, order_key, value in rows:
        if patient_id not in best or order_key > best[patient_id][0]:
            best[patient_id] = (order_key, value)
    return {patient_id: value for patient_id, (_, value) in best.items()}


def _histogram(values: Iterable[str | None]) -> Counter[Cell]:
    return Counter((value,) for value in values if value)


# -- the counting functions (exact; read inside one read transaction) -------------------------
def count_suggested_diagnosis(session: Session, dataset: str, params: QueryParams) -> Counter[Cell]:
    """Per patient, the top suggestion of their most recent case that has one.

    A case's top suggestion is the lowest-ranked (rank 1) suggestion of its latest analysis
    with suggestions, none if the model abstained there, else ``Case.top_suggestion``.
    Sensitivity 1: one patient, one code, one cell.
    """
    top_by_case: dict[int, tuple[tuple[datetime, int, int], str | None]] = {}
    rows = session.execute(
        select(
            Analysis.case_id,
            Analysis.created_at,
            Analysis.id,
            Suggestion.rank,
            Suggestion.code,
            Suggestion.abstained,
        )
        .join(Suggestion, Suggestion.analysis_id == Analysis.id)
        .join(Case, Case.id == Analysis.case_id)
        .where(_case_scope(dataset))
    )
    for case_id, created_at, analysis_id, rank, code, abstained in rows:
        key = (created_at, analysis_id, -rank)
        if case_id not in top_by_case or key > top_by_case[case_id][0]:
            top_by_case[case_id] = (key, None if abstained else code)
    cases = session.execute(
        select(Case.id, Case.patient_id, Case.created_at, Case.top_suggestion).where(
            _case_scope(dataset)
        )
    )
    candidates = []
    for case_id, patient_id, created_at, top_suggestion in cases:
        top = top_by_case[case_id][1] if case_id in top_by_case else top_suggestion
        if top:
            candidates.append((patient_id, (created_at, case_id), top))
    return _histogram(_latest_per_patient(candidates).values())


def count_accepted_diagnosis(session: Session, dataset: str, params: QueryParams) -> Counter[Cell]:
    """Per patient, the code of their latest accept (the suggestion's) or override (the
    clinician's). Sensitivity 1."""
    rows = session.execute(
        select(
            Case.patient_id,
            Decision.decided_at,
            Decision.id,
            Decision.action,
            Decision.override_code,
            Suggestion.code,
        )
        .join(Case, Case.id == Decision.case_id)
        .outerjoin(Suggestion, Suggestion.id == Decision.suggestion_id)
        .where(
            _case_scope(dataset),
            Decision.action.in_([DecisionAction.ACCEPT, DecisionAction.OVERRIDE]),
        )
    )
    latest = _latest_per_patient(
        (
            patient_id,
            (decided_at, decision_id),
            suggested if action == DecisionAction.ACCEPT else override_code,
        )
        for patient_id, decided_at, decision_id, action, override_code, suggested in rows
    )
    return _histogram(latest.values())


def count_override_rate(session: Session, dataset: str, params: QueryParams) -> Counter[Cell]:
    """Per patient, their latest decision: one to ``decisions``, and one to ``overrides`` if it
    was an override. L1 sensitivity 2 (a patient can change both counts), L2^2 2."""
    rows = session.execute(
        select(Case.patient_id, Decision.decided_at, Decision.id, Decision.action)
        .join(Case, Case.id == Decision.case_id)
        .where(_case_scope(dataset))
    )
    latest = _latest_per_patient(
        (patient_id, (decided_at, decision_id), action)
        for patient_id, decided_at, decision_id, action in rows
    )
    counts: Counter[Cell] = Counter()
    for action in latest.values():
        counts[("decisions",)] += 1
        if action == DecisionAction.OVERRIDE:
            counts[("overrides",)] += 1
    return counts


def count_analyses_by_role_month(
    session: Session, dataset: str, params: QueryParams
) -> Counter[Cell]:
    """Analyses in the month window by the requesting user's role and month (UTC), at most
    ``max_per_patient`` per patient (their earliest): sensitivity ``max_per_patient``."""
    window = set(params.months)
    start, end = _window_bounds(params.months)
    rows = session.execute(
        select(Case.patient_id, Analysis.created_at, Analysis.id, User.role)
        .join(Case, Case.id == Analysis.case_id)
        .outerjoin(User, User.id == Analysis.requested_by_id)
        .where(_case_scope(dataset), Analysis.created_at >= start, Analysis.created_at < end)
    )
    per_patient: dict[int, list[tuple[tuple[datetime, int], Cell]]] = defaultdict(list)
    for patient_id, created_at, analysis_id, role in rows:
        month = month_of(created_at)
        if month in window:
            role_month: Cell = (Role(role).value if role else UNKNOWN_ROLE, month)
            per_patient[patient_id].append(((created_at, analysis_id), role_month))
    counts: Counter[Cell] = Counter()
    for analyses in per_patient.values():
        for _, cell in sorted(analyses)[: params.max_per_patient]:
            counts[cell] += 1
    return counts


def age_bin(birth_year: int | None, year: int) -> str:
    """The 10-year age bin at ``year`` (age taken as year - birth year), or ``unknown``."""
    if birth_year is None or birth_year > year:
        return "unknown"
    age = year - birth_year
    return "100+" if age >= 100 else AGE_BINS[age // AGE_BIN_WIDTH]


def count_age_histogram(session: Session, dataset: str, params: QueryParams) -> Counter[Cell]:
    """Patients with a case in the dataset by 10-year age bin at release time. Sensitivity 1."""
    patients = session.execute(
        select(Patient.id, Patient.birth_year).where(
            Patient.id.in_(select(Case.patient_id).where(_case_scope(dataset)))
        )
    )
    return Counter((age_bin(birth_year, params.now.year),) for _, birth_year in patients)


def count_audit_activity(session: Session, dataset: str, params: QueryParams) -> Counter[Cell]:
    """Audit events in the month window by event type and month. Event-level privacy:
    sensitivity 1 per event (a user-level guarantee would need per-user bounding)."""
    window = set(params.months)
    start, end = _window_bounds(params.months)
    counts: Counter[Cell] = Counter()
    for event_type, occurred_at in session.execute(
        select(AuditEvent.event_type, AuditEvent.occurred_at).where(
            AuditEvent.occurred_at >= start, AuditEvent.occurred_at < end
        )
    ):
        month = month_of(occurred_at)
        if month in window:
            counts[(event_type, month)] += 1
    return counts


def _code_cells(params: QueryParams) -> list[Cell] | None:
    return None if params.codes is None else [(code,) for code in params.codes]


def _role_month_cells(params: QueryParams) -> list[Cell]:
    roles = [role.value for role in Role] + [UNKNOWN_ROLE]
    return [(role, month) for role in roles for month in params.months]


def _audit_cells(params: QueryParams) -> list[Cell] | None:
    if params.event_types is None:
        return None
    return [(kind, month) for kind in params.event_types for month in params.months]


def _override_summary(values: dict[Cell, int]) -> dict[str, str]:
    """The rate from the noisy counts (post-processing: costs no privacy)."""
    overrides = max(values.get(("overrides",), 0), 0)
    decisions = max(values.get(("decisions",), 0), 0)
    if decisions == 0:
        return {"override_rate": "undefined (no decisions after noise)"}
    rate = min(Fraction(overrides, decisions), Fraction(1))
    return {"override_rate": f"{float(rate):.3f}"}


_PATIENT_DATASETS = ("clinical", "demo")
QUERIES: dict[str, Query] = {
    query.name: query
    for query in (
        Query(
            name="suggested_diagnosis",
            title="Patients by the model's top suggested diagnosis (latest case)",
            datasets=_PATIENT_DATASETS,
            unit="patient",
            columns=("code",),
            count=count_suggested_diagnosis,
            cells=_code_cells,
        ),
        Query(
            name="accepted_diagnosis",
            title="Patients by accepted or overriding diagnosis (latest decision)",
            datasets=_PATIENT_DATASETS,
            unit="patient",
            columns=("code",),
            count=count_accepted_diagnosis,
            cells=_code_cells,
        ),
        Query(
            name="override_rate",
            title="Overrides among decisions (latest decision per patient)",
            datasets=_PATIENT_DATASETS,
            unit="patient",
            columns=("measure",),
            count=count_override_rate,
            cells=lambda params: [("overrides",), ("decisions",)],
            l1_sensitivity=lambda params: 2,
            l2_sensitivity_squared=lambda params: 2,
            summary=_override_summary,
        ),
        Query(
            name="analyses_by_role_month",
            title="Analyses by requesting role and month",
            datasets=_PATIENT_DATASETS,
            unit="patient",
            columns=("role", "month"),
            count=count_analyses_by_role_month,
            cells=_role_month_cells,
            l1_sensitivity=lambda params: params.max_per_patient,
            l2_sensitivity_squared=lambda params: params.max_per_patient**2,
        ),
        Query(
            name="age_histogram",
            title="Patients by age in 10-year bins",
            datasets=_PATIENT_DATASETS,
            unit="patient",
            columns=("age",),
            count=count_age_histogram,
            cells=lambda params: [(label,) for label in AGE_BINS],
        ),
        Query(
            name="audit_activity",
            title="Audit events by type and month",
            datasets=("audit",),
            unit="audit event",
            columns=("event_type", "month"),
            count=count_audit_activity,
            cells=_audit_cells,
        ),
    )
}


def _resolve(query: str | Query) -> Query:
    if isinstance(query, Query):
        return query
    if query not in QUERIES:
        raise InputError(
            f"There is no statistic called '{query}'.", hint=f"Use one of: {', '.join(QUERIES)}."
        )
    return QUERIES[query]


def release(
    database: Database,
    actor: Actor,
    query: str | Query,
    epsilon: Fraction,
    *,
    dataset: str | None = None,
    delta: Fraction = Fraction(0),
    mechanism: str = "laplace",
    codes: Sequence[str] | None = None,
    event_types: Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    max_per_patient: int = 1,
    now: datetime | None = None,
    rng: RandomSource | None = None,
) -> Release:
    """Release one statistic under differential privacy; needs ``stats.release``.

    Order matters: validate, CHARGE (committed with its audit event), then read the exact
    counts and add noise. A failure after the charge wastes budget; nothing is ever shown that
    was not paid for. ``delta`` is spent only when the mechanism needs it (Gaussian, or a
    histogram whose labels come from the data); a pure Laplace release charges delta 0.
    """
    definition = _resolve(query)
    dataset = check_dataset(dataset or definition.datasets[0])
    if dataset not in definition.datasets:
        raise InputError(
            f"'{definition.name}' reads the {' or '.join(definition.datasets)} dataset, "
            f"not '{dataset}'.",
            hint="Leave out --dataset or name one of those.",
        )
    if mechanism not in MECHANISMS:
        raise InputError(f"There is no mechanism '{mechanism}'; use laplace or gaussian.")
    if max_per_patient < 1:
        raise InputError("--max-per-patient must be at least 1.")
    moment = now or datetime.now(UTC)
    params = QueryParams(
        now=moment,
        months=month_window(since, until, moment),
        codes=None if codes is None else tuple(dict.fromkeys(codes)),
        event_types=None if event_types is None else tuple(dict.fromkeys(event_types)),
        max_per_patient=max_per_patient,
    )
    cells = definition.cells(params)
    l1 = definition.l1_sensitivity(params)
    if not isinstance(epsilon, Fraction | int) or epsilon <= 0:
        raise InputError("Epsilon must be a number above 0, such as 0.1.")
    epsilon = Fraction(epsilon)
    noise: dict[str, str] = {"sensitivity_l1": str(l1), "unit": definition.unit}
    threshold: int | None = None
    if mechanism == "gaussian":
        if cells is None:
            raise InputError(
                f"The Gaussian mechanism needs a public list of cells for '{definition.name}'.",
                hint="Name them (--codes or --event-types) or use the Laplace mechanism.",
            )
        if not 0 < delta < 1:
            raise InputError("The Gaussian mechanism needs a delta above 0, such as 1/1000000.")
        l2_squared = definition.l2_sensitivity_squared(params)
        sigma_squared = gaussian_sigma_squared(epsilon, Fraction(delta), l2_squared)
        noise.update(sensitivity_l2_squared=str(l2_squared), sigma_squared=str(sigma_squared))
        charged_delta = Fraction(delta)

        def draw(generator: RandomSource) -> int:
            return discrete_gaussian(sigma_squared, generator)

    else:
        scale = Fraction(l1) / epsilon
        noise["scale"] = str(scale)
        charged_delta = Fraction(0)
        if cells is None:
            if not 0 < delta < 1:
                raise InputError(
                    f"'{definition.name}' without a list of labels shows only labels found in "
                    "the data, which needs a delta above 0 (such as 1/1000000).",
                    hint="Give --delta, or name the labels to count with --codes or --event-types.",
                )
            charged_delta = Fraction(delta)
            threshold = stability_threshold(epsilon, charged_delta, l1)
            noise["threshold"] = str(threshold)

        def draw(generator: RandomSource) -> int:
            return discrete_laplace(scale, generator)

    receipt = charge(
        database,
        actor,
        dataset=dataset,
        query=definition.name,
        mechanism=f"discrete_{mechanism}",
        epsilon=epsilon,
        delta=charged_delta,
        details={"noise": noise, "cells": "data" if cells is None else len(cells)},
    )
    # The charge is committed: from here on, a failure only wastes budget.
    with database.read() as session:
        exact = definition.count(session, dataset, params)
    generator = rng or CryptoRandom()
    rows: list[tuple[Cell, int]] = []
    if cells is not None:
        rows = [(cell, exact.get(cell, 0) + draw(generator)) for cell in cells]
    else:
        assert threshold is not None
        for cell in sorted(cell for cell, value in exact.items() if value > 0):
            noisy = exact[cell] + draw(generator)
            if noisy >= threshold:
                rows.append((cell, noisy))
    summary = definition.summary(dict(rows)) if definition.summary else {}
    return Release(
        query=definition.name,
        title=definition.title,
        dataset=dataset,
        mechanism=f"discrete_{mechanism}",
        epsilon=epsilon,
        delta=charged_delta,
        columns=definition.columns,
        rows=rows,
        noise=noise,
        charge_id=receipt.charge_id,
        budget_after=receipt.budget_after,
        released_at=moment,
        summary=summary,
    )
