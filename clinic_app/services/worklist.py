"""The triage worklist: analysed cases sorted by risk or uncertainty, with flags, filters, paging
and review progress, for reviewing many cases fast (definitions in clinic_app.domain.worklist).

Risk, the abstention count and uncertainty are stored on each case row when its analysis is
recorded (``Case.triage_*``, computed by ``domain.worklist.triage_scores``), so a page is an
index walk that stops after its rows, whatever the number of cases; only the page's own rows
(their suggestions, decisions and missing inputs) are read into Python. Grouping the
suggestions per query instead took 0.6-1.8 s a page at 100,000 cases (bench/worklist_gui.py).

A suggestion is *critical* when its stored evidence says so (``evidence["critical"]``, written
for analyses since the bundles flag critical labels) or, for older analyses without that key,
when its ``system|code`` is among the bundle's critical codes given to the service: creating
the service writes those older cases' figures once (:meth:`WorklistService.backfill_triage`).

Every listing writes one audit event ("case.worklist", like "case.list") in its transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any, NamedTuple, TypeVarTuple, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from clinic_app.domain.cases import SignOffInfo, SuggestionInfo
from clinic_app.domain.errors import AccessDenied
from clinic_app.domain.permissions import Permission
from clinic_app.domain.records import AuditAction, CaseStatus, DecisionAction
from clinic_app.domain.worklist import (
    CRITICAL_FLAG_THRESHOLD,
    FLAG_ABSTAINED,
    FLAG_CRITICAL,
    FLAG_OVERRIDE,
    FLAG_REJECTED,
    MISSING_FLAGS,
    REVIEWER_ME,
    REVIEWER_UNASSIGNED,
    LatestDecision,
    ReviewProgress,
    WorklistItem,
    WorklistPage,
    WorklistQuery,
    WorklistSort,
    is_critical,
    triage_probability,
    triage_scores,
)
from clinic_app.services.authorization import authorize
from clinic_app.services.cases import MAX_PAGE_SIZE, CaseService
from clinic_app.services.cases import _summary as case_summary
from clinic_app.services.context import Actor, record_audit
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import Analysis, Case, Decision, Patient, Suggestion, User


class WorklistService:
    """Triage lists over the case service's database; decisions still go through CaseService.

    ``critical_codes``: the bundle's critical labels as "system|code"
    (``services.model_bundles.critical_codes``), the fallback for analyses stored before
    suggestions carried ``evidence["critical"]``. Creating the service backfills the triage
    figures that are missing or that those codes change (see :meth:`backfill_triage`)."""

    def __init__(self, cases: CaseService, *, critical_codes: Iterable[str] = ()) -> None:
        self.cases = cases
        self.database: Database = cases.database
        self.critical_codes = frozenset(critical_codes)
        self.backfill_triage(Actor.system())

    # -- public API ---------------------------------------------------------------------------
    def worklist(
        self,
        actor: Actor,
        query: WorklistQuery | None = None,
        *,
        page: int = 1,
        page_size: int = 100,
        offset: int | None = None,
    ) -> WorklistPage:
        """One page of the worklist (``offset`` rows skipped; default ``(page - 1) * size``),
        with the total and how many of all matching cases are reviewed."""
        authorize(self.database, actor, Permission.CASE_READ, "case.worklist", AuditAction.READ)
        query = query or WorklistQuery()
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        start = max(0, offset if offset is not None else (max(1, page) - 1) * page_size)
        with self.database.write() as session:
            _no_jit(session)
            counts = _counts(session, actor, query)
            rows = _page(session, actor, query, counts, start, page_size)
            items = self._items(session, rows)
            record_audit(
                session,
                actor,
                "case.worklist",
                AuditAction.READ,
                details={
                    "offset": start,
                    "page_size": page_size,
                    "returned": len(items),
                    "total": counts.total,
                    "sort": query.sort.value,
                    "status": query.status.value,
                    "reviewer": _audited_reviewer(query.reviewer),
                    "only_flagged": query.only_flagged,
                },
            )
        return WorklistPage(items, counts.total, counts.reviewed, start, page_size)

    def review_progress(self, actor: Actor, query: WorklistQuery | None = None) -> ReviewProgress:
        """(reviewed, total) of the cases matching ``query`` (an audited read)."""
        authorize(self.database, actor, Permission.CASE_READ, "case.worklist", AuditAction.READ)
        query = query or WorklistQuery()
        with self.database.write() as session:
            _no_jit(session)
            counts = _counts(session, actor, query)
            record_audit(
                session,
                actor,
                "case.worklist",
                AuditAction.READ,
                details={"progress": True, "total": counts.total, "reviewed": counts.reviewed},
            )
        return ReviewProgress(counts.reviewed, counts.total)

    def item(self, actor: Actor, case_uid: str) -> WorklistItem | None:
        """The worklist row of one case as it is now (None if it has no analysis), to update a
        row in place after a decision; audited as a read of that case."""
        authorize(
            self.database,
            actor,
            Permission.CASE_READ,
            "case.read",
            AuditAction.READ,
            case_uid=case_uid,
        )
        with self.database.write() as session:
            rows = session.execute(
                _rows()
                .where(Case.case_uid == case_uid, Case.triage_uncertainty.is_not(None))
                .order_by(Case.version.desc())
                .limit(1)
            ).all()
            items = self._items(session, rows)
            if rows:
                case_row = rows[0][0]
                record_audit(
                    session,
                    actor,
                    "case.read",
                    AuditAction.READ,
                    patient_pseudonym=rows[0][1],
                    case_uid=case_uid,
                    details={"version": case_row.version, "worklist": True},
                )
        return items[0] if items else None

    def sign_with_password(
        self, actor: Actor, case_uid: str, final_impression: str, password: str
    ) -> SignOffInfo:
        """Check the signer's password again (21 CFR 11.200), then sign; both are audited."""
        from clinic_app.services.users import authenticate

        confirmed = authenticate(self.database, actor.username, password, actor.workstation)
        if confirmed.user_id != actor.user_id:
            raise AccessDenied("The password does not belong to the signed-in user.")
        return self.cases.sign(actor, case_uid, final_impression)

    def backfill_triage(self, actor: Actor, critical_codes: Iterable[str] | None = None) -> int:
        """Write the triage figures of analysed cases that lack them (analyses stored before
        schema revision 0004) or whose risk the bundle's critical codes set (no risk stored,
        and the latest analysis has a suggestion of a critical code without the evidence
        flag); returns how many cases changed. ``critical_codes`` default: the service's.

        Cheap when there is nothing to do (two index look-ups); otherwise one audited write
        (DATABASE_ADMIN; the service runs it as the system at creation). Codes applied once
        stay: a later bundle with other critical labels re-ranks only its own analyses."""
        codes = self.critical_codes if critical_codes is None else frozenset(critical_codes)
        with self.database.read() as session:
            if not _backfill_candidates(session, codes, limit=1):
                return 0
        authorize(
            self.database,
            actor,
            Permission.DATABASE_ADMIN,
            "case.triage.backfill",
            AuditAction.UPDATE,
        )
        with self.database.write() as session:
            case_ids = _backfill_candidates(session, codes)
            for first in range(0, len(case_ids), _BACKFILL_CHUNK):
                chunk = case_ids[first : first + _BACKFILL_CHUNK]
                latest = _latest_analyses(session, chunk)
                grouped: dict[int, list[_Scored]] = {a: [] for a in latest.values()}
                for analysis_id, system, code, p, calibrated, abstained, flag in session.execute(
                    select(
                        Suggestion.analysis_id,
                        Suggestion.code_system,
                        Suggestion.code,
                        Suggestion.probability,
                        Suggestion.calibrated_probability,
                        Suggestion.abstained,
                        Suggestion.evidence["critical"].as_boolean(),
                    )
                    .where(Suggestion.analysis_id.in_(list(grouped)))
                    .order_by(Suggestion.analysis_id, Suggestion.rank)
                ):
                    evidence = {} if flag is None else {"critical": flag}
                    grouped[analysis_id].append(
                        _Scored(system, code, p, calibrated, abstained, evidence)
                    )
                figures = {
                    case_id: triage_scores(grouped[analysis_id], codes)
                    for case_id, analysis_id in latest.items()
                }
                if figures:
                    session.execute(
                        _SET_TRIAGE,
                        [
                            {
                                "case_id": case_id,
                                "risk": scores.risk,
                                "abstained": scores.abstained,
                                "uncertainty": scores.uncertainty,
                            }
                            for case_id, scores in figures.items()
                        ],
                    )
            session.expire_all()
            record_audit(
                session,
                actor,
                "case.triage.backfill",
                AuditAction.UPDATE,
                details={"cases": len(case_ids), "critical_codes": len(codes)},
            )
        return len(case_ids)

    # -- internals ----------------------------------------------------------------------------
    def _items(self, session: Session, rows: Iterable[Any]) -> list[WorklistItem]:
        rows = list(rows)
        if not rows:
            return []
        latest = _latest_analyses(session, [row[0].id for row in rows])
        analysis_ids = list(latest.values())
        suggestions: dict[int, list[SuggestionInfo]] = {a: [] for a in analysis_ids}
        # Plain rows, not ORM objects: loading 700 Suggestion entities was most of a page.
        columns = [getattr(Suggestion, f.name) for f in fields(SuggestionInfo)]
        for analysis_id, *values in session.execute(
            select(Suggestion.analysis_id, *columns)
            .where(Suggestion.analysis_id.in_(analysis_ids))
            .order_by(Suggestion.analysis_id, Suggestion.rank)
        ):
            suggestions[analysis_id].append(SuggestionInfo(*values))
        missing = {
            row[0]: _missing_modalities(row[1], row[2])
            for row in session.execute(
                select(
                    Analysis.id,
                    Analysis.outputs["modalities_missing"],
                    Analysis.outputs[("explanation", "modalities_missing")],
                ).where(Analysis.id.in_(analysis_ids))
            )
        }
        every_id = [s.id for group in suggestions.values() for s in group]
        decisions: dict[int, LatestDecision] = {}
        for suggestion_id, action, username in session.execute(
            select(Decision.suggestion_id, Decision.action, User.username)
            .join(User, Decision.user_id == User.id)
            .where(Decision.suggestion_id.in_(every_id))
            .order_by(Decision.id)
        ):
            if suggestion_id is not None:  # the newest decision per suggestion wins
                decisions[suggestion_id] = LatestDecision(
                    suggestion_id, DecisionAction(action), username
                )
        items = []
        for row in rows:
            case_row: Case = row[0]
            analysis_id = latest.get(case_row.id)
            if analysis_id is None:  # analysis deleted meanwhile (PostgreSQL read committed)
                continue
            group = suggestions.get(analysis_id, [])
            critical = [s for s in group if is_critical(s, self.critical_codes)]
            items.append(
                _item(
                    case_row,
                    row,
                    analysis_id,
                    group,
                    critical,
                    missing.get(analysis_id, ()),
                    tuple(decisions[s.id] for s in group if s.id in decisions),
                )
            )
        return items


