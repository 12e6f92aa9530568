"""The ECG viewer: calibrated 12-lead paper, rhythm strip, calipers and relevance shading."""

from __future__ import annotations

from clinic_app.gui.ecg.viewer import EMPTY_TEXT, EcgViewer

__all__ = ["EMPTY_TEXT", "EcgViewer"]
