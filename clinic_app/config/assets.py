"""Find files shipped with the app (icons, styles, model bundles) in every install mode."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def assets_dir() -> Path:
    """The installed ``assets/`` folder (package ``clinic_app.assets``)."""
    return Path(str(resources.files("clinic_app.assets")))


def asset_path(*parts: str) -> Path:
    """Path of one shipped asset, e.g. ``asset_path("icons", "clinicfusion.svg")``."""
    return assets_dir().joinpath(*parts)


def shipped_bundles_dir() -> Path:
    """Where model bundles that ship with the app live."""
    return asset_path("bundles")
