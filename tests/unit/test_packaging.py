"""The wheel must contain every package and the shipped assets."""

from __future__ import annotations

import tomllib

from clinic_app.config.assets import asset_path, assets_dir
from tests.conftest import PROJECT_ROOT


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(PROJECT_ROOT).parts)
        for top in ("clinic_app", "model")
        for init in (PROJECT_ROOT / top).rglob("__init__.py")
    } | {"clinic_app.assets"}
    assert on_disk == listed


def test_assets_are_found_through_the_package() -> None:
    assert (assets_dir() / "__init__.py").is_file()
    icon = asset_path("icons", "clinicfusion.svg")
    assert icon.is_file()
    assert "<svg" in icon.read_text(encoding="utf-8")
