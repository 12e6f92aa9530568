"""`clinic-app smoke` (also `clinic-app --smoke`, `ClinicFusion --smoke`): check this
installation end to end in a temporary folder, print a short summary, exit 0, or 1 naming the
step that failed. The user's data folder, keys and OS keyring are never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

#: keyring's refusing back end: the throwaway audit key goes to a file in the temp folder.
_NO_KEYRING = "keyring.backends.fail.Keyring"


def register(commands: Any) -> None:
    """Add ``smoke`` to the ``clinic-app`` parser."""
    smoke = commands.add_parser(
        "smoke",
        help="check this installation end to end in a temporary folder",
        description="Create a fresh database in a temporary folder, seed one composite demo "
        "case, show the main window offscreen, analyse the case in the model process, write "
        "its PDF report and verify the audit trail. Prints one line per step; exits 0 when "
        "all pass. Your own data, keys and OS keyring are not touched.",
    )
    smoke.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default="auto",
        help="where the model runs (default auto: CUDA or MPS when present)",
    )
    smoke.add_argument(
        "--no-window",
        action="store_false",
        dest="window",
        help="skip the Qt check (the main window shown offscreen)",
    )
    smoke.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder (its path is printed) to look at the report",
    )
    smoke.set_defaults(standalone=run)


def run(args: argparse.Namespace) -> int:
    """Run the smoke check (needs no settings of the user's: it makes its own)."""
    # Before Qt or keyring load: no window on the desktop, no secret in the OS keyring.
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ["PYTHON_KEYRING_BACKEND"] = _NO_KEYRING
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from clinic_app._version import __version__
    from clinic_app.services.smoke import SmokeCheckFailed, run_smoke

    window = None
    if args.window:
        from clinic_app.gui.smoke import window_check

        window = window_check
    root = Path(tempfile.mkdtemp(prefix="clinicfusion-smoke-"))
    frozen = "frozen bundle" if getattr(sys, "frozen", False) else "Python install"
    print(f"ClinicFusion {__version__} smoke check ({frozen}) in {root}", flush=True)
    try:
        result = run_smoke(
            root,
            device=args.device,
            window_check=window,
            progress=lambda text: print(f"  {text}", file=sys.stderr, flush=True),
        )
    except SmokeCheckFailed as exc:
        print(f"FAILED: {exc}", flush=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        return exc.exit_code
    for step in result.steps:
        print(f"  ok  {step.name:<12} {step.seconds:6.1f} s  {step.detail}", flush=True)
    if args.keep:
        print(f"Kept {root} (report: {result.report})")
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(f"Smoke check passed in {result.seconds:.1f} s.", flush=True)
    return 0
