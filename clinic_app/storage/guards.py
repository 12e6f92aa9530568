"""Signed cases are read-only, enforced where every write passes: the session's flush.

The case service refuses such changes first with a clear message; this guard makes sure that no
code path (a future service, a script using the ORM) can change a signed case anyway. Allowed:
marking a signed case as superseded by an amendment, and exporting new reports of it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, sessionmaker

from clinic_app.domain.errors import ReadOnlyCase
from clinic_app.domain.records import CaseStatus
from clinic_app.storage.orm import (
    Analysis,
    Case,
    CaseInput,
    Decision,
    ExplanationArtefact,
    NoteVersion,
    SignOff,
    Suggestion,
    VitalSigns,
)

_CHILDREN = (CaseInput, NoteVersion, VitalSigns, Analysis, Decision, SignOff)
_GRANDCHILDREN = (Suggestion, ExplanationArtefact)
_SUPERSEDE_COLUMNS = {"status", "updated_at"}


def _committed_status(case: Case) -> CaseStatus | None:
    history = inspect(case).attrs.status.history
    if history.deleted:
        return CaseStatus(history.deleted[0])
    if history.unchanged:
        return CaseStatus(history.unchanged[0])
    return None  # a new case


def _owning_case(session: Session, obj: Any) -> Case | None:
    if isinstance(obj, _GRANDCHILDREN):
        analysis = obj.analysis or session.get(Analysis, obj.analysis_id)
        return None if analysis is None else _owning_case(session, analysis)
    case = obj.case
    if case is None and obj.case_id is not None:
        case = session.get(Case, obj.case_id)
    return case  # type: ignore[no-any-return]


def _refuse(case: Case, what: str) -> None:
    raise ReadOnlyCase(
        f"Case {case.case_uid} version {case.version} is signed and cannot be changed ({what}).",
        hint="Amend the case to create a new version.",
    )


def _check_flush(session: Session, _context: Any, _instances: Any) -> None:
    with session.no_autoflush:
        for obj in list(session.dirty) + list(session.deleted):
            if isinstance(obj, Case):
                status = _committed_status(obj)
                if status is None or not status.read_only:
                    continue
                if obj in session.deleted:
                    _refuse(obj, "deletion")
                state = inspect(obj)
                changed = {
                    attr.key
                    for attr in state.mapper.column_attrs
                    if state.attrs[attr.key].history.has_changes()
                }
                superseding = (
                    changed <= _SUPERSEDE_COLUMNS
                    and status is CaseStatus.SIGNED
                    and obj.status is CaseStatus.AMENDED
                )
                if changed and not superseding:
                    _refuse(obj, ", ".join(sorted(changed)))
        for obj in list(session.new) + list(session.dirty) + list(session.deleted):
            if isinstance(obj, _CHILDREN + _GRANDCHILDREN):
                if obj in session.dirty and not session.is_modified(obj):
                    continue
                case = _owning_case(session, obj)
                if case is None:
                    continue
                status = _committed_status(case)
                if status is not None and status.read_only:
                    _refuse(case, f"{type(obj).__name__} changed")


def install_guards(factory: sessionmaker[Session]) -> None:
    """Attach the read-only guard to every session the factory makes."""
    event.listen(factory, "before_flush", _check_flush)
