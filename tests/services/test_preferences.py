"""The Settings dialog's preferences in settings.toml: round trip through load_settings, edits
that keep comments and other keys, atomic replacement, validation, permissions and auditing."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from sqlalchemy import select

from clinic_app.config.settings import load_settings
from clinic_app.domain.errors import AccessDenied, ConfigError, InputError
from clinic_app.domain.records import AuditOutcome, Role
from clinic_app.services.preferences import (
    Preferences,
    detect_compute,
    save_preferences,
    settings_path,
)
from clinic_app.services.users import (
    PasswordHashing,
    authenticate,
    create_first_admin,
    create_user,
)
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent

FAST = PasswordHashing(time_cost=1, memory_cost_kib=8, parallelism=1)
PASSWORD = "staple kettle orbit lamp"


def test_defaults_without_a_file(data_dir: Path) -> None:
    settings = load_settings(data_dir, environ={})
    assert Preferences.from_settings(settings) == Preferences()
    assert settings.theme == "system" and settings.device == "auto"


def test_round_trip_through_the_file_and_load_settings(data_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(data_dir, environ={})
    bundle = tmp_path / "bundle"
    wanted = Preferences(
        model_bundle=bundle,
        device="cpu",
        theme="dark",
        date_locale="de_DE",
        report_include_heatmaps=False,
        report_include_note_highlights=True,
        report_institution='St Elsewhere "General" \\ Pathology',
        report_footer="Line one\nLine two\twith a tab",
    )
    updated = save_preferences(settings, wanted)
    assert Preferences.from_settings(updated) == wanted.validate()
    reloaded = load_settings(data_dir, environ={})
    assert Preferences.from_settings(reloaded) == wanted.validate()
    assert reloaded.settings_file == settings_path(settings)
    raw = tomllib.loads(settings_path(settings).read_text(encoding="utf-8"))
    assert raw["display"] == {"theme": "dark", "date_locale": "de_DE"}
    assert raw["device"] == "cpu"
    assert raw["report"]["include_heatmaps"] is False
    assert list(data_dir.glob(".settings.toml.*")) == []  # no temporary file left behind


def test_editing_keeps_comments_and_other_settings(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    original = (
        "# Installed by the IT team: do not remove\n"
        'log_level = "WARNING"  # quieter logs\n'
        "read_memory_mb = 4096\n"
        "\n"
        "[display]\n"
        "# the ward prefers dark screens\n"
        'theme = "dark"\n'
    )
    settings_path(load_settings(data_dir, environ={})).write_text(original, encoding="utf-8")
    settings = load_settings(data_dir, environ={})
    assert settings.theme == "dark" and settings.log_level == "WARNING"

    save_preferences(settings, Preferences(theme="light", report_institution="Clinic A"))
    text = settings_path(settings).read_text(encoding="utf-8")
    assert "# Installed by the IT team: do not remove" in text
    assert "# the ward prefers dark screens" in text
    assert 'log_level = "WARNING"  # quieter logs' in text
    reloaded = load_settings(data_dir, environ={})
    assert reloaded.theme == "light"
    assert reloaded.log_level == "WARNING" and reloaded.read_memory_mb == 4096
    assert reloaded.report_institution == "Clinic A"
    assert "model_bundle" not in tomllib.loads(text)  # automatic choice: no key at all


def test_choosing_automatic_removes_the_bundle_key(data_dir: Path, tmp_path: Path) -> None:
    settings = save_preferences(
        load_settings(data_dir, environ={}), Preferences(model_bundle=tmp_path)
    )
    assert load_settings(data_dir, environ={}).model_bundle == tmp_path.resolve()
    save_preferences(settings, Preferences(model_bundle=None))
    assert load_settings(data_dir, environ={}).model_bundle is None


def test_an_unusual_file_is_rewritten_with_the_same_meaning(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    path = data_dir / "settings.toml"
    path.write_text('display.theme = "dark"\nlog_level = "ERROR"\n', encoding="utf-8")
    settings = load_settings(data_dir, environ={})
    assert settings.theme == "dark"
    save_preferences(settings, Preferences(theme="light", date_locale="fr_FR"))
    reloaded = load_settings(data_dir, environ={})
    assert (reloaded.theme, reloaded.date_locale, reloaded.log_level) == ("light", "fr_FR", "ERROR")


def test_a_broken_file_is_refused_and_left_alone(data_dir: Path) -> None:
    settings = load_settings(data_dir, environ={})
    data_dir.mkdir(parents=True)
    settings_path(settings).write_text("theme = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        save_preferences(settings, Preferences(theme="dark"))
    assert settings_path(settings).read_text(encoding="utf-8") == "theme = \n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[display]\ntheme = "purple"\n', "display.theme"),
        ('device = "tpu"\n', "'device'"),
        ('[display]\ndate_locale = "german"\n', "locale name"),
        ('[report]\ninclude_heatmaps = "yes"\n', "must be true or false"),
        ('[report]\nlogo = "x.png"\n', "unknown setting 'report.logo'"),
        ('display = "dark"\n', "must be a table"),
    ],
)
def test_bad_preferences_in_the_file_name_the_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "settings.toml").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ={})


def test_bad_values_are_refused_before_writing(data_dir: Path) -> None:
    settings = load_settings(data_dir, environ={})
    for wrong in (
        Preferences(theme="purple"),
        Preferences(device="tpu"),
        Preferences(date_locale="x"),
    ):
        with pytest.raises(InputError):
            save_preferences(settings, wrong)
    assert not settings_path(settings).exists()


def _settings_events(database: Database) -> list[AuditEvent]:
    with database.read() as session:
        query = select(AuditEvent).where(AuditEvent.event_type == "settings.update")
        return list(session.scalars(query.order_by(AuditEvent.sequence)))


def test_changes_are_audited_and_need_permission_beyond_the_theme(
    database: Database, data_dir: Path
) -> None:
    create_first_admin(database, "admin", PASSWORD, hashing=FAST)
    admin = authenticate(database, "admin", PASSWORD, hashing=FAST)
    create_user(database, admin, "doc", PASSWORD, Role.CLINICIAN, hashing=FAST)
    clinician = authenticate(database, "doc", PASSWORD, hashing=FAST)
    settings = load_settings(data_dir, environ={})

    # A clinician may pick a theme and date format for themselves...
    settings = save_preferences(
        settings, Preferences(theme="dark"), database=database, actor=clinician
    )
    assert load_settings(data_dir, environ={}).theme == "dark"
    # ...but not the device or the report defaults.
    with pytest.raises(AccessDenied):
        save_preferences(
            settings, Preferences(theme="dark", device="cpu"), database=database, actor=clinician
        )
    assert load_settings(data_dir, environ={}).device == "auto"
    # An administrator may.
    save_preferences(
        settings,
        Preferences(theme="dark", device="cpu", report_institution="Clinic B"),
        database=database,
        actor=admin,
    )
    assert load_settings(data_dir, environ={}).device == "cpu"

    events = _settings_events(database)
    assert [(e.username, e.outcome) for e in events] == [
        ("doc", AuditOutcome.SUCCESS),
        ("doc", AuditOutcome.MINOR_FAILURE),
        ("admin", AuditOutcome.SUCCESS),
    ]
    assert events[0].details["changed"] == {"theme": {"from": "system", "to": "dark"}}
    assert events[2].details["changed"]["device"] == {"from": "auto", "to": "cpu"}


def test_detect_compute_reports_the_cpu() -> None:
    summary = detect_compute()
    assert "cpu" in summary.available
    assert summary.auto_device in summary.available
    assert "PyTorch" in summary.description
