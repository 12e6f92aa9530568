"""Training, evaluation and bundle building (not needed at run time)."""

from __future__ import annotations
