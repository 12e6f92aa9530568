"""The triage worklist: analysed cases sorted by risk or uncertainty, with flags, filters, paging
and review progress, for reviewing many cases fast (definitions in clinic_app.domain.worklist).

Sorting, filtering, counting and paging happen in SQL over the latest analysis of each case, so
a page costs the same whatever the number of cases returned; only the page's own rows (their
suggestions, decisions and missing inputs) are read into Python. A suggestion is *critical*
when its stored evidence says so (``evidence["critical"]``, written for analyses since the
bundles flag critical labels) or, for older analyses without that key, when its
``system|code`` is among the bundle's critical codes given to the service.

Every listing writes one audit event ("case.worklist", like "case.list") in its transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session

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
    suggestions carried ``evidence["critical"]``."""

    def __init__(self, cases: CaseService, *, critical_codes: Iterable[str] = ()) -> None:
        self.cases = cases
        self.database: Database = cases.database
        self.critical_codes = frozenset(critical_codes)

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
            triage = _Triage(self.critical_codes)
            statement = (
                triage.select(
                    Case,
                    Patient.pseudonym,
                    User.username,
                    func.count().over().label("total_rows"),
                    func.sum(case((triage.reviewed, 1), else_=0)).over().label("reviewed_rows"),
                )
                .join(Patient, Case.patient_id == Patient.id)
                .outerjoin(User, Case.reviewer_id == User.id)
            )
            # One pass computes the triage figures, the counts (window functions) and the page.
            rows = session.execute(
                _filtered(statement, triage, query, actor)
                .order_by(*triage.order(query.sort), Case.id.desc())
                .offset(start)
                .limit(page_size)
            ).all()
            if rows:
                total, reviewed = int(rows[0].total_rows), int(rows[0].reviewed_rows or 0)
            else:  # past the end (or nothing matches): count on their own
                total, reviewed = self._counts(session, actor, triage, query)
            items = self._items(session, triage, rows)
            record_audit(
                session,
                actor,
                "case.worklist",
                AuditAction.READ,
                details={
                    "offset": start,
                    "page_size": page_size,
                    "returned": len(items),
                    "total": total,
                    "sort": query.sort.value,
                    "status": query.status.value,
                    "reviewer": _audited_reviewer(query.reviewer),
                    "only_flagged": query.only_flagged,
                },
            )
        return WorklistPage(items, total, reviewed, start, page_size)

    def review_progress(self, actor: Actor, query: WorklistQuery | None = None) -> ReviewProgress:
        """(reviewed, total) of the cases matching ``query`` (an audited read)."""
        authorize(self.database, actor, Permission.CASE_READ, "case.worklist", AuditAction.READ)
        query = query or WorklistQuery()
        with self.database.write() as session:
            _no_jit(session)
            total, reviewed = self._counts(session, actor, _Triage(self.critical_codes), query)
            record_audit(
                session,
                actor,
                "case.worklist",
                AuditAction.READ,
                details={"progress": True, "total": total, "reviewed": reviewed},
            )
        return ReviewProgress(reviewed, total)

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
            triage = _Triage(self.critical_codes)
            rows = session.execute(
                triage.select(Case, Patient.pseudonym, User.username)
                .join(Patient, Case.patient_id == Patient.id)
                .outerjoin(User, Case.reviewer_id == User.id)
                .where(Case.case_uid == case_uid)
                .order_by(Case.version.desc())
                .limit(1)
            ).all()
            items = self._items(session, triage, rows)
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

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _counts(
        session: Session, actor: Actor, triage: _Triage, query: WorklistQuery
    ) -> tuple[int, int]:
        matching = _filtered(
            triage.select(Case.id, triage.reviewed.label("reviewed")), triage, query, actor
        )
        counted = matching.subquery()
        total, reviewed = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((counted.c.reviewed, 1), else_=0)), 0),
            ).select_from(counted)
        ).one()
        return int(total or 0), int(reviewed or 0)

    def _items(self, session: Session, triage: _Triage, rows: Iterable[Any]) -> list[WorklistItem]:
        rows = list(rows)
        if not rows:
            return []
        analysis_ids = [row.analysis_id for row in rows]
        suggestions: dict[int, list[SuggestionInfo]] = {a: [] for a in analysis_ids}
        for s in session.scalars(
            select(Suggestion)
            .where(Suggestion.analysis_id.in_(analysis_ids))
            .order_by(Suggestion.analysis_id, Suggestion.rank)
        ):
            suggestions[s.analysis_id].append(
                SuggestionInfo(**{f.name: getattr(s, f.name) for f in fields(SuggestionInfo)})
            )
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
            group = suggestions.get(row.analysis_id, [])
            critical = [s for s in group if self._is_critical(s)]
            items.append(
                _item(
                    case_row,
                    row,
                    group,
                    critical,
                    missing.get(row.analysis_id, ()),
                    tuple(decisions[s.id] for s in group if s.id in decisions),
                )
            )
        return items

    def _is_critical(self, suggestion: SuggestionInfo) -> bool:
        flag = suggestion.evidence.get("critical")
        if flag is not None:
            return bool(flag)
        return f"{suggestion.code_system}|{suggestion.code}" in self.critical_codes