_Ts = TypeVarTuple("_Ts")
_BACKFILL_CHUNK = 500


class _Scored(NamedTuple):
    """What triage_scores reads of a stored suggestion: plain rows, and of the evidence only
    its critical flag (the backfill reads hundreds of thousands; ORM objects and decoding
    the evidence JSON took most of its time)."""

    code_system: str
    code: str
    probability: float
    calibrated_probability: float | None
    abstained: bool
    evidence: dict[str, Any]


_CASES = cast(Table, Case.__table__)
#: Set a case's triage figures without touching ``updated_at`` (not a clinical change).
_SET_TRIAGE = (
    update(_CASES)
    .where(_CASES.c.id == bindparam("case_id"))
    .values(
        triage_risk=bindparam("risk"),
        triage_abstained=bindparam("abstained"),
        triage_uncertainty=bindparam("uncertainty"),
        updated_at=_CASES.c.updated_at,
    )
)


class _Counts(NamedTuple):
    total: int
    reviewed: int
    with_risk: int  # how many of ``total`` have a risk (they come first by risk)


def _reviewed() -> ColumnElement[bool]:
    """Signed, or in review with a decision on a suggestion of the latest analysis."""
    latest = (
        select(func.max(Analysis.id))
        .where(Analysis.case_id == Case.id)
        .correlate(Case)
        .scalar_subquery()
    )
    decided = exists(
        select(literal(1))
        .select_from(Decision)
        .join(Suggestion, Decision.suggestion_id == Suggestion.id)
        .where(Decision.case_id == Case.id, Suggestion.analysis_id == latest)
        .correlate(Case)
    )
    return or_(Case.status == CaseStatus.SIGNED, and_(Case.status == CaseStatus.IN_REVIEW, decided))


