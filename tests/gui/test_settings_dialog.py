"""The Settings dialog and the themes: choices round-trip through settings.toml and
load_settings, the model bundle is verified in the background, devices are detected off the
GUI thread, and switching the theme changes the application's palette."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QWidget

from clinic_app.config.assets import shipped_bundles_dir
from clinic_app.config.settings import Settings, load_settings
from clinic_app.domain.records import Role
from clinic_app.services.users import (
    PasswordHashing,
    authenticate,
    create_first_admin,
    create_user,
)
from clinic_app.storage.engine import Database

pytestmark = pytest.mark.gui

WAIT_MS = 60_000  # the first device detection imports torch
FAST = PasswordHashing(time_cost=1, memory_cost_kib=8, parallelism=1)
PASSWORD = "staple kettle orbit lamp"


def screenshot(widget: QWidget, name: str, folder: Path) -> None:
    QApplication.processEvents()
    image = widget.grab()
    assert image.save(str(folder / f"{name}.png"))
    extra = os.environ.get("CF_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        image.save(str(Path(extra) / f"{name}.png"))


@pytest.fixture
def restore_theme(qapp: QApplication) -> Iterator[None]:
    """Tests here change the app-wide style and palette; later tests get them back."""
    style, palette = qapp.style().name(), QPalette(qapp.palette())
    yield
    qapp.styleHints().unsetColorScheme()
    qapp.setStyle(style)
    qapp.setPalette(palette)


def demo_bundle() -> Path:
    bundles = sorted(p.parent for p in shipped_bundles_dir().glob("*/metadata.json"))
    if not bundles:
        pytest.skip("no model bundle ships with this checkout")
    return bundles[0]


def test_settings_round_trip_through_the_file(
    qtbot, settings: Settings, data_dir: Path, tmp_path: Path
) -> None:
    from clinic_app.gui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    # Device detection runs in the background: the dialog does not wait for torch.
    assert dialog.compute is None and "Detecting" in dialog.device_status.text()
    assert dialog.data_dir_edit.text() == str(settings.data_dir)
    assert dialog.data_dir_edit.isReadOnly()
    assert "after a restart" in dialog.findChild(QWidget, "settingsDataNote").text()

    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
    dialog.locale_combo.setCurrentIndex(dialog.locale_combo.findData("de_DE"))
    assert "For example:" in dialog.locale_example.text()
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cpu"))
    dialog.heatmaps_check.setChecked(False)
    dialog.institution_edit.setText("Institut f\u00fcr Pathologie")
    dialog.footer_edit.setPlainText("Research use only.\nNot for diagnosis.")
    qtbot.waitUntil(lambda: dialog.save_button.isEnabled(), timeout=WAIT_MS)

    with qtbot.waitSignal(dialog.settingsChanged, timeout=WAIT_MS) as signal:
        dialog.save()
    emitted = signal.args[0]
    assert isinstance(emitted, Settings)
    assert (emitted.theme, emitted.date_locale, emitted.device) == ("dark", "de_DE", "cpu")
    assert not dialog.isVisible()

    reloaded = load_settings(data_dir, environ={})
    assert reloaded.theme == "dark" and reloaded.date_locale == "de_DE"
    assert reloaded.device == "cpu" and reloaded.report_include_heatmaps is False
    assert reloaded.report_include_note_highlights is True
    assert reloaded.report_institution == "Institut f\u00fcr Pathologie"
    assert reloaded.report_footer == "Research use only.\nNot for diagnosis."
    assert reloaded == emitted

    again = SettingsDialog(reloaded)
    qtbot.addWidget(again)
    assert again.preferences() == type(again.preferences()).from_settings(reloaded)


def test_model_bundle_is_verified_and_a_bad_one_blocks_saving(
    qtbot, settings: Settings, tmp_path: Path
) -> None:
    from clinic_app.gui.settings_dialog import SettingsDialog

    bundle = demo_bundle()
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.bundle_check is not None, timeout=WAIT_MS)
    automatic = dialog.bundle_check
    assert automatic is not None and not automatic.explicit and automatic.info is not None
    assert "chosen automatically" in dialog.bundle_status.text()

    dialog.set_bundle(bundle)
    qtbot.waitUntil(lambda: dialog.bundle_check is not None, timeout=WAIT_MS)
    info = dialog.bundle_check.info
    assert info is not None
    text = dialog.bundle_status.text()
    assert info.name in text and info.version in text and info.sha256[:16] in text
    assert dialog.bundle_status.kind == "ok" and dialog.save_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.compute is not None, timeout=WAIT_MS)
    assert "cpu" in dialog.compute.available
    assert "PyTorch" in dialog.device_status.text()
    assert "Automatic (uses" in dialog.device_combo.itemText(0)
    screenshot(dialog, "settings-light", tmp_path)

    empty = tmp_path / "not-a-bundle"
    empty.mkdir()
    dialog.set_bundle(empty)
    qtbot.waitUntil(lambda: dialog.bundle_status.kind == "error", timeout=WAIT_MS)
    assert not dialog.save_button.isEnabled()
    dialog.set_bundle(None)
    qtbot.waitUntil(lambda: dialog.save_button.isEnabled(), timeout=WAIT_MS)


def test_a_clinician_may_change_only_the_personal_choices(
    qtbot, database: Database, settings: Settings
) -> None:
    from clinic_app.gui.settings_dialog import SettingsDialog

    create_first_admin(database, "admin", PASSWORD, hashing=FAST)
    admin = authenticate(database, "admin", PASSWORD, hashing=FAST)
    create_user(database, admin, "doc", PASSWORD, Role.CLINICIAN, hashing=FAST)
    clinician = authenticate(database, "doc", PASSWORD, hashing=FAST)
    dialog = SettingsDialog(settings, database=database, actor=clinician)
    qtbot.addWidget(dialog)
    assert not dialog.device_combo.isEnabled() and not dialog.institution_edit.isEnabled()
    assert dialog.theme_combo.isEnabled() and dialog.locale_combo.isEnabled()
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("light"))
    qtbot.waitUntil(lambda: dialog.save_button.isEnabled(), timeout=WAIT_MS)
    with qtbot.waitSignal(dialog.settingsChanged, timeout=WAIT_MS):
        dialog.save()
    assert load_settings(settings.data_dir, environ={}).theme == "light"


def test_theme_switch_changes_the_palette(qtbot, qapp: QApplication, restore_theme: None) -> None:
    from clinic_app.gui.theme import apply_theme, is_dark, palette_for, status_colour, system_scheme

    assert apply_theme(qapp, "dark") == "dark"
    dark_window = qapp.palette().color(QPalette.ColorRole.Window)
    assert qapp.style().name().lower() == "fusion"
    assert dark_window.lightness() < 80 and is_dark(qapp.palette())
    assert apply_theme(qapp, "light") == "light"
    light_window = qapp.palette().color(QPalette.ColorRole.Window)
    assert light_window.lightness() > 200 and not is_dark(qapp.palette())
    assert apply_theme(qapp, "system") == system_scheme()
    assert qapp.palette().color(QPalette.ColorRole.Window) == palette_for(system_scheme()).color(
        QPalette.ColorRole.Window
    )
    # Text stays readable on both: a large lightness gap, and status colours that differ.
    for scheme in ("light", "dark"):
        palette = palette_for(scheme)
        gap = (
            palette.color(QPalette.ColorRole.Text).lightness()
            - palette.color(QPalette.ColorRole.Base).lightness()
        )
        assert abs(gap) > 150
    assert status_colour(palette_for("dark"), "error") != status_colour(
        palette_for("light"), "error"
    )
    with pytest.raises(ValueError, match="unknown theme"):
        apply_theme(qapp, "purple")


def test_settings_dialog_in_the_dark_theme(
    qtbot, qapp: QApplication, settings: Settings, tmp_path: Path, restore_theme: None
) -> None:
    from clinic_app.gui.settings_dialog import SettingsDialog
    from clinic_app.gui.theme import apply_theme

    apply_theme(qapp, "dark")
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.bundle_check is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: dialog.compute is not None, timeout=WAIT_MS)
    assert dialog.palette().color(QPalette.ColorRole.Window).lightness() < 80
    screenshot(dialog, "settings-dark", tmp_path)
