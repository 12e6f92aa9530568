"""User accounts: creation, roles, passwords (argon2id), sign-in with lockout; all audited.

Every change to an account is one audit event in the same transaction as the change
("user.create" C, "user.update" / "user.disable" / "user.password" U); sign-in and sign-out
are "user.login" / "user.logout" (E, as IHE ATNA's user-authentication event). A refused
attempt is audited through :func:`clinic_app.services.authorization.authorize`.

User names are case-insensitive: they are stored and compared in lower case. A failed sign-in
always says the same thing ("Unknown user name or wrong password."), whether the name is
unknown, the password wrong or the account locked, and costs the same argon2 work, so
neither the message nor its timing tells an attacker which names exist (OWASP's advice). Only
someone who knows the right password learns that the account is disabled. While an account is
locked its password is not even checked, so the lock cannot be used to keep guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clinic_app.domain.errors import AccessDenied, InputError
from clinic_app.domain.permissions import Permission
from clinic_app.domain.records import AuditAction, AuditOutcome, Role
from clinic_app.services.audit import signing_key_for
from clinic_app.services.authorization import authorize
from clinic_app.services.context import Actor, record_audit, record_denied, workstation_name
from clinic_app.storage.audit import AuditRecord, append_signed_event
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditChainHead, User

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; a cap keeps a pasted file out
MAX_FAILED_LOGINS = 5  # consecutive failures that lock an account
LOCKOUT_PERIOD = timedelta(minutes=15)
USERNAME_MAX_LENGTH = 64
RESERVED_USERNAMES = frozenset({"system"})  # Actor.system() signs the app's own audit events

LOGIN_FAILED_MESSAGE = "Unknown user name or wrong password."
LOGIN_FAILED_HINT = (
    f"Check both and try again. After {MAX_FAILED_LOGINS} failed attempts in a row an account "
    f"is locked for {int(LOCKOUT_PERIOD.total_seconds() // 60)} minutes; an administrator can "
    "unlock it sooner."
)

_USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class PasswordHashing:
    """Argon2id cost parameters; every hash string records the ones it was made with.

    The defaults are argon2-cffi's RFC 9106 "low memory" profile: 3 passes over 64 MiB with 4
    lanes, a 16-byte random salt and a 32-byte tag (about 0.1 s per hash on a 2-core
    workstation). A stored hash made with other parameters is re-made at the next sign-in.
    Tests pass cheaper parameters explicitly; nothing lowers them globally.
    """

    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16

    def hasher(self) -> PasswordHasher:
        return _hasher(self)


DEFAULT_HASHING = PasswordHashing()


@lru_cache(maxsize=8)
def _hasher(hashing: PasswordHashing) -> PasswordHasher:
    return PasswordHasher(
        time_cost=hashing.time_cost,
        memory_cost=hashing.memory_cost_kib,
        parallelism=hashing.parallelism,
        hash_len=hashing.hash_len,
        salt_len=hashing.salt_len,
        type=Type.ID,
    )


@lru_cache(maxsize=8)
def _decoy_hash(hashing: PasswordHashing) -> str:
    """A hash no password matches, verified when there is no real one so timing stays equal."""
    return _hasher(hashing).hash("decoy password for equal timing of failed sign-ins")


def _verify(hashing: PasswordHashing, stored_hash: str, password: str) -> bool:
    try:
        return _hasher(hashing).verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class UserInfo:
    """A plain copy of an account (no password hash), safe to hand to the GUI or the CLI."""

    id: int
    username: str
    display_name: str
    role: Role
    is_active: bool
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
    password_changed_at: datetime

    def is_locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > _now(now)

    def status(self, now: datetime | None = None) -> str:
        """One of: active, disabled, locked until <UTC time>; for lists and messages."""
        if not self.is_active:
            return "disabled"
        if self.is_locked(now) and self.locked_until is not None:
            return f"locked until {self.locked_until:%Y-%m-%d %H:%M} UTC"
        return "active"

    @classmethod
    def of(cls, user: User) -> UserInfo:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            role=Role(user.role),
            is_active=user.is_active,
            failed_logins=user.failed_logins,
            locked_until=user.locked_until,
            created_at=user.created_at,
            password_changed_at=user.password_changed_at,
        )


# -- rules ------------------------------------------------------------------------------------
def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("naive datetime given as the clock; use an aware UTC datetime")
    return now.astimezone(UTC)


def normalise_username(username: str) -> str:
    """The stored spelling of a user name: trimmed and lower case."""
    return username.strip().lower()


def validate_username(username: str) -> str:
    """Return the normalised name, or raise InputError saying what a valid name looks like."""
    name = normalise_username(username)
    if not _USERNAME_PATTERN.fullmatch(name):
        raise InputError(
            f"The user name '{username.strip()}' is not valid.",
            hint=f"Use 1 to {USERNAME_MAX_LENGTH} letters, digits, '.', '_' or '-', starting "
            "with a letter or digit.",
        )
    if name in RESERVED_USERNAMES:
        raise InputError(
            f"The user name '{name}' is reserved for the app itself.",
            hint="Choose another user name.",
        )
    return name


def check_password_policy(password: str, username: str) -> None:
    """Raise InputError unless ``password`` has 12 to 1024 characters and is not the user name."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(
            f"The password is too short: use at least {MIN_PASSWORD_LENGTH} characters.",
            hint="A few unrelated words make a long password that is easy to remember.",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InputError(f"The password is too long: use at most {MAX_PASSWORD_LENGTH} characters.")
    if password.strip().lower() == normalise_username(username):
        raise InputError(
            "The password must not be the user name.", hint="Choose a password of its own."
        )


