"""Crash-safety harness: writer processes killed with SIGKILL at random, the database checked.

Four writer processes create cases and analyses through the real services (each action one
transaction with its audit event) and append an acknowledgement line to their own file after
each commit returns. A supervisor kills them at random moments with SIGKILL; after each round it
checks that

- ``PRAGMA integrity_check`` is ``ok``,
- no acknowledged commit is lost (every acknowledged case and analysis is in the database),
- no case is half-written (each case has its patient and exactly one ``case.create`` event; each
  analysis has all its suggestions and exactly one ``case.analyse`` event),
- the audit chain verifies (sequence, links and every hash recomputed).

Run it: ``python -m bench.crash_safety --commits 25000`` (prints a table). The test
``tests/integration/test_crash_safety.py`` runs it with the same code.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SUGGESTIONS_PER_ANALYSIS = 3


# -- writer ---------------------------------------------------------------------------------
def writer(database_url: str, ack_path: Path, user_id: int, seed: int) -> None:
    """Create cases and analyses forever; acknowledge each commit on its own line."""
    from clinic_app.domain.cases import NewAnalysis, NewSuggestion
    from clinic_app.domain.records import Role
    from clinic_app.services.cases import CaseService
    from clinic_app.services.context import Actor
    from clinic_app.storage.engine import Database, create_database_engine

    rng = random.Random(seed)
    database = Database(create_database_engine(database_url))
    service = CaseService(database, ack_path.parent / "inputs")
    actor = Actor(user_id, "crash-writer", Role.CLINICIAN, f"writer-{seed}")
    ack = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    while True:
        case = service.create_case(actor, title=f"crash test {seed}")
        os.write(ack, f"case {case.case_uid}\n".encode())
        if rng.random() < 0.7:
            analysis = service.record_analysis(
                actor,
                case.case_uid,
                NewAnalysis(
                    model_name="crash-test",
                    model_version="1",
                    bundle_sha256="c" * 64,
                    input_sha256s=[],
                    device="cpu",
                    suggestions=[
                        NewSuggestion(
                            "http://snomed.info/sct", str(code), f"label {code}", rng.random()
                        )
                        for code in range(SUGGESTIONS_PER_ANALYSIS)
                    ],
                ),
            )
            os.write(ack, f"analysis {analysis.id} {case.case_uid}\n".encode())


# -- checks ---------------------------------------------------------------------------------
@dataclass
class RoundResult:
    acknowledged: int
    cases: int
    analyses: int
    audit_events: int
    problems: list[str] = field(default_factory=list)


def read_acks(ack_dir: Path) -> tuple[set[str], set[int]]:
    cases: set[str] = set()
    analyses: set[int] = set()
    for path in ack_dir.glob("writer-*.ack"):
        for line in path.read_text(encoding="ascii", errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "case":
                cases.add(parts[1])
            elif len(parts) == 3 and parts[0] == "analysis" and parts[1].isdigit():
                analyses.add(int(parts[1]))
            # anything else is a line cut short by the kill: it was never acknowledged
    return cases, analyses


def check_database(database_url: str, ack_dir: Path) -> RoundResult:
    from sqlalchemy import func, select, text

    from clinic_app.storage.audit import GENESIS_HASH, event_hash
    from clinic_app.storage.engine import Database, create_database_engine
    from clinic_app.storage.orm import (
        Analysis,
        AuditChainHead,
        AuditEvent,
        Case,
        Patient,
        Suggestion,
    )

    database = Database(create_database_engine(database_url))
    problems: list[str] = []
    acked_cases, acked_analyses = read_acks(ack_dir)
    with database.read() as session:
        if database.backend == "sqlite":
            integrity = session.execute(text("PRAGMA integrity_check")).scalar()
            if integrity != "ok":
                problems.append(f"integrity_check: {integrity}")
            fk = session.execute(text("PRAGMA foreign_key_check")).all()
            if fk:
                problems.append(f"foreign_key_check: {fk[:3]}")
        case_uids = set(session.scalars(select(Case.case_uid)))
        analysis_ids = set(session.scalars(select(Analysis.id)))
        lost_cases = acked_cases - case_uids
        lost_analyses = acked_analyses - analysis_ids
        if lost_cases:
            problems.append(f"{len(lost_cases)} acknowledged case(s) lost, e.g. {min(lost_cases)}")
        if lost_analyses:
            problems.append(f"{len(lost_analyses)} acknowledged analyses lost")
        orphans = session.scalar(
            select(func.count()).select_from(Case).where(~Case.patient_id.in_(select(Patient.id)))
        )
        if orphans:
            problems.append(f"{orphans} case(s) without their patient")
        creates = dict(
            session.execute(
                select(AuditEvent.case_uid, func.count())
                .where(AuditEvent.event_type == "case.create")
                .group_by(AuditEvent.case_uid)
            ).all()
        )
        half = [uid for uid in case_uids if creates.get(uid) != 1]
        if half:
            problems.append(f"{len(half)} case(s) without exactly one case.create event")
        if set(creates) - case_uids:
            problems.append("case.create events for cases that do not exist")
        counts = dict(
            session.execute(
                select(Suggestion.analysis_id, func.count()).group_by(Suggestion.analysis_id)
            ).all()
        )
        partial = [a for a in analysis_ids if counts.get(a) != SUGGESTIONS_PER_ANALYSIS]
        if partial:
            problems.append(f"{len(partial)} analyses with missing suggestions")
        analysed = session.scalar(
            select(func.count()).where(AuditEvent.event_type == "case.analyse")
        )
        if analysed != len(analysis_ids):
            problems.append(f"{analysed} case.analyse events for {len(analysis_ids)} analyses")

        previous, expected_sequence, total = GENESIS_HASH, 1, 0
        for event in session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)):
            total += 1
            if event.sequence != expected_sequence:
                problems.append(f"audit sequence gap at {expected_sequence}")
                break
            if event.prev_hash != previous or event_hash(previous, event) != event.hash:
                problems.append(f"audit chain broken at event {event.sequence}")
                break
            previous, expected_sequence = event.hash, expected_sequence + 1
        head = session.get(AuditChainHead, 1)
        if head is None or (head.last_sequence, head.last_hash) != (total, previous):
            problems.append("audit chain head does not name the last event")
    database.dispose()
    return RoundResult(
        acknowledged=len(acked_cases) + len(acked_analyses),
        cases=len(case_uids),
        analyses=len(analysis_ids),
        audit_events=total,
        problems=problems,
    )


# -- supervisor -----------------------------------------------------------------------------
def prepare_database(database_url: str) -> int:
    """Migrate the database and create the writers' user; returns its id."""
    from clinic_app.domain.records import Role
    from clinic_app.storage.engine import Database, create_database_engine
    from clinic_app.storage.migrate import upgrade
    from clinic_app.storage.orm import User

    database = Database(create_database_engine(database_url))
    upgrade(database)
    with database.write() as session:
        user = User(
            username="crash-writer",
            display_name="Crash writer",
            role=Role.CLINICIAN,
            password_hash="!",
        )
        session.add(user)
        session.flush()
        user_id = user.id
    database.dispose()
    return user_id


