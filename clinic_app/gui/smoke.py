"""The Qt part of the installation smoke check: the splash and the main window, shown once.

Proves that a frozen bundle carries what Qt needs (platform plugins, the SVG icon engine and
image format plugins) and that the main window builds for a signed-in clinician. Runs on
whatever platform plugin QT_QPA_PLATFORM names; the smoke command sets it to ``offscreen``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from clinic_app.config.assets import asset_path
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ConfigError
from clinic_app.services.context import Actor
from clinic_app.storage.engine import Database

#: The platform plugin a desktop session of each system needs (Linux: X11; Wayland optional).
NATIVE_PLATFORM_PLUGIN = {"linux": "qxcb", "win32": "qwindows", "darwin": "qcocoa"}
#: Image formats the app reads through Qt (icons, thumbnails).
NEEDED_IMAGE_FORMATS = ("png", "jpeg", "svg")


def platform_plugins() -> list[str]:
    """Names of the Qt platform plugins installed (e.g. ``qxcb``, ``qoffscreen``)."""
    from PySide6.QtCore import QLibraryInfo

    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    names = {path.name.split(".")[0].removeprefix("lib") for path in folder.glob("*")}
    return sorted(name for name in names if name.startswith("q"))


def window_check(settings: Settings, database: Database, actor: Actor) -> str:
    """Show the splash and the main window offscreen once; raise ConfigError if Qt lacks a
    plugin the desktop needs. Returns one line with the platform and plugins seen."""
    from PySide6.QtGui import QGuiApplication, QIcon, QImageReader

    from clinic_app.gui.application import create_application
    from clinic_app.gui.main_window import MainWindow
    from clinic_app.gui.splash import show_splash
    from clinic_app.gui.workers import db_write_pool

    app = create_application()
    plugins = platform_plugins()
    native = NATIVE_PLATFORM_PLUGIN.get(sys.platform)
    if native is not None and native not in plugins:
        raise ConfigError(
            f"Qt's platform plugin {native} is missing (found: {', '.join(plugins) or 'none'}); "
            "the app cannot open a window on this system's desktop.",
            hint="Rebuild the bundle with the spec in installer/ (it collects Qt's plugins).",
        )
    formats = {bytes(name.data()).decode() for name in QImageReader.supportedImageFormats()}
    missing = [name for name in NEEDED_IMAGE_FORMATS if name not in formats]
    if missing:
        raise ConfigError(f"Qt cannot read {', '.join(missing)} images (image plugins missing).")
    icon = QIcon(str(asset_path("icons", "clinicfusion.svg")))
    if icon.pixmap(64, 64).isNull():
        raise ConfigError("The app icon (SVG) cannot be drawn: Qt's SVG icon engine is missing.")
    splash = show_splash()
    window = MainWindow(settings, database, actor)
    try:
        window.show()
        splash.close_for(window)
        for _ in range(5):
            app.processEvents()
        if not window.isVisible():
            raise ConfigError("The main window did not appear.")
        title = window.windowTitle()
    finally:
        window.close()
        splash.close()
        window.deleteLater()
        app.processEvents()
        db_write_pool().waitForDone(30_000)
    return (
        f"'{title}' shown on Qt platform '{QGuiApplication.platformName()}'; "
        f"platform plugins {', '.join(plugins)}"
    )
