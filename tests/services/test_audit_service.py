"""Audit use cases on SQLite and PostgreSQL: the key outside the database, verification,
viewing and export (both audited, exactly once), permissions, FHIR and DICOM output."""

from __future__ import annotations

import json
import os
import stat
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from sqlalchemy import func, select

from clinic_app.domain.errors import AccessDenied, ConfigError, InputError
from clinic_app.domain.records import AuditAction, AuditOutcome, Role
from clinic_app.services.audit import (
    AUDIT_KEY_FILENAME,
    AuditFilter,
    AuditKeyStore,
    bind_audit_keys,
    database_identity,
    export,
    show,
    verify,
)
from clinic_app.services.context import Actor, record_audit
from clinic_app.storage.audit import AuditKey
from clinic_app.storage.audit_export import DICOM_EVENT_IDS, dicom_event_codes
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditCheckpoint, AuditEvent

ADMIN = Actor(user_id=1, username="admin_ann", role=Role.ADMIN, workstation="ws-admin")
REVIEWER = Actor(user_id=2, username="rev_rui", role=Role.REVIEWER, workstation="ws-2")
CLINICIAN = Actor(user_id=3, username="dr_ada", role=Role.CLINICIAN, workstation="ws-3")


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def store(database: Database, keys_dir: Path) -> AuditKeyStore:
    key_store = AuditKeyStore(keys_dir, use_keyring=False)
    bind_audit_keys(database, key_store)
    return key_store


def _events(database: Database) -> list[AuditEvent]:
    with database.read() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)))


def _checkpoints(database: Database) -> int:
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0


def _seed(database: Database) -> None:
    """A small clinical day: reads, an update, a refused attempt, a login."""
    with database.write() as session:
        record_audit(
            session,
            CLINICIAN,
            "case.read",
            AuditAction.READ,
            patient_pseudonym="P-7",
            case_uid="case-1",
        )
        record_audit(session, CLINICIAN, "case.decide", AuditAction.UPDATE, case_uid="case-1")
        record_audit(session, REVIEWER, "case.read", AuditAction.READ, case_uid="case-2")
        record_audit(
            session,
            CLINICIAN,
            "case.delete",
            AuditAction.DELETE,
            outcome=AuditOutcome.MINOR_FAILURE,
            case_uid="case-2",
            details={"refused": "dr_ada (clinician) may not delete cases."},
        )
        record_audit(session, ADMIN, "user.login", AuditAction.EXECUTE)


# -- the key ----------------------------------------------------------------------------------
def test_record_audit_signs_each_event_with_a_key_file_kept_outside(
    database: Database, store: AuditKeyStore, keys_dir: Path
) -> None:
    _seed(database)
    assert len(_events(database)) == 5
    assert _checkpoints(database) == 5
    key_file = keys_dir / AUDIT_KEY_FILENAME
    assert len(key_file.read_bytes()) == 32
    if os.name == "posix":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    result = verify(database)
    assert result.ok, result.reason
    assert result.key_id == AuditKey(key_file.read_bytes()).key_id


