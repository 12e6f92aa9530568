"""Case use cases on SQLite and PostgreSQL: lifecycle, read-only signed cases, amendments,
search, permissions and exactly one audit event per action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clinic_app.domain.cases import CaseQuery, NewAnalysis, NewSuggestion
from clinic_app.domain.errors import AccessDenied, InputError, ReadOnlyCase
from clinic_app.domain.records import (
    AuditAction,
    AuditOutcome,
    CaseStatus,
    DecisionAction,
    Modality,
    ReportKind,
    Role,
)
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent, Case, Decision, NoteVersion, User

SNOMED = "http://snomed.info/sct"


def make_actor(database: Database, username: str, role: Role) -> Actor:
    with database.write() as session:
        user = User(username=username, display_name=username.title(), role=role, password_hash="x")
        session.add(user)
        session.flush()
        return Actor(user.id, username, role, "ws-test")


@pytest.fixture
def service(database: Database, tmp_path: Path) -> CaseService:
    return CaseService(database, tmp_path / "inputs")


@pytest.fixture
def clinician(database: Database) -> Actor:
    return make_actor(database, "dr_ada", Role.CLINICIAN)


def events(database: Database) -> list[AuditEvent]:
    with database.read() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)))


def analysis() -> NewAnalysis:
    return NewAnalysis(
        model_name="tiny-fusion",
        model_version="0.0.1",
        bundle_sha256="b" * 64,
        input_sha256s=["a" * 64],
        device="cpu",
        suggestions=[
            NewSuggestion(SNOMED, "426783006", "Sinus rhythm", 0.40, 0.35),
            NewSuggestion(SNOMED, "164889003", "Atrial fibrillation", 0.90, 0.82),
            NewSuggestion(SNOMED, "55827005", "Left ventricular hypertrophy", 0.5, None, True),
        ],
        timings_ms={"total": 123.0},
    )


def test_case_lifecycle_with_one_audit_event_per_action(
    service: CaseService, clinician: Actor, database: Database, tmp_path: Path
) -> None:
    created = service.create_case(clinician, title="Chest pain", birth_year=1961, sex="female")
    assert created.status is CaseStatus.NEW and created.version == 1
    assert created.case_uid.startswith("C-") and created.patient_pseudonym.startswith("P-")

    ecg = tmp_path / "ecg.hea"
    ecg.write_text("record 100 2 360 650000\n", encoding="utf-8")
    item = service.add_input(
        clinician, created.case_uid, ecg, modality=Modality.ECG, media_type="application/x-wfdb"
    )
    assert Path(item.stored_path).read_bytes() == ecg.read_bytes()
    assert Path(item.stored_path).name == f"{item.sha256}.hea"

    service.save_note(clinician, created.case_uid, "Pain since 2 h.")
    note = service.save_note(clinician, created.case_uid, "Pain since 2 h, radiating.")
    assert note.version == 2

    stored = service.record_analysis(clinician, created.case_uid, analysis())
    assert [s.code for s in stored.suggestions] == ["164889003", "426783006", "55827005"]
    detail = service.get_case(clinician, created.case_uid)
    assert detail.summary.status is CaseStatus.ANALYSED
    assert detail.summary.top_suggestion == "Atrial fibrillation"
    assert detail.summary.priority == pytest.approx(0.82)
    assert [n.version for n in detail.notes] == [1, 2]

    top = stored.suggestions[0]
    decision = service.decide(
        clinician,
        created.case_uid,
        top.id,
        DecisionAction.OVERRIDE,
        reason="Flutter waves in II",
        override=(SNOMED, "5370000", "Atrial flutter"),
    )
    assert decision.override_code == "5370000"
    sign_off = service.sign(clinician, created.case_uid, "Atrial flutter; start anticoagulation.")
    assert len(sign_off.content_sha256) == 64
    assert service.get_case(clinician, created.case_uid).summary.status is CaseStatus.SIGNED

    trail = events(database)
    assert [(e.event_type, e.action) for e in trail] == [
        ("case.create", AuditAction.CREATE),
        ("case.input.add", AuditAction.UPDATE),
        ("case.note.save", AuditAction.UPDATE),
        ("case.note.save", AuditAction.UPDATE),
        ("case.analyse", AuditAction.EXECUTE),
        ("case.read", AuditAction.READ),
        ("case.decide", AuditAction.UPDATE),
        ("case.sign", AuditAction.UPDATE),
        ("case.read", AuditAction.READ),
    ]
    assert {e.case_uid for e in trail} == {created.case_uid}
    assert {e.patient_pseudonym for e in trail} == {created.patient_pseudonym}
    assert {e.username for e in trail} == {"dr_ada"}
    assert all(e.outcome == AuditOutcome.SUCCESS for e in trail)
    assert not any("Pain since" in str(e.details) for e in trail), "note text must not be audited"


def test_signed_case_is_read_only_and_amendment_is_a_new_version(
    service: CaseService, clinician: Actor, database: Database
) -> None:
    case = service.create_case(clinician, title="Syncope")
    service.save_note(clinician, case.case_uid, "Collapsed at home.")
    service.sign(clinician, case.case_uid, "Vasovagal syncope.")

    with pytest.raises(ReadOnlyCase, match="signed"):
        service.save_note(clinician, case.case_uid, "Changed my mind.")
    with pytest.raises(ReadOnlyCase):
        service.record_analysis(clinician, case.case_uid, analysis())
    with pytest.raises(ReadOnlyCase, match="cannot be deleted"):
        service.delete_case(make_actor(database, "root", Role.ADMIN), case.case_uid)

    # Not only the service: the session guard refuses a direct ORM change too.
    with pytest.raises(ReadOnlyCase), database.write() as session:
        session.scalars(select(Case)).one().title = "edited behind the service's back"
    with pytest.raises(ReadOnlyCase), database.write() as session:
        stored = session.scalars(select(Case)).one()
        session.add(NoteVersion(case=stored, version=9, text="x", sha256="0" * 64))

    report = Path(service.inputs_dir).parent / "report.pdf"
    report.write_bytes(b"%PDF-1.7 report")
    assert len(service.record_report(clinician, case.case_uid, ReportKind.PDF, report)) == 64

    amended = service.amend(clinician, case.case_uid, "Late troponin result")
    assert (amended.case_uid, amended.version, amended.status) == (
        case.case_uid,
        2,
        CaseStatus.IN_REVIEW,
    )
    note = service.save_note(clinician, case.case_uid, "Troponin raised at 6 h.")
    assert note.version == 2  # the amendment started from the signed note

    old = service.get_case(clinician, case.case_uid, version=1)
    assert old.summary.status is CaseStatus.AMENDED
    assert old.sign_off is not None and old.sign_off.final_impression == "Vasovagal syncope."
    assert [n.text for n in old.notes] == ["Collapsed at home."]
    new = service.get_case(clinician, case.case_uid)
    assert new.previous_version == 1 and new.sign_off is None

    listed = service.list_cases(clinician)
    assert [(c.case_uid, c.version) for c in listed.items] == [(case.case_uid, 2)]
    everything = service.list_cases(clinician, CaseQuery(include_superseded=True))
    assert sorted(c.version for c in everything.items) == [1, 2]


def test_bad_input_is_refused_and_nothing_is_stored(
    service: CaseService, clinician: Actor, database: Database, tmp_path: Path
) -> None:
    case = service.create_case(clinician)
    before = len(events(database))
    with pytest.raises(InputError, match="does not exist"):
        service.add_input(
            clinician,
            case.case_uid,
            tmp_path / "missing.svs",
            modality=Modality.PATHOLOGY,
            media_type="image/tiff",
        )
    with pytest.raises(InputError, match="characters; the limit"):
        service.save_note(clinician, case.case_uid, "x" * 200_001)
    bad = NewAnalysis("m", "1", "b" * 64, [], "cpu", [NewSuggestion(SNOMED, "1", "x", 1.5)])
    with pytest.raises(InputError, match=r"not in \[0, 1\]"):
        service.record_analysis(clinician, case.case_uid, bad)
    with pytest.raises(InputError, match="no case C-NOPE"):
        service.save_note(clinician, "C-NOPE", "text")
    stored = service.record_analysis(clinician, case.case_uid, analysis())
    with pytest.raises(InputError, match="reason is required"):
        service.decide(clinician, case.case_uid, stored.suggestions[0].id, DecisionAction.REJECT)
    with pytest.raises(InputError, match="already part of case"):
        note_file = tmp_path / "n.txt"
        note_file.write_text("same", encoding="utf-8")
        for _ in range(2):
            service.add_input(
                clinician,
                case.case_uid,
                note_file,
                modality=Modality.NOTE,
                media_type="text/plain",
            )
    detail = service.get_case(clinician, case.case_uid)
    assert detail.notes == [] and detail.decisions == [] and len(detail.inputs) == 1
    # Only the successful actions were audited (analysis, one input, the read).
    assert [e.event_type for e in events(database)[before:]] == [
        "case.analyse",
        "case.input.add",
        "case.read",
    ]


def test_the_database_refuses_an_override_without_a_reason(
    service: CaseService, clinician: Actor, database: Database
) -> None:
    case = service.create_case(clinician)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), database.write() as session:
        stored = session.scalars(select(Case).where(Case.case_uid == case.case_uid)).one()
        session.add(
            Decision(
                case=stored, action=DecisionAction.OVERRIDE, reason="  ", user_id=clinician.user_id
            )
        )


def test_role_without_permission_is_refused_and_the_attempt_audited(
    service: CaseService, clinician: Actor, database: Database
) -> None:
    case = service.create_case(clinician)
    scientist = make_actor(database, "ds_lee", Role.DATA_SCIENTIST)
    with pytest.raises(AccessDenied, match=r"ds_lee \(data scientist\) may not open cases"):
        service.get_case(scientist, case.case_uid)
    admin = make_actor(database, "root", Role.ADMIN)
    with pytest.raises(AccessDenied):
        service.create_case(admin)
    refused = [e for e in events(database) if e.outcome == AuditOutcome.MINOR_FAILURE]
    assert [(e.username, e.event_type, e.case_uid) for e in refused] == [
        ("ds_lee", "case.read", case.case_uid),
        ("root", "case.create", None),
    ]


def test_list_search_filters_sorting_and_paging(
    service: CaseService, clinician: Actor, database: Database
) -> None:
    reviewer = make_actor(database, "dr_bo", Role.REVIEWER)
    uids = [service.create_case(clinician, title=f"Case {i:02d}").case_uid for i in range(12)]
    service.record_analysis(clinician, uids[3], analysis())
    stored = service.record_analysis(clinician, uids[5], analysis())
    service.decide(reviewer, uids[5], stored.suggestions[0].id, DecisionAction.ACCEPT)

    page = service.list_cases(clinician, page=2, page_size=5)
    assert (page.total, page.pages, len(page.items)) == (12, 3, 5)
    assert service.list_cases(clinician, page=3, page_size=5).items[-1].case_uid == uids[0]

    assert {c.case_uid for c in service.list_cases(clinician, CaseQuery(text="case 07")).items} == {
        uids[7]
    }
    assert service.list_cases(clinician, CaseQuery(text=uids[9].lower())).total == 1
    assert service.list_cases(clinician, CaseQuery(text="100%_")).total == 0
    # The search box matches word prefixes in any order, case-insensitively.
    assert {
        c.case_uid for c in service.list_cases(clinician, CaseQuery(text="FIBR atr")).items
    } == {uids[3], uids[5]}
    assert service.list_cases(clinician, CaseQuery(text="brillation")).total == 0
    patient = service.list_cases(clinician, page=1).items[0].patient_pseudonym
    assert service.list_cases(clinician, CaseQuery(text=patient[:6])).total == 1
    fib = service.list_cases(clinician, CaseQuery(suggestion="fibrillation"))
    assert {c.case_uid for c in fib.items} == {uids[3], uids[5]}
    assert [
        c.case_uid
        for c in service.list_cases(clinician, CaseQuery(status=CaseStatus.IN_REVIEW)).items
    ] == [uids[5]]
    assert [
        c.reviewer for c in service.list_cases(clinician, CaseQuery(reviewer="dr_bo")).items
    ] == ["dr_bo"]
    by_priority = service.list_cases(clinician, CaseQuery(sort="priority", descending=True))
    assert by_priority.items[0].priority == pytest.approx(0.82)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert service.list_cases(clinician, CaseQuery(created_from=tomorrow)).total == 0
    with pytest.raises(InputError, match="cannot be sorted by 'name'"):
        service.list_cases(clinician, CaseQuery(sort="name"))
    with database.read() as session:
        lists = session.scalar(select(func.count()).where(AuditEvent.event_type == "case.list"))
    assert lists == 14  # one audit event per list query, not per row


def test_delete_an_unsigned_case(
    service: CaseService, clinician: Actor, database: Database
) -> None:
    case = service.create_case(clinician)
    service.record_analysis(clinician, case.case_uid, analysis())
    admin = make_actor(database, "root", Role.ADMIN)
    service.delete_case(admin, case.case_uid)
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0
    assert events(database)[-1].event_type == "case.delete"
    assert events(database)[-1].action == AuditAction.DELETE


def test_a_search_with_many_matches_is_capped_and_still_sorted(
    service: CaseService, clinician: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clinic_app.services.cases as cases_module

    uids = [service.create_case(clinician, title=f"Referral {i}").case_uid for i in range(6)]
    service.create_case(clinician, title="Other")
    monkeypatch.setattr(cases_module, "SEARCH_COUNT_CAP", 3)
    many = service.list_cases(clinician, CaseQuery(text="referral"), page_size=4)
    assert many.total_is_lower_bound and many.total == 4
    assert [c.case_uid for c in many.items] == uids[::-1][:4]  # newest first, via EXISTS
    few = service.list_cases(clinician, CaseQuery(text="other"))
    assert (few.total, few.total_is_lower_bound) == (1, False)
    everything = service.list_cases(clinician)
    assert (everything.total, everything.total_is_lower_bound) == (7, False)
