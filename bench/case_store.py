"""Case store benchmark at clinic scale: 100,000 cases and 100,000 audit events.

Figures (medians of several runs after a warm-up), each beside a baseline measured in the
same run on the same file, and their ratio:

- case-list page (first and a deep page, 100 rows, with total count) through CaseService
  vs the same page with plain sqlite3;  goal: <= 200 ms
- search (word prefixes of case id, title, suggestion, patient pseudonym) through
  CaseService vs the same query with plain sqlite3;  goal: <= 50 ms
- insert throughput: CaseService.create_case (one transaction + audit event, fsync'd)
  vs a bare sqlite3 INSERT + COMMIT with the same pragmas
- audit verify per 100,000 events (chain, hashes, signed checkpoints) vs reading the same
  rows without any check

Run: ``python -m bench.case_store [--cases 100000]``. Reports other processes' CPU use
(from /proc/stat) so a noisy run can be recognised and repeated.
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
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

from bench._common import cpu_busy_fraction
from clinic_app.domain.cases import CaseQuery
from clinic_app.domain.records import AuditAction, CaseStatus, Role
from clinic_app.domain.search import search_terms
from clinic_app.services.audit import bind_audit_keys
from clinic_app.services.cases import CaseService, new_public_id
from clinic_app.services.context import Actor
from clinic_app.storage.audit import (
    GENESIS_HASH,
    AuditKey,
    checkpoint_mac,
    event_hash,
    verify_chain,
)
from clinic_app.storage.engine import Database, create_database_engine
from clinic_app.storage.migrate import upgrade
from clinic_app.storage.orm import (
    AuditChainHead,
    AuditCheckpoint,
    AuditEvent,
    Case,
    CaseSearchTerm,
    Patient,
    User,
)

DIAGNOSES = [
    "Atrial fibrillation",
    "Sinus rhythm",
    "Sinus tachycardia",
    "Sinus bradycardia",
    "Left ventricular hypertrophy",
    "Adenocarcinoma of colon",
    "Normal colonic mucosa",
    "Cholangiocarcinoma",
    "Myocardial infarction",
    "Premature ventricular contractions",
]


def median_ms(fn: Callable[[], object], repeats: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def populate(database: Database, cases: int, seed: int = 3) -> int:
    """Bulk-load ``cases`` cases (and patients) with core INSERTs; returns the user id."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with database.write() as session:
        user = User(username="bench", display_name="Bench", role=Role.CLINICIAN, password_hash="!")
        session.add(user)
        session.flush()
        user_id = user.id
        batch = 10_000
        for start in range(0, cases, batch):
            count = min(batch, cases - start)
            patients = [
                {
                    "pseudonym": new_public_id("P", 12),
                    "birth_year": rng.randint(1930, 2005),
                    "created_at": now,
                }
                for _ in range(count)
            ]
            ids = session.scalars(
                insert(Patient).returning(Patient.id, sort_by_parameter_order=True), patients
            ).all()
            statuses = list(CaseStatus)[:4]
            rows = []
            for offset, patient_id in enumerate(ids):
                moment = now - timedelta(minutes=cases - start - offset)
                diagnosis = rng.choice(DIAGNOSES) if rng.random() < 0.8 else None
                rows.append(
                    {
                        "case_uid": new_public_id("C"),
                        "version": 1,
                        "patient_id": patient_id,
                        "title": f"Referral {start + offset:06d}",
                        "status": rng.choice(statuses),
                        "is_composite_demo": False,
                        "top_suggestion": diagnosis,
                        "priority": rng.random() if diagnosis else None,
                        "created_by_id": user_id,
                        "created_at": moment,
                        "updated_at": moment,
                    }
                )
            case_ids = session.scalars(
                insert(Case).returning(Case.id, sort_by_parameter_order=True), rows
            ).all()
            pseudonyms = [p["pseudonym"] for p in patients]
            terms = [
                {"case_id": case_id, "term": term}
                for case_id, row, pseudonym in zip(case_ids, rows, pseudonyms, strict=True)
                for term in search_terms(
                    row["case_uid"], pseudonym, row["title"], row["top_suggestion"]
                )
            ]
            session.execute(insert(CaseSearchTerm), terms)
    return user_id


