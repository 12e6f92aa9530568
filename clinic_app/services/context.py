"""Who is acting, from where: passed to every service call and written to every audit event."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from clinic_app.domain.permissions import Permission, require
from clinic_app.domain.records import AuditAction, AuditOutcome, Role
from clinic_app.storage.audit import AuditRecord, append_signed_event
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent


def workstation_name() -> str:
    return socket.gethostname() or "unknown-workstation"


@dataclass(frozen=True)
class Actor:
    """The signed-in user (or the system itself, for start-up work such as migrations)."""

    user_id: int | None
    username: str
    role: Role
    workstation: str

    def require(self, permission: Permission) -> None:
        require(self.role, permission, username=self.username)

    @classmethod
    def system(cls) -> Actor:
        """The app acting on its own behalf (first-run set-up, migrations); role admin."""
        return cls(user_id=None, username="system", role=Role.ADMIN, workstation=workstation_name())


def record_audit(
    session: Session,
    actor: Actor,
    event_type: str,
    action: AuditAction,
    *,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    patient_pseudonym: str | None = None,
    case_uid: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit event for ``actor`` in ``session``'s transaction (commits with it).

    Never put a patient name, record number or note text in ``details``: ids and hashes only.
    The event is checkpointed (HMAC over the new chain head) with the audit key.
    """
    from clinic_app.services.audit import signing_key_for  # that module imports this one

    return append_signed_event(
        session,
        AuditRecord(
            event_type=event_type,
            action=action,
            outcome=outcome,
            user_id=actor.user_id,
            username=actor.username,
            role=actor.role.value,
            workstation=actor.workstation,
            patient_pseudonym=patient_pseudonym,
            case_uid=case_uid,
            details=details or {},
        ),
        signing_key_for(session),
    )


def record_denied(
    database: Database,
    actor: Actor,
    event_type: str,
    action: AuditAction,
    reason: str,
    *,
    case_uid: str | None = None,
) -> None:
    """Audit a refused attempt in its own transaction (the refused action has none)."""
    with database.write() as session:
        record_audit(
            session,
            actor,
            event_type,
            action,
            outcome=AuditOutcome.MINOR_FAILURE,
            case_uid=case_uid,
            details={"refused": reason},
        )
