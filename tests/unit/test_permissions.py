"""The role x action matrix, cell by cell: the expected table below is written out on its own
(not read from ROLE_PERMISSIONS), and every cell is checked through Actor.require and through
``authorize`` on a real database, which must audit each refusal and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clinic_app.domain.errors import AccessDenied
from clinic_app.domain.permissions import ROLE_PERMISSIONS, Permission, allowed
from clinic_app.domain.records import AuditAction, AuditOutcome, Role
from clinic_app.services.authorization import authorize
from clinic_app.services.context import Actor
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent
from tests.conftest import POSTGRES_URL_VARIABLE, _postgres_admin_url

#: Who may do what, as agreed for the product (least privilege). X = allowed.
#:                     clinician reviewer admin data_scientist
EXPECTED: dict[str, tuple[str, str, str, str]] = {
    "case.create": ("X", "-", "-", "-"),
    "case.read": ("X", "X", "-", "-"),
    "case.update": ("X", "-", "-", "-"),
    "case.delete": ("-", "-", "X", "-"),
    "case.analyse": ("X", "X", "-", "-"),
    "case.decide": ("X", "X", "-", "-"),
    "case.sign": ("X", "X", "-", "-"),
    "case.amend": ("X", "X", "-", "-"),
    "report.export": ("X", "X", "-", "-"),
    "audit.view": ("-", "X", "X", "-"),
    "audit.export": ("-", "-", "X", "-"),
    "users.manage": ("-", "-", "X", "-"),
    "settings.change": ("-", "-", "X", "-"),
    "stats.release": ("-", "-", "X", "X"),
    "privacy.budget_set": ("-", "-", "X", "-"),
    "model.train": ("-", "-", "-", "X"),
    "database.admin": ("-", "-", "X", "-"),
}
ROLE_ORDER = (Role.CLINICIAN, Role.REVIEWER, Role.ADMIN, Role.DATA_SCIENTIST)
CELLS = [
    pytest.param(role, Permission(name), marks[index] == "X", id=f"{role.value}-{name}")
    for name, marks in EXPECTED.items()
    for index, role in enumerate(ROLE_ORDER)
]
ACTION_OF = {
    "create": AuditAction.CREATE,
    "read": AuditAction.READ,
    "view": AuditAction.READ,
    "delete": AuditAction.DELETE,
}


def test_the_table_covers_every_role_and_permission() -> None:
    assert set(ROLE_ORDER) == set(Role) == set(ROLE_PERMISSIONS)
    assert set(EXPECTED) == {permission.value for permission in Permission}
    assert len(CELLS) == len(Role) * len(Permission)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """One migrated database per back end for the whole module: the 136 cells only append
    audit events, so they need not pay for a fresh database (about 1 s on PostgreSQL) each."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from clinic_app.storage.engine import create_database_engine
    from clinic_app.storage.migrate import upgrade

    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("permissions")
        database = Database(create_database_engine(f"sqlite:///{folder / 'cases.sqlite3'}"))
        upgrade(database)
        yield database
        database.dispose()
        return
    admin_url = _postgres_admin_url()
    if admin_url is None:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_URL_VARIABLE} to test on one")
    name = f"cf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    database = Database(create_database_engine(url))
    try:
        upgrade(database)
        yield database
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _actor(role: Role) -> Actor:
    return Actor(user_id=None, username=f"test-{role.value}", role=role, workstation="ws-matrix")


def _last_sequence(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.coalesce(func.max(AuditEvent.sequence), 0))) or 0)


@pytest.mark.parametrize(("role", "permission", "expected"), CELLS)
def test_cell_through_actor_require(role: Role, permission: Permission, expected: bool) -> None:
    assert allowed(role, permission) is expected
    actor = _actor(role)
    if expected:
        actor.require(permission)
    else:
        with pytest.raises(AccessDenied) as refused:
            actor.require(permission)
        assert refused.value.message.startswith(f"test-{role.value} (")
        assert " may not " in refused.value.message
        assert refused.value.exit_code == 77


@pytest.mark.parametrize(("role", "permission", "expected"), CELLS)
def test_cell_through_authorize_audits_refusals(
    shared_database: Database, role: Role, permission: Permission, expected: bool
) -> None:
    actor = _actor(role)
    event_type = permission.value
    action = ACTION_OF.get(permission.value.split(".")[1], AuditAction.EXECUTE)
    before = _last_sequence(shared_database)
    if expected:
        authorize(shared_database, actor, permission, event_type, action, case_uid="case-1")
        assert _last_sequence(shared_database) == before  # an allowed check writes nothing
        return
    with pytest.raises(AccessDenied):
        authorize(shared_database, actor, permission, event_type, action, case_uid="case-1")
    with shared_database.read() as session:
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.sequence > before)))
    assert len(events) == 1
    event = events[0]
    assert (event.event_type, event.action, event.outcome) == (
        event_type,
        action,
        AuditOutcome.MINOR_FAILURE,
    )
    assert (event.username, event.role, event.workstation) == (
        f"test-{role.value}",
        role.value,
        "ws-matrix",
    )
    assert (event.case_uid, event.details) == ("case-1", {"refused": permission.value})