def _display_name(display_name: str | None, username: str) -> str:
    name = (display_name or "").strip() or username
    if len(name) > 200:
        raise InputError("The display name is too long: use at most 200 characters.")
    return name


# -- transactions -----------------------------------------------------------------------------
def _serialise(session: Session) -> None:
    """Take the audit chain head's row lock first, so that checks such as "no user exists yet"
    or "another administrator remains" cannot race on PostgreSQL (SQLite's BEGIN IMMEDIATE
    already serialises writers). Every user change appends an audit event, which takes this
    lock anyway."""
    session.execute(select(AuditChainHead.id).where(AuditChainHead.id == 1).with_for_update())


def _find(session: Session, username: str, *, for_update: bool = False) -> User | None:
    query = select(User).where(User.username == normalise_username(username))
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def _get(session: Session, username: str) -> User:
    user = _find(session, username, for_update=True)
    if user is None:
        raise InputError(
            f"There is no user named '{normalise_username(username)}'.",
            hint="`clinic-app users list` shows the accounts.",
        )
    return user


def _other_active_admins(session: Session, user: User) -> int:
    query = select(func.count(User.id)).where(
        User.role == Role.ADMIN, User.is_active.is_(True), User.id != user.id
    )
    return int(session.scalar(query) or 0)


def _keep_an_admin(session: Session, user: User, what: str) -> None:
    """Refuse to leave the system without an active administrator (nobody could manage it)."""
    if user.role == Role.ADMIN and user.is_active and _other_active_admins(session, user) == 0:
        raise InputError(
            f"'{user.username}' is the only active administrator and cannot be {what}.",
            hint="Make another user an administrator first.",
        )


def _subject(user: User) -> dict[str, object]:
    return {"user_id": user.id, "username": user.username}


# -- account management -----------------------------------------------------------------------
def has_users(database: Database) -> bool:
    """Whether any account exists; while none does, first-run set-up creates an administrator."""
    with database.read() as session:
        return session.scalar(select(func.count(User.id))) != 0


def _add_user(
    session: Session,
    actor: Actor,
    name: str,
    display_name: str,
    role: Role,
    password_hash: str,
    moment: datetime,
    **details: object,
) -> User:
    """Insert an active account and its one "user.create" audit event."""
    user = User(
        username=name,
        display_name=display_name,
        role=role,
        password_hash=password_hash,
        is_active=True,
        failed_logins=0,
        created_at=moment,
        password_changed_at=moment,
    )
    session.add(user)
    session.flush()
    record_audit(
        session,
        actor,
        "user.create",
        AuditAction.CREATE,
        details={**_subject(user), "role": role.value, **details},
    )
    return user


def create_first_admin(
    database: Database,
    username: str,
    password: str,
    *,
    display_name: str | None = None,
    hashing: PasswordHashing = DEFAULT_HASHING,
    now: datetime | None = None,
) -> UserInfo:
    """First-run set-up: create an administrator, only while no account exists at all."""
    name = validate_username(username)
    check_password_policy(password, name)
    password_hash = hashing.hasher().hash(password)
    moment = _now(now)
    system = Actor.system()
    with database.write() as session:
        _serialise(session)
        exists = session.scalar(select(func.count(User.id))) != 0
        if not exists:
            user = _add_user(
                session,
                system,
                name,
                _display_name(display_name, name),
                Role.ADMIN,
                password_hash,
                moment,
                first_admin=True,
            )
            return UserInfo.of(user)
    record_denied(database, system, "user.create", AuditAction.CREATE, "first_admin_exists")
    raise AccessDenied(
        "User accounts exist already, so first-run set-up is closed.",
        hint="Ask an administrator to create your account.",
    )


