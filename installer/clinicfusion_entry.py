"""Entry point of the frozen ClinicFusion bundle (PyInstaller analyses this script).

``freeze_support()`` comes before anything else: the model process and the read sandbox are
started by re-running this executable, and those children must divert to multiprocessing's
code before the app's own (heavier) imports and its argument parser see their arguments.
"""

from __future__ import annotations

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from clinic_app.cli import main

    sys.exit(main())
