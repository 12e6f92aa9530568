"""The audit trail as use cases: its signing key, verification, viewing and export.

The checkpoint key lives outside the database: in the OS keyring when one is usable (service
``ClinicFusion``, name ``audit-hmac:<database identity>``), otherwise in
``<keys dir>/audit-hmac.key`` (32 random bytes, file 0600 in a 0700 folder), created on first
use. Whoever copies or edits the database without that key cannot forge a checkpoint. On
PostgreSQL shared by several workstations, every workstation needs the same key file.

Viewing (``audit.view``, R) and exporting (``audit.export``, E) are themselves audited, in the
same transaction as the read. Verification only reads: it must work on a copy of a database
that is under investigation, and it never changes the trail it checks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from sqlalchemy import Select, func, select
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session

from clinic_app._version import __version__
from clinic_app.config.secrets import create_secret_file, read_secret_file
from clinic_app.config.settings import ENV_KEYS_DIR, Settings, default_keys_dir
from clinic_app.domain.errors import AccessDenied, ConfigError, InputError
from clinic_app.domain.permissions import Permission
from clinic_app.domain.records import AuditAction, AuditOutcome
from clinic_app.services.context import record_audit, record_denied
from clinic_app.storage.audit import (
    AUDIT_KEY_BYTES,
    AuditKey,
    ChainAnchor,
    VerificationResult,
    verify_chain,
)
from clinic_app.storage.audit_export import dicom_audit_xml, fhir_audit_bundle
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent

if TYPE_CHECKING:
    from clinic_app.services.context import Actor

log = logging.getLogger(__name__)

AUDIT_KEY_FILENAME = "audit-hmac.key"
KEYRING_SERVICE = "ClinicFusion"
SOURCE_ID = f"ClinicFusion {__version__}"
EXPORT_FORMATS = ("fhir", "dicom")
MAX_PAGE_SIZE = 1000


# -- the checkpoint key -----------------------------------------------------------------------
def database_identity(database_url: str | URL) -> str:
    """A stable name for a database (no password): the SQLite file's full path, or the server."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return f"sqlite:///{Path(url.database).expanduser().resolve()}"
    return url.set(password=None, query={}).render_as_string(hide_password=True)


def environment_keys_dir() -> Path:
    """The keys dir that :func:`load_settings` would choose (CLINICFUSION_KEYS_DIR or default).

    Used when a database was opened without :func:`bind_audit_keys`; the same rule as the
    settings, so the app and its tools find the same key.
    """
    value = os.environ.get(ENV_KEYS_DIR, "").strip()
    return (Path(value) if value else default_keys_dir()).expanduser().resolve()


def _usable_keyring() -> Any | None:
    """The OS keyring backend, or None when there is none (e.g. keyring's ``fail`` backend)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken keyring configuration must not stop auditing
        log.warning("The OS keyring cannot be used; the audit key file is used instead.")
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    return backend


class AuditKeyStore:
    """Finds, or creates on first use, the checkpoint key for a database.

    Order: an entry in a usable OS keyring, else the key file, else a new key (in the keyring
    if usable, else in the file). A key file an administrator placed is never overridden.
    """

    def __init__(self, keys_dir: Path, *, use_keyring: bool = True) -> None:
        self.keys_dir = Path(keys_dir)
        self.use_keyring = use_keyring
        self._keyring_cache: dict[str, AuditKey] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditKeyStore:
        return cls(settings.keys_dir)

    @property
    def key_file(self) -> Path:
        return self.keys_dir / AUDIT_KEY_FILENAME

    def key_for(self, database_url: str | URL, *, create: bool = True) -> AuditKey | None:
        """The key for ``database_url``; None only when it does not exist and ``create`` is off."""
        name = f"audit-hmac:{database_identity(database_url)}"
        backend = _usable_keyring() if self.use_keyring else None
        if backend is not None:
            cached = self._keyring_cache.get(name)
            if cached is not None:
                return cached
            stored = _keyring_get(backend, name)
            if stored is not None:
                self._keyring_cache[name] = stored
                return stored
        if self.key_file.exists():
            return _read_key_file(self.key_file)
        if not create:
            return None
        if backend is not None and _keyring_set(backend, name):
            return self.key_for(database_url, create=False)
        return _create_key_file(self.key_file)


def _keyring_get(backend: Any, name: str) -> AuditKey | None:
    try:
        value = backend.get_password(KEYRING_SERVICE, name)
    except Exception:
        log.warning("The OS keyring could not be read; the audit key file is used instead.")
        return None
    if not value:
        return None
    try:
        return AuditKey(bytes.fromhex(value))
    except ValueError as exc:
        raise ConfigError(
            f"The audit key '{name}' in the OS keyring is damaged.",
            hint="Restore it from your key backup; without it the checkpoints cannot be checked.",
        ) from exc


def _keyring_set(backend: Any, name: str) -> bool:
    try:
        backend.set_password(KEYRING_SERVICE, name, secrets.token_bytes(AUDIT_KEY_BYTES).hex())
    except Exception:
        log.warning("The OS keyring refused the audit key; it is kept in the key file instead.")
        return False
    return True


_CONSEQUENCE = "the checkpoints cannot be checked"


def _read_key_file(path: Path) -> AuditKey:
    return AuditKey(read_secret_file(path, AUDIT_KEY_BYTES, "audit key", _CONSEQUENCE))


def _create_key_file(path: Path) -> AuditKey:
    return AuditKey(create_secret_file(path, AUDIT_KEY_BYTES, "audit key", _CONSEQUENCE))


#: Where a key comes from: a store (normal use) or a fixed key (tests, tools).
KeySource = AuditKeyStore | AuditKey

_BOUND_KEYS: WeakKeyDictionary[Engine, KeySource] = WeakKeyDictionary()


def bind_audit_keys(database: Database, key_source: KeySource) -> None:
    """Make every audit event written through ``database`` use ``key_source``.

    Call it where the database is opened from settings; without it the keys dir comes from
    the environment (:func:`environment_keys_dir`), which is the same folder unless the
    settings were built by hand. Bound by engine, weakly: nothing outlives the database.
    """
    _BOUND_KEYS[database.engine] = key_source


def _source_for(engine: Engine) -> KeySource:
    return _BOUND_KEYS.get(engine) or AuditKeyStore(environment_keys_dir())


def _load_key(source: KeySource, url: URL, *, create: bool) -> AuditKey | None:
    if isinstance(source, AuditKey):
        return source
    return source.key_for(url, create=create)


def signing_key_for(session: Session) -> AuditKey:
    """The key to sign checkpoints with in ``session`` (created on first use)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    key = _load_key(_source_for(engine), engine.url, create=True)
    assert key is not None  # create=True always yields a key or raises
    return key


