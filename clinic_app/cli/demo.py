"""`clinic-app demo`: seed (or reset) the composite demo cases, analyse them and write their
explanation reports, headless: a first look at the app and a smoke test of the whole chain.

The command line acts as ``Actor.system()`` (an administrator) to seed; the cases are recorded
as created by the system in the clinician role, as on the desktop's first run. Analysing and
reporting use that same system clinician, and only ever on the composite demo cases (public
data of different people, no patient): a real case's report needs a signed-in clinician
(`clinic-app report --user`). Every step is audited as "system".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from clinic_app.cli._database import open_cli_database
from clinic_app.config.settings import Settings
from clinic_app.domain.records import ReportKind

#: The demo's reports go to this folder of the exports dir unless --reports names another.
DEMO_REPORTS_FOLDER = "demo-reports"
DEMO_REPORT_KINDS = (ReportKind.PDF, ReportKind.DICOM_PDF, ReportKind.FHIR)


def register(commands: Any) -> None:
    """Add ``demo`` to the ``clinic-app`` parser."""
    demo = commands.add_parser(
        "demo",
        help="seed or reset the composite demo cases",
        description="Create the composite demo cases (real public ECG and pathology files with "
        "notes the team wrote, each from a different source: no case is one patient), analyse "
        "those not analysed yet with the model and write their explanation reports (PDF, "
        "DICOM, FHIR) to the exports folder. Seeding does nothing when demo cases exist, "
        "unless --reset is given.",
    )
    demo.add_argument(
        "--reset",
        action="store_true",
        help="delete the unsigned demo cases first, then create them again",
    )
    demo.add_argument(
        "--case",
        action="append",
        metavar="KEY",
        dest="keys",
        help="create only this recipe case (repeatable; default: all)",
    )
    demo.add_argument(
        "--no-analyse",
        action="store_false",
        dest="analyse",
        help="only seed the cases: no analysis, no reports",
    )
    demo.add_argument(
        "--reports",
        type=Path,
        metavar="DIR",
        help=f"write the reports here (default: <data dir>/exports/{DEMO_REPORTS_FOLDER})",
    )
    demo.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        help="where the model runs (default: the settings' device)",
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.set_defaults(handler=_cmd_demo)


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.reporting.data import COMPOSITE_NOTICE
    from clinic_app.services.cases import CaseService
    from clinic_app.services.context import Actor
    from clinic_app.services.demo_cases import demo_case_uids, describe, seed_demo_cases
    from clinic_app.services.ingest import IngestService

    say = _Say(quiet=args.json)
    analysed: list[str] = []
    summary = None
    database = open_cli_database(settings)
    try:
        cases = CaseService(database, settings.inputs_dir)
        ingest = IngestService.from_settings(cases, settings)
        created = seed_demo_cases(
            cases,
            ingest,
            Actor.system(),
            reset=args.reset,
            keys=args.keys,
            progress=say,
        )
        existing = demo_case_uids(cases)
        if args.analyse and existing:
            folder = args.reports or settings.exports_dir / DEMO_REPORTS_FOLDER
            actor = _demo_clinician()
            analysed = _analyse_missing(cases, settings, actor, existing, args.device, say)
            say(f"Writing the reports of {len(existing)} demo case(s) to {folder}…")
            from clinic_app.services.reports import export_reports

            summary = export_reports(
                cases, settings, actor, existing, folder, kinds=DEMO_REPORT_KINDS, overwrite=True
            )
    finally:
        database.dispose()
    if args.json:
        out: dict[str, Any] = {
            "created": [describe(s) for s in created],
            "demo_cases": existing,
            "composite": True,
            "notice": COMPOSITE_NOTICE,
            "analysed": analysed,
        }
        if summary is not None:
            out["reports_dir"] = str(summary.out)
            out["manifest"] = str(summary.manifest)
            out["reports"] = [
                {
                    "case_uid": r.case_uid,
                    "kind": r.kind.value,
                    "path": str(r.path),
                    "sha256": r.sha256,
                }
                for r in summary.reports
            ]
            out["failures"] = [
                {"case_uid": f.case_uid, "reason": f.reason} for f in summary.failures
            ]
        print(json.dumps(out))
        return 1 if summary is not None and summary.failures else 0
    if created:
        print(f"Created {len(created)} composite demo case(s):")
        for case in created:
            print(f"  {case.case_uid}  {case.patient_pseudonym:<22}  {case.title}")
    else:
        print(
            f"{len(existing)} demo case(s) exist already; nothing was created "
            "(use --reset to create them again)."
        )
    print(COMPOSITE_NOTICE)
    if summary is None:
        return 0
    if analysed:
        print(f"Analysed {len(analysed)} demo case(s) with the model.")
    print(f"Reports ({len(summary.reports)} files, listed with sha256 in {summary.manifest}):")
    for report in summary.reports:
        print(f"  {report.path}")
    for failure in summary.failures:
        print(f"  not exported: {failure.case_uid}: {failure.reason}")
    return 1 if summary.failures else 0


class _Say:
    """Progress lines on standard error (nothing with --json, whose stdout is one object)."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


def _demo_clinician() -> Any:
    """The app itself in the clinician role (as when it seeds the cases): demo cases only."""
    from clinic_app.domain.records import Role
    from clinic_app.services.context import Actor, workstation_name

    return Actor(None, "system", Role.CLINICIAN, workstation_name())


def _analyse_missing(
    cases: Any, settings: Settings, actor: Any, case_uids: list[str], device: str | None, say: _Say
) -> list[str]:
    """Analyse (in this process) every demo case that has no analysis and can still change."""
    from clinic_app.services.case_analysis import analyse_case

    done: list[str] = []
    for case_uid in case_uids:
        detail = cases.get_case(actor, case_uid)
        if detail.latest_analysis is not None or detail.summary.status.read_only:
            continue
        say(f"Analysing {case_uid} ({detail.summary.title})…")
        analyse_case(cases, settings, actor, case_uid, device=device or settings.device)
        done.append(case_uid)
    return done