def _counts(session: Session, actor: Actor, query: WorklistQuery) -> _Counts:
    total, reviewed, with_risk = session.execute(
        _filtered(
            select(
                func.count(),
                func.coalesce(func.sum(case((_reviewed(), 1), else_=0)), 0),
                func.count(Case.triage_risk),
            ).select_from(Case),
            query,
            actor,
        )
    ).one()
    return _Counts(int(total or 0), int(reviewed or 0), int(with_risk or 0))


def _rows() -> Select[Case, str, str]:
    """The worklist's row: the case with its patient's pseudonym and its reviewer's name."""
    return (
        select(Case, Patient.pseudonym, User.username)
        .join(Patient, Case.patient_id == Patient.id)
        .outerjoin(User, Case.reviewer_id == User.id)
    )


def _page(
    session: Session, actor: Actor, query: WorklistQuery, counts: _Counts, start: int, size: int
) -> list[Any]:
    """The rows ``start`` to ``start + size`` of the worklist in its order.

    The page's case ids come from an index walk that reads no table row and joins nothing
    (a deep page skips its offset in the index); then only those rows are read. By risk,
    cases with a risk come first (descending), then those without (newest first): two walks,
    as "DESC NULLS LAST" is the reverse of PostgreSQL's index order (NULLs sort high there,
    low in SQLite), which would make it sort every matching case."""
    matching = _filtered(select(Case.id), query, actor)
    ids: list[int] = []
    if query.sort is WorklistSort.UNCERTAINTY:  # never NULL for listed cases
        ordered = matching.order_by(Case.triage_uncertainty.desc(), Case.id.desc())
        ids.extend(session.scalars(ordered.offset(start).limit(size)))
    else:
        if start < counts.with_risk:
            ranked = matching.where(Case.triage_risk.is_not(None)).order_by(
                Case.triage_risk.desc(), Case.id.desc()
            )
            ids.extend(session.scalars(ranked.offset(start).limit(size)))
        if len(ids) < size and start + len(ids) < counts.total:
            unranked = matching.where(Case.triage_risk.is_(None)).order_by(Case.id.desc())
            skip = max(0, start - counts.with_risk)
            ids.extend(session.scalars(unranked.offset(skip).limit(size - len(ids))))
    if not ids:
        return []
    found = {row[0].id: row for row in session.execute(_rows().where(Case.id.in_(ids)))}
    return [found[case_id] for case_id in ids if case_id in found]


