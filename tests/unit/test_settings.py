from __future__ import annotations

from pathlib import Path

import pytest

from clinic_app.config.settings import (
    DATABASE_FILENAME,
    default_data_dir,
    ensure_data_dirs,
    load_settings,
)
from clinic_app.domain.errors import ConfigError


def test_default_data_dir_is_the_platform_user_data_dir(tmp_path: Path) -> None:
    settings = load_settings(environ={})
    assert settings.data_dir == default_data_dir().resolve()
    # XDG_DATA_HOME is redirected into tmp_path by the autouse fixture.
    assert str(settings.data_dir).startswith(str(tmp_path))
    assert settings.data_dir.name == "ClinicFusion"
    assert settings.database_url == f"sqlite:///{settings.data_dir / DATABASE_FILENAME}"
    assert settings.database_path == settings.data_dir / DATABASE_FILENAME
    assert settings.log_file == settings.data_dir / "logs" / "clinicfusion.log"
    assert settings.model_bundle is None
    assert settings.log_level == "INFO"


def test_data_dir_flag_beats_environment(tmp_path: Path) -> None:
    env = {"CLINICFUSION_DATA_DIR": str(tmp_path / "from-env")}
    assert load_settings(environ=env).data_dir == tmp_path / "from-env"
    assert load_settings(tmp_path / "from-flag", environ=env).data_dir == tmp_path / "from-flag"


def test_relative_data_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings("here", environ={}).data_dir == tmp_path / "here"


def test_settings_file_then_environment_then_flag(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "settings.toml").write_text(
        'database_url = "sqlite:////srv/shared/cases.sqlite3"\n'
        'model_bundle = "models/fusion-v2"\n'
        'log_level = "debug"\n',
        encoding="utf-8",
    )
    from_file = load_settings(root, environ={})
    assert from_file.database_url == "sqlite:////srv/shared/cases.sqlite3"
    assert from_file.model_bundle == root / "models" / "fusion-v2"
    assert from_file.log_level == "DEBUG"
    assert from_file.settings_file == root / "settings.toml"

    env = {"CLINICFUSION_LOG_LEVEL": "warning", "CLINICFUSION_DATABASE_URL": "sqlite:///x.db"}
    from_env = load_settings(root, environ=env)
    assert from_env.log_level == "WARNING"
    assert from_env.database_url == "sqlite:///x.db"
    assert load_settings(root, log_level="error", environ=env).log_level == "ERROR"


def test_postgres_url_has_no_database_path(tmp_path: Path) -> None:
    env = {"CLINICFUSION_DATABASE_URL": "postgresql+psycopg://clinic@db.local/cases"}
    assert load_settings(tmp_path, environ=env).database_path is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('colour = "blue"\n', "unknown setting 'colour'"),
        ("log_level = 3\n", "must be text in quotes"),
        ('log_level = "loud"\n', "not one of DEBUG, INFO, WARNING, ERROR"),
        ("database_url = \n", "not valid TOML"),
    ],
)
def test_bad_settings_file_names_the_problem(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "settings.toml").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(tmp_path, environ={})
    assert str(tmp_path / "settings.toml") in str(caught.value)


def test_bad_log_level_flag_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--log-level"):
        load_settings(tmp_path, log_level="chatty", environ={})


def test_ensure_data_dirs_creates_the_folders(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "new" / "data", environ={})
    ensure_data_dirs(settings)
    for folder in (settings.data_dir, settings.logs_dir, settings.exports_dir):
        assert folder.is_dir()
    assert list(settings.data_dir.glob(".write-test")) == []


def test_unusable_data_dir_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    settings = load_settings(blocker / "data", environ={})
    with pytest.raises(ConfigError, match="cannot be created") as caught:
        ensure_data_dirs(settings)
    assert "--data-dir" in str(caught.value)


def test_keys_stay_outside_the_data_folder_where_config_and_data_coincide(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Windows and macOS: platformdirs gives one folder for config and data."""
    import platformdirs

    from clinic_app.config.settings import default_data_dir, default_keys_dir

    same = tmp_path / "AppData" / "Local" / "ClinicFusion"
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(same))
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: str(same))
    keys = default_keys_dir()
    assert keys == same.parent / "ClinicFusion-keys"
    assert default_data_dir() not in (keys, *keys.parents)
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: str(tmp_path / "cfg"))
    assert default_keys_dir() == tmp_path / "cfg" / "keys"
