"""The Qt binding must not leak references to True/None: PySide6 6.12.0 on CPython 3.11 drops
one per signal emit and per call back into Python, and a long session then aborts the process
("Fatal Python error: bool_dealloc"). Checked in a child, since the failure is an abort."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui

PROBE = r"""
import sys
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

app = QCoreApplication([])


class Emitter(QObject):
    fired = Signal(object)


emitter = Emitter()
emitter.fired.connect(lambda value: None)
true_refs, none_refs = sys.getrefcount(True), sys.getrefcount(None)
for _ in range(3000):
    emitter.fired.emit(1)
ticks = []
timer = QTimer()
timer.timeout.connect(lambda: ticks.append(1) if len(ticks) < 200 else app.quit())
timer.start(0)
app.exec()
print(true_refs - sys.getrefcount(True), none_refs - sys.getrefcount(None))
"""


def test_signals_and_callbacks_keep_python_singletons_alive() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lost_true, lost_none = (int(v) for v in done.stdout.split())
    assert abs(lost_true) < 50 and abs(lost_none) < 50, done.stdout
