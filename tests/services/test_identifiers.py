"""Patient identifiers are kept only as ciphertext, found again by a keyed hash, and shown in
clear only through an audited read."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import select, text

from clinic_app.config.settings import load_settings
from clinic_app.domain.errors import AccessDenied, ConfigError, InputError
from clinic_app.domain.records import Role
from clinic_app.services.cases import CaseService
from clinic_app.services.identifiers import KEY_FILENAME, PatientIdentifierCipher
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent, Patient
from tests.services.test_cases import make_actor

MRN = "MRN 0012-3456"


@pytest.fixture
def cipher(tmp_path: Path) -> PatientIdentifierCipher:
    return PatientIdentifierCipher.from_settings(load_settings(tmp_path / "data", environ={}))


def test_key_file_is_private_and_outside_the_data_folder(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "data", environ={})
    PatientIdentifierCipher.from_settings(settings)
    key_file = settings.keys_dir / KEY_FILENAME
    assert key_file.stat().st_size == 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.keys_dir.stat().st_mode) == 0o700
    assert settings.data_dir not in key_file.parents


def test_encryption_round_trip_and_lookup(cipher: PatientIdentifierCipher) -> None:
    blob = cipher.encrypt(MRN)
    assert b"0012" not in blob and blob != cipher.encrypt(MRN)  # random nonce
    assert cipher.decrypt(blob) == "MRN0012-3456"
    assert cipher.lookup_hash("mrn0012-3456") == cipher.lookup_hash(" MRN 0012-3456 ")
    assert cipher.lookup_hash(MRN) != cipher.lookup_hash("MRN 0012-3457")
    other = PatientIdentifierCipher(bytes(64))
    with pytest.raises(ConfigError, match="cannot be decrypted with this workstation's key"):
        other.decrypt(blob)
    with pytest.raises(ConfigError, match="damaged"):
        cipher.decrypt(b"\x02" + blob[1:])
    with pytest.raises(InputError, match="empty"):
        cipher.encrypt("   ")


def test_cases_keep_only_ciphertext_and_find_the_patient_again(
    database: Database, tmp_path: Path, cipher: PatientIdentifierCipher
) -> None:
    service = CaseService(database, tmp_path / "inputs", cipher)
    clinician = make_actor(database, "dr_ada", Role.CLINICIAN)
    first = service.create_case(clinician, title="ECG", patient_identifier=MRN)
    second = service.create_case(clinician, title="Biopsy", patient_identifier="mrn0012-3456")
    assert first.patient_pseudonym == second.patient_pseudonym
    with database.read() as session:
        patients = session.scalars(select(Patient)).all()
        dump = " ".join(str(row) for row in session.execute(text("SELECT * FROM patients")).all())
        details = " ".join(str(e.details) for e in session.scalars(select(AuditEvent)))
    assert len(patients) == 1
    assert "0012" not in dump
    assert "0012" not in details and patients[0].identifier_lookup not in details
    if database.backend == "sqlite":
        path = Path(database.engine.url.database or "")
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                assert b"0012-3456" not in file.read_bytes()

    assert service.reveal_identifier(clinician, first.case_uid) == "MRN0012-3456"
    with database.read() as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.sequence.desc())).first()
    assert last is not None and last.event_type == "patient.identifier.read"

    scientist = make_actor(database, "ds_lee", Role.DATA_SCIENTIST)
    with pytest.raises(AccessDenied):
        service.reveal_identifier(scientist, first.case_uid)
    with pytest.raises(InputError, match="registered with another identifier"):
        service.create_case(
            clinician, patient_pseudonym=first.patient_pseudonym, patient_identifier="MRN 999"
        )


def test_without_a_key_identifiers_are_refused(database: Database, tmp_path: Path) -> None:
    service = CaseService(database, tmp_path / "inputs")
    clinician = make_actor(database, "dr_ada", Role.CLINICIAN)
    with pytest.raises(ConfigError, match="no identifier key"):
        service.create_case(clinician, patient_identifier=MRN)
    assert service.reveal_identifier(clinician, service.create_case(clinician).case_uid) is None