def populate_audit(database: Database, events: int, key: AuditKey) -> None:
    """Append ``events`` correctly chained audit events, each with its signed checkpoint."""
    previous = GENESIS_HASH
    now = datetime.now(UTC)
    rows, marks = [], []
    for sequence in range(1, events + 1):
        event = AuditEvent(
            sequence=sequence,
            event_uid=str(uuid.uuid4()),
            event_type="case.read",
            action=AuditAction.READ,
            occurred_at=now,
            outcome=0,
            user_id=1,
            username="bench",
            role="clinician",
            workstation="bench",
            patient_pseudonym="P-BENCH",
            case_uid="C-X",
            details={"version": 1},
            prev_hash=previous,
            hash="",
        )
        event.hash = event_hash(previous, event)
        previous = event.hash
        rows.append({c.key: getattr(event, c.key) for c in AuditEvent.__table__.columns})
        marks.append(
            {
                "sequence": sequence,
                "head_hash": event.hash,
                "key_id": key.key_id,
                "hmac": checkpoint_mac(key, sequence, event.hash, key.key_id),
                "created_at": now,
            }
        )
    with database.write() as session:
        for start in range(0, len(rows), 10_000):
            session.execute(insert(AuditEvent), rows[start : start + 10_000])
            session.execute(insert(AuditCheckpoint), marks[start : start + 10_000])
        head = session.get(AuditChainHead, 1)
        assert head is not None
        head.last_sequence, head.last_hash = events, previous


def verify(database: Database, key: AuditKey) -> int:
    """The product's verification (clinic_app.storage.audit.verify_chain)."""
    with database.read() as session:
        result = verify_chain(session, key)
    if not result.ok:
        raise RuntimeError(result.describe())
    return result.events_checked


