"""`clinic-app audit`: verify, show and export the tamper-evident audit trail.

Until sign-in exists on the command line, the CLI acts as ``Actor.system()`` (role admin);
showing and exporting are audited as the system user. ``verify`` only reads.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinic_app.cli._database import open_cli_database
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import AuditIntegrityError, InputError
from clinic_app.domain.records import AuditAction, AuditOutcome

if TYPE_CHECKING:
    from clinic_app.services.audit import AuditFilter
    from clinic_app.storage.engine import Database


def register(commands: Any) -> None:
    """Add ``audit verify``, ``audit show`` and ``audit export`` to the ``clinic-app`` parser."""
    audit = commands.add_parser(
        "audit",
        help="view, verify and export the audit trail",
        description="The audit trail is hash-chained and signed with a key kept outside the "
        "database (OS keyring or <keys dir>/audit-hmac.key).",
    )
    actions = audit.add_subparsers(dest="audit_action", metavar="ACTION", required=True)

    verify = actions.add_parser(
        "verify",
        help="check the hash chain and signed checkpoints; exit 1 naming the first bad event",
        description="Reads only. Exit 0 when the trail is intact, 1 with the first bad event "
        "and why.",
    )
    verify.add_argument(
        "--anchor",
        metavar="SEQ:HASH",
        help="also require event SEQ to have HASH, as noted from an earlier verify (detects "
        "a rollback of the whole database)",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(handler=_cmd_verify)

    show = actions.add_parser(
        "show", help="list audit events (newest first); audited as audit.view"
    )
    _add_filters(show)
    show.add_argument("--page", type=int, default=1, help="page number, from 1 (default 1)")
    show.add_argument("--page-size", type=int, default=50, help="events per page (default 50)")
    show.add_argument("--oldest-first", action="store_true", help="oldest events first")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=_cmd_show)

    export = actions.add_parser(
        "export",
        help="write events as FHIR R4 AuditEvent JSON or DICOM audit XML; audited",
    )
    export.add_argument("--format", dest="export_format", choices=("fhir", "dicom"), required=True)
    export.add_argument("--output", required=True, metavar="FILE", help="file to write")
    export.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    _add_filters(export)
    export.set_defaults(handler=_cmd_export)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", metavar="TIME", help="from this UTC time or date (ISO 8601, e.g. 2025-01-31)"
    )
    parser.add_argument(
        "--until", metavar="TIME", help="up to this UTC time, or the end of this date"
    )
    parser.add_argument("--user", metavar="USERNAME", help="only this user's events")
    parser.add_argument(
        "--event-type", metavar="TYPE", help="e.g. case.read, or case.* for a prefix"
    )
    parser.add_argument("--case", metavar="CASE_UID", help="only events about this case")
    parser.add_argument(
        "--action", choices=[action.value for action in AuditAction], help="C, R, U, D or E"
    )
    parser.add_argument(
        "--outcome",
        type=int,
        choices=[int(outcome) for outcome in AuditOutcome],
        help="0 success, 4 minor, 8 serious, 12 major failure",
    )


def _parse_time(text: str, option: str, *, end_of_day: bool) -> datetime:
    """An ISO 8601 time (naive = UTC) or a date (its start, or its end for --until)."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time.max if end_of_day else time.min)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(
            f"{option} '{text}' is not a date or time; use e.g. 2025-01-31 or 2025-01-31T14:00:00Z."
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _filters(args: argparse.Namespace) -> AuditFilter:
    from clinic_app.services.audit import AuditFilter

    return AuditFilter(
        since=_parse_time(args.since, "--since", end_of_day=False) if args.since else None,
        until=_parse_time(args.until, "--until", end_of_day=True) if args.until else None,
        username=args.user,
        event_type=args.event_type,
        case_uid=args.case,
        action=AuditAction(args.action) if args.action else None,
        outcome=AuditOutcome(args.outcome) if args.outcome is not None else None,
    )


def _open(settings: Settings) -> Database:
    return open_cli_database(settings)


def _cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.audit import verify
    from clinic_app.storage.audit import ChainAnchor

    anchor = None
    if args.anchor:
        match = re.fullmatch(r"(\d+):([0-9a-f]{64})", args.anchor.strip())
        if match is None:
            raise InputError(
                f"--anchor '{args.anchor}' is not SEQ:HASH (a number, a colon and 64 hex digits)."
            )
        anchor = ChainAnchor(int(match[1]), match[2])
    database = _open(settings)
    try:
        result = verify(database, anchor=anchor)
    finally:
        database.dispose()
    if args.json:
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "events_checked": result.events_checked,
                    "last_sequence": result.last_sequence,
                    "first_bad_sequence": result.first_bad_sequence,
                    "reason": result.reason,
                    "checkpoints_checked": result.checkpoints_checked,
                    "signed_through": result.signed_through,
                    "head_hash": result.head_hash,
                    "key_id": result.key_id,
                },
                indent=2,
            )
        )
        return 0 if result.ok else 1
    if not result.ok:
        raise AuditIntegrityError(
            result.describe(),
            hint="Keep this database unchanged for investigation and tell your security "
            "officer; restore a verified backup to continue work.",
        )
    print(result.describe())
    if result.last_sequence:
        print(f"Anchor to note outside the database: {result.last_sequence}:{result.head_hash}")
    return 0


def _cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.audit import show
    from clinic_app.services.context import Actor

    filters = _filters(args)
    database = _open(settings)
    try:
        page = show(
            database,
            Actor.system(),
            filters,
            page=args.page,
            page_size=args.page_size,
            newest_first=not args.oldest_first,
        )
    finally:
        database.dispose()
    if args.json:
        print(
            json.dumps(
                {
                    "total": page.total,
                    "page": page.page,
                    "pages": page.pages,
                    "page_size": page.page_size,
                    "events": [entry.to_json() for entry in page.entries],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return 0
    print(f"{page.total} matching events; page {page.page} of {page.pages}.")
    for entry in page.entries:
        subject = f" case={entry.case_uid}" if entry.case_uid else ""
        subject += f" patient={entry.patient_pseudonym}" if entry.patient_pseudonym else ""
        print(
            f"{entry.sequence:>7}  {entry.occurred_at:%Y-%m-%d %H:%M:%S}Z  "
            f"{entry.action.value} {int(entry.outcome):>2}  {entry.event_type:<16} "
            f"{entry.username or '-'} ({entry.role or '-'}) @ {entry.workstation}{subject}"
        )
    return 0


def _cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.audit import export
    from clinic_app.services.context import Actor

    filters = _filters(args)
    output = Path(args.output).expanduser().resolve()
    database = _open(settings)
    try:
        summary = export(
            database,
            Actor.system(),
            args.export_format,
            output,
            filters,
            overwrite=args.force,
        )
    finally:
        database.dispose()
    kind = "FHIR R4 AuditEvent Bundle" if summary.format == "fhir" else "DICOM audit messages"
    print(f"Wrote {summary.events} events as {kind} to {summary.path} (sha256 {summary.sha256}).")
    return 0
