"""The triage worklist service on SQLite and PostgreSQL: sorting by risk and by uncertainty over
hand-built analyses, flags, filters, paging, review progress, permissions and audit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from clinic_app.domain.cases import NewAnalysis, NewSuggestion
from clinic_app.domain.errors import AccessDenied
from clinic_app.domain.records import AuditOutcome, CaseStatus, DecisionAction, Role
from clinic_app.domain.worklist import (
    FLAG_ABSTAINED,
    FLAG_CRITICAL,
    FLAG_OVERRIDE,
    REVIEWER_ME,
    REVIEWER_UNASSIGNED,
    TriageScores,
    WorklistQuery,
    WorklistSort,
    WorklistStatus,
    triage_scores,
)
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.worklist import WorklistService
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent, Case, User

SNOMED = "http://snomed.info/sct"
AF, MALIGNANT, SINUS, PVC, PAC = "164889003", "363346000", "426783006", "427172004", "284470004"
DISPLAY = {
    AF: "Atrial fibrillation",
    MALIGNANT: "Malignant neoplastic disease",
    SINUS: "Sinus rhythm",
    PVC: "Premature ventricular contractions",
    PAC: "Premature atrial contraction",
}
CRITICAL = {AF, MALIGNANT}

#: (code, calibrated probability, abstained)
Label = tuple[str, float, bool]


def make_actor(database: Database, username: str, role: Role = Role.CLINICIAN) -> Actor:
    with database.write() as session:
        user = User(username=username, display_name=username, role=role, password_hash="x")
        session.add(user)
        session.flush()
        return Actor(user.id, username, role, "ws-test")


def new_analysis(
    labels: Sequence[Label], *, missing: dict[str, str] | None = None, flag_critical: bool = True
) -> NewAnalysis:
    """An analysis as the model would store it; ``flag_critical`` False: an older analysis
    whose suggestions carry no critical flag in their evidence."""
    return NewAnalysis(
        model_name="clinicfusion-demo",
        model_version="1.0.0",
        bundle_sha256="b" * 64,
        input_sha256s=[],
        device="cpu",
        suggestions=[
            NewSuggestion(
                SNOMED,
                code,
                DISPLAY[code],
                probability=min(1.0, p + 0.02),
                calibrated_probability=p,
                abstained=abstained,
                evidence={"critical": code in CRITICAL} if flag_critical else {},
            )
            for code, p, abstained in labels
        ],
        outputs={"modalities_missing": missing or {}, "inputs": {}},
    )


def analysed_case(
    cases: CaseService, actor: Actor, title: str, labels: Sequence[Label], **kwargs: Any
) -> str:
    """A new case with one analysis; returns its uid."""
    uid = cases.create_case(actor, title=title).case_uid
    cases.record_analysis(actor, uid, new_analysis(labels, **kwargs))
    return uid


@pytest.fixture
def cases(database: Database, tmp_path: Path) -> CaseService:
    return CaseService(database, tmp_path / "inputs")


@pytest.fixture
def clinician(database: Database) -> Actor:
    return make_actor(database, "dr_ada")


@pytest.fixture
def four(cases: CaseService, clinician: Actor) -> dict[str, str]:
    """Four analysed cases with known risk and uncertainty."""
    return {
        # risk 0.90 (AF), confident top 0.90: far from 0.5
        "high": analysed_case(
            cases, clinician, "High risk", [(AF, 0.90, False), (SINUS, 0.20, False)]
        ),
        # risk 0.30, top confident 0.55 (closest to 0.5), no abstention
        "borderline": analysed_case(
            cases, clinician, "Borderline", [(SINUS, 0.55, False), (MALIGNANT, 0.30, False)]
        ),
        # no critical label; two abstentions; ECG missing
        "unsure": analysed_case(
            cases,
            clinician,
            "Unsure",
            [(PVC, 0.80, False), (SINUS, 0.45, True), (PAC, 0.05, True)],
            missing={"ecg": "no ECG in the case"},
        ),
        # risk 0.60 (abstained critical counts: triage errs on the side of looking), 1 abstention
        "abstained critical": analysed_case(
            cases, clinician, "Abstained critical", [(SINUS, 0.97, False), (MALIGNANT, 0.60, True)]
        ),
    }


def titles(page: Any) -> list[str]:
    return [item.title for item in page.items]


def test_sorted_by_risk_with_flags(
    cases: CaseService, clinician: Actor, four: dict[str, str]
) -> None:
    service = WorklistService(cases)
    page = service.worklist(clinician, WorklistQuery(sort=WorklistSort.RISK))
    assert titles(page) == ["High risk", "Abstained critical", "Borderline", "Unsure"]
    assert page.total == 4 and page.reviewed == 0
    high, abstained, borderline, unsure = page.items
    assert high.risk == pytest.approx(0.90) and high.top_critical == "Atrial fibrillation"
    assert high.flags == (FLAG_CRITICAL,)
    assert high.top_suggestion == "Atrial fibrillation" and high.top_probability == 0.90
    assert abstained.risk == pytest.approx(0.60) and abstained.abstained_count == 1
    assert abstained.flags == (FLAG_CRITICAL, FLAG_ABSTAINED)
    assert borderline.risk == pytest.approx(0.30) and borderline.flags == ()
    assert unsure.risk is None and unsure.top_critical is None
    assert unsure.flags == (FLAG_ABSTAINED, "missing ECG")
    assert unsure.abstained_count == 2
    # suggestions come confident first; critical ones are marked by id
    assert unsure.suggestions[0].display == "Premature ventricular contractions"
    assert {s.id for s in high.suggestions if s.code == AF} == set(high.critical_ids)
    assert not high.decided and not high.signed and high.status is CaseStatus.ANALYSED


def test_sorted_by_uncertainty(cases: CaseService, clinician: Actor, four: dict[str, str]) -> None:
    page = WorklistService(cases).worklist(clinician, WorklistQuery(sort=WorklistSort.UNCERTAINTY))
    # abstentions first (two before one), then the top probability closest to 0.5
    assert titles(page) == ["Unsure", "Abstained critical", "Borderline", "High risk"]


def test_older_analyses_use_the_bundles_critical_codes(
    cases: CaseService, clinician: Actor
) -> None:
    analysed_case(
        cases, clinician, "Old AF", [(AF, 0.70, False), (SINUS, 0.9, False)], flag_critical=False
    )
    analysed_case(cases, clinician, "New", [(MALIGNANT, 0.40, False)])
    without = WorklistService(cases).worklist(clinician, WorklistQuery())
    assert titles(without) == ["New", "Old AF"] and without.items[1].risk is None
    with_codes = WorklistService(cases, critical_codes={f"{SNOMED}|{AF}", f"{SNOMED}|{MALIGNANT}"})
    page = with_codes.worklist(clinician, WorklistQuery())
    assert titles(page) == ["Old AF", "New"]
    assert page.items[0].risk == pytest.approx(0.70) and FLAG_CRITICAL in page.items[0].flags
    # an explicit evidence flag wins over the code list
    assert page.items[1].risk == pytest.approx(0.40)


def test_only_the_latest_analysis_counts(cases: CaseService, clinician: Actor) -> None:
    uid = analysed_case(cases, clinician, "Re-analysed", [(AF, 0.95, False)])
    case = cases.get_case(clinician, uid)
    first = case.latest_analysis
    assert first is not None
    cases.decide(clinician, uid, first.suggestions[0].id, DecisionAction.ACCEPT)
    service = WorklistService(cases)
    assert service.worklist(clinician).items[0].decided
    cases.record_analysis(clinician, uid, new_analysis([(AF, 0.20, False), (SINUS, 0.7, False)]))
    (item,) = service.worklist(clinician).items
    assert item.risk == pytest.approx(0.20) and not item.decided
    assert item.status is CaseStatus.IN_REVIEW and not item.reviewed
    assert service.review_progress(clinician) == (0, 1)


def test_filters_by_status_reviewer_and_flags(
    cases: CaseService, database: Database, clinician: Actor, four: dict[str, str]
) -> None:
    other = make_actor(database, "dr_bo", Role.REVIEWER)
    service = WorklistService(cases)
    items = {item.title: item for item in service.worklist(clinician).items}
    high = items["High risk"]
    # dr_ada overrides on "High risk"; dr_bo accepts "Borderline" and signs it
    cases.decide(
        clinician,
        four["high"],
        high.suggestions[0].id,
        DecisionAction.OVERRIDE,
        reason="Flutter on the rhythm strip",
        override=(SNOMED, "5370000", "Atrial flutter"),
    )
    border = items["Borderline"]
    cases.decide(other, four["borderline"], border.suggestions[0].id, DecisionAction.ACCEPT)
    cases.sign(other, four["borderline"], "Sinus rhythm.")

    def listed(**query: Any) -> list[str]:
        return sorted(titles(service.worklist(clinician, WorklistQuery(**query))))

    assert listed() == ["Abstained critical", "High risk", "Unsure"]  # unsigned by default
    assert listed(status=WorklistStatus.ANALYSED) == ["Abstained critical", "Unsure"]
    assert listed(status=WorklistStatus.IN_REVIEW) == ["High risk"]
    assert listed(status=WorklistStatus.SIGNED) == ["Borderline"]
    assert listed(reviewer=REVIEWER_ME) == ["High risk"]
    assert listed(reviewer=REVIEWER_UNASSIGNED) == ["Abstained critical", "Unsure"]
    assert listed(reviewer="DR_BO", status=WorklistStatus.SIGNED) == ["Borderline"]
    assert listed(reviewer="nobody-of-that-name") == []
    assert listed(only_flagged=True) == ["Abstained critical", "High risk", "Unsure"]
    assert listed(only_flagged=True, status=WorklistStatus.SIGNED) == []
    high_now = service.worklist(clinician, WorklistQuery(reviewer=REVIEWER_ME)).items[0]
    assert high_now.decided and high_now.reviewer == "dr_ada"
    assert FLAG_OVERRIDE in high_now.flags
    decision = high_now.decision_for(high.suggestions[0].id)
    assert decision is not None and decision.action is DecisionAction.OVERRIDE
    signed = service.worklist(clinician, WorklistQuery(status=WorklistStatus.SIGNED)).items[0]
    assert signed.signed and signed.reviewed


def test_paging_and_progress(cases: CaseService, clinician: Actor, four: dict[str, str]) -> None:
    service = WorklistService(cases)
    first = service.worklist(clinician, WorklistQuery(), page=1, page_size=3)
    second = service.worklist(clinician, WorklistQuery(), page=2, page_size=3)
    assert (first.total, len(first.items), first.offset) == (4, 3, 0)
    assert (second.total, len(second.items), second.offset) == (4, 1, 3)
    assert titles(first) + titles(second) == [
        "High risk",
        "Abstained critical",
        "Borderline",
        "Unsure",
    ]
    shifted = service.worklist(clinician, WorklistQuery(), offset=1, page_size=2)
    assert titles(shifted) == ["Abstained critical", "Borderline"]
    beyond = service.worklist(clinician, WorklistQuery(), page=9, page_size=3)
    assert beyond.items == [] and beyond.total == 4
    assert service.review_progress(clinician, WorklistQuery()) == (0, 4)
    item = first.items[0]
    cases.decide(clinician, item.case_uid, item.suggestions[0].id, DecisionAction.ACCEPT)
    assert service.review_progress(clinician, WorklistQuery()) == (1, 4)
    assert service.worklist(clinician, WorklistQuery(), page_size=1).progress == (1, 4)
    fresh = service.item(clinician, item.case_uid)
    assert fresh is not None and fresh.decided and fresh.status is CaseStatus.IN_REVIEW
    # a case without an analysis is not on the worklist
    bare = cases.create_case(clinician, title="Not analysed").case_uid
    assert service.item(clinician, bare) is None
    assert service.review_progress(clinician) == (1, 4)


def test_admin_is_refused_and_listing_is_audited(
    cases: CaseService, database: Database, clinician: Actor, four: dict[str, str]
) -> None:
    service = WorklistService(cases)
    admin = make_actor(database, "it_admin", Role.ADMIN)
    with pytest.raises(AccessDenied):
        service.worklist(admin, WorklistQuery())
    with pytest.raises(AccessDenied):
        service.review_progress(admin)
    service.worklist(clinician, WorklistQuery(only_flagged=True, reviewer="dr_bo"), page_size=2)
    with database.read() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "case.worklist")
        ).all()
    refused = [e for e in events if e.outcome == AuditOutcome.MINOR_FAILURE]
    assert len(refused) == 2 and all(e.username == "it_admin" for e in refused)
    (listed,) = [e for e in events if e.outcome == AuditOutcome.SUCCESS]
    assert listed.username == "dr_ada"
    assert listed.details["page_size"] == 2 and listed.details["only_flagged"] is True
    assert listed.details["reviewer"] == "named"  # no user name in the trail's details
    assert listed.details["total"] == 0 and listed.details["returned"] == 0


def test_signing_checks_the_password_again(cases: CaseService, database: Database) -> None:
    from clinic_app.services.users import (
        PasswordHashing,
        authenticate,
        create_first_admin,
        create_user,
    )

    cheap = PasswordHashing(time_cost=1, memory_cost_kib=8, parallelism=1)
    create_first_admin(database, "it-admin", "Admin-password-2026!", hashing=cheap)
    admin = authenticate(database, "it-admin", "Admin-password-2026!", hashing=cheap)
    create_user(database, admin, "dr-lee", "Correct-horse-9", Role.CLINICIAN, hashing=cheap)
    actor = authenticate(database, "dr-lee", "Correct-horse-9", hashing=cheap)
    uid = analysed_case(cases, actor, "To sign", [(AF, 0.9, False)])
    service = WorklistService(cases)
    with pytest.raises(AccessDenied):
        service.sign_with_password(actor, uid, "AF.", "wrong password")
    assert cases.get_case(actor, uid).summary.status is CaseStatus.ANALYSED
    signed = service.sign_with_password(actor, uid, "AF confirmed.", "Correct-horse-9")
    assert signed.user == "dr-lee" and signed.final_impression == "AF confirmed."
    item = service.item(actor, uid)
    assert item is not None and item.signed and item.reviewed


# -- the stored triage figures ------------------------------------------------------------------
def scored(labels: Sequence[Label], **kwargs: Any) -> TriageScores:
    return triage_scores(new_analysis(labels, **kwargs).suggestions)


def test_triage_scores_follow_the_documented_formula() -> None:
    # risk: highest calibrated probability of a critical label, abstained ones included
    high = scored([(AF, 0.90, False), (SINUS, 0.20, False), (MALIGNANT, 0.95, True)])
    assert high.risk == pytest.approx(0.95) and high.abstained == 1
    # uncertainty = abstained + 1 - 2 * |p(top) - 0.5|, top = first confident by rank
    assert high.uncertainty == pytest.approx(1 + 1 - 2 * 0.40)
    assert scored([(SINUS, 0.55, False)]) == TriageScores(None, 0, pytest.approx(0.9))
    # nothing confident: p(top) counts as 0.5, the most uncertain call
    assert scored([(PVC, 0.8, True), (PAC, 0.1, True)]).uncertainty == pytest.approx(3.0)
    # the raw probability where there is no calibration
    raw = NewSuggestion(SNOMED, AF, "AF", probability=0.7, evidence={"critical": True})
    assert triage_scores([raw]) == TriageScores(0.7, 0, pytest.approx(0.6))
    # the bundle's codes only for suggestions without the evidence flag
    old = new_analysis([(AF, 0.7, False)], flag_critical=False).suggestions
    assert triage_scores(old).risk is None
    assert triage_scores(old, {f"{SNOMED}|{AF}"}).risk == pytest.approx(0.7)
    assert (
        triage_scores(new_analysis([(SINUS, 0.9, False)]).suggestions, {f"{SNOMED}|{SINUS}"}).risk
        is None  # evidence says "critical": False, which wins over the code list
    )


def stored_triage(database: Database, uid: str) -> list[tuple[Any, ...]]:
    with database.read() as session:
        rows = session.execute(
            select(Case.version, Case.triage_risk, Case.triage_abstained, Case.triage_uncertainty)
            .where(Case.case_uid == uid)
            .order_by(Case.version)
        ).all()
    return [tuple(row) for row in rows]


def test_recording_an_analysis_stores_its_triage_figures_and_amending_clears_them(
    cases: CaseService, database: Database, clinician: Actor
) -> None:
    labels: list[Label] = [(SINUS, 0.97, False), (MALIGNANT, 0.60, True)]
    uid = cases.create_case(clinician, title="Stored").case_uid
    assert stored_triage(database, uid) == [(1, None, 0, None)]  # not analysed: not listed
    cases.record_analysis(clinician, uid, new_analysis(labels))
    expected = scored(labels)
    assert stored_triage(database, uid) == [
        (1, expected.risk, expected.abstained, pytest.approx(expected.uncertainty))
    ]
    service = WorklistService(cases)
    (item,) = service.worklist(clinician).items
    assert (item.risk, item.abstained_count) == (expected.risk, expected.abstained)
    cases.sign(clinician, uid, "Sinus rhythm.")
    cases.amend(clinician, uid, "Late biopsy result")
    assert stored_triage(database, uid)[1] == (2, None, 0, None)
    assert service.worklist(clinician).items == []  # the new version awaits its analysis
    cases.record_analysis(clinician, uid, new_analysis([(AF, 0.8, False)]))
    assert stored_triage(database, uid)[1][:3] == (2, pytest.approx(0.8), 0)
    assert [i.version for i in service.worklist(clinician).items] == [2]


def test_paging_by_risk_crosses_from_ranked_to_unranked_cases(
    cases: CaseService, clinician: Actor
) -> None:
    made = [
        analysed_case(cases, clinician, "r0.7", [(AF, 0.7, False)]),
        analysed_case(cases, clinician, "none-a", [(SINUS, 0.9, False)]),
        analysed_case(cases, clinician, "r0.9", [(MALIGNANT, 0.9, False)]),
        analysed_case(cases, clinician, "none-b", [(PVC, 0.6, False)]),
        analysed_case(cases, clinician, "r0.7-later", [(AF, 0.7, False)]),
        analysed_case(cases, clinician, "none-c", [(PAC, 0.3, True)]),
    ]
    assert len(made) == 6
    service = WorklistService(cases)
    # by risk, ties newest first; then cases without risk, newest first
    expected = ["r0.9", "r0.7-later", "r0.7", "none-c", "none-b", "none-a"]
    assert titles(service.worklist(clinician, page_size=100)) == expected
    for size in (1, 2, 4):
        pages = [
            titles(service.worklist(clinician, offset=start, page_size=size))
            for start in range(0, 6, size)
        ]
        assert [t for page in pages for t in page] == expected
    assert titles(service.worklist(clinician, offset=2, page_size=3)) == expected[2:5]
    flagged = service.worklist(clinician, WorklistQuery(only_flagged=True))
    assert titles(flagged) == ["r0.9", "r0.7-later", "r0.7", "none-c"]
    assert (flagged.total, service.worklist(clinician, offset=6).total) == (4, 6)


def forget_triage(database: Database) -> None:
    """Make the database look as if analysed before schema revision 0004."""
    with database.write() as session:
        session.execute(
            update(Case).values(
                triage_risk=None,
                triage_abstained=0,
                triage_uncertainty=None,
                updated_at=Case.updated_at,
            )
        )


def backfill_events(database: Database) -> list[AuditEvent]:
    with database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.event_type == "case.triage.backfill")
            )
        )


def test_creating_the_service_backfills_cases_analysed_before_the_triage_columns(
    cases: CaseService, database: Database, clinician: Actor, four: dict[str, str]
) -> None:
    before = titles(WorklistService(cases).worklist(clinician))
    before_uncertain = titles(
        WorklistService(cases).worklist(clinician, WorklistQuery(sort=WorklistSort.UNCERTAINTY))
    )
    with database.read() as session:
        updated = dict(session.execute(select(Case.id, Case.updated_at)).all())
    forget_triage(database)
    assert backfill_events(database) == []
    service = WorklistService(cases)  # writes the figures once, as the system
    assert titles(service.worklist(clinician)) == before
    uncertain = service.worklist(clinician, WorklistQuery(sort=WorklistSort.UNCERTAINTY))
    assert titles(uncertain) == before_uncertain
    (event,) = backfill_events(database)
    assert event.username == "system" and event.details == {"cases": 4, "critical_codes": 0}
    with database.read() as session:  # not a clinical change: the case list order stays
        assert dict(session.execute(select(Case.id, Case.updated_at)).all()) == updated
    assert service.backfill_triage(Actor.system()) == 0  # nothing left: no second event
    WorklistService(cases)
    assert len(backfill_events(database)) == 1
    with pytest.raises(AccessDenied):  # an explicit run needs database administration
        forget_triage(database)
        service.backfill_triage(clinician)


def test_backfill_takes_risk_from_the_bundles_codes_for_unflagged_analyses(
    cases: CaseService, database: Database, clinician: Actor
) -> None:
    old = analysed_case(
        cases, clinician, "Old AF", [(AF, 0.70, False), (SINUS, 0.9, False)], flag_critical=False
    )
    analysed_case(cases, clinician, "New", [(MALIGNANT, 0.40, False)])
    assert stored_triage(database, old)[0][1] is None  # the flag is missing: no risk yet
    codes = {f"{SNOMED}|{AF}", f"{SNOMED}|{MALIGNANT}"}
    service = WorklistService(cases)
    assert service.backfill_triage(Actor.system(), codes) == 1  # only the unflagged case
    assert stored_triage(database, old)[0][1] == pytest.approx(0.70)
    assert service.backfill_triage(Actor.system(), codes) == 0
    assert titles(service.worklist(clinician)) == ["Old AF", "New"]


def test_a_database_analysed_before_revision_0004_keeps_its_data_and_gets_its_figures(
    cases: CaseService, database: Database, clinician: Actor, four: dict[str, str]
) -> None:
    from clinic_app.storage.migrate import downgrade, schema_differences, upgrade

    service = WorklistService(cases)
    item = service.worklist(clinician).items[0]
    cases.decide(clinician, item.case_uid, item.suggestions[0].id, DecisionAction.ACCEPT)
    before = service.worklist(clinician)
    downgrade(database, "0003")  # drops the triage columns in place (never copies 'cases')
    upgrade(database)
    assert schema_differences(database) == []
    after = WorklistService(cases).worklist(clinician)
    assert titles(after) == titles(before) and after.progress == before.progress == (1, 4)
    assert [i.decisions for i in after.items] == [i.decisions for i in before.items]
    assert len(backfill_events(database)) == 1