def create_user(
    database: Database,
    actor: Actor,
    username: str,
    password: str,
    role: Role,
    *,
    display_name: str | None = None,
    hashing: PasswordHashing = DEFAULT_HASHING,
    now: datetime | None = None,
) -> UserInfo:
    """Create an account (administrators only)."""
    authorize(database, actor, Permission.USERS_MANAGE, "user.create", AuditAction.CREATE)
    role = Role(role)
    name = validate_username(username)
    shown_name = _display_name(display_name, name)
    check_password_policy(password, name)
    password_hash = hashing.hasher().hash(password)  # outside the write lock: it takes 0.1 s
    moment = _now(now)
    with database.write() as session:
        _serialise(session)
        if _find(session, name) is not None:
            raise InputError(
                f"The user name '{name}' is taken already.", hint="Choose another user name."
            )
        user = _add_user(session, actor, name, shown_name, role, password_hash, moment)
        return UserInfo.of(user)


def list_users(database: Database, actor: Actor) -> list[UserInfo]:
    """All accounts by user name (administrators only)."""
    authorize(database, actor, Permission.USERS_MANAGE, "user.read", AuditAction.READ)
    with database.read() as session:
        return [UserInfo.of(user) for user in session.scalars(select(User).order_by(User.username))]


def get_user(database: Database, actor: Actor, username: str) -> UserInfo:
    """One account (administrators, or the user asking about their own)."""
    if actor.user_id is None or actor.username != normalise_username(username):
        authorize(database, actor, Permission.USERS_MANAGE, "user.read", AuditAction.READ)
    with database.read() as session:
        return UserInfo.of(_get(session, username))


def disable_user(database: Database, actor: Actor, username: str) -> UserInfo:
    """Stop an account from signing in; its history and audit events stay. A no-op, unaudited,
    when it is disabled already."""
    authorize(database, actor, Permission.USERS_MANAGE, "user.disable", AuditAction.UPDATE)
    with database.write() as session:
        _serialise(session)
        user = _get(session, username)
        if user.is_active:
            _keep_an_admin(session, user, "disabled")
            user.is_active = False
            session.flush()
            record_audit(session, actor, "user.disable", AuditAction.UPDATE, details=_subject(user))
        return UserInfo.of(user)


def enable_user(
    database: Database, actor: Actor, username: str, *, now: datetime | None = None
) -> UserInfo:
    """Let a disabled account sign in again, and lift a lockout (clears the failure count)."""
    authorize(database, actor, Permission.USERS_MANAGE, "user.update", AuditAction.UPDATE)
    moment = _now(now)
    with database.write() as session:
        _serialise(session)
        user = _get(session, username)
        was_locked = user.locked_until is not None and user.locked_until > moment
        if not user.is_active or user.failed_logins or user.locked_until is not None:
            details = {**_subject(user), "is_active": True, "was_active": user.is_active}
            details["unlocked"] = was_locked
            user.is_active = True
            user.failed_logins = 0
            user.locked_until = None
            session.flush()
            record_audit(session, actor, "user.update", AuditAction.UPDATE, details=details)
        return UserInfo.of(user)


def change_role(database: Database, actor: Actor, username: str, role: Role) -> UserInfo:
    """Give an account another role (administrators only); a no-op when it has that role."""
    authorize(database, actor, Permission.USERS_MANAGE, "user.update", AuditAction.UPDATE)
    role = Role(role)
    with database.write() as session:
        _serialise(session)
        user = _get(session, username)
        if user.role != role:
            if role != Role.ADMIN:
                _keep_an_admin(session, user, f"made a {role.value.replace('_', ' ')}")
            previous = Role(user.role)
            user.role = role
            session.flush()
            record_audit(
                session,
                actor,
                "user.update",
                AuditAction.UPDATE,
                details={**_subject(user), "role": {"from": previous.value, "to": role.value}},
            )
        return UserInfo.of(user)


