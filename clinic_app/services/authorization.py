"""The role x action check every service makes before it acts, with the refusal audited.

The matrix itself is :data:`clinic_app.domain.permissions.ROLE_PERMISSIONS`; this module adds
what the domain cannot: writing the refused attempt to the audit trail (IHE ATNA records
failures as well as successes), so an administrator sees who tried what from where.
"""

from __future__ import annotations

from clinic_app.domain.errors import AccessDenied
from clinic_app.domain.permissions import Permission
from clinic_app.domain.records import AuditAction
from clinic_app.services.context import Actor, record_denied
from clinic_app.storage.engine import Database


def authorize(
    database: Database,
    actor: Actor,
    permission: Permission,
    event_type: str,
    action: AuditAction,
    *,
    case_uid: str | None = None,
) -> None:
    """Return if ``actor``'s role holds ``permission``; otherwise audit the refusal and raise.

    Call it *before* opening the action's ``database.write()`` block: the refusal is written in
    a transaction of its own, which on SQLite would wait for an enclosing write transaction.
    ``event_type`` and ``action`` are those the action would have been audited with; the
    refused event carries outcome 4 (minor failure) and ``details["refused"]`` = the permission.
    """
    try:
        actor.require(permission)
    except AccessDenied:
        record_denied(database, actor, event_type, action, permission.value, case_uid=case_uid)
        raise
