"""The Linux per-user installer, launcher and icons: install into a throwaway HOME, run the
command, upgrade in place, uninstall, and check the user's data is still there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from clinic_app._version import __version__

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "installer"
ICONS = ROOT / "assets" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux installer")


def test_desktop_file_names_the_app_and_its_intended_use() -> None:
    entries = dict(
        line.split("=", 1)
        for line in (INSTALLER / "linux" / "clinicfusion.desktop").read_text().splitlines()
        if "=" in line
    )
    assert entries["Name"] == "ClinicFusion"
    assert "research and demonstration use only" in entries["Comment"]
    assert entries["Icon"] == "clinicfusion"
    # Qt's X11 WM_CLASS is the application name; Wayland's app id is the desktop file name.
    assert entries["StartupWMClass"] == "ClinicFusion"
    application = (ROOT / "clinic_app" / "gui" / "application.py").read_text()
    assert 'setApplicationName("ClinicFusion")' in application
    assert 'setDesktopFileName("clinicfusion")' in application


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils")
def test_desktop_file_passes_desktop_file_validate() -> None:
    result = subprocess.run(
        ["desktop-file-validate", str(INSTALLER / "linux" / "clinicfusion.desktop")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_icons_are_rendered_at_every_size() -> None:
    assert (ICONS / "clinicfusion.svg").read_text().lstrip().startswith("<?xml")
    for size in PNG_SIZES:
        with Image.open(ICONS / f"clinicfusion-{size}.png") as image:
            assert image.format == "PNG" and image.size == (size, size) and image.mode == "RGBA"
    with Image.open(ICONS / "clinicfusion.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(ICONS / "clinicfusion.icns") as icns:
        assert icns.format == "ICNS"


def _run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@linux_only
def test_install_upgrade_uninstall_keeps_the_users_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data_home, config_home = home / ".local" / "share", home / ".config"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(data_home),
        "XDG_CONFIG_HOME": str(config_home),
    }
    env.pop("XDG_BIN_HOME", None)
    # The fast path: this test's own environment has ClinicFusion installed, so no venv is
    # built and nothing is downloaded (the venv path is the same script with pip in front).
    install = [str(INSTALLER / "install-linux.sh"), "--use-env", sys.prefix]
    out = _run(install, env)
    assert f"Installed ClinicFusion {__version__}" in out

    wrapper = home / ".local" / "bin" / "clinicfusion"
    desktop = data_home / "applications" / "clinicfusion.desktop"
    app_home = data_home / "clinicfusion-app"
    assert os.access(wrapper, os.X_OK)
    assert f"Exec={wrapper}" in desktop.read_text()
    for size in PNG_SIZES:
        assert (
            data_home / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "clinicfusion.png"
        ).is_file()
    assert (data_home / "icons" / "hicolor" / "scalable" / "apps" / "clinicfusion.svg").is_file()
    assert os.access(app_home / "uninstall.sh", os.X_OK)
    assert _run([str(wrapper), "--version"], env).strip() == f"ClinicFusion {__version__}"
    if shutil.which("desktop-file-validate"):
        _run(["desktop-file-validate", str(desktop)], env)

    # The user's data (created by the app itself) survives an upgrade and the uninstall.
    _run([str(wrapper), "db", "upgrade"], env)
    database = data_home / "ClinicFusion" / "clinicfusion.sqlite3"
    assert database.is_file()
    before = database.read_bytes()

    out = _run(install, env)  # re-running upgrades in place
    assert f"Installed ClinicFusion {__version__}" in out
    assert database.read_bytes() == before

    out = _run([str(app_home / "uninstall.sh")], env)
    assert "Your data was kept" in out and str(database.parent) in out
    assert not wrapper.exists() and not desktop.exists() and not app_home.exists()
    assert not (data_home / "icons" / "hicolor" / "48x48" / "apps" / "clinicfusion.png").exists()
    assert database.read_bytes() == before
    assert Path(sys.prefix, "bin", "clinic-app").exists(), "an existing env is never removed"