# -- verification -----------------------------------------------------------------------------
def verify(
    database: Database,
    key_source: KeySource | None = None,
    *,
    anchor: ChainAnchor | None = None,
) -> VerificationResult:
    """Verify the whole trail against the key (never creates one); reads only."""
    source = key_source if key_source is not None else _source_for(database.engine)
    key = _load_key(source, database.engine.url, create=False)
    with database.read() as session:
        if database.backend == "postgresql":
            # One snapshot for all batches: appends during the scan must not look like tampering.
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return verify_chain(session, key, anchor=anchor)


# -- viewing ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditFilter:
    """Which events to show or export; every field narrows, None means any.

    ``event_type`` matches exactly, or by prefix when it ends in ``*`` (``case.*``).
    """

    since: datetime | None = None
    until: datetime | None = None
    username: str | None = None
    event_type: str | None = None
    case_uid: str | None = None
    action: AuditAction | None = None
    outcome: AuditOutcome | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InputError(f"The time given for '{name}' has no time zone; give it in UTC.")
        if self.since and self.until and self.since > self.until:
            raise InputError("The start of the time range is after its end.")

    def as_details(self) -> dict[str, Any]:
        """The filter as plain JSON for the audit event that records its use."""
        values: dict[str, Any] = {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "username": self.username,
            "event_type": self.event_type,
            "case_uid": self.case_uid,
            "action": self.action.value if self.action else None,
            "outcome": int(self.outcome) if self.outcome is not None else None,
        }
        return {name: value for name, value in values.items() if value is not None}

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.since is not None:
            query = query.where(AuditEvent.occurred_at >= self.since)
        if self.until is not None:
            query = query.where(AuditEvent.occurred_at <= self.until)
        if self.username is not None:
            query = query.where(AuditEvent.username == self.username)
        if self.event_type is not None:
            if self.event_type.endswith("*"):
                prefix = self.event_type[:-1]
                query = query.where(func.substr(AuditEvent.event_type, 1, len(prefix)) == prefix)
            else:
                query = query.where(AuditEvent.event_type == self.event_type)
        if self.case_uid is not None:
            query = query.where(AuditEvent.case_uid == self.case_uid)
        if self.action is not None:
            query = query.where(AuditEvent.action == self.action)
        if self.outcome is not None:
            query = query.where(AuditEvent.outcome == int(self.outcome))
        return query


