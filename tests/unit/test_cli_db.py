"""`clinic-app db upgrade|check|backup|encrypt`: exit statuses and what a person reads."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clinic_app.cli import main
from clinic_app.config.settings import load_settings
from clinic_app.services.database import PG_DUMP_SENTENCE, KeySources, open_database
from clinic_app.storage.migrate import head_revision
from clinic_app.storage.orm import Patient

HEAD = head_revision()


@pytest.fixture(autouse=True)
def _no_os_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch a developer's real keyring: keyring's `fail` back end, as on CI."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")


def cli(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), "db", *args])


def test_db_help_names_the_actions_and_pg_dump(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["db", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for action in ("upgrade", "check", "backup", "encrypt", "pg_dump"):
        assert action in out


def test_upgrade_check_and_backup(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database_file = data_dir / "clinicfusion.sqlite3"
    assert cli(data_dir, "upgrade") == 0
    assert capsys.readouterr().out == (
        f"Upgraded the case database {database_file} from schema revision none (empty) to {HEAD}.\n"
    )
    assert cli(data_dir, "upgrade") == 0
    assert capsys.readouterr().out == (
        f"The case database {database_file} is already at the newest schema revision {HEAD}.\n"
    )

    assert cli(data_dir, "check") == 0
    out = capsys.readouterr().out
    assert f"Schema revision: {HEAD} (newest {HEAD})" in out
    assert "OK: integrity, foreign keys, WAL journal, schema revision and schema checked" in out

    assert cli(data_dir, "backup") == 0
    out = capsys.readouterr().out
    (backup,) = (data_dir / "backups").iterdir()
    assert re.fullmatch(r"clinicfusion-\d{8}T\d{6}Z\.sqlite3", backup.name)
    assert out.startswith(f"Backed up the case database to {backup}: ")
    assert "verified by SQLite's integrity check" in out

    target = data_dir.parent / "named-backup.sqlite3"
    assert cli(data_dir, "backup", "--output", str(target)) == 0
    assert target.is_file()
    assert cli(data_dir, "backup", "--output", str(target)) == 74
    assert "already exists; it was left unchanged" in capsys.readouterr().err


def test_upgrade_and_check_on_each_back_end(
    data_dir: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLINICFUSION_DATABASE_URL", database_url)
    assert cli(data_dir, "upgrade") == 0
    assert f"to {HEAD}." in capsys.readouterr().out
    assert cli(data_dir, "check", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["schema_revision"] == report["head_revision"] == HEAD
    assert report["backend"] == database_url.split(":")[0].split("+")[0]
    assert report["problems"] == []


def test_check_exits_1_and_says_why_for_a_damaged_file(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = open_database(load_settings(data_dir, environ={}))
    with database.write() as session:
        session.add_all(Patient(pseudonym=f"P-{n:05d}", sex="x" * 16) for n in range(3000))
    database.dispose()
    path = data_dir / "clinicfusion.sqlite3"
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek((size // 4096 // 2) * 4096)
        handle.write(random.Random(3).randbytes(4096))
    assert cli(data_dir, "check") == 1
    out = capsys.readouterr().out
    assert "FAILED: " in out
    assert "SQLite's integrity check" in out


def test_check_of_a_missing_database_exits_1(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(data_dir, "check") == 1
    out = capsys.readouterr().out
    assert f"There is no case database at {data_dir / 'clinicfusion.sqlite3'}" in out
    assert "Schema revision: none" in out


def test_backup_on_postgresql_exits_2_with_the_pg_dump_sentence(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLINICFUSION_DATABASE_URL", "postgresql+psycopg://clinic@db.invalid/x")
    assert cli(data_dir, "backup") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"clinic-app: {PG_DUMP_SENTENCE}\n"
    assert "pg_dump is the tool" in captured.err


def test_encrypted_database_without_a_key_exits_78(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLINICFUSION_DB_ENCRYPTION", "sqlcipher")
    assert cli(data_dir, "upgrade") == 78
    err = capsys.readouterr().err
    assert "needs an encryption key and none was found" in err
    assert "CLINICFUSION_DB_PASSPHRASE" in err


def test_encrypt_then_use_the_copy(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(data_dir, "upgrade") == 0
    target = data_dir / "encrypted.sqlite3"
    monkeypatch.setenv("CLINICFUSION_DB_PASSPHRASE", "a long passphrase")
    assert cli(data_dir, "encrypt", "--output", str(target)) == 0
    out = capsys.readouterr().out
    assert f"Wrote an encrypted copy of the case database to {target}" in out
    assert 'encryption = "sqlcipher"' in out
    monkeypatch.setenv("CLINICFUSION_DB_ENCRYPTION", "sqlcipher")
    monkeypatch.setenv("CLINICFUSION_DATABASE_URL", f"sqlite:///{target}")
    assert cli(data_dir, "check") == 0
    assert cli(data_dir, "backup") == 0
    assert ", encrypted with the same key;" in capsys.readouterr().out


def test_wrong_passphrase_is_one_line_on_stderr(data_dir: Path) -> None:
    """A real child process: SQLCipher's own stderr log must not add lines to the message."""
    settings = load_settings(data_dir, environ={"CLINICFUSION_DB_ENCRYPTION": "sqlcipher"})
    open_database(
        settings, key_sources=KeySources(environ={"CLINICFUSION_DB_PASSPHRASE": "right"})
    ).dispose()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLINICFUSION_")},
        "CLINICFUSION_DB_ENCRYPTION": "sqlcipher",
        "CLINICFUSION_DB_PASSPHRASE": "wrong",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "clinic_app", "--data-dir", str(data_dir), "db", "backup"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert completed.returncode == 74
    assert completed.stdout == ""
    assert completed.stderr.count("\n") == 1
    assert completed.stderr.startswith(
        f"clinic-app: The case database {settings.database_path} cannot be opened: "
        "wrong passphrase or key"
    )
    assert not (data_dir / "backups").exists()