def change_password(
    database: Database,
    actor: Actor,
    username: str,
    new_password: str,
    *,
    old_password: str | None = None,
    hashing: PasswordHashing = DEFAULT_HASHING,
    now: datetime | None = None,
) -> UserInfo:
    """Change a password: one's own with the current one, or anyone's as an administrator.

    An administrator's reset needs no old password and also lifts a lockout. A wrong current
    password is audited ("user.password", outcome 4) and refused with AccessDenied.
    """
    own = actor.user_id is not None and actor.username == normalise_username(username)
    if own:
        if old_password is None:
            raise InputError("Enter your current password to change it.")
        if old_password == new_password:
            raise InputError(
                "The new password is the same as the current one.",
                hint="Choose a different password.",
            )
    else:
        authorize(database, actor, Permission.USERS_MANAGE, "user.password", AuditAction.UPDATE)
    check_password_policy(new_password, username)
    new_hash = hashing.hasher().hash(new_password)
    moment = _now(now)
    refused: str | None = None
    with database.write() as session:
        _serialise(session)
        user = _get(session, username)
        if own and not user.is_active:
            refused = "disabled"
        elif own and not _verify(hashing, user.password_hash, old_password or ""):
            refused = "wrong_current_password"
        if refused is not None:
            record_audit(
                session,
                actor,
                "user.password",
                AuditAction.UPDATE,
                outcome=AuditOutcome.MINOR_FAILURE,
                details={**_subject(user), "refused": refused},
            )
        else:
            user.password_hash = new_hash
            user.password_changed_at = moment
            user.failed_logins = 0
            user.locked_until = None
            session.flush()
            record_audit(
                session,
                actor,
                "user.password",
                AuditAction.UPDATE,
                details={**_subject(user), "reset_by_admin": not own},
            )
        info = UserInfo.of(user)
    if refused == "disabled":
        raise AccessDenied(
            f"The account '{info.username}' is disabled.", hint="Ask an administrator."
        )
    if refused is not None:
        raise AccessDenied(
            "The current password is not correct; the password was not changed.",
            hint="Type the current password again, or ask an administrator to reset it.",
        )
    return info


# -- signing in and out -----------------------------------------------------------------------
def authenticate(
    database: Database,
    username: str,
    password: str,
    workstation: str | None = None,
    *,
    hashing: PasswordHashing = DEFAULT_HASHING,
    now: datetime | None = None,
) -> Actor:
    """Sign in: return the Actor for later service calls, or raise AccessDenied.

    Five consecutive failures lock the account for 15 minutes; a success resets the count and
    re-hashes the password when ``hashing`` differs from the parameters in the stored hash.
    Failed attempts are audited with the user name as typed (IHE ATNA practice) and the reason
    in ``details``; they carry no role, since nobody was authenticated.
    """
    where = workstation or workstation_name()
    moment = _now(now)
    failure: str | None = None
    details: dict[str, object] = {}
    with database.write() as session:
        user = _find(session, username, for_update=True)
        if user is None:
            _verify(hashing, _decoy_hash(hashing), password)
            failure = "unknown_user"
        else:
            if user.locked_until is not None and user.locked_until <= moment:
                user.locked_until = None  # the lock has run out: a fresh set of attempts
                user.failed_logins = 0
            if user.locked_until is not None:
                _verify(hashing, _decoy_hash(hashing), password)
                failure = "locked"
                details["locked_until"] = user.locked_until.isoformat()
            elif not _verify(hashing, user.password_hash, password):
                failure = "wrong_password"
                user.failed_logins += 1
                details["failed_logins"] = user.failed_logins
                if user.failed_logins >= MAX_FAILED_LOGINS:
                    user.locked_until = moment + LOCKOUT_PERIOD
                    details["locked_until"] = user.locked_until.isoformat()
            elif not user.is_active:
                failure = "disabled"
        if failure is not None:
            # Not record_audit: the actor is unknown, the name is recorded as typed (ATNA).
            append_signed_event(
                session,
                AuditRecord(
                    event_type="user.login",
                    action=AuditAction.EXECUTE,
                    outcome=AuditOutcome.MINOR_FAILURE,
                    user_id=user.id if user is not None else None,
                    username=username[:USERNAME_MAX_LENGTH],
                    role=None,
                    workstation=where,
                    details={"reason": failure, **details},
                ),
                signing_key_for(session),
            )
        else:
            assert user is not None
            rehashed = _hasher(hashing).check_needs_rehash(user.password_hash)
            if rehashed:
                user.password_hash = _hasher(hashing).hash(password)
            user.failed_logins = 0
            actor = Actor(
                user_id=user.id, username=user.username, role=Role(user.role), workstation=where
            )
            record_audit(
                session, actor, "user.login", AuditAction.EXECUTE, details={"rehashed": rehashed}
            )
            return actor
    if failure == "disabled":
        raise AccessDenied(
            f"The account '{normalise_username(username)}' is disabled.",
            hint="Ask an administrator to enable it.",
        )
    raise AccessDenied(LOGIN_FAILED_MESSAGE, hint=LOGIN_FAILED_HINT)


def logout(database: Database, actor: Actor) -> None:
    """Sign out: audit it, so the trail shows when each session ended."""
    with database.write() as session:
        record_audit(session, actor, "user.logout", AuditAction.EXECUTE)
