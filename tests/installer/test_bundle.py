"""The frozen one-folder bundle: built with installer/build.sh (PyInstaller), which runs the
bundle's --smoke check; then the frozen CLI and portable mode are checked. Takes 10-20 min."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinic_app._version import __version__

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="build.sh runs here on Linux"),
]


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


def test_build_bundle_smoke_and_portable_mode(tmp_path: Path) -> None:
    pytest.importorskip("PyInstaller", reason="pip install -e '.[installer]'")
    dist = tmp_path / "dist"
    started = time.monotonic()
    build = _run(
        [str(ROOT / "installer" / "build.sh"), "--venv", sys.prefix, "--dist", str(dist)],
        cwd=ROOT,
        timeout=3300,
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output[-6000:]
    assert "Smoke check passed" in output
    print(f"build.sh (build, smoke, archive) took {time.monotonic() - started:.0f} s")
    print("\n".join(line for line in build.stdout.splitlines() if line.startswith(("==", "  "))))

    folder = dist / "ClinicFusion"
    exe = folder / "ClinicFusion"
    assert os.access(exe, os.X_OK)
    archives = list(dist.glob(f"ClinicFusion-{__version__}-linux-*.tar.*"))
    assert len(archives) == 1 and archives[0].stat().st_size > 0
    internal = folder / "_internal"
    # Included: the model bundle, migrations (as source), Qt's platform plugins, the fonts.
    assert (internal / "clinic_app" / "assets" / "bundles" / "clinicfusion-demo").is_dir()
    assert (internal / "clinic_app" / "storage" / "migrations" / "versions").is_dir()
    plugins = internal / "PySide6" / "Qt" / "plugins" / "platforms"
    assert (plugins / "libqxcb.so").is_file() and (plugins / "libqoffscreen.so").is_file()
    assert (internal / "matplotlib" / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf").is_file()
    # Excluded: tests, training code, build and notebook tools.
    names = {path.name for path in internal.iterdir()}
    assert not names & {"tests", "pytest", "tensorboard", "opacus", "sklearn", "IPython", "tkinter"}
    # Python modules live in the PYZ archive; its table of contents is in PyInstaller's workpath.
    pyz_toc = (ROOT / "build" / "pyinstaller" / "clinicfusion" / "PYZ-00.toc").read_text()
    assert "'clinic_app.services.smoke'" in pyz_toc and "'model.predictor'" in pyz_toc
    for left_out in ("model.training", "sklearn", "tensorboard", "opacus", "pytest", "IPython"):
        assert f"'{left_out}" not in pyz_toc, left_out

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("CLINICFUSION_DATA_DIR", None)
    version = _run([str(exe), "--version"], env=env, timeout=120)
    assert version.stdout.strip() == f"ClinicFusion {__version__}"
    train = _run([str(exe), "train", "--manifest", "m.csv", "--out", "x"], env=env, timeout=120)
    assert train.returncode == 2 and "use the Python install" in train.stderr

    # Portable mode: a marker file beside the executable puts data and keys beside it.
    (folder / "portable.flag").touch()
    upgrade = _run([str(exe), "db", "upgrade"], env=env, timeout=300)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert (folder / "ClinicFusion-data" / "clinicfusion.sqlite3").is_file()
