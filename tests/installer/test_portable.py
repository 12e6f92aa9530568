"""Portable mode: data and keys beside the executable, switched on by a file, a flag or a
variable; an explicit data folder still wins; the keys never go inside the data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinic_app.cli import build_parser, main
from clinic_app.config.settings import (
    ENV_DATA_DIR,
    ENV_KEYS_DIR,
    ENV_PORTABLE,
    PORTABLE_DATA_FOLDER,
    PORTABLE_KEYS_FOLDER,
    default_data_dir,
    default_keys_dir,
    is_portable,
    load_settings,
    portable_marker,
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """Stands for the folder of a frozen bundle's executable (e.g. on a USB stick)."""
    folder = tmp_path / "ClinicFusion"
    folder.mkdir()
    return folder


def test_not_portable_without_file_flag_or_variable(app_dir: Path) -> None:
    settings = load_settings(environ={}, app_dir=app_dir)
    assert not settings.portable
    assert settings.data_dir == default_data_dir().resolve()
    assert settings.keys_dir == default_keys_dir().resolve()


@pytest.mark.parametrize("marker", ["portable.flag", "portable.flag.txt"])
def test_marker_file_beside_the_executable_switches_portable_on(app_dir: Path, marker: str) -> None:
    (app_dir / marker).write_text("", encoding="utf-8")
    assert portable_marker(app_dir) == app_dir / marker
    settings = load_settings(environ={}, app_dir=app_dir)
    assert settings.portable
    assert settings.data_dir == (app_dir / PORTABLE_DATA_FOLDER).resolve()
    assert settings.keys_dir == (app_dir / PORTABLE_KEYS_FOLDER).resolve()
    assert settings.database_path == settings.data_dir / "clinicfusion.sqlite3"


def test_keys_stay_outside_the_portable_data_folder(app_dir: Path) -> None:
    settings = load_settings(environ={}, app_dir=app_dir, portable=True)
    assert settings.keys_dir.parent == settings.data_dir.parent
    assert not settings.keys_dir.is_relative_to(settings.data_dir)


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("yes", True), ("0", False), ("", False)]
)
def test_variable_switches_portable_on(app_dir: Path, value: str, expected: bool) -> None:
    assert is_portable(environ={ENV_PORTABLE: value}, app_dir=app_dir) is expected
    settings = load_settings(environ={ENV_PORTABLE: value}, app_dir=app_dir)
    assert settings.portable is expected


def test_explicit_folders_win_over_portable_defaults(app_dir: Path, tmp_path: Path) -> None:
    (app_dir / "portable.flag").touch()
    chosen = load_settings(tmp_path / "elsewhere", environ={}, app_dir=app_dir)
    assert chosen.portable and chosen.data_dir == (tmp_path / "elsewhere").resolve()
    assert chosen.keys_dir == (app_dir / PORTABLE_KEYS_FOLDER).resolve()
    env = {ENV_DATA_DIR: str(tmp_path / "d"), ENV_KEYS_DIR: str(tmp_path / "k")}
    from_env = load_settings(environ=env, app_dir=app_dir)
    assert from_env.data_dir == (tmp_path / "d").resolve()
    assert from_env.keys_dir == (tmp_path / "k").resolve()


def test_cli_has_portable_and_smoke_flags() -> None:
    args = build_parser().parse_args(["--portable", "doctor"])
    assert args.portable and args.command == "doctor"
    assert build_parser().parse_args(["--smoke"]).smoke


def test_smoke_flag_refuses_a_second_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--smoke", "doctor"])
    assert stop.value.code == 2
    assert "--smoke runs on its own" in capsys.readouterr().err


def test_portable_cli_keeps_database_and_keys_beside_the_executable(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import os

    import clinic_app.config.settings as settings_module

    monkeypatch.setattr(settings_module, "application_dir", lambda: app_dir)
    monkeypatch.setattr("sys.stdin", io.StringIO("Correct-horse-battery-9\n"))
    saved = {name: os.environ.get(name) for name in (ENV_DATA_DIR, ENV_KEYS_DIR)}
    try:
        status = main(
            ["--portable", "users", "add", "admin-1", "--role", "admin", "--password-stdin"]
        )
        assert status == 0, capsys.readouterr().err
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    data, keys = app_dir / PORTABLE_DATA_FOLDER, app_dir / PORTABLE_KEYS_FOLDER
    assert (data / "clinicfusion.sqlite3").is_file()
    assert any(keys.iterdir()), "the audit key file belongs in the portable keys folder"
    assert not any(path.name.endswith(".key") for path in data.rglob("*"))


def test_doctor_reports_portable_mode(app_dir: Path) -> None:
    from clinic_app.services.diagnostics import quick_checks

    settings = load_settings(environ={}, app_dir=app_dir, portable=True)
    folder = next(check for check in quick_checks(settings) if check.name == "Data folder")
    assert "portable mode" in folder.detail
    assert folder.facts["portable"] is True
    assert folder.facts["keys_dir"] == str(app_dir.resolve() / PORTABLE_KEYS_FOLDER)
