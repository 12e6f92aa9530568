"""The splash screen shown while the app loads its modules and opens the case database.

Drawn in code from the SVG icon (no image file to keep in step); painting it costs ~15 ms.
It is a plain frameless splash-type window rather than a QSplashScreen: Qt 6.11's
QSplashScreen.show() blocks until the window manager reports the window exposed, up to one
second (measured: 1.0 s offscreen and under Xvfb), which would delay start-up instead of
covering it. It closes as soon as the sign-in dialog (or an error) appears.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPainter, QPaintEvent, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication, QWidget

from clinic_app._version import __version__
from clinic_app.config.assets import asset_path

#: The one line about intended use that fits on the splash (the full text is in the app).
SPLASH_NOTICE = "For research and demonstration only"
_WIDTH, _HEIGHT, _ICON = 440, 200, 96
_BACKGROUND = QColor("#f5f8fb")
_INK = QColor("#1f2a33")
_MUTED = QColor("#55636f")
_ACCENT = QColor("#1f5f8b")


def splash_pixmap(ratio: float = 1.0) -> QPixmap:
    """The splash image: icon, name, version and the intended-use line, at ``ratio`` (HiDPI)."""
    pixmap = QPixmap(int(_WIDTH * ratio), int(_HEIGHT * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(_BACKGROUND)
    painter = QPainter(pixmap)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(_ACCENT)
        painter.drawRect(0, 0, _WIDTH - 1, _HEIGHT - 1)
        renderer = QSvgRenderer(str(asset_path("icons", "clinicfusion.svg")))
        if renderer.isValid():
            renderer.render(painter, QRectF(28, (_HEIGHT - _ICON) / 2, _ICON, _ICON))
        left = 28 + _ICON + 24
        title = QFont()
        title.setPointSizeF(20)
        title.setBold(True)
        painter.setFont(title)
        painter.setPen(_INK)
        painter.drawText(left, 82, "ClinicFusion")
        small = QFont()
        small.setPointSizeF(10)
        painter.setFont(small)
        painter.setPen(_MUTED)
        painter.drawText(left, 106, f"Version {__version__}")
        painter.setPen(_ACCENT)
        painter.drawText(left, 136, SPLASH_NOTICE)
    finally:
        painter.end()
    return pixmap


class Splash(QWidget):
    """The start-up splash; ``say()`` updates its status line and paints it at once."""

    def __init__(self) -> None:
        super().__init__(
            None,
            Qt.WindowType.SplashScreen
            | Qt.WindowType.FramelessWindowHint
            | Qt.WindowType.WindowStaysOnTopHint,
        )
        screen = QGuiApplication.primaryScreen()
        ratio = screen.devicePixelRatio() if screen is not None else 1.0
        self._pixmap = splash_pixmap(ratio)
        self._message = ""
        self.setObjectName("splash")
        self.setAccessibleName(f"ClinicFusion {__version__}: {SPLASH_NOTICE}")
        self.setFixedSize(_WIDTH, _HEIGHT)
        if screen is not None:
            frame = QRect(0, 0, _WIDTH, _HEIGHT)
            frame.moveCenter(screen.availableGeometry().center())
            self.move(frame.topLeft())

    def message(self) -> str:
        return self._message

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            painter.drawPixmap(0, 0, self._pixmap)
            if self._message:
                painter.setPen(_MUTED)
                area = self.rect().adjusted(8, 8, -10, -8)
                flags = Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignRight
                painter.drawText(area, int(flags), self._message)
        finally:
            painter.end()

    def say(self, message: str) -> None:
        self._message = message
        self.repaint()
        QApplication.processEvents()

    def close_for(self, window: QWidget | None) -> None:
        """Close now that ``window`` (the sign-in dialog or the main window) is shown."""
        del window  # shown by the caller; nothing to wait for (see the module docstring)
        self.close()


def show_splash() -> Splash:
    """Create, show and paint the splash (the QApplication must exist)."""
    splash = Splash()
    splash.show()
    splash.say("Starting…")
    return splash
