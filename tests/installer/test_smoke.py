"""`clinic-app --smoke`: the installation check runs in its own temporary folder, never in the
user's data, and says which step failed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinic_app.services.smoke import SmokeCheckFailed, run_smoke, smoke_settings


def test_smoke_settings_ignore_the_users_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINICFUSION_DATA_DIR", str(tmp_path / "users-data"))
    monkeypatch.setenv("CLINICFUSION_DATABASE_URL", "sqlite:////nowhere/else.sqlite3")
    monkeypatch.setenv("CLINICFUSION_PORTABLE", "1")
    settings = smoke_settings(tmp_path / "smoke")
    assert settings.data_dir == (tmp_path / "smoke" / "data").resolve()
    assert settings.keys_dir == (tmp_path / "smoke" / "keys").resolve()
    assert settings.database_path == settings.data_dir / "clinicfusion.sqlite3"
    assert not settings.portable


def test_a_failing_step_is_named(tmp_path: Path) -> None:
    def broken_window(*_args: object) -> str:
        raise RuntimeError("no display plugin")

    with pytest.raises(SmokeCheckFailed) as failure:
        run_smoke(tmp_path, window_check=broken_window)
    assert "'main window'" in str(failure.value) and "no display plugin" in str(failure.value)
    assert failure.value.exit_code == 1


@pytest.mark.slow
def test_smoke_command_passes_in_the_python_install(tmp_path: Path) -> None:
    env = {**os.environ, "CLINICFUSION_DATA_DIR": str(tmp_path / "must-stay-empty")}
    result = subprocess.run(
        [sys.executable, "-m", "clinic_app", "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Smoke check passed" in result.stdout
    for step in ("database", "demo case", "main window", "analysis", "PDF report", "audit"):
        assert f"ok  {step}" in result.stdout
    assert not (tmp_path / "must-stay-empty").exists()
