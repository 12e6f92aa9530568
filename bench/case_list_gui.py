"""Case list GUI benchmark at clinic scale: 100,000 cases in the paged Qt model and its table.

Figures (medians of several runs after a warm-up), each beside the bare service call it wraps,
measured in the same run on the same file, and their ratio:

- time to first rows: from setting a query until the first page is painted in the table
  vs one ``CaseService.list_cases(page=1)`` call
- scroll-to-end fill: from jumping to the last row until the last page is painted
  vs one ``list_cases`` call for the last page
- scrolling through all 100,000 rows in 200 steps: the longest event-loop stall (QTimer probe
  every 10 ms; goal < 50 ms) and the pages actually requested (each is an audited call)

Run: ``QT_QPA_PLATFORM=offscreen python -m bench.case_list_gui [--cases 100000]``. Reports
other processes' CPU use (from /proc/stat) so a noisy run can be recognised and repeated.

:func:`bulk_insert_cases` is also what tests/gui/test_case_list.py uses to load 100,000 cases in
a few seconds (plain multi-row INSERTs with explicit ids; bench/case_store.py's loader, which
draws random ids and indexes search terms, takes ~45 s here).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from clinic_app.domain.records import CaseStatus, Role
from clinic_app.domain.search import search_terms
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import Case, CaseSearchTerm, Patient, User

DIAGNOSES = (
    "Atrial fibrillation",
    "Sinus rhythm",
    "Sinus tachycardia",
    "Left ventricular hypertrophy",
    "Adenocarcinoma of colon",
    "Normal colonic mucosa",
    "Myocardial infarction",
    "Premature ventricular contractions",
)


def bulk_insert_cases(
    database: Database,
    count: int,
    *,
    seed: int = 7,
    index_terms: bool = False,
    title: str = "Referral",
    composite_every: int = 0,
) -> int:
    """Insert ``count`` cases (one patient each) with multi-row INSERTs; returns a reviewer's id.

    Ids are explicit (no RETURNING round trips); PostgreSQL's sequences are moved past them.
    ``index_terms`` also fills the search index (slower: about 4 terms per case). Every
    ``composite_every``-th case is a composite demo case."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    statuses = [CaseStatus.NEW, CaseStatus.ANALYSED, CaseStatus.IN_REVIEW, CaseStatus.SIGNED]
    with database.write() as session:
        reviewer = User(
            username=f"reviewer{secrets.token_hex(3)}",
            display_name="Reviewer",
            role=Role.REVIEWER,
            password_hash="!",
        )
        session.add(reviewer)
        session.flush()
        reviewer_id = reviewer.id
        first_patient = int(session.scalar(select(func.coalesce(func.max(Patient.id), 0))) or 0)
        first_case = int(session.scalar(select(func.coalesce(func.max(Case.id), 0))) or 0)
        batch = 20_000
        for start in range(0, count, batch):
            size = min(batch, count - start)
            patients: list[dict[str, Any]] = []
            cases: list[dict[str, Any]] = []
            for offset in range(size):
                number = start + offset
                patient_id, case_id = first_patient + number + 1, first_case + number + 1
                diagnosis = rng.choice(DIAGNOSES) if rng.random() < 0.8 else None
                moment = now - timedelta(minutes=count - number)
                patients.append(
                    {"id": patient_id, "pseudonym": f"P-B{patient_id:010d}", "created_at": now}
                )
                cases.append(
                    {
                        "id": case_id,
                        "case_uid": f"C-B{case_id:09d}",
                        "version": 1,
                        "patient_id": patient_id,
                        "title": f"{title} {number:06d}",
                        "status": statuses[number % len(statuses)],
                        "is_composite_demo": bool(composite_every)
                        and number % composite_every == 0,
                        "top_suggestion": diagnosis,
                        "priority": rng.random() if diagnosis else None,
                        "reviewer_id": reviewer_id if number % 3 == 0 else None,
                        "created_at": moment,
                        "updated_at": moment,
                    }
                )
            session.execute(insert(Patient), patients)
            session.execute(insert(Case), cases)
            if index_terms:
                terms = [
                    {"case_id": case["id"], "term": term}
                    for case, patient in zip(cases, patients, strict=True)
                    for term in search_terms(
                        case["case_uid"],
                        patient["pseudonym"],
                        case["title"],
                        case["top_suggestion"],
                    )
                ]
                session.execute(insert(CaseSearchTerm), terms)
        if database.backend == "postgresql":
            for table in ("patients", "cases"):
                session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    return reviewer_id


