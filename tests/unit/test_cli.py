from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clinic_app import __version__
from clinic_app.cli import CONTRACT_COMMANDS, build_parser, main
from model.bundle import write_metadata


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed entry point as a user would (a real child process)."""
    return subprocess.run(
        [sys.executable, "-m", "clinic_app", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--data-dir" in out
    assert "not a validated medical device" in out
    for command in ["doctor", *CONTRACT_COMMANDS]:
        assert command in out
    assert "_qt-probe" not in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"ClinicFusion {__version__}"


def test_every_command_of_the_interface_contract_is_implemented() -> None:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if a.dest == "command")
    assert set(CONTRACT_COMMANDS) <= set(commands.choices)  # type: ignore[arg-type]


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["frobnicate"])
    assert exited.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_bad_settings_file_is_one_line_with_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "settings.toml").write_text('theme = "dark"\n', encoding="utf-8")
    assert main(["--data-dir", str(tmp_path), "doctor"]) == 78
    err = capsys.readouterr().err
    assert "unknown setting 'theme'" in err
    assert "Traceback" not in err


def test_doctor_on_a_fresh_install_reports_everything_and_passes(data_dir: Path) -> None:
    result = run_cli("--data-dir", str(data_dir), "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"ClinicFusion {__version__} doctor" in out
    assert re.search(rf"\[ OK \] Python\s+{re.escape(platform.python_version())} ", out)
    import torch

    assert re.search(rf"\[ OK \] PyTorch\s+{re.escape(torch.__version__)}, ", out)
    assert "CUDA:" in out and "MPS:" in out
    assert re.search(r"\[ OK \] Qt\s+PySide6 6\.", out) and "platform 'offscreen'" in out
    assert str(data_dir) in out
    assert "Database" in out and "(not created yet)" in out
    assert re.search(r"\[ OK \] Model bundle\s+clinicfusion-demo", out)  # the shipped demo
    assert "trained on COMPOSITE demo cases" in out
    assert "Result: no problem found" in out
    assert not data_dir.exists(), "doctor must not create or change anything"


def test_doctor_json_and_a_verified_bundle(data_dir: Path) -> None:
    bundle = data_dir / "models" / "tiny-fusion"
    bundle.mkdir(parents=True)
    (bundle / "model.safetensors").write_bytes(b"weights" * 10)
    info = write_metadata(bundle, {"name": "tiny-fusion", "version": "0.0.1"})
    result = run_cli("--data-dir", str(data_dir), "doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    checks = {check["name"]: check for check in report["checks"]}
    assert set(checks) == {
        "ClinicFusion",
        "Python",
        "PyTorch",
        "Qt",
        "Data folder",
        "Database",
        "Model bundle",
    }
    assert checks["PyTorch"]["facts"]["build"] in {"CPU"} or checks["PyTorch"]["facts"][
        "build"
    ].startswith(("CUDA", "ROCm"))
    assert checks["Qt"]["facts"]["platform"] == "offscreen"
    assert checks["Model bundle"]["status"] == "ok"
    assert checks["Model bundle"]["facts"]["sha256"] == info.sha256
    assert checks["Model bundle"]["facts"]["version"] == "0.0.1"


def test_doctor_exits_1_for_a_tampered_bundle(data_dir: Path) -> None:
    bundle = data_dir / "models" / "tiny-fusion"
    bundle.mkdir(parents=True)
    (bundle / "model.safetensors").write_bytes(b"weights" * 10)
    write_metadata(bundle, {"name": "tiny-fusion", "version": "0.0.1"})
    (bundle / "model.safetensors").write_bytes(b"evil" * 10)
    result = run_cli("--data-dir", str(data_dir), "doctor")
    assert result.returncode == 1
    assert "[FAIL] Model bundle" in result.stdout
    assert "model.safetensors does not match its recorded sha256" in result.stdout
    assert "problem(s) found" in result.stdout


def test_doctor_exits_1_when_the_named_bundle_is_missing(data_dir: Path) -> None:
    result = run_cli(
        "--data-dir", str(data_dir), "doctor", env={"CLINICFUSION_MODEL_BUNDLE": "/no/bundle"}
    )
    assert result.returncode == 1
    assert "[FAIL] Model bundle" in result.stdout and "/no/bundle does not exist" in result.stdout


def test_doctor_exits_1_for_a_file_that_is_not_a_database(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "clinicfusion.sqlite3").write_bytes(b"this is not sqlite" * 100)
    result = run_cli("--data-dir", str(data_dir), "doctor")
    assert result.returncode == 1
    assert "[FAIL] Database" in result.stdout
    assert "cannot be opened" in result.stdout and "not a ClinicFusion database" in result.stdout
    assert (data_dir / "clinicfusion.sqlite3").read_bytes() == b"this is not sqlite" * 100


def test_doctor_reads_the_schema_revision_of_an_existing_database(data_dir: Path) -> None:
    import sqlite3

    data_dir.mkdir()
    with sqlite3.connect(data_dir / "clinicfusion.sqlite3") as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('0001_cases')")
    connection.close()
    result = run_cli("--data-dir", str(data_dir), "doctor", "--json")
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["Database"]["status"] == "ok"
    assert checks["Database"]["facts"]["schema_revision"] == "0001_cases"


def test_doctor_exits_1_when_qt_cannot_start(data_dir: Path) -> None:
    result = run_cli(
        "--data-dir", str(data_dir), "doctor", env={"QT_QPA_PLATFORM": "no-such-platform"}
    )
    assert result.returncode == 1
    assert "[FAIL] Qt" in result.stdout
    assert "the GUI cannot start" in result.stdout
    assert "no-such-platform" in result.stdout
    assert "fix: On Linux install Qt's system libraries" in result.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("clinic-app")
    if not script.exists():
        pytest.skip("the clinic-app script is not beside this interpreter")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"ClinicFusion {__version__}"


def test_doctor_exits_1_when_the_data_folder_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = run_cli("--data-dir", str(blocker / "data"), "doctor")
    assert result.returncode == 1
    assert "[FAIL] Data folder" in result.stdout
    assert f"{blocker} is not a writable folder" in result.stdout


def test_gui_with_an_unusable_data_folder_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    assert main(["--data-dir", str(blocker / "data")]) == 78
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"clinic-app: The data folder {blocker / 'data'} cannot be created")
    assert "--data-dir" in err and "\n" not in err


def test_doctor_opens_an_encrypted_database_with_the_passphrase_and_warns_without(
    data_dir: Path,
) -> None:
    from clinic_app.config.settings import load_settings
    from clinic_app.services.database import open_database
    from clinic_app.storage.migrate import head_revision

    data_dir.mkdir()
    (data_dir / "settings.toml").write_text('encryption = "sqlcipher"\n', encoding="utf-8")
    passphrase = {"CLINICFUSION_DB_PASSPHRASE": "correct horse battery staple"}
    settings = load_settings(data_dir, environ=passphrase)
    import os as _os

    _os.environ.update(passphrase)
    try:
        open_database(settings).dispose()
    finally:
        del _os.environ["CLINICFUSION_DB_PASSPHRASE"]

    result = run_cli("--data-dir", str(data_dir), "doctor", "--json", env=passphrase)
    database = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["Database"]
    assert database["status"] == "ok", database
    assert "encrypted with SQLCipher" in database["detail"]
    assert database["facts"]["schema_revision"] == head_revision()

    result = run_cli("--data-dir", str(data_dir), "doctor", "--json")
    database = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["Database"]
    assert database["status"] == "warn"
    assert "no key available here" in database["detail"]


def test_output_cut_short_by_the_reader_is_not_an_error(data_dir: Path) -> None:
    """`clinic-app doctor | head -1`: the reader is gone before we write; no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "clinic_app", "--data-dir", str(data_dir), "doctor"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader went away
    stderr = process.stderr.read()
    assert process.wait(timeout=180) == 141
    assert "unexpected error" not in stderr
    assert "Traceback" not in stderr