@dataclass(frozen=True)
class AuditEntry:
    """One event as plain values (ORM objects stay inside the service)."""

    sequence: int
    event_uid: str
    event_type: str
    action: AuditAction
    occurred_at: datetime
    outcome: AuditOutcome
    user_id: int | None
    username: str | None
    role: str | None
    workstation: str
    patient_pseudonym: str | None
    case_uid: str | None
    details: dict[str, Any]
    hash: str

    @classmethod
    def from_event(cls, event: AuditEvent) -> AuditEntry:
        return cls(
            sequence=event.sequence,
            event_uid=event.event_uid,
            event_type=event.event_type,
            action=AuditAction(event.action),
            occurred_at=event.occurred_at,
            outcome=AuditOutcome(event.outcome),
            user_id=event.user_id,
            username=event.username,
            role=event.role,
            workstation=event.workstation,
            patient_pseudonym=event.patient_pseudonym,
            case_uid=event.case_uid,
            details=dict(event.details),
            hash=event.hash,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "event_uid": self.event_uid,
            "event_type": self.event_type,
            "action": self.action.value,
            "occurred_at": self.occurred_at.isoformat(),
            "outcome": int(self.outcome),
            "user_id": self.user_id,
            "username": self.username,
            "role": self.role,
            "workstation": self.workstation,
            "patient_pseudonym": self.patient_pseudonym,
            "case_uid": self.case_uid,
            "details": self.details,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class AuditPage:
    """One page of matching events, newest first unless asked otherwise."""

    entries: tuple[AuditEntry, ...]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _authorize(
    database: Database, actor: Actor, permission: Permission, event_type: str, action: AuditAction
) -> None:
    try:
        actor.require(permission)
    except AccessDenied as exc:
        record_denied(database, actor, event_type, action, exc.message)
        raise


def show(
    database: Database,
    actor: Actor,
    filters: AuditFilter | None = None,
    *,
    page: int = 1,
    page_size: int = 50,
    newest_first: bool = True,
) -> AuditPage:
    """One page of the trail for ``actor`` (needs AUDIT_VIEW); records one ``audit.view``."""
    filters = filters or AuditFilter()
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InputError(
            f"Pages are numbered from 1 and hold 1 to {MAX_PAGE_SIZE} events "
            f"(asked: page {page} of size {page_size})."
        )
    _authorize(database, actor, Permission.AUDIT_VIEW, "audit.view", AuditAction.READ)
    order = AuditEvent.sequence.desc() if newest_first else AuditEvent.sequence.asc()
    with database.write() as session:
        total = session.scalar(filters.apply(select(func.count()).select_from(AuditEvent))) or 0
        events = session.scalars(
            filters.apply(select(AuditEvent))
            .order_by(order)
            .offset((page - 1) * page_size)
            .limit(page_size)
        ).all()
        entries = tuple(AuditEntry.from_event(event) for event in events)
        record_audit(
            session,
            actor,
            "audit.view",
            AuditAction.READ,
            case_uid=filters.case_uid,
            details={
                "filters": filters.as_details(),
                "page": page,
                "page_size": page_size,
                "returned": len(entries),
            },
        )
    return AuditPage(entries=entries, total=total, page=page, page_size=page_size)


# -- export -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportSummary:
    path: Path
    format: str
    events: int
    sha256: str
    first_sequence: int | None = field(default=None)
    last_sequence: int | None = field(default=None)


def _render(events: Sequence[AuditEvent], export_format: str) -> bytes:
    if export_format == "fhir":
        return fhir_audit_bundle(events, source_id=SOURCE_ID).encode("utf-8")
    return dicom_audit_xml(events, source_id=SOURCE_ID)


def export(
    database: Database,
    actor: Actor,
    export_format: str,
    output: Path,
    filters: AuditFilter | None = None,
    *,
    overwrite: bool = False,
) -> ExportSummary:
    """Write matching events as FHIR R4 JSON or DICOM audit XML (needs AUDIT_EXPORT).

    The ``audit.export`` event and the file appear together: the file is written beside its
    destination and moved into place only after the event has committed.
    """
    filters = filters or AuditFilter()
    if export_format not in EXPORT_FORMATS:
        raise InputError(
            f"The audit export format '{export_format}' is not one of {', '.join(EXPORT_FORMATS)}."
        )
    output = Path(output)
    if output.exists() and not overwrite:
        raise InputError(
            f"The file {output} exists already.", hint="Choose another name or allow overwriting."
        )
    if not output.parent.is_dir():
        raise InputError(f"The folder {output.parent} for the audit export does not exist.")
    _authorize(database, actor, Permission.AUDIT_EXPORT, "audit.export", AuditAction.EXECUTE)
    temporary = output.with_name(f".{output.name}.{uuid.uuid4().hex}.part")
    try:
        with database.write() as session:
            events = session.scalars(
                filters.apply(select(AuditEvent)).order_by(AuditEvent.sequence)
            ).all()
            content = _render(events, export_format)
            digest = hashlib.sha256(content).hexdigest()
            summary = ExportSummary(
                path=output,
                format=export_format,
                events=len(events),
                sha256=digest,
                first_sequence=events[0].sequence if events else None,
                last_sequence=events[-1].sequence if events else None,
            )
            record_audit(
                session,
                actor,
                "audit.export",
                AuditAction.EXECUTE,
                case_uid=filters.case_uid,
                details={
                    "format": export_format,
                    "filters": filters.as_details(),
                    "events": len(events),
                    "first_sequence": summary.first_sequence,
                    "last_sequence": summary.last_sequence,
                    "file_name": output.name,
                    "sha256": digest,
                },
            )
            try:
                temporary.write_bytes(content)
            except OSError as exc:
                raise InputError(
                    f"The audit export cannot be written to {output} ({exc.strerror or exc})."
                ) from exc
        temporary.replace(output)
    finally:
        temporary.unlink(missing_ok=True)
    return summary
