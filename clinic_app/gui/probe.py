"""Start Qt in this (child) process and print what it sees as one JSON line (for `doctor`)."""

from __future__ import annotations

import json
import sys


def qt_probe() -> int:
    """Create a QGuiApplication and print PySide6/Qt versions and the platform plugin name."""
    import PySide6
    from PySide6.QtCore import qVersion
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    facts = {
        "pyside6": PySide6.__version__,
        "qt": qVersion(),
        "platform": QGuiApplication.platformName(),
        "screens": len(QGuiApplication.screens()),
    }
    del app
    sys.stdout.write(json.dumps(facts) + "\n")
    sys.stdout.flush()
    return 0
