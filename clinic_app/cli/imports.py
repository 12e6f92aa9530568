"""`clinic-app import PATH`: import many cases from a folder or a manifest.

Every bad file or row is reported with its reason while the good ones import; a source already
imported is skipped, so the same command can be run again after fixing the errors. The command
line acts as the system in the clinician role (creating cases is a clinician's permission; an
administrator may run the import but not create cases as themselves), as `demo` does.
Ctrl-C stops after the file being imported; what is done stays and the report says what not.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from clinic_app.cli._database import open_cli_database
from clinic_app.config.settings import Settings

EPILOG = """\
A folder holds one sub-folder per case; the sub-folder's name is the case id. Inside it:
  image or slide files (PNG, JPEG, TIFF, SVS, DICOM), an ECG (DICOM ECG, or a WFDB record:
  the .hea header with its .dat files), notes (.txt, .md), a folder of DICOM instances of one
  whole slide, optional vitals.json / vitals.csv (the vital-sign columns below) and an optional
  case.json {"title", "patient_id", "birth_year" or "age_years", "sex"}.

A manifest (.csv with a header line, .json array of objects, or .jsonl one object per line):
  case_id      required; rows with the same case_id add to one case
  image, ecg, note
               paths relative to the manifest's folder (a .hea, or a folder of instances)
  title        optional title (default "Imported <date>"; never the case id)
  patient_id   optional medical record number, stored only encrypted
  birth_year or age_years, sex (female, male, other, unknown)
  vital signs  heart_rate_bpm, systolic_mmhg, diastolic_mmhg (or blood_pressure "120/80"),
               spo2_percent, temperature_c (temperature_unit "°F" for Fahrenheit),
               respiratory_rate_per_min, measured_at (ISO date and time);
               or one column "vitals" holding a JSON object with these keys
An unknown column stops the whole manifest (so a typo never drops a value silently).

Example manifest.csv:
  case_id,image,ecg,note,birth_year,sex,heart_rate_bpm,blood_pressure
  S24-0012,slides/s24-0012.svs,ecg/s24-0012.hea,notes/s24-0012.txt,1961,female,72,120/80
  S24-0013,,ecg/s24-0013.dcm,notes/s24-0013.txt,,,,

Case ids (often accession numbers) are not stored in clear: the case keeps a keyed digest of
the id, so importing the same id again adds to the same case. Each source's keyed digest is
kept too: a file already imported, or listed twice, is skipped as a duplicate.

Exit status 0 when everything was imported or already there, 1 when anything failed or was
not done (the summary and the report list every error), 65 when PATH cannot be read at all.
"""


def register(commands: Any) -> None:
    """Add ``import`` to the ``clinic-app`` parser."""
    parser = commands.add_parser(
        "import",
        help="import many cases from a folder (one sub-folder per case) or a CSV/JSON manifest",
        description="Import many cases at once: each file is read safely (in a capped child "
        "process), de-identified and stored, audited. Bad files and rows are reported with "
        "their reason while the good ones import; files imported before are skipped.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path", type=Path, metavar="PATH", help="a folder of case folders, or a manifest"
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write the import report here (.json for JSON, else text; default: "
        "<data dir>/exports/imports/import-<time>.txt)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as one JSON object instead"
    )
    parser.set_defaults(handler=_cmd_import)


def _cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.domain.records import Role
    from clinic_app.services.app_services import AppServices
    from clinic_app.services.batch_import import (
        default_report_path,
        plan_import,
        run_import,
        write_import_report,
    )
    from clinic_app.services.context import Actor, workstation_name

    plan = plan_import(args.path)
    if not args.json:
        print(
            f"{len(plan.cases)} case(s) with {plan.item_count} input(s) to import"
            + (f"; {len(plan.problems)} problem(s) in the listing" if plan.problems else "")
            + ".",
            file=sys.stderr,
        )
    actor = Actor(None, "system", Role.CLINICIAN, workstation_name())
    stop = _Interrupt()
    database = open_cli_database(settings)
    try:
        services = AppServices.create(settings, database)
        with stop:
            report = run_import(
                services.cases,
                services.ingest,
                actor,
                plan,
                progress=None if args.json else _print_progress,
                cancel=stop.requested,
            )
    finally:
        database.dispose()
    path = args.report or default_report_path(settings.exports_dir)
    write_import_report(report, path)
    if args.json:
        print(json.dumps({**report.to_json(), "report": str(path)}, ensure_ascii=False))
    else:
        print(report.to_text())
        print(f"Report: {path}")
    return 0 if report.ok else 1


def _print_progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


class _Interrupt:
    """Turns the first Ctrl-C into a cancel request (a second one interrupts at once)."""

    def __init__(self) -> None:
        self._requested = False
        self._previous: Any = None

    def requested(self) -> bool:
        return self._requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._requested:
            raise KeyboardInterrupt
        self._requested = True
        print(
            "Stopping after the current file (Ctrl-C again to stop at once)...",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> _Interrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (tests calling main() from a worker)
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