# -- the benchmark ------------------------------------------------------------------------------
def _median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--scroll-steps", type=int, default=200)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from clinic_app.gui.case_list import PLACEHOLDER, CaseListView
    from clinic_app.services.audit import bind_audit_keys
    from clinic_app.services.cases import CaseService
    from clinic_app.services.context import Actor
    from clinic_app.storage.audit import AuditKey
    from clinic_app.storage.engine import create_database_engine
    from clinic_app.storage.migrate import upgrade

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        path = Path(temp) / "bench.sqlite3"
        database = Database(create_database_engine(f"sqlite:///{path}"))
        upgrade(database)
        bind_audit_keys(database, AuditKey(secrets.token_bytes(32)))
        started = time.perf_counter()
        reviewer_id = bulk_insert_cases(database, args.cases, composite_every=1000)
        with sqlite3.connect(path) as folding:
            folding.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        load_s = time.perf_counter() - started
        with database.read() as session:
            username = session.scalar(select(User.username).where(User.id == reviewer_id))
        actor = Actor(reviewer_id, str(username), Role.REVIEWER, "bench")
        service = CaseService(database, Path(temp) / "inputs")
        view = CaseListView(service, actor)
        view.resize(1200, 800)
        view.show()
        model, table = view.model, view.table

        def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
            """Run the event loop (idle, as in the app: no busy polling) until ``condition``."""
            if condition():
                return
            loop = QEventLoop()

            def check(*_args: object) -> None:
                if condition():
                    loop.quit()

            safety = QTimer()
            safety.setInterval(5)
            safety.timeout.connect(check)
            deadline = QTimer()
            deadline.setSingleShot(True)
            deadline.timeout.connect(loop.quit)
            model.pageLoaded.connect(check)
            model.loadingChanged.connect(check)
            safety.start()
            deadline.start(int(timeout_s * 1000))
            loop.exec()
            safety.stop()
            model.pageLoaded.disconnect(check)
            model.loadingChanged.disconnect(check)
            if not condition():
                raise TimeoutError("the case list did not fill in time")

        def shown(row: int) -> bool:
            return model.index(row, 0).data() not in (None, PLACEHOLDER)

        def first_rows_ms() -> float:
            start = time.perf_counter()
            model.set_query(model.query)
            wait_until(lambda: model.count_known and shown(0))
            app.processEvents()  # the paint of the filled rows
            return (time.perf_counter() - start) * 1000

        def scroll_end_ms() -> float:
            model.set_query(model.query)  # nothing cached: the last page must be fetched
            table.scrollToTop()
            wait_until(lambda: model.count_known and shown(0) and not model.loading)
            last = model.rowCount() - 1
            start = time.perf_counter()
            table.scrollToBottom()
            app.processEvents()
            wait_until(lambda: shown(last))
            app.processEvents()
            return (time.perf_counter() - start) * 1000

        def bare_ms(page: int) -> float:
            start = time.perf_counter()
            service.list_cases(actor, page=page)
            return (time.perf_counter() - start) * 1000

        wait_until(lambda: model.count_known)
        first_rows_ms(), scroll_end_ms(), bare_ms(1)  # warm-up
        last_page = -(-args.cases // model.page_size)
        # Interleaved, so that a neighbour's burst of load hits both sides alike.
        first: list[tuple[float, float]] = []
        end: list[tuple[float, float]] = []
        for _ in range(args.repeats):
            first.append((first_rows_ms(), bare_ms(1)))
            end.append((scroll_end_ms(), bare_ms(last_page)))
        ours_first, base_first = (_median([pair[i] for pair in first]) for i in (0, 1))
        ours_end, base_end = (_median([pair[i] for pair in end]) for i in (0, 1))

        # Scroll through everything with a stall probe running.
        gaps: list[float] = []
        cpu_gaps: list[float] = []
        last_tick = [time.perf_counter(), time.thread_time()]

        def tick() -> None:
            now, cpu = time.perf_counter(), time.thread_time()
            gaps.append((now - last_tick[0]) * 1000)
            cpu_gaps.append((cpu - last_tick[1]) * 1000)
            last_tick[:] = [now, cpu]

        probe = QTimer()
        probe.setInterval(10)
        probe.timeout.connect(tick)
        table.scrollToTop()
        wait_until(lambda: shown(0))
        requests_before = model.requests_made
        bar = table.verticalScrollBar()
        probe.start()
        last_tick[:] = [time.perf_counter(), time.thread_time()]
        scroll_start = time.perf_counter()
        for step in range(1, args.scroll_steps + 1):
            bar.setValue(bar.maximum() * step // args.scroll_steps)
            pause = time.perf_counter() + 0.02
            while time.perf_counter() < pause:
                app.processEvents()
                time.sleep(0.001)
        wait_until(lambda: shown(model.rowCount() - 1) and not model.loading)
        scroll_s = time.perf_counter() - scroll_start
        probe.stop()
        pages_requested = model.requests_made - requests_before
        view.close()
        model.wait_for_background(30_000)
        database.dispose()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    busy = _cpu_busy()
    print(
        f"ClinicFusion case list GUI benchmark: {args.cases:,} cases (bulk load {load_s:.1f} s), "
        f"page size {model.page_size}, SQLite {sqlite3.sqlite_version}, Qt offscreen; "
        f"{os.cpu_count()} CPUs; CPU busy during check {busy:.0%}; peak resident memory "
        f"{peak_kib / 1024:.0f} MiB"
    )
    print()
    print("| figure | case list GUI (ms) | bare list_cases (ms) | ratio | goal |")
    print("|---|---|---|---|---|")
    rows = [
        ("time to first rows (query set -> page 1 painted)", ours_first, base_first, ""),
        (f"scroll-to-end fill (jump -> page {last_page} painted)", ours_end, base_end, ""),
    ]
    for name, ours, base, goal in rows:
        print(f"| {name} | {ours:.1f} | {base:.1f} | {ours / base:.2f} | {goal} |")
    print()
    print(
        f"Scrolling through all {args.cases:,} rows in {args.scroll_steps} steps "
        f"({scroll_s:.1f} s): longest event-loop stall {max(gaps):.0f} ms (goal < 50 ms), of "
        f"which GUI-thread CPU at most {max(cpu_gaps):.0f} ms (the rest: other processes), "
        f"median probe interval {_median(gaps):.0f} ms (timer 10 ms); "
        f"{pages_requested} pages requested of {last_page} pages scrolled past "
        f"({pages_requested / args.scroll_steps:.2f} per step)."
    )
    print(
        "Baselines: the bare CaseService.list_cases call for the same page on the same file "
        "(the model adds the thread hop, the row formatting and the paint)."
    )
    return 0


def _cpu_busy() -> float:
    from bench._common import cpu_busy_fraction

    return cpu_busy_fraction()


if __name__ == "__main__":
    raise SystemExit(main())
