"""ClinicFusion desktop application: multimodal clinical decision support for research use."""

from __future__ import annotations

from clinic_app._version import __version__

__all__ = ["__version__"]