class _Triage:
    """The per-case triage figures of each case's latest analysis, as SQL expressions."""

    def __init__(self, critical_codes: frozenset[str]) -> None:
        flag = Suggestion.evidence["critical"].as_boolean()
        pairs = [code.split("|", 1) for code in sorted(critical_codes) if "|" in code]
        by_code = (
            or_(*(and_(Suggestion.code_system == s, Suggestion.code == c) for s, c in pairs))
            if pairs
            else false()
        )
        critical = or_(flag == true(), and_(flag.is_(None), by_code))
        probability = func.coalesce(Suggestion.calibrated_probability, Suggestion.probability)
        confident = Suggestion.abstained == false()
        latest = (
            select(Analysis.case_id, func.max(Analysis.id).label("analysis_id"))
            .group_by(Analysis.case_id)
            .subquery("latest_analysis")
        )
        stats = (
            select(
                Suggestion.analysis_id,
                func.max(case((critical, probability))).label("risk"),
                func.max(case((confident, probability))).label("top_probability"),
                func.sum(case((Suggestion.abstained == true(), 1), else_=0)).label("abstained"),
            )
            .group_by(Suggestion.analysis_id)
            .subquery("suggestion_stats")
        )
        self.latest = latest
        self.stats = stats
        self.risk = stats.c.risk
        self.abstained = func.coalesce(stats.c.abstained, 0)
        self.top_probability = stats.c.top_probability
        self.reviewed: ColumnElement[bool] = or_(
            Case.status == CaseStatus.SIGNED,
            and_(
                Case.status == CaseStatus.IN_REVIEW,
                exists(
                    select(literal(1))
                    .select_from(Decision)
                    .join(Suggestion, Decision.suggestion_id == Suggestion.id)
                    .where(
                        Decision.case_id == Case.id,
                        Suggestion.analysis_id == latest.c.analysis_id,
                    )
                ),
            ),
        )

    def select(self, *columns: Any) -> Select[Any]:
        """SELECT ``columns`` (plus the triage figures) FROM cases with a latest analysis."""
        return (
            select(
                *columns,
                self.latest.c.analysis_id,
                self.risk.label("risk"),
                self.abstained.label("abstained"),
                self.top_probability.label("top_probability"),
            )
            .select_from(Case)
            .join(self.latest, self.latest.c.case_id == Case.id)
            .outerjoin(self.stats, self.stats.c.analysis_id == self.latest.c.analysis_id)
        )

    def order(self, sort: WorklistSort) -> list[ColumnElement[Any]]:
        if sort is WorklistSort.RISK:
            return [self.risk.desc().nulls_last()]
        margin = func.abs(self.top_probability - 0.5)
        return [self.abstained.desc(), margin.asc().nulls_last()]

    def flagged(self) -> ColumnElement[bool]:
        return or_(self.risk >= CRITICAL_FLAG_THRESHOLD, self.abstained > 0)


def _filtered(
    statement: Select[Any], triage: _Triage, query: WorklistQuery, actor: Actor
) -> Select[Any]:
    statement = statement.where(Case.status.in_(query.status.statuses))
    if query.reviewer == REVIEWER_ME:
        statement = statement.where(
            Case.reviewer_id == actor.user_id if actor.user_id is not None else false()
        )
    elif query.reviewer == REVIEWER_UNASSIGNED:
        statement = statement.where(Case.reviewer_id.is_(None))
    elif query.reviewer:
        name = query.reviewer.strip().lower()
        statement = statement.where(
            Case.reviewer_id.in_(select(User.id).where(User.username == name))
        )
    if query.only_flagged:
        statement = statement.where(triage.flagged())
    return statement


def _no_jit(session: Session) -> None:
    """Turn PostgreSQL's JIT compiler off for this transaction: the grouped subqueries'
    (over-)estimated cost triggers it and compiling took ~1 s of a ~0.4 s query at 100,000
    cases (EXPLAIN ANALYZE, bench/worklist_gui.py)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


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
    suggestions: list[SuggestionInfo],
    critical: list[SuggestionInfo],
    missing: tuple[str, ...],
    decisions: tuple[LatestDecision, ...],
) -> WorklistItem:
    def probability(s: SuggestionInfo) -> float:
        return s.calibrated_probability if s.calibrated_probability is not None else s.probability

    top_critical = max(critical, key=probability, default=None)
    top = next((s for s in suggestions if not s.abstained), None)
    risk = None if row.risk is None else float(row.risk)
    abstained = int(row.abstained or 0)
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
        analysis_id=int(row.analysis_id),
        risk=risk,
        top_critical=top_critical.display if top_critical else None,
        top_suggestion=top.display if top else None,
        top_probability=probability(top) if top else None,
        abstained_count=abstained,
        flags=tuple(flags),
        decided=bool(decisions),
        suggestions=tuple(ordered),
        decisions=decisions,
        critical_ids=frozenset(s.id for s in critical),
    )
