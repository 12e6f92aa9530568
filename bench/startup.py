"""Start-up time of the desktop app: launch -> login dialog shown -> main window shown.

Each run starts a fresh interpreter (as the desktop launcher does) on a data folder with one
account, so the login dialog appears (not the first-run set-up). The child signs in by filling
the dialog and reports when each window is first shown, and whether torch, monai or
transformers were imported by then (they must not be: they load in the model process).

Baseline, measured in the same run: a bare PySide6 program that shows one empty widget; the
ratio says how much the app adds to what any Qt program costs here. Goal (issue 7): the window
is usable within 1.5 s of launch. Medians of several runs after a warm-up.

    python -m bench.startup [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import cpu_busy_fraction

USER, PASSWORD = "bench-clinician", "bench-password-2026!"

BASELINE = r"""
import sys, time
from PySide6.QtWidgets import QApplication, QWidget
app = QApplication(sys.argv[:1])
w = QWidget(); w.resize(800, 600); w.show()
app.processEvents()
print('{"shown": %r}' % time.time(), flush=True)
"""

CHILD = r"""
import json, os, sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QDialog, QLineEdit, QMainWindow, QWidget

HEAVY = ("torch", "monai", "transformers")
report = {}


class Probe(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Show and isinstance(obj, QWidget) and obj.isWindow():
            name = type(obj).__name__
            if isinstance(obj, QDialog) and "login" not in report:
                report["login"] = time.time()
                report["heavy_at_login"] = [m for m in HEAVY if m in sys.modules]
                QTimer.singleShot(0, lambda: sign_in(obj))
            elif isinstance(obj, QMainWindow) and name == "MainWindow" and "main" not in report:
                report["main"] = time.time()
                report["heavy_at_main"] = [m for m in HEAVY if m in sys.modules]
                print(json.dumps(report), flush=True)
                os._exit(0)
        return False


def sign_in(dialog):
    fields = dialog.findChildren(QLineEdit)
    secret = [f for f in fields if f.echoMode() == QLineEdit.EchoMode.Password]
    plain = [f for f in fields if f.echoMode() != QLineEdit.EchoMode.Password]
    plain[0].setText(sys.argv[2])
    secret[0].setText(sys.argv[3])
    report["login_submitted"] = time.time()
    button = getattr(dialog, "sign_in_button", None)
    if button is not None:
        button.click()
    else:
        secret[0].returnPressed.emit()


from clinic_app.gui.application import create_application

app = create_application()
probe = Probe()
app.installEventFilter(probe)
from clinic_app.cli import main

sys.exit(main(["--data-dir", sys.argv[1], "gui"]))
"""


def prepare(data_dir: Path) -> None:
    from clinic_app.config.settings import load_settings
    from clinic_app.domain.records import Role
    from clinic_app.services.database import open_database
    from clinic_app.services.users import authenticate, create_first_admin, create_user

    settings = load_settings(data_dir, environ=dict(os.environ))
    database = open_database(settings)
    create_first_admin(database, "bench-admin", PASSWORD)
    admin = authenticate(database, "bench-admin", PASSWORD)
    create_user(database, admin, USER, PASSWORD, Role.CLINICIAN)  # lands on the case list
    database.dispose()


def run(code: str, *args: str) -> tuple[float, dict[str, float]]:
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no report from the child:\n{out.stdout}\n{out.stderr[-3000:]}")
    return started, json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    busy = cpu_busy_fraction()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        os.environ["CLINICFUSION_KEYS_DIR"] = str(Path(tmp) / "keys")
        prepare(data_dir)
        base, login, main_after = [], [], []
        heavy: set[str] = set()
        for index in range(args.runs + 1):  # the first run warms the file cache
            started, report = run(BASELINE)
            b = report["shown"] - started
            started, report = run(CHILD, str(data_dir), USER, PASSWORD)
            heavy.update(report.get("heavy_at_login", []) + report.get("heavy_at_main", []))
            if index == 0:
                continue
            base.append(b)
            login.append(report["login"] - started)
            main_after.append(report["main"] - report["login_submitted"])
    med = statistics.median
    print(f"CPU busy before the runs: {busy:.0%} (rerun if high)")
    print(f"{'figure':<44}{'median s':>10}{'ratio':>8}")
    print(f"{'bare PySide6 window shown (baseline)':<44}{med(base):>10.2f}{1.0:>8.2f}")
    print(f"{'launch -> login dialog shown':<44}{med(login):>10.2f}{med(login) / med(base):>8.2f}")
    print(f"{'sign in -> main window shown':<44}{med(main_after):>10.2f}{'':>8}")
    print(f"runs: {args.runs}; heavy ML modules imported by then: {sorted(heavy) or 'none'}")
    print("goal: usable within 1.5 s of launch:", "met" if med(login) <= 1.5 else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