def _no_jit(session: Session) -> None:
    """Turn PostgreSQL's JIT compiler off for this transaction: the per-case "reviewed"
    subquery inflates the count's estimated cost past jit_above_cost, and compiling took
    120 ms of a 150 ms count at 100,000 cases (EXPLAIN ANALYZE; 40 ms without)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


def _latest_analyses(session: Session, case_ids: Sequence[int]) -> dict[int, int]:
    """{case id: id of its latest analysis} of those cases that have one."""
    if not case_ids:
        return {}
    return {
        int(case_id): int(analysis_id)
        for case_id, analysis_id in session.execute(
            select(Analysis.case_id, func.max(Analysis.id))
            .where(Analysis.case_id.in_(list(case_ids)))
            .group_by(Analysis.case_id)
        )
    }


def _backfill_candidates(
    session: Session, critical_codes: frozenset[str], *, limit: int | None = None
) -> list[int]:
    """Ids of analysed cases without triage figures, and (given critical codes) of those
    without a risk whose latest analysis has an unflagged suggestion of a critical code."""
    analysed = exists().where(Analysis.case_id == Case.id)
    missing = select(Case.id).where(Case.triage_uncertainty.is_(None), analysed)
    found = [int(i) for i in session.scalars(missing.limit(limit))]
    pairs = [code.split("|", 1) for code in sorted(critical_codes) if "|" in code]
    if pairs and (limit is None or len(found) < limit):
        latest = (
            select(func.max(Analysis.id))
            .where(Analysis.case_id == Case.id)
            .correlate(Case)
            .scalar_subquery()
        )
        unflagged = exists().where(
            Suggestion.analysis_id == latest,
            or_(*(and_(Suggestion.code_system == s, Suggestion.code == c) for s, c in pairs)),
            Suggestion.evidence["critical"].as_boolean().is_(None),
        )
        by_codes = select(Case.id).where(
            Case.triage_risk.is_(None), Case.triage_uncertainty.is_not(None), unflagged
        )
        remaining = None if limit is None else limit - len(found)
        found.extend(int(i) for i in session.scalars(by_codes.limit(remaining)))
    return found


def _filtered(statement: Select[*_Ts], query: WorklistQuery, actor: Actor) -> Select[*_Ts]:
    """Cases with an analysis (triage figures) that match the query's filters.

    Status and reviewer are tested, never looked up (:class:`_Tested`): the covering triage
    indexes hold them, so every listing reads one of those in its sort order."""
    status, reviewer = _Tested(Case.status), _Tested(Case.reviewer_id)
    statement = statement.where(
        Case.triage_uncertainty.is_not(None), status.in_(query.status.statuses)
    )
    if query.reviewer == REVIEWER_ME:
        statement = statement.where(
            reviewer == actor.user_id if actor.user_id is not None else false()
        )
    elif query.reviewer == REVIEWER_UNASSIGNED:
        statement = statement.where(reviewer.is_(None))
    elif query.reviewer:
        name = query.reviewer.strip().lower()
        statement = statement.where(reviewer.in_(select(User.id).where(User.username == name)))
    if query.only_flagged:
        statement = statement.where(
            or_(Case.triage_risk >= CRITICAL_FLAG_THRESHOLD, Case.triage_abstained > 0)
        )
    return statement


class _Tested(ColumnElement[Any]):
    """A column that SQLite tests row by row but may not look rows up by (its documented
    unary ``+``; other back ends see the bare column).

    SQLite has no statistics here (the app never runs ANALYZE), so it takes an equality on
    an indexed column as very selective: for ``status IN (...)`` it read the status index
    and sorted every matching case (~100 ms at 100,000) instead of walking the triage index
    in order and stopping after one page (< 1 ms). PostgreSQL's planner has statistics."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, column: QueryableAttribute[Any]) -> None:
        self.column = column.expression
        self.type = self.column.type


