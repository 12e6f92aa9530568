"""`clinic-app demo`: seed (or reset) the composite demo cases.

The command line acts as ``Actor.system()`` (an administrator); the cases themselves are
recorded as created by the system in the clinician role, as on the desktop's first run.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from clinic_app.cli._database import open_cli_database
from clinic_app.config.settings import Settings


def register(commands: Any) -> None:
    """Add ``demo`` to the ``clinic-app`` parser."""
    demo = commands.add_parser(
        "demo",
        help="seed or reset the composite demo cases",
        description="Create the composite demo cases (real public ECG and pathology files with "
        "notes the team wrote, each from a different source: no case is one patient). Does "
        "nothing when demo cases exist, unless --reset is given.",
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
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.set_defaults(handler=_cmd_demo)


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.cases import CaseService
    from clinic_app.services.context import Actor
    from clinic_app.services.demo_cases import demo_case_uids, describe, seed_demo_cases
    from clinic_app.services.ingest import IngestService

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
            progress=None if args.json else print,
        )
        existing = demo_case_uids(cases)
    finally:
        database.dispose()
    if args.json:
        print(json.dumps({"created": [describe(s) for s in created], "demo_cases": existing}))
        return 0
    if not created:
        print(
            f"{len(existing)} demo case(s) exist already; nothing was created "
            "(use --reset to create them again)."
        )
        return 0
    print(f"Created {len(created)} composite demo case(s):")
    for summary in created:
        print(f"  {summary.case_uid}  {summary.patient_pseudonym:<22}  {summary.title}")
    return 0
