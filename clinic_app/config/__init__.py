"""Typed settings, platformdirs paths, logging and the asset locator."""

from __future__ import annotations

from clinic_app.config.assets import asset_path, assets_dir, shipped_bundles_dir
from clinic_app.config.logging_setup import setup_logging
from clinic_app.config.settings import Settings, default_data_dir, ensure_data_dirs, load_settings

__all__ = [
    "Settings",
    "asset_path",
    "assets_dir",
    "default_data_dir",
    "ensure_data_dirs",
    "load_settings",
    "setup_logging",
    "shipped_bundles_dir",
]
