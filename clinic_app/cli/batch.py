"""`clinic-app batch`: queue cases for analysis, work through the queue, watch it, cancel it.

The command line acts as the system in the clinician role (as the demo set-up does): the
administrator role that ``Actor.system()`` carries may not run analyses, and whoever runs the
CLI on the workstation owns the data folder. Every stored analysis is audited as usual
("case.analyse" by "system"), and the run's creation, each worker start and a cancel are
audited too.

``batch run`` loads the model in this process. Ctrl-C stops it after the batch in hand and
leaves the rest queued (run it again to resume); a second Ctrl-C stops at once, and the cases
that were in the model are queued again when the next worker starts.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

from clinic_app.cli._database import open_cli_database
from clinic_app.config.settings import DEVICES, Settings

if TYPE_CHECKING:
    from clinic_app.services.batch import BatchProgress, BatchService, BatchStatus
    from clinic_app.services.context import Actor
    from clinic_app.storage.engine import Database

#: How many failed cases `status` lists (all of them with --json).
SHOWN_FAILURES = 20


def register(commands: Any) -> None:
    """Add ``batch`` and its sub-commands to the ``clinic-app`` parser."""
    batch = commands.add_parser(
        "batch",
        help="analyse many cases: a persistent queue worked through by a background worker",
        description="Queue cases for analysis and work through the queue with the model "
        "loaded once, a batch of cases per forward pass. The queue lives in the database: a "
        "crashed or killed worker resumes where it stopped, without redoing finished cases.",
    )
    actions = batch.add_subparsers(dest="batch_command", metavar="ACTION", required=True)

    enqueue = actions.add_parser("enqueue", help="queue cases (default: every new case)")
    enqueue.add_argument(
        "--case", action="append", dest="cases", metavar="UID", help="a case id (repeatable)"
    )
    enqueue.add_argument(
        "--all-new",
        action="store_true",
        help="every unsigned case with inputs and no analysis yet (the default without --case)",
    )
    _run_options(enqueue)
    enqueue.add_argument("--json", action="store_true", help="print one JSON object")
    enqueue.set_defaults(handler=_cmd_enqueue)

    run = actions.add_parser("run", help="work through a queued run in this process")
    run.add_argument(
        "--run-id", type=int, metavar="N", help="the run (default: the oldest waiting)"
    )
    run.add_argument(
        "--enqueue-new",
        action="store_true",
        help="first queue every new case as a new run (the options below apply to it)",
    )
    _run_options(run)
    run.add_argument("--json", action="store_true", help="print the final status as JSON")
    run.set_defaults(handler=_cmd_run)

    status = actions.add_parser("status", help="counts, cases/s, ETA and failures of a run")
    status.add_argument("--run-id", type=int, metavar="N", help="the run (default: the latest)")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=_cmd_status)

    cancel = actions.add_parser("cancel", help="cancel a run (its worker stops after its batch)")
    cancel.add_argument("--run-id", type=int, metavar="N", help="the run (default: the latest)")
    cancel.add_argument("--json", action="store_true", help="print one JSON object")
    cancel.set_defaults(handler=_cmd_cancel)


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-explain",
        action="store_true",
        help="store suggestions only, without explanations (much faster)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, metavar="N", help="cases per forward pass (8)"
    )
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="where to run the model (auto)"
    )


def batch_actor() -> Actor:
    """Who the command line acts as: the system, in the clinician role (see the module doc)."""
    from clinic_app.domain.records import Role
    from clinic_app.services.context import Actor, workstation_name

    return Actor(None, "system", Role.CLINICIAN, workstation_name())


def _service(settings: Settings) -> tuple[Database, BatchService]:
    from clinic_app.services.batch import BatchService
    from clinic_app.services.cases import CaseService

    database = open_cli_database(settings)
    return database, BatchService(CaseService(database, settings.inputs_dir), settings)


def _enqueue(service: BatchService, args: argparse.Namespace, *, all_new: bool) -> BatchStatus:
    return service.enqueue(
        batch_actor(),
        None if all_new else args.cases,
        explain=not args.no_explain,
        batch_size=args.batch_size,
        device=args.device,
    )


def _cmd_enqueue(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.domain.errors import InputError

    if args.cases and args.all_new:
        raise InputError("Give either --case or --all-new, not both.")
    database, service = _service(settings)
    try:
        status = _enqueue(service, args, all_new=not args.cases)
    finally:
        database.dispose()
    _print_status(status, args.json)
    return 0


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    database, service = _service(settings)
    stop_requested = False

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        if stop_requested:
            raise KeyboardInterrupt
        stop_requested = True
        print(
            "Stopping after the cases in hand (Ctrl-C again to stop now)…",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        run_id = args.run_id
        if args.enqueue_new:
            run_id = _enqueue(service, args, all_new=True).run_id
            print(f"Queued batch run {run_id}.", flush=True)
        status = service.run(
            batch_actor(),
            run_id,
            progress=None if args.json else _print_progress,
            cancel=lambda: stop_requested,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        database.dispose()
    _print_status(status, args.json)
    return 0 if status.failed == 0 else 1


def _cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    database, service = _service(settings)
    try:
        status = service.status(batch_actor(), args.run_id)
    finally:
        database.dispose()
    _print_status(status, args.json)
    return 0


def _cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    database, service = _service(settings)
    try:
        status = service.cancel(batch_actor(), args.run_id)
    finally:
        database.dispose()
    _print_status(status, args.json)
    return 0


def _print_progress(progress: BatchProgress) -> None:
    rate = f"{progress.cases_per_s:.2f} cases/s" if progress.cases_per_s else "-- cases/s"
    eta = f"ETA {_duration(progress.eta_s)}" if progress.eta_s is not None else "ETA --"
    finished = progress.done + progress.failed
    print(
        f"[{finished}/{progress.total}] {rate}, {eta}, {progress.failed} failed · "
        f"{progress.message}",
        flush=True,
    )


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _print_status(status: BatchStatus, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status.to_dict()))
        return
    rate = f"{status.cases_per_s:.2f} cases/s" if status.cases_per_s else "no rate yet"
    eta = f", ETA {_duration(status.eta_s)}" if status.eta_s is not None else ""
    print(
        f"Batch run {status.run_id}: {status.state}. {status.done} done, {status.failed} failed, "
        f"{status.queued} queued, {status.running} running, {status.cancelled} cancelled "
        f"of {status.total}; {rate}{eta}."
    )
    explain = "with explanations" if status.explain else "without explanations"
    worker = (
        f"worker {status.worker} (active)"
        if status.worker_active
        else (f"last worker {status.worker}" if status.worker else "no worker yet")
    )
    print(f"  {explain}, batches of {status.batch_size}, device {status.device}; {worker}.")
    for failure in status.failures[:SHOWN_FAILURES]:
        print(f"  failed {failure.case_uid}: {failure.error}")
    if len(status.failures) > SHOWN_FAILURES:
        print(f"  … and {len(status.failures) - SHOWN_FAILURES} more (see --json).")
