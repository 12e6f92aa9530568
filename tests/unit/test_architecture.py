"""The first window must not wait for torch, monai or transformers (~5 s to import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "monai", "transformers", "sentence_transformers")


def loaded_modules(statement: str) -> set[str]:
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        check=True,
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "statement",
    [
        "import clinic_app.cli",
        "import clinic_app.app",
        "import clinic_app.gui.application",
        "import model, model.bundle",
    ],
)
def test_startup_path_has_no_heavy_ml_imports(statement: str) -> None:
    modules = loaded_modules(statement)
    assert not {name for name in HEAVY if name in modules}


def test_cli_without_gui_does_not_load_qt() -> None:
    modules = loaded_modules("import clinic_app.cli, clinic_app.services.diagnostics")
    assert "PySide6" not in modules
