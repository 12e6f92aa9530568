"""The splash screen: icon, name, version and the intended-use line; closes for the window."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_splash_shows_name_version_and_notice(qapp) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QWidget

    from clinic_app._version import __version__
    from clinic_app.gui.splash import SPLASH_NOTICE, show_splash, splash_pixmap

    pixmap = splash_pixmap(2.0)
    assert not pixmap.isNull() and pixmap.devicePixelRatio() == 2.0
    assert pixmap.width() == 880  # drawn at twice the size for HiDPI screens
    image = pixmap.toImage()
    # The icon is painted (its blue tile), not just the background.
    assert image.pixelColor(2 * 40, 2 * 60).name() == "#1f5f8b"

    splash = show_splash()
    assert splash.isVisible()
    assert __version__ in splash.accessibleName() and SPLASH_NOTICE in splash.accessibleName()
    splash.say("Opening the case database…")
    assert splash.message() == "Opening the case database…"
    window = QWidget()
    window.show()
    splash.close_for(window)
    qapp.processEvents()
    assert not splash.isVisible()
    window.close()