def test_without_a_binding_the_keys_dir_comes_from_the_environment(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFUSION_KEYS_DIR", str(tmp_path / "env-keys"))
    _seed(database)
    assert (tmp_path / "env-keys" / AUDIT_KEY_FILENAME).is_file()
    assert verify(database).ok
    other = AuditKeyStore(tmp_path / "elsewhere", use_keyring=False)
    wrong = verify(database, other)  # a store without a key: nothing is created by verify
    assert not wrong.ok and "audit key was not found" in (wrong.reason or "")
    assert not (tmp_path / "elsewhere").exists()


def test_a_lost_or_replaced_key_fails_verification(
    database: Database, store: AuditKeyStore, keys_dir: Path
) -> None:
    _seed(database)
    (keys_dir / AUDIT_KEY_FILENAME).unlink()
    assert not verify(database).ok
    replaced = verify(database, AuditKey(os.urandom(32)))
    assert not replaced.ok and replaced.first_bad_sequence == 5


def test_key_files_that_are_open_to_others_or_damaged_are_refused(keys_dir: Path) -> None:
    key_store = AuditKeyStore(keys_dir, use_keyring=False)
    assert key_store.key_for("sqlite:///x.db", create=False) is None
    key = key_store.key_for("sqlite:///x.db")
    assert key is not None and key == key_store.key_for("sqlite:///other.db")
    key_file = keys_dir / AUDIT_KEY_FILENAME
    if os.name == "posix":
        key_file.chmod(0o644)
        with pytest.raises(ConfigError, match="chmod 600"):
            key_store.key_for("sqlite:///x.db")
        key_file.chmod(0o600)
    key_file.write_bytes(b"short")
    with pytest.raises(ConfigError, match="damaged"):
        key_store.key_for("sqlite:///x.db")


class _MemoryKeyring(KeyringBackend):
    """A real keyring backend that keeps its secrets in memory (this machine has no keyring)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.secrets[(service, username)]


# keyring registers every backend class it sees and would pick this one (priority 1) for the
# whole test session on its first lookup; it is only for the test that installs it by hand.
KeyringBackend._classes.discard(_MemoryKeyring)  # type: ignore[attr-defined]


def test_the_os_keyring_holds_the_key_when_one_is_usable(keys_dir: Path, tmp_path: Path) -> None:
    previous = keyring.get_keyring()
    memory = _MemoryKeyring()
    keyring.set_keyring(memory)
    try:
        url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
        key = AuditKeyStore(keys_dir).key_for(url)
        name = f"audit-hmac:{database_identity(url)}"
        assert bytes.fromhex(memory.secrets[("ClinicFusion", name)]) == key.secret  # type: ignore[union-attr]
        assert not (keys_dir / AUDIT_KEY_FILENAME).exists()
        assert AuditKeyStore(keys_dir).key_for(url, create=False) == key
    finally:
        keyring.set_keyring(previous)


def test_database_identity_hides_the_password() -> None:
    identity = database_identity("postgresql+psycopg://app:s3cret@db.example:5432/clinic")
    assert "s3cret" not in identity and "db.example:5432/clinic" in identity
    assert database_identity("sqlite:///relative.db").startswith("sqlite:////")


# -- viewing ----------------------------------------------------------------------------------
def test_show_filters_pages_and_records_one_view(database: Database, store: AuditKeyStore) -> None:
    _seed(database)
    page = show(database, ADMIN, AuditFilter(username="dr_ada"), page_size=2)
    assert (page.total, page.pages, len(page.entries)) == (3, 2, 2)
    assert [entry.sequence for entry in page.entries] == [4, 2]  # newest first
    second = show(database, ADMIN, AuditFilter(username="dr_ada"), page=2, page_size=2)
    assert [entry.sequence for entry in second.entries] == [1]

    assert show(database, ADMIN, AuditFilter(case_uid="case-2")).total == 2
    assert show(database, ADMIN, AuditFilter(action=AuditAction.UPDATE)).total == 1
    refused = show(database, ADMIN, AuditFilter(outcome=AuditOutcome.MINOR_FAILURE))
    assert [entry.event_type for entry in refused.entries] == ["case.delete"]
    assert show(database, ADMIN, AuditFilter(event_type="case.*")).total == 4
    assert show(database, ADMIN, AuditFilter(event_type="case.read")).total == 2

    before = len(_events(database))
    now = datetime.now(UTC)
    recent = show(database, ADMIN, AuditFilter(since=now - timedelta(hours=1), until=now))
    assert recent.total == before
    assert show(database, ADMIN, AuditFilter(until=now - timedelta(days=1))).total == 0

    views = [event for event in _events(database) if event.event_type == "audit.view"]
    assert len(views) == 9  # exactly one per call above
    last = views[-1]
    assert (last.action, last.username, last.outcome) == (AuditAction.READ, "admin_ann", 0)
    assert last.details["filters"] == {"until": (now - timedelta(days=1)).isoformat()}
    assert verify(database).ok


def test_show_needs_audit_view_and_a_refusal_is_audited(
    database: Database, store: AuditKeyStore
) -> None:
    with pytest.raises(AccessDenied, match="view the audit trail"):
        show(database, CLINICIAN)
    events = _events(database)
    assert [(e.event_type, e.outcome) for e in events] == [("audit.view", 4)]
    assert show(database, REVIEWER).total == 1  # reviewers may look


def test_bad_pages_and_times_are_refused(database: Database, store: AuditKeyStore) -> None:
    with pytest.raises(InputError, match="numbered from 1"):
        show(database, ADMIN, page=0)
    with pytest.raises(InputError, match="time zone"):
        AuditFilter(since=datetime(2025, 1, 1))
    with pytest.raises(InputError, match="after its end"):
        AuditFilter(since=datetime(2025, 2, 1, tzinfo=UTC), until=datetime(2025, 1, 1, tzinfo=UTC))
    assert _events(database) == []


# -- export -----------------------------------------------------------------------------------
def _export_event(database: Database) -> AuditEvent:
    exports = [event for event in _events(database) if event.event_type == "audit.export"]
    assert len(exports) == 1
    return exports[0]


def test_fhir_export_is_a_valid_r4_bundle_and_is_audited(
    database: Database, store: AuditKeyStore, tmp_path: Path
) -> None:
    from fhir.resources.R4B.bundle import Bundle

    _seed(database)
    output = tmp_path / "audit.json"
    summary = export(database, ADMIN, "fhir", output, AuditFilter(event_type="case.*"))
    assert (summary.events, summary.first_sequence, summary.last_sequence) == (4, 1, 4)

    document = json.loads(output.read_text(encoding="utf-8"))
    bundle = Bundle.model_validate(document)  # the R4 models accept it
    assert bundle.type == "collection" and len(bundle.entry) == 4
    first = document["entry"][0]["resource"]
    assert first["resourceType"] == "AuditEvent"
    assert first["type"]["code"] == "110110"  # Patient Record
    assert (first["action"], first["outcome"]) == ("R", "0")
    assert first["recorded"].endswith("Z")
    agent = first["agent"][0]
    assert agent["who"]["identifier"]["value"] == "dr_ada"
    assert agent["network"] == {"address": "ws-3", "type": "1"}
    whats = {e["what"].get("identifier", {}).get("value") for e in first["entity"]}
    assert {"P-7", "case-1"} <= whats
    refused = document["entry"][3]["resource"]
    assert (refused["outcome"], refused["action"]) == ("4", "D")
    assert "may not delete" in refused["outcomeDesc"]

    event = _export_event(database)
    assert (event.action, event.username) == (AuditAction.EXECUTE, "admin_ann")
    assert event.details["sha256"] == summary.sha256
    assert event.details["events"] == 4 and event.details["format"] == "fhir"
    assert verify(database).ok


def test_dicom_export_has_the_ps3_15_structure(
    database: Database, store: AuditKeyStore, tmp_path: Path
) -> None:
    _seed(database)
    output = tmp_path / "audit.xml"
    summary = export(database, ADMIN, "dicom", output)
    root = ET.parse(output).getroot()
    messages = root.findall("AuditMessage")
    assert root.tag == "AuditMessages" and len(messages) == summary.events == 5
    for message in messages:
        identification = message.find("EventIdentification")
        assert identification is not None
        assert identification.get("EventActionCode") in {"C", "R", "U", "D", "E"}
        assert identification.get("EventOutcomeIndicator") in {"0", "4", "8", "12"}
        assert datetime.fromisoformat(identification.get("EventDateTime", "")).tzinfo is not None
        event_id = identification.find("EventID")
        assert event_id is not None and event_id.get("codeSystemName") == "DCM"
        participants = message.findall("ActiveParticipant")
        assert any(p.get("UserIsRequestor") == "true" for p in participants)
        assert all(p.get("UserID") and p.get("NetworkAccessPointID") for p in participants)
        source = message.find("AuditSourceIdentification")
        assert source is not None and source.get("AuditSourceID")
    first = messages[0]
    assert first.find("EventIdentification/EventID").get("csd-code") == "110110"  # type: ignore[union-attr]
    objects = first.findall("ParticipantObjectIdentification")
    assert [
        (o.get("ParticipantObjectID"), o.get("ParticipantObjectTypeCodeRole")) for o in objects
    ] == [
        ("P-7", "1"),
        ("case-1", "3"),
    ]
    login = messages[4].find("EventIdentification")
    assert login is not None
    assert login.find("EventID").get("csd-code") == "110114"  # type: ignore[union-attr]
    codes = [code.get("csd-code") for code in login.findall("EventTypeCode")]
    assert "110122" in codes  # Login
    assert _export_event(database).details["format"] == "dicom"


def test_dicom_event_codes_cover_the_app_event_types() -> None:
    assert dicom_event_codes("user.login")[0].code == "110114"
    assert dicom_event_codes("audit.view")[0].code == "110101"
    assert dicom_event_codes("audit.export")[0].code == "110106"
    assert dicom_event_codes("report.export")[0].code == "110106"
    assert dicom_event_codes("case.list")[0].code == "110112"
    assert dicom_event_codes("case.anything")[0].code == "110110"
    assert dicom_event_codes("app.start")[0].code == "110100"
    assert dicom_event_codes("something.new")[0].code == "110100"
    assert all(code.code.isdigit() for code, _ in DICOM_EVENT_IDS.values())


def test_export_needs_audit_export_and_writes_nothing_when_refused(
    database: Database, store: AuditKeyStore, tmp_path: Path
) -> None:
    output = tmp_path / "audit.json"
    with pytest.raises(AccessDenied, match="export the audit trail"):
        export(database, REVIEWER, "fhir", output)
    assert not output.exists()
    assert [(e.event_type, e.outcome) for e in _events(database)] == [("audit.export", 4)]
    assert list(tmp_path.glob(".audit.json*")) == []


def test_export_refuses_an_existing_file_and_a_bad_format(
    database: Database, store: AuditKeyStore, tmp_path: Path
) -> None:
    output = tmp_path / "audit.xml"
    output.write_text("keep me")
    with pytest.raises(InputError, match="exists already"):
        export(database, ADMIN, "dicom", output)
    with pytest.raises(InputError, match="not one of"):
        export(database, ADMIN, "csv", tmp_path / "a.csv")
    assert output.read_text() == "keep me"
    assert _events(database) == []
    summary = export(database, ADMIN, "dicom", output, overwrite=True)
    assert summary.events == 0 and ET.parse(output).getroot().get("count") == "0"


def test_an_empty_fhir_export_is_still_a_valid_bundle(
    database: Database, store: AuditKeyStore, tmp_path: Path
) -> None:
    from fhir.resources.R4B.bundle import Bundle

    output = tmp_path / "empty.json"
    export(database, ADMIN, "fhir", output)
    document: dict[str, Any] = json.loads(output.read_text())
    assert Bundle.model_validate(document).entry is None