def run(
    database_url: str,
    work_dir: Path,
    *,
    min_commits: int,
    writers: int = 4,
    seed: int = 1,
    min_round_s: float = 1.0,
    max_round_s: float = 4.0,
    max_rounds: int = 1000,
    report: bool = False,
) -> list[RoundResult]:
    """Rounds of start-writers / kill-at-random / check until ``min_commits`` are acknowledged."""
    rng = random.Random(seed)
    user_id = prepare_database(database_url)
    results: list[RoundResult] = []
    # Writers are forked from this process after the app's modules are imported, so a writer
    # starts writing within milliseconds instead of paying ~1 s of imports every round.
    import clinic_app.services.cases  # noqa: F401  (imported before forking, on purpose)

    context = multiprocessing.get_context("fork")
    for round_no in range(1, max_rounds + 1):
        processes = [
            context.Process(
                target=writer,
                args=(
                    database_url,
                    work_dir / f"writer-{index}.ack",
                    user_id,
                    seed * 1000 + round_no * 10 + index,
                ),
                daemon=True,
            )
            for index in range(writers)
        ]
        for process in processes:
            process.start()
        kill_at = sorted(
            ((rng.uniform(min_round_s, max_round_s), p) for p in processes), key=lambda x: x[0]
        )
        start = time.monotonic()
        for moment, process in kill_at:
            time.sleep(max(0.0, moment - (time.monotonic() - start)))
            assert process.pid is not None
            os.kill(process.pid, signal.SIGKILL)
        crashed = []
        for process in processes:
            process.join()
            if process.exitcode != -signal.SIGKILL:
                crashed.append(f"writer exited with {process.exitcode} before it was killed")
        result = check_database(database_url, work_dir)
        result.problems.extend(crashed)
        results.append(result)
        if report:
            print(
                f"round {round_no:3d}: acknowledged {result.acknowledged:6d}, cases "
                f"{result.cases:6d}, analyses {result.analyses:6d}, audit events "
                f"{result.audit_events:6d}, problems: {'; '.join(result.problems) or 'none'}",
                flush=True,
            )
        if result.problems or result.acknowledged >= min_commits:
            break
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    write = commands.add_parser("writer")
    write.add_argument("--database-url", required=True)
    write.add_argument("--ack", type=Path, required=True)
    write.add_argument("--user-id", type=int, required=True)
    write.add_argument("--seed", type=int, required=True)
    parser.add_argument("--commits", type=int, default=25_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--database-url", help="default: a SQLite file in a temp dir")
    args = parser.parse_args(argv)
    if args.command == "writer":
        writer(args.database_url, args.ack, args.user_id, args.seed)
        return 0
    with tempfile.TemporaryDirectory(prefix="crash-") as temp:
        url = args.database_url or f"sqlite:///{Path(temp) / 'crash.sqlite3'}"
        started = time.monotonic()
        results = run(url, Path(temp), min_commits=args.commits, writers=args.writers, report=True)
        elapsed = time.monotonic() - started
    last = results[-1]
    print()
    print("| rounds | writers | acknowledged commits | commits/s | audit events | problems |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {len(results)} | {args.writers} | {last.acknowledged} | "
        f"{last.acknowledged / elapsed:.0f} | {last.audit_events} | "
        f"{'; '.join(last.problems) or 'none'} |"
    )
    return 1 if last.problems else 0


if __name__ == "__main__":
    sys.exit(main())
