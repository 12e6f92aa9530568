"""Light and dark themes: the Fusion style with a readable QPalette, or the desktop's choice.

``apply_theme(app, "system" | "light" | "dark")`` is called at start and whenever the setting
changes. "system" follows the desktop's colour scheme (``QStyleHints.colorScheme``) and keeps
following it while the app runs. Widgets read their colours from the palette, so everything
drawn with ``self.palette()`` switches with the theme; :func:`status_colour` gives the
success / warning / error colours that stay readable on either background.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("system", "light", "dark")

_Role = QPalette.ColorRole
_Group = QPalette.ColorGroup

#: Light theme: near-white surfaces, dark text (contrast well above WCAG AA's 4.5:1).
_LIGHT: dict[QPalette.ColorRole, str] = {
    _Role.Window: "#f3f3f3",
    _Role.WindowText: "#1b1b1b",
    _Role.Base: "#ffffff",
    _Role.AlternateBase: "#f4f6f9",
    _Role.ToolTipBase: "#ffffe1",
    _Role.ToolTipText: "#1b1b1b",
    _Role.PlaceholderText: "#6b6f76",
    _Role.Text: "#1b1b1b",
    _Role.Button: "#e8e8e8",
    _Role.ButtonText: "#1b1b1b",
    _Role.BrightText: "#c62828",
    _Role.Light: "#ffffff",
    _Role.Midlight: "#e3e3e3",
    _Role.Mid: "#b8b8b8",
    _Role.Dark: "#9e9e9e",
    _Role.Shadow: "#5f5f5f",
    _Role.Highlight: "#2f6fd6",
    _Role.HighlightedText: "#ffffff",
    _Role.Link: "#0b57d0",
    _Role.LinkVisited: "#6a3fb5",
}

#: Dark theme: dark grey surfaces (not black, which smears on LCDs), light grey text.
_DARK: dict[QPalette.ColorRole, str] = {
    _Role.Window: "#2b2d30",
    _Role.WindowText: "#e6e6e6",
    _Role.Base: "#1f2023",
    _Role.AlternateBase: "#27292c",
    _Role.ToolTipBase: "#3a3d41",
    _Role.ToolTipText: "#e6e6e6",
    _Role.PlaceholderText: "#8d9299",
    _Role.Text: "#e6e6e6",
    _Role.Button: "#3a3d41",
    _Role.ButtonText: "#e6e6e6",
    _Role.BrightText: "#ff8a80",
    _Role.Light: "#4a4d52",
    _Role.Midlight: "#404347",
    _Role.Mid: "#2f3134",
    _Role.Dark: "#1b1c1e",
    _Role.Shadow: "#101112",
    _Role.Highlight: "#3d7fd9",
    _Role.HighlightedText: "#ffffff",
    _Role.Link: "#78b4ff",
    _Role.LinkVisited: "#c3a6ff",
}

_DISABLED = {
    "light": {"text": "#9a9a9a", "button": "#ececec", "highlight": "#b9c7de"},
    "dark": {"text": "#7c8087", "button": "#333538", "highlight": "#3a4b63"},
}

_STATUS = {
    "light": {"ok": "#1e7b34", "warn": "#8a6100", "error": "#b3261e"},
    "dark": {"ok": "#7fd69a", "warn": "#f2c66d", "error": "#ff8a80"},
}

_FOLLOWING_SYSTEM: dict[str, bool] = {"connected": False, "active": False}


def palette_for(scheme: str) -> QPalette:
    """The palette of the "light" or "dark" theme."""
    if scheme not in ("light", "dark"):
        raise ValueError(f"no palette for {scheme!r}; use 'light' or 'dark'")
    palette = QPalette()
    for role, colour in (_DARK if scheme == "dark" else _LIGHT).items():
        palette.setColor(role, QColor(colour))
    disabled = _DISABLED[scheme]
    for role in (_Role.WindowText, _Role.Text, _Role.ButtonText, _Role.HighlightedText):
        palette.setColor(_Group.Disabled, role, QColor(disabled["text"]))
    palette.setColor(_Group.Disabled, _Role.Button, QColor(disabled["button"]))
    palette.setColor(_Group.Disabled, _Role.Highlight, QColor(disabled["highlight"]))
    return palette


def system_scheme() -> str:
    """ "dark" when the desktop asks for a dark colour scheme, else "light"."""
    hints = QGuiApplication.styleHints()
    return "dark" if hints.colorScheme() == Qt.ColorScheme.Dark else "light"


def resolve_theme(theme: str) -> str:
    """The scheme a theme setting means now: "light" or "dark"."""
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}; use one of {', '.join(THEMES)}")
    return system_scheme() if theme == "system" else theme


def apply_theme(app: QApplication, theme: str) -> str:
    """Give ``app`` the Fusion style and the palette of ``theme``; returns "light" or "dark".

    With "system" the palette follows the desktop's colour scheme, also when the user switches
    it while the app runs.
    """
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}; use one of {', '.join(THEMES)}")
    hints = app.styleHints()
    if theme == "system":
        hints.unsetColorScheme()
    else:
        hints.setColorScheme(Qt.ColorScheme.Dark if theme == "dark" else Qt.ColorScheme.Light)
    scheme = resolve_theme(theme)
    app.setStyle("Fusion")
    app.setPalette(palette_for(scheme))
    _FOLLOWING_SYSTEM["active"] = theme == "system"
    if not _FOLLOWING_SYSTEM["connected"]:
        hints.colorSchemeChanged.connect(_on_system_scheme_changed)
        _FOLLOWING_SYSTEM["connected"] = True
    return scheme


def _on_system_scheme_changed(_scheme: Qt.ColorScheme) -> None:
    app = QApplication.instance()
    if _FOLLOWING_SYSTEM["active"] and isinstance(app, QApplication):
        app.setPalette(palette_for(system_scheme()))


def is_dark(palette: QPalette) -> bool:
    """Whether ``palette`` draws light text on a dark window."""
    return palette.color(_Role.Window).lightness() < palette.color(_Role.WindowText).lightness()


def status_colour(palette: QPalette, kind: str) -> QColor:
    """The "ok", "warn" or "error" colour that reads well on ``palette``'s background."""
    return QColor(_STATUS["dark" if is_dark(palette) else "light"][kind])
