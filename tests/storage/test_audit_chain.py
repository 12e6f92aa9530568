"""The audit trail's hash chain and HMAC checkpoints: every kind of tampering is found, at the
right event, on SQLite and PostgreSQL.

Tampering needs the append-only triggers out of the way; each test does that the way an
attacker with database rights would (dropping or disabling them), or edits the SQLite file's
bytes directly, which no trigger sees.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from clinic_app.domain.records import AuditAction, AuditOutcome
from clinic_app.storage.audit import (
    GENESIS_HASH,
    AuditKey,
    AuditRecord,
    ChainAnchor,
    append_event,
    append_signed_event,
    checkpoint_mac,
    event_hash,
    postgres_privilege_statements,
    verify_chain,
)
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditChainHead, AuditCheckpoint, AuditEvent

KEY = AuditKey(hashlib.sha256(b"test audit key").digest())
OTHER_KEY = AuditKey(hashlib.sha256(b"an attacker's key").digest())
EVENTS = 10


def _record(index: int) -> AuditRecord:
    return AuditRecord(
        event_type="case.read" if index % 2 else "case.update",
        action=AuditAction.READ if index % 2 else AuditAction.UPDATE,
        username=f"user{index % 3}",
        role="clinician",
        workstation=f"ws-MARKER-{index:04d}",
        user_id=index % 3 + 1,
        patient_pseudonym=f"P-{index:04d}",
        case_uid=f"case-{index:04d}",
        details={"index": index, "note_sha256": "ab" * 32},
    )


def _fill(database: Database, count: int = EVENTS, *, key: AuditKey = KEY) -> None:
    start = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    for index in range(1, count + 1):
        with database.write() as session:
            append_signed_event(session, _record(index), key, now=start + timedelta(minutes=index))


def _verify(database: Database, key: AuditKey | None = KEY, **options: Any) -> Any:
    with database.read() as session:
        return verify_chain(session, key, **options)


def _tamper(
    database: Database, *statements: str, params: list[dict[str, Any]] | None = None
) -> None:
    """Run raw SQL with the append-only triggers dropped (SQLite) or disabled (PostgreSQL)."""
    with database.engine.begin() as connection:
        if database.backend == "sqlite":
            for table in ("audit_events", "audit_checkpoints"):
                for verb in ("update", "delete"):
                    connection.execute(text(f"DROP TRIGGER IF EXISTS trg_{table}_no_{verb}"))
        else:
            for table in ("audit_events", "audit_checkpoints"):
                connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for index, statement in enumerate(statements):
            connection.execute(text(statement), (params or [{}] * len(statements))[index])
        if database.backend == "postgresql":
            for table in ("audit_events", "audit_checkpoints"):
                connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def _rows(database: Database) -> list[dict[str, Any]]:
    with database.read() as session:
        table = AuditEvent.__table__
        return [
            dict(row._mapping)
            for row in session.execute(select(table).order_by(table.c.sequence)).all()
        ]


def _hash_of(database: Database, sequence: int) -> str:
    return next(row["hash"] for row in _rows(database) if row["sequence"] == sequence)


def _rewrite_from(database: Database, first: int) -> None:
    """An attacker without the key rewrites events from ``first`` on and recomputes hashes."""
    rows = _rows(database)
    previous = GENESIS_HASH
    statements, params = [], []
    for row in rows:
        if row["sequence"] >= first:
            row = {**row, "workstation": "ws-FORGED", "prev_hash": previous}
            row["hash"] = event_hash(previous, SimpleNamespace(**row))
            statements.append(
                "UPDATE audit_events SET workstation = :workstation, prev_hash = :prev_hash, "
                "hash = :hash WHERE sequence = :sequence"
            )
            params.append(
                {key: row[key] for key in ("workstation", "prev_hash", "hash", "sequence")}
            )
        previous = row["hash"]
    statements.append("UPDATE audit_chain_head SET last_hash = :hash WHERE id = 1")
    params.append({"hash": previous})
    _tamper(database, *statements, params=params)


# -- the intact trail -------------------------------------------------------------------------
def test_an_intact_signed_trail_verifies(database: Database) -> None:
    _fill(database)
    result = _verify(database)
    assert result.ok, result.reason
    assert result.events_checked == EVENTS
    assert result.last_sequence == EVENTS
    assert result.signed_through == EVENTS
    assert result.checkpoints_checked == EVENTS  # one checkpoint per event (CHECKPOINT_EVERY=1)
    assert result.first_bad_sequence is None
    assert result.head_hash == _hash_of(database, EVENTS)
    assert "10 events" in result.describe()


def test_an_empty_trail_verifies_even_without_a_key(database: Database) -> None:
    result = _verify(database, key=None)
    assert result.ok and result.events_checked == 0 and result.last_sequence == 0


def test_each_signed_event_writes_one_checkpoint_over_its_hash(database: Database) -> None:
    _fill(database, 3)
    with database.read() as session:
        checkpoints = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)).all()
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)).all()
    assert [c.sequence for c in checkpoints] == [1, 2, 3]
    for checkpoint, event in zip(checkpoints, events, strict=True):
        assert checkpoint.head_hash == event.hash
        assert checkpoint.key_id == KEY.key_id
        assert checkpoint.hmac == checkpoint_mac(KEY, event.sequence, event.hash, KEY.key_id)
    assert repr(KEY) == "AuditKey()"  # the secret never reaches a log line or traceback


# -- tampering, each way ----------------------------------------------------------------------
EDITS: list[tuple[str, Any]] = [
    ("workstation", "ws-other"),
    ("username", "someone-else"),
    ("event_type", "case.delete"),
    ("outcome", 4),
    ("case_uid", "case-9999"),
    ("occurred_at", datetime(2025, 3, 1, 9, 0, tzinfo=UTC)),
    ("details", '{"index": 4, "note_sha256": "00"}'),
]


def test_an_edited_field_is_found_at_its_event(database: Database) -> None:
    """Each field in turn: edited, found at its event, then put back (and the trail verifies)."""
    _fill(database)
    original = _rows(database)[3]
    for column, value in EDITS:
        update = f"UPDATE audit_events SET {column} = :value WHERE sequence = 4"
        if database.backend == "sqlite" and column == "occurred_at":
            value = value.replace(tzinfo=None)  # stored naive UTC, as UtcDateTime does
        if column == "details" and database.backend == "postgresql":
            update = update.replace(":value", "CAST(:value AS json)")
        _tamper(database, update, params=[{"value": value}])
        result = _verify(database)
        assert not result.ok, column
        assert result.first_bad_sequence == 4, column
        assert "changed after it was written" in result.reason
        restore = {"value": original[column]}
        if column == "occurred_at" and database.backend == "sqlite":
            restore["value"] = original[column].astimezone(UTC).replace(tzinfo=None)
        if column == "details":
            restore["value"] = json.dumps(original[column])
        _tamper(database, update, params=[restore])
        assert _verify(database).ok, column


def test_an_edited_hash_is_found_at_its_event(database: Database) -> None:
    _fill(database)
    stored = _hash_of(database, 6)
    edited = ("0" if stored[0] != "0" else "1") + stored[1:]
    _tamper(
        database, "UPDATE audit_events SET hash = :h WHERE sequence = 6", params=[{"h": edited}]
    )
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 6)


def test_an_edited_link_is_found_at_its_event(database: Database) -> None:
    _fill(database)
    _tamper(
        database,
        "UPDATE audit_events SET prev_hash = :h WHERE sequence = 7",
        params=[{"h": "f" * 64}],
    )
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 7)
    assert "link to the previous event" in result.reason


def test_a_byte_edit_in_the_sqlite_file_is_found(database: Database, database_url: str) -> None:
    if database.backend != "sqlite":
        pytest.skip("edits the bytes of a SQLite file")
    _fill(database)
    path = Path(database_url.removeprefix("sqlite:///"))
    database.dispose()
    with closing(sqlite3.connect(path)) as connection:  # fold the WAL into the file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    content = path.read_bytes()
    marker = b"ws-MARKER-0005"
    assert content.count(marker) == 1
    path.write_bytes(content.replace(marker, b"ws-MARKER-9005"))
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 5)


def test_a_deleted_event_is_found_where_it_is_missing(database: Database) -> None:
    _fill(database)
    _tamper(database, "DELETE FROM audit_events WHERE sequence = 5")
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 5)
    assert "missing" in result.reason


def test_two_swapped_events_are_found_at_the_first(database: Database) -> None:
    _fill(database)
    rows = {row["sequence"]: row for row in _rows(database)}
    swapped = [{**rows[6], "sequence": 3}, {**rows[3], "sequence": 6}]
    _tamper(database, "DELETE FROM audit_events WHERE sequence IN (3, 6)")
    with database.engine.begin() as connection:
        connection.execute(insert(AuditEvent.__table__), swapped)
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 3)


def test_tail_truncation_with_the_head_rewound_is_found(database: Database) -> None:
    _fill(database)
    _tamper(
        database,
        "DELETE FROM audit_events WHERE sequence > 7",
        "UPDATE audit_chain_head SET last_sequence = 7, last_hash = :h WHERE id = 1",
        params=[{}, {"h": _hash_of(database, 7)}],
    )
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 8)
    assert "newest events were removed" in result.reason


def test_tail_truncation_without_rewinding_the_head_is_found(database: Database) -> None:
    _fill(database)
    _tamper(
        database,
        "DELETE FROM audit_events WHERE sequence > 8",
        "DELETE FROM audit_checkpoints WHERE sequence > 8",
    )
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 9)
    assert "chain head names event 10" in result.reason


def test_a_full_rewrite_with_recomputed_hashes_is_found_at_the_first_rewritten_event(
    database: Database,
) -> None:
    _fill(database)
    _rewrite_from(database, 4)
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 4)
    assert "rewritten" in result.reason


def test_a_rewrite_that_also_removes_its_checkpoints_is_found(database: Database) -> None:
    _fill(database)
    _rewrite_from(database, 4)
    _tamper(database, "DELETE FROM audit_checkpoints WHERE sequence >= 4")
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 4)
    assert "not covered by a signed checkpoint" in result.reason


def test_a_rewrite_of_everything_without_checkpoints_is_found(database: Database) -> None:
    _fill(database)
    _rewrite_from(database, 1)
    _tamper(database, "DELETE FROM audit_checkpoints")
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 1)
    assert "no signed checkpoint" in result.reason


def test_checkpoints_forged_with_another_key_are_refused(database: Database) -> None:
    _fill(database)
    _rewrite_from(database, 4)
    forged = []
    for row in _rows(database)[3:]:
        forged.append(
            {
                "sequence": row["sequence"],
                "head_hash": row["hash"],
                "key_id": KEY.key_id,  # claims the real key's id, signs with another
                "hmac": checkpoint_mac(OTHER_KEY, row["sequence"], row["hash"], KEY.key_id),
                "created_at": datetime.now(UTC),
            }
        )
    _tamper(database, "DELETE FROM audit_checkpoints WHERE sequence >= 4")
    with database.engine.begin() as connection:
        connection.execute(insert(AuditCheckpoint.__table__), forged)
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 4)
    assert "does not verify with the audit key" in result.reason


def test_events_appended_without_the_key_are_an_unsigned_tail(database: Database) -> None:
    _fill(database, 3)
    with database.write() as session:
        append_event(session, _record(4))
        append_event(session, _record(5))
    result = _verify(database)
    assert (result.ok, result.first_bad_sequence) == (False, 4)
    assert "events 4 to 5 are not covered" in result.reason
    with database.write() as session:  # the next signed event covers them through the chain
        append_signed_event(session, _record(6), KEY)
    assert _verify(database).ok


def test_the_wrong_key_or_no_key_does_not_verify(database: Database) -> None:
    _fill(database, 3)
    wrong = _verify(database, key=OTHER_KEY)
    assert not wrong.ok and wrong.first_bad_sequence == 3
    assert OTHER_KEY.key_id in wrong.reason and KEY.key_id in wrong.reason
    missing = _verify(database, key=None)
    assert not missing.ok and missing.first_bad_sequence is None
    assert "audit key was not found" in missing.reason


def test_an_anchor_reveals_a_rollback_of_the_whole_trail(database: Database) -> None:
    """Removing the newest events *and* their checkpoints leaves a consistent, older trail;
    only a (sequence, hash) noted outside the database reveals it."""
    _fill(database)
    anchor = ChainAnchor(EVENTS, _hash_of(database, EVENTS))
    _tamper(
        database,
        "DELETE FROM audit_events WHERE sequence > 6",
        "DELETE FROM audit_checkpoints WHERE sequence > 6",
        "UPDATE audit_chain_head SET last_sequence = 6, last_hash = :h WHERE id = 1",
        params=[{}, {}, {"h": _hash_of(database, 6)}],
    )
    assert _verify(database).ok  # the limit of in-database evidence
    result = _verify(database, anchor=anchor)
    assert (result.ok, result.first_bad_sequence) == (False, 7)
    assert "anchor" in result.reason


# -- append-only at the database level --------------------------------------------------------
def test_the_triggers_refuse_update_and_delete(database: Database) -> None:
    _fill(database, 2)
    for table in ("audit_events", "audit_checkpoints"):
        for statement in (f"UPDATE {table} SET sequence = sequence", f"DELETE FROM {table}"):
            with pytest.raises(DBAPIError, match="append-only"), database.engine.begin() as c:
                c.execute(text(statement))
    assert _verify(database).ok


def test_postgres_privilege_statements_leave_append_only_rights(database: Database) -> None:
    statements = postgres_privilege_statements("clinicfusion_app")
    assert statements[0] == (
        'REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM "clinicfusion_app"'
    )
    with pytest.raises(ValueError, match="role name"):
        postgres_privilege_statements('app"; DROP TABLE audit_events; --')
    if database.backend != "postgresql":
        return
    _fill(database, 2)
    with database.engine.begin() as connection:
        role = connection.execute(text("SELECT current_user")).scalar_one()
        for statement in postgres_privilege_statements(role):
            connection.execute(text(statement))
    with pytest.raises(DBAPIError, match="permission denied"), database.engine.begin() as c:
        c.execute(text("UPDATE audit_events SET workstation = 'x'"))
    with pytest.raises(DBAPIError, match="permission denied"), database.engine.begin() as c:
        c.execute(text("TRUNCATE audit_checkpoints"))
    with database.write() as session:  # appending still works under those rights
        append_signed_event(session, _record(3), KEY)
    assert _verify(database).ok


# -- scale ------------------------------------------------------------------------------------
def test_verifying_ten_thousand_events(database: Database) -> None:
    """Verification streams in batches; 10,000 signed events (bulk-inserted) verify."""
    count = 10_000
    start = datetime(2025, 1, 1, tzinfo=UTC)
    previous = GENESIS_HASH
    events, checkpoints = [], []
    for sequence in range(1, count + 1):
        record = _record(sequence)
        row = {
            "sequence": sequence,
            "event_uid": f"00000000-0000-4000-8000-{sequence:012d}",
            "event_type": record.event_type,
            "action": record.action,
            "occurred_at": start + timedelta(seconds=sequence),
            "outcome": int(AuditOutcome.SUCCESS),
            "user_id": record.user_id,
            "username": record.username,
            "role": record.role,
            "workstation": record.workstation,
            "patient_pseudonym": record.patient_pseudonym,
            "case_uid": record.case_uid,
            "details": record.details,
            "prev_hash": previous,
        }
        row["hash"] = event_hash(previous, SimpleNamespace(**row))
        events.append(row)
        checkpoints.append(
            {
                "sequence": sequence,
                "head_hash": row["hash"],
                "key_id": KEY.key_id,
                "hmac": checkpoint_mac(KEY, sequence, row["hash"], KEY.key_id),
                "created_at": row["occurred_at"],
            }
        )
        previous = row["hash"]
    with database.write() as session:
        session.execute(insert(AuditEvent.__table__), events)
        session.execute(insert(AuditCheckpoint.__table__), checkpoints)
        head = session.get(AuditChainHead, 1)
        assert head is not None
        head.last_sequence, head.last_hash = count, previous
    result = _verify(database)
    assert result.ok, result.reason
    assert (result.events_checked, result.checkpoints_checked) == (count, count)
    if database.backend == "postgresql":
        # Analyse now, so that autovacuum has no reason to visit this database while the
        # fixture drops it (dropping needs to end every session, and ours cannot end its).
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM (ANALYZE) audit_events, audit_checkpoints"))
