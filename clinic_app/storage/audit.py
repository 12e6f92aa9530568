"""Appending to the hash-chained audit trail (verification and export live beside it).

Each event's ``hash`` is sha256 over the previous event's hash and the canonical JSON of the
event's own fields, so changing, removing or reordering an event breaks the chain. The
single-row ``audit_chain_head`` is read with FOR UPDATE and rewritten by every append, which
serialises appenders on PostgreSQL (SQLite's BEGIN IMMEDIATE already does) and keeps
``sequence`` gap-free. Call :func:`append_event` inside the same session and transaction as the
action it records: both commit or neither does.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clinic_app.domain.records import AuditAction, AuditOutcome
from clinic_app.storage.orm import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    """What a service says about an action; the chain fields are added by append_event."""

    event_type: str  # e.g. "case.read", "user.login", "privacy.release"
    action: AuditAction
    username: str | None
    role: str | None
    workstation: str
    user_id: int | None = None
    outcome: AuditOutcome = AuditOutcome.SUCCESS
    patient_pseudonym: str | None = None
    case_uid: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def format_time(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and a Z: one spelling for hashing and export."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_fields(event: AuditEvent) -> dict[str, Any]:
    """The hashed content of an event, as plain JSON values."""
    return {
        "sequence": event.sequence,
        "event_uid": event.event_uid,
        "event_type": event.event_type,
        "action": AuditAction(event.action).value,
        "occurred_at": format_time(event.occurred_at),
        "outcome": int(event.outcome),
        "user_id": event.user_id,
        "username": event.username,
        "role": event.role,
        "workstation": event.workstation,
        "patient_pseudonym": event.patient_pseudonym,
        "case_uid": event.case_uid,
        "details": event.details,
    }


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(canonical_json(canonical_fields(event)))
    return digest.hexdigest()


def _chain_head(session: Session) -> AuditChainHead:
    head = session.scalars(
        select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update()
    ).one_or_none()
    if head is None:  # created by the first migration; recreated only for an empty trail
        head = AuditChainHead(id=1, last_sequence=0, last_hash=GENESIS_HASH)
        session.add(head)
        session.flush()
    return head


def append_event(
    session: Session, record: AuditRecord, *, now: datetime | None = None
) -> AuditEvent:
    """Add one chained event to ``session`` (flushed, committed with the caller's transaction)."""
    head = _chain_head(session)
    event = AuditEvent(
        sequence=head.last_sequence + 1,
        event_uid=str(uuid.uuid4()),
        event_type=record.event_type,
        action=record.action,
        occurred_at=(now or datetime.now(UTC)).astimezone(UTC),
        outcome=int(record.outcome),
        user_id=record.user_id,
        username=record.username,
        role=record.role,
        workstation=record.workstation,
        patient_pseudonym=record.patient_pseudonym,
        case_uid=record.case_uid,
        details=json.loads(canonical_json(record.details)),  # plain JSON, as it will read back
        prev_hash=head.last_hash,
        hash="",
    )
    event.hash = event_hash(head.last_hash, event)
    session.add(event)
    head.last_sequence = event.sequence
    head.last_hash = event.hash
    session.flush()
    return event
