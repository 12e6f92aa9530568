"""The Settings dialog: data folder, model bundle, device, theme, date format, report defaults.

What it edits lives in ``settings.toml`` in the data folder (see
:mod:`clinic_app.services.preferences`, which writes it atomically and keeps the rest of the
file). Slow work runs in the background: verifying a model bundle hashes its files, and finding
out which devices PyTorch can use imports torch (seconds), which never happens on the GUI
thread. Saving emits ``settingsChanged(Settings)`` so the main window applies the theme and
date format at once; a model or device change applies to the next analysis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QDateTime, QLocale, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from clinic_app.config.settings import Settings
from clinic_app.domain.permissions import Permission, allowed
from clinic_app.gui.admin._common import (
    StatusLabel,
    WrappedLabel,
    add_action,
    background_for,
    db_write_for,
    named,
)
from clinic_app.gui.dialogs import show_error
from clinic_app.services.context import Actor
from clinic_app.services.model_bundles import choose_bundle, verify_model_bundle
from clinic_app.services.preferences import (
    ComputeSummary,
    Preferences,
    detect_compute,
    model_bundle_from_environment,
    save_preferences,
    settings_path,
)
from clinic_app.storage.engine import Database

if TYPE_CHECKING:
    from model.bundle import BundleInfo

THEME_NAMES = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
DEVICE_NAMES = {
    "auto": "Automatic",
    "cpu": "CPU",
    "cuda": "GPU (NVIDIA CUDA)",
    "mps": "Apple GPU (MPS)",
}
LOCALE_NAMES = {
    "en_GB": "English (United Kingdom)",
    "en_US": "English (United States)",
    "de_DE": "Deutsch (Deutschland)",
    "fr_FR": "Fran\u00e7ais (France)",
}


@dataclass(frozen=True)
class BundleCheck:
    """The bundle a choice resolves to and what verifying it found."""

    path: Path | None
    explicit: bool
    info: BundleInfo | None


def check_bundle(settings: Settings, chosen: Path | None) -> BundleCheck:
    """Resolve ``chosen`` (None: the app's automatic choice) and verify it (hashes every file)."""
    if chosen is None:
        choice = choose_bundle(settings)
        path, explicit = choice.path, choice.explicit
    else:
        path, explicit = chosen, True
    return BundleCheck(path, explicit, verify_model_bundle(path) if path is not None else None)


def format_date_example(locale_name: str) -> str:
    """How a date and time look in ``locale_name`` ("system": this computer's locale)."""
    locale = QLocale.system() if locale_name == "system" else QLocale(locale_name)
    now = QDateTime.currentDateTime()
    short = locale.toString(now, QLocale.FormatType.ShortFormat)
    long_date = locale.toString(now.date(), QLocale.FormatType.LongFormat)
    return f"{short} \u2014 {long_date}"


def _describe(widget: QWidget, name: str, tip: str) -> None:
    widget.setAccessibleName(name)
    widget.setToolTip(tip)


def _display_url(url: str) -> str:
    """A database URL with its password masked."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


class SettingsDialog(QDialog):
    """Edit the preferences in settings.toml; emits ``settingsChanged`` with the new Settings."""

    settingsChanged = Signal(object)

    def __init__(
        self,
        settings: Settings,
        parent: QWidget | None = None,
        *,
        database: Database | None = None,
        actor: Actor | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.database = database
        self.actor = actor
        self.bundle_check: BundleCheck | None = None
        self.compute: ComputeSummary | None = None
        self.saving = False
        self._chosen_bundle: Path | None = settings.model_bundle
        self._bundle_ok = True
        self._bundle_generation = 0
        self._shortcuts: list[tuple[str, str]] = []
        self.may_change_all = actor is None or allowed(actor.role, Permission.SETTINGS_CHANGE)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self.setMinimumWidth(720)
        self.resize(800, 640)

        layout = QVBoxLayout(self)
        for box in (
            self._build_data_box(),
            self._build_model_box(),
            self._build_appearance_box(),
            self._build_report_box(),
        ):
            policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
            policy.setHeightForWidth(True)  # wrapped lines take the height they need, no more
            box.setSizePolicy(policy)
            layout.addWidget(box)
        if not self.may_change_all:
            layout.addWidget(
                WrappedLabel(
                    "Only administrators may change the model, the device and the report "
                    "defaults; you can change the theme and the date format.",
                )
            )
        layout.addStretch(1)
        self.status = named(StatusLabel(), "settingsStatus")
        layout.addWidget(self.status)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setObjectName("settingsSave")
        _describe(self.save_button, "Save settings", "Write the settings and apply them (Ctrl+S)")
        defaults = self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        _describe(
            defaults, "Restore defaults", "Put every choice back to its default (not saved yet)"
        )
        defaults.clicked.connect(self.restore_defaults)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        add_action(
            self,
            "Save",
            QKeySequence.StandardKey.Save,
            "Save the settings",
            self.save,
            self._shortcuts,
        )

        self.set_preferences(Preferences.from_settings(settings))
        self.detect_devices()
        self.theme_combo.setFocus()

    # -- layout -------------------------------------------------------------------------------
    def _build_data_box(self) -> QGroupBox:
        box = QGroupBox("Data")
        form = QFormLayout(box)
        self.data_dir_edit = named(QLineEdit(str(self.settings.data_dir)), "settingsDataDir")
        self.data_dir_edit.setReadOnly(True)
        _describe(
            self.data_dir_edit, "Data folder", "Where cases, inputs, exports and logs are kept"
        )
        open_button = named(QPushButton("Open"), "settingsOpenDataDir")
        _describe(open_button, "Open data folder", "Show the data folder in the file manager")
        open_button.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.settings.data_dir)))
        )
        row = QHBoxLayout()
        row.addWidget(self.data_dir_edit, 1)
        row.addWidget(open_button)
        form.addRow("Data folder:", row)
        database = named(QLineEdit(_display_url(self.settings.database_url)), "settingsDatabase")
        database.setReadOnly(True)
        _describe(database, "Database", "The case database (SQLite file or server)")
        form.addRow("Database:", database)
        settings_file = named(QLineEdit(str(settings_path(self.settings))), "settingsFile")
        settings_file.setReadOnly(True)
        _describe(settings_file, "Settings file", "Where the choices below are saved")
        form.addRow("Settings file:", settings_file)
        for edit in (self.data_dir_edit, database, settings_file):
            edit.setCursorPosition(0)
        note = named(
            WrappedLabel(
                "The data folder and the database are chosen when ClinicFusion starts "
                "(--data-dir, CLINICFUSION_DATA_DIR, CLINICFUSION_DATABASE_URL): a change "
                "takes effect after a restart."
            ),
            "settingsDataNote",
        )
        note.setWordWrap(True)
        note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("", note)
        return box

    def _build_model_box(self) -> QGroupBox:
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.bundle_edit = named(QLineEdit(), "settingsModelBundle")
        self.bundle_edit.setReadOnly(True)
        self.bundle_edit.setPlaceholderText("chosen automatically")
        _describe(
            self.bundle_edit, "Model bundle", "The folder of the model bundle used for analyses"
        )
        self.bundle_choose = named(QPushButton("Choose\u2026"), "settingsChooseBundle")
        _describe(
            self.bundle_choose, "Choose model bundle", "Pick a model bundle folder (it is verified)"
        )
        self.bundle_choose.clicked.connect(self.choose_bundle_folder)
        self.bundle_default = named(QPushButton("Automatic"), "settingsDefaultBundle")
        _describe(
            self.bundle_default,
            "Automatic model bundle",
            "Let ClinicFusion pick the bundle (the data folder's models, else the shipped one)",
        )
        self.bundle_default.clicked.connect(lambda: self.set_bundle(None))
        row = QHBoxLayout()
        row.addWidget(self.bundle_edit, 1)
        row.addWidget(self.bundle_choose)
        row.addWidget(self.bundle_default)
        bundle_label = QLabel("Model &bundle:")
        bundle_label.setBuddy(self.bundle_choose)
        form.addRow(bundle_label, row)
        self.bundle_status = named(StatusLabel(), "settingsBundleStatus")
        form.addRow("", self.bundle_status)

        self.device_combo = named(QComboBox(), "settingsDevice")
        for name, text in DEVICE_NAMES.items():
            self.device_combo.addItem(text, name)
        _describe(
            self.device_combo,
            "Device",
            "Where the model runs; Automatic picks a GPU when there is one",
        )
        self.device_status = named(StatusLabel("Detecting\u2026"), "settingsDeviceStatus")
        form.addRow("&Device:", self.device_combo)
        form.addRow("", self.device_status)
        for widget in (self.bundle_choose, self.bundle_default, self.device_combo):
            widget.setEnabled(self.may_change_all)
        return box

    def _build_appearance_box(self) -> QGroupBox:
        box = QGroupBox("Appearance")
        form = QFormLayout(box)
        self.theme_combo = named(QComboBox(), "settingsTheme")
        for name, text in THEME_NAMES.items():
            self.theme_combo.addItem(text, name)
        _describe(self.theme_combo, "Theme", "Light, dark, or the desktop's colour scheme")
        self.locale_combo = named(QComboBox(), "settingsDateLocale")
        self.locale_combo.addItem(f"System ({QLocale.system().name()})", "system")
        for name, text in LOCALE_NAMES.items():
            self.locale_combo.addItem(f"{text} \u2014 {name}", name)
        _describe(
            self.locale_combo, "Date format", "The language and order used to show dates and times"
        )
        self.locale_example = named(QLabel(), "settingsDateExample")
        self.locale_combo.currentIndexChanged.connect(self._locale_changed)
        form.addRow("&Theme:", self.theme_combo)
        form.addRow("Dates &shown as:", self.locale_combo)
        form.addRow("", self.locale_example)
        return box

    def _build_report_box(self) -> QGroupBox:
        box = QGroupBox("Report defaults")
        form = QFormLayout(box)
        self.heatmaps_check = named(QCheckBox("Slide heatmaps"), "settingsReportHeatmaps")
        _describe(
            self.heatmaps_check, "Include heatmaps", "Reports show the slide's relevance heatmap"
        )
        self.highlights_check = named(QCheckBox("Note highlights"), "settingsReportHighlights")
        _describe(
            self.highlights_check,
            "Include note highlights",
            "Reports show the note's words highlighted by relevance",
        )
        self.institution_edit = named(QLineEdit(), "settingsReportInstitution")
        self.institution_edit.setPlaceholderText("e.g. Department of Pathology, St Elsewhere")
        _describe(self.institution_edit, "Institution name", "Printed at the top of every report")
        self.footer_edit = named(QPlainTextEdit(), "settingsReportFooter")
        self.footer_edit.setPlaceholderText("Printed at the foot of every report")
        self.footer_edit.setTabChangesFocus(True)
        self.footer_edit.setFixedHeight(self.fontMetrics().lineSpacing() * 3 + 12)
        _describe(self.footer_edit, "Report footer", "Printed at the foot of every report")
        checks = QHBoxLayout()
        checks.addWidget(self.heatmaps_check)
        checks.addWidget(self.highlights_check)
        checks.addStretch(1)
        form.addRow("Include:", checks)
        form.addRow("&Institution:", self.institution_edit)
        form.addRow("&Footer:", self.footer_edit)
        for widget in (
            self.heatmaps_check,
            self.highlights_check,
            self.institution_edit,
            self.footer_edit,
        ):
            widget.setEnabled(self.may_change_all)
        return box

    def shortcuts(self) -> list[tuple[str, str]]:
        """(key sequence, what it does) for the Help page."""
        return list(self._shortcuts)

    # -- values -------------------------------------------------------------------------------
    def preferences(self) -> Preferences:
        """The choices the controls show now."""
        return Preferences(
            model_bundle=self._chosen_bundle,
            device=str(self.device_combo.currentData()),
            theme=str(self.theme_combo.currentData()),
            date_locale=str(self.locale_combo.currentData()),
            report_include_heatmaps=self.heatmaps_check.isChecked(),
            report_include_note_highlights=self.highlights_check.isChecked(),
            report_institution=self.institution_edit.text(),
            report_footer=self.footer_edit.toPlainText(),
        )

    def set_preferences(self, preferences: Preferences) -> None:
        """Show ``preferences`` in the controls (nothing is saved until Save)."""
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(preferences.device)))
        self.theme_combo.setCurrentIndex(max(0, self.theme_combo.findData(preferences.theme)))
        if self.locale_combo.findData(preferences.date_locale) < 0:
            self.locale_combo.addItem(preferences.date_locale, preferences.date_locale)
        self.locale_combo.setCurrentIndex(self.locale_combo.findData(preferences.date_locale))
        self._locale_changed()
        self.heatmaps_check.setChecked(preferences.report_include_heatmaps)
        self.highlights_check.setChecked(preferences.report_include_note_highlights)
        self.institution_edit.setText(preferences.report_institution)
        self.footer_edit.setPlainText(preferences.report_footer)
        if preferences.model_bundle != self._chosen_bundle or self.bundle_check is None:
            self.set_bundle(preferences.model_bundle)

    def restore_defaults(self) -> None:
        defaults = Preferences()
        if not self.may_change_all:
            current = self.preferences()
            defaults = Preferences(
                **{**current.__dict__, "theme": defaults.theme, "date_locale": defaults.date_locale}
            )
        self.set_preferences(defaults)
        self.status.show_status("Defaults restored; press Save to keep them.")

    def _locale_changed(self) -> None:
        name = str(self.locale_combo.currentData())
        self.locale_example.setText(f"For example: {format_date_example(name)}")

    # -- model bundle -------------------------------------------------------------------------
    def choose_bundle_folder(self) -> None:
        start = str(self._chosen_bundle or self.settings.models_dir)
        folder = QFileDialog.getExistingDirectory(self, "Choose a model bundle folder", start)
        if folder:
            self.set_bundle(Path(folder))

    def set_bundle(self, folder: Path | None) -> None:
        """Use ``folder`` (None: automatic) and verify it in the background."""
        self._chosen_bundle = folder
        self.bundle_edit.setText(str(folder) if folder is not None else "")
        self._bundle_generation += 1
        generation = self._bundle_generation
        self.bundle_check = None
        self._bundle_ok = folder is None
        self.bundle_status.show_status("Verifying the model bundle\u2026")
        self._update_save()
        settings = self.settings
        background_for(
            self,
            lambda: check_bundle(settings, folder),
            lambda result: self._bundle_verified(generation, result),
            lambda exc: self._bundle_failed(generation, exc),
        )

    def _bundle_verified(self, generation: int, result: BundleCheck) -> None:
        if generation != self._bundle_generation:
            return
        self.bundle_check = result
        self._bundle_ok = True
        info = result.info
        if info is None:
            self.bundle_status.show_status(
                "No model bundle is installed; analyses are not possible until one is chosen.",
                "warn",
            )
        else:
            source = "" if result.explicit else " (chosen automatically)"
            self.bundle_status.show_status(
                f"\u2714 {info.name} {info.version}{source} \u2014 verified, {len(info.files)} "
                f"files, sha256 {info.sha256[:16]}\u2026",
                "ok",
            )
            self.bundle_status.setToolTip(f"{info.path}\nsha256 {info.sha256}")
        overridden = model_bundle_from_environment()
        if overridden:
            self.bundle_status.show_status(
                self.bundle_status.text() + f" Note: CLINICFUSION_MODEL_BUNDLE ({overridden}) "
                "overrides this choice when ClinicFusion starts.",
                self.bundle_status.kind,
            )
        self._update_save()

    def _bundle_failed(self, generation: int, exc: Exception) -> None:
        if generation != self._bundle_generation:
            return
        self._bundle_ok = self._chosen_bundle is None
        self.bundle_status.show_status(f"\u2718 {exc}", "error")
        self._update_save()

    # -- devices ------------------------------------------------------------------------------
    def detect_devices(self) -> None:
        """Find out in the background (it imports torch) which devices can run the model."""
        self.device_status.show_status("Detecting\u2026 (loading PyTorch)")
        # torch is imported in the model process, never in the app's (it would stall the GUI).
        from clinic_app.services.model_host import model_host

        background_for(
            self,
            lambda: model_host().call(detect_compute),
            self._devices_detected,
            self._detection_failed,
        )

    def _devices_detected(self, summary: ComputeSummary) -> None:
        self.compute = summary
        for index in range(self.device_combo.count()):
            name = str(self.device_combo.itemData(index))
            text = DEVICE_NAMES[name]
            if name == "auto":
                text += f" (uses {DEVICE_NAMES[summary.auto_device]})"
            elif name not in summary.available:
                text += " \u2014 not available here"
            self.device_combo.setItemText(index, text)
        chosen = str(self.device_combo.currentData())
        if chosen not in ("auto", *summary.available):
            self.device_status.show_status(
                f"{summary.description} {DEVICE_NAMES[chosen]} is chosen but not available, so "
                "analyses would fail: choose Automatic or CPU.",
                "warn",
            )
        else:
            self.device_status.show_status(summary.description)

    def _detection_failed(self, exc: Exception) -> None:
        self.device_status.show_status(f"The devices could not be detected: {exc}", "warn")

    # -- saving -------------------------------------------------------------------------------
    def _update_save(self) -> None:
        self.save_button.setEnabled(self._bundle_ok and not self.saving)
        if not self._bundle_ok and self.bundle_check is None and self._chosen_bundle is not None:
            self.save_button.setToolTip("Wait until the chosen model bundle has been verified")
        else:
            self.save_button.setToolTip("Write the settings and apply them (Ctrl+S)")

    def save(self) -> None:
        """Write the settings file in the background; on success emit settingsChanged, close."""
        if not self.save_button.isEnabled():
            return
        preferences = self.preferences()
        settings, database, actor = self.settings, self.database, self.actor
        self.saving = True
        self._update_save()
        self.status.show_status("Saving\u2026")
        db_write_for(
            self,
            lambda: save_preferences(settings, preferences, database=database, actor=actor),
            self._saved,
            self._save_failed,
        )

    def _saved(self, settings: Settings) -> None:
        self.saving = False
        self.settings = settings
        self.status.show_status("Saved.", "ok")
        self.settingsChanged.emit(settings)
        self.accept()

    def _save_failed(self, exc: Exception) -> None:
        self.saving = False
        self._update_save()
        self.status.show_status(f"Not saved: {exc}", "error")
        show_error(self, exc)
