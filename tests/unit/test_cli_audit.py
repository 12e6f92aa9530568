"""`clinic-app audit verify | show | export`: exit codes, messages and files (SQLite)."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from contextlib import closing
from pathlib import Path

import pytest

from clinic_app.cli import main


@pytest.fixture
def run(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):  # type: ignore[no-untyped-def]
    """Run `clinic-app --data-dir DIR ARGS...`; return (exit status, stdout, stderr)."""
    monkeypatch.setenv("CLINICFUSION_KEYS_DIR", str(tmp_path / "keys"))

    def _run(*args: str) -> tuple[int, str, str]:
        status = main(["--data-dir", str(data_dir), *args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return _run


def _database(data_dir: Path) -> Path:
    return data_dir / "clinicfusion.sqlite3"


def test_verify_an_empty_trail(run) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = run("audit", "verify")
    assert status == 0
    assert "empty and consistent" in out


def test_show_is_audited_and_the_trail_verifies(run) -> None:  # type: ignore[no-untyped-def]
    assert run("audit", "show")[0] == 0
    status, out, _ = run("audit", "show", "--json", "--event-type", "audit.view")
    assert status == 0
    document = json.loads(out)
    assert document["total"] == 1
    (event,) = document["events"]
    assert (event["event_type"], event["action"], event["username"]) == (
        "audit.view",
        "R",
        "system",
    )

    status, out, _ = run("audit", "verify")
    assert status == 0
    assert "verifies: 2 events" in out
    anchor = out.strip().splitlines()[-1].split()[-1]
    assert anchor.startswith("2:")
    assert run("audit", "verify", "--anchor", anchor)[0] == 0

    status, out, _ = run("audit", "show", "--user", "nobody")
    assert status == 0 and out.startswith("0 matching events")


def test_verify_names_the_first_bad_event(run, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        assert run("audit", "show")[0] == 0
    with closing(sqlite3.connect(_database(data_dir))) as connection, connection:
        connection.execute("DROP TRIGGER trg_audit_events_no_update")
        connection.execute("UPDATE audit_events SET workstation = 'elsewhere' WHERE sequence = 2")
    status, out, err = run("audit", "verify")
    assert status == 1
    assert out == ""
    assert "fails verification at event 2" in err
    assert "changed after it was written" in err

    status, out, _ = run("audit", "verify", "--json")
    assert status == 1
    result = json.loads(out)
    assert (result["ok"], result["first_bad_sequence"]) == (False, 2)


def test_verify_with_an_anchor_detects_a_rollback(run, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("audit", "show")[0] == 0
    database = _database(data_dir)
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    snapshot = database.read_bytes()  # an older copy an attacker could restore
    assert run("audit", "show")[0] == 0
    anchor = run("audit", "verify")[1].strip().splitlines()[-1].split()[-1]
    for sidecar in ("-wal", "-shm"):  # restore the whole older copy, as an attacker would
        database.with_name(database.name + sidecar).unlink(missing_ok=True)
    database.write_bytes(snapshot)
    assert run("audit", "verify")[0] == 0  # the older copy is consistent on its own
    status, _, err = run("audit", "verify", "--anchor", anchor)
    assert status == 1 and "anchor" in err

    status, _, err = run("audit", "verify", "--anchor", "12:nothex")
    assert status == 65 and "SEQ:HASH" in err


def test_export_fhir_and_dicom(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("audit", "show")[0] == 0
    fhir_file = tmp_path / "audit.json"
    status, out, _ = run("audit", "export", "--format", "fhir", "--output", str(fhir_file))
    assert status == 0 and "Wrote 1 events as FHIR R4 AuditEvent Bundle" in out
    bundle = json.loads(fhir_file.read_text(encoding="utf-8"))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert bundle["entry"][0]["resource"]["type"]["code"] == "110101"  # Audit Log Used

    dicom_file = tmp_path / "audit.xml"
    status, out, _ = run(
        "audit", "export", "--format", "dicom", "--output", str(dicom_file), "--action", "E"
    )
    assert status == 0
    root = ET.parse(dicom_file).getroot()
    messages = root.findall("AuditMessage")
    assert len(messages) == 1  # only the FHIR export so far was an E
    assert messages[0].find("EventIdentification/EventID").get("csd-code") == "110106"  # type: ignore[union-attr]

    status, _, err = run("audit", "export", "--format", "dicom", "--output", str(dicom_file))
    assert status == 65 and "exists already" in err
    assert (
        run("audit", "export", "--format", "dicom", "--output", str(dicom_file), "--force")[0] == 0
    )
    status, out, _ = run("audit", "verify")
    assert status == 0 and "verifies: 4 events" in out


def test_bad_arguments(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    status, _, err = run("audit", "show", "--since", "yesterday")
    assert status == 65 and "--since 'yesterday' is not a date or time" in err
    status, _, err = run("audit", "show", "--since", "2025-02-01", "--until", "2025-01-01")
    assert status == 65 and "after its end" in err
    with pytest.raises(SystemExit) as exit_info:
        run("audit", "export", "--output", str(tmp_path / "x.json"))
    assert exit_info.value.code == 2
    status, _, err = run("audit", "show", "--page", "0")
    assert status == 65
