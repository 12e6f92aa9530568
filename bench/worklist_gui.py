"""Triage worklist at clinic scale: 100,000 analysed cases (7 suggestions each, two labels
flagged critical), the worklist service's queries beside the case list's, and the GUI table.

Figures (medians of several runs after a warm-up), each beside ``CaseService.list_cases`` page
1 measured in the same run on the same database (the baseline) and their ratio:

- worklist page 1 by risk, by uncertainty, flagged only, "me" as reviewer, a deep page
- review progress (reviewed / total of the whole query)
- once, not a median: the triage figures written for every case by
  ``WorklistService.backfill_triage`` (what opening a database analysed before schema
  revision 0004 costs once)

(The GUI never waits for these: pages load on a worker; tests/gui/test_worklist.py checks that
reviewing a 100-row page never holds the event loop for 50 ms.)

Run: ``python -m bench.worklist_gui [--cases 100000] [--database-url
postgresql+psycopg://.../EMPTY_DB]``. Reports other processes' CPU use.

:func:`bulk_insert_analysed_cases` is also what the tests use to fill a database fast.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from bench._common import cpu_busy_fraction
from bench.case_list_gui import bulk_insert_cases
from clinic_app.domain.cases import NewSuggestion
from clinic_app.domain.records import CaseStatus, Role
from clinic_app.domain.worklist import triage_scores
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import Analysis, Case, Suggestion

SNOMED = "http://snomed.info/sct"
#: The demo bundle's labels: (code, display, critical).
LABELS = (
    ("426783006", "Sinus rhythm", False),
    ("427084000", "Sinus tachycardia", False),
    ("426177001", "Sinus bradycardia", False),
    ("164889003", "Atrial fibrillation", True),
    ("284470004", "Premature atrial contraction", False),
    ("427172004", "Premature ventricular contractions", False),
    ("363346000", "Malignant neoplastic disease", True),
)


def bulk_insert_analysed_cases(
    database: Database, count: int, *, seed: int = 11, composite_every: int = 0
) -> int:
    """``count`` cases (bench.case_list_gui's loader), each not 'new' one with an analysis of
    seven suggestions (about one in ten with an abstention) and its triage figures, as
    ``CaseService.record_analysis`` writes them; returns the reviewer's user id."""
    rng = random.Random(seed)
    with database.read() as session:
        first_case = int(session.scalar(select(func.coalesce(func.max(Case.id), 0))) or 0)
        first_analysis = int(session.scalar(select(func.coalesce(func.max(Analysis.id), 0))) or 0)
        first_suggestion = int(
            session.scalar(select(func.coalesce(func.max(Suggestion.id), 0))) or 0
        )
    reviewer_id = bulk_insert_cases(database, count, seed=seed, composite_every=composite_every)
    now = datetime.now(UTC)
    with database.write() as session:
        case_rows = session.execute(
            select(Case.id, Case.status).where(Case.id > first_case).order_by(Case.id)
        ).all()
        analysis_id, suggestion_id = first_analysis, first_suggestion
        analyses: list[dict[str, Any]] = []
        suggestions: list[dict[str, Any]] = []
        tops: list[dict[str, Any]] = []

        def flush() -> None:
            if analyses:
                session.execute(insert(Analysis), analyses)
                session.execute(insert(Suggestion), suggestions)
                session.execute(
                    text(
                        "UPDATE cases SET priority = :p, top_suggestion = :t, triage_risk = :r, "
                        "triage_abstained = :a, triage_uncertainty = :u WHERE id = :i"
                    ),
                    tops,
                )
            analyses.clear()
            suggestions.clear()
            tops.clear()

        for case_id, status in case_rows:
            if CaseStatus(status) is CaseStatus.NEW:
                continue
            analysis_id += 1
            missing = {"pathology": "no slide"} if rng.random() < 0.3 else {}
            analyses.append(
                {
                    "id": analysis_id,
                    "case_id": case_id,
                    "model_name": "clinicfusion-demo",
                    "model_version": "1.0.0",
                    "bundle_sha256": "0" * 64,
                    "input_sha256s": [],
                    "device": "cpu",
                    "timings_ms": {},
                    "outputs": {"modalities_missing": missing, "inputs": {}},
                    "created_at": now,
                }
            )
            probabilities = [rng.random() for _ in LABELS]
            abstain = rng.random() < 0.1
            ranked = sorted(zip(LABELS, probabilities, strict=True), key=lambda pair: -pair[1])
            stored = [
                NewSuggestion(
                    SNOMED,
                    code,
                    display,
                    probability=p,
                    calibrated_probability=p,
                    abstained=abstain and rank == len(LABELS),
                    evidence={"critical": critical},
                )
                for rank, ((code, display, critical), p) in enumerate(ranked, start=1)
            ]
            for rank, item in enumerate(stored, start=1):
                suggestion_id += 1
                suggestions.append(
                    {
                        "id": suggestion_id,
                        "analysis_id": analysis_id,
                        "rank": rank,
                        "code_system": item.code_system,
                        "code": item.code,
                        "display": item.display,
                        "probability": item.probability,
                        "calibrated_probability": item.calibrated_probability,
                        "abstained": item.abstained,
                        "evidence": item.evidence,
                    }
                )
            triage = triage_scores(stored)
            tops.append(
                {
                    "p": ranked[0][1],
                    "t": ranked[0][0][1],
                    "r": triage.risk,
                    "a": triage.abstained,
                    "u": triage.uncertainty,
                    "i": case_id,
                }
            )
            if len(analyses) >= 5_000:
                flush()
        flush()
        if database.backend == "postgresql":
            for table in ("analyses", "suggestions"):
                session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    if database.backend == "postgresql":
        with database.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
    return reviewer_id


def _timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    from clinic_app.domain.worklist import REVIEWER_ME, WorklistQuery, WorklistSort
    from clinic_app.services.cases import CaseService
    from clinic_app.services.context import Actor
    from clinic_app.services.worklist import WorklistService
    from clinic_app.storage.engine import create_database_engine
    from clinic_app.storage.migrate import upgrade

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--database-url", default=None, help="an EMPTY database (default SQLite)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'worklist.sqlite3'}"
        database = Database(create_database_engine(url))
        upgrade(database)
        started = time.perf_counter()
        reviewer_id = bulk_insert_analysed_cases(database, args.cases, composite_every=5_000)
        print(f"{database.backend}: {args.cases:,} cases loaded in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        cases = CaseService(database, Path(folder) / "inputs")
        service = WorklistService(cases)
        actor = Actor(reviewer_id, "bench", Role.REVIEWER, "bench")
        busy = cpu_busy_fraction()
        baseline = _timed(lambda: cases.list_cases(actor, page=1), args.repeats)
        figures = {
            "worklist by risk, page 1": lambda: service.worklist(actor, WorklistQuery()),
            "worklist by uncertainty, page 1": lambda: service.worklist(
                actor, WorklistQuery(sort=WorklistSort.UNCERTAINTY)
            ),
            "flagged only, page 1": lambda: service.worklist(
                actor, WorklistQuery(only_flagged=True)
            ),
            "reviewer = me, page 1": lambda: service.worklist(
                actor, WorklistQuery(reviewer=REVIEWER_ME)
            ),
            "by risk, page 500": lambda: service.worklist(actor, WorklistQuery(), page=500),
            "review progress": lambda: service.review_progress(actor, WorklistQuery()),
        }
        print(f"other processes' CPU use before: {busy:.0%}")
        print(f"{'figure':34} {'median ms':>10} {'list_cases p1 ms':>17} {'ratio':>7}")
        for name, fn in figures.items():
            median = _timed(fn, args.repeats)
            print(f"{name:34} {median:10.1f} {baseline:17.1f} {median / baseline:7.1f}")
        with database.write() as session:  # as a database analysed before revision 0004
            forgotten = session.execute(
                text(
                    "UPDATE cases SET triage_risk = NULL, triage_abstained = 0, "
                    "triage_uncertainty = NULL"
                )
            ).rowcount
        started = time.perf_counter()
        backfilled = service.backfill_triage(Actor.system())
        once = (time.perf_counter() - started) * 1000
        assert backfilled == forgotten - (args.cases + 3) // 4  # every fourth case is new
        print(f"{'backfill ' + format(backfilled, ',') + ' cases (once)':34} {once:10.1f} "
              f"{baseline:17.1f} {once / baseline:7.1f}")  # fmt: skip
        print(f"other processes' CPU use after: {cpu_busy_fraction():.0%}")
        database.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