def fetch_only(database: Database) -> None:
    """Baseline: read every event and checkpoint row, no checks."""
    with database.read() as session:
        for table in (AuditEvent.__table__, AuditCheckpoint.__table__):
            for _ in session.execute(select(table)).yield_per(2000):
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--inserts", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        path = Path(temp) / "bench.sqlite3"
        database = Database(create_database_engine(f"sqlite:///{path}"))
        upgrade(database)
        started = time.perf_counter()
        key = AuditKey(secrets.token_bytes(32))
        bind_audit_keys(database, key)
        user_id = populate(database, args.cases)
        populate_audit(database, args.events, key)
        # The bulk load leaves a WAL of hundreds of MB that a running app never has (its
        # transactions are small and auto-checkpointed); fold it in before measuring.
        with sqlite3.connect(path) as folding:
            folding.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        load_s = time.perf_counter() - started
        service = CaseService(database, Path(temp) / "inputs")
        actor = Actor(user_id, "bench", Role.CLINICIAN, "bench")
        raw = sqlite3.connect(path)
        page_sql = (
            "SELECT c.*, p.pseudonym FROM cases c JOIN patients p ON p.id = c.patient_id "
            "WHERE c.status != 'amended' ORDER BY c.updated_at DESC, c.id DESC "
            "LIMIT 100 OFFSET ?"
        )
        count_sql = "SELECT count(*) FROM cases WHERE status != 'amended'"
        term_filter = (
            "c.id IN (SELECT case_id FROM case_search_terms WHERE term >= ?1 AND term < ?2)"
        )
        search_sql = (
            "SELECT c.*, p.pseudonym FROM cases c JOIN patients p ON p.id = c.patient_id "
            f"WHERE c.status != 'amended' AND {term_filter} "
            "ORDER BY c.updated_at DESC, c.id DESC LIMIT 100"
        )
        search_count_sql = (
            f"SELECT count(*) FROM cases c WHERE c.status != 'amended' AND {term_filter}"
        )
        substring_sql = (
            "SELECT count(*) FROM cases c WHERE c.status != 'amended' AND (c.case_uid LIKE ?1 "
            "OR c.title LIKE ?1 OR c.top_suggestion LIKE ?1 OR c.patient_id IN (SELECT id FROM "
            "patients WHERE pseudonym LIKE ?1))"
        )
        deep = (args.cases // 100 // 2) + 1
        rows: list[tuple[str, float, float, str]] = []

        def raw_page(offset: int) -> None:
            raw.execute(count_sql).fetchone()
            raw.execute(page_sql, (offset,)).fetchall()

        rows.append(
            (
                "case list, first page (100 rows + total)",
                median_ms(lambda: service.list_cases(actor, page=1)),
                median_ms(lambda: raw_page(0)),
                "<= 200 ms",
            )
        )
        rows.append(
            (
                f"case list, page {deep}",
                median_ms(lambda: service.list_cases(actor, page=deep)),
                median_ms(lambda: raw_page((deep - 1) * 100)),
                "<= 200 ms",
            )
        )
        for needle in ("fibrillation", "004321", "referral"):
            word = needle.lower()

            def raw_search(word: str = word) -> None:
                raw.execute(search_count_sql, (word, word + "\uffff")).fetchone()
                raw.execute(search_sql, (word, word + "\uffff")).fetchall()

            rows.append(
                (
                    f"search '{needle}'",
                    median_ms(
                        lambda needle=needle: service.list_cases(actor, CaseQuery(text=needle))
                    ),
                    median_ms(raw_search),
                    "<= 50 ms",
                )
            )
        rows.append(
            (
                "search 'fibrillation', old way: LIKE '%...%' count alone (for reference)",
                median_ms(lambda: raw.execute(substring_sql, ("%fibrillation%",)).fetchone()),
                median_ms(
                    lambda: raw.execute(
                        search_count_sql, ("fibrillation", "fibrillation\uffff")
                    ).fetchone()
                ),
                "",
            )
        )

        start = time.perf_counter()
        for _ in range(args.inserts):
            service.create_case(actor, title="insert benchmark")
        service_ms = (time.perf_counter() - start) * 1000 / args.inserts
        bare = sqlite3.connect(path, isolation_level=None)
        bare.execute("PRAGMA synchronous = FULL")
        start = time.perf_counter()
        for index in range(args.inserts):
            bare.execute("BEGIN IMMEDIATE")
            bare.execute(
                "INSERT INTO patients (pseudonym, created_at) VALUES (?, ?)",
                (f"P-BARE{index:06d}", "2026-01-01 00:00:00"),
            )
            bare.execute("COMMIT")
        bare_ms = (time.perf_counter() - start) * 1000 / args.inserts
        rows.append(
            (
                f"insert: one case per transaction ({1000 / service_ms:.0f}/s vs "
                f"{1000 / bare_ms:.0f}/s)",
                service_ms,
                bare_ms,
                "",
            )
        )

        events = args.events + args.inserts
        verify_ms = median_ms(lambda: verify(database, key), repeats=3)
        rows.append(
            (
                f"audit verify, per 100,000 events ({events:,} verified)",
                verify_ms * 100_000 / events,
                median_ms(lambda: fetch_only(database), repeats=3) * 100_000 / events,
                "",
            )
        )
        raw.close()
        bare.close()
        database.dispose()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    busy = cpu_busy_fraction()
    print(
        f"ClinicFusion case store benchmark: {args.cases:,} cases, {args.events:,} audit "
        f"events (bulk load {load_s:.1f} s), SQLite {sqlite3.sqlite_version}, "
        f"synchronous=FULL, WAL; {os.cpu_count()} CPUs; CPU busy during check "
        f"{busy:.0%}; peak resident memory {peak_kib / 1024:.0f} MiB"
    )
    print()
    print("| figure | ClinicFusion (ms) | baseline (ms) | ratio | goal |")
    print("|---|---|---|---|---|")
    for name, ours, base, goal in rows:
        print(f"| {name} | {ours:.1f} | {base:.1f} | {ours / base:.2f} | {goal} |")
    print()
    print(
        "Baselines: the same SQL through plain sqlite3 on the same file (list, search); a bare "
        "INSERT+COMMIT with the same pragmas (insert); reading every event and checkpoint row "
        "without the link checks (verify)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
