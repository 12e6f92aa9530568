"""`clinic-app report`: export cases' explanation reports as PDF, DICOM Encapsulated PDF or
FHIR R4 JSON; one case to a file or folder, several (or ``--all``) to a folder or a .zip with
a manifest of sha256s.

Who exports: a named clinician or reviewer, signed in for this command (``--user``; the
password is asked for on the terminal, read with ``--password-stdin``, or taken from
``CLINICFUSION_PASSWORD`` for unattended jobs). Not the ``system`` administrator the other
commands act as: administrators may not read clinical content (least privilege), and a report
carries the name of the person who exported it, as does every ``case.read`` and
``report.export`` event in the audit trail. The sign-in and sign-out are audited too.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinic_app.cli._database import open_cli_database
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import AccessDenied, InputError
from clinic_app.domain.records import CaseStatus, ReportKind

if TYPE_CHECKING:
    from clinic_app.services.cases import CaseService
    from clinic_app.services.context import Actor
    from clinic_app.services.reports import ExportedReport
    from clinic_app.storage.engine import Database

ENV_USER = "CLINICFUSION_USER"
ENV_PASSWORD = "CLINICFUSION_PASSWORD"
#: What --format accepts.
FORMATS: dict[str, ReportKind] = {
    "pdf": ReportKind.PDF,
    "dicom": ReportKind.DICOM_PDF,
    "dcm": ReportKind.DICOM_PDF,
    "dicom_pdf": ReportKind.DICOM_PDF,
    "fhir": ReportKind.FHIR,
}


def register(commands: Any) -> None:
    """Add ``report`` to the ``clinic-app`` parser."""
    report = commands.add_parser(
        "report",
        help="export a case's explanation report (PDF, DICOM, FHIR)",
        description="Write the explanation report of one case to a file or folder, or of "
        "several cases (or --all) to a folder or a .zip with manifest.json (file names, "
        "sha256s, models, failures). Every report's sha256 is stored with the case and "
        "audited. Reports are for research and demonstration, not validated for clinical use.",
        allow_abbrev=False,
    )
    report.add_argument("cases", nargs="*", metavar="CASE", help="case ids, e.g. C-7KQ2M9XW4T")
    report.add_argument(
        "-f",
        "--format",
        action="append",
        dest="formats",
        metavar="FORMAT",
        help="pdf, dicom or fhir; repeat or separate with commas (default: pdf)",
    )
    report.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUT",
        help="a file (one case, one format), a folder, or a .zip",
    )
    report.add_argument("--all", action="store_true", help="every case (latest versions)")
    report.add_argument(
        "--status",
        choices=[status.value for status in CaseStatus],
        help="with --all: only cases in this status (e.g. signed)",
    )
    report.add_argument("--overwrite", action="store_true", help="replace existing files")
    report.add_argument(
        "--user",
        metavar="USERNAME",
        help=f"the clinician or reviewer exporting (also {ENV_USER})",
    )
    report.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password as one line from standard input (or set {ENV_PASSWORD})",
    )
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(handler=_cmd_report)


def parse_formats(values: list[str] | None) -> tuple[ReportKind, ...]:
    """``["pdf,fhir", "dicom"]`` -> (PDF, FHIR, DICOM_PDF); default PDF."""
    kinds: list[ReportKind] = []
    for value in values or ["pdf"]:
        for word in value.split(","):
            name = word.strip().lower()
            if not name:
                continue
            if name not in FORMATS:
                raise InputError(
                    f"'{word.strip()}' is not a report format.", hint="Use pdf, dicom or fhir."
                )
            kinds.append(FORMATS[name])
    if not kinds:
        raise InputError("No report format was given.", hint="Use pdf, dicom or fhir.")
    return tuple(dict.fromkeys(kinds))


def _password(args: argparse.Namespace, username: str) -> str:
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise AccessDenied("No password arrived on standard input.")
        return line
    from_env = os.environ.get(ENV_PASSWORD)
    if from_env:
        return from_env
    if sys.stdin.isatty():
        return getpass.getpass(f"Password for {username}: ")
    raise AccessDenied(
        "There is no terminal to ask for the password on.",
        hint=f"Pipe it as one line with --password-stdin, or set {ENV_PASSWORD}.",
    )


def sign_in(database: Database, args: argparse.Namespace) -> Actor:
    """The exporting user, authenticated (an audited login)."""
    from clinic_app.services.users import authenticate

    username = (args.user or os.environ.get(ENV_USER, "")).strip()
    if not username:
        raise AccessDenied(
            "Exporting reports needs a signed-in clinician or reviewer.",
            hint=f"Pass --user NAME (or set {ENV_USER}); the password is then asked for.",
        )
    return authenticate(database, username, _password(args, username))


def _all_cases(cases: CaseService, actor: Actor, status: str | None) -> list[str]:
    from clinic_app.domain.cases import CaseQuery
    from clinic_app.services.cases import MAX_PAGE_SIZE

    query = CaseQuery(
        status=CaseStatus(status) if status else None, sort="case_uid", descending=False
    )
    uids: list[str] = []
    page = 1
    while True:
        found = cases.list_cases(actor, query, page=page, page_size=MAX_PAGE_SIZE)
        uids.extend(item.case_uid for item in found.items)
        if page >= found.pages or not found.items:
            return uids
        page += 1


def _looks_like_folder(out: Path) -> bool:
    return out.is_dir() or str(out).endswith(("/", os.sep)) or (not out.exists() and not out.suffix)


def _line(report: ExportedReport) -> dict[str, Any]:
    return {
        "case_uid": report.case_uid,
        "version": report.case_version,
        "kind": report.kind.value,
        "path": str(report.path),
        "file": report.file_name,
        "sha256": report.sha256,
        "bytes": report.size_bytes,
    }


def _cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.cases import CaseService
    from clinic_app.services.reports import export_reports
    from clinic_app.services.users import logout

    kinds = parse_formats(args.formats)
    if not args.cases and not args.all:
        raise InputError("Name at least one case, or pass --all.")
    if args.status and not args.all:
        raise InputError("--status chooses among all cases: use it with --all.")
    out: Path = args.output
    database = open_cli_database(settings)
    try:
        actor = sign_in(database, args)
        try:
            cases = CaseService(database, settings.inputs_dir)
            uids = list(dict.fromkeys(args.cases))
            if args.all:
                uids = list(dict.fromkeys([*uids, *_all_cases(cases, actor, args.status)]))
                if not uids:
                    raise InputError("There are no cases to export.")
            batch = args.all or len(uids) > 1 or out.suffix.lower() == ".zip"
            if not batch:
                return _export_one(cases, settings, actor, uids[0], kinds, out, args)
            if out.exists() and not out.is_dir() and out.suffix.lower() != ".zip":
                raise InputError(
                    f"{out} is a file; the reports of several cases go to a folder or a .zip."
                )
            interactive = sys.stderr.isatty() and not args.json

            def progress(fraction: float, message: str) -> None:
                if interactive:
                    print(f"\r{fraction:4.0%}  {message:<60}", end="", file=sys.stderr)

            summary = export_reports(
                cases,
                settings,
                actor,
                uids,
                out,
                kinds=kinds,
                overwrite=args.overwrite,
                progress=progress,
            )
            if interactive:
                print(file=sys.stderr)
        finally:
            logout(database, actor)
    finally:
        database.dispose()
    if args.json:
        print(
            json.dumps(
                {
                    "out": str(summary.out),
                    "manifest": str(summary.manifest),
                    "reports": [_line(r) for r in summary.reports],
                    "failures": [
                        {"case_uid": f.case_uid, "reason": f.reason} for f in summary.failures
                    ],
                    "seconds": summary.seconds,
                }
            )
        )
    else:
        print(
            f"Wrote {len(summary.reports)} report file(s) of {summary.cases_exported} of "
            f"{summary.cases_requested} case(s) to {summary.out} in {summary.seconds:.1f} s "
            f"(manifest.json lists them with their sha256)."
        )
        for failure in summary.failures:
            print(f"  not exported: {failure.case_uid}: {failure.reason}")
    return 1 if summary.failures else 0


def _export_one(
    cases: CaseService,
    settings: Settings,
    actor: Actor,
    case_uid: str,
    kinds: tuple[ReportKind, ...],
    out: Path,
    args: argparse.Namespace,
) -> int:
    from clinic_app.services.reports import export_report

    folder = _looks_like_folder(out)
    if len(kinds) > 1 and not folder:
        raise InputError(
            f"Several formats of case {case_uid} need a folder, and {out} is a file name.",
            hint="Pass -o FOLDER/ instead.",
        )
    if folder:
        out.mkdir(parents=True, exist_ok=True)
    written = [
        export_report(cases, settings, actor, case_uid, kind, out, overwrite=args.overwrite)
        for kind in kinds
    ]
    if args.json:
        print(json.dumps({"reports": [_line(r) for r in written], "failures": []}))
    else:
        for report in written:
            print(
                f"Wrote {report.path} ({report.kind.value}, {report.size_bytes:,} bytes, "
                f"sha256 {report.sha256})."
            )
    return 0
