"""`clinic-app`: the one entry point. Every capability of the app is a subcommand.

With no command it opens the GUI. Errors a person can act on (ClinicError) print one sentence
and exit with the error's code; anything else is a bug, logged with its traceback.

Each implemented command lives in its own module of this package, with ``register(commands)``
adding its sub-parser and setting ``handler=`` to a ``(settings, args) -> int`` function; the
modules import their services lazily so that `clinic-app --version` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from clinic_app._version import __version__
from clinic_app.config.settings import ENV_DATA_DIR, ENV_KEYS_DIR, Settings, load_settings
from clinic_app.domain.errors import ClinicError, NotAvailable
from clinic_app.services.diagnostics import QT_PROBE_COMMAND

log = logging.getLogger(__name__)


#: Modules of this package that implement commands, in the order --help lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "users",
    "stats",
    "db",
    "audit",
    "inspect",
    "predict",
    "train",
    "evaluate",
    "demo",
    "report",
    "imports",
    "batch",
    "smoke",
)

#: keyring's back end that refuses every call: key files are used, and a database key is
#: never "stored" where it would be lost (keyring's null back end silently drops it).
NO_KEYRING = "keyring.backends.fail.Keyring"

#: Commands the frozen desktop bundle leaves out (its training code is not packaged).
PYTHON_INSTALL_ONLY = ("train", "evaluate")

#: The commands of the interface contract (CONVENTIONS.md), each implemented by a module above.
CONTRACT_COMMANDS: tuple[str, ...] = (
    "gui", "demo", "predict", "import", "batch", "report", "train", "audit", "db",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clinic-app",
        description=(
            "ClinicFusion: multimodal clinical decision support for research and "
            "demonstration (not a validated medical device). Without a command, opens the "
            "desktop app."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ClinicFusion {__version__}")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="use DIR for the database, logs and exports instead of the per-user default "
        "(also CLINICFUSION_DATA_DIR)",
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR for the log file (default INFO)",
    )
    parser.add_argument(
        "--portable",
        action="store_true",
        help="keep the data and keys beside the executable (ClinicFusion-data/, "
        "ClinicFusion-keys/); also a file 'portable.flag' there or CLINICFUSION_PORTABLE=1",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="check this installation end to end in a temporary folder and exit (the same as "
        "the 'smoke' command)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("gui", help="open the desktop app (the default)").set_defaults(
        handler=_cmd_gui
    )

    doctor = commands.add_parser(
        "doctor",
        help="report Python, PyTorch/CUDA, Qt, data folder, database and model bundle; "
        "exit 1 if something is broken",
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.set_defaults(handler=_cmd_doctor)

    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"clinic_app.cli.{module_name}")
        module.register(commands)
    return parser


def _cmd_gui(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.app import launch_gui

    return launch_gui(settings)


def _cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.diagnostics import run_doctor

    report = run_doctor(settings)
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


Handler = Callable[[Settings, argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]), run the command, return the exit status."""
    # A frozen bundle re-runs its own executable for the model process and the read sandbox
    # (multiprocessing "spawn"/"forkserver"): those children divert here and never return.
    multiprocessing.freeze_support()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == [QT_PROBE_COMMAND]:
        # Internal: `doctor` starts Qt in a child process so a broken plugin cannot crash it.
        from clinic_app.gui.probe import qt_probe

        return qt_probe()
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.smoke and args.command not in (None, "smoke"):
        parser.error("--smoke runs on its own; leave out the command")
    if args.smoke and args.command is None:
        args = parser.parse_args([*arguments, "smoke"])
    command = args.command or "gui"
    try:
        if getattr(sys, "frozen", False) and command in PYTHON_INSTALL_ONLY:
            raise NotAvailable(
                f"'{command}' is not part of the desktop bundle; use the Python install for "
                "training and evaluation (pip install 'clinicfusion[train]', see the README)."
            )
        standalone: Callable[[argparse.Namespace], int] | None = getattr(args, "standalone", None)
        if standalone is not None:  # e.g. `smoke`: its own temporary settings, not the user's
            return standalone(args)
        settings = load_settings(args.data_dir, log_level=args.log_level, portable=args.portable)
        if settings.portable:
            _export_portable(settings)
        handler: Handler = getattr(args, "handler", _cmd_gui)
        return handler(settings, args)
    except ClinicError as exc:
        print(f"clinic-app: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("clinic-app: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`clinic-app audit show | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception:
        log_file = _log_file()
        if log_file is None:
            traceback.print_exc()
        else:
            log.exception("Unexpected error in `clinic-app %s`", command)
        where = f"details are in {log_file}" if log_file else "the details are above"
        print(
            f"clinic-app: unexpected error in '{command}'; {where}. Please report it with "
            "the output of `clinic-app doctor`.",
            file=sys.stderr,
        )
        return 70


def _export_portable(settings: Settings) -> None:
    """Portable mode: child processes and code that reads the environment see the same folders,
    and no secret goes into this computer's OS keyring (the key files travel with the data)."""
    os.environ.setdefault(ENV_DATA_DIR, str(settings.data_dir))
    os.environ.setdefault(ENV_KEYS_DIR, str(settings.keys_dir))
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", NO_KEYRING)


def _log_file() -> str | None:
    """The log file that records tracebacks, if logging to a file has been set up."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None
