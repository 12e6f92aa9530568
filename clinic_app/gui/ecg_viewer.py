"""The ECG viewer of the case workspace (the implementation lives in :mod:`clinic_app.gui.ecg`)."""

from __future__ import annotations

from clinic_app.gui.ecg import EMPTY_TEXT, EcgViewer

__all__ = ["EMPTY_TEXT", "EcgViewer"]