@compiles(_Tested)
def _tested_anywhere(element: _Tested, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(_Tested, "sqlite")
def _tested_in_sqlite(element: _Tested, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.column, **kw)


def _audited_reviewer(reviewer: str | None) -> str | None:
    return reviewer if reviewer in (None, REVIEWER_ME, REVIEWER_UNASSIGNED) else "named"


def _missing_modalities(*sources: Any) -> tuple[str, ...]:
    """Flags for the modalities the model had to do without (pathology, ECG, note)."""
    for source in sources:
        if isinstance(source, dict) and source:
            return tuple(MISSING_FLAGS[m] for m in MISSING_FLAGS if m in source)
    return ()


def _item(
    case_row: Case,
    row: Any,
    analysis_id: int,
    suggestions: list[SuggestionInfo],
    critical: list[SuggestionInfo],
    missing: tuple[str, ...],
    decisions: tuple[LatestDecision, ...],
) -> WorklistItem:
    top_critical = max(critical, key=triage_probability, default=None)
    top = next((s for s in suggestions if not s.abstained), None)
    risk = case_row.triage_risk
    abstained = case_row.triage_abstained
    flags: list[str] = []
    if risk is not None and risk >= CRITICAL_FLAG_THRESHOLD:
        flags.append(FLAG_CRITICAL)
    if abstained:
        flags.append(FLAG_ABSTAINED)
    flags.extend(missing)
    actions = {d.action for d in decisions}
    if DecisionAction.OVERRIDE in actions:
        flags.append(FLAG_OVERRIDE)
    if DecisionAction.REJECT in actions:
        flags.append(FLAG_REJECTED)
    summary = case_summary(case_row, row[2], row[1])
    ordered = sorted(suggestions, key=lambda s: (s.abstained, s.rank))
    return WorklistItem(
        summary=summary,
        analysis_id=analysis_id,
        risk=risk,
        top_critical=top_critical.display if top_critical else None,
        top_suggestion=top.display if top else None,
        top_probability=triage_probability(top) if top else None,
        abstained_count=abstained,
        flags=tuple(flags),
        decided=bool(decisions),
        suggestions=tuple(ordered),
        decisions=decisions,
        critical_ids=frozenset(s.id for s in critical),
    )
