"""User accounts on SQLite and PostgreSQL: argon2id hashing, password policy, sign-in with
lockout (on an injected clock), disabled accounts, re-hashing, and exactly one audit event per
action with the right type, action code and outcome."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from clinic_app.domain.errors import AccessDenied, InputError
from clinic_app.domain.records import AuditAction, AuditOutcome, Role
from clinic_app.services.context import Actor
from clinic_app.services.users import (
    DEFAULT_HASHING,
    LOCKOUT_PERIOD,
    LOGIN_FAILED_MESSAGE,
    MAX_FAILED_LOGINS,
    PasswordHashing,
    UserInfo,
    authenticate,
    change_password,
    change_role,
    check_password_policy,
    create_first_admin,
    create_user,
    disable_user,
    enable_user,
    has_users,
    list_users,
    logout,
    validate_username,
)
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent, User

#: Cheap argon2id parameters, passed explicitly: 1 pass over 8 KiB (the minimum for 1 lane).
FAST = PasswordHashing(time_cost=1, memory_cost_kib=8, parallelism=1)
OTHER = PasswordHashing(time_cost=2, memory_cost_kib=16, parallelism=1)

ADMIN_PASSWORD = "correct horse battery"
PASSWORD = "staple kettle orbit lamp"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def last_sequence(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.coalesce(func.max(AuditEvent.sequence), 0))) or 0)


def events_after(database: Database, sequence: int) -> list[AuditEvent]:
    with database.read() as session:
        query = select(AuditEvent).where(AuditEvent.sequence > sequence)
        return list(session.scalars(query.order_by(AuditEvent.sequence)))


def one_event_after(database: Database, sequence: int) -> AuditEvent:
    events = events_after(database, sequence)
    assert len(events) == 1, [(e.event_type, e.outcome, e.details) for e in events]
    return events[0]


def stored_user(database: Database, username: str) -> User:
    with database.read() as session:
        user = session.scalars(select(User).where(User.username == username)).one()
        session.expunge(user)
        return user


@pytest.fixture
def admin(database: Database) -> Actor:
    create_first_admin(database, "root", ADMIN_PASSWORD, hashing=FAST)
    return authenticate(database, "root", ADMIN_PASSWORD, "ws-admin", hashing=FAST)


@pytest.fixture
def alice(database: Database, admin: Actor) -> UserInfo:
    return create_user(
        database, admin, "alice", PASSWORD, Role.CLINICIAN, display_name="Dr Alice", hashing=FAST
    )


def test_default_parameters_are_argon2id_rfc9106_low_memory() -> None:
    encoded = DEFAULT_HASHING.hasher().hash(PASSWORD)
    assert encoded.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert DEFAULT_HASHING.hasher().verify(encoded, PASSWORD)


def test_password_is_stored_as_argon2id_and_signs_in(database: Database, alice: UserInfo) -> None:
    user = stored_user(database, "alice")
    assert user.password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert PASSWORD not in user.password_hash
    assert (user.display_name, user.role, user.is_active) == ("Dr Alice", Role.CLINICIAN, True)

    before = last_sequence(database)
    actor = authenticate(database, "Alice", PASSWORD, "ws-7", hashing=FAST)
    assert actor == Actor(user.id, "alice", Role.CLINICIAN, "ws-7")
    event = one_event_after(database, before)
    assert (event.event_type, event.action, event.outcome) == ("user.login", AuditAction.EXECUTE, 0)
    assert (event.user_id, event.username, event.role) == (user.id, "alice", "clinician")
    assert event.workstation == "ws-7"
    assert event.details == {"rehashed": False}


def test_first_admin_only_while_no_account_exists(database: Database) -> None:
    assert not has_users(database)
    admin = create_first_admin(database, "Root", ADMIN_PASSWORD, hashing=FAST)
    assert (admin.username, admin.role, admin.display_name) == ("root", Role.ADMIN, "root")
    created = one_event_after(database, 0)
    assert (created.event_type, created.action, created.outcome) == (
        "user.create",
        AuditAction.CREATE,
        0,
    )
    assert (created.username, created.role, created.user_id) == ("system", "admin", None)
    assert created.details == {
        "user_id": admin.id,
        "username": "root",
        "role": "admin",
        "first_admin": True,
    }
    assert has_users(database)

    before = last_sequence(database)
    with pytest.raises(AccessDenied, match="first-run set-up is closed"):
        create_first_admin(database, "mallory", ADMIN_PASSWORD, hashing=FAST)
    refused = one_event_after(database, before)
    assert (refused.event_type, refused.outcome) == ("user.create", AuditOutcome.MINOR_FAILURE)
    with database.read() as session:
        assert session.scalar(select(func.count(User.id))) == 1


def test_wrong_password_and_unknown_user_fail_alike_and_are_audited_as_typed(
    database: Database, alice: UserInfo
) -> None:
    before = last_sequence(database)
    with pytest.raises(AccessDenied) as wrong:
        authenticate(database, "Alice", "not the password", "ws-1", hashing=FAST)
    with pytest.raises(AccessDenied) as unknown:
        authenticate(database, "nobody", "not the password", "ws-1", hashing=FAST)
    assert wrong.value.message == unknown.value.message == LOGIN_FAILED_MESSAGE
    assert str(wrong.value) == str(unknown.value)
    assert "locked for 15 minutes" in str(wrong.value)

    first, second = events_after(database, before)
    for event in (first, second):
        assert (event.event_type, event.action) == ("user.login", AuditAction.EXECUTE)
        assert event.outcome == AuditOutcome.MINOR_FAILURE
        assert event.role is None
    assert (first.username, first.user_id) == ("Alice", alice.id)  # as typed
    assert first.details == {"reason": "wrong_password", "failed_logins": 1}
    assert (second.username, second.user_id) == ("nobody", None)
    assert second.details == {"reason": "unknown_user"}
    assert stored_user(database, "alice").failed_logins == 1


def test_five_failures_lock_the_account_for_fifteen_minutes(
    database: Database, alice: UserInfo
) -> None:
    for attempt in range(1, MAX_FAILED_LOGINS + 1):
        before = last_sequence(database)
        with pytest.raises(AccessDenied, match=LOGIN_FAILED_MESSAGE):
            authenticate(database, "alice", f"guess {attempt}", now=T0, hashing=FAST)
        event = one_event_after(database, before)
        assert event.details["failed_logins"] == attempt
        assert ("locked_until" in event.details) is (attempt == MAX_FAILED_LOGINS)
    user = stored_user(database, "alice")
    assert user.locked_until == T0 + LOCKOUT_PERIOD == T0 + timedelta(minutes=15)

    # While locked even the right password fails, with the same message, and is not checked.
    before = last_sequence(database)
    almost = T0 + LOCKOUT_PERIOD - timedelta(seconds=1)
    with pytest.raises(AccessDenied) as locked:
        authenticate(database, "alice", PASSWORD, now=almost, hashing=FAST)
    assert locked.value.message == LOGIN_FAILED_MESSAGE
    event = one_event_after(database, before)
    assert (event.outcome, event.details["reason"]) == (AuditOutcome.MINOR_FAILURE, "locked")
    assert stored_user(database, "alice").failed_logins == MAX_FAILED_LOGINS

    actor = authenticate(database, "alice", PASSWORD, now=T0 + LOCKOUT_PERIOD, hashing=FAST)
    assert actor.username == "alice"
    user = stored_user(database, "alice")
    assert (user.failed_logins, user.locked_until) == (0, None)


def test_a_lock_that_ran_out_gives_a_fresh_set_of_attempts(
    database: Database, alice: UserInfo
) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(AccessDenied):
            authenticate(database, "alice", "wrong password!", now=T0, hashing=FAST)
    later = T0 + LOCKOUT_PERIOD + timedelta(minutes=1)
    with pytest.raises(AccessDenied):
        authenticate(database, "alice", "wrong password!", now=later, hashing=FAST)
    user = stored_user(database, "alice")
    assert (user.failed_logins, user.locked_until) == (1, None)


def test_failures_must_be_consecutive(database: Database, alice: UserInfo) -> None:
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(AccessDenied):
            authenticate(database, "alice", "wrong password!", now=T0, hashing=FAST)
    authenticate(database, "alice", PASSWORD, now=T0, hashing=FAST)
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(AccessDenied):
            authenticate(database, "alice", "wrong password!", now=T0, hashing=FAST)
    user = stored_user(database, "alice")
    assert (user.failed_logins, user.locked_until) == (MAX_FAILED_LOGINS - 1, None)


def test_disabled_account_is_refused(database: Database, admin: Actor, alice: UserInfo) -> None:
    before = last_sequence(database)
    info = disable_user(database, admin, "alice")
    assert not info.is_active and info.status() == "disabled"
    event = one_event_after(database, before)
    assert (event.event_type, event.action, event.outcome) == (
        "user.disable",
        AuditAction.UPDATE,
        0,
    )
    assert (event.username, event.details) == ("root", {"user_id": alice.id, "username": "alice"})

    before = last_sequence(database)
    with pytest.raises(AccessDenied, match="account 'alice' is disabled") as right:
        authenticate(database, "alice", PASSWORD, hashing=FAST)
    assert "Ask an administrator to enable it" in str(right.value)
    with pytest.raises(AccessDenied) as wrong:  # a wrong password learns nothing more
        authenticate(database, "alice", "not the password", hashing=FAST)
    assert wrong.value.message == LOGIN_FAILED_MESSAGE
    reasons = [(e.outcome, e.details["reason"]) for e in events_after(database, before)]
    assert reasons == [(4, "disabled"), (4, "wrong_password")]

    before = last_sequence(database)
    assert disable_user(database, admin, "alice").is_active is False  # no change, no event
    assert events_after(database, before) == []

    enabled = enable_user(database, admin, "alice")
    assert enabled.is_active and enabled.failed_logins == 0
    event = one_event_after(database, before)
    assert (event.event_type, event.action, event.outcome) == ("user.update", "U", 0)
    assert event.details["is_active"] is True and event.details["was_active"] is False
    assert authenticate(database, "alice", PASSWORD, hashing=FAST).user_id == alice.id


def test_enable_lifts_a_lockout(database: Database, admin: Actor, alice: UserInfo) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(AccessDenied):
            authenticate(database, "alice", "wrong password!", hashing=FAST)
    assert "locked until" in list_users(database, admin)[0].status()
    before = last_sequence(database)
    assert enable_user(database, admin, "alice").status() == "active"
    assert one_event_after(database, before).details["unlocked"] is True
    authenticate(database, "alice", PASSWORD, hashing=FAST)


def test_sign_in_rehashes_when_the_parameters_changed(database: Database, alice: UserInfo) -> None:
    before = last_sequence(database)
    authenticate(database, "alice", PASSWORD, hashing=OTHER)
    assert one_event_after(database, before).details == {"rehashed": True}
    rehashed = stored_user(database, "alice").password_hash
    assert rehashed.startswith("$argon2id$v=19$m=16,t=2,p=1$")

    before = last_sequence(database)
    authenticate(database, "alice", PASSWORD, hashing=OTHER)
    assert one_event_after(database, before).details == {"rehashed": False}
    assert stored_user(database, "alice").password_hash == rehashed
    # A hash with other parameters still verifies: the parameters travel inside the hash.
    authenticate(database, "alice", PASSWORD, hashing=FAST)


POLICY_ERRORS = [
    ("bob", "short pass", "too short: use at least 12 characters"),
    ("bob", "x" * 1025, "too long"),
    ("bob.the.builder", "Bob.The.Builder", "must not be the user name"),
    ("bob smith", PASSWORD, "user name 'bob smith' is not valid"),
    ("", PASSWORD, "user name '' is not valid"),
    ("b" * 65, PASSWORD, "is not valid"),
    ("System", PASSWORD, "reserved for the app itself"),
]


@pytest.mark.parametrize(("username", "password", "message"), POLICY_ERRORS)
def test_policy_errors_are_clear_sentences(username: str, password: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as refused:
        check_password_policy(password, validate_username(username))
    assert refused.value.exit_code == 65
    assert str(refused.value).endswith(".")


def test_refused_accounts_write_nothing(database: Database, admin: Actor) -> None:
    refusals = [*POLICY_ERRORS, ("Root", PASSWORD, "user name 'root' is taken already")]
    before = last_sequence(database)
    for username, password, message in refusals:
        with pytest.raises(InputError, match=message):
            create_user(database, admin, username, password, Role.REVIEWER, hashing=FAST)
    assert events_after(database, before) == []
    assert [user.username for user in list_users(database, admin)] == ["root"]


def test_twelve_characters_are_enough(database: Database, admin: Actor) -> None:
    created = create_user(database, admin, "bob", "a" * 12, Role.REVIEWER, hashing=FAST)
    assert created.role is Role.REVIEWER


def test_only_administrators_manage_users_and_refusals_are_audited(
    database: Database, admin: Actor, alice: UserInfo
) -> None:
    clinician = authenticate(database, "alice", PASSWORD, "ws-3", hashing=FAST)
    attempts: list[tuple[str, str, Callable[[], object]]] = [
        ("user.create", "C", lambda: create_user(database, clinician, "eve", PASSWORD, Role.ADMIN)),
        ("user.read", "R", lambda: list_users(database, clinician)),
        ("user.disable", "U", lambda: disable_user(database, clinician, "root")),
        ("user.update", "U", lambda: enable_user(database, clinician, "root")),
        ("user.update", "U", lambda: change_role(database, clinician, "alice", Role.ADMIN)),
        ("user.password", "U", lambda: change_password(database, clinician, "root", PASSWORD)),
    ]
    for event_type, action, attempt in attempts:
        before = last_sequence(database)
        with pytest.raises(AccessDenied, match=r"alice \(clinician\) may not manage user accounts"):
            attempt()
        event = one_event_after(database, before)
        assert (event.event_type, event.action, event.outcome) == (event_type, action, 4)
        assert (event.username, event.role, event.workstation) == ("alice", "clinician", "ws-3")
        assert event.details == {"refused": "users.manage"}
    assert stored_user(database, "alice").role == Role.CLINICIAN
    assert stored_user(database, "root").is_active


def test_own_password_change_needs_the_current_password(
    database: Database, alice: UserInfo
) -> None:
    actor = authenticate(database, "alice", PASSWORD, hashing=FAST)
    new = "new password of alice"
    with pytest.raises(InputError, match="Enter your current password"):
        change_password(database, actor, "alice", new, hashing=FAST)

    before = last_sequence(database)
    with pytest.raises(AccessDenied, match="current password is not correct"):
        change_password(database, actor, "alice", new, old_password="guess guess", hashing=FAST)
    event = one_event_after(database, before)
    assert (event.event_type, event.action, event.outcome) == ("user.password", "U", 4)
    assert event.details["refused"] == "wrong_current_password"

    with pytest.raises(InputError, match="same as the current one"):
        change_password(database, actor, "alice", PASSWORD, old_password=PASSWORD, hashing=FAST)
    with pytest.raises(InputError, match="too short"):
        change_password(database, actor, "alice", "short", old_password=PASSWORD, hashing=FAST)

    before = last_sequence(database)
    info = change_password(database, actor, "alice", new, old_password=PASSWORD, hashing=FAST)
    assert info.password_changed_at > alice.password_changed_at
    event = one_event_after(database, before)
    assert (event.event_type, event.action, event.outcome) == ("user.password", "U", 0)
    assert (event.username, event.details["reset_by_admin"]) == ("alice", False)
    with pytest.raises(AccessDenied):
        authenticate(database, "alice", PASSWORD, hashing=FAST)
    authenticate(database, "alice", new, hashing=FAST)


def test_admin_reset_needs_no_old_password_and_unlocks(
    database: Database, admin: Actor, alice: UserInfo
) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(AccessDenied):
            authenticate(database, "alice", "wrong password!", hashing=FAST)
    before = last_sequence(database)
    change_password(database, admin, "alice", "reset by the admin", hashing=FAST)
    event = one_event_after(database, before)
    assert (event.event_type, event.username, event.details["reset_by_admin"]) == (
        "user.password",
        "root",
        True,
    )
    assert authenticate(database, "alice", "reset by the admin", hashing=FAST).username == "alice"


def test_change_role_is_one_update_event(database: Database, admin: Actor, alice: UserInfo) -> None:
    before = last_sequence(database)
    assert change_role(database, admin, "alice", Role.REVIEWER).role is Role.REVIEWER
    event = one_event_after(database, before)
    assert (event.event_type, event.action, event.outcome) == ("user.update", "U", 0)
    assert event.details["role"] == {"from": "clinician", "to": "reviewer"}
    assert authenticate(database, "alice", PASSWORD, hashing=FAST).role is Role.REVIEWER

    before = last_sequence(database)
    change_role(database, admin, "alice", Role.REVIEWER)  # no change, no event
    assert events_after(database, before) == []


def test_the_last_active_administrator_cannot_be_removed(
    database: Database, admin: Actor, alice: UserInfo
) -> None:
    before = last_sequence(database)
    with pytest.raises(InputError, match="only active administrator"):
        disable_user(database, admin, "root")
    with pytest.raises(InputError, match="only active administrator"):
        change_role(database, admin, "root", Role.CLINICIAN)
    assert events_after(database, before) == []

    change_role(database, admin, "alice", Role.ADMIN)
    disable_user(database, admin, "root")
    assert not stored_user(database, "root").is_active


def test_unknown_account_is_named(database: Database, admin: Actor) -> None:
    with pytest.raises(InputError, match="There is no user named 'ghost'"):
        disable_user(database, admin, "Ghost")


def test_logout_is_audited(database: Database, alice: UserInfo) -> None:
    actor = authenticate(database, "alice", PASSWORD, "ws-9", hashing=FAST)
    before = last_sequence(database)
    logout(database, actor)
    event = one_event_after(database, before)
    assert (event.event_type, event.action, event.outcome) == ("user.logout", "E", 0)
    assert (event.user_id, event.username, event.workstation) == (alice.id, "alice", "ws-9")


def test_list_users_copies_no_password_hash(
    database: Database, admin: Actor, alice: UserInfo
) -> None:
    listed = list_users(database, admin)
    assert [(u.username, u.role, u.status()) for u in listed] == [
        ("alice", Role.CLINICIAN, "active"),
        ("root", Role.ADMIN, "active"),
    ]
    assert not any("hash" in field for field in UserInfo.__dataclass_fields__)


def test_audit_chain_stays_valid(database: Database, admin: Actor, alice: UserInfo) -> None:
    from clinic_app.storage.audit import GENESIS_HASH, event_hash

    with pytest.raises(AccessDenied):
        authenticate(database, "alice", "wrong password!", hashing=FAST)
    previous = GENESIS_HASH
    for event in events_after(database, 0):
        assert event.prev_hash == previous
        assert event.hash == event_hash(previous, event)
        previous = event.hash
